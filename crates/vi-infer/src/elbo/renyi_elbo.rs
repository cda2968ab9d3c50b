//! `RenyiElbo`: the Rényi divergence bound of Li & Turner (2016), and with `alpha = 0` the
//! importance-weighted bound of Burda et al. (2015).

use candle_core::{DType, Tensor};

use super::SiteTerm;
use super::particles::{JointEstimate, Particles, Run, particle_elbo, zero_loss};
use super::score::{is_non_reparam, score_function};
use crate::error::{InferError, Result};
use crate::message::{PlateFrame, SiteKind};
use crate::param_store::ParamStore;
use crate::trace::Site;

/// The variational Rényi bound (Li & Turner 2016, "Rényi divergence variational
/// inference"; Pyro's `RenyiELBO`):
///
/// `L_α = 1/(1 − α) · log( 1/K Σ_k w_k^(1 − α) )`, `w_k = p(x, z_k) / q(z_k)`,
///
/// over `K` draws `z_k` of the guide. `alpha = 0` is the importance-weighted bound of Burda
/// et al. (2015, "Importance weighted autoencoders", IWAE): `log 1/K Σ_k w_k`, which rises
/// with `K` towards `log p(x)`. `alpha → 1` is the ELBO (`alpha = 1` itself is an error:
/// use [`TraceElbo`](super::TraceElbo)); `0 < alpha < 1` lies between the two, and
/// `alpha < 0` above `log p(x)` for large `K`.
///
/// Plates that every sample site of the model and guide is in (a data plate around a VAE's
/// local latents, the particle plate) are kept: the bound is summed over their elements,
/// each with its own weights, as Pyro's `get_dependent_plate_dims`. Where such a plate is
/// subsampled, its scale multiplies each element's bound, rather than the log-weights inside
/// it as in Pyro (whose figure then is not the Rényi bound of anything).
///
/// The loss is `−L_α`; the surrogate's gradient for reparameterised sites is the pathwise
/// gradient of `L_α` (the normalised weights `w_k^(1−α) / Σ_j w_j^(1−α)` times `∇ log w_k`).
/// A guide site without `rsample` gets the unbiased score-function gradient of the same bound,
/// each particle's learning signal less the leave-one-out baseline of VIMCO (Mnih & Rezende
/// 2016: the bound with `w_k` replaced by the geometric mean of the other weights). Pyro
/// instead uses `alpha/(1 − alpha)` times the weighted score, the gradient of the
/// infinite-`K` bound, which is biased for finite `K` (and zero for IWAE).
///
/// The per-site terms in the step report are `TraceElbo`'s (the one-draw KL of each latent
/// site and the log-likelihood of each observed one), averaged over the particles: they sum
/// to the ordinary ELBO's estimate, not to the bound.
///
/// At least two particles (the default); vectorise them with
/// [`vectorize_particles`](RenyiElbo::vectorize_particles).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use rand::SeedableRng;
/// use vi_dist::{Constraint, Normal};
/// use vi_infer::{Ctx, Elbo, ParamStore, RenyiElbo};
/// let dev = Device::Cpu;
/// let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
/// let mut model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
///     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
///     ctx.observe("x", Normal::new(&z, &one)?, &one)?;
///     Ok(())
/// };
/// let mut guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
///     let loc = ctx.param("loc", &zero, Constraint::Real)?;
///     ctx.sample("z", Normal::new(&loc, &one)?)?;
///     Ok(())
/// };
/// let mut store = ParamStore::new(&dev, DType::F64);
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// // IWAE with 1000 importance samples, drawn at once.
/// let iwae = RenyiElbo::new(0.0)?.num_particles(1000).vectorize_particles(true);
/// let bound = -iwae.compute(&mut model, &mut guide, &mut store, &mut rng)?.loss.to_scalar::<f64>()?;
/// // log p(x = 1) = log N(1; 0, √2) ≈ −1.5155: the bound is below it in expectation, and
/// // within a few hundredths of it with this many samples.
/// assert!((bound - -1.5155).abs() < 0.1);
/// // alpha = 1 is the ELBO: TraceElbo's business.
/// assert!(RenyiElbo::new(1.0).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct RenyiElbo {
    particles: Particles,
    alpha: f64,
}

