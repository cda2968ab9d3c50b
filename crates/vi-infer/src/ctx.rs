//! `Ctx`: what a model or a guide receives.

use std::any::Any;

use candle_core::Tensor;
use rand::RngCore;
use vi_dist::{Constraint, Distribution};

use crate::error::{InferError, Result, at_site};
use crate::handlers::{
    Block, BlockMessenger, ConditionMessenger, MaskMessenger, PlateMessenger, ReplayMessenger,
    ScaleMessenger, SeedMessenger, SubstituteMessenger, TraceMessenger,
};
use crate::message::{Message, PlateFrame, SiteKind, Subsample};
use crate::messenger::Messenger;
use crate::param_store::ParamStore;
use crate::plate::Plate;
use crate::trace::Trace;

/// The context a model or guide runs in (`FnMut(&mut Ctx) -> Result<T>`): its sample,
/// observe, param and plate statements, and the stack of effect handlers they go through.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use rand::SeedableRng;
/// use vi_dist::{Constraint, Normal};
/// use vi_infer::{Ctx, ParamStore};
///
/// let dev = Device::Cpu;
/// let data = Tensor::new(&[0.9f64, 1.1, 1.3], &dev)?;
/// let model = |ctx: &mut Ctx| -> vi_infer::Result<Tensor> {
///     let zero = Tensor::zeros((), DType::F64, &dev)?;
///     let one = Tensor::ones((), DType::F64, &dev)?;
///     let mu = ctx.sample("mu", Normal::new(&zero, &one)?)?;
///     ctx.plate("data", 3, |ctx| ctx.observe("x", Normal::new(&mu, &one)?, &data))?;
///     Ok(mu)
/// };
/// let mut store = ParamStore::new(&dev, DType::F64);
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let mut ctx = Ctx::new(&mut store, &mut rng);
/// let (_, trace) = ctx.trace(model)?;
/// assert_eq!(trace.get("x").unwrap().plates[0].name, "data");
/// println!("{}", trace.format_shapes()?);
/// # Ok::<(), vi_infer::InferError>(())
/// ```
pub struct Ctx<'a> {
    store: &'a mut ParamStore,
    rng: &'a mut dyn RngCore,
    stack: Vec<Handler>,
    plates: Vec<PlateFrame>,
    modules: Vec<String>,
    /// The subsampled plates entered in the current trace, with their indices: entering one
    /// again reuses them.
    subsampled: Vec<(String, usize, usize, Tensor)>,
    /// The names of the plates entered in the current trace.
    entered: Vec<String>,
}

/// A handler on the stack: the three every ELBO step pushes (trace, replay, plate) held as
/// they are, any other boxed. The context records into a trace itself, so that the last trace
/// a message reaches takes it whole instead of a copy.
enum Handler {
    Trace(TraceMessenger),
    Replay(ReplayMessenger),
    Plate(PlateMessenger),
    Boxed(Box<dyn Messenger>),
}

impl Handler {
    fn messenger(&mut self) -> &mut dyn Messenger {
        match self {
            Handler::Trace(h) => h,
            Handler::Replay(h) => h,
            Handler::Plate(h) => h,
            Handler::Boxed(h) => h.as_mut(),
        }
    }
}

/// The error of a handler stack that a `with` block left changed.
fn stack_changed() -> InferError {
    InferError::Invalid("the handler stack changed under a `with` block".into())
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("handlers", &self.stack.len())
            .field("plates", &self.plates)
            .field("modules", &self.modules)
            .finish()
    }
}

