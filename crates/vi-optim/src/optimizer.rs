//! The [`Optimizer`] trait.

use std::path::Path;

use candle_core::Var;
use candle_core::backprop::GradStore;

use crate::error::Result;
use crate::lr_transform::LrTransform;
use crate::state::StateDict;

/// A first-order optimizer over named candle [`Var`]s, with per-parameter state created
/// lazily.
///
/// Two ways to step:
/// - [`step`](Optimizer::step) updates the parameters the optimizer holds (given at
///   construction or through [`add_param`](Optimizer::add_param));
/// - [`step_params`](Optimizer::step_params) updates the named parameters the caller passes
///   with the gradients, as a param store that grows during training does (Pyro's
///   `PyroOptim`): a name seen for the first time gets fresh state and its own options.
///
/// State is keyed by parameter name. A parameter without a gradient in the [`GradStore`] is
/// skipped and its step count does not advance (torch's `p.grad is None`); only
/// [`ClippedAdam`](crate::ClippedAdam) counts the call, to decay its learning rate as Pyro's
/// does.
///
/// The trait is object safe, so `Box<dyn Optimizer>` works; schedulers
/// ([`Scheduler`](crate::Scheduler)) wrap any optimizer and are optimizers themselves.
///
/// ```
/// use candle_core::{DType, Device, Tensor, Var};
/// use vi_optim::{Adam, AdamOptions, Optimizer};
///
/// let x = Var::new(&[1.0f64, -2.0], &Device::Cpu)?;
/// let mut opt: Box<dyn Optimizer> =
///     Box::new(Adam::new([("x", x.clone())], AdamOptions { lr: 0.1, ..Default::default() })?);
/// for _ in 0..100 {
///     let loss = x.as_tensor().sqr()?.sum_all()?;
///     opt.step(&loss.backward()?)?;
/// }
/// assert!(x.as_tensor().abs()?.max(0)?.to_scalar::<f64>()? < 0.1);
/// # Ok::<(), vi_optim::OptimError>(())
/// ```
///
/// # With a param store
///
/// The loop of a store of named parameters that grows as a model first uses a name (Pyro's
/// `ParamStore` with `SVI`): each step passes exactly the parameters it touched to
/// [`step_params`](Optimizer::step_params); the parameters and the optimizer state go to one
/// safetensors file ([`StateDict::prefixed`] and [`StateDict::strip_prefix`] keep them
/// apart), from which a fresh store and a fresh optimizer resume bit for bit.
///
/// ```
/// use std::collections::BTreeMap;
/// use candle_core::{Device, Tensor, Var};
/// use vi_optim::{ClippedAdam, ClippedAdamOptions, Optimizer, StateDict};
///
/// fn svi_step(store: &mut BTreeMap<String, Var>, opt: &mut dyn Optimizer, k: usize)
///     -> vi_optim::Result<()> {
///     let touched: &[&str] = if k < 2 { &["loc"] } else { &["loc", "scale"] };
///     let mut loss = Tensor::new(0.0f64, &Device::Cpu)?;
///     for name in touched {
///         if !store.contains_key(*name) {
///             // First use: the store creates the parameter, the optimizer its state.
///             store.insert(name.to_string(), Var::new(&[1.0f64, -1.0], &Device::Cpu)?);
///         }
///         loss = (loss + store[*name].as_tensor().sqr()?.sum_all()?)?;
///     }
///     let params: Vec<(&str, &Var)> = touched.iter().map(|n| (*n, &store[*n])).collect();
///     opt.step_params(&params, &loss.backward()?)
/// }
/// let options = ClippedAdamOptions { lr: 0.1, lrd: 0.99, ..Default::default() };
///
/// let (mut store, mut opt) = (BTreeMap::new(), ClippedAdam::empty(options.clone())?);
/// for k in 0..5 {
///     svi_step(&mut store, &mut opt, k)?;
/// }
///
/// // The same 5 steps with a save after 3 and a resume from the file.
/// let (mut first, mut opt1) = (BTreeMap::new(), ClippedAdam::empty(options.clone())?);
/// for k in 0..3 {
///     svi_step(&mut first, &mut opt1, k)?;
/// }
/// let mut file = opt1.state_dict()?.prefixed("optim.");
/// for (name, var) in &first {
///     file.insert(format!("param.{name}"), var.as_tensor().copy()?);
/// }
/// let path = std::env::temp_dir().join("vi_optim_doc_param_store.safetensors");
/// file.save(&path)?;
///
/// let file = StateDict::load(&path)?;
/// let mut resumed = BTreeMap::new();
/// for (name, t) in file.strip_prefix("param.").iter() {
///     resumed.insert(name.to_string(), Var::from_tensor(t)?);
/// }
/// let mut opt2 = ClippedAdam::empty(options)?;
/// opt2.load_state_dict(&file.strip_prefix("optim."))?;
/// for k in 3..5 {
///     svi_step(&mut resumed, &mut opt2, k)?;
/// }
/// for (name, var) in &store {
///     assert_eq!(var.as_tensor().to_vec1::<f64>()?, resumed[name].as_tensor().to_vec1::<f64>()?);
/// }
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), vi_optim::OptimError>(())
/// ```
pub trait Optimizer {
    /// The optimizer's name (`"Adam"`, `"SGD"`, …).
    fn name(&self) -> &'static str;

