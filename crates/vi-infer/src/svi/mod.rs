//! `Svi`: the stochastic variational inference loop.

mod checkpoint;
mod parallel;

use std::sync::Arc;
use std::time::Duration;

use candle_core::{DType, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_optim::Optimizer;

use crate::ctx::Ctx;
use crate::elbo::{Elbo, ElboOutput, SiteTerm, TermKind};
use crate::error::{InferError, Result};
use crate::message::SiteKind;
use crate::parallel::Communicator;
use crate::param_store::ParamStore;
use crate::trace::Trace;

/// What one [`Svi::step`] reports: the loss, and for every sample site its KL (latent) or
/// log-likelihood (observed), with the two traces.
///
/// This is how a user inspects the KL of each latent site:
/// `report.site("z").unwrap().sum_f64()?`. The terms are computed before the optimizer
/// steps, and the traces hold what the step used: its draws, and distributions built from
/// the parameters' values at the step (a `real` parameter, whose value is its `Var`'s own
/// storage, gets fresh storage before the optimizer writes in place, so the update does not
/// reach them; Pyro's traces, by contrast, see it). A module's variables are read by the
/// module itself: a distribution built directly from one does see the update.
///
/// ```
/// # use candle_core::{DType, Device, Tensor};
/// # use vi_dist::{Constraint, Normal};
/// # use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
/// # use vi_optim::{Adam, AdamOptions};
/// # let dev = Device::Cpu;
/// # let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
/// # let model = |ctx: &mut Ctx| {
/// #     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
/// #     ctx.observe("x", Normal::new(&z, &one)?, &one)
/// # };
/// # let guide = |ctx: &mut Ctx| {
/// #     let loc = ctx.param("loc", &zero, Constraint::Real)?;
/// #     ctx.sample("z", Normal::new(&loc, &one)?)
/// # };
/// # let adam = Adam::empty(AdamOptions::default())?;
/// let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new()).seed(0);
/// let report = svi.step()?;
/// for term in report.kls() {
///     println!("{}: KL {} ({:?})", term.name, term.sum, term.kind);
/// }
/// assert!(report.loss.is_finite());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct StepReport {
    /// The loss, −ELBO (averaged over particles), read back as `f64`: the step's one host
    /// sync.
    pub loss: f64,
    /// Each sample site's term, in the model's order.
    pub sites: Vec<SiteTerm>,
    /// The model's trace.
    pub model_trace: Trace,
    /// The guide's trace.
    pub guide_trace: Trace,
    /// Data-parallel ([`Svi::data_parallel`]): the time the step spent in collectives
    /// (waiting for the other ranks included); `None` otherwise. With several ranks,
    /// [`loss`](StepReport::loss) and each site's [`sum`](SiteTerm::sum) are the world's
    /// (averaged over the ranks, as the gradients), while the site terms' batch-shaped
    /// `value`s and the traces are this rank's.
    pub communication: Option<Duration>,
}

/// The loss read back to the host (the step's one sync); a NaN or infinite loss is
/// [`InferError::NonFinite`] naming each site whose term is not finite.
fn read_loss(out: &ElboOutput) -> Result<f64> {
    let loss = out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    if loss.is_finite() {
        return Ok(loss);
    }
    let mut terms = Vec::new();
    for t in &out.sites {
        let v = t.sum_f64()?;
        if !v.is_finite() {
            let kind = match t.kind {
                TermKind::KlAnalytic => "analytic KL",
                TermKind::KlMonteCarlo => "Monte Carlo KL",
                TermKind::LogLikelihood => "log-likelihood",
                TermKind::Marginalized => "marginalized log-likelihood",
                TermKind::Auxiliary => "auxiliary log q",
            };
            terms.push((t.name.clone(), kind.to_string(), crate::finite::describe(v)));
        }
    }
    Err(InferError::NonFinite {
        what: "the loss".into(),
        value: crate::finite::describe(loss),
        terms,
    })
}

