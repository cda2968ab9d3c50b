//! `TraceElbo`: the Monte Carlo ELBO with a score-function surrogate.

use super::particles::{Estimate, Particles, Run, particle_elbo};
use super::score::{Dependence, ScoreRun, score_run};
use crate::error::Result;
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
    let ScoreRun {
        loss,
        terms,
        scored,
    } = score_run(run, store, Dependence::All)?;
    let mut surrogate = loss.clone();
    for s in &scored {
        surrogate = (surrogate - s.score.mul(&s.cost)?.sum_all()?)?;
    }
    Ok(Estimate {
        loss,
        surrogate,
        terms,
    })
}
