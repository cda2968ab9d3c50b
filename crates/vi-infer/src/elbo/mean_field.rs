//! `TraceMeanFieldElbo`: analytic KL per latent site where a closed form exists.

use candle_core::Tensor;
use rand::RngCore;

use super::{
    Elbo, ElboOutput, Particles, Program, SiteTerm, TermKind, accumulate_signed, average_terms,
    sites_agree, sum_all, zero_loss,
};
use crate::error::{InferError, Result};
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
/// - a pair without a closed form falls back to Monte Carlo for that site only.
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

impl TraceMeanFieldElbo {
    /// One particle, not vectorised.
    ///
    /// ```
    /// let elbo = vi_infer::TraceMeanFieldElbo::new();
    /// # let _ = elbo;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of particles (draws of the guide) the loss averages over.
    ///
    /// ```
    /// let elbo = vi_infer::TraceMeanFieldElbo::new().num_particles(16);
    /// # let _ = elbo;
    /// ```
    pub fn num_particles(mut self, n: usize) -> Self {
        self.particles.num = n;
        self
    }

    /// Draws the particles at once, in an outer plate, instead of one run each.
    ///
    /// ```
    /// // 64 draws at once, in a plate outside the model's plates.
    /// let elbo = vi_infer::TraceMeanFieldElbo::new().num_particles(64).vectorize_particles(true);
    /// # let _ = elbo;
    /// ```
    pub fn vectorize_particles(mut self, on: bool) -> Self {
        self.particles.vectorize = on;
        self
    }

    /// The number of plate dims the model and guide use (the particle plate goes outside
    /// them). Discovered by one probing run when not given.
    ///
    /// ```
    /// // The model uses one plate (dim -1): particles go to dim -2.
    /// let elbo = vi_infer::TraceMeanFieldElbo::new().num_particles(8).vectorize_particles(true).max_plate_nesting(1);
    /// # let _ = elbo;
    /// ```
    pub fn max_plate_nesting(self, n: usize) -> Self {
        self.particles.max_plate_nesting.set(Some(n));
        self
    }
}

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

impl Elbo for TraceMeanFieldElbo {
    fn compute(
        &self,
        model: &mut Program<'_>,
        guide: &mut Program<'_>,
        store: &mut ParamStore,
        rng: &mut dyn RngCore,
    ) -> Result<ElboOutput> {
        let (runs, vectorized) = self.particles.runs(model, guide, store, rng)?;
        let n_runs = runs.len();
        let mut loss: Option<Tensor> = None;
        let mut per_run = Vec::with_capacity(n_runs);
        let mut last = None;
        for run in runs {
            let mut terms = Vec::new();
            let guide_order: Vec<&str> = run
                .guide
                .sites()
                .filter(|s| s.is_latent())
                .map(|s| s.name.as_str())
                .collect();
            // The latest guide position among the model's latent sites so far.
            let mut latest_in_guide = None;
            for m in run
                .model
                .sites()
                .filter(|s| s.kind == crate::SiteKind::Sample)
            {
                let (kind, value, negate) = if m.is_observed {
                    (TermKind::LogLikelihood, m.log_prob()?.clone(), true)
                } else {
                    // `check_model_guide_match` made sure the guide has every latent site.
                    let (Some(g), Some(pos)) = (
                        run.guide.get(&m.name),
                        guide_order.iter().position(|n| *n == m.name),
                    ) else {
                        return Err(InferError::LatentNotInGuide {
                            site: m.name.clone(),
                        });
                    };
                    // A site that the guide draws before a latent the model draws before it
                    // may depend on that latent in the guide while the model conditions on it:
                    // the analytic KL at the drawn value is then not a term of the joint KL
                    // (Pyro warns "Failed to verify mean field restriction"). Its Monte Carlo
                    // term `log q − log p` is, whatever the dependence.
                    let in_order = latest_in_guide.is_none_or(|l| l < pos);
                    latest_in_guide = latest_in_guide.max(Some(pos));
                    if let Some(gd) = &g.dist
                        && !gd.has_rsample()
                    {
                        return Err(InferError::NotReparameterized {
                            site: g.name.clone(),
                            dist: vi_kl::describe(gd.as_ref()),
                        });
                    }
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
            per_run.push(terms);
            last = Some(run);
        }
        let Some(last) = last else {
            return Err(InferError::Invalid("no particles ran".into()));
        };
        let loss = match loss {
            // One particle: no division (a graph node that changes nothing).
            Some(l) if n_runs * vectorized == 1 => l,
            Some(l) => (l / (n_runs * vectorized) as f64)?,
            None => zero_loss(store)?,
        };
        Ok(ElboOutput {
            surrogate: loss.clone(),
            loss,
            sites: average_terms(per_run, vectorized)?,
            model_trace: last.model,
            guide_trace: last.guide,
            modules: last.modules,
        })
    }
}