/// Every gradient the optimizer is about to apply is finite; else [`InferError::NonFinite`]
/// naming the parameter and the first bad element.
fn check_gradients(
    params: &[(&str, &Var)],
    grads: &candle_core::backprop::GradStore,
) -> Result<()> {
    for (name, var) in params {
        let Some(g) = grads.get(var.as_tensor()) else {
            continue;
        };
        if !crate::finite::all_finite(g)? {
            let at = crate::finite::first_bad(g, crate::finite::finite_mask)?;
            return Err(InferError::NonFinite {
                what: format!("the gradient of param `{name}`"),
                value: at.trim_start_matches(": ").to_string(),
                terms: Vec::new(),
            });
        }
    }
    Ok(())
}

impl StepReport {
    fn new(loss: f64, out: ElboOutput) -> Self {
        Self {
            loss,
            sites: out.sites,
            model_trace: out.model_trace,
            guide_trace: out.guide_trace,
            communication: None,
        }
    }

    /// The term of the site `name`.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Normal};
    /// # use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
    /// # use vi_optim::{Adam, AdamOptions};
    /// # let dev = Device::Cpu;
    /// # let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    /// # let model = |ctx: &mut Ctx| {
    /// #     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
    /// #     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// # };
    /// # let guide = |ctx: &mut Ctx| {
    /// #     let loc = ctx.param("loc", &zero, Constraint::Real)?;
    /// #     ctx.sample("z", Normal::new(&loc, &one)?)
    /// # };
    /// # let adam = Adam::empty(AdamOptions::default())?;
    /// let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new()).seed(0);
    /// let report = svi.step()?;
    /// assert_eq!(report.site("x").unwrap().kind, vi_infer::TermKind::LogLikelihood);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn site(&self, name: &str) -> Option<&SiteTerm> {
        self.sites.iter().find(|s| s.name == name)
    }

    /// The latent sites' KL terms (analytic or Monte Carlo).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Normal};
    /// # use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
    /// # use vi_optim::{Adam, AdamOptions};
    /// # let dev = Device::Cpu;
    /// # let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    /// # let model = |ctx: &mut Ctx| {
    /// #     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
    /// #     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// # };
    /// # let guide = |ctx: &mut Ctx| {
    /// #     let loc = ctx.param("loc", &zero, Constraint::Real)?;
    /// #     ctx.sample("z", Normal::new(&loc, &one)?)
    /// # };
    /// # let adam = Adam::empty(AdamOptions::default())?;
    /// let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new()).seed(0);
    /// let report = svi.step()?;
    /// assert_eq!(report.kls().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["z"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn kls(&self) -> impl Iterator<Item = &SiteTerm> {
        self.sites
            .iter()
            .filter(|s| matches!(s.kind, TermKind::KlAnalytic | TermKind::KlMonteCarlo))
    }
}

/// Stochastic variational inference: a model, a guide, an optimizer and an ELBO
/// (`pyro.infer.SVI`). Each [`step`](Svi::step) runs the guide, replays the model against
/// it, backpropagates the ELBO once and steps the optimizer on exactly the parameters the
/// two traces touched.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use vi_dist::{Constraint, Normal};
/// use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
/// use vi_optim::{Adam, AdamOptions};
///
/// let dev = Device::Cpu;
/// let data = Tensor::new(&[1.2f64, 0.8, 1.1, 0.9], &dev)?;
/// let zero = Tensor::zeros((), DType::F64, &dev)?;
/// let one = Tensor::ones((), DType::F64, &dev)?;
/// let model = |ctx: &mut Ctx| {
///     let mu = ctx.sample("mu", Normal::new(&zero, &one)?)?;
///     ctx.plate("data", 4, |ctx| ctx.observe("x", Normal::new(&mu, &one)?, &data))?;
///     Ok(())
/// };
/// let guide = |ctx: &mut Ctx| {
///     let loc = ctx.param("loc", &zero, Constraint::Real)?;
///     let scale = ctx.param("scale", &one, Constraint::Positive)?;
///     ctx.sample("mu", Normal::new(&loc, &scale)?)?;
///     Ok(())
/// };
/// let adam = Adam::empty(AdamOptions { lr: 0.05, ..Default::default() })?;
/// let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new()).seed(0);
/// for _ in 0..300 {
///     svi.step()?;
/// }
/// // The exact posterior is N(0.8, 0.2): mean 4 * 1.0 / 5.
/// let loc = svi.store().get("loc")?.unwrap().to_scalar::<f64>()?;
/// assert!((loc - 0.8).abs() < 0.1);
/// let report = svi.step()?;
/// println!("KL of mu: {}", report.site("mu").unwrap().sum_f64()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Svi<M, G, O, E> {
    model: M,
    guide: G,
    optimizer: O,
    elbo: E,
    store: ParamStore,
    rng: ChaCha8Rng,
    parallel: Option<parallel::DataParallel>,
}

