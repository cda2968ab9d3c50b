//! Pairs whose `p` is Uniform or Pareto (bounded supports).
//!
//! Where `p`'s support is not inside `q`'s the KL is `+inf`. The finite formula is then
//! evaluated at harmless stand-in parameters (both branches of every `where` finite), so the
//! gradients of the finite elements stay finite.

use std::f64::consts::PI;

use candle_core::Tensor;
use vi_dist::ops::{expm1, lgamma, log1p};
use vi_dist::{Beta, Exponential, Gamma, Gumbel, Normal, Pareto, Uniform};

use crate::error::Result;
use crate::registry::KlRegistry;
use crate::util::{fill_where, inf_where, infinite};

pub(super) fn register(reg: &mut KlRegistry) {
    reg.insert(
        "closed form; +inf where p's support is not inside q's",
        uniform_uniform,
    );
    reg.insert(
        "closed form; +inf where p's support is not inside [0, 1]",
        uniform_beta,
    );
    reg.insert(
        "closed form; +inf where p's support reaches below 0",
        uniform_exponential,
    );
    reg.insert(
        "closed form; +inf where p's support reaches below 0",
        uniform_gamma,
    );
    reg.insert("closed form", uniform_gumbel);
    reg.insert("closed form", uniform_normal);
    reg.insert(
        "closed form; +inf where p's support reaches below q's scale",
        uniform_pareto,
    );
    reg.insert("+inf: q's support does not cover p's", pareto_beta);
    reg.insert(
        "closed form; +inf where p's alpha <= 1 (infinite mean)",
        pareto_exponential,
    );
    reg.insert(
        "closed form; +inf where p's alpha <= 1 (infinite mean)",
        pareto_gamma,
    );
    reg.insert(
        "closed form; +inf where p's alpha <= 2 (infinite variance)",
        pareto_normal,
    );
    reg.insert(
        "closed form; +inf where p's scale is below q's",
        pareto_pareto,
    );
    reg.insert("+inf: q's support does not cover p's", pareto_uniform);
}

/// Elementwise "or" of two u8 masks, broadcast.
fn or(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(a.broadcast_maximum(b)?)
}

/// `E[ln X]` for `X ~ Uniform(l, h)` with `0 <= l < h`:
/// `(h ln h − l ln l)/(h − l) − 1`, computed as `ln h − 1 + (l/w)·ln(1 + w/l)` with
/// `w = h − l` (no cancellation for a narrow interval; the last term is `0` at `l = 0`).
fn mean_log_uniform(l: &Tensor, h: &Tensor) -> Result<Tensor> {
    let w = h.broadcast_sub(l)?;
    let at_zero = l.le(0.0)?;
    let l_pos = fill_where(&at_zero, 1.0, l)?;
    let ratio = w.broadcast_div(&l_pos)?;
    let term = log1p(&ratio)?.broadcast_div(&ratio)?;
    let term = fill_where(&at_zero, 0.0, &term)?;
    Ok((h.log()?.broadcast_add(&term)? - 1.0)?)
}

/// `(l, h)` with the stand-ins `(l0, h0)` where `bad` is set, so that a formula evaluated
/// there stays finite (its value is replaced by `+inf` afterwards).
fn stand_in(
    bad: &Tensor,
    l: &Tensor,
    h: &Tensor,
    (l0, h0): (f64, f64),
) -> Result<(Tensor, Tensor)> {
    Ok((fill_where(bad, l0, l)?, fill_where(bad, h0, h)?))
}

/// KL(U(a, b) ‖ U(c, d)) = ln((d − c)/(b − a)), `+inf` unless `c <= a` and `b <= d`.
fn uniform_uniform(p: &Uniform, q: &Uniform, _: &KlRegistry) -> Result<Tensor> {
    let wp = (p.high() - p.low())?;
    let wq = (q.high() - q.low())?;
    let kl = wq.broadcast_div(&wp)?.log()?;
    let outside = or(
        &q.low().broadcast_gt(p.low())?,
        &q.high().broadcast_lt(p.high())?,
    )?;
    inf_where(&outside, &kl)
}

/// KL(U(l, h) ‖ Beta(α, β)) = −ln(h − l) + ln B(α, β) − (α − 1)·E[ln x] − (β − 1)·E[ln(1 − x)],
/// the expectations over `U(l, h)`; `+inf` unless `0 <= l` and `h <= 1`.
fn uniform_beta(p: &Uniform, q: &Beta, _: &KlRegistry) -> Result<Tensor> {
    let bad = or(&p.low().lt(0.0)?, &p.high().gt(1.0)?)?;
    let (l, h) = stand_in(&bad, p.low(), p.high(), (0.25, 0.75))?;
    let (a, b) = (q.concentration1(), q.concentration0());
    let log_beta = ((lgamma(a)? + lgamma(b)?)? - lgamma(&(a + b)?)?)?;
    let e_log_x = mean_log_uniform(&l, &h)?;
    let e_log_1mx = mean_log_uniform(&h.affine(-1.0, 1.0)?, &l.affine(-1.0, 1.0)?)?;
    let kl = (h - l)?
        .log()?
        .neg()?
        .broadcast_add(&log_beta)?
        .broadcast_sub(&(a - 1.0)?.broadcast_mul(&e_log_x)?)?
        .broadcast_sub(&(b - 1.0)?.broadcast_mul(&e_log_1mx)?)?;
    inf_where(&bad, &kl)
}