particle_elbo!(RenyiElbo, joint estimate, "RenyiElbo::new(0.0)?");

/// The name in errors.
const NAME: &str = "RenyiElbo";

impl RenyiElbo {
    /// The bound of order `alpha` (finite, not 1), with 2 particles, not vectorised (Pyro's
    /// defaults). `alpha = 1` is [`InferError::ElboSetting`]: that bound is the ELBO, which
    /// [`TraceElbo`](super::TraceElbo) estimates with a lower-variance gradient.
    ///
    /// ```
    /// let iwae = vi_infer::RenyiElbo::new(0.0)?.num_particles(8);
    /// assert_eq!(iwae.alpha(), 0.0);
    /// let err = vi_infer::RenyiElbo::new(1.0).unwrap_err();
    /// assert!(err.to_string().contains("TraceElbo"));
    /// # Ok::<(), vi_infer::InferError>(())
    /// ```
    pub fn new(alpha: f64) -> Result<Self> {
        if alpha == 1.0 {
            return Err(InferError::ElboSetting {
                elbo: NAME,
                msg: "alpha = 1 is the ELBO itself; use TraceElbo, whose gradient has a lower \
                      variance"
                    .into(),
            });
        }
        if !alpha.is_finite() {
            return Err(InferError::ElboSetting {
                elbo: NAME,
                msg: format!("alpha must be finite, got {alpha}"),
            });
        }
        let particles = Particles {
            num: 2,
            ..Particles::default()
        };
        Ok(Self { particles, alpha })
    }

    /// The order `alpha` of the bound.
    ///
    /// ```
    /// assert_eq!(vi_infer::RenyiElbo::new(0.5)?.alpha(), 0.5);
    /// # Ok::<(), vi_infer::InferError>(())
    /// ```
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// The bound over all the particles: `K` log-weights per element of the plates common to
    /// every site, their log-mean-exp, and the surrogate.
    fn estimate(&self, runs: &[Run], per_run: usize, store: &ParamStore) -> Result<JointEstimate> {
        let k = runs.len() * per_run;
        if k < 2 {
            return Err(InferError::ElboSetting {
                elbo: NAME,
                msg: format!(
                    "num_particles is {k}; the bound needs at least 2 (with 1 it is the ELBO: \
                     use TraceElbo)"
                ),
            });
        }
        let mut terms = Vec::with_capacity(runs.len());
        for run in runs {
            terms.push(site_terms(run)?);
        }
        let common = common_plates(runs);
        // The plates kept, outermost first; the particle plate (vectorised) is the first.
        let rank = common
            .iter()
            .map(|p| p.dim.unsigned_abs())
            .max()
            .unwrap_or(0);
        let shape: Vec<usize> = (0..rank)
            .map(|i| {
                let dim = i as isize - rank as isize;
                common
                    .iter()
                    .find(|p| p.dim == dim)
                    .map_or(1, |p| p.subsample_size)
            })
            .collect();
        // The subsampling scale of the common plates: every site's log-density carries it.
        let scale: f64 = common.iter().map(PlateFrame::scale).product();
        let mut log_w = Vec::with_capacity(runs.len());
        let mut scores = Vec::new();
        let mut non_reparam = false;
        for run in runs {
            let (lw, score) = log_weight(run, &common, &shape)?;
            non_reparam |= score.is_some();
            log_w.push(lw);
            scores.push(score);
        }
        let Some(first) = log_w.first() else {
            return Err(InferError::Invalid("no particles ran".into()));
        };
        let Some(first) = first.as_ref() else {
            // No sample site at all: the bound is 0, as the ELBO's.
            let loss = zero_loss(store)?;
            return Ok(JointEstimate {
                surrogate: loss.clone(),
                loss,
                terms,
            });
        };
        let (dtype, device) = (first.dtype(), first.device().clone());
        // [K, common…]: the particle dim leads (vectorised: it is the plate's own dim).
        let stack = |parts: Vec<Tensor>| -> Result<Tensor> {
            if per_run > 1 {
                let mut parts = parts;
                Ok(parts.remove(0))
            } else {
                Ok(Tensor::stack(&parts, 0)?)
            }
        };
        let zeros = || Tensor::zeros(shape.as_slice(), dtype, &device);
        let log_w = stack(
            log_w
                .into_iter()
                .map(|t| t.map_or_else(|| zeros().map_err(Into::into), Ok))
                .collect::<Result<Vec<_>>>()?,
        )?;
        let log_w = if scale == 1.0 {
            log_w
        } else {
            (log_w / scale)?
        };
        let one_minus = 1.0 - self.alpha;
        let ln_k = (k as f64).ln();
        // f = (logsumexp_k((1 − α) log w_k) − log K) / (1 − α), per common element.
        let scaled = (&log_w * one_minus)?;
        let f = ((log_sum_exp0(&scaled)? - ln_k)? / one_minus)?;
        let bound = (f.sum_all()? * scale)?;
        let loss = bound.neg()?;
        if !non_reparam {
            return Ok(JointEstimate {
                surrogate: loss.clone(),
                loss,
                terms,
            });
        }
        // The score-function part: Σ_k (f − f₋ₖ) · ∇ log q(z_k), f₋ₖ the leave-one-out bound.
        let score = stack(
            scores
                .into_iter()
                .map(|s| s.map_or_else(|| zeros().map_err(Into::into), Ok))
                .collect::<Result<Vec<_>>>()?,
        )?;
        let signal = leave_one_out_signal(&scaled.detach(), &f.detach(), one_minus, ln_k)?;
        let reinforce = ((signal * score)?.sum_all()? * scale)?;
        let surrogate = (&loss - reinforce)?;
        Ok(JointEstimate {
            loss,
            surrogate,
            terms,
        })
    }
}