impl<'a> Ctx<'a> {
    /// A context over `store`, drawing from `rng` where no `seed` handler does.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// assert!(ctx.plates().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(store: &'a mut ParamStore, rng: &'a mut dyn RngCore) -> Self {
        Self {
            store,
            rng,
            stack: Vec::new(),
            plates: Vec::new(),
            modules: Vec::new(),
            subsampled: Vec::new(),
            entered: Vec::new(),
        }
    }

    /// The parameter store.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// assert_eq!(ctx.store().dtype(), Some(DType::F64));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn store(&self) -> &ParamStore {
        self.store
    }

    /// The plates active at this point, outermost first.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// ctx.plate("data", 3, |ctx| {
    ///     assert_eq!(ctx.plates()[0].dim, -1);
    ///     Ok(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn plates(&self) -> &[PlateFrame] {
        &self.plates
    }

    /// The module prefixes marked with [`module`](Ctx::module) in this context so far.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// assert!(ctx.modules().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn modules(&self) -> &[String] {
        &self.modules
    }

    /// The context's random number generator (for a model's own draws).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// use rand::Rng;
    /// let u: f64 = ctx.rng().random();
    /// assert!((0.0..1.0).contains(&u));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rng(&mut self) -> &mut dyn RngCore {
        self.rng
    }

    /// Sends `msg` through the stack: `process` from the innermost handler out (stopping
    /// at a `block`), the default action if no handler set a value (drawing from the
    /// innermost reached handler's generator, e.g. a `seed`, else the context's), then
    /// `postprocess` from the outermost handler reached back in. Returns the site's value.
    ///
    /// A trace's `postprocess` is split: whether it takes the message (or fails on a duplicate
    /// name) is decided in its turn; the site is added once every handler has seen the
    /// message, the last trace taking the message itself (no copy of its name, distribution
    /// or plates) and any other a copy.
    fn apply(
        &mut self,
        mut msg: Message,
        default: impl FnOnce(&mut Message, &mut ParamStore, &mut dyn RngCore) -> Result<()>,
    ) -> Result<Tensor> {
        let n = self.stack.len();
        let mut reached = n;
        for i in (0..n).rev() {
            self.stack[i].messenger().process(&mut msg)?;
            reached = i;
            if msg.stop {
                break;
            }
        }
        if msg.value.is_none() {
            let Self {
                stack, store, rng, ..
            } = self;
            let rng = match stack[reached..]
                .iter_mut()
                .rev()
                .find_map(|h| h.messenger().rng())
            {
                Some(seeded) => seeded,
                None => &mut **rng,
            };
            default(&mut msg, store, rng)?;
        }
        let (mut takers, mut last) = (0usize, n);
        for i in reached..n {
            match &mut self.stack[i] {
                Handler::Trace(t) => {
                    if t.trace_mut().admits(&msg)? {
                        takers += 1;
                        last = i;
                    }
                }
                h => h.messenger().postprocess(&msg)?,
            }
        }
        let Some(value) = msg.value.clone() else {
            return Err(InferError::Invalid(format!(
                "site `{}` got no value",
                msg.name
            )));
        };
        if takers > 1 {
            for h in &mut self.stack[reached..last] {
                if let Handler::Trace(t) = h
                    && t.trace_mut().admits(&msg)?
                {
                    t.trace_mut().record(&msg)?;
                }
            }
        }
        if let Some(Handler::Trace(t)) = self.stack.get_mut(last) {
            t.trace_mut().record_owned(msg);
        }
        Ok(value)
    }

    /// A latent random variable: `pyro.sample(name, dist)`. The value is drawn from `dist`
    /// (reparameterised when it has `rsample`) unless a handler supplies one (replay,
    /// condition, seed). Inside plates, `dist` is expanded to the plates' batch dims.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
    /// assert_eq!(z.dims(), &[3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sample(&mut self, name: &str, dist: impl Distribution) -> Result<Tensor> {
        self.sample_boxed(name, Box::new(dist))
    }

    /// [`sample`](Ctx::sample) for a boxed distribution.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// let d: Box<dyn Distribution> = Box::new(Normal::new(&zero, &one)?);
    /// let z = ctx.sample_boxed("z", d)?;
    /// assert_eq!(z.dims(), &[3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sample_boxed(&mut self, name: &str, dist: Box<dyn Distribution>) -> Result<Tensor> {
        let mut msg = Message::new(name, SiteKind::Sample);
        msg.dist = Some(dist);
        self.apply(msg, draw)
    }

    /// An observed random variable: `pyro.sample(name, dist, obs=value)`. Its log-density
    /// enters the ELBO's likelihood term; a value outside `dist`'s support is a typed error
    /// (when validation is on).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// let x = ctx.observe("x", Normal::new(&zero, &one)?, &one)?;
    /// assert_eq!(x.to_vec1::<f64>()?, vec![1.0; 3]);
    /// // A value outside the support is a typed error naming the site.
    /// let rate = vi_dist::Exponential::new(&one)?;
    /// let err = ctx.observe("y", rate, &(&zero - 1.0)?).unwrap_err();
    /// assert!(matches!(err, vi_infer::InferError::Observed { .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn observe(
        &mut self,
        name: &str,
        dist: impl Distribution,
        value: &Tensor,
    ) -> Result<Tensor> {
        self.observe_boxed(name, Box::new(dist), value)
    }

    /// [`observe`](Ctx::observe) for a boxed distribution.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// let d: Box<dyn Distribution> = Box::new(Normal::new(&zero, &one)?);
    /// ctx.observe_boxed("x", d, &one)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn observe_boxed(
        &mut self,
        name: &str,
        dist: Box<dyn Distribution>,
        value: &Tensor,
    ) -> Result<Tensor> {
        let mut msg = Message::new(name, SiteKind::Sample);
        if vi_dist::validation_enabled() {
            dist.validate(value)
                .map_err(|source| at_site(name, &self.plates, true, source))?;
            msg.checked = Some((value.id(), dist.support()));
        }
        msg.dist = Some(dist);
        msg.value = Some(value.clone());
        msg.is_observed = true;
        self.apply(msg, draw)
    }

    /// A learnable parameter: `pyro.param(name, init, constraint=...)`. Created from `init`
    /// the first time (stored unconstrained), read from the store afterwards; the returned
    /// tensor lies inside `constraint` and is differentiable in the stored `Var`.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// let s = ctx.param("s", &one, Constraint::Positive)?;
    /// assert_eq!(s.to_vec1::<f64>()?, vec![1.0; 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn param(&mut self, name: &str, init: &Tensor, constraint: Constraint) -> Result<Tensor> {
        self.param_with(name, || Ok(init.clone()), constraint)
    }

    /// [`param`](Ctx::param) with a lazily built initial value (built only the first time).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// let w = ctx.param_with("w", || Tensor::zeros((2, 3), DType::F64, &Device::Cpu), Constraint::Real)?;
    /// assert_eq!(w.dims(), &[2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn param_with(
        &mut self,
        name: &str,
        init: impl FnOnce() -> candle_core::Result<Tensor>,
        constraint: Constraint,
    ) -> Result<Tensor> {
        let msg = Message::new(name, SiteKind::Param);
        self.apply(msg, move |msg, store, _| {
            msg.value = Some(store.param(name, init, &constraint)?);
            Ok(())
        })
    }

    /// Marks the candle-nn module whose variables live in the store under `name` (built from
    /// `store.var_builder(name)`) as used by this run, so SVI steps its variables; returns
    /// the module, for chaining: `ctx.module("decoder", &decoder)?.forward(&z)?`.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// use candle_nn::Module;
    /// # use vi_infer::{Ctx, ParamStore};
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F32);
    /// let encoder = candle_nn::linear(4, 2, store.var_builder("encoder")?)?;
    /// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let x = Tensor::ones((1, 4), DType::F32, &dev)?;
    /// let h = ctx.module("encoder", &encoder)?.forward(&x)?;
    /// assert_eq!((h.dims(), ctx.modules()), (&[1, 2][..], &["encoder".to_string()][..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn module<'m, M>(&mut self, name: &str, module: &'m M) -> Result<&'m M> {
        if !self.store.has_module(name) {
            return Err(InferError::Param {
                name: name.to_string(),
                msg: "no module variables live under this prefix: build the module from \
                      `store.var_builder(name)`"
                    .into(),
            });
        }
        if !self.modules.iter().any(|m| m == name) {
            self.modules.push(name.to_string());
        }
        Ok(module)
    }

    /// Records `value` as a deterministic site (`pyro.deterministic`): in the trace, with no
    /// log-density.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// let ((), tr) = ctx.trace(|ctx| {
    ///     ctx.deterministic("y", &one)?;
    ///     Ok(())
    /// })?;
    /// assert_eq!(tr.get("y").unwrap().kind, vi_infer::SiteKind::Deterministic);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn deterministic(&mut self, name: &str, value: &Tensor) -> Result<Tensor> {
        let mut msg = Message::new(name, SiteKind::Deterministic);
        msg.value = Some(value.clone());
        self.apply(msg, |_, _, _| Ok(()))
    }

    /// Adds `log_weight` to the log-density of the program (`pyro.factor`): an observed site
    /// of a [`Unit`](vi_dist::Unit) distribution, whose term in the ELBO is `log_weight`
    /// (summed, scaled and masked as any site; its shape is a batch shape, fit to the plates
    /// around it). A factor belongs in the model: in a guide it is an error at the step.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// let w = Tensor::new(&[-0.5f64, 1.0, 2.0], &dev)?;
    /// let (_, tr) = ctx.trace(|ctx| ctx.plate("data", 3, |ctx| ctx.factor("penalty", &w)))?;
    /// assert_eq!(tr.get("penalty").unwrap().log_prob()?.to_vec1::<f64>()?, [-0.5, 1.0, 2.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn factor(&mut self, name: &str, log_weight: &Tensor) -> Result<Tensor> {
        let dist =
            vi_dist::Unit::new(log_weight).map_err(|e| at_site(name, &self.plates, true, e))?;
        let mut msg = Message::new(name, SiteKind::Sample);
        msg.value = Some(log_weight.detach().zeros_like()?);
        msg.dist = Some(Box::new(dist));
        msg.is_observed = true;
        self.apply(msg, draw)
    }

    /// An observation with missing entries (Pyro's `obs_mask`): where `obs_mask` is set,
    /// `value` is observed (site `{name}_observed`, masked to those entries); elsewhere the
    /// entries are latent (site `{name}_unobserved`, masked to the others, which the guide
    /// must sample), and whatever `value` holds there (NaN, say) is never read. Returns the
    /// two combined, recorded as the deterministic site `name`. `obs_mask` is a boolean (u8)
    /// tensor of the batch shape (or broadcastable to it).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// let x = Tensor::new(&[0.5f64, f64::NAN, 1.5], &dev)?;
    /// let seen = Tensor::new(&[1u8, 0, 1], &dev)?;
    /// let (v, tr) = ctx.trace(|ctx| ctx.observe_masked("x", Normal::new(&zero, &one)?, &x, &seen))?;
    /// let v = v.to_vec1::<f64>()?;
    /// assert_eq!((v[0], v[2]), (0.5, 1.5));
    /// assert!(v[1].is_finite()); // drawn by the `x_unobserved` site
    /// assert!(tr.get("x_observed").unwrap().is_observed && tr.get("x_unobserved").unwrap().is_latent());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn observe_masked(
        &mut self,
        name: &str,
        dist: impl Distribution,
        value: &Tensor,
        obs_mask: &Tensor,
    ) -> Result<Tensor> {
        let seen = if obs_mask.dtype() == candle_core::DType::U8 {
            obs_mask.clone()
        } else {
            obs_mask.ne(0.0)?
        };
        let unseen = seen.eq(0u8)?;
        // The mask covers the batch dims of the value, not its event dims.
        let event = dist.event_shape().len();
        let value_batch = &value.dims()[..value.rank().saturating_sub(event)];
        if value.rank() < event
            || seen.rank() > value_batch.len().max(dist.batch_shape().len())
            || vi_dist::broadcast_shapes(&[seen.dims(), value_batch, dist.batch_shape()]).is_none()
        {
            return Err(InferError::Invalid(format!(
                "site `{name}`: obs_mask of shape {:?} does not fit the batch shape of the value \
                 {:?} (event shape {:?}): it masks whole events",
                seen.dims(),
                value.dims(),
                dist.event_shape()
            )));
        }
        let at = |plates: &[PlateFrame], e| at_site(name, plates, true, e);
        let observed_dist = dist.mask(&seen).map_err(|e| at(&self.plates, e))?;
        let latent_dist = dist.mask(&unseen).map_err(|e| at(&self.plates, e))?;
        let observed = self.observe(&format!("{name}_observed"), observed_dist, value)?;
        let latent = self.sample(&format!("{name}_unobserved"), latent_dist)?;
        // The mask over the batch dims, widened by the event dims.
        let shape: Vec<usize> = seen
            .dims()
            .iter()
            .copied()
            .chain(std::iter::repeat_n(1, event))
            .collect();
        let out_shape =
            vi_dist::broadcast_shapes(&[observed.dims(), latent.dims()]).ok_or_else(|| {
                InferError::Invalid(format!(
                    "site `{name}`: observed value {:?} and latent draw {:?} do not broadcast",
                    observed.dims(),
                    latent.dims()
                ))
            })?;
        let keep = seen.reshape(shape)?.broadcast_as(out_shape.as_slice())?;
        let combined = keep.where_cond(
            &observed.broadcast_as(out_shape.as_slice())?,
            &latent.broadcast_as(out_shape.as_slice())?,
        )?;
        self.deterministic(name, &combined)
    }

    /// Runs `f` with `handler` pushed on the stack (innermost), and returns `f`'s value with
    /// the handler (e.g. to read what it recorded). The handler is popped even when `f` fails.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// use vi_infer::handlers::TraceMessenger;
    /// let (_, tracer) = ctx.with(TraceMessenger::new(), |ctx| {
    ///     ctx.sample("z", Normal::new(&zero, &one)?)
    /// })?;
    /// assert!(tracer.into_trace().contains("z"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with<H: Messenger, T>(
        &mut self,
        handler: H,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<(T, H)> {
        let (out, handler) = self.with_handler(Handler::Boxed(Box::new(handler)), f)?;
        let Handler::Boxed(handler) = handler else {
            return Err(stack_changed());
        };
        let handler: Box<dyn Any> = handler;
        let handler = handler.downcast::<H>().map_err(|_| stack_changed())?;
        Ok((out?, *handler))
    }

    /// Runs `f` with `handler` pushed on the stack and pops it back: `f`'s result and the
    /// handler.
    fn with_handler<T>(
        &mut self,
        handler: Handler,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<(Result<T>, Handler)> {
        self.stack.push(handler);
        let depth = self.stack.len();
        let out = f(self);
        if self.stack.len() != depth {
            return Err(stack_changed());
        }
        match self.stack.pop() {
            Some(h) => Ok((out, h)),
            None => Err(InferError::Invalid("the handler stack is empty".into())),
        }
    }

    /// Runs `f` under `trace`'s replay without copying it: `f`'s value and the trace back.
    pub(crate) fn replay_owned<T>(
        &mut self,
        trace: Trace,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<(T, Trace)> {
        let handler = Handler::Replay(ReplayMessenger::owning(trace));
        let (out, handler) = self.with_handler(handler, f)?;
        let Handler::Replay(replay) = handler else {
            return Err(stack_changed());
        };
        let out = out?;
        match replay.into_trace() {
            Some(trace) => Ok((out, trace)),
            None => Err(stack_changed()),
        }
    }

    /// Runs `f` and records its sites: `poutine.trace`.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// let (_, tr) = ctx.trace(|ctx| ctx.sample("z", Normal::new(&zero, &one)?))?;
    /// assert_eq!(tr.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn trace<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<(T, Trace)> {
        let (out, trace) = self.trace_partial(f)?;
        Ok((out?, trace))
    }

    /// [`trace`](Ctx::trace) that returns what was recorded even when `f` fails (to name the
    /// last site before an error).
    pub(crate) fn trace_partial<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<(Result<T>, Trace)> {
        // A trace is one run: subsampled plates drawn before it are not reused inside it.
        let outer = std::mem::take(&mut self.subsampled);
        let outer_entered = std::mem::take(&mut self.entered);
        let handled = self.with_handler(Handler::Trace(TraceMessenger::new()), f);
        self.subsampled = outer;
        let entered = std::mem::replace(&mut self.entered, outer_entered);
        // A trace further out saw these plates entered too.
        if self.stack.iter().any(|h| matches!(h, Handler::Trace(_))) {
            for p in &entered {
                if !self.entered.contains(p) {
                    self.entered.push(p.clone());
                }
            }
        }
        let (out, h) = handled?;
        let Handler::Trace(h) = h else {
            return Err(stack_changed());
        };
        let mut trace = h.into_trace();
        trace.set_plates_entered(entered);
        Ok((out, trace))
    }

    /// Runs `f` with the sample (and subsample) values of `trace` for the sites it has:
    /// `poutine.replay` (e.g. the model against the guide's trace).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// let (z, guide) = ctx.trace(|ctx| ctx.sample("z", Normal::new(&zero, &one)?))?;
    /// let again = ctx.replay(&guide, |ctx| ctx.sample("z", Normal::new(&one, &one)?))?;
    /// assert_eq!(z.to_vec1::<f64>()?, again.to_vec1::<f64>()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn replay<T>(
        &mut self,
        trace: &Trace,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        self.with_handler(Handler::Replay(ReplayMessenger::new(trace)), f)?
            .0
    }

    /// Runs `f` with the named sample sites fixed to data and observed: `poutine.condition`.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// let data = [("z".to_string(), one.clone())];
    /// let (_, tr) = ctx.trace(|ctx| {
    ///     ctx.condition(data, |ctx| ctx.sample("z", Normal::new(&zero, &one)?))
    /// })?;
    /// assert!(tr.get("z").unwrap().is_observed);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn condition<T>(
        &mut self,
        data: impl IntoIterator<Item = (String, Tensor)>,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        Ok(self.with(ConditionMessenger::new(data), f)?.0)
    }

    /// Runs `f` with the named parameters replaced by the given values: `poutine.substitute`.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// let s = ctx.substitute([("s".to_string(), zero.clone())], |ctx| {
    ///     ctx.param("s", &one, Constraint::Positive)
    /// })?;
    /// assert_eq!(s.to_vec1::<f64>()?, vec![0.0; 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn substitute<T>(
        &mut self,
        data: impl IntoIterator<Item = (String, Tensor)>,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        Ok(self.with(SubstituteMessenger::new(data), f)?.0)
    }

    /// Runs `f` with some sites hidden from the handlers outside: `poutine.block`.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// use vi_infer::handlers::Block;
    /// let (_, tr) = ctx.trace(|ctx| {
    ///     ctx.block(Block::hide(["z"]), |ctx| ctx.sample("z", Normal::new(&zero, &one)?))
    /// })?;
    /// assert!(tr.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn block<T>(&mut self, which: Block, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        Ok(self.with(BlockMessenger::new(which), f)?.0)
    }

    /// Runs `f` with every log-density multiplied by `factor`: `poutine.scale`.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// let (_, tr) = ctx.trace(|ctx| ctx.scale(0.5, |ctx| ctx.sample("z", Normal::new(&zero, &one)?)))?;
    /// assert_eq!(tr.get("z").unwrap().scale, 0.5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn scale<T>(&mut self, factor: f64, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        Ok(self.with(ScaleMessenger::new(factor)?, f)?.0)
    }

    /// Runs `f` with every log-density multiplied element-wise by `factor` (Pyro's
    /// `poutine.scale` with a tensor): positive and finite, broadcastable to the batch shape of
    /// each site inside without widening it.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// let w = Tensor::new(&[1.0f64, 0.5, 2.0], &dev)?;
    /// let (_, tr) = ctx.trace(|ctx| ctx.scale_by(&w, |ctx| ctx.sample("z", Normal::new(&zero, &one)?)))?;
    /// let lp = tr.get("z").unwrap().log_prob()?.to_vec1::<f64>()?;
    /// let plain = Normal::new(&zero, &one)?.log_prob(&tr.get("z").unwrap().value)?.to_vec1::<f64>()?;
    /// assert_eq!(lp[2], 2.0 * plain[2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn scale_by<T>(
        &mut self,
        factor: &Tensor,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        Ok(self.with(ScaleMessenger::tensor(factor)?, f)?.0)
    }

    /// Runs `f` with log-densities counted only where `mask` is set: `poutine.mask`.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// let m = Tensor::new(&[1u8, 0, 1], &dev)?;
    /// let (_, tr) = ctx.trace(|ctx| ctx.mask(&m, |ctx| ctx.sample("z", Normal::new(&zero, &one)?)))?;
    /// assert_eq!(tr.get("z").unwrap().log_prob()?.to_vec1::<f64>()?[1], 0.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn mask<T>(&mut self, mask: &Tensor, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        Ok(self.with(MaskMessenger::new(mask)?, f)?.0)
    }

    /// Runs `f` with its draws taken from a generator seeded with `seed`: `handlers.seed`. The
    /// same seed gives the same draws.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// let a = ctx.seed(3, |ctx| ctx.sample("a", Normal::new(&zero, &one)?))?;
    /// let b = ctx.seed(3, |ctx| ctx.sample("b", Normal::new(&zero, &one)?))?;
    /// assert_eq!(a.to_vec1::<f64>()?, b.to_vec1::<f64>()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seed<T>(&mut self, seed: u64, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        Ok(self.with(SeedMessenger::new(seed), f)?.0)
    }

    /// Picks the plate's dim: the given one, or the rightmost batch dim no enclosing plate
    /// uses (as Pyro).
    fn plate_frame(
        &self,
        name: &str,
        size: usize,
        subsample_size: usize,
        dim: Option<isize>,
    ) -> Result<PlateFrame> {
        let bad = |msg: String| InferError::Plate {
            plate: name.to_string(),
            msg,
        };
        if self.plates.iter().any(|p| p.name == name) {
            return Err(bad("is already active (plates are named uniquely)".into()));
        }
        let dim = match dim {
            Some(d) if d >= 0 => {
                return Err(bad(format!(
                    "dim must be negative (from the right), got {d}"
                )));
            }
            Some(d) => {
                if let Some(p) = self.plates.iter().find(|p| p.dim == d) {
                    return Err(bad(format!(
                        "dim {d} is already used by plate `{}`",
                        p.name
                    )));
                }
                d
            }
            None => {
                let mut d = -1;
                while self.plates.iter().any(|p| p.dim == d) {
                    d -= 1;
                }
                d
            }
        };
        Ok(PlateFrame {
            name: name.to_string(),
            dim,
            size,
            subsample_size,
        })
    }

    fn in_plate<T>(
        &mut self,
        frame: PlateFrame,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        if !self.entered.contains(&frame.name) {
            self.entered.push(frame.name.clone());
        }
        self.plates.push(frame.clone());
        let out = self.with_handler(Handler::Plate(PlateMessenger::new(frame)), f);
        self.plates.pop();
        out?.0
    }

    /// Runs `f` in a plate of `size` conditionally independent elements (`pyro.plate`):
    /// sample sites inside are expanded to the plate's batch dim, the rightmost dim no
    /// enclosing plate uses. Plates nest.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// let z = ctx.plate("data", 5, |ctx| ctx.sample("z", Normal::new(&zero, &one)?.to_event(1)?))?;
    /// assert_eq!(z.dims(), &[5, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn plate<T>(
        &mut self,
        name: &str,
        size: usize,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let frame = self.plate_frame(name, size, size, None)?;
        self.in_plate(frame, f)
    }

    /// [`plate`](Ctx::plate) at a given batch dim (negative, counted from the right).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// let z = ctx.plate_dim("rows", 2, -2, |ctx| ctx.sample("z", Normal::new(&zero, &one)?))?;
    /// assert_eq!(z.dims(), &[2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn plate_dim<T>(
        &mut self,
        name: &str,
        size: usize,
        dim: isize,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let frame = self.plate_frame(name, size, size, Some(dim))?;
        self.in_plate(frame, f)
    }

    /// A subsampled plate: `f` receives `subsample_size` distinct indices in `0..size` (drawn
    /// from the seeded generator, or replayed), sites inside get a batch dim of
    /// `subsample_size`, and their log-densities are scaled by `size / subsample_size`, so
    /// the ELBO stays unbiased. The indices are recorded as a `Subsample` site under the
    /// plate's name.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    /// let n = ctx.plate_subsample("data", 10, 4, |ctx, idx| {
    ///     assert!(idx.to_vec1::<u32>()?.iter().all(|&i| i < 10));
    ///     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
    ///     assert_eq!(z.dims(), &[4]);
    ///     Ok(idx.dims()[0])
    /// })?;
    /// assert_eq!(n, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn plate_subsample<T>(
        &mut self,
        name: &str,
        size: usize,
        subsample_size: usize,
        f: impl FnOnce(&mut Self, &Tensor) -> Result<T>,
    ) -> Result<T> {
        self.plate_with(Plate::new(name, size).subsample_size(subsample_size), f)
    }

    /// A plate with every option of Pyro's `pyro.plate(name, size, subsample_size=…,
    /// subsample=…, dim=…)` (see [`Plate`]): `f` receives the plate's indices. A subsampled
    /// plate records its indices as a `Subsample` site under its name (replayed into the
    /// model from the guide) and scales log-densities by `size / subsample_size`; entering it
    /// again in the same run reuses the same indices (other sizes are an error). Indices of
    /// one's own (`subsample`) are taken as given: 1-D, integer, each below `size` (checked
    /// with validation on).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
    /// # let one = Tensor::ones(3, DType::F64, &dev)?;
    /// use vi_infer::Plate;
    /// let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    /// let (_, tr) = ctx.trace(|ctx| {
    ///     let rows = Plate::new("rows", 10).subsample_size(4).dim(-2);
    ///     let a = ctx.plate_with(rows.clone(), |ctx, idx| {
    ///         ctx.sample("a", Normal::new(&zero, &one)?)?;
    ///         Ok(idx.to_vec1::<u32>()?)
    ///     })?;
    ///     // The same plate again: the same four rows.
    ///     let b = ctx.plate_with(rows, |_, idx| Ok(idx.to_vec1::<u32>()?))?;
    ///     assert_eq!(a, b);
    ///     // Indices of one's own.
    ///     let mine = Tensor::new(&[7u32, 2], &dev)?;
    ///     ctx.plate_with(Plate::new("cols", 10).subsample(&mine), |ctx, idx| {
    ///         assert_eq!(idx.to_vec1::<u32>()?, [7, 2]);
    ///         ctx.sample("c", Normal::new(&zero, &one)?)
    ///     })
    /// })?;
    /// assert_eq!(tr.get("a").unwrap().value.dims(), &[4, 1]);
    /// assert_eq!(tr.get("c").unwrap().scale, 5.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn plate_with<T>(
        &mut self,
        plate: Plate<'_>,
        f: impl FnOnce(&mut Self, &Tensor) -> Result<T>,
    ) -> Result<T> {
        let Plate {
            name,
            size,
            subsample_size,
            subsample,
            dim,
        } = plate;
        let bad = |msg: String| InferError::Plate {
            plate: name.to_string(),
            msg,
        };
        let device = self
            .store
            .device()
            .cloned()
            .unwrap_or(candle_core::Device::Cpu);
        let given = match subsample {
            Some(idx) => Some(crate::plate::own_indices(name, size, subsample_size, idx)?),
            None => None,
        };
        let n = match (&given, subsample_size) {
            (Some(idx), _) => idx.dims()[0],
            (None, Some(n)) if n == 0 || n > size => {
                return Err(bad(format!("subsample size {n} is not in 1..={size}")));
            }
            (None, Some(n)) => n,
            (None, None) => {
                // A plain plate: no indices to record.
                let frame = self.plate_frame(name, size, size, dim)?;
                let idx = Tensor::arange(0u32, size as u32, &device)?;
                return self.in_plate(frame, |ctx| f(ctx, &idx));
            }
        };
        let frame = self.plate_frame(name, size, n, dim)?;
        let idx = match self.subsampled.iter().find(|(p, ..)| p == name) {
            Some((_, s, m, idx)) if (*s, *m) == (size, n) => idx.clone(),
            Some((_, s, m, _)) => {
                return Err(bad(format!(
                    "entered again with size {size} and subsample size {n}, first with {s} and {m}"
                )));
            }
            None => {
                let mut msg = Message::new(name, SiteKind::Subsample);
                msg.subsample = Some(Subsample {
                    size,
                    subsample_size: n,
                    device,
                });
                msg.value = given;
                let idx = self.apply(msg, draw)?;
                if idx.dims() != [n] {
                    return Err(bad(format!(
                        "subsample indices have shape {:?}, expected [{n}]",
                        idx.dims()
                    )));
                }
                self.subsampled
                    .push((name.to_string(), size, n, idx.clone()));
                idx
            }
        };
        self.in_plate(frame, |ctx| f(ctx, &idx))
    }
}

