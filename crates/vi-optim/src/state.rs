//! [`StateDict`]: an optimizer's (and scheduler's) state as named tensors, saved to and loaded
//! from safetensors.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{OptimError, Result};

/// Key prefix of per-parameter entries: `state.<param>.<buffer>`.
pub(crate) const PARAM_PREFIX: &str = "state.";
/// Key of the learning-rate map (`[scale, shift, floor]`, f64).
pub(crate) const LR_TRANSFORM_KEY: &str = "optimizer.lr_transform";
/// Per-parameter step count (i64 scalar), torch's `state["step"]`.
pub(crate) const STEP: &str = "step";
/// Per-parameter count of learning-rate decays (i64 scalar; `ClippedAdam`'s `lrd`).
pub(crate) const LR_DECAYS: &str = "lr_decays";

/// An optimizer's state as named tensors, in key order.
///
/// Keys are `state.<param>.<buffer>` for per-parameter entries (`step`, an i64 scalar;
/// `lr_decays` for `ClippedAdam`; the buffers under torch's names: `exp_avg`, `exp_avg_sq`,
/// `max_exp_avg_sq`, `momentum_buffer`), `optimizer.lr_transform` for the learning-rate map
/// and `scheduler.*` for a scheduler's counters. Parameter names may contain dots: the
/// buffer is what follows the last one.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_optim::StateDict;
///
/// let mut state = StateDict::new();
/// state.insert("state.w.exp_avg", Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu)?);
/// assert_eq!(state.len(), 1);
/// let path = std::env::temp_dir().join("vi_optim_state_doc.safetensors");
/// state.save(&path)?;
/// assert_eq!(StateDict::load(&path)?.len(), 1);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), vi_optim::OptimError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct StateDict {
    tensors: BTreeMap<String, Tensor>,
}

impl StateDict {
    /// An empty state.
    ///
    /// ```
    /// assert!(vi_optim::StateDict::new().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) an entry.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// let mut s = vi_optim::StateDict::new();
    /// s.insert("scheduler.epoch", Tensor::new(3i64, &Device::Cpu)?);
    /// assert!(s.get("scheduler.epoch").is_some());
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn insert(&mut self, key: impl Into<String>, tensor: Tensor) {
        self.tensors.insert(key.into(), tensor);
    }

    /// The entry under `key`.
    ///
    /// ```
    /// assert!(vi_optim::StateDict::new().get("x").is_none());
    /// ```
    pub fn get(&self, key: &str) -> Option<&Tensor> {
        self.tensors.get(key)
    }

    /// Number of entries.
    ///
    /// ```
    /// assert_eq!(vi_optim::StateDict::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether there are no entries.
    ///
    /// ```
    /// assert!(vi_optim::StateDict::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The entries in key order.
    ///
    /// ```
    /// assert_eq!(vi_optim::StateDict::new().iter().count(), 0);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Adds every entry of `other` (a scheduler adds its counters to its optimizer's state).
    ///
    /// ```
    /// let mut a = vi_optim::StateDict::new();
    /// a.extend(vi_optim::StateDict::new());
    /// assert!(a.is_empty());
    /// ```
    pub fn extend(&mut self, other: StateDict) {
        self.tensors.extend(other.tensors);
    }

    /// The entries with `prefix` put before each key, to keep the state beside other tensors
    /// (a param store saving its parameters and its optimizer in one file).
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_optim::StateDict;
    ///
    /// let mut s = StateDict::new();
    /// s.insert("state.w.step", Tensor::new(1i64, &Device::Cpu)?);
    /// assert!(s.prefixed("optim.").get("optim.state.w.step").is_some());
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn prefixed(&self, prefix: &str) -> StateDict {
        self.iter()
            .map(|(k, t)| (format!("{prefix}{k}"), t.clone()))
            .collect()
    }

