//! Automatic guides, as Pyro's `pyro.infer.autoguide`: a guide built from the model itself.
//!
//! | guide | what it learns | parameters (in the store) |
//! |---|---|---|
//! | [`AutoDelta`] | a point (MAP) per latent site, in its support | `AutoDelta.{site}` |
//! | [`AutoNormal`] | a Normal per latent site in the unconstrained space, pushed through `biject_to(support)` (a plain Normal where the support is real) | `AutoNormal.locs.{site}`, `AutoNormal.scales.{site}` |
//! | [`AutoDiagonalNormal`] | one diagonal Normal over all latents, packed in one vector | `AutoDiagonalNormal.loc`, `.scale` |
//! | [`AutoMultivariateNormal`] | one full-covariance Normal over all latents | `AutoMultivariateNormal.loc`, `.scale_tril` |
//! | [`AutoLowRankMultivariateNormal`] | one low-rank-plus-diagonal Normal over all latents | `AutoLowRankMultivariateNormal.loc`, `.scale`, `.cov_factor` |
//! | [`AutoGuideList`] | parts: automatic guides over the sites each exposes, and guides by hand | those of its parts |
//!
//! **How one plugs into [`Svi`](crate::Svi).** An automatic guide needs the model: at its
//! first call it runs the model once (the *prototype*: in a context of its own, so no trace of
//! the step sees it, with every latent site set by the [`Init`] strategy) to learn each latent
//! site's support, shape and plates, and creates its parameters from that. So it takes a copy
//! of the model closure (`AutoNormal::new(model)`: a closure that borrows its data is `Copy`;
//! one that owns it is `Clone`, pass `model.clone()`) and hands `Svi` a closure of its own,
//! [`as_fn`](AutoNormal::as_fn). The guide value is a handle: clones share one state, and
//! the parameters live in the store the step uses, so after training the same handle reads the
//! posterior from `svi.store()`:
//!
//! ```
//! use vi_infer::autoguide::{AutoGuide, AutoNormal};
//! use vi_infer::candle::{Device, Tensor};
//! use vi_infer::dist::Normal;
//! use vi_infer::optim::{Adam, AdamOptions};
//! use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
//! let dev = Device::Cpu;
//! let data = Tensor::new(&[1.2f64, 0.8, 1.1, 0.9], &dev)?;
//! let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
//! let model = |ctx: &mut Ctx| {
//!     let mu = ctx.sample("mu", Normal::new(&zero, &one)?)?;
//!     ctx.plate("data", 4, |ctx| ctx.observe("x", Normal::new(&mu, &one)?, &data))
//! };
//! let guide = AutoNormal::new(model);
//! let adam = Adam::empty(AdamOptions { lr: 0.02, ..Default::default() })?;
//! let mut svi = Svi::new(model, guide.as_fn(), adam, TraceMeanFieldElbo::new()).seed(0);
//! for _ in 0..1000 {
//!     svi.step()?;
//! }
//! let median = guide.median(svi.store())?;
//! assert!((median["mu"].to_scalar::<f64>()? - 0.8).abs() < 0.15); // exact: N(0.8, 0.447)
//! assert!(svi.store().get("AutoNormal.locs.mu")?.is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **Plates and subsampling.** A guide enters the plates the model's site is in, by name and
//! dim. A local latent inside a subsampled plate gets a parameter of the plate's full size,
//! and each step uses the rows of the indices the model uses in that step: before each step
//! the guide runs the model up to its subsampled plates (stopping there, on a generator of its
//! own, hidden from the step) to read the plate's current size, subsample size and, when the
//! model passes indices of its own (`Plate::subsample`), those indices, and enters the plate
//! with them. So the model and the guide see the same indices in one step, also when the model
//! passes its own index tensor (Pyro's autoguides draw fresh indices then: pyro#3468) and when
//! the subsample size changes from one step to the next (numpyro#1739). A model whose
//! subsampled plates are entered late pays for the part of it that runs before them, once per
//! step; a model without subsampled plates pays nothing. The joint guides
//! ([`AutoDiagonalNormal`] and kin) hold one vector over all latents and refuse a local latent
//! in a subsampled plate, as NumPyro's do.
//!
//! **What a step reports.** The guide's sites carry the model's names: the step's report has
//! each latent site's KL term under its name, as for a guide written by hand. A joint guide
//! draws one auxiliary latent vector (`_AutoMultivariateNormal_latent`, …) and gives each
//! model site a `Delta` of its slice, with the log-Jacobian of the bijection as its log
//! density (Pyro's `AutoContinuous`); its report has each model site's term (that log density
//! less the prior's log density) and the auxiliary site's `log q`
//! ([`TermKind::Auxiliary`](crate::TermKind::Auxiliary); the mean-field ELBO takes its
//! expectation, the negative entropy, in closed form).

