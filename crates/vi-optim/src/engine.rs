//! The machinery every optimizer shares: named parameters, per-parameter options and lazily
//! created state, the two update paths (an in-place kernel over contiguous CPU f32/f64
//! storage, and composed candle ops for every other device and dtype), and state dicts.
//!
//! An optimizer is a [`Rule`]: its options, the per-step coefficients, the names of its
//! buffers, and the element-wise update written twice (host loop and tensor ops). The public
//! types (`Adam`, …) wrap an [`Engine`] of their rule, through `optimizer_type!`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Storage, Tensor, Var};

use crate::error::{OptimError, Result};
use crate::inplace::{HostStep, Real};
use crate::optimizer::LrTransform;
use crate::state::{
    LR_DECAYS, LR_TRANSFORM_KEY, PARAM_PREFIX, STEP, StateDict, count_tensor, param_key,
    scalar_count, split_param_key,
};

/// One optimizer's update rule.
pub(crate) trait Rule: 'static {
    /// The optimizer's name, as torch/Pyro spell it.
    const NAME: &'static str;
    type Options: Clone + std::fmt::Debug + Send + Sync + 'static;
    /// Per-step scalars, computed in f64 once per parameter and step.
    type Coeffs: Copy;
    /// Whether the rule counts every call that lists a parameter, gradient or not (Pyro's
    /// `ClippedAdam` decays a parameter's learning rate on each call of its optimizer before
    /// it looks at the gradient). The count is saved as `state.<param>.lr_decays`.
    const COUNTS_CALLS: bool = false;

    fn validate(options: &Self::Options, param: Option<&str>) -> Result<()>;
    /// The configured learning rate.
    fn lr(options: &Self::Options) -> f64;
    /// The buffers this configuration keeps, under torch's names.
    fn buffers(options: &Self::Options) -> &'static [&'static str];
    /// The scalars of step `step` (1 for the first) at learning rate `lr` (already through the
    /// scheduler's map); `calls` counts the calls that listed the parameter, this one included
    /// (equal to `step` unless [`COUNTS_CALLS`](Rule::COUNTS_CALLS)).
    fn coeffs(options: &Self::Options, lr: f64, step: u64, calls: u64) -> Self::Coeffs;
    /// The update over contiguous host memory: `x` and `bufs` in place.
    fn host<T: Real>(c: &Self::Coeffs, x: &mut [T], g: &[T], bufs: &mut [Vec<T>]);
    /// The same update in candle ops: replaces `bufs`, returns the new `x`.
    fn composed(
        c: &Self::Coeffs,
        x: &Tensor,
        g: &Tensor,
        bufs: &mut [Tensor],
    ) -> candle_core::Result<Tensor>;
}

/// A parameter's buffers, in the form its update path needs.
pub(crate) enum Moments {
    /// All zeros, not yet allocated.
    Zero,
    F32(Vec<Vec<f32>>),
    F64(Vec<Vec<f64>>),
    /// On the parameter's device (composed path), or loaded and not yet placed.
    Tensors(Vec<Tensor>),
}

struct ParamState<O> {
    options: O,
    step: u64,
    /// Calls that listed the parameter (only kept by rules that count them).
    calls: u64,
    /// The parameter's shape, once known (every buffer has it).
    shape: Option<Vec<usize>>,
    moments: Moments,
}

type OptionsFn<O> = Arc<dyn Fn(&str, &O) -> O + Send + Sync>;

/// Options, state and learning-rate map: everything but the held parameter list, so a step
/// can borrow the list and mutate the rest.
pub(crate) struct Core<R: Rule> {
    defaults: R::Options,
    per_param: Option<OptionsFn<R::Options>>,
    state: HashMap<String, ParamState<R::Options>>,
    transform: LrTransform,
    fast_path: bool,
}

/// An optimizer: its parameters and its [`Core`].
pub(crate) struct Engine<R: Rule> {
    params: Vec<(String, Var)>,
    core: Core<R>,
}

impl<R: Rule> Engine<R> {
    pub(crate) fn new(
        params: Vec<(String, Var)>,
        defaults: R::Options,
        per_param: Option<OptionsFn<R::Options>>,
    ) -> Result<Self> {
        R::validate(&defaults, None)?;
        let mut engine = Engine {
            params: Vec::with_capacity(params.len()),
            core: Core {
                defaults,
                per_param,
                state: HashMap::new(),
                transform: LrTransform::IDENTITY,
                fast_path: true,
            },
        };
        for (name, var) in params {
            engine.add_param(&name, var)?;
        }
        Ok(engine)
    }

