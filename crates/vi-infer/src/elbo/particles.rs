//! What every ELBO shares: its particles (one run after another, or vectorised in an outer
//! plate), the run of guide and model with the checks on the pair, the average over
//! particles, and the builder methods. Each ELBO's own file holds only its estimator: what
//! it computes from one run.

use std::cell::Cell;

use candle_core::Tensor;
use rand::RngCore;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{ElboOutput, Program, SiteTerm};
use crate::checks;
use crate::ctx::Ctx;
use crate::error::{InferError, Result};
use crate::handlers::SeedMessenger;
use crate::param_store::ParamStore;
use crate::trace::{Site, Trace};
pub(crate) use crate::util::sum_all;

/// Settings shared by the ELBOs: particles and their vectorisation.
#[derive(Clone, Debug)]
pub(crate) struct Particles {
    pub num: usize,
    pub vectorize: bool,
    pub max_plate_nesting: Cell<Option<usize>>,
    /// Whether the runs enumerate the marked sites (`TraceEnumElbo`).
    pub enumerate: bool,
}

impl Default for Particles {
    fn default() -> Self {
        Self {
            num: 1,
            vectorize: false,
            max_plate_nesting: Cell::new(None),
            enumerate: false,
        }
    }
}

/// The name of the outer plate that vectorised particles live in.
///
/// ```
/// assert_eq!(vi_infer::PARTICLE_PLATE, "_num_particles_vectorized");
/// ```
pub const PARTICLE_PLATE: &str = "_num_particles_vectorized";

/// One run: the guide traced, the model traced while replaying the guide's values, both
/// inside the particle plate when `particles` is `Some((n, dim))`.
pub(crate) struct Run {
    pub guide: Trace,
    pub model: Trace,
    pub modules: Vec<String>,
}

pub(crate) fn run(
    model: &mut Program<'_>,
    guide: &mut Program<'_>,
    store: &mut ParamStore,
    rng: &mut dyn RngCore,
    particles: Option<(usize, isize)>,
    max_plate_nesting: Option<usize>,
) -> Result<Run> {
    let mut ctx = Ctx::new(store, rng);
    let in_particles = |ctx: &mut Ctx<'_>, f: &mut Program<'_>| -> Result<()> {
        match particles {
            Some((n, dim)) => ctx.plate_dim(PARTICLE_PLATE, n, dim, |ctx| f(ctx)),
            None => f(ctx),
        }
    };
    let (out, guide_trace) = ctx.trace_partial(|ctx| in_particles(ctx, guide))?;
    out.map_err(|e| e.in_program("guide", guide_trace.last_name()))?;
    // The guide's trace moves into the replay handler and back out: nothing is copied.
    let (out, model_trace) =
        ctx.trace_partial(|ctx| ctx.replay_owned(guide_trace, |ctx| in_particles(ctx, model)))?;
    let ((), guide_trace) = out.map_err(|e| e.in_program("model", model_trace.last_name()))?;
    let modules = ctx.modules().to_vec();
    // With vectorised particles, the particle dim is one more plate dim.
    let nesting = match (particles, max_plate_nesting) {
        (Some((_, dim)), _) => Some(dim.unsigned_abs()),
        (None, n) => n,
    };
    checks::check_model_guide_match(&model_trace, &guide_trace, nesting)?;
    for s in model_trace.sites().chain(guide_trace.sites()) {
        checks::check_site_shape(s, nesting)?;
    }
    Ok(Run {
        guide: guide_trace,
        model: model_trace,
        modules,
    })
}

/// The number of batch dims the particle plate must stay clear of: the deepest plate dim of
/// the two traces, or the largest batch rank of their sample sites if that is larger (a
/// batch dim outside any plate would otherwise collide with the particle dim).
pub(crate) fn plate_nesting(a: &Trace, b: &Trace) -> usize {
    a.sites()
        .chain(b.sites())
        .map(|s| {
            let plates = s
                .plates
                .iter()
                .map(|p| p.dim.unsigned_abs())
                .max()
                .unwrap_or(0);
            let batch = s.dist.as_ref().map_or(0, |d| d.batch_shape().len());
            plates.max(batch)
        })
        .max()
        .unwrap_or(0)
}

/// What an ELBO's estimator computes from one run.
pub(crate) struct Estimate {
    /// −ELBO of the run, summed over the particles it holds: a scalar.
    pub loss: Tensor,
    /// Its surrogate (the same tensor where every latent site is reparameterised).
    pub surrogate: Tensor,
    /// Each sample site's term, in the model's order.
    pub terms: Vec<SiteTerm>,
}