mod continuous;
mod delta;
mod init;
mod list;
mod normal;
mod quantile;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use rand::RngCore;
use vi_dist::{Constraint, Transform, biject_to};

pub use continuous::{
    AutoDiagonalNormal, AutoLowRankMultivariateNormal, AutoMultivariateNormal, LatentSlice,
};
pub use delta::AutoDelta;
pub use init::Init;
pub use list::AutoGuideList;
pub use normal::AutoNormal;

use crate::ctx::Ctx;
use crate::error::{InferError, Result};
use crate::handlers::Block;
use crate::message::{Message, PlateFrame, SiteKind};
use crate::messenger::Messenger;
use crate::param_store::ParamStore;
use crate::plate::Plate;
use init::{InitMessenger, site_error};

/// Values per latent site, by name: what [`AutoGuide::median`], [`AutoGuide::quantiles`] and
/// [`AutoGuide::sample_posterior`] return (constrained values, in each site's support).
pub type Values = BTreeMap<String, Tensor>;

/// What every automatic guide offers (object safe, so an [`AutoGuideList`] holds any of them).
/// The values are constrained (in each site's support), and a local site inside a subsampled
/// plate has the plate's full size.
///
/// ```
/// use vi_infer::autoguide::{AutoDelta, AutoGuide};
/// # use vi_infer::candle::{Device, Tensor};
/// # use vi_infer::dist::Normal;
/// # use vi_infer::Ctx;
/// # let dev = Device::Cpu;
/// # let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
/// let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
/// let guides: Vec<Box<dyn AutoGuide>> = vec![Box::new(AutoDelta::new(model))];
/// assert!(guides[0].latent_sites().is_empty()); // known after the first call
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait AutoGuide {
    /// Runs the guide (building its prototype and parameters at the first call).
    fn call(&self, ctx: &mut Ctx<'_>) -> Result<()>;

    /// The posterior median of each latent site.
    fn median(&self, store: &ParamStore) -> Result<Values>;

    /// The posterior quantiles `qs` (each in (0, 1)) of each latent site, marginally: a tensor
    /// `[qs.len(), …site shape]` per site.
    fn quantiles(&self, store: &ParamStore, qs: &[f64]) -> Result<Values>;

    /// `n` draws from the guide: a tensor `[n, …site shape]` per site.
    fn sample_posterior(
        &self,
        store: &ParamStore,
        n: usize,
        rng: &mut dyn RngCore,
    ) -> Result<Values>;

    /// The latent sites the guide covers, in the model's order (empty before its first call).
    fn latent_sites(&self) -> Vec<String>;
}

impl<G: AutoGuide + ?Sized> AutoGuide for Box<G> {
    fn call(&self, ctx: &mut Ctx<'_>) -> Result<()> {
        (**self).call(ctx)
    }

    fn median(&self, store: &ParamStore) -> Result<Values> {
        (**self).median(store)
    }

    fn quantiles(&self, store: &ParamStore, qs: &[f64]) -> Result<Values> {
        (**self).quantiles(store, qs)
    }

    fn sample_posterior(
        &self,
        store: &ParamStore,
        n: usize,
        rng: &mut dyn RngCore,
    ) -> Result<Values> {
        (**self).sample_posterior(store, n, rng)
    }

    fn latent_sites(&self) -> Vec<String> {
        (**self).latent_sites()
    }
}

/// A model, as an automatic guide keeps it.
type Model<'m> = Box<dyn FnMut(&mut Ctx<'_>) -> Result<()> + 'm>;

/// The settings and state every automatic guide shares: the model, its prototype, the
/// initialisation, the prefix of its parameters.
pub(crate) struct Core<'m> {
    /// The guide's kind, for messages: `AutoNormal`, …
    kind: &'static str,
    model: RefCell<Model<'m>>,
    settings: RefCell<Settings>,
    proto: RefCell<Option<Rc<Prototype>>>,
}

