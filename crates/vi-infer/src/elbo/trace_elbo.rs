//! `TraceElbo`: the Monte Carlo ELBO with a score-function surrogate.

use candle_core::Tensor;

use super::particles::{
    Estimate, Particles, Run, accumulate, accumulate_signed, particle_elbo, sum_all, sum_to_plates,
    zero_loss,
};
use super::{SiteTerm, TermKind};
use crate::error::{InferError, Result};
use crate::message::{PlateFrame, SiteKind};
use crate::param_store::ParamStore;

/// The ELBO estimated from the traces (Pyro's `Trace_ELBO`): `log p(x, z) − log q(z)` at the
/// guide's draw. Reparameterised sites are differentiated pathwise; for a guide site without
/// `rsample` the surrogate adds the score-function term `log q(z) · stop_grad(log r)`, where
/// `log r` is the part of `log p − log q` that is not conditionally independent of the
/// site (its plates' slices and everything outside them: Pyro's Rao–Blackwellisation).
///
/// ```
/// use vi_infer::TraceElbo;
/// let elbo = TraceElbo::new().num_particles(8);
/// # let _ = elbo;
/// ```
#[derive(Clone, Debug, Default)]
pub struct TraceElbo {
    particles: Particles,
}

particle_elbo!(TraceElbo, estimate);

/// One run's `−(log p − log q)` at the guide's draw, its surrogate (with the score-function
/// terms of the guide sites without rsample), and each site's term.
fn estimate(run: &Run, store: &ParamStore) -> Result<Estimate> {
    // log r terms: (+ model log p, − guide log q), each with its plates.
    // Only a guide site without rsample takes a score-function term, which needs them.
    let needs_score = run
        .guide
        .sites()
        .any(|g| g.kind == SiteKind::Sample && g.dist.as_ref().is_some_and(|d| !d.has_rsample()));
    let mut log_r: Vec<(Tensor, Vec<PlateFrame>)> = Vec::new();
    let mut terms = Vec::new();
    let mut elbo: Option<Tensor> = None;
    for m in run.model.sites().filter(|s| s.kind == SiteKind::Sample) {
        let lp = m.log_prob()?;
        if needs_score {
            log_r.push((lp.detach(), m.plates.clone()));
        }
        let lp_sum = sum_all(lp)?;
        elbo = accumulate(elbo, lp_sum.clone())?;
        let (kind, value, sum) = if m.is_observed {
            (TermKind::LogLikelihood, lp.clone(), lp_sum)
        } else {
            let Some(g) = run.guide.get(&m.name) else {
                return Err(InferError::LatentNotInGuide {
                    site: m.name.clone(),
                });
            };
            let value = g.log_prob()?.broadcast_sub(lp)?;
            let sum = sum_all(&value)?;
            (TermKind::KlMonteCarlo, value, sum)
        };
        terms.push(SiteTerm {
            name: m.name.clone(),
            kind,
            value,
            sum,
        });
    }
    for g in run.guide.sites().filter(|s| s.kind == SiteKind::Sample) {
        let lq = g.log_prob()?;
        if needs_score {
            log_r.push((lq.detach().neg()?, g.plates.clone()));
        }
        // A site without rsample takes its gradient from the score term alone (as
        // Pyro's score parts: no entropy term); ∇ log q itself has expectation 0 and
        // would only add variance.
        let lq_sum = sum_all(lq)?;
        let lq_sum = match &g.dist {
            Some(d) if !d.has_rsample() => lq_sum.detach(),
            _ => lq_sum,
        };
        elbo = accumulate_signed(elbo, &lq_sum, true)?;
        if g.is_auxiliary {
            terms.push(SiteTerm {
                name: g.name.clone(),
                kind: TermKind::Auxiliary,
                value: lq.clone(),
                sum: lq_sum,
            });
        }
    }
    let elbo = match elbo {
        Some(e) => e,
        None => zero_loss(store)?,
    };
    let loss = elbo.neg()?;
    let mut surr: Option<Tensor> = None;
    for g in run.guide.sites().filter(|s| s.kind == SiteKind::Sample) {
        let Some(gd) = &g.dist else { continue };
        if gd.has_rsample() {
            continue;
        }
        let mut r: Option<Tensor> = None;
        for (t, plates) in &log_r {
            let part = sum_to_plates(t, plates, &g.plates)?;
            r = Some(match r {
                Some(r) => r.broadcast_add(&part)?,
                None => part,
            });
        }
        if let Some(r) = r {
            let lq = g.log_prob()?;
            let shape = vi_dist::broadcast_shapes(&[lq.dims(), r.dims()]).ok_or_else(|| {
                InferError::Invalid(format!(
                    "site `{}`: score term shapes {:?} and {:?} do not broadcast",
                    g.name,
                    lq.dims(),
                    r.dims()
                ))
            })?;
            let score = lq
                .broadcast_as(shape.as_slice())?
                .mul(&r.broadcast_as(shape.as_slice())?)?
                .sum_all()?;
            surr = Some(match surr {
                Some(t) => (t - score)?,
                None => (&loss - score)?,
            });
        }
    }
    Ok(Estimate {
        surrogate: surr.unwrap_or_else(|| loss.clone()),
        loss,
        terms,
    })
}