    pub(crate) fn add_param(&mut self, name: &str, var: Var) -> Result<()> {
        for (n, v) in &self.params {
            if n == name {
                return Err(OptimError::DuplicateParam {
                    optimizer: R::NAME,
                    param: name.to_string(),
                });
            }
            if v.as_tensor().id() == var.as_tensor().id() {
                return Err(OptimError::SharedParam {
                    optimizer: R::NAME,
                    param: name.to_string(),
                    other: n.clone(),
                });
            }
        }
        self.core.ensure_state(name)?;
        self.params.push((name.to_string(), var));
        Ok(())
    }

    pub(crate) fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    pub(crate) fn defaults(&self) -> &R::Options {
        &self.core.defaults
    }

    pub(crate) fn param_options(&self, name: &str) -> Option<&R::Options> {
        self.core.state.get(name).map(|s| &s.options)
    }

    pub(crate) fn step_count(&self, name: &str) -> Option<u64> {
        self.core.state.get(name).map(|s| s.step)
    }

    pub(crate) fn set_fast_path(&mut self, on: bool) {
        self.core.fast_path = on;
    }

    pub(crate) fn transform(&self) -> LrTransform {
        self.core.transform
    }

    pub(crate) fn set_transform(&mut self, t: LrTransform) {
        self.core.transform = t;
    }

    pub(crate) fn learning_rate(&self) -> f64 {
        self.core.transform.apply(R::lr(&self.core.defaults))
    }

    /// The largest rate that the defaults or any parameter seen so far steps with now.
    pub(crate) fn max_learning_rate(&self) -> f64 {
        let t = self.core.transform;
        self.core
            .state
            .values()
            .map(|st| t.apply(R::lr(&st.options)))
            .fold(self.learning_rate(), f64::max)
    }

    pub(crate) fn step(&mut self, grads: &GradStore) -> Result<()> {
        let named: Vec<(&str, &Var)> = self.params.iter().map(|(n, v)| (n.as_str(), v)).collect();
        // Names and Vars were checked distinct by `add_param`.
        self.core.step(&named, grads, false)
    }

    pub(crate) fn step_params(&mut self, params: &[(&str, &Var)], grads: &GradStore) -> Result<()> {
        self.core.step(params, grads, true)
    }

    pub(crate) fn state_dict(&self) -> Result<StateDict> {
        self.core.state_dict()
    }

    pub(crate) fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.core.load_state_dict(state)
    }
}

impl<R: Rule> Core<R> {
    fn ensure_state(&mut self, name: &str) -> Result<&mut ParamState<R::Options>> {
        if !self.state.contains_key(name) {
            let options = match &self.per_param {
                Some(f) => f(name, &self.defaults),
                None => self.defaults.clone(),
            };
            R::validate(&options, Some(name))?;
            self.state.insert(
                name.to_string(),
                ParamState {
                    options,
                    step: 0,
                    calls: 0,
                    shape: None,
                    moments: Moments::Zero,
                },
            );
        }
        self.state.get_mut(name).ok_or_else(|| OptimError::State {
            optimizer: R::NAME,
            key: name.to_string(),
            message: "state vanished".to_string(),
        })
    }

    fn fast(&self, var: &Var) -> bool {
        self.fast_path
            && var.device().is_cpu()
            && var.is_contiguous()
            && matches!(var.dtype(), DType::F32 | DType::F64)
    }

