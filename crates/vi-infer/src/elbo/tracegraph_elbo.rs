//! `TraceGraphElbo`: the score-function surrogate Rao–Blackwellised by the order of the
//! sites as well as their plates, with baselines.

use std::cell::RefCell;
use std::collections::HashMap;

use candle_core::Tensor;

use super::PARTICLE_PLATE;
use super::particles::{Estimate, Particles, Run, particle_elbo};
use super::score::{Dependence, ScoreRun, Scored, score_run};
use crate::error::{InferError, Result};
use crate::param_store::ParamStore;
use crate::site_options::{Baseline, check_beta};

/// The ELBO of [`TraceElbo`](super::TraceElbo) with a lower-variance gradient for guide
/// sites without `rsample` (Bernoulli, Categorical, Poisson, …): Pyro's `TraceGraph_ELBO`.
///
/// The loss and the per-site terms are `TraceElbo`'s. The difference is the surrogate: each
/// non-reparameterised guide site `z` has the score-function term
/// `log q(z) · stop_grad(cost − b)`, where the cost holds only the `log p − log q` terms that
/// `z`'s draw can change, and `b` is the site's [`Baseline`], if any:
/// - in the guide, `z`'s site and every site after it (a site can read only what was drawn
///   before it);
/// - in the model, which replays the guide's values in its own order, every site from the
///   first one whose value is among those on;
/// - as in `TraceElbo`, summed to `z`'s plates: a term in another slice of a vectorised plate
///   `z` is in does not count (Pyro's `MultiFrameTensor.sum_to`).
///
/// So the score of the second link of a chain `z1 → z2 → x` leaves out `log p(z1) − log q(z1)`,
/// where `TraceElbo` keeps every term outside `z2`'s plates. Where a vectorised plate already
/// separates the terms the two ELBOs agree.
///
/// This is the dependency graph that Pyro's `TraceGraph_ELBO` read from the order of the
/// sites and their plates (its "dense" trace graph); today's Pyro tracks the values
/// themselves through tensor operations (provenance), which also separates sites drawn one
/// after another that never read each other (one site per data point written as separate
/// sites). candle records no such provenance for integer or host-side operations, and a
/// dependence it missed would leave out a cost term: a silently biased gradient. vi keeps
/// to what the trace states; write such sites in a vectorised plate.
///
/// Baselines ([`SiteOptions::baseline`](crate::SiteOptions::baseline), given with
/// [`Ctx::sample_with`](crate::Ctx::sample_with)): a decaying average of past costs kept by
/// this ELBO (per site name, cleared by [`reset_baselines`](TraceGraphElbo::reset_baselines);
/// checkpoints do not hold it), a learned value trained by the term `(cost − b)²` that the
/// surrogate adds (not the loss), or a fixed value. A baseline on a site with `rsample`, or on
/// a model site, is not read (as Pyro).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use rand::SeedableRng;
/// use vi_dist::{Bernoulli, Constraint, Normal};
/// use vi_infer::{Baseline, Ctx, Elbo, ParamStore, SiteOptions, TraceGraphElbo};
/// let dev = Device::Cpu;
/// let half = Tensor::new(0.5f64, &dev)?;
/// let (one, x) = (Tensor::new(1.0f64, &dev)?, Tensor::new(0.8f64, &dev)?);
/// let mut model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
///     let z1 = ctx.sample("z1", Bernoulli::from_probs(&half)?)?;
///     let z2 = ctx.sample("z2", Bernoulli::from_probs(&((&z1 * 0.6)? + 0.2)?)?)?;
///     ctx.observe("x", Normal::new(&z2, &one)?, &x)?;
///     Ok(())
/// };
/// let mut guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
///     let l1 = ctx.param("l1", &half.zeros_like()?, Constraint::Real)?;
///     let l2 = ctx.param("l2", &half.zeros_like()?, Constraint::Real)?;
///     let avg = || SiteOptions::new().baseline(Baseline::DecayingAverage { beta: 0.9 });
///     ctx.sample_with("z1", Bernoulli::from_logits(&l1)?, avg())?;
///     ctx.sample_with("z2", Bernoulli::from_logits(&l2)?, avg())?;
///     Ok(())
/// };
/// let mut store = ParamStore::new(&dev, DType::F64);
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let elbo = TraceGraphElbo::new();
/// let out = elbo.compute(&mut model, &mut guide, &mut store, &mut rng)?;
/// assert!(out.loss.to_scalar::<f64>()?.is_finite());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct TraceGraphElbo {
    particles: Particles,
    /// The decaying averages of the sites with a `DecayingAverage` baseline, by site name.
    averages: RefCell<HashMap<String, Tensor>>,
}

