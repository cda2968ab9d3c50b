//! The store's tensors by name, and the files they are written to and read from: values,
//! constraints travelling with them, shapes checked on the way in.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use vi_dist::transform_to;

use super::{Param, ParamStore};
use crate::checkpoint;
use crate::error::{InferError, Result};

impl ParamStore {
    /// Every stored tensor by name: the unconstrained parameters and the module variables.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Constraint;
    /// # use vi_infer::ParamStore;
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F64);
    /// store.param("s", || Tensor::new(&[1.0f64], &dev), &Constraint::Positive)?;
    /// let _fc = candle_nn::linear(1, 1, store.var_builder("fc")?)?;
    /// let mut names: Vec<String> = store.named_tensors().into_keys().collect();
    /// names.sort();
    /// assert_eq!(names, ["fc.bias", "fc.weight", "s"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn named_tensors(&self) -> HashMap<String, Tensor> {
        let mut out: HashMap<String, Tensor> = self
            .params
            .iter()
            .map(|(k, p)| (k.clone(), p.unconstrained.as_tensor().clone()))
            .collect();
        for (k, v) in self.module_vars("") {
            out.insert(k, v.as_tensor().clone());
        }
        out
    }

    /// Every stored tensor by name, as [`named_tensors`], plus the constraint of each
    /// parameter (as tensors under reserved names): what [`save`] writes and
    /// [`load_tensors`] reads back whole.
    ///
    /// [`named_tensors`]: ParamStore::named_tensors
    /// [`save`]: ParamStore::save
    /// [`load_tensors`]: ParamStore::load_tensors
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Constraint;
    /// # use vi_infer::ParamStore;
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F64);
    /// store.param("s", || Tensor::new(&[0.5f64], &dev), &Constraint::Positive)?;
    /// let mut fresh = ParamStore::new(&dev, DType::F64);
    /// fresh.load_tensors(&store.state()?)?;
    /// // The constraint came with the value: `get` is the constrained value at once.
    /// assert_eq!(fresh.get("s")?.unwrap().to_vec1::<f64>()?, vec![0.5]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = self.named_tensors();
        for (name, p) in &self.params {
            if let Some((c, _)) = &p.constraint {
                out.extend(checkpoint::constraint_records(name, c)?);
            }
        }
        Ok(out)
    }

    /// Sets stored tensors from `tensors` (as written by [`state`] or [`named_tensors`]):
    /// module variables that exist are overwritten in place (modules built from this store
    /// see the new values); other names become parameters, with the constraint recorded beside
    /// them when there is one (else the next `param` call supplies it). A shape or constraint
    /// that disagrees with what the store already holds is an error naming the parameter,
    /// and then nothing is changed; a loaded parameter's shape is checked against its initial
    /// value at its first `param` call.
    ///
    /// [`state`]: ParamStore::state
    /// [`named_tensors`]: ParamStore::named_tensors
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Constraint;
    /// # use vi_infer::ParamStore;
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F64);
    /// store.param("s", || Tensor::new(&[1.0f64], &dev), &Constraint::Positive)?;
    /// let saved = store.named_tensors(); // values only
    /// let mut fresh = ParamStore::new(&dev, DType::F64);
    /// fresh.load_tensors(&saved)?;
    /// assert!(fresh.get("s").is_err()); // no constraint yet: no value to give
    /// // The constraint comes back with the first `param` call; the init is not used.
    /// let s = fresh.param("s", || Tensor::new(&[9.0f64], &dev), &Constraint::Positive)?;
    /// assert_eq!(s.to_vec1::<f64>()?, vec![1.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load_tensors(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        let (values, constraints) = checkpoint::split_constraints(tensors)?;
        let bad = |name: &str, msg: String| InferError::Param {
            name: name.to_string(),
            msg,
        };
        // Check everything first, so that a bad file leaves the store as it was.
        for (name, t) in &values {
            if let Some(v) = self.module_var(name) {
                if v.dims() != t.dims() {
                    return Err(bad(
                        name,
                        format!("loaded shape {:?}, the module has {:?}", t.dims(), v.dims()),
                    ));
                }
            } else if let Some(p) = self.params.get(name) {
                if p.unconstrained.dims() != t.dims() {
                    return Err(bad(
                        name,
                        format!(
                            "loaded shape {:?}, the store has {:?}",
                            t.dims(),
                            p.unconstrained.dims()
                        ),
                    ));
                }
                if let (Some((have, _)), Some(file)) = (&p.constraint, constraints.get(name))
                    && !have.same_as(file)
                {
                    return Err(bad(
                        name,
                        format!("loaded with constraint {file}, the store has {have}"),
                    ));
                }
            }
        }
        if let Some(orphan) = constraints.keys().find(|k| !values.contains_key(*k)) {
            return Err(bad(
                orphan,
                "the file has its constraint but no value".into(),
            ));
        }
        for (name, t) in &values {
            let (device, dtype) = self
                .kind
                .get_or_insert_with(|| (t.device().clone(), t.dtype()))
                .clone();
            let t = t.to_device(&device)?.to_dtype(dtype)?;
            if let Some(v) = self.module_var(name) {
                v.set(&t)?;
            } else if let Some(p) = self.params.get(name) {
                p.unconstrained.set(&t)?;
            } else {
                let constraint = match constraints.get(name) {
                    Some(c) => Some((c.clone(), transform_to(c)?)),
                    None => None,
                };
                self.params.insert(
                    name.clone(),
                    Param {
                        unconstrained: Var::from_tensor(&t)?,
                        constraint,
                        loaded: true,
                        shared: false,
                    },
                );
            }
        }
        Ok(())
    }

    /// Writes every stored tensor (parameters unconstrained, with their constraints; module
    /// variables) to a safetensors file, through a temporary file renamed over `path`: a
    /// failed write leaves the previous file whole.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Constraint;
    /// # use vi_infer::ParamStore;
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F64);
    /// store.param("s", || Tensor::new(&[3.0f64], &dev), &Constraint::Positive)?;
    /// let path = std::env::temp_dir().join("vi_infer_doc_store_save.safetensors");
    /// store.save(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        checkpoint::save(&self.state()?, path.as_ref())
    }

    /// Reads a safetensors file written by [`save`](ParamStore::save) into the store. A
    /// missing or unreadable file is [`InferError::Io`] naming it.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Constraint;
    /// # use vi_infer::ParamStore;
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F64);
    /// store.param("s", || Tensor::new(&[3.0f64], &dev), &Constraint::Positive)?;
    /// let path = std::env::temp_dir().join("vi_infer_doc_store_load.safetensors");
    /// store.save(&path)?;
    /// let mut back = ParamStore::new(&dev, DType::F64);
    /// back.load(&path)?;
    /// assert!((back.get("s")?.unwrap().to_vec1::<f64>()?[0] - 3.0).abs() < 1e-12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let device = self.device().cloned().unwrap_or(Device::Cpu);
        let tensors = checkpoint::load(path.as_ref(), &device)?;
        self.load_tensors(&tensors)
    }
}