/// The default action for a sample site or a subsampled plate without a value: draw it.
pub(crate) fn draw(msg: &mut Message, _: &mut ParamStore, rng: &mut dyn RngCore) -> Result<()> {
    draw_with(msg, rng)
}

/// Draws a sample site's value from its distribution with `rng` (rsample when available), or
/// a subsampled plate's indices: `subsample_size` distinct indices in `0..size` as a u32
/// tensor (all of them, in order, when `subsample_size == size`).
pub(crate) fn draw_with(msg: &mut Message, rng: &mut dyn RngCore) -> Result<()> {
    if let Some(s) = &msg.subsample {
        let idx: Vec<u32> = if s.subsample_size == s.size {
            (0..s.size as u32).collect()
        } else {
            rand::seq::index::sample(rng, s.size, s.subsample_size)
                .into_iter()
                .map(|i| i as u32)
                .collect()
        };
        msg.value = Some(Tensor::from_vec(idx, s.subsample_size, &s.device)?);
        return Ok(());
    }
    let Some(dist) = &msg.dist else {
        return Err(InferError::Invalid(format!(
            "sample site `{}` has no distribution",
            msg.name
        )));
    };
    let value = if dist.has_rsample() {
        dist.rsample(&[], rng)
    } else {
        dist.sample(&[], rng)
    };
    msg.value = Some(value.map_err(|source| at_site(&msg.name, &msg.plates, false, source))?);
    Ok(())
}
