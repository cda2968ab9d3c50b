//! The GMM's loss written directly in candle: the MAP objective `−[log Dir(w; 0.5) +
//! log LogNormal(s; 0, 2) + Σ_k log N(μ_k; 0, 10) + Σ_n logsumexp_k(log w_k + log N(x_n; μ_k,
//! s))]`, the weights the softmax of free logits, the scale the exp of a free log-scale (the
//! guide's parameterisation).

use vi_infer::Result;
use vi_infer::candle::{D, Tensor};

const HALF_LOG_2PI: f64 = 0.918_938_533_204_672_8;

/// `log Γ(x)` for x > 0 (Lanczos, g = 7), in f64: the Dirichlet's normaliser (a constant).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    HALF_LOG_2PI + (x + 0.5) * t.ln() - t + a.ln()
}

/// The loss at `logits` (`[K]`), `log_scale` (scalar), `locs` (`[K]`) for the points `x`
/// (`[N]`).
pub fn loss(logits: &Tensor, log_scale: &Tensor, locs: &Tensor, x: &Tensor) -> Result<Tensor> {
    let k = logits.dims()[0];
    let log_w = vi_infer::nn::ops::log_softmax(logits, D::Minus1)?;
    let scale = log_scale.exp()?;
    // log Dirichlet(w; 0.5): Σ (α − 1) log w − log B(α).
    let alpha = 0.5;
    let log_b = k as f64 * ln_gamma(alpha) - ln_gamma(alpha * k as f64);
    let prior_w = (log_w.sum_all()? * (alpha - 1.0))?.affine(1.0, -log_b)?;
    // log LogNormal(s; 0, 2) = log N(log s; 0, 2) − log s.
    let prior_s =
        ((log_scale.sqr()? * (-0.5 / 4.0))?.affine(1.0, -HALF_LOG_2PI - 2f64.ln())? - log_scale)?;
    let prior_locs = (locs.sqr()?.sum_all()? * (-0.5 / 100.0))?
        .affine(1.0, -(k as f64) * (HALF_LOG_2PI + 10f64.ln()))?;
    // [N, K]: log w_k + log N(x_n; μ_k, s).
    let z = x
        .unsqueeze(1)?
        .broadcast_sub(&locs.unsqueeze(0)?)?
        .broadcast_div(&scale)?;
    let comp = (z.sqr()? * -0.5)?
        .broadcast_sub(log_scale)?
        .affine(1.0, -HALF_LOG_2PI)?
        .broadcast_add(&log_w.unsqueeze(0)?)?;
    let m = comp.max_keepdim(D::Minus1)?.detach();
    let lse = (comp
        .broadcast_sub(&m)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        + m)?;
    let total = (((prior_w + prior_s)? + prior_locs)? + lse.sum_all()?)?;
    Ok(total.neg()?)
}
