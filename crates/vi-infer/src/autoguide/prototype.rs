//! The prototype: the model seen once by an automatic guide (its latent sites, supports,
//! shapes and plates), the settings that built it, and the plates of one step (read off the
//! model when they are subsampled).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use vi_dist::{Constraint, Transform, biject_to};

use super::Init;
use super::init::{InitMessenger, site_error};
use crate::ctx::Ctx;
use crate::error::{InferError, Result};
use crate::handlers::Block;
use crate::message::{Message, PlateFrame, SiteKind};
use crate::messenger::Messenger;
use crate::plate::Plate;

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
    /// Whether a model without latent sites gives an empty guide (`AutoDelta`, `AutoNormal`,
    /// as Pyro's) rather than an error (the joint guides, as Pyro's `AutoContinuous`).
    empty_ok: bool,
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
            empty_ok: false,
        }
    }

    /// Lets a model without latent sites give an empty guide (one that samples nothing), as
    /// Pyro's `AutoDelta` and `AutoNormal` do; without it such a model is an error at the
    /// first call (Pyro's `AutoContinuous`: a joint guide needs at least one latent).
    pub(crate) fn empty_ok(mut self) -> Self {
        self.empty_ok = true;
        self
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
    /// guide needs of each: Pyro's `_setup_prototype`. A model without latent sites gives an
    /// empty prototype where the guide allows it ([`Core::empty_ok`]), else an error.
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
        if sites.is_empty() && !self.empty_ok {
            return Err(InferError::Invalid(format!(
                "{}: the model has no latent site to guide",
                self.kind
            )));
        }
        let (dtype, device) = proto_kind(&sites, &trace, ctx.store());
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

/// The dtype and device of the prototype: its first latent site's value; for a model without
/// latent sites (an empty guide), its first observed sample site with a floating-point value,
/// else the store's, else `f64` on the CPU. Only `AutoNormal::quantiles` reads them then (to
/// check the levels).
fn proto_kind(
    sites: &[ProtoSite],
    trace: &crate::Trace,
    store: &crate::ParamStore,
) -> (DType, Device) {
    if let Some(s) = sites.first() {
        return (s.value.dtype(), s.value.device().clone());
    }
    let observed = trace
        .sites()
        .find(|s| s.is_observed && s.kind == SiteKind::Sample && s.value.dtype().is_float());
    if let Some(s) = observed {
        return (s.value.dtype(), s.value.device().clone());
    }
    match (store.dtype(), store.device()) {
        (Some(dtype), Some(device)) => (dtype, device.clone()),
        _ => (DType::F64, Device::Cpu),
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
                let axis = batch_rank.checked_sub(dim.unsigned_abs()).ok_or_else(|| {
                    site_error(
                        "autoguide",
                        &self.name,
                        format!(
                            "a parameter of shape {:?} has no dim {dim} for a subsampled plate",
                            t.dims()
                        ),
                    )
                })?;
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
