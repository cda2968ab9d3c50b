//! Named learnable parameters: constrained values over unconstrained storage, and the
//! variables of candle-nn modules.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use vi_dist::{Constraint, Transform, transform_to};

use crate::error::{InferError, Result};

/// One constrained parameter: its unconstrained `Var`, and the constraint with its bijection
/// (absent for a value loaded from a file until a model names the constraint again).
#[derive(Debug)]
struct Param {
    unconstrained: Var,
    constraint: Option<(Constraint, Box<dyn Transform>)>,
}

/// The learnable parameters of a model and guide, on one device and dtype: Pyro's
/// `ParamStore`, passed explicitly rather than global.
///
/// - Constrained parameters (`ctx.param(name, init, constraint)`) are stored unconstrained,
///   through [`transform_to`]: the optimizer moves the unconstrained `Var`, the model reads
///   `transform.forward(var)`, which is always inside the constraint.
/// - Modules (candle-nn layers) are built from [`var_builder`](ParamStore::var_builder): their
///   variables live here under `prefix.name`, unchanged.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use vi_dist::Constraint;
/// use vi_infer::ParamStore;
/// let mut store = ParamStore::new(&Device::Cpu, DType::F64);
/// let init = Tensor::new(&[0.5f64, 2.0], &Device::Cpu)?;
/// let scale = store.param("scale", || Ok(init.clone()), &Constraint::Positive)?;
/// assert_eq!(scale.to_vec1::<f64>()?, vec![0.5, 2.0]);
/// // Stored as log(0.5), log(2.0).
/// let raw = store.unconstrained("scale").unwrap().as_tensor().to_vec1::<f64>()?;
/// assert!((raw[0] - 0.5f64.ln()).abs() < 1e-12);
/// // The init is used only the first time.
/// let again = store.param("scale", || Ok(init.zeros_like()?), &Constraint::Positive)?;
/// assert_eq!(again.to_vec1::<f64>()?, vec![0.5, 2.0]);
/// # Ok::<(), vi_infer::InferError>(())
/// ```
///
/// [`ParamStore::default`] is a store that adopts the device and dtype of its first
/// parameter.
pub struct ParamStore {
    /// Fixed by `new`, or adopted from the first parameter (`default`).
    kind: Option<(Device, DType)>,
    params: BTreeMap<String, Param>,
    modules: VarMap,
}

impl Default for ParamStore {
    fn default() -> Self {
        Self {
            kind: None,
            params: BTreeMap::new(),
            modules: VarMap::new(),
        }
    }
}

impl std::fmt::Debug for ParamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParamStore")
            .field("device", &self.kind.as_ref().map(|(d, _)| d.location()))
            .field("dtype", &self.kind.as_ref().map(|(_, t)| *t))
            .field("params", &self.param_names())
            .field("module_vars", &self.module_vars("").len())
            .finish()
    }
}

/// Whether two constraints are the same. Constraints with tensor bounds have no equality, so
/// they compare by what they print; the common field-less ones (`real`, `positive`, …) compare
/// without printing (this runs at every `ctx.param`).
/// A stored parameter's constrained value, once `constraint` is checked against (or, for a
/// parameter loaded from a checkpoint, set as) the one it was created with.
fn read(p: &mut Param, name: &str, constraint: &Constraint) -> Result<Tensor> {
    let bad = |msg: String| InferError::Param {
        name: name.to_string(),
        msg,
    };
    match &p.constraint {
        Some((c, _)) if !same_constraint(c, constraint) => {
            return Err(bad(format!(
                "used with constraint {constraint}, created with {c}"
            )));
        }
        Some(_) => {}
        None => p.constraint = Some((constraint.clone(), transform_to(constraint)?)),
    }
    let Some((_, t)) = &p.constraint else {
        return Err(bad("has no constraint".into()));
    };
    Ok(t.forward(p.unconstrained.as_tensor())?)
}

