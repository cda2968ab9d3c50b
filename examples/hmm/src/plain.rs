//! The HMM's negative log-likelihood written directly in candle, for the timing comparison
//! and the tests: the emission log-densities of every step at once (`[T, K]`), then the
//! forward recursion `α_t = logsumexp_i(α_{t−1, i} + log A_ij) + e_tj` one step at a time.

use vi_infer::candle::{D, Tensor};
use vi_infer::{InferError, Result};

/// `−log p(y)` of the HMM with initial probabilities `init` (`[K]`), transition matrix `trans`
/// (`[K, K]`, rows summing to one), emission means `locs` (`[K]`) and scale `scale` (a scalar),
/// at observations `ys` (`[T]`).
pub fn neg_log_likelihood(
    init: &Tensor,
    trans: &Tensor,
    locs: &Tensor,
    scale: &Tensor,
    ys: &Tensor,
) -> Result<Tensor> {
    let steps = ys.dims()[0];
    if steps == 0 {
        return Err(InferError::Invalid("an HMM of no steps".into()));
    }
    let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
    // e[t, j] = log N(y_t; locs_j, scale)
    let z = ys
        .unsqueeze(1)?
        .broadcast_sub(&locs.unsqueeze(0)?)?
        .broadcast_div(scale)?;
    let e = (z.sqr()? * -0.5)?
        .broadcast_sub(&scale.log()?)?
        .affine(1.0, -half_log_2pi)?;
    let log_trans = trans.log()?;
    let mut alpha = (init.log()? + e.narrow(0, 0, 1)?.squeeze(0)?)?;
    for t in 1..steps {
        // [K, 1] + [K, K] → log-sum-exp over the previous state.
        let m = alpha.max(0)?.detach();
        let joint = alpha
            .unsqueeze(1)?
            .broadcast_add(&log_trans)?
            .broadcast_sub(&m)?;
        let next = (joint.exp()?.sum(0)?.log()?.broadcast_add(&m))?;
        alpha = (next + e.narrow(0, t, 1)?.squeeze(0)?)?;
    }
    let m = alpha.max(D::Minus1)?.detach();
    let total = (alpha.broadcast_sub(&m)?.exp()?.sum(D::Minus1)?.log()? + m)?;
    Ok(total.neg()?)
}