/// What the builder methods set (read when the prototype is built).
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub prefix: String,
    pub init: Init,
    pub block: Option<Block>,
    pub seed: u64,
    pub init_scale: f64,
    pub rank: Option<usize>,
}

impl<'m> Core<'m> {
    pub(crate) fn new<M, T>(kind: &'static str, mut model: M) -> Self
    where
        M: FnMut(&mut Ctx<'_>) -> Result<T> + 'm,
    {
        Self {
            kind,
            model: RefCell::new(Box::new(move |ctx: &mut Ctx<'_>| model(ctx).map(|_| ()))),
            settings: RefCell::new(Settings {
                prefix: kind.to_string(),
                init: Init::default(),
                block: None,
                seed: 0,
                init_scale: 0.1,
                rank: None,
            }),
            proto: RefCell::new(None),
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        self.kind
    }

    /// Changes the settings (builder methods: before the first call).
    pub(crate) fn set(&self, f: impl FnOnce(&mut Settings)) {
        f(&mut self.settings.borrow_mut());
    }

    /// A copy of the settings.
    pub(crate) fn settings(&self) -> Settings {
        self.settings.borrow().clone()
    }

    /// Runs the model, under this guide's `block` if it has one.
    fn run_model(&self, ctx: &mut Ctx<'_>, block: &Option<Block>) -> Result<()> {
        let mut model = self.model.try_borrow_mut().map_err(|_| {
            InferError::Invalid(format!(
                "{}: the model was called from within itself",
                self.kind
            ))
        })?;
        match block {
            Some(which) => ctx.block(which.clone(), |ctx| model(ctx)),
            None => model(ctx),
        }
    }

    /// The prototype, if built.
    pub(crate) fn prototype(&self) -> Option<Rc<Prototype>> {
        self.proto.borrow().clone()
    }

    /// The prototype, or an error saying the guide has not run yet.
    pub(crate) fn built(&self) -> Result<Rc<Prototype>> {
        self.prototype().ok_or_else(|| {
            InferError::Invalid(format!(
                "{}: the guide has not run yet (its sites and parameters come from the first \
                 call: train it, or call it once, first)",
                self.kind
            ))
        })
    }

    /// The prototype, built from one run of the model at the first call.
    pub(crate) fn ensure(&self, ctx: &mut Ctx<'_>) -> Result<Rc<Prototype>> {
        if let Some(p) = self.prototype() {
            return Ok(p);
        }
        let p = Rc::new(self.build(ctx)?);
        *self.proto.borrow_mut() = Some(p.clone());
        Ok(p)
    }

    /// Runs the model once with every latent site at its initial value and records what the
    /// guide needs of each: Pyro's `_setup_prototype`.
    fn build(&self, ctx: &mut Ctx<'_>) -> Result<Prototype> {
        let settings = self.settings();
        let init = InitMessenger::new(settings.init.clone(), self.kind, settings.seed);
        let block = &settings.block;
        let trace = ctx.detached(|ctx| {
            ctx.seed(settings.seed, |ctx| {
                let ((), trace) = ctx
                    .with(init, |ctx| ctx.trace(|ctx| self.run_model(ctx, block)))?
                    .0;
                Ok(trace)
            })
        })?;
        let mut sites = Vec::new();
        let mut subsampled: Vec<PlateFrame> = Vec::new();
        for s in trace.sites().filter(|s| s.is_latent()) {
            let Some(dist) = &s.dist else { continue };
            let support = dist.support();
            let event_dim = dist.event_shape().len();
            let mut value = s.value.detach();
            let batch_rank = value.rank().saturating_sub(event_dim);
            for p in &s.plates {
                let k = p.dim.unsigned_abs();
                if k > batch_rank {
                    return Err(site_error(
                        self.kind,
                        &s.name,
                        format!(
                            "its value of shape {:?} has no dim {} for plate `{}`",
                            value.dims(),
                            p.dim,
                            p.name
                        ),
                    ));
                }
                if p.subsample_size < p.size {
                    value = periodic_repeat(&value, p.size, batch_rank - k)?;
                    if !subsampled.iter().any(|q| q.name == p.name) {
                        subsampled.push(p.clone());
                    }
                }
            }
            let transform: Arc<dyn Transform> = Arc::from(biject_to(&support)?);
            let unconstrained = transform.inverse(&value)?.detach();
            if !crate::finite::all_finite(&unconstrained)? {
                return Err(site_error(
                    self.kind,
                    &s.name,
                    format!(
                        "its initial value maps to a non-finite point of the unconstrained space \
                         of {support}"
                    ),
                ));
            }
            let unc_event_dim = (event_dim + unconstrained.rank()).saturating_sub(value.rank());
            let real = is_real(&support);
            sites.push(ProtoSite {
                name: s.name.clone(),
                support,
                transform,
                real,
                event_dim,
                plates: s.plates.clone(),
                value,
                unconstrained,
                unc_event_dim,
            });
        }
        if sites.is_empty() {
            return Err(InferError::Invalid(format!(
                "{}: the model has no latent site to guide",
                self.kind
            )));
        }
        let (dtype, device) = (sites[0].value.dtype(), sites[0].value.device().clone());
        Ok(Prototype {
            sites,
            subsampled,
            dtype,
            device,
            settings,
        })
    }

    /// The settings of the prototype's subsampled plates for this step, read off the model
    /// (see the module docs): name → size and indices.
    pub(crate) fn step_plates(
        &self,
        ctx: &mut Ctx<'_>,
        proto: &Prototype,
    ) -> Result<HashMap<String, StepPlate>> {
        let mut out = HashMap::new();
        if proto.subsampled.is_empty() {
            return Ok(out);
        }
        let found = Rc::new(RefCell::new(HashMap::new()));
        let probe = PlateProbe {
            wanted: proto.subsampled.iter().map(|p| p.name.clone()).collect(),
            found: found.clone(),
        };
        let seed = proto.settings.seed ^ 0x5eed_9a7e;
        let block = &proto.settings.block;
        let run = ctx.detached(|ctx| {
            ctx.seed(seed, |ctx| {
                Ok(ctx.with(probe, |ctx| self.run_model(ctx, block)))
            })
        })?;
        let found = found.take();
        let complete = found.len() == proto.subsampled.len();
        if let Err(e) = run
            && !complete
        {
            return Err(e);
        }
        for p in &proto.subsampled {
            let setting = match found.get(&p.name) {
                Some(s) => s.clone(),
                // The model did not enter it this time: the prototype's settings.
                None => StepPlate {
                    size: p.size,
                    indices: Indices::Draw(p.subsample_size),
                },
            };
            out.insert(p.name.clone(), setting);
        }
        Ok(out)
    }
}

/// Whether a support is the reals (per element, or as an event of reals).
fn is_real(c: &Constraint) -> bool {
    match c {
        Constraint::Real => true,
        Constraint::Independent { base, .. } => is_real(base),
        _ => false,
    }
}

/// `value` repeated along `axis` up to `size` (Pyro's `periodic_repeat`): the prototype's
/// values of a subsampled plate, spread over its full size.
fn periodic_repeat(value: &Tensor, size: usize, axis: usize) -> Result<Tensor> {
    let n = value.dims()[axis];
    let reps = size.div_ceil(n.max(1));
    let parts = vec![value.clone(); reps];
    Ok(Tensor::cat(&parts, axis)?
        .narrow(axis, 0, size)?
        .contiguous()?)
}

/// The model seen once: its latent sites, in order, and its subsampled plates.
pub(crate) struct Prototype {
    pub sites: Vec<ProtoSite>,
    pub subsampled: Vec<PlateFrame>,
    pub dtype: DType,
    pub device: Device,
    /// The settings it was built with.
    pub settings: Settings,
}

/// One latent site of the prototype.
pub(crate) struct ProtoSite {
    pub name: String,
    pub support: Constraint,
    /// `biject_to(support)`, shared with the distributions built from it.
    pub transform: Arc<dyn Transform>,
    /// Whether the support is the reals (no transform needed).
    pub real: bool,
    /// The event dims of the site's distribution.
    pub event_dim: usize,
    /// The plates, outermost first (subsample sizes as in the prototype run).
    pub plates: Vec<PlateFrame>,
    /// The initial constrained value, at the full size of subsampled plates.
    pub value: Tensor,
    /// Its image in the unconstrained space.
    pub unconstrained: Tensor,
    /// The event dims of the unconstrained value.
    pub unc_event_dim: usize,
}

impl ProtoSite {
    /// Selects the rows of this step's subsample from a full-size tensor whose last
    /// `event_dim` dims are event dims (the plates' dims are counted left of them).
    pub(crate) fn select(
        &self,
        t: &Tensor,
        event_dim: usize,
        indices: &[(isize, Option<Tensor>)],
    ) -> Result<Tensor> {
        let mut t = t.clone();
        let batch_rank = t.rank().saturating_sub(event_dim);
        for (dim, idx) in indices {
            if let Some(idx) = idx {
                let axis = batch_rank - dim.unsigned_abs();
                t = t.index_select(idx, axis)?;
            }
        }
        Ok(t)
    }

    /// Runs `f` inside this site's plates, entered by name and dim with this step's settings
    /// for the subsampled ones; `f` receives each plate's dim and, for a subsampled one, its
    /// indices.
    pub(crate) fn in_plates<T>(
        &self,
        ctx: &mut Ctx<'_>,
        step: &HashMap<String, StepPlate>,
        f: impl FnOnce(&mut Ctx<'_>, &[(isize, Option<Tensor>)]) -> Result<T>,
    ) -> Result<T> {
        let mut f = Some(f);
        let mut out = None;
        let mut idx = Vec::with_capacity(self.plates.len());
        enter(ctx, &self.plates, step, &mut idx, &mut |ctx, idx| {
            if let Some(f) = f.take() {
                out = Some(f(ctx, idx)?);
            }
            Ok(())
        })?;
        out.ok_or_else(|| InferError::Invalid("plates entered twice".into()))
    }
}

/// Each entered plate's dim and, for a subsampled one, its indices in this step.
pub(crate) type PlateIndices = [(isize, Option<Tensor>)];

/// Enters `plates` (outermost first) one inside the other and calls `f` inside them all.
fn enter(
    ctx: &mut Ctx<'_>,
    plates: &[PlateFrame],
    step: &HashMap<String, StepPlate>,
    idx: &mut Vec<(isize, Option<Tensor>)>,
    f: &mut dyn FnMut(&mut Ctx<'_>, &PlateIndices) -> Result<()>,
) -> Result<()> {
    let Some((p, rest)) = plates.split_first() else {
        return f(ctx, idx);
    };
    let mut run = |ctx: &mut Ctx<'_>, i: &Tensor, sub: bool| {
        idx.push((p.dim, sub.then(|| i.clone())));
        let r = enter(ctx, rest, step, idx, f);
        idx.pop();
        r
    };
    match step.get(&p.name) {
        Some(StepPlate {
            size,
            indices: Indices::Given(given),
        }) => ctx.plate_with(
            Plate::new(&p.name, *size).dim(p.dim).subsample(given),
            |ctx, i| run(ctx, i, true),
        ),
        Some(StepPlate {
            size,
            indices: Indices::Draw(n),
        }) => ctx.plate_with(
            Plate::new(&p.name, *size).dim(p.dim).subsample_size(*n),
            |ctx, i| run(ctx, i, true),
        ),
        None => ctx.plate_with(Plate::new(&p.name, p.size).dim(p.dim), |ctx, i| {
            run(ctx, i, false)
        }),
    }
}

/// A subsampled plate's settings in one step.
#[derive(Clone, Debug)]
pub(crate) struct StepPlate {
    size: usize,
    indices: Indices,
}

/// The indices of a subsampled plate in one step: drawn (this many), or the model's own.
#[derive(Clone, Debug)]
enum Indices {
    Draw(usize),
    Given(Tensor),
}

/// Records the settings of the named subsampled plates as the model enters them, and stops
/// the model (with an error the caller discards) once it has them all: the way Pyro's
/// `poutine.escape` leaves a program early.
struct PlateProbe {
    wanted: Vec<String>,
    found: Rc<RefCell<HashMap<String, StepPlate>>>,
}

impl Messenger for PlateProbe {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if msg.kind != SiteKind::Subsample || !self.wanted.contains(&msg.name) {
            return Ok(());
        }
        let Some(s) = &msg.subsample else {
            return Ok(());
        };
        let indices = match &msg.value {
            Some(given) => Indices::Given(given.clone()),
            None => Indices::Draw(s.subsample_size),
        };
        let mut found = self.found.borrow_mut();
        found.insert(
            msg.name.clone(),
            StepPlate {
                size: s.size,
                indices,
            },
        );
        if found.len() == self.wanted.len() {
            return Err(InferError::Invalid(
                "the autoguide's plate probe stops the model here".into(),
            ));
        }
        Ok(())
    }
}

/// The builder methods every automatic guide shares (`new`, `init`, `block`, `prefix`, `seed`,
/// `as_fn`), with examples that name the guide.
macro_rules! builder_methods {
    ($guide:ident) => {
        impl<'m> $guide<'m> {
            #[doc = concat!("The ", stringify!($guide), " of `model` (it keeps a copy of the model closure: see the")]
            #[doc = "[module](super) docs), with [`Init::median`](super::Init::median)."]
            #[doc = ""]
            #[doc = "```"]
            #[doc = "# use vi_infer::candle::{Device, Tensor};"]
            #[doc = "# use vi_infer::dist::Normal;"]
            #[doc = "# use vi_infer::Ctx;"]
            #[doc = "# let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);"]
            #[doc = "let model = |ctx: &mut Ctx| ctx.sample(\"z\", Normal::new(&zero, &one)?);"]
            #[doc = concat!("let guide = vi_infer::autoguide::", stringify!($guide), "::new(model);")]
            #[doc = "# Ok::<(), Box<dyn std::error::Error>>(())"]
            #[doc = "```"]
            pub fn new<M, T>(model: M) -> Self
            where
                M: FnMut(&mut $crate::Ctx<'_>) -> $crate::Result<T> + 'm,
            {
                Self::from_core($crate::autoguide::Core::new(stringify!($guide), model))
            }

            #[doc = "The initialisation strategy (set before the first call)."]
            #[doc = ""]
            #[doc = "```"]
            #[doc = "# use vi_infer::candle::{Device, Tensor};"]
            #[doc = "# use vi_infer::dist::Normal;"]
            #[doc = "# use vi_infer::Ctx;"]
            #[doc = "# let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);"]
            #[doc = "# let model = |ctx: &mut Ctx| ctx.sample(\"z\", Normal::new(&zero, &one)?);"]
            #[doc = "use vi_infer::autoguide::Init;"]
            #[doc = concat!("let guide = vi_infer::autoguide::", stringify!($guide), "::new(model).init(Init::Feasible);")]
            #[doc = "# Ok::<(), Box<dyn std::error::Error>>(())"]
            #[doc = "```"]
            pub fn init(self, init: $crate::autoguide::Init) -> Self {
                self.core.set(|s| s.init = init);
                self
            }

            #[doc = "Guides only the sites `which` leaves visible, as Pyro's guide of"]
            #[doc = "`poutine.block(model, …)`: a part of an [`AutoGuideList`](super::AutoGuideList)."]
            #[doc = ""]
            #[doc = "```"]
            #[doc = "# use vi_infer::candle::{Device, Tensor};"]
            #[doc = "# use vi_infer::dist::Normal;"]
            #[doc = "# use vi_infer::Ctx;"]
            #[doc = "# let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);"]
            #[doc = "# let model = |ctx: &mut Ctx| ctx.sample(\"z\", Normal::new(&zero, &one)?);"]
            #[doc = "use vi_infer::handlers::Block;"]
            #[doc = concat!("let guide = vi_infer::autoguide::", stringify!($guide), "::new(model).block(Block::expose([\"z\"]));")]
            #[doc = "# Ok::<(), Box<dyn std::error::Error>>(())"]
            #[doc = "```"]
            pub fn block(self, which: $crate::handlers::Block) -> Self {
                self.core.set(|s| s.block = Some(which));
                self
            }

            #[doc = concat!("The prefix of its parameters' names (default `", stringify!($guide), "`), to keep two")]
            #[doc = "guides of one kind apart in one store."]
            #[doc = ""]
            #[doc = "```"]
            #[doc = "# use vi_infer::candle::{Device, Tensor};"]
            #[doc = "# use vi_infer::dist::Normal;"]
            #[doc = "# use vi_infer::Ctx;"]
            #[doc = "# let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);"]
            #[doc = "# let model = |ctx: &mut Ctx| ctx.sample(\"z\", Normal::new(&zero, &one)?);"]
            #[doc = concat!("let guide = vi_infer::autoguide::", stringify!($guide), "::new(model).prefix(\"globals\");")]
            #[doc = "# Ok::<(), Box<dyn std::error::Error>>(())"]
            #[doc = "```"]
            pub fn prefix(self, prefix: &str) -> Self {
                self.core.set(|s| s.prefix = prefix.to_string());
                self
            }

            #[doc = "The seed of the initialisation's draws (default 0)."]
            #[doc = ""]
            #[doc = "```"]
            #[doc = "# use vi_infer::candle::{Device, Tensor};"]
            #[doc = "# use vi_infer::dist::Normal;"]
            #[doc = "# use vi_infer::Ctx;"]
            #[doc = "# let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);"]
            #[doc = "# let model = |ctx: &mut Ctx| ctx.sample(\"z\", Normal::new(&zero, &one)?);"]
            #[doc = concat!("let guide = vi_infer::autoguide::", stringify!($guide), "::new(model).seed(3);")]
            #[doc = "# Ok::<(), Box<dyn std::error::Error>>(())"]
            #[doc = "```"]
            pub fn seed(self, seed: u64) -> Self {
                self.core.set(|s| s.seed = seed);
                self
            }

            #[doc = "The guide as `Svi` takes it: a closure over a handle to this guide (clones of a"]
            #[doc = "guide share its state)."]
            #[doc = ""]
            #[doc = "```"]
            #[doc = "# use vi_infer::candle::{Device, Tensor};"]
            #[doc = "# use vi_infer::dist::Normal;"]
            #[doc = "# use vi_infer::Ctx;"]
            #[doc = "# let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);"]
            #[doc = "# let model = |ctx: &mut Ctx| ctx.sample(\"z\", Normal::new(&zero, &one)?);"]
            #[doc = "use vi_infer::autoguide::AutoGuide;"]
            #[doc = concat!("let guide = vi_infer::autoguide::", stringify!($guide), "::new(model);")]
            #[doc = "let (mut store, mut rng) = vi_infer::doc_support::store_and_rng();"]
            #[doc = "let (_, tr) = Ctx::new(&mut store, &mut rng).trace(guide.as_fn())?;"]
            #[doc = "assert!(tr.contains(\"z\") && guide.latent_sites() == [\"z\"]);"]
            #[doc = "# Ok::<(), Box<dyn std::error::Error>>(())"]
            #[doc = "```"]
            pub fn as_fn(&self) -> impl FnMut(&mut $crate::Ctx<'_>) -> $crate::Result<()> + 'm {
                $crate::autoguide::guide_fn(self.clone())
            }
        }

        impl std::fmt::Debug for $guide<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                use $crate::autoguide::AutoGuide;
                f.debug_struct(stringify!($guide))
                    .field("sites", &self.latent_sites())
                    .finish()
            }
        }
    };
}
pub(crate) use builder_methods;

/// The closure an automatic guide gives `Svi`: it runs the guide and discards its value.
pub(crate) fn guide_fn<'g, G: AutoGuide + 'g>(
    guide: G,
) -> impl FnMut(&mut Ctx<'_>) -> Result<()> + 'g {
    move |ctx: &mut Ctx<'_>| guide.call(ctx)
}

/// The full-size constrained values of every site from one flat function of each: `f` gives a
/// site's unconstrained tensor (shape `prefix + unconstrained shape`), pushed through its
/// bijection.
pub(crate) fn constrain(site: &ProtoSite, unconstrained: &Tensor) -> Result<Tensor> {
    if site.real {
        Ok(unconstrained.clone())
    } else {
        Ok(site.transform.forward(unconstrained)?)
    }
}

/// A tensor `[k] + shape` of `k` copies of `t` (a point mass's draws or quantiles).
pub(crate) fn repeat_leading(t: &Tensor, k: usize) -> Result<Tensor> {
    let mut shape = vec![k];
    shape.extend_from_slice(t.dims());
    Ok(t.unsqueeze(0)?.broadcast_as(shape)?.contiguous()?)
}

/// The standard normal quantiles of `qs` as a tensor `[qs.len()]` in `dtype` on `device`;
/// each `q` in (0, 1), else an error.
pub(crate) fn normal_quantiles(qs: &[f64], dtype: DType, device: &Device) -> Result<Tensor> {
    let mut z = Vec::with_capacity(qs.len());
    for &q in qs {
        if !(q > 0.0 && q < 1.0) {
            return Err(InferError::Invalid(format!(
                "quantile {q} is not in (0, 1)"
            )));
        }
        z.push(quantile::standard_normal_quantile(q));
    }
    Ok(Tensor::from_vec(z, qs.len(), &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(device)?)
}