/// What an estimator that sees every particle at once computes.
pub(crate) struct JointEstimate {
    /// The loss over all the particles: a scalar.
    pub loss: Tensor,
    /// Its surrogate.
    pub surrogate: Tensor,
    /// Each run's site terms (summed over the particles a vectorised run holds).
    pub terms: Vec<Vec<SiteTerm>>,
}

impl Particles {
    /// The ELBO: runs the particles, applies `estimate` to each run, and averages the losses,
    /// the surrogates and the terms over all particles.
    pub(crate) fn compute(
        &self,
        model: &mut Program<'_>,
        guide: &mut Program<'_>,
        store: &mut ParamStore,
        rng: &mut dyn RngCore,
        estimate: impl Fn(&Run, &ParamStore) -> Result<Estimate>,
    ) -> Result<ElboOutput> {
        let (runs, vectorized) = self.runs(model, guide, store, rng)?;
        let n = (runs.len() * vectorized) as f64;
        let (mut loss, mut surrogate, mut same) = (None, None, true);
        let mut per_run = Vec::with_capacity(runs.len());
        let mut last = None;
        for run in runs {
            let e = estimate(&run, store)?;
            same &= e.surrogate.id() == e.loss.id();
            loss = accumulate(loss, e.loss)?;
            surrogate = accumulate(surrogate, e.surrogate)?;
            per_run.push(e.terms);
            last = Some(run);
        }
        let (Some(last), Some(loss), Some(surrogate)) = (last, loss, surrogate) else {
            return Err(InferError::Invalid("no particles ran".into()));
        };
        // One particle: no division (a graph node that changes nothing).
        let loss = if n == 1.0 { loss } else { (loss / n)? };
        let surrogate = match (same, n == 1.0) {
            (true, _) => loss.clone(),
            (false, true) => surrogate,
            (false, false) => (surrogate / n)?,
        };
        Ok(ElboOutput {
            loss,
            surrogate,
            sites: average_terms(per_run, vectorized)?,
            model_trace: last.model,
            guide_trace: last.guide,
            modules: last.modules,
        })
    }

    /// The ELBO of an estimator that needs every particle at once (a bound that is not an
    /// average over particles, such as Rényi's): runs the particles and hands all the runs to
    /// `estimate`, with the number of particles each holds (1, or `num` when vectorised). Its
    /// terms (per run) are averaged over the particles as [`compute`](Particles::compute)
    /// averages them.
    pub(crate) fn compute_joint(
        &self,
        model: &mut Program<'_>,
        guide: &mut Program<'_>,
        store: &mut ParamStore,
        rng: &mut dyn RngCore,
        estimate: impl FnOnce(&[Run], usize, &ParamStore) -> Result<JointEstimate>,
    ) -> Result<ElboOutput> {
        let (mut runs, vectorized) = self.runs(model, guide, store, rng)?;
        let e = estimate(&runs, vectorized, store)?;
        let Some(last) = runs.pop() else {
            return Err(InferError::Invalid("no particles ran".into()));
        };
        Ok(ElboOutput {
            loss: e.loss,
            surrogate: e.surrogate,
            sites: average_terms(e.terms, vectorized)?,
            model_trace: last.model,
            guide_trace: last.guide,
            modules: last.modules,
        })
    }

    /// Runs the particles: `num` runs one after another, or one run with a particle plate
    /// outside every other plate. Returns the runs and the number of particles each holds.
    pub(crate) fn runs(
        &self,
        model: &mut Program<'_>,
        guide: &mut Program<'_>,
        store: &mut ParamStore,
        rng: &mut dyn RngCore,
    ) -> Result<(Vec<Run>, usize)> {
        if self.enumerate {
            return super::trace_enum::runs(self, model, guide, store, rng);
        }
        if self.num == 0 {
            return Err(InferError::Invalid(
                "num_particles must be at least 1".into(),
            ));
        }
        if !self.vectorize || self.num == 1 {
            let mut runs = Vec::with_capacity(self.num);
            for _ in 0..self.num {
                runs.push(run(
                    model,
                    guide,
                    store,
                    rng,
                    None,
                    self.max_plate_nesting.get(),
                )?);
            }
            return Ok((runs, 1));
        }
        let nesting = self.nesting(model, guide, store)?;
        let dim = -(nesting as isize) - 1;
        Ok((
            vec![run(
                model,
                guide,
                store,
                rng,
                Some((self.num, dim)),
                Some(nesting),
            )?],
            self.num,
        ))
    }
}