/// `log Σ_k exp(x_k)` over dim 0, keeping it: the maximum (detached) taken out first, and a
/// maximum of −∞ (every weight 0) giving −∞ rather than NaN.
fn log_sum_exp0(x: &Tensor) -> Result<Tensor> {
    log_sum_exp(&x.detach(), x, 0)
}

/// `log Σ exp(x)` over `dim` (kept), shifted by the maximum of `detached` (the same values,
/// without their graph), a non-finite maximum replaced by 0.
fn log_sum_exp(detached: &Tensor, x: &Tensor, dim: usize) -> Result<Tensor> {
    let max = detached.max_keepdim(dim)?;
    let finite = max.abs()?.lt(f64::INFINITY)?;
    let max = finite.where_cond(&max, &max.zeros_like()?)?;
    let sum = x.broadcast_sub(&max)?.exp()?.sum_keepdim(dim)?;
    Ok(sum.log()?.broadcast_add(&max)?)
}

/// VIMCO's per-particle learning signal `f − f₋ₖ` (detached), `[K, common…]`: `f₋ₖ` is the
/// bound with particle `k`'s scaled log-weight replaced by the mean of the others', so it does
/// not depend on `z_k`.
fn leave_one_out_signal(scaled: &Tensor, f: &Tensor, one_minus: f64, ln_k: f64) -> Result<Tensor> {
    let k = scaled.dims()[0];
    let sum = scaled.sum_keepdim(0)?;
    // mean of the others, [K, …]
    let others = (sum.broadcast_sub(scaled)? / (k as f64 - 1.0))?;
    // m[k, j] = scaled[j] for j ≠ k, others[k] for j = k: [K, K, …]
    let rest = scaled.dims()[1..].to_vec();
    let mut full = vec![k, k];
    full.extend_from_slice(&rest);
    let ones = vec![1; rest.len()];
    let eye_shape: Vec<usize> = [k, k].iter().copied().chain(ones).collect();
    let eye = Tensor::eye(k, DType::U8, scaled.device())?
        .reshape(eye_shape.as_slice())?
        .broadcast_as(full.as_slice())?;
    let row = scaled.unsqueeze(0)?.broadcast_as(full.as_slice())?;
    let diag = others.unsqueeze(1)?.broadcast_as(full.as_slice())?;
    let m = eye.where_cond(&diag, &row)?;
    // log Σ_j exp(m[k, j]) over j (dim 1).
    let lse = log_sum_exp(&m, &m, 1)?.squeeze(1)?;
    let f_loo = ((lse - ln_k)? / one_minus)?;
    // Non-finite weights give a non-finite signal: the gradient check reports it.
    Ok(f.broadcast_sub(&f_loo)?)
}