    /// One step on `params`, the current named parameters, with their gradients from `grads`.
    ///
    /// Every gradient is checked (shape, dtype, device) before any parameter moves, so an error leaves
    /// every parameter and all state as they were.
    ///
    /// ```
    /// use candle_core::{Device, Var};
    /// use vi_optim::{Optimizer, Sgd, SgdOptions};
    ///
    /// let w = Var::new(&[1.0f64], &Device::Cpu)?;
    /// let mut opt = Sgd::empty(SgdOptions { lr: 0.5, ..Default::default() })?;
    /// let grads = w.as_tensor().sqr()?.sum_all()?.backward()?; // d/dw w² = 2
    /// opt.step_params(&[("w", &w)], &grads)?;
    /// assert_eq!(w.as_tensor().to_vec1::<f64>()?, [0.0]);
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    fn step_params(&mut self, params: &[(&str, &Var)], grads: &GradStore) -> Result<()>;

    /// One step on the parameters this optimizer holds.
    ///
    /// ```
    /// use candle_core::{Device, Var};
    /// use vi_optim::{Optimizer, Sgd, SgdOptions};
    ///
    /// let w = Var::new(&[1.0f64], &Device::Cpu)?;
    /// let mut opt = Sgd::new([("w", w.clone())], SgdOptions { lr: 0.25, ..Default::default() })?;
    /// opt.step(&w.as_tensor().sqr()?.sum_all()?.backward()?)?;
    /// assert_eq!(w.as_tensor().to_vec1::<f64>()?, [0.5]);
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    fn step(&mut self, grads: &GradStore) -> Result<()>;

    /// Adds a parameter to the ones [`step`](Optimizer::step) updates. Its options are chosen
    /// now (by name, when the optimizer has per-parameter options); its state is created at
    /// its first step.
    ///
    /// ```
    /// use candle_core::{Device, Var};
    /// use vi_optim::{Adam, AdamOptions, Optimizer};
    ///
    /// let mut opt = Adam::empty(AdamOptions::default())?;
    /// opt.add_param("b", Var::zeros(3, candle_core::DType::F32, &Device::Cpu)?)?;
    /// assert_eq!(opt.params().len(), 1);
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    fn add_param(&mut self, name: &str, var: Var) -> Result<()>;

    /// The parameters this optimizer holds, in the order they were added.
    ///
    /// ```
    /// use candle_core::{Device, Var};
    /// use vi_optim::{Adam, AdamOptions, Optimizer};
    ///
    /// let opt = Adam::new([("w", Var::new(&[0f32], &Device::Cpu)?)], AdamOptions::default())?;
    /// assert_eq!(opt.params()[0].0, "w");
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    fn params(&self) -> &[(String, Var)];

    /// The learning rate a parameter with the default options steps with now (the configured
    /// `lr` through the current [`LrTransform`]).
    ///
    /// ```
    /// use vi_optim::{Adam, AdamOptions, Optimizer};
    ///
    /// let opt = Adam::empty(AdamOptions { lr: 0.01, ..Default::default() })?;
    /// assert_eq!(opt.learning_rate(), 0.01);
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    fn learning_rate(&self) -> f64;

    /// The largest learning rate that the default options or any parameter seen so far
    /// steps with now: what [`ReduceLrOnPlateau`](crate::ReduceLrOnPlateau) judges a
    /// reduction on. The default implementation returns [`learning_rate`](Optimizer::learning_rate).
    ///
    /// ```
    /// use candle_core::{Device, Var};
    /// use vi_optim::{Optimizer, Sgd, SgdOptions};
    ///
    /// let w = Var::new(&[0f32], &Device::Cpu)?;
    /// let opt = Sgd::with_param_options([("w", w)], SgdOptions { lr: 0.1, ..Default::default() },
    ///     |_, d| SgdOptions { lr: 0.5, ..d.clone() })?;
    /// assert_eq!((opt.learning_rate(), opt.max_learning_rate()), (0.1, 0.5));
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    fn max_learning_rate(&self) -> f64 {
        self.learning_rate()
    }

    /// Sets every parameter's learning rate to `lr` ([`LrTransform::constant`]), as
    /// `candle_nn::Optimizer::set_learning_rate`.
    ///
    /// ```
    /// use vi_optim::{Adam, AdamOptions, Optimizer};
    ///
    /// let mut opt = Adam::empty(AdamOptions::default())?;
    /// opt.set_learning_rate(0.5);
    /// assert_eq!(opt.learning_rate(), 0.5);
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    fn set_learning_rate(&mut self, lr: f64) {
        self.set_lr_transform(LrTransform::constant(lr));
    }