impl Particles {
    /// `max_plate_nesting`, given or discovered (once) by a throw-away run on a generator of
    /// its own, so the step's draws do not depend on whether this ran.
    pub(crate) fn nesting(
        &self,
        model: &mut Program<'_>,
        guide: &mut Program<'_>,
        store: &mut ParamStore,
    ) -> Result<usize> {
        if let Some(n) = self.max_plate_nesting.get() {
            return Ok(n);
        }
        let mut own = ChaCha8Rng::seed_from_u64(0);
        let mut ctx = Ctx::new(store, &mut own);
        let probe = ctx.with(SeedMessenger::new(0), |ctx| {
            let ((), g) = ctx.trace(|ctx| guide(ctx))?;
            let ((), m) = ctx.trace(|ctx| ctx.replay(&g, |ctx| model(ctx)))?;
            Ok(plate_nesting(&m, &g))
        })?;
        self.max_plate_nesting.set(Some(probe.0));
        Ok(probe.0)
    }
}

/// Whether a latent site's model and guide agree on plates, scale and mask, so that the
/// guide's analytic KL stands for both (otherwise the site takes the Monte Carlo term).
pub(crate) fn sites_agree(model: &Site, guide: &Site) -> bool {
    let same_plates = model.plates.len() == guide.plates.len()
        && model.plates.iter().zip(&guide.plates).all(|(a, b)| {
            a.name == b.name && a.dim == b.dim && a.subsample_size == b.subsample_size
        });
    let same_scale = (model.scale - guide.scale).abs() <= 1e-12 * model.scale.abs().max(1.0)
        && match (&model.scale_tensor, &guide.scale_tensor) {
            (None, None) => true,
            (Some(a), Some(b)) => a.id() == b.id(),
            _ => false,
        };
    let same_mask = match (&model.mask, &guide.mask) {
        (None, None) => true,
        (Some(a), Some(b)) => a.id() == b.id(),
        _ => false,
    };
    same_plates && same_scale && same_mask
}

/// The loss of a run without sample sites (a model whose latents are all conditioned away
/// and that observes nothing, or an empty one): 0, as Pyro, in the store's dtype and on its
/// device (f32 on the CPU for a store that has neither yet).
pub(crate) fn zero_loss(store: &ParamStore) -> Result<Tensor> {
    let device = store.device().cloned().unwrap_or(candle_core::Device::Cpu);
    let dtype = store.dtype().unwrap_or(candle_core::DType::F32);
    Ok(Tensor::zeros((), dtype, &device)?)
}

/// Adds `b` to an optional running sum.
pub(crate) fn accumulate(total: Option<Tensor>, b: Tensor) -> Result<Option<Tensor>> {
    Ok(Some(match total {
        Some(t) => (t + b)?,
        None => b,
    }))
}

/// Adds `b` to an optional running sum, or subtracts it when `negate`: one graph node per term
/// (no multiplication by ±1), the first term taken as is (or negated).
pub(crate) fn accumulate_signed(
    total: Option<Tensor>,
    b: &Tensor,
    negate: bool,
) -> Result<Option<Tensor>> {
    Ok(Some(match (total, negate) {
        (Some(t), false) => (t + b)?,
        (Some(t), true) => (t - b)?,
        (None, false) => b.clone(),
        (None, true) => b.neg()?,
    }))
}

/// Averages per-site terms over `runs` sequential runs holding `vectorized` particles each:
/// values are averaged over the runs (a vectorised particle dim stays in the value), sums
/// over all particles.
pub(crate) fn average_terms(
    per_run: Vec<Vec<SiteTerm>>,
    vectorized: usize,
) -> Result<Vec<SiteTerm>> {
    let runs = per_run.len() as f64;
    let mut iter = per_run.into_iter();
    let Some(mut acc) = iter.next() else {
        return Ok(Vec::new());
    };
    for run in iter {
        for (a, b) in acc.iter_mut().zip(run) {
            a.value = a.value.broadcast_add(&b.value)?;
            a.sum = (&a.sum + &b.sum)?;
        }
    }
    for a in &mut acc {
        if runs != 1.0 {
            a.value = (&a.value / runs)?;
        }
        let all = runs * vectorized as f64;
        if all != 1.0 {
            a.sum = (&a.sum / all)?;
        }
    }
    Ok(acc)
}