/// The plates every sample site of every run is in (by name and dim), outermost first.
fn common_plates(runs: &[Run]) -> Vec<PlateFrame> {
    let mut sites = runs
        .iter()
        .flat_map(|r| r.model.sites().chain(r.guide.sites()))
        .filter(|s| s.kind == SiteKind::Sample);
    let Some(first) = sites.next() else {
        return Vec::new();
    };
    let mut common = first.plates.clone();
    for s in sites {
        common.retain(|p| {
            s.plates
                .iter()
                .any(|q| q.name == p.name && q.dim == p.dim && q.subsample_size == p.subsample_size)
        });
    }
    common.sort_by_key(|p| p.dim);
    common
}

/// `t` (a site's batch-shaped term) summed over every dim that is not a common plate's, at
/// `shape` (the common plates' sizes at their dims, 1 elsewhere).
fn to_common(t: &Tensor, common: &[PlateFrame], shape: &[usize]) -> Result<Tensor> {
    let r = t.rank();
    let mut out = t.clone();
    for i in 0..r {
        let dim = i as isize - r as isize;
        if !common.iter().any(|p| p.dim == dim) && out.dims()[i] != 1 {
            out = out.sum_keepdim(i)?;
        }
    }
    // Leading dims beyond the common rank are summed (size 1) and dropped; missing ones are 1.
    let rank = shape.len();
    let own: Vec<usize> = (0..rank)
        .map(|i| {
            let from_right = rank - i;
            if from_right <= r {
                out.dims()[r - from_right]
            } else {
                1
            }
        })
        .collect();
    Ok(out.reshape(own.as_slice())?.broadcast_as(shape)?)
}

/// One run's log-weight `Σ log p − Σ log q` at the common plates' shape (differentiable), and
/// the summed score function of its guide sites without `rsample` (`None` if none).
fn log_weight(
    run: &Run,
    common: &[PlateFrame],
    shape: &[usize],
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let mut lw: Option<Tensor> = None;
    let mut score: Option<Tensor> = None;
    let add = |acc: Option<Tensor>, t: Tensor, negate: bool| -> Result<Option<Tensor>> {
        Ok(Some(match (acc, negate) {
            (Some(a), false) => (a + t)?,
            (Some(a), true) => (a - t)?,
            (None, false) => t,
            (None, true) => t.neg()?,
        }))
    };
    for m in run.model.sites().filter(|s| s.kind == SiteKind::Sample) {
        lw = add(lw, to_common(m.log_prob()?, common, shape)?, false)?;
    }
    let guide: Vec<&Site> = run
        .guide
        .sites()
        .filter(|s| s.kind == SiteKind::Sample)
        .collect();
    for g in guide {
        lw = add(lw, to_common(g.log_prob()?, common, shape)?, true)?;
        if is_non_reparam(g) {
            score = add(score, to_common(&score_function(g)?, common, shape)?, false)?;
        }
    }
    Ok((lw, score))
}

/// `TraceElbo`'s per-site terms of one run: `log q − log p` of each latent site,
/// `log p` of each observed one.
fn site_terms(run: &Run) -> Result<Vec<SiteTerm>> {
    let mut terms = Vec::new();
    for m in run.model.sites().filter(|s| s.kind == SiteKind::Sample) {
        let lp = m.log_prob()?;
        let (kind, value) = if m.is_observed {
            (super::TermKind::LogLikelihood, lp.clone())
        } else {
            let Some(g) = run.guide.get(&m.name) else {
                return Err(InferError::LatentNotInGuide {
                    site: m.name.clone(),
                });
            };
            (
                super::TermKind::KlMonteCarlo,
                g.log_prob()?.broadcast_sub(lp)?,
            )
        };
        terms.push(SiteTerm {
            name: m.name.clone(),
            kind,
            sum: crate::util::sum_all(&value)?,
            value,
        });
    }
    Ok(terms)
}
