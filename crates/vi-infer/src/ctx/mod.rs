//! `Ctx`: what a model or a guide receives.

mod enumerate;
mod plates;
mod scopes;
mod statements;

use candle_core::Tensor;
use rand::RngCore;

use crate::error::{InferError, Result};
use crate::handlers::{PlateMessenger, ReplayMessenger, TraceMessenger};
use crate::message::{Message, PlateFrame};
use crate::messenger::Messenger;
use crate::param_store::ParamStore;
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
    /// The handlers, outermost first. The plates active are the plate handlers on it.
    stack: Vec<Handler>,
    modules: Vec<String>,
    /// The subsampled plates entered in the current trace, with their indices: entering one
    /// again reuses them.
    subsampled: Vec<(String, usize, usize, Tensor)>,
    /// The names of the plates entered in the current trace.
    entered: Vec<String>,
    /// Data-parallel SVI: this rank and the world size (set by `Svi` in data-parallel mode).
    /// A subsampled plate then takes this rank's share of the indices drawn for the whole
    /// world, and draws of sites inside it are this rank's own.
    shard: Option<(usize, usize)>,
    /// The subsampled plates this rank took a share of in the current trace.
    sharded: Vec<String>,
}

/// A handler on the stack: the three every ELBO step pushes (trace, replay, plate) held as
/// they are, any other boxed.
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

    /// The plate this handler is, if it is one (a plate pushed with `ctx.with` too).
    fn plate(&self) -> Option<&PlateFrame> {
        match self {
            Handler::Plate(h) => h.plate(),
            Handler::Boxed(h) => h.plate(),
            _ => None,
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
            .field("plates", &self.plates())
            .field("modules", &self.modules)
            .finish()
    }
}

impl<'a> Ctx<'a> {
    /// A context over `store`, drawing from `rng` where no `seed` handler does.
    ///
    /// ```
    /// use candle_core::{DType, Device};
    /// use rand::SeedableRng;
    /// use vi_infer::{Ctx, ParamStore};
    /// let mut store = ParamStore::new(&Device::Cpu, DType::F64);
    /// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// let ctx = Ctx::new(&mut store, &mut rng);
    /// assert!(ctx.plates().is_empty() && ctx.store().dtype() == Some(DType::F64));
    /// ```
    pub fn new(store: &'a mut ParamStore, rng: &'a mut dyn RngCore) -> Self {
        Self {
            store,
            rng,
            stack: Vec::new(),
            modules: Vec::new(),
            subsampled: Vec::new(),
            entered: Vec::new(),
            shard: None,
            sharded: Vec::new(),
        }
    }

    /// Data-parallel mode: rank `rank` of `world` (see [`Svi::data_parallel`]).
    ///
    /// [`Svi::data_parallel`]: crate::Svi::data_parallel
    pub(crate) fn set_shard(&mut self, rank: usize, world: usize) {
        self.shard = Some((rank, world));
    }

    /// The parameter store.
    ///
    /// ```
    /// # let (mut store, mut rng) = vi_infer::doc_support::store_and_rng();
    /// # let ctx = vi_infer::Ctx::new(&mut store, &mut rng);
    /// assert!(ctx.store().param_names().is_empty());
    /// ```
    pub fn store(&self) -> &ParamStore {
        self.store
    }

    /// The plates active at this point, outermost first (read off the handler stack).
    ///
    /// ```
    /// # let (mut store, mut rng) = vi_infer::doc_support::store_and_rng();
    /// # let mut ctx = vi_infer::Ctx::new(&mut store, &mut rng);
    /// ctx.plate("data", 3, |ctx| {
    ///     assert_eq!(ctx.plates()[0].dim, -1);
    ///     Ok(())
    /// })?;
    /// # Ok::<(), vi_infer::InferError>(())
    /// ```
    pub fn plates(&self) -> Vec<PlateFrame> {
        self.active_plates().cloned().collect()
    }

    /// The plates active at this point, outermost first, without a copy.
    fn active_plates(&self) -> impl Iterator<Item = &PlateFrame> {
        self.stack.iter().filter_map(Handler::plate)
    }

    /// The module prefixes marked with [`module`](Ctx::module) in this context so far.
    ///
    /// ```
    /// # let (mut store, mut rng) = vi_infer::doc_support::store_and_rng();
    /// # let ctx = vi_infer::Ctx::new(&mut store, &mut rng);
    /// assert!(ctx.modules().is_empty());
    /// ```
    pub fn modules(&self) -> &[String] {
        &self.modules
    }

    /// The context's random number generator (for a model's own draws).
    ///
    /// ```
    /// # let (mut store, mut rng) = vi_infer::doc_support::store_and_rng();
    /// # let mut ctx = vi_infer::Ctx::new(&mut store, &mut rng);
    /// use rand::Rng;
    /// let u: f64 = ctx.rng().random();
    /// assert!((0.0..1.0).contains(&u));
    /// ```
    pub fn rng(&mut self) -> &mut dyn RngCore {
        self.rng
    }

    /// Sends `msg` through the stack, as NumPyro's `apply_stack`: `process` from the innermost
    /// handler out (stopping at a `block`), the default action if no handler set a value
    /// (drawing from the innermost reached handler's generator, e.g. a `seed`, else the
    /// context's), `postprocess` from the outermost handler reached back in, and then the
    /// site recorded by every trace it reached. Returns the site's value.
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
        // Traces record in `record`, once every other handler has seen the message.
        for h in &mut self.stack[reached..] {
            if !matches!(h, Handler::Trace(_)) {
                h.messenger().postprocess(&msg)?;
            }
        }
        let Some(value) = msg.value.clone() else {
            return Err(InferError::Invalid(format!(
                "site `{}` got no value",
                msg.name
            )));
        };
        self.record(msg, reached)?;
        Ok(value)
    }

    /// Records `msg` in every trace on the stack from `reached` in, through [`Trace::record`]
    /// (a name seen twice is an error), the innermost taking the message itself rather than a
    /// copy.
    fn record(&mut self, msg: Message, reached: usize) -> Result<()> {
        let mut traces = self.stack[reached..].iter_mut().filter_map(|h| match h {
            Handler::Trace(t) => Some(t.trace_mut()),
            _ => None,
        });
        let Some(mut last) = traces.next() else {
            return Ok(());
        };
        for t in traces {
            last.record(&msg)?;
            last = t;
        }
        last.record_owned(msg)
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

    /// Runs `f` in a fresh context over the same store and generator: no handler of this
    /// one (traces, plates, replay) sees what `f` does. (An autoguide builds its prototype
    /// trace of the model this way, wherever in a step it is first called.)
    pub(crate) fn detached<T>(&mut self, f: impl FnOnce(&mut Ctx<'_>) -> Result<T>) -> Result<T> {
        let mut inner = Ctx::new(&mut *self.store, &mut *self.rng);
        f(&mut inner)
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
}