/// The [`Elbo`](super::Elbo) impl of an ELBO holding its [`Particles`] in a field
/// `particles`, around its estimator, and its builder methods (with examples that name the
/// ELBO):
/// - `particle_elbo!(E, f)`: `f(&Run, &ParamStore)`, what the ELBO computes from one run,
///   averaged over the particles by the shared loop; `E::new()` from `Default`;
/// - `particle_elbo!(E, method f)`: the same with `self.f(&Run, &ParamStore)` (an ELBO with
///   settings or state of its own);
/// - `particle_elbo!(E, joint f, "E::new(..)?")`: `self.f(&[Run], per_run, &ParamStore)`,
///   which sees every particle at once; `E` has a constructor of its own, which the examples
///   call as given.
macro_rules! particle_elbo {
    ($elbo:ident, $estimate:ident) => {
        impl $crate::elbo::Elbo for $elbo {
            fn compute(
                &self,
                model: &mut $crate::elbo::Program<'_>,
                guide: &mut $crate::elbo::Program<'_>,
                store: &mut $crate::param_store::ParamStore,
                rng: &mut dyn rand::RngCore,
            ) -> $crate::error::Result<$crate::elbo::ElboOutput> {
                self.particles.compute(model, guide, store, rng, $estimate)
            }
        }
        $crate::elbo::particles::particle_elbo!(@new $elbo);
        $crate::elbo::particles::particle_elbo!(@builders $elbo, concat!(stringify!($elbo), "::new()"), "");
    };
    ($elbo:ident, method $estimate:ident) => {
        impl $crate::elbo::Elbo for $elbo {
            fn compute(
                &self,
                model: &mut $crate::elbo::Program<'_>,
                guide: &mut $crate::elbo::Program<'_>,
                store: &mut $crate::param_store::ParamStore,
                rng: &mut dyn rand::RngCore,
            ) -> $crate::error::Result<$crate::elbo::ElboOutput> {
                self.particles
                    .compute(model, guide, store, rng, |run, store| self.$estimate(run, store))
            }
        }
        $crate::elbo::particles::particle_elbo!(@new $elbo);
        $crate::elbo::particles::particle_elbo!(@builders $elbo, concat!(stringify!($elbo), "::new()"), "");
    };
    ($elbo:ident, joint $estimate:ident, $ctor:literal) => {
        impl $crate::elbo::Elbo for $elbo {
            fn compute(
                &self,
                model: &mut $crate::elbo::Program<'_>,
                guide: &mut $crate::elbo::Program<'_>,
                store: &mut $crate::param_store::ParamStore,
                rng: &mut dyn rand::RngCore,
            ) -> $crate::error::Result<$crate::elbo::ElboOutput> {
                self.particles.compute_joint(model, guide, store, rng, |runs, per_run, store| {
                    self.$estimate(runs, per_run, store)
                })
            }
        }
        $crate::elbo::particles::particle_elbo!(@builders $elbo, $ctor, "# Ok::<(), vi_infer::InferError>(())");
    };
    (@new $elbo:ident) => {
        impl $elbo {
            #[doc = "One particle, not vectorised."]
            #[doc = ""]
            #[doc = "```"]
            #[doc = concat!("let elbo = vi_infer::", stringify!($elbo), "::new();")]
            #[doc = "```"]
            pub fn new() -> Self {
                Self::default()
            }
        }
    };
    (@builders $elbo:ident, $ctor:expr, $tail:expr) => {
        impl $elbo {
            #[doc = "The number of particles (draws of the guide) the loss averages over."]
            #[doc = ""]
            #[doc = "```"]
            #[doc = concat!("let elbo = vi_infer::", $ctor, ".num_particles(16);")]
            #[doc = $tail]
            #[doc = "```"]
            pub fn num_particles(mut self, n: usize) -> Self {
                self.particles.num = n;
                self
            }

            #[doc = "Draws the particles at once, in an outer plate, instead of one run each."]
            #[doc = ""]
            #[doc = "```"]
            #[doc = "// 64 draws at once, in a plate outside the model's plates."]
            #[doc = concat!("let elbo = vi_infer::", $ctor, ".num_particles(64).vectorize_particles(true);")]
            #[doc = $tail]
            #[doc = "```"]
            pub fn vectorize_particles(mut self, on: bool) -> Self {
                self.particles.vectorize = on;
                self
            }

            #[doc = "The number of plate dims the model and guide use (the particle plate goes outside"]
            #[doc = "them, and the shape checks leave the dims further left alone). Discovered by one"]
            #[doc = "probing run when not given."]
            #[doc = ""]
            #[doc = "```"]
            #[doc = "// The model uses one plate (dim -1): particles go to dim -2."]
            #[doc = concat!("let elbo = vi_infer::", $ctor, ".num_particles(8).vectorize_particles(true).max_plate_nesting(1);")]
            #[doc = $tail]
            #[doc = "```"]
            pub fn max_plate_nesting(self, n: usize) -> Self {
                self.particles.max_plate_nesting.set(Some(n));
                self
            }
        }
    };
}
pub(crate) use particle_elbo;
