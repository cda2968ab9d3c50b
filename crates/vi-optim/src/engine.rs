//! The machinery every optimizer shares: named parameters, per-parameter options and lazily
//! created state, and the two update paths (an in-place kernel over contiguous CPU f32/f64
//! storage, and composed candle ops for every other device and dtype).
//!
//! The public types (`Adam`, …) wrap an [`Engine`] of their [`Rule`], through
//! `optimizer_type!`. What a state dict holds is read and written in `state.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Storage, Tensor, Var};

use crate::error::{OptimError, Result};
use crate::inplace::HostStep;
use crate::lr_transform::LrTransform;
use crate::rule::{Moments, Real, Rule};
use crate::state::{self, Loaded, ParamState, StateDict};

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
    /// The options of a parameter first seen now, checked.
    fn new_options(&self, name: &str) -> Result<R::Options> {
        let options = match &self.per_param {
            Some(f) => f(name, &self.defaults),
            None => self.defaults.clone(),
        };
        R::validate(&options, Some(name))?;
        Ok(options)
    }

    fn ensure_state(&mut self, name: &str) -> Result<&mut ParamState<R::Options>> {
        if !self.state.contains_key(name) {
            let options = self.new_options(name)?;
            self.state
                .insert(name.to_string(), ParamState::new(options));
        }
        self.state_mut(name)
    }

    fn state_mut(&mut self, name: &str) -> Result<&mut ParamState<R::Options>> {
        self.state.get_mut(name).ok_or_else(|| vanished::<R>(name))
    }

    fn fast(&self, var: &Var) -> bool {
        self.fast_path
            && var.device().is_cpu()
            && var.is_contiguous()
            && matches!(var.dtype(), DType::F32 | DType::F64)
    }

    /// The rate the parameter `name` steps with on its `calls`-th call: its configured rate
    /// through the map (and the rule's decay), checked here, since a map set from outside or
    /// by a schedule is not checked where it is set.
    fn rate(&self, name: &str, options: &R::Options, calls: u64) -> Result<f64> {
        let valid = |lr: f64| lr >= 0.0 && lr.is_finite();
        let base = R::lr(options);
        let scheduled = self.transform.apply(base);
        let lr = R::decayed_lr(options, scheduled, calls);
        if valid(lr) {
            return Ok(lr);
        }
        let lr_decay = valid(scheduled);
        Err(OptimError::InvalidLearningRate {
            optimizer: R::NAME,
            param: name.to_string(),
            value: if lr_decay { lr } else { scheduled },
            base,
            transform: self.transform,
            lr_decay,
            scheduler: None,
        })
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
        // Check everything before any parameter moves or any state changes, so an error
        // leaves both as they were: the gradients, the options of parameters seen for the
        // first time, the rates.
        let mut work = Vec::with_capacity(params.len());
        let mut idle = Vec::new();
        for &(name, var) in params {
            match grads.get(var) {
                Some(grad) => {
                    check_grad::<R>(name, var, grad)?;
                    work.push((name, var, grad));
                }
                None if R::COUNTS_CALLS => idle.push(name),
                None => {}
            }
        }
        let mut fresh = HashMap::new();
        for name in idle.iter().chain(work.iter().map(|(name, ..)| name)) {
            if !self.state.contains_key(*name) {
                fresh.insert(*name, self.new_options(name)?);
            }
        }
        let mut rates = Vec::with_capacity(work.len());
        for &(name, ..) in &work {
            let (options, calls) = match (self.state.get(name), fresh.get(name)) {
                (Some(st), _) => (&st.options, st.calls),
                (None, Some(options)) => (options, 0),
                (None, None) => return Err(vanished::<R>(name)),
            };
            rates.push(self.rate(name, options, calls + 1)?);
        }
        for (name, options) in fresh {
            self.state
                .insert(name.to_string(), ParamState::new(options));
        }
        // Place the buffers (which checks their shapes) before any parameter moves.
        for &(name, var, _) in &work {
            let fast = self.fast(var);
            place::<R>(name, self.state_mut(name)?, var, fast)?;
        }
        for name in idle {
            self.state_mut(name)?.calls += 1;
        }
        for ((name, var, grad), lr) in work.into_iter().zip(rates) {
            let fast = self.fast(var);
            let st = self.state_mut(name)?;
            let step = st.step + 1;
            let calls = if R::COUNTS_CALLS { st.calls + 1 } else { step };
            let c = R::coeffs(&st.options, lr, step);
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
        state::write::<R>(&self.state, self.transform)
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        let loaded =
            Loaded::read::<R>(state, |param| Ok(self.ensure_state(param)?.options.clone()))?;
        if let Some(t) = loaded.restore::<R>(&mut self.state)? {
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

fn vanished<R: Rule>(name: &str) -> OptimError {
    OptimError::State {
        optimizer: R::NAME,
        key: name.to_string(),
        message: "state vanished".to_string(),
    }
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