    /// The current map from configured to used learning rates.
    ///
    /// ```
    /// use vi_optim::{Adam, AdamOptions, LrTransform, Optimizer};
    ///
    /// let opt = Adam::empty(AdamOptions::default())?;
    /// assert_eq!(opt.lr_transform(), LrTransform::IDENTITY);
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    fn lr_transform(&self) -> LrTransform;

    /// Sets the map from configured to used learning rates (what schedulers call).
    ///
    /// ```
    /// use vi_optim::{Adam, AdamOptions, LrTransform, Optimizer};
    ///
    /// let mut opt = Adam::empty(AdamOptions { lr: 0.1, ..Default::default() })?;
    /// opt.set_lr_transform(LrTransform::scaled(0.5));
    /// assert_eq!(opt.learning_rate(), 0.05);
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    fn set_lr_transform(&mut self, transform: LrTransform);

    /// A snapshot of the optimizer's state: per parameter its step count and buffers (torch's
    /// names: `exp_avg`, `exp_avg_sq`, `max_exp_avg_sq`, `momentum_buffer`), and the learning
    /// rate map. The tensors are copies: later steps do not change them.
    ///
    /// ```
    /// use candle_core::{Device, Var};
    /// use vi_optim::{Adam, AdamOptions, Optimizer};
    ///
    /// let x = Var::new(&[1.0f64], &Device::Cpu)?;
    /// let mut opt = Adam::new([("x", x.clone())], AdamOptions::default())?;
    /// opt.step(&x.as_tensor().sqr()?.sum_all()?.backward()?)?;
    /// let state = opt.state_dict()?;
    /// assert!(state.get("state.x.exp_avg").is_some());
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    fn state_dict(&self) -> Result<StateDict>;

    /// Restores a state from [`state_dict`](Optimizer::state_dict), so training resumes
    /// exactly. Entries for parameters not seen yet are kept until their first step. The
    /// options are the optimizer's own (as constructed), not taken from the state.
    ///
    /// ```
    /// use candle_core::{Device, Var};
    /// use vi_optim::{Adam, AdamOptions, Optimizer};
    ///
    /// let x = Var::new(&[1.0f64], &Device::Cpu)?;
    /// let mut a = Adam::new([("x", x.clone())], AdamOptions::default())?;
    /// a.step(&x.as_tensor().sqr()?.sum_all()?.backward()?)?;
    /// let mut b = Adam::new([("x", x.clone())], AdamOptions::default())?;
    /// b.load_state_dict(&a.state_dict()?)?;
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    fn load_state_dict(&mut self, state: &StateDict) -> Result<()>;

    /// Writes [`state_dict`](Optimizer::state_dict) to a safetensors file.
    ///
    /// ```
    /// use vi_optim::{Adam, AdamOptions, Optimizer};
    ///
    /// let opt = Adam::empty(AdamOptions::default())?;
    /// let path = std::env::temp_dir().join("vi_optim_doc_save.safetensors");
    /// opt.save(&path)?;
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    fn save(&self, path: &Path) -> Result<()> {
        self.state_dict()?.save(path)
    }

    /// Restores the state from a safetensors file written by [`save`](Optimizer::save).
    ///
    /// ```
    /// use vi_optim::{Adam, AdamOptions, Optimizer};
    ///
    /// let path = std::env::temp_dir().join("vi_optim_doc_load.safetensors");
    /// Adam::empty(AdamOptions::default())?.save(&path)?;
    /// Adam::empty(AdamOptions::default())?.load(&path)?;
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    fn load(&mut self, path: &Path) -> Result<()> {
        let state = StateDict::load(path)?;
        self.load_state_dict(&state)
    }
}

impl<O: Optimizer + ?Sized> Optimizer for Box<O> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn step_params(&mut self, params: &[(&str, &Var)], grads: &GradStore) -> Result<()> {
        (**self).step_params(params, grads)
    }
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        (**self).step(grads)
    }
    fn add_param(&mut self, name: &str, var: Var) -> Result<()> {
        (**self).add_param(name, var)
    }
    fn params(&self) -> &[(String, Var)] {
        (**self).params()
    }
    fn learning_rate(&self) -> f64 {
        (**self).learning_rate()
    }
    fn max_learning_rate(&self) -> f64 {
        (**self).max_learning_rate()
    }
    fn set_learning_rate(&mut self, lr: f64) {
        (**self).set_learning_rate(lr)
    }
    fn lr_transform(&self) -> LrTransform {
        (**self).lr_transform()
    }
    fn set_lr_transform(&mut self, transform: LrTransform) {
        (**self).set_lr_transform(transform)
    }
    fn state_dict(&self) -> Result<StateDict> {
        (**self).state_dict()
    }
    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        (**self).load_state_dict(state)
    }
}