    fn step(
        &mut self,
        params: &[(&str, &Var)],
        grads: &GradStore,
        check_distinct: bool,
    ) -> Result<()> {
        if check_distinct && params.len() > 1 {
            distinct::<R>(params)?;
        }
        // Check everything, create the state and place the buffers before any parameter
        // moves, so an error leaves the parameters and the state as they were.
        let mut work = Vec::with_capacity(params.len());
        let mut idle = Vec::new();
        for &(name, var) in params {
            let Some(grad) = grads.get(var) else {
                if R::COUNTS_CALLS {
                    idle.push(name);
                }
                continue;
            };
            check_grad::<R>(name, var, grad)?;
            work.push((name, var, grad));
        }
        for &name in &idle {
            self.ensure_state(name)?;
        }
        let transform = self.transform;
        let mut lrs = Vec::with_capacity(work.len());
        for &(name, var, _) in &work {
            let fast = self.fast(var);
            let st = self.ensure_state(name)?;
            // A rate set from outside (`set_learning_rate`, a map, a loaded state) is checked
            // here, as the configured ones are at construction.
            let lr = transform.apply(R::lr(&st.options));
            if !(lr >= 0.0 && lr.is_finite()) {
                return Err(OptimError::InvalidOption {
                    optimizer: R::NAME,
                    param: Some(name.to_string()),
                    option: "lr",
                    value: lr,
                    expected: "a finite scheduled lr ≥ 0 (configured lr through the LrTransform)",
                });
            }
            place::<R>(name, st, var, fast)?;
            lrs.push(lr);
        }
        for name in idle {
            self.ensure_state(name)?.calls += 1;
        }
        for ((name, var, grad), lr) in work.into_iter().zip(lrs) {
            let fast = self.fast(var);
            let st = self.ensure_state(name)?;
            let step = st.step + 1;
            let calls = if R::COUNTS_CALLS { st.calls + 1 } else { step };
            let c = R::coeffs(&st.options, lr, step, calls);
            if fast {
                // The in-place op cannot read a gradient that shares the parameter's storage
                // (a GradStore built by hand); read a copy, the gradient as it was.
                let grad = if same_storage(var, grad) {
                    grad.copy()?
                } else {
                    grad.contiguous()?
                };
                match &mut st.moments {
                    Moments::F32(bufs) => {
                        var.inplace_op2(&grad, &HostStep::<R, f32>::new(c, bufs))?
                    }
                    Moments::F64(bufs) => {
                        var.inplace_op2(&grad, &HostStep::<R, f64>::new(c, bufs))?
                    }
                    _ => return Err(misplaced::<R>(name)),
                }
            } else {
                let Moments::Tensors(bufs) = &mut st.moments else {
                    return Err(misplaced::<R>(name));
                };
                let x = R::composed(&c, var.as_tensor(), grad, bufs)?;
                var.set(&x)?;
            }
            st.step = step;
            st.calls = calls;
        }
        Ok(())
    }