    /// The entries whose keys start with `prefix`, with the prefix removed: the inverse of
    /// [`prefixed`](StateDict::prefixed) on a file that holds other tensors too.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_optim::StateDict;
    ///
    /// let mut file = StateDict::new();
    /// file.insert("param.w", Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu)?);
    /// file.insert("optim.state.w.step", Tensor::new(1i64, &Device::Cpu)?);
    /// let state = file.strip_prefix("optim.");
    /// assert_eq!(state.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["state.w.step"]);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn strip_prefix(&self, prefix: &str) -> StateDict {
        self.iter()
            .filter_map(|(k, t)| Some((k.strip_prefix(prefix)?.to_string(), t.clone())))
            .collect()
    }

    /// Writes the entries to a safetensors file (tensors on any device are copied to the
    /// host by candle).
    ///
    /// ```
    /// let path = std::env::temp_dir().join("vi_optim_state_save_doc.safetensors");
    /// vi_optim::StateDict::new().save(&path)?;
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    pub fn save(&self, path: &Path) -> Result<()> {
        let map: HashMap<&str, Tensor> = self
            .tensors
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        candle_core::safetensors::save(&map, path)?;
        Ok(())
    }

    /// Reads a safetensors file written by [`save`](StateDict::save) onto the CPU; the
    /// optimizer moves each entry to its parameter's device at that parameter's next step.
    ///
    /// ```
    /// let path = std::env::temp_dir().join("vi_optim_state_load_doc.safetensors");
    /// vi_optim::StateDict::new().save(&path)?;
    /// assert!(vi_optim::StateDict::load(&path)?.is_empty());
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    pub fn load(path: &Path) -> Result<Self> {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)?;
        Ok(StateDict {
            tensors: tensors.into_iter().collect(),
        })
    }
}

impl FromIterator<(String, Tensor)> for StateDict {
    fn from_iter<I: IntoIterator<Item = (String, Tensor)>>(iter: I) -> Self {
        StateDict {
            tensors: iter.into_iter().collect(),
        }
    }
}

/// Split `state.<param>.<buffer>` into `(param, buffer)`.
pub(crate) fn split_param_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(PARAM_PREFIX)?;
    rest.rsplit_once('.')
}

/// `state.<param>.<buffer>`.
pub(crate) fn param_key(param: &str, buffer: &str) -> String {
    format!("{PARAM_PREFIX}{param}.{buffer}")
}

/// A scalar entry read as f64 (any dtype, any rank with one element).
pub(crate) fn scalar_f64(owner: &'static str, key: &str, t: &Tensor) -> Result<f64> {
    if t.elem_count() != 1 {
        return Err(OptimError::State {
            optimizer: owner,
            key: key.to_string(),
            message: format!("expected one value, found shape {:?}", t.dims()),
        });
    }
    Ok(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?[0])
}

/// A scalar entry read as a count (an i64 tensor; a float tensor with an integral value is
/// accepted too).
pub(crate) fn scalar_count(owner: &'static str, key: &str, t: &Tensor) -> Result<u64> {
    if t.elem_count() != 1 {
        return Err(OptimError::State {
            optimizer: owner,
            key: key.to_string(),
            message: format!("expected one value, found shape {:?}", t.dims()),
        });
    }
    let v = if t.dtype() == DType::I64 {
        t.flatten_all()?.to_vec1::<i64>()?[0] as f64
    } else {
        t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?[0]
    };
    if !(v >= 0.0 && v.fract() == 0.0) {
        return Err(OptimError::State {
            optimizer: owner,
            key: key.to_string(),
            message: format!("expected a non-negative count, found {v}"),
        });
    }
    Ok(v as u64)
}

/// A count as an i64 scalar tensor on the CPU.
pub(crate) fn count_tensor(n: u64) -> Result<Tensor> {
    Ok(Tensor::new(n.min(i64::MAX as u64) as i64, &Device::Cpu)?)
}

/// An f64 scalar tensor on the CPU.
pub(crate) fn f64_tensor(v: f64) -> Result<Tensor> {
    Ok(Tensor::new(v, &Device::Cpu)?)
}