/// KL(U(l, h) ‖ Exp(λ)) = λ(l + h)/2 − ln(λ(h − l)), `+inf` where `l < 0`.
fn uniform_exponential(p: &Uniform, q: &Exponential, _: &KlRegistry) -> Result<Tensor> {
    let (l, h, rate) = (p.low(), p.high(), q.rate());
    let mid = ((l + h)? * 0.5)?;
    let kl = rate
        .broadcast_mul(&mid)?
        .broadcast_sub(&rate.broadcast_mul(&(h - l)?)?.log()?)?;
    inf_where(&l.lt(0.0)?, &kl)
}

/// KL(U(l, h) ‖ Gamma(k, β)) = −ln(h − l) + ln Γ(k) − k ln β − (k − 1)·E[ln x] + β(l + h)/2,
/// `E[ln x]` over `U(l, h)`; `+inf` where `l < 0`.
fn uniform_gamma(p: &Uniform, q: &Gamma, _: &KlRegistry) -> Result<Tensor> {
    let bad = p.low().lt(0.0)?;
    let (l, h) = stand_in(&bad, p.low(), p.high(), (1.0, 2.0))?;
    let (k, rate) = (q.concentration(), q.rate());
    let log_norm = (lgamma(k)? - (k * rate.log()?)?)?;
    let mid = ((&l + &h)? * 0.5)?;
    let kl = (&h - &l)?
        .log()?
        .neg()?
        .broadcast_add(&log_norm)?
        .broadcast_sub(&(k - 1.0)?.broadcast_mul(&mean_log_uniform(&l, &h)?)?)?
        .broadcast_add(&rate.broadcast_mul(&mid)?)?;
    inf_where(&bad, &kl)
}

/// KL(U(l, h) ‖ Gumbel(μ, β)) = ln(β/w) + (z_l + z_h)/2 + (β/w)·e^{−z_l}·(1 − e^{−w/β}),
/// `w = h − l`, `z = (x − μ)/β` (the last term is `E[e^{−z}]`, through `expm1`).
fn uniform_gumbel(p: &Uniform, q: &Gumbel, _: &KlRegistry) -> Result<Tensor> {
    let (l, h, loc, scale) = (p.low(), p.high(), q.loc(), q.scale());
    let w = (h - l)?;
    let c = scale.broadcast_div(&w)?;
    let z_l = l.broadcast_sub(loc)?.broadcast_div(scale)?;
    let z_h = h.broadcast_sub(loc)?.broadcast_div(scale)?;
    let mean_z = ((&z_l + &z_h)? * 0.5)?;
    let e_exp = (&c * z_l.neg()?.exp()?)?.mul(&expm1(&c.recip()?.neg()?)?.neg()?)?;
    Ok(((c.log()? + mean_z)? + e_exp)?)
}

/// KL(U(l, h) ‖ N(μ, σ²)) = ln(√(2π)·σ/w) + (w²/12 + ((l + h)/2 − μ)²)/(2σ²), `w = h − l`.
fn uniform_normal(p: &Uniform, q: &Normal, _: &KlRegistry) -> Result<Tensor> {
    let (l, h, loc, scale) = (p.low(), p.high(), q.loc(), q.scale());
    let w = (h - l)?;
    let mid = ((l + h)? * 0.5)?;
    let t1 = (scale.broadcast_div(&w)? * (2.0 * PI).sqrt())?.log()?;
    let second = ((w.sqr()? / 12.0)?
        .broadcast_add(&mid.broadcast_sub(loc)?.sqr()?)?
        .broadcast_div(&scale.sqr()?)?
        * 0.5)?;
    Ok((t1 + second)?)
}

/// KL(U(l, h) ‖ Pareto(s, α)) = −ln(h − l) − ln α − α ln s + (α + 1)·E[ln x], `E[ln x]` over
/// `U(l, h)`; `+inf` where `l < s`.
fn uniform_pareto(p: &Uniform, q: &Pareto, _: &KlRegistry) -> Result<Tensor> {
    let bad = p.low().broadcast_lt(q.scale())?;
    let (l, h) = stand_in(&bad, p.low(), p.high(), (1.0, 2.0))?;
    let (scale, alpha) = (q.scale(), q.alpha());
    let log_norm = (alpha.log()? + (alpha * scale.log()?)?)?;
    let kl = (&h - &l)?
        .log()?
        .neg()?
        .broadcast_sub(&log_norm)?
        .broadcast_add(&(alpha + 1.0)?.broadcast_mul(&mean_log_uniform(&l, &h)?)?)?;
    inf_where(&bad, &kl)
}

/// KL(Pareto ‖ Beta) = `+inf`: a Pareto's support `[s, ∞)` is never inside `[0, 1]`.
fn pareto_beta(p: &Pareto, q: &Beta, _: &KlRegistry) -> Result<Tensor> {
    infinite(p, q)
}