impl Clone for TraceGraphElbo {
    /// The same settings, and the baselines' averages as they are now.
    fn clone(&self) -> Self {
        Self {
            particles: self.particles.clone(),
            averages: RefCell::new(self.averages.borrow().clone()),
        }
    }
}

particle_elbo!(TraceGraphElbo, method estimate);

impl TraceGraphElbo {
    /// The decaying average of site `name`'s cost as it stands (what its next step
    /// subtracts), if the site has a [`Baseline::DecayingAverage`] and has run.
    ///
    /// ```
    /// assert!(vi_infer::TraceGraphElbo::new().baseline_average("z").is_none());
    /// ```
    pub fn baseline_average(&self, name: &str) -> Option<Tensor> {
        self.averages.borrow().get(name).cloned()
    }

    /// Forgets the decaying averages: each starts again from 0 at its next use.
    ///
    /// ```
    /// let elbo = vi_infer::TraceGraphElbo::new();
    /// elbo.reset_baselines();
    /// ```
    pub fn reset_baselines(&self) {
        self.averages.borrow_mut().clear();
    }

    /// One run: `TraceElbo`'s loss and terms, and the surrogate with each non-reparameterised
    /// guide site's score times its downstream cost less its baseline, plus the learned
    /// baselines' loss terms.
    fn estimate(&self, run: &Run, store: &ParamStore) -> Result<Estimate> {
        let ScoreRun {
            loss,
            terms,
            scored,
        } = score_run(run, store, Dependence::Order)?;
        let mut surrogate = loss.clone();
        for s in &scored {
            let (signal, baseline_loss) = self.signal(s)?;
            surrogate = (surrogate - s.score.mul(&signal)?.sum_all()?)?;
            if let Some(b) = baseline_loss {
                surrogate = (surrogate + b)?;
            }
        }
        Ok(Estimate {
            loss,
            surrogate,
            terms,
        })
    }

    /// The learning signal `cost − b` of a scored site (detached), and the loss term of a
    /// learned baseline.
    fn signal(&self, s: &Scored<'_>) -> Result<(Tensor, Option<Tensor>)> {
        let site = &s.site.name;
        let Some(baseline) = &s.site.options.baseline else {
            return Ok((s.cost.clone(), None));
        };
        match baseline {
            Baseline::DecayingAverage { beta } => {
                check_beta(*beta).map_err(|msg| InferError::Baseline {
                    site: site.clone(),
                    msg,
                })?;
                let b = self.update_average(s, *beta)?;
                Ok((s.cost.broadcast_sub(&b)?, None))
            }
            Baseline::Learned(b) => {
                let b = fit(site, b, &s.cost, &s.shape)?;
                let loss = s.cost.sub(&b)?.sqr()?.sum_all()?;
                Ok(((&s.cost - b.detach())?, Some(loss)))
            }
            Baseline::Fixed(b) => {
                let b = fit(site, &b.detach(), &s.cost, &s.shape)?;
                Ok(((&s.cost - b)?, None))
            }
        }
    }

    /// The site's average before this run (0 the first time, or when the site's shape
    /// changed), after which the average takes this run's cost: averaged over the particle
    /// dim, if the run holds vectorised particles, so it is one average per element of the
    /// site's other plates.
    fn update_average(&self, s: &Scored<'_>, beta: f64) -> Result<Tensor> {
        let mut cost = s.cost.clone();
        if let Some(p) = s.site.plates.iter().find(|p| p.name == PARTICLE_PLATE) {
            let i = cost.rank() as isize + p.dim;
            if i >= 0 {
                cost = cost.mean_keepdim(i as usize)?;
            }
        }
        let mut averages = self.averages.borrow_mut();
        let old = match averages.get(&s.site.name) {
            Some(a)
                if a.dims() == cost.dims()
                    && a.dtype() == cost.dtype()
                    && a.device().same_device(cost.device()) =>
            {
                a.clone()
            }
            _ => cost.zeros_like()?,
        };
        let new = ((&old * beta)? + (&cost * (1.0 - beta))?)?.detach();
        averages.insert(s.site.name.clone(), new);
        Ok(old)
    }
}

/// A baseline value cast to the cost's dtype and device and broadcast to the site's batch
/// shape `shape`, or [`InferError::Baseline`] when its shape does not broadcast to it.
fn fit(site: &str, b: &Tensor, cost: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let fits = b.rank() <= shape.len()
        && vi_dist::broadcast_shapes(&[b.dims(), shape]).is_some_and(|s| s == shape);
    if !fits {
        return Err(InferError::Baseline {
            site: site.to_string(),
            msg: format!(
                "the baseline has shape {:?}, which does not broadcast to the site's batch \
                 shape {shape:?} (the shape of the cost it is subtracted from)",
                b.dims()
            ),
        });
    }
    let b = b.to_dtype(cost.dtype())?.to_device(cost.device())?;
    Ok(b.broadcast_as(shape)?)
}
