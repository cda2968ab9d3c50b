//! `TraceMeanFieldElbo`: analytic KL per latent site where a closed form exists.

use candle_core::Tensor;

use super::particles::{
    Estimate, Particles, Run, accumulate_signed, particle_elbo, sites_agree, sum_all, zero_loss,
};
use super::{SiteTerm, TermKind};
use crate::error::{InferError, Result};
use crate::message::SiteKind;
use crate::param_store::ParamStore;
use crate::trace::Site;

/// The mean-field ELBO (Pyro's `TraceMeanField_ELBO`): for each latent site the KL of the
/// guide to the prior in closed form through `vi-kl` where the pair has one, a Monte Carlo
/// term `log q(z) − log p(z)` where it has not; for each observed site its log-likelihood.
///
/// Differences from Pyro, by design:
/// - the KL is scaled and masked by the guide site's plates, scale and mask; where the model
///   site disagrees (other plates, scale or mask), that site takes the Monte Carlo term, in
///   which each side carries its own scale and mask, rather than a silently wrong closed
///   form;
/// - a pair without a closed form falls back to Monte Carlo for that site only;
/// - where the guide draws a latent site before one that comes earlier in the model, the
///   guide may make it depend on that later site, and its analytic KL at the drawn value is
///   then not a term of the joint KL: that site takes the Monte Carlo term (which stays
///   unbiased whatever the dependence), where Pyro warns that it cannot verify the
///   mean-field condition.
///
/// Every latent site's guide must be reparameterised (`rsample`), as in Pyro: a
/// non-reparameterised guide site is [`InferError::NotReparameterized`] — use
/// [`TraceElbo`](super::TraceElbo), which adds the score-function term.
///
/// ```
/// use vi_infer::TraceMeanFieldElbo;
/// let elbo = TraceMeanFieldElbo::new().num_particles(4).vectorize_particles(true);
/// # let _ = elbo;
/// ```
#[derive(Clone, Debug, Default)]
pub struct TraceMeanFieldElbo {
    particles: Particles,
}

particle_elbo!(TraceMeanFieldElbo, estimate);

/// A latent site's KL term: analytic when the sites agree and the pair has a closed form,
/// else `log q(z) − log p(z)` with each side's own scale and mask.
pub(crate) fn latent_kl_term(
    model: &Site,
    guide: &Site,
    analytic_ok: bool,
) -> Result<(TermKind, Tensor)> {
    let (Some(md), Some(gd)) = (&model.dist, &guide.dist) else {
        return Err(InferError::Invalid(format!(
            "site `{}` has no distribution",
            model.name
        )));
    };
    // A pair without a closed form goes straight to Monte Carlo: asking for its KL would
    // only build an error (with descriptions of both distributions) to throw away.
    let registry = vi_kl::global_registry();
    if analytic_ok && sites_agree(model, guide) && registry.has_rule(gd.as_ref(), md.as_ref()) {
        match registry.kl(gd.as_ref(), md.as_ref()) {
            Ok(kl) => return Ok((TermKind::KlAnalytic, guide.scale_and_mask(&kl)?)),
            Err(e) if e.is_no_closed_form() => {}
            Err(source) => {
                return Err(InferError::Kl {
                    site: model.name.clone(),
                    source: Box::new(source),
                });
            }
        }
    }
    let t = guide.log_prob()?.broadcast_sub(model.log_prob()?)?;
    Ok((TermKind::KlMonteCarlo, t))
}

/// One run's terms: the KL of each latent site (analytic where it can be), the
/// log-likelihood of each observed one.
fn estimate(run: &Run, store: &ParamStore) -> Result<Estimate> {
    let mut loss: Option<Tensor> = None;
    let mut terms = Vec::new();
    let guide_order: Vec<&str> = run
        .guide
        .sites()
        .filter(|s| s.is_latent() && !s.is_auxiliary)
        .map(|s| s.name.as_str())
        .collect();
    // The latest guide position among the model's latent sites so far.
    let mut latest_in_guide = None;
    for m in run.model.sites().filter(|s| s.kind == SiteKind::Sample) {
        let (kind, value, negate) = if m.is_observed {
            (TermKind::LogLikelihood, m.log_prob()?.clone(), true)
        } else {
            // `check_model_guide_match` made sure the guide samples every latent site.
            let (Some(g), Some(pos)) = (
                run.guide.get(&m.name),
                guide_order.iter().position(|n| *n == m.name),
            ) else {
                return Err(InferError::LatentNotInGuide {
                    site: m.name.clone(),
                });
            };
            if let Some(gd) = &g.dist
                && !gd.has_rsample()
            {
                return Err(InferError::NotReparameterized {
                    site: g.name.clone(),
                    dist: gd.describe(),
                });
            }
            // A site that the guide draws before a latent the model draws before it may
            // depend on that latent in the guide while the model conditions on it: the
            // analytic KL at the drawn value is then not a term of the joint KL (Pyro warns
            // "Failed to verify mean field restriction"). Its Monte Carlo term
            // `log q − log p` is, whatever the dependence.
            let in_order = latest_in_guide.is_none_or(|l| l < pos);
            latest_in_guide = latest_in_guide.max(Some(pos));
            let (kind, value) = latent_kl_term(m, g, in_order)?;
            (kind, value, false)
        };
        let sum = sum_all(&value)?;
        loss = accumulate_signed(loss, &sum, negate)?;
        terms.push(SiteTerm {
            name: m.name.clone(),
            kind,
            value,
            sum,
        });
    }
    // The guide's auxiliary sites: E_q[log q(u)] = −H(q), in closed form where the
    // distribution has an entropy, else log q(u) at the draw.
    for g in run.guide.sites().filter(|s| s.is_auxiliary) {
        let Some(gd) = &g.dist else { continue };
        if !gd.has_rsample() {
            return Err(InferError::NotReparameterized {
                site: g.name.clone(),
                dist: gd.describe(),
            });
        }
        let value = match gd.entropy() {
            Ok(h) if g.value.dims() == gd.extended_shape(&[]).as_slice() => {
                g.scale_and_mask(&h.neg()?)?
            }
            _ => g.log_prob()?.clone(),
        };
        let sum = sum_all(&value)?;
        loss = accumulate_signed(loss, &sum, false)?;
        terms.push(SiteTerm {
            name: g.name.clone(),
            kind: TermKind::Auxiliary,
            value,
            sum,
        });
    }
    let loss = match loss {
        Some(l) => l,
        None => zero_loss(store)?,
    };
    Ok(Estimate {
        surrogate: loss.clone(),
        loss,
        terms,
    })
}
