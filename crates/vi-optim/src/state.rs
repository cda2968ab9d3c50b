//! [`StateDict`]: an optimizer's (and scheduler's) state as named tensors, saved to and loaded
//! from safetensors; each parameter's state ([`ParamState`]) and its conversion to and from
//! a state dict.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{OptimError, Result};
use crate::lr_transform::LrTransform;
use crate::rule::{Moments, Rule};

/// Key prefix of per-parameter entries: `state.<param>.<buffer>`.
const PARAM_PREFIX: &str = "state.";
/// Key of the learning-rate map (`[scale, shift, floor]`, f64).
const LR_TRANSFORM_KEY: &str = "optimizer.lr_transform";
/// Per-parameter step count (i64 scalar), torch's `state["step"]`.
const STEP: &str = "step";
/// Per-parameter count of learning-rate decays (i64 scalar; `ClippedAdam`'s `lrd`).
const LR_DECAYS: &str = "lr_decays";

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
fn split_param_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(PARAM_PREFIX)?;
    rest.rsplit_once('.')
}

/// `state.<param>.<buffer>`.
fn param_key(param: &str, buffer: &str) -> String {
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
    let v = scalar_f64(owner, key, t)?;
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

/// One parameter's state in an optimizer: its options (chosen when the parameter is first
/// seen), its counters and its buffers.
pub(crate) struct ParamState<O> {
    pub(crate) options: O,
    pub(crate) step: u64,
    /// Calls that listed the parameter (only kept by rules that count them).
    pub(crate) calls: u64,
    /// The parameter's shape, once known (every buffer has it).
    pub(crate) shape: Option<Vec<usize>>,
    pub(crate) moments: Moments,
}

impl<O> ParamState<O> {
    /// The state of a parameter not stepped yet.
    pub(crate) fn new(options: O) -> Self {
        ParamState {
            options,
            step: 0,
            calls: 0,
            shape: None,
            moments: Moments::Zero,
        }
    }

    /// Back to [`new`](ParamState::new)'s state, keeping the options.
    fn reset(&mut self) {
        self.step = 0;
        self.calls = 0;
        self.shape = None;
        self.moments = Moments::Zero;
    }
}

/// The state dict of an optimizer of rule `R`: the learning-rate map, and for each parameter
/// that has been stepped (or, for rules that count calls, listed) its counters and buffers.
pub(crate) fn write<R: Rule>(
    states: &HashMap<String, ParamState<R::Options>>,
    transform: LrTransform,
) -> Result<StateDict> {
    let mut out = StateDict::new();
    out.insert(
        LR_TRANSFORM_KEY,
        Tensor::new(&transform.to_array(), &Device::Cpu)?,
    );
    for (name, st) in states {
        if st.step == 0 && st.calls == 0 {
            continue;
        }
        out.insert(param_key(name, STEP), count_tensor(st.step)?);
        if R::COUNTS_CALLS {
            out.insert(param_key(name, LR_DECAYS), count_tensor(st.calls)?);
        }
        let names = R::buffers(&st.options);
        let shape = st.shape.clone().unwrap_or_default();
        let tensors: Vec<Tensor> = match &st.moments {
            Moments::Zero => Vec::new(),
            Moments::F32(b) => b
                .iter()
                .map(|v| Tensor::from_slice(v, shape.as_slice(), &Device::Cpu))
                .collect::<candle_core::Result<_>>()?,
            Moments::F64(b) => b
                .iter()
                .map(|v| Tensor::from_slice(v, shape.as_slice(), &Device::Cpu))
                .collect::<candle_core::Result<_>>()?,
            // Never mutated in place (each step replaces them), so a handle is a snapshot.
            Moments::Tensors(t) => t.clone(),
        };
        for (buf, t) in names.iter().zip(tensors) {
            out.insert(param_key(name, buf), t);
        }
    }
    Ok(out)
}

/// One parameter's entries of a state dict, checked against its options.
struct LoadedParam {
    param: String,
    step: u64,
    calls: u64,
    shape: Option<Vec<usize>>,
    tensors: Vec<Tensor>,
}

/// What a state dict holds for an optimizer of rule `R`, checked in full before anything is
/// restored.
pub(crate) struct Loaded {
    transform: Option<LrTransform>,
    params: Vec<LoadedParam>,
}

impl Loaded {
    /// Reads and checks `state`; `options(param)` gives the options of a parameter named in
    /// it (creating its state if it is new), which say what buffers it must have.
    pub(crate) fn read<R: Rule>(
        state: &StateDict,
        mut options: impl FnMut(&str) -> Result<R::Options>,
    ) -> Result<Self> {
        let bad = |key: &str, message: String| OptimError::State {
            optimizer: R::NAME,
            key: key.to_string(),
            message,
        };
        // Group the per-parameter entries and check them before touching any state.
        let mut entries: HashMap<&str, HashMap<&str, &Tensor>> = HashMap::new();
        let mut transform = None;
        for (key, t) in state.iter() {
            if key == LR_TRANSFORM_KEY {
                let v = t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
                let a: [f64; 3] = v.try_into().map_err(|v: Vec<f64>| {
                    bad(key, format!("expected 3 values, found {}", v.len()))
                })?;
                transform = Some(LrTransform::from_array(a));
            } else if key.starts_with(PARAM_PREFIX) {
                let (param, buf) = split_param_key(key)
                    .ok_or_else(|| bad(key, "expected `state.<param>.<buffer>`".to_string()))?;
                entries.entry(param).or_default().insert(buf, t);
            } else if key.starts_with("optimizer.") {
                return Err(bad(key, "not a key this optimizer writes".to_string()));
            }
            // Other prefixes (`scheduler.`) belong to whoever wraps this optimizer.
        }
        let mut params = Vec::with_capacity(entries.len());
        for (param, bufs) in &entries {
            let count = |buf: &str| match bufs.get(buf) {
                Some(t) => scalar_count(R::NAME, &param_key(param, buf), t),
                None => Err(bad(&param_key(param, buf), "missing".to_string())),
            };
            let step = count(STEP)?;
            let calls = if R::COUNTS_CALLS {
                count(LR_DECAYS)?
            } else {
                step
            };
            let names = R::buffers(&options(param)?);
            for buf in bufs.keys() {
                let counter = *buf == STEP || (R::COUNTS_CALLS && *buf == LR_DECAYS);
                if !counter && !names.contains(buf) {
                    return Err(bad(
                        &param_key(param, buf),
                        format!("{} with these options keeps only {names:?}", R::NAME),
                    ));
                }
            }
            // A parameter listed but never stepped (its lr decays counted) has no buffers yet.
            let unstepped = step == 0 && names.iter().all(|b| !bufs.contains_key(b));
            let mut tensors = Vec::with_capacity(names.len());
            for buf in names.iter().filter(|_| !unstepped) {
                let key = param_key(param, buf);
                let t = bufs
                    .get(buf)
                    .ok_or_else(|| bad(&key, "missing".to_string()))?;
                tensors.push((*t).clone());
            }
            let shape = tensors.first().map(|t| t.dims().to_vec());
            for (buf, t) in names.iter().zip(&tensors) {
                if Some(t.dims()) != shape.as_deref() {
                    return Err(bad(
                        &param_key(param, buf),
                        format!("shape {:?} differs from {:?}", t.dims(), shape),
                    ));
                }
            }
            params.push(LoadedParam {
                param: param.to_string(),
                step,
                calls,
                shape,
                tensors,
            });
        }
        Ok(Loaded { transform, params })
    }

    /// Replaces every parameter's counters and buffers in `states` with the loaded ones (a
    /// parameter the state dict does not name starts afresh). Every parameter it names has a
    /// state already: [`read`](Loaded::read) asked for its options. Returns the loaded
    /// learning-rate map, if the state dict had one.
    pub(crate) fn restore<R: Rule>(
        self,
        states: &mut HashMap<String, ParamState<R::Options>>,
    ) -> Result<Option<LrTransform>> {
        if let Some(p) = self.params.iter().find(|p| !states.contains_key(&p.param)) {
            return Err(OptimError::State {
                optimizer: R::NAME,
                key: p.param.clone(),
                message: "no state to restore into".to_string(),
            });
        }
        states.values_mut().for_each(ParamState::reset);
        for p in self.params {
            if let Some(st) = states.get_mut(&p.param) {
                (st.step, st.calls, st.shape) = (p.step, p.calls, p.shape);
                st.moments = if p.tensors.is_empty() {
                    Moments::Zero
                } else {
                    Moments::Tensors(p.tensors)
                };
            }
        }
        Ok(self.transform)
    }
}
