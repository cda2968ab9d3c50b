//! The machinery every optimizer shares: named parameters, per-parameter options and lazily
//! created state, the two update paths (an in-place kernel over contiguous CPU f32/f64
//! storage, and composed candle ops for every other device and dtype), and state dicts.
//!
//! An optimizer is a [`Rule`]: its options, the per-step coefficients, the names of its
//! buffers, and the element-wise update written twice (host loop and tensor ops). The public
//! types (`Adam`, …) wrap an [`Engine`] of their rule, through [`optimizer_type!`].

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, Device, InplaceOp2, Layout, Tensor, Var};

use crate::error::{OptimError, Result};
use crate::optimizer::LrTransform;
use crate::state::{
    LR_TRANSFORM_KEY, PARAM_PREFIX, STEP, StateDict, count_tensor, param_key, scalar_count,
    split_param_key,
};

/// A float type of the CPU fast path (f32, f64).
pub(crate) trait Real: candle_core::WithDType {
    fn sqrt(self) -> Self;
    fn wrap(bufs: Vec<Vec<Self>>) -> Moments;
    fn storage_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
}

macro_rules! real {
    ($t:ty, $variant:ident) => {
        impl Real for $t {
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn wrap(bufs: Vec<Vec<Self>>) -> Moments {
                Moments::$variant(bufs)
            }
            fn storage_mut(s: &mut CpuStorage) -> Option<&mut [Self]> {
                match s {
                    CpuStorage::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}
real!(f32, F32);
real!(f64, F64);

/// One optimizer's update rule.
pub(crate) trait Rule: 'static {
    /// The optimizer's name, as torch/Pyro spell it.
    const NAME: &'static str;
    type Options: Clone + std::fmt::Debug + Send + Sync + 'static;
    /// Per-step scalars, computed in f64 once per parameter and step.
    type Coeffs: Copy;

    fn validate(options: &Self::Options, param: Option<&str>) -> Result<()>;
    /// The configured learning rate.
    fn lr(options: &Self::Options) -> f64;
    /// The buffers this configuration keeps, under torch's names.
    fn buffers(options: &Self::Options) -> &'static [&'static str];
    /// The scalars of step `step` (1 for the first) at learning rate `lr` (already through the
    /// scheduler's map).
    fn coeffs(options: &Self::Options, lr: f64, step: u64) -> Self::Coeffs;
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
        if self.params.iter().any(|(n, _)| n == name) {
            return Err(OptimError::DuplicateParam {
                optimizer: R::NAME,
                param: name.to_string(),
            });
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

    pub(crate) fn step(&mut self, grads: &GradStore) -> Result<()> {
        let named: Vec<(&str, &Var)> = self.params.iter().map(|(n, v)| (n.as_str(), v)).collect();
        // Names were checked unique by `add_param`.
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
        check_names: bool,
    ) -> Result<()> {
        if check_names && params.len() > 1 {
            let mut seen = HashSet::with_capacity(params.len());
            for (name, _) in params {
                if !seen.insert(*name) {
                    return Err(OptimError::DuplicateParam {
                        optimizer: R::NAME,
                        param: name.to_string(),
                    });
                }
            }
        }
        // Check everything and place the buffers before any parameter moves, so an error
        // leaves the parameters and the state as they were.
        let mut work = Vec::with_capacity(params.len());
        for &(name, var) in params {
            let Some(grad) = grads.get(var) else {
                continue;
            };
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
            work.push((name, var, grad));
        }
        for &(name, var, _) in &work {
            let fast = self.fast(var);
            let st = self.ensure_state(name)?;
            place::<R>(name, st, var, fast)?;
        }
        for (name, var, grad) in work {
            let fast = self.fast(var);
            let transform = self.transform;
            let st = self.ensure_state(name)?;
            st.step += 1;
            let lr = transform.apply(R::lr(&st.options));
            let c = R::coeffs(&st.options, lr, st.step);
            if fast {
                let grad = grad.contiguous()?;
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
            if st.step == 0 {
                continue;
            }
            out.insert(param_key(name, STEP), count_tensor(st.step)?);
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
            let options = self.ensure_state(param)?.options.clone();
            let names = R::buffers(&options);
            for buf in bufs.keys() {
                if *buf != STEP && !names.contains(buf) {
                    return Err(bad(
                        &param_key(param, buf),
                        format!("{} with these options keeps only {names:?}", R::NAME),
                    ));
                }
            }
            let mut tensors = Vec::with_capacity(names.len());
            for buf in names {
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
            loaded.push((param.to_string(), step, shape, tensors));
        }
        for st in self.state.values_mut() {
            st.step = 0;
            st.shape = None;
            st.moments = Moments::Zero;
        }
        for (param, step, shape, tensors) in loaded {
            let st = self.ensure_state(&param)?;
            st.step = step;
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

/// The in-place fast path: one pass over the parameter's contiguous CPU storage, reading the
/// gradient and updating the host buffers alongside.
struct HostStep<'a, R: Rule, T: Real> {
    coeffs: R::Coeffs,
    bufs: RefCell<&'a mut Vec<Vec<T>>>,
}

impl<'a, R: Rule, T: Real> HostStep<'a, R, T> {
    fn new(coeffs: R::Coeffs, bufs: &'a mut Vec<Vec<T>>) -> Self {
        HostStep {
            coeffs,
            bufs: RefCell::new(bufs),
        }
    }
}

impl<R: Rule, T: Real> InplaceOp2 for HostStep<'_, R, T> {
    fn name(&self) -> &'static str {
        R::NAME
    }

    fn cpu_fwd(
        &self,
        x: &mut CpuStorage,
        xl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<()> {
        let (Some((x0, x1)), Some((g0, g1))) = (xl.contiguous_offsets(), gl.contiguous_offsets())
        else {
            candle_core::bail!("{}: in-place step needs contiguous tensors", R::NAME)
        };
        let x = T::storage_mut(x)
            .ok_or_else(|| candle_core::Error::Msg(format!("{}: parameter dtype", R::NAME)))?;
        let g = T::cpu_storage_as_slice(g)?;
        let mut bufs = self.bufs.borrow_mut();
        let (x, g) = (&mut x[x0..x1], &g[g0..g1]);
        if g.len() != x.len() || bufs.iter().any(|b| b.len() != x.len()) {
            candle_core::bail!("{}: in-place step over buffers of unequal lengths", R::NAME)
        }
        R::host::<T>(&self.coeffs, x, g, bufs.as_mut_slice());
        Ok(())
    }
}

/// The public optimizer types: constructors, accessors, and the [`Optimizer`] and
/// `candle_nn::Optimizer` impls over an [`Engine`].
macro_rules! optimizer_type {
    ($ty:ident, $rule:ty, $opts:ident) => {
        impl $ty {
            #[doc = concat!("A ", stringify!($ty), " over the named parameters `params`, all with `options`.")]
            ///
            /// ```
            /// use candle_core::{Device, Var};
            #[doc = concat!("use vi_optim::{", stringify!($ty), ", ", stringify!($opts), "};")]
            ///
            /// let w = Var::new(&[1.0f32, 2.0], &Device::Cpu)?;
            #[doc = concat!("let opt = ", stringify!($ty), "::new([(\"w\", w)], ", stringify!($opts), "::default())?;")]
            /// # Ok::<(), vi_optim::OptimError>(())
            /// ```
            pub fn new<S: Into<String>>(
                params: impl IntoIterator<Item = (S, candle_core::Var)>,
                options: $opts,
            ) -> $crate::error::Result<Self> {
                let params = params.into_iter().map(|(n, v)| (n.into(), v)).collect();
                Ok($ty($crate::engine::Engine::new(params, options, None)?))
            }

            #[doc = concat!("A ", stringify!($ty), " with no parameters yet: add them with [`add_param`](crate::Optimizer::add_param) or pass them to [`step_params`](crate::Optimizer::step_params).")]
            ///
            /// ```
            #[doc = concat!("use vi_optim::{", stringify!($ty), ", ", stringify!($opts), ", Optimizer};")]
            ///
            #[doc = concat!("let opt = ", stringify!($ty), "::empty(", stringify!($opts), "::default())?;")]
            /// assert!(opt.params().is_empty());
            /// # Ok::<(), vi_optim::OptimError>(())
            /// ```
            pub fn empty(options: $opts) -> $crate::error::Result<Self> {
                Ok($ty($crate::engine::Engine::new(Vec::new(), options, None)?))
            }

            /// Per-parameter options, as Pyro's callable `optim_args`: `options(name, &defaults)`
            /// gives each parameter's options when the parameter is first seen (here, or later
            /// through `add_param`/`step_params`), and they stay with it.
            ///
            /// ```
            /// use candle_core::{Device, Var};
            #[doc = concat!("use vi_optim::{", stringify!($ty), ", ", stringify!($opts), ", Optimizer};")]
            ///
            /// let w = Var::new(&[1.0f32], &Device::Cpu)?;
            /// let b = Var::new(&[0.0f32], &Device::Cpu)?;
            #[doc = concat!("let opt = ", stringify!($ty), "::with_param_options(")]
            ///     [("enc.w", w), ("dec.b", b)],
            #[doc = concat!("    ", stringify!($opts), "::default(),")]
            #[doc = concat!("    |name, d| if name.starts_with(\"enc.\") { ", stringify!($opts), " { lr: 0.5, ..d.clone() } } else { d.clone() },")]
            /// )?;
            /// assert_eq!(opt.param_options("enc.w").map(|o| o.lr), Some(0.5));
            /// # Ok::<(), vi_optim::OptimError>(())
            /// ```
            pub fn with_param_options<S: Into<String>>(
                params: impl IntoIterator<Item = (S, candle_core::Var)>,
                defaults: $opts,
                options: impl Fn(&str, &$opts) -> $opts + Send + Sync + 'static,
            ) -> $crate::error::Result<Self> {
                let params = params.into_iter().map(|(n, v)| (n.into(), v)).collect();
                Ok($ty($crate::engine::Engine::new(
                    params,
                    defaults,
                    Some(std::sync::Arc::new(options)),
                )?))
            }

            /// The default options.
            ///
            /// ```
            #[doc = concat!("use vi_optim::{", stringify!($ty), ", ", stringify!($opts), "};")]
            ///
            #[doc = concat!("let opt = ", stringify!($ty), "::empty(", stringify!($opts), " { lr: 0.1, ..Default::default() })?;")]
            /// assert_eq!(opt.options().lr, 0.1);
            /// # Ok::<(), vi_optim::OptimError>(())
            /// ```
            pub fn options(&self) -> &$opts {
                self.0.defaults()
            }

            /// The options of the parameter `name`, once it has been seen.
            ///
            /// ```
            /// use candle_core::{Device, Var};
            #[doc = concat!("use vi_optim::{", stringify!($ty), ", ", stringify!($opts), "};")]
            ///
            /// let w = Var::new(&[1.0f32], &Device::Cpu)?;
            #[doc = concat!("let opt = ", stringify!($ty), "::new([(\"w\", w)], ", stringify!($opts), "::default())?;")]
            /// assert!(opt.param_options("w").is_some());
            /// assert!(opt.param_options("v").is_none());
            /// # Ok::<(), vi_optim::OptimError>(())
            /// ```
            pub fn param_options(&self, name: &str) -> Option<&$opts> {
                self.0.param_options(name)
            }

            /// How many steps the parameter `name` has taken (torch's `state["step"]`).
            ///
            /// ```
            /// use candle_core::{Device, Var};
            #[doc = concat!("use vi_optim::{", stringify!($ty), ", ", stringify!($opts), ", Optimizer};")]
            ///
            /// let w = Var::new(&[1.0f32], &Device::Cpu)?;
            #[doc = concat!("let mut opt = ", stringify!($ty), "::new([(\"w\", w.clone())], ", stringify!($opts), "::default())?;")]
            /// opt.step(&w.as_tensor().sqr()?.sum_all()?.backward()?)?;
            /// assert_eq!(opt.step_count("w"), Some(1));
            /// # Ok::<(), vi_optim::OptimError>(())
            /// ```
            pub fn step_count(&self, name: &str) -> Option<u64> {
                self.0.step_count(name)
            }

            /// Whether contiguous f32/f64 parameters on the CPU are updated in place by one
            /// fused loop (the default, `true`) or by composed candle ops like every other
            /// device. Both give the same trajectory up to rounding.
            ///
            /// ```
            #[doc = concat!("use vi_optim::{", stringify!($ty), ", ", stringify!($opts), "};")]
            ///
            #[doc = concat!("let mut opt = ", stringify!($ty), "::empty(", stringify!($opts), "::default())?;")]
            /// opt.set_cpu_fast_path(false);
            /// # Ok::<(), vi_optim::OptimError>(())
            /// ```
            pub fn set_cpu_fast_path(&mut self, on: bool) {
                self.0.set_fast_path(on)
            }
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("options", self.0.defaults())
                    .field("params", &self.0.params().iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>())
                    .field("lr_transform", &self.0.transform())
                    .finish()
            }
        }

        impl $crate::optimizer::Optimizer for $ty {
            fn name(&self) -> &'static str {
                <$rule as $crate::engine::Rule>::NAME
            }
            fn step_params(
                &mut self,
                params: &[(&str, &candle_core::Var)],
                grads: &candle_core::backprop::GradStore,
            ) -> $crate::error::Result<()> {
                self.0.step_params(params, grads)
            }
            fn step(&mut self, grads: &candle_core::backprop::GradStore) -> $crate::error::Result<()> {
                self.0.step(grads)
            }
            fn add_param(&mut self, name: &str, var: candle_core::Var) -> $crate::error::Result<()> {
                self.0.add_param(name, var)
            }
            fn params(&self) -> &[(String, candle_core::Var)] {
                self.0.params()
            }
            fn learning_rate(&self) -> f64 {
                self.0.learning_rate()
            }
            fn lr_transform(&self) -> $crate::optimizer::LrTransform {
                self.0.transform()
            }
            fn set_lr_transform(&mut self, transform: $crate::optimizer::LrTransform) {
                self.0.set_transform(transform)
            }
            fn state_dict(&self) -> $crate::error::Result<$crate::state::StateDict> {
                self.0.state_dict()
            }
            fn load_state_dict(&mut self, state: &$crate::state::StateDict) -> $crate::error::Result<()> {
                self.0.load_state_dict(state)
            }
        }

        /// For plain candle code: parameters are named by position (`"0"`, `"1"`, …) and
        /// `set_learning_rate` sets every parameter's rate.
        impl candle_nn::Optimizer for $ty {
            type Config = $opts;

            fn new(vars: Vec<candle_core::Var>, config: $opts) -> candle_core::Result<Self> {
                Ok($ty::new(
                    vars.into_iter().enumerate().map(|(i, v)| (i.to_string(), v)),
                    config,
                )?)
            }
            fn step(&mut self, grads: &candle_core::backprop::GradStore) -> candle_core::Result<()> {
                Ok(self.0.step(grads)?)
            }
            fn learning_rate(&self) -> f64 {
                self.0.learning_rate()
            }
            fn set_learning_rate(&mut self, lr: f64) {
                self.0.set_transform($crate::optimizer::LrTransform::constant(lr))
            }
        }
    };
}
pub(crate) use optimizer_type;