impl<M, G, O, E> std::fmt::Debug for Svi<M, G, O, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Svi").field("store", &self.store).finish()
    }
}

impl<M, G, O, E, TM, TG> Svi<M, G, O, E>
where
    M: FnMut(&mut Ctx<'_>) -> Result<TM>,
    G: FnMut(&mut Ctx<'_>) -> Result<TG>,
    O: Optimizer,
    E: Elbo,
{
    /// SVI of `model` with `guide`, over a default [`ParamStore`] (which adopts the device
    /// and dtype of the first parameter) and a generator seeded with 0.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Normal};
    /// # use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
    /// # use vi_optim::{Adam, AdamOptions};
    /// # let dev = Device::Cpu;
    /// # let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    /// # let model = |ctx: &mut Ctx| {
    /// #     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
    /// #     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// # };
    /// # let guide = |ctx: &mut Ctx| {
    /// #     let loc = ctx.param("loc", &zero, Constraint::Real)?;
    /// #     ctx.sample("z", Normal::new(&loc, &one)?)
    /// # };
    /// # let adam = Adam::empty(AdamOptions::default())?;
    /// let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new()).seed(0);
    /// assert!(svi.store().param_names().is_empty()); // params appear at the first step
    /// svi.step()?;
    /// assert_eq!(svi.store().param_names(), ["loc"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(model: M, guide: G, optimizer: O, elbo: E) -> Self {
        Self {
            model,
            guide,
            optimizer,
            elbo,
            store: ParamStore::default(),
            rng: ChaCha8Rng::seed_from_u64(0),
            parallel: None,
        }
    }

    /// Uses `store` (for modules built from `store.var_builder(..)` before the model).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use candle_nn::Module;
    /// use vi_dist::Normal;
    /// use vi_infer::{Ctx, ParamStore, Svi, TraceMeanFieldElbo};
    /// use vi_optim::{Adam, AdamOptions};
    /// let dev = Device::Cpu;
    /// let store = ParamStore::new(&dev, DType::F32);
    /// // A module built from the store before the guide that uses it.
    /// let net = candle_nn::linear(2, 1, store.var_builder("net")?)?;
    /// let x = Tensor::new(&[[1.0f32, 2.0]], &dev)?;
    /// let one = Tensor::ones(1, DType::F32, &dev)?;
    /// let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&one.zeros_like()?, &one)?);
    /// let guide = |ctx: &mut Ctx| {
    ///     let loc = ctx.module("net", &net)?.forward(&x)?.flatten_all()?;
    ///     ctx.sample("z", Normal::new(&loc, &one)?)
    /// };
    /// let adam = Adam::empty(AdamOptions::default())?;
    /// let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new()).with_store(store);
    /// svi.step()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_store(mut self, store: ParamStore) -> Self {
        self.store = store;
        self
    }

    /// Seeds the generator the guide draws from: the same seed gives the same run.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Normal};
    /// # use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
    /// # use vi_optim::{Adam, AdamOptions};
    /// # let dev = Device::Cpu;
    /// # let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    /// # let model = |ctx: &mut Ctx| {
    /// #     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
    /// #     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// # };
    /// # let guide = |ctx: &mut Ctx| {
    /// #     let loc = ctx.param("loc", &zero, Constraint::Real)?;
    /// #     ctx.sample("z", Normal::new(&loc, &one)?)
    /// # };
    /// # let adam = Adam::empty(AdamOptions::default())?;
    /// let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new()).seed(0);
    /// let a = svi.evaluate_loss()?.loss;
    /// let mut again = Svi::new(|ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?), |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?), Adam::empty(AdamOptions::default())?, TraceMeanFieldElbo::new()).seed(0);
    /// let _ = again.evaluate_loss()?;
    /// assert!(a.is_finite());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
        self
    }

    /// The parameter store.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Normal};
    /// # use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
    /// # use vi_optim::{Adam, AdamOptions};
    /// # let dev = Device::Cpu;
    /// # let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    /// # let model = |ctx: &mut Ctx| {
    /// #     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
    /// #     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// # };
    /// # let guide = |ctx: &mut Ctx| {
    /// #     let loc = ctx.param("loc", &zero, Constraint::Real)?;
    /// #     ctx.sample("z", Normal::new(&loc, &one)?)
    /// # };
    /// # let adam = Adam::empty(AdamOptions::default())?;
    /// let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new()).seed(0);
    /// svi.step()?;
    /// let loc = svi.store().get("loc")?.unwrap();
    /// assert_eq!(loc.dims(), &[] as &[usize]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// The parameter store, mutably (e.g. to build a module from it).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Normal};
    /// # use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
    /// # use vi_optim::{Adam, AdamOptions};
    /// # let dev = Device::Cpu;
    /// # let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    /// # let model = |ctx: &mut Ctx| {
    /// #     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
    /// #     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// # };
    /// # let guide = |ctx: &mut Ctx| {
    /// #     let loc = ctx.param("loc", &zero, Constraint::Real)?;
    /// #     ctx.sample("z", Normal::new(&loc, &one)?)
    /// # };
    /// # let adam = Adam::empty(AdamOptions::default())?;
    /// let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new()).seed(0);
    /// let store = svi.store_mut();
    /// store.param("extra", || Tensor::new(1.0f64, &Device::Cpu), &Constraint::Positive)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn store_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }

    /// The optimizer.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Normal};
    /// # use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
    /// # use vi_optim::{Adam, AdamOptions};
    /// # let dev = Device::Cpu;
    /// # let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    /// # let model = |ctx: &mut Ctx| {
    /// #     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
    /// #     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// # };
    /// # let guide = |ctx: &mut Ctx| {
    /// #     let loc = ctx.param("loc", &zero, Constraint::Real)?;
    /// #     ctx.sample("z", Normal::new(&loc, &one)?)
    /// # };
    /// # let adam = Adam::empty(AdamOptions::default())?;
    /// let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new()).seed(0);
    /// use vi_optim::Optimizer;
    /// assert_eq!(svi.optimizer().learning_rate(), 1e-3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn optimizer(&self) -> &O {
        &self.optimizer
    }

    /// The optimizer, mutably (e.g. to change its learning rate).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Normal};
    /// # use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
    /// # use vi_optim::{Adam, AdamOptions};
    /// # let dev = Device::Cpu;
    /// # let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    /// # let model = |ctx: &mut Ctx| {
    /// #     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
    /// #     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// # };
    /// # let guide = |ctx: &mut Ctx| {
    /// #     let loc = ctx.param("loc", &zero, Constraint::Real)?;
    /// #     ctx.sample("z", Normal::new(&loc, &one)?)
    /// # };
    /// # let adam = Adam::empty(AdamOptions::default())?;
    /// let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new()).seed(0);
    /// use vi_optim::Optimizer;
    /// svi.optimizer_mut().set_learning_rate(1e-2);
    /// assert_eq!(svi.optimizer().learning_rate(), 1e-2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn optimizer_mut(&mut self) -> &mut O {
        &mut self.optimizer
    }

    /// Data-parallel SVI over `comm` (Pyro's `HorovodOptimizer`): launch the same program
    /// on every rank, with the same seed. Then each step
    ///
    /// - draws every subsampled plate's indices for the whole world (its subsample size is
    ///   the world's batch, a multiple of the world size, else
    ///   [`InferError::IndivisibleBatch`]) from the generator every rank shares, and runs
    ///   this rank on its contiguous share of them; sites inside such a plate draw from a
    ///   generator of the rank's own, all others (the global latents) draw the same values on
    ///   every rank;
    /// - compares the ranks' sites and parameters (a site or parameter on some ranks only is
    ///   [`InferError::RankMismatch`] naming it; an error on one rank is
    ///   [`InferError::PeerFailed`] on the others), then averages the gradients over the ranks
    ///   with one all-reduce of one fused buffer, and steps the optimizer alike everywhere.
    ///   The report's loss and site sums are the world's. Each rank's plate scale is
    ///   `size / share`; averaged over the ranks it is `size / batch`, the global batch's.
    ///
    /// Before the first step, and whenever parameters appear, rank 0's parameters, optimizer
    /// state and generator are broadcast to every rank. With [`SingleProcess`] (a world of
    /// one) a step is exactly the step without it. Checkpoints are written by rank 0 and
    /// resume on any world size.
    ///
    /// [`SingleProcess`]: crate::parallel::SingleProcess
    ///
    /// ```
    /// use std::sync::Arc;
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Constraint, Normal};
    /// use vi_infer::parallel::SingleProcess;
    /// use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
    /// use vi_optim::{Adam, AdamOptions};
    ///
    /// let dev = Device::Cpu;
    /// let data = Tensor::new(&[1.2f64, 0.8, 1.1, 0.9, 1.0, 1.3, 0.7, 1.0], &dev)?;
    /// let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    /// let model = |ctx: &mut Ctx| {
    ///     let mu = ctx.sample("mu", Normal::new(&zero, &one)?)?;
    ///     // A batch of 4 of the world's: with N ranks, 4 / N on each.
    ///     ctx.plate_subsample("data", 8, 4, |ctx, idx| {
    ///         ctx.observe("x", Normal::new(&mu, &one)?, &data.index_select(idx, 0)?)
    ///     })
    /// };
    /// let guide = |ctx: &mut Ctx| {
    ///     let loc = ctx.param("loc", &zero, Constraint::Real)?;
    ///     ctx.sample("mu", Normal::new(&loc, &one)?)
    /// };
    /// let adam = Adam::empty(AdamOptions { lr: 0.05, ..Default::default() })?;
    /// let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new())
    ///     .seed(0)
    ///     .data_parallel(Arc::new(SingleProcess)); // or Arc::new(Mpi::init()?)
    /// let report = svi.step()?;
    /// assert!(report.loss.is_finite() && report.communication.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn data_parallel(mut self, comm: Arc<dyn Communicator>) -> Self {
        self.parallel = Some(parallel::DataParallel::new(comm));
        self
    }

    /// The communicator of a data-parallel `Svi` ([`data_parallel`](Svi::data_parallel)).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Normal};
    /// # use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
    /// # use vi_optim::{Adam, AdamOptions};
    /// # let dev = Device::Cpu;
    /// # let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    /// # let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
    /// # let guide = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
    /// # let adam = Adam::empty(AdamOptions::default())?;
    /// use vi_infer::parallel::SingleProcess;
    /// let svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new());
    /// assert!(svi.communicator().is_none());
    /// let svi = svi.data_parallel(Arc::new(SingleProcess));
    /// assert_eq!(svi.communicator().unwrap().world_size(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn communicator(&self) -> Option<&Arc<dyn Communicator>> {
        self.parallel.as_ref().map(|p| &p.comm)
    }

    fn compute(&mut self) -> Result<ElboOutput> {
        let (model, guide) = (&mut self.model, &mut self.guide);
        let shard = self
            .parallel
            .as_ref()
            .map(|p| (p.comm.rank(), p.comm.world_size()));
        let mut model = |ctx: &mut Ctx<'_>| {
            if let Some((rank, world)) = shard {
                ctx.set_shard(rank, world);
            }
            model(ctx).map(|_| ())
        };
        let mut guide = |ctx: &mut Ctx<'_>| {
            if let Some((rank, world)) = shard {
                ctx.set_shard(rank, world);
            }
            guide(ctx).map(|_| ())
        };
        self.elbo
            .compute(&mut model, &mut guide, &mut self.store, &mut self.rng)
    }

    /// One step: the ELBO, one backward pass, one optimizer step on the parameters (and the
    /// variables of the modules) the traces touched. Returns the loss and each site's term.
    ///
    /// A NaN or infinite loss is [`InferError::NonFinite`] naming each site whose term is not
    /// finite, before the backward pass; with validation on, so is a NaN or infinite gradient
    /// of any parameter (naming it and its first bad element). Either way the parameters and
    /// the optimizer's state are left as they were.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Normal};
    /// # use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
    /// # use vi_optim::{Adam, AdamOptions};
    /// # let dev = Device::Cpu;
    /// # let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    /// # let model = |ctx: &mut Ctx| {
    /// #     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
    /// #     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// # };
    /// # let guide = |ctx: &mut Ctx| {
    /// #     let loc = ctx.param("loc", &zero, Constraint::Real)?;
    /// #     ctx.sample("z", Normal::new(&loc, &one)?)
    /// # };
    /// # let adam = Adam::empty(AdamOptions::default())?;
    /// let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new()).seed(0);
    /// let first = svi.step()?.loss;
    /// let report = svi.step()?;
    /// assert!(first.is_finite() && report.loss.is_finite());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn step(&mut self) -> Result<StepReport> {
        if self.parallel.is_some() {
            return self.step_parallel(true);
        }
        let out = self.compute()?;
        let loss = read_loss(&out)?;
        let mut grads = out.surrogate.backward()?;
        self.store.renew_shared(&mut grads)?;
        let modules = self.module_vars(&out);
        let params = touched(&self.store, &out, &modules);
        if vi_dist::validation_enabled() {
            check_gradients(&params, &grads)?;
        }
        self.optimizer.step_params(&params, &grads)?;
        Ok(StepReport::new(loss, out))
    }

    /// The loss and each site's term without a gradient step (the generator advances as in
    /// a step).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Normal};
    /// # use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
    /// # use vi_optim::{Adam, AdamOptions};
    /// # let dev = Device::Cpu;
    /// # let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    /// # let model = |ctx: &mut Ctx| {
    /// #     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
    /// #     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// # };
    /// # let guide = |ctx: &mut Ctx| {
    /// #     let loc = ctx.param("loc", &zero, Constraint::Real)?;
    /// #     ctx.sample("z", Normal::new(&loc, &one)?)
    /// # };
    /// # let adam = Adam::empty(AdamOptions::default())?;
    /// let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new()).seed(0);
    /// svi.step()?;
    /// let before = svi.store().get("loc")?.unwrap().to_scalar::<f64>()?;
    /// svi.evaluate_loss()?;
    /// assert_eq!(svi.store().get("loc")?.unwrap().to_scalar::<f64>()?, before);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn evaluate_loss(&mut self) -> Result<StepReport> {
        if self.parallel.is_some() {
            return self.step_parallel(false);
        }
        let out = self.compute()?;
        let loss = out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        Ok(StepReport::new(loss, out))
    }

    /// The variables of the modules the run marked with `ctx.module`.
    fn module_vars(&self, out: &ElboOutput) -> Vec<(String, Var)> {
        let mut vars: Vec<(String, Var)> = Vec::new();
        for m in &out.modules {
            for (n, v) in self.store.module_vars(m) {
                if !vars.iter().any(|(p, _)| p == &n) {
                    vars.push((n, v));
                }
            }
        }
        vars
    }
}

/// The parameters a step touched: the params of both traces (each once, in the order they
/// ran, guide first), then the variables of the modules (`modules`, from
/// [`Svi::module_vars`]) that are not params. Borrowed: nothing is copied per step.
fn touched<'a>(
    store: &'a ParamStore,
    out: &'a ElboOutput,
    modules: &'a [(String, Var)],
) -> Vec<(&'a str, &'a Var)> {
    let mut params: Vec<(&str, &Var)> = Vec::new();
    for tr in [&out.guide_trace, &out.model_trace] {
        for s in tr.sites().filter(|s| s.kind == SiteKind::Param) {
            if params.iter().any(|(n, _)| *n == s.name) {
                continue;
            }
            if let Some(v) = store.unconstrained(&s.name) {
                params.push((s.name.as_str(), v));
            }
        }
    }
    for (n, v) in modules {
        if !params.iter().any(|(p, _)| p == n) {
            params.push((n.as_str(), v));
        }
    }
    params
}