    fn state_dict(&self) -> Result<StateDict> {
        let mut out = StateDict::new();
        out.insert(
            LR_TRANSFORM_KEY,
            Tensor::new(&self.transform.to_array(), &Device::Cpu)?,
        );
        for (name, st) in &self.state {
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

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
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
        let mut loaded = Vec::with_capacity(entries.len());
        for (param, bufs) in &entries {
            let step_key = param_key(param, STEP);
            let step = match bufs.get(STEP) {
                Some(t) => scalar_count(R::NAME, &step_key, t)?,
                None => return Err(bad(&step_key, "missing".to_string())),
            };
            let calls = if R::COUNTS_CALLS {
                let key = param_key(param, LR_DECAYS);
                match bufs.get(LR_DECAYS) {
                    Some(t) => scalar_count(R::NAME, &key, t)?,
                    None => return Err(bad(&key, "missing".to_string())),
                }
            } else {
                step
            };
            let options = self.ensure_state(param)?.options.clone();
            let names = R::buffers(&options);
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
            loaded.push((param.to_string(), step, calls, shape, tensors));
        }
        for st in self.state.values_mut() {
            st.step = 0;
            st.calls = 0;
            st.shape = None;
            st.moments = Moments::Zero;
        }
        for (param, step, calls, shape, tensors) in loaded {
            let st = self.ensure_state(&param)?;
            st.step = step;
            st.calls = calls;
            st.shape = shape;
            st.moments = if tensors.is_empty() {
                Moments::Zero
            } else {
                Moments::Tensors(tensors)
            };
        }
        if let Some(t) = transform {
            self.transform = t;
        }
        Ok(())
    }
}

/// No two entries name the same parameter or hold the same Var.
fn distinct<R: Rule>(params: &[(&str, &Var)]) -> Result<()> {
    let mut names = HashSet::with_capacity(params.len());
    let mut vars = HashMap::with_capacity(params.len());
    for &(name, var) in params {
        if !names.insert(name) {
            return Err(OptimError::DuplicateParam {
                optimizer: R::NAME,
                param: name.to_string(),
            });
        }
        if let Some(other) = vars.insert(var.as_tensor().id(), name) {
            return Err(OptimError::SharedParam {
                optimizer: R::NAME,
                param: name.to_string(),
                other: other.to_string(),
            });
        }
    }
    Ok(())
}

/// A gradient has its parameter's shape, dtype and device.
fn check_grad<R: Rule>(name: &str, var: &Var, grad: &Tensor) -> Result<()> {
    if grad.dims() != var.dims() {
        return Err(OptimError::GradShape {
            optimizer: R::NAME,
            param: name.to_string(),
            expected: var.dims().to_vec(),
            found: grad.dims().to_vec(),
        });
    }
    if grad.dtype() != var.dtype() {
        return Err(OptimError::GradDType {
            optimizer: R::NAME,
            param: name.to_string(),
            expected: var.dtype(),
            found: grad.dtype(),
        });
    }
    if !grad.device().same_device(var.device()) {
        return Err(OptimError::GradDevice {
            optimizer: R::NAME,
            param: name.to_string(),
            expected: var.device().location(),
            found: grad.device().location(),
        });
    }
    Ok(())
}

/// Whether two tensors share one storage (each read lock is released before the next).
fn same_storage(a: &Tensor, b: &Tensor) -> bool {
    let pa: *const Storage = &*a.storage_and_layout().0;
    let pb: *const Storage = &*b.storage_and_layout().0;
    std::ptr::eq(pa, pb)
}

fn misplaced<R: Rule>(name: &str) -> OptimError {
    OptimError::State {
        optimizer: R::NAME,
        key: name.to_string(),
        message: "buffers not placed for this update path".to_string(),
    }
}

/// Put a parameter's buffers in the form its update path needs: host vectors of its dtype
/// for the fast path, tensors on its device and of its dtype otherwise; zeros where none
/// exist yet. Checks the buffers' count and shape against the parameter.
fn place<R: Rule>(
    name: &str,
    st: &mut ParamState<R::Options>,
    var: &Var,
    fast: bool,
) -> Result<()> {
    let n = R::buffers(&st.options).len();
    let dims = var.dims();
    if let Some(shape) = &st.shape
        && shape.as_slice() != dims
        && !matches!(st.moments, Moments::Zero)
    {
        return Err(OptimError::State {
            optimizer: R::NAME,
            key: name.to_string(),
            message: format!("state has shape {shape:?}, the parameter {dims:?}"),
        });
    }
    st.shape = Some(dims.to_vec());
    let len = var.elem_count();
    let ready = match (&st.moments, fast, var.dtype()) {
        (Moments::F32(b), true, DType::F32) => b.len() == n && b.iter().all(|v| v.len() == len),
        (Moments::F64(b), true, DType::F64) => b.len() == n && b.iter().all(|v| v.len() == len),
        (Moments::Tensors(t), false, dtype) => {
            t.len() == n
                && t.iter()
                    .all(|t| t.dtype() == dtype && t.device().same_device(var.device()))
        }
        _ => false,
    };
    if ready {
        return Ok(());
    }
    // Any other form becomes tensors first (zeros, host vectors, loaded entries) …
    let tensors: Vec<Tensor> = match std::mem::replace(&mut st.moments, Moments::Zero) {
        Moments::Zero => (0..n)
            .map(|_| var.zeros_like())
            .collect::<candle_core::Result<_>>()?,
        Moments::F32(b) => b
            .into_iter()
            .map(|v| Tensor::from_vec(v, dims, &Device::Cpu))
            .collect::<candle_core::Result<_>>()?,
        Moments::F64(b) => b
            .into_iter()
            .map(|v| Tensor::from_vec(v, dims, &Device::Cpu))
            .collect::<candle_core::Result<_>>()?,
        Moments::Tensors(t) => t,
    };
    if tensors.len() != n {
        return Err(OptimError::State {
            optimizer: R::NAME,
            key: name.to_string(),
            message: format!("{} buffers, expected {n}", tensors.len()),
        });
    }
    let tensors: Vec<Tensor> = tensors
        .into_iter()
        .map(|t| t.to_dtype(var.dtype())?.to_device(var.device()))
        .collect::<candle_core::Result<_>>()?;
    // … then host vectors where the fast path runs.
    st.moments = match (fast, var.dtype()) {
        (true, DType::F32) => f32::wrap(host_vecs(&tensors)?),
        (true, DType::F64) => f64::wrap(host_vecs(&tensors)?),
        _ => Moments::Tensors(tensors),
    };
    Ok(())
}

fn host_vecs<T: Real>(tensors: &[Tensor]) -> candle_core::Result<Vec<Vec<T>>> {
    tensors
        .iter()
        .map(|t| t.flatten_all()?.to_vec1::<T>())
        .collect()
}