/// KL(Pareto ‖ Uniform) = `+inf`: a Pareto's support `[s, ∞)` is unbounded.
fn pareto_uniform(p: &Pareto, q: &Uniform, _: &KlRegistry) -> Result<Tensor> {
    infinite(p, q)
}

/// `α` with `fallback` where `α <= min`: the stand-in for the elements whose KL is `+inf`.
fn alpha_above(alpha: &Tensor, min: f64, fallback: f64) -> Result<(Tensor, Tensor)> {
    let bad = alpha.le(min)?;
    Ok((fill_where(&bad, fallback, alpha)?, bad))
}

/// `−H(Pareto(s, α)) = ln(α/s) − 1/α − 1`.
fn neg_entropy_pareto(scale: &Tensor, alpha: &Tensor) -> Result<Tensor> {
    Ok(((alpha.broadcast_div(scale)?.log()? - alpha.recip()?)? - 1.0)?)
}

/// `E[x] = αs/(α − 1)` of a Pareto with `α > 1`.
fn mean_pareto(scale: &Tensor, alpha: &Tensor) -> Result<Tensor> {
    Ok(alpha.broadcast_mul(scale)?.broadcast_div(&(alpha - 1.0)?)?)
}

/// KL(Pareto(s, α) ‖ Exp(λ)) = ln(α/s) − 1/α − 1 − ln λ + λαs/(α − 1), `+inf` where `α <= 1`.
fn pareto_exponential(p: &Pareto, q: &Exponential, _: &KlRegistry) -> Result<Tensor> {
    let (alpha, bad) = alpha_above(p.alpha(), 1.0, 2.0)?;
    let rate = q.rate();
    let kl = neg_entropy_pareto(p.scale(), &alpha)?
        .broadcast_sub(&rate.log()?)?
        .broadcast_add(&rate.broadcast_mul(&mean_pareto(p.scale(), &alpha)?)?)?;
    inf_where(&bad, &kl)
}

/// KL(Pareto(s, α) ‖ Gamma(k, β)) = ln(α/s) − 1/α − 1 + ln Γ(k) − k ln β
/// − (k − 1)(ln s + 1/α) + βαs/(α − 1), `+inf` where `α <= 1`.
fn pareto_gamma(p: &Pareto, q: &Gamma, _: &KlRegistry) -> Result<Tensor> {
    let (alpha, bad) = alpha_above(p.alpha(), 1.0, 2.0)?;
    let (k, rate) = (q.concentration(), q.rate());
    let scale = p.scale();
    let log_norm = (lgamma(k)? - (k * rate.log()?)?)?;
    let e_log_x = scale.log()?.broadcast_add(&alpha.recip()?)?;
    let kl = neg_entropy_pareto(scale, &alpha)?
        .broadcast_add(&log_norm)?
        .broadcast_sub(&(k - 1.0)?.broadcast_mul(&e_log_x)?)?
        .broadcast_add(&rate.broadcast_mul(&mean_pareto(scale, &alpha)?)?)?;
    inf_where(&bad, &kl)
}

/// KL(Pareto(s, α) ‖ N(μ, σ²)) = ln(α/s) − 1/α − 1 + ln(√(2π)·σ) + (Var + (E x − μ)²)/(2σ²)
/// with `E x = αs/(α − 1)`, `Var = αs²/((α − 1)²(α − 2))`; `+inf` where `α <= 2`.
fn pareto_normal(p: &Pareto, q: &Normal, _: &KlRegistry) -> Result<Tensor> {
    let (alpha, bad) = alpha_above(p.alpha(), 2.0, 3.0)?;
    let (loc, sigma) = (q.loc(), q.scale());
    let scale = p.scale();
    let mean = mean_pareto(scale, &alpha)?;
    let var = mean
        .sqr()?
        .broadcast_div(&alpha)?
        .broadcast_div(&(&alpha - 2.0)?)?;
    let second = (var
        .broadcast_add(&mean.broadcast_sub(loc)?.sqr()?)?
        .broadcast_div(&sigma.sqr()?)?
        * 0.5)?;
    let log_norm = (sigma.log()? + 0.5 * (2.0 * PI).ln())?;
    let kl = neg_entropy_pareto(scale, &alpha)?
        .broadcast_add(&log_norm)?
        .broadcast_add(&second)?;
    inf_where(&bad, &kl)
}

/// KL(Pareto(s₁, α₁) ‖ Pareto(s₂, α₂)) = ln(α₁/α₂) + α₂ ln(s₁/s₂) + α₂/α₁ − 1, `+inf` where
/// `s₁ < s₂`.
fn pareto_pareto(p: &Pareto, q: &Pareto, _: &KlRegistry) -> Result<Tensor> {
    let ratio = q.alpha().broadcast_div(p.alpha())?;
    let kl = ((ratio.log()?.neg()?
        + q.alpha()
            .broadcast_mul(&p.scale().broadcast_div(q.scale())?.log()?)?)?
        + (ratio - 1.0)?)?;
    inf_where(&p.scale().broadcast_lt(q.scale())?, &kl)
}