/// Whether two constraints are the same: by variant for those without parameters, else by
/// their text.
pub(crate) fn same_constraint(a: &Constraint, b: &Constraint) -> bool {
    use Constraint::*;
    let plain = |c: &Constraint| {
        matches!(
            c,
            Real | Positive
                | NonNegative
                | UnitInterval
                | Boolean
                | NonNegativeInteger
                | Simplex
                | OneHot
                | LowerCholesky
                | PositiveDefinite
        )
    };
    if plain(a) && plain(b) && std::mem::discriminant(a) == std::mem::discriminant(b) {
        return true;
    }
    a.to_string() == b.to_string()
}

impl ParamStore {
    /// An empty store whose parameters live on `device` in `dtype`.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Constraint;
    /// # use vi_infer::ParamStore;
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F64);
    /// assert_eq!(store.dtype(), Some(DType::F64));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(device: &Device, dtype: DType) -> Self {
        Self {
            kind: Some((device.clone(), dtype)),
            params: BTreeMap::new(),
            modules: VarMap::new(),
        }
    }

    /// The device parameters live on (`None` for a default store before its first
    /// parameter).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Constraint;
    /// # use vi_infer::ParamStore;
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F64);
    /// assert!(store.device().unwrap().is_cpu());
    /// assert!(ParamStore::default().device().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn device(&self) -> Option<&Device> {
        self.kind.as_ref().map(|(d, _)| d)
    }

    /// The dtype of the parameters (`None` for a default store before its first parameter).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Constraint;
    /// # use vi_infer::ParamStore;
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F64);
    /// assert_eq!(store.dtype(), Some(DType::F64));
    /// // A default store adopts the first parameter's dtype.
    /// let mut lazy = ParamStore::default();
    /// lazy.param("w", || Tensor::zeros(2, DType::F32, &dev), &Constraint::Real)?;
    /// assert_eq!(lazy.dtype(), Some(DType::F32));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dtype(&self) -> Option<DType> {
        self.kind.as_ref().map(|(_, t)| *t)
    }

    /// The constrained value of parameter `name`: created from `init()` (which must lie
    /// inside `constraint`) the first time, read from the store afterwards. Differentiable
    /// in the unconstrained `Var`.
    ///
    /// Errors: `init` on another device or dtype than the store's, outside the constraint,
    /// or a later call with another constraint than the first one.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Constraint;
    /// # use vi_infer::ParamStore;
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F64);
    /// let p = store.param("p", || Tensor::new(&[0.2f64, 0.7], &dev), &Constraint::UnitInterval)?;
    /// assert!(Constraint::UnitInterval.all(&p)?);
    /// // The same name with another constraint is a typed error.
    /// assert!(store.param("p", || Tensor::new(&[0.5f64], &dev), &Constraint::Positive).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn param(
        &mut self,
        name: &str,
        init: impl FnOnce() -> candle_core::Result<Tensor>,
        constraint: &Constraint,
    ) -> Result<Tensor> {
        let bad = |msg: String| InferError::Param {
            name: name.to_string(),
            msg,
        };
        if self.has_module_var(name) {
            return Err(bad("a module variable already has this name".into()));
        }
        // The common case, every step after the first: one lookup.
        if let Some(p) = self.params.get_mut(name) {
            return read(p, name, constraint);
        }
        let init = init()?;
        let (device, dtype) = self
            .kind
            .get_or_insert_with(|| (init.device().clone(), init.dtype()));
        if init.dtype() != *dtype || !init.device().same_device(device) {
            return Err(bad(format!(
                "init is {:?} on {:?}, the store holds {:?} on {:?}",
                init.dtype(),
                init.device().location(),
                dtype,
                device.location()
            )));
        }
        if vi_dist::validation_enabled() && !constraint.all(&init)? {
            return Err(bad(format!(
                "init lies outside the constraint {constraint}"
            )));
        }
        let transform = transform_to(constraint)?;
        let raw = transform.inverse(&init.detach())?;
        let p = self.params.entry(name.to_string()).or_insert(Param {
            unconstrained: Var::from_tensor(&raw)?,
            constraint: Some((constraint.clone(), transform)),
        });
        read(p, name, constraint)
    }

    /// The constrained value of a parameter, if it exists and has its constraint (a value
    /// loaded from a file gets it at its first `param` call).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Constraint;
    /// # use vi_infer::ParamStore;
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F64);
    /// store.param("s", || Tensor::new(&[2.0f64], &dev), &Constraint::Positive)?;
    /// assert_eq!(store.get("s")?.unwrap().to_vec1::<f64>()?, vec![2.0]);
    /// assert!(store.get("missing")?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, name: &str) -> Result<Option<Tensor>> {
        match self.params.get(name) {
            Some(Param {
                unconstrained,
                constraint: Some((_, t)),
            }) => Ok(Some(t.forward(unconstrained.as_tensor())?)),
            Some(Param {
                unconstrained,
                constraint: None,
            }) => Ok(Some(unconstrained.as_tensor().clone())),
            None => Ok(self.module_var(name).map(|v| v.as_tensor().clone())),
        }
    }

    /// The unconstrained `Var` of a constrained parameter (what the optimizer moves).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Constraint;
    /// # use vi_infer::ParamStore;
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F64);
    /// store.param("s", || Tensor::new(&[1.0f64], &dev), &Constraint::Positive)?;
    /// // log 1 = 0
    /// assert_eq!(store.unconstrained("s").unwrap().as_tensor().to_vec1::<f64>()?, vec![0.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unconstrained(&self, name: &str) -> Option<&Var> {
        self.params.get(name).map(|p| &p.unconstrained)
    }

    /// A candle-nn `VarBuilder` whose variables live in this store under `prefix.`; build
    /// modules (`candle_nn::linear(…, store.var_builder("encoder").pp("fc1"))`) once, outside
    /// the model, and mark them used with `ctx.module("encoder", &m)` inside it.
    ///
    /// Errors on a default store that has no device and dtype yet: build it with
    /// [`ParamStore::new`].
    ///
    /// ```
    /// use candle_core::{DType, Device};
    /// use vi_infer::ParamStore;
    /// let store = ParamStore::new(&Device::Cpu, DType::F32);
    /// let fc = candle_nn::linear(3, 2, store.var_builder("enc")?.pp("fc"))?;
    /// let names: Vec<String> = store.module_vars("enc").into_iter().map(|(n, _)| n).collect();
    /// assert_eq!(names, vec!["enc.fc.bias", "enc.fc.weight"]);
    /// # let _ = fc;
    /// # Ok::<(), vi_infer::InferError>(())
    /// ```
    pub fn var_builder(&self, prefix: &str) -> Result<VarBuilder<'static>> {
        let Some((device, dtype)) = &self.kind else {
            return Err(InferError::Param {
                name: prefix.to_string(),
                msg: "the store has no device and dtype yet: build it with ParamStore::new".into(),
            });
        };
        Ok(VarBuilder::from_varmap(&self.modules, *dtype, device).pp(prefix))
    }

    /// Whether some module variable lives under `prefix` (is named `prefix` or
    /// `prefix.<…>`), without collecting them.
    pub(crate) fn has_module(&self, prefix: &str) -> bool {
        let data = self
            .modules
            .data()
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        data.keys().any(|k| {
            prefix.is_empty()
                || k.strip_prefix(prefix)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
    }

    /// Whether a module variable is named `name`.
    fn has_module_var(&self, name: &str) -> bool {
        let data = self
            .modules
            .data()
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        data.contains_key(name)
    }

    fn module_var(&self, name: &str) -> Option<Var> {
        let data = self
            .modules
            .data()
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        data.get(name).cloned()
    }

    /// The module variables under `prefix` (`prefix.*`), sorted by name.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Constraint;
    /// # use vi_infer::ParamStore;
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F64);
    /// let _fc = candle_nn::linear(2, 2, store.var_builder("dec")?.pp("fc"))?;
    /// assert_eq!(store.module_vars("dec").len(), 2);
    /// assert!(store.module_vars("enc").is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn module_vars(&self, prefix: &str) -> Vec<(String, Var)> {
        let data = self
            .modules
            .data()
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let dotted = format!("{prefix}.");
        let mut v: Vec<(String, Var)> = data
            .iter()
            .filter(|(k, _)| prefix.is_empty() || k.starts_with(&dotted) || *k == prefix)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The names of the constrained parameters, sorted.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Constraint;
    /// # use vi_infer::ParamStore;
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F64);
    /// store.param("b", || Tensor::new(&[1.0f64], &dev), &Constraint::Real)?;
    /// store.param("a", || Tensor::new(&[1.0f64], &dev), &Constraint::Real)?;
    /// assert_eq!(store.param_names(), ["a", "b"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn param_names(&self) -> Vec<String> {
        self.params.keys().cloned().collect()
    }

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

    /// Sets stored tensors from `tensors` (as written by [`named_tensors`]): module variables
    /// that exist are overwritten in place (modules built from this store see the new
    /// values); other names become unconstrained parameters, whose constraint the next
    /// `param` call supplies.
    ///
    /// [`named_tensors`]: ParamStore::named_tensors
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Constraint;
    /// # use vi_infer::ParamStore;
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F64);
    /// store.param("s", || Tensor::new(&[1.0f64], &dev), &Constraint::Positive)?;
    /// let saved = store.named_tensors();
    /// let mut fresh = ParamStore::new(&dev, DType::F64);
    /// fresh.load_tensors(&saved)?;
    /// // The constraint comes back with the first `param` call; the init is not used.
    /// let s = fresh.param("s", || Tensor::new(&[9.0f64], &dev), &Constraint::Positive)?;
    /// assert_eq!(s.to_vec1::<f64>()?, vec![1.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load_tensors(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        for (name, t) in tensors {
            let (device, dtype) = self
                .kind
                .get_or_insert_with(|| (t.device().clone(), t.dtype()))
                .clone();
            let t = t.to_device(&device)?.to_dtype(dtype)?;
            if let Some(v) = self.module_var(name) {
                if v.dims() != t.dims() {
                    return Err(InferError::Param {
                        name: name.clone(),
                        msg: format!("loaded shape {:?}, the module has {:?}", t.dims(), v.dims()),
                    });
                }
                v.set(&t)?;
            } else if let Some(p) = self.params.get(name) {
                if p.unconstrained.dims() != t.dims() {
                    return Err(InferError::Param {
                        name: name.clone(),
                        msg: format!(
                            "loaded shape {:?}, the store has {:?}",
                            t.dims(),
                            p.unconstrained.dims()
                        ),
                    });
                }
                p.unconstrained.set(&t)?;
            } else {
                self.params.insert(
                    name.clone(),
                    Param {
                        unconstrained: Var::from_tensor(&t)?,
                        constraint: None,
                    },
                );
            }
        }
        Ok(())
    }

    /// Writes every stored tensor (unconstrained) to a safetensors file.
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
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        candle_core::safetensors::save(&self.named_tensors(), path.as_ref())?;
        Ok(())
    }

    /// Reads a safetensors file written by [`save`](ParamStore::save) into the store.
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
    /// let s = back.param("s", || Tensor::new(&[1.0f64], &dev), &Constraint::Positive)?;
    /// assert!((s.to_vec1::<f64>()?[0] - 3.0).abs() < 1e-12);
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let device = self.device().cloned().unwrap_or(Device::Cpu);
        let tensors = candle_core::safetensors::load(path.as_ref(), &device)?;
        self.load_tensors(&tensors)
    }
}
