//! Pairs whose `p` is Beta, Exponential, Gamma or Dirichlet.
//!
//! Same-family pairs have their own closed forms; the cross-family pairs are
//! `H(p, q) − H(p)`, the cross-entropy from `p`'s moments (mean, variance, `E[ln x]`,
//! `E[e^{−x/s}]`) minus `p`'s entropy. Where `q`'s support does not cover `p`'s the KL is
//! `+inf` (a constant, so no gradient), as torch's `kl.py`.

use std::f64::consts::PI;

use candle_core::{D, Tensor};
use vi_dist::ops::{digamma, lgamma, log1p};
use vi_dist::{Beta, Dirichlet, Distribution, Exponential, Gamma, Gumbel, Normal, Pareto, Uniform};

use crate::error::Result;
use crate::registry::KlRegistry;
use crate::util::{inf_where, infinite};

/// Euler–Mascheroni constant γ = −ψ(1): `E[ln x] = −γ − ln λ` under Exponential(λ).
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// The note for pairs whose `q` never covers `p`'s support.
const NO_COVER: &str = "+inf: q's support does not cover p's";

/// Registers the 21 pairs of this group: Beta, Exponential, Gamma ‖ their torch partners and
/// Dirichlet ‖ Dirichlet; each rule's doc states its formula.
pub(super) fn register(reg: &mut KlRegistry) {
    reg.insert("closed form", beta_beta);
    reg.insert("closed form", beta_exponential);
    reg.insert("closed form", beta_gamma);
    reg.insert("closed form", beta_normal);
    reg.insert(NO_COVER, beta_pareto);
    reg.insert(
        "closed form; +inf where q's [low, high] does not contain [0, 1]",
        beta_uniform,
    );
    reg.insert(NO_COVER, exponential_beta);
    reg.insert("closed form", exponential_exponential);
    reg.insert("closed form", exponential_gamma);
    reg.insert("closed form", exponential_gumbel);
    reg.insert("closed form", exponential_normal);
    reg.insert(NO_COVER, exponential_pareto);
    reg.insert(NO_COVER, exponential_uniform);
    reg.insert(NO_COVER, gamma_beta);
    reg.insert("closed form", gamma_exponential);
    reg.insert("closed form", gamma_gamma);
    reg.insert("closed form", gamma_gumbel);
    reg.insert("closed form", gamma_normal);
    reg.insert(NO_COVER, gamma_pareto);
    reg.insert(NO_COVER, gamma_uniform);
    reg.insert("closed form", dirichlet_dirichlet);
}

// ---------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------

/// Cross-entropy against a Normal from `p`'s mean m and variance v:
/// `−E_p[ln N(x; μ, σ)] = ln σ + ½ ln 2π + (v + (m − μ)²) / (2σ²)`.
fn normal_cross_entropy(mean: &Tensor, var: &Tensor, q: &Normal) -> Result<Tensor> {
    let (loc, scale) = (q.loc(), q.scale());
    let dev = mean.broadcast_sub(loc)?.sqr()?.broadcast_add(var)?;
    let quad = dev.broadcast_div(&(scale.sqr()? * 2.0)?)?;
    let log_norm = (scale.log()? + 0.5 * (2.0 * PI).ln())?;
    Ok(quad.broadcast_add(&log_norm)?)
}

/// Cross-entropy against a Gamma(α, β) from `p`'s mean m and `E_p[ln x]` = ℓ:
/// `−E_p[ln Gamma(x; α, β)] = ln Γ(α) − α ln β − (α − 1) ℓ + β m`.
fn gamma_cross_entropy(mean: &Tensor, mean_log: &Tensor, q: &Gamma) -> Result<Tensor> {
    let (a, b) = (q.concentration(), q.rate());
    let norm = (lgamma(a)? - (a * b.log()?)?)?;
    let t = a.affine(1.0, -1.0)?.broadcast_mul(mean_log)?;
    let t = b.broadcast_mul(mean)?.broadcast_sub(&t)?;
    Ok(t.broadcast_add(&norm)?)
}

/// Cross-entropy against an Exponential(λ) from `p`'s mean m:
/// `−E_p[ln Exp(x; λ)] = λ m − ln λ`.
fn exponential_cross_entropy(mean: &Tensor, q: &Exponential) -> Result<Tensor> {
    let rate = q.rate();
    Ok(rate.broadcast_mul(mean)?.broadcast_sub(&rate.log()?)?)
}

/// Cross-entropy against a Gumbel(μ, s) from `p`'s mean m and `ln E_p[e^{−x/s}]` = g:
/// `−E_p[ln Gumbel(x; μ, s)] = ln s + (m − μ)/s + exp(μ/s + g)`.
fn gumbel_cross_entropy(mean: &Tensor, log_mgf: &Tensor, q: &Gumbel) -> Result<Tensor> {
    let (loc, scale) = (q.loc(), q.scale());
    let z = (loc / scale)?;
    let lin = mean.broadcast_div(scale)?.broadcast_sub(&z)?;
    let tail = log_mgf.broadcast_add(&z)?.exp()?;
    Ok((lin + tail)?.broadcast_add(&scale.log()?)?)
}

/// Beta(a, b)'s mean `a / (a + b)`, variance `ab / ((a + b)² (a + b + 1))` and
/// `E[ln x] = ψ(a) − ψ(a + b)`.
fn beta_moments(p: &Beta) -> Result<(Tensor, Tensor, Tensor)> {
    let (a, b) = (p.concentration1(), p.concentration0());
    let t = (a + b)?;
    let mean = (a / &t)?;
    let var = ((a * b)? / (t.sqr()? * t.affine(1.0, 1.0)?)?)?;
    let mean_log = (digamma(a)? - digamma(&t)?)?;
    Ok((mean, var, mean_log))
}

/// `−H(p)` broadcast against a cross-entropy: `H(p, q) − H(p)`.
fn minus_entropy(p: &dyn Distribution, cross: &Tensor) -> Result<Tensor> {
    Ok(cross.broadcast_sub(&p.entropy()?)?)
}

// ---------------------------------------------------------------------------------------
// Beta ‖ ·
// ---------------------------------------------------------------------------------------

/// KL(Beta(a₁, b₁) ‖ Beta(a₂, b₂)) = ln B(a₂, b₂) − ln B(a₁, b₁) + (a₁ − a₂) ψ(a₁)
/// + (b₁ − b₂) ψ(b₁) + (a₂ + b₂ − a₁ − b₁) ψ(a₁ + b₁).
fn beta_beta(p: &Beta, q: &Beta, _: &KlRegistry) -> Result<Tensor> {
    let (a1, b1) = (p.concentration1(), p.concentration0());
    let (a2, b2) = (q.concentration1(), q.concentration0());
    let (t1, t2) = ((a1 + b1)?, (a2 + b2)?);
    // ln B(a₂, b₂) − ln B(a₁, b₁)
    let log_b_q = ((lgamma(a2)? + lgamma(b2)?)? - lgamma(&t2)?)?;
    let log_b_p = ((lgamma(a1)? + lgamma(b1)?)? - lgamma(&t1)?)?;
    let kl = log_b_q.broadcast_sub(&log_b_p)?;
    let ta = a1.broadcast_sub(a2)?.broadcast_mul(&digamma(a1)?)?;
    let tb = b1.broadcast_sub(b2)?.broadcast_mul(&digamma(b1)?)?;
    let tt = t2.broadcast_sub(&t1)?.broadcast_mul(&digamma(&t1)?)?;
    Ok(((kl + ta)? + tb)?.add(&tt)?)
}

/// KL(Beta(a, b) ‖ Exponential(λ)) = −H(p) − ln λ + λ a/(a + b).
fn beta_exponential(p: &Beta, q: &Exponential, _: &KlRegistry) -> Result<Tensor> {
    let (mean, _, _) = beta_moments(p)?;
    minus_entropy(p, &exponential_cross_entropy(&mean, q)?)
}

/// KL(Beta(a, b) ‖ Gamma(α, β)) = −H(p) + ln Γ(α) − α ln β − (α − 1)(ψ(a) − ψ(a + b))
/// + β a/(a + b).
fn beta_gamma(p: &Beta, q: &Gamma, _: &KlRegistry) -> Result<Tensor> {
    let (mean, _, mean_log) = beta_moments(p)?;
    minus_entropy(p, &gamma_cross_entropy(&mean, &mean_log, q)?)
}

/// KL(Beta(a, b) ‖ Normal(μ, σ)) = −H(p) + ln σ + ½ ln 2π + (Var + (E x − μ)²)/(2σ²), with
/// E x = a/(a + b), Var = ab/((a + b)²(a + b + 1)).
fn beta_normal(p: &Beta, q: &Normal, _: &KlRegistry) -> Result<Tensor> {
    let (mean, var, _) = beta_moments(p)?;
    minus_entropy(p, &normal_cross_entropy(&mean, &var, q)?)
}

/// KL(Beta ‖ Pareto) = +inf: Pareto's support `[scale, ∞)`, scale > 0, never covers (0, 1).
fn beta_pareto(p: &Beta, q: &Pareto, _: &KlRegistry) -> Result<Tensor> {
    infinite(p, q)
}

/// KL(Beta(a, b) ‖ Uniform(l, h)) = −H(p) + ln(h − l) where `l ≤ 0` and `h ≥ 1`, +inf
/// elsewhere (the finite branch is finite everywhere, so gradients stay finite).
fn beta_uniform(p: &Beta, q: &Uniform, _: &KlRegistry) -> Result<Tensor> {
    let (low, high) = (q.low(), q.high());
    let finite = minus_entropy(p, &(high - low)?.log()?)?;
    let outside = low.gt(0.0)?.maximum(&high.lt(1.0)?)?;
    inf_where(&outside, &finite)
}

// ---------------------------------------------------------------------------------------
// Exponential ‖ ·
// ---------------------------------------------------------------------------------------

/// KL(Exponential ‖ Beta) = +inf: Beta's (0, 1) does not cover [0, ∞).
fn exponential_beta(p: &Exponential, q: &Beta, _: &KlRegistry) -> Result<Tensor> {
    infinite(p, q)
}

/// KL(Exponential(λ₁) ‖ Exponential(λ₂)) = r − 1 − ln r, r = λ₂/λ₁.
fn exponential_exponential(p: &Exponential, q: &Exponential, _: &KlRegistry) -> Result<Tensor> {
    let r = q.rate().broadcast_div(p.rate())?;
    Ok(((&r - 1.0)? - r.log()?)?)
}

/// KL(Exponential(λ) ‖ Gamma(α, β)) = ln Γ(α) − α ln(β/λ) + (α − 1) γ + β/λ − 1, γ the
/// Euler–Mascheroni constant (`E[ln x] = −γ − ln λ`).
fn exponential_gamma(p: &Exponential, q: &Gamma, _: &KlRegistry) -> Result<Tensor> {
    let (lam, a, b) = (p.rate(), q.concentration(), q.rate());
    let ratio = b.broadcast_div(lam)?;
    let t = (a.broadcast_mul(&ratio.log()?)? - &ratio)?;
    let c = (lgamma(a)? + a.affine(EULER_GAMMA, -EULER_GAMMA - 1.0)?)?;
    Ok(c.broadcast_sub(&t)?)
}

/// KL(Exponential(λ) ‖ Gumbel(μ, s)) = ln(λs) − 1 + 1/(λs) − μ/s + e^{μ/s} λs/(λs + 1)
/// (`E[e^{−x/s}] = λs/(λs + 1)`; the last term is `exp(μ/s − ln(1 + 1/(λs)))`).
fn exponential_gumbel(p: &Exponential, q: &Gumbel, _: &KlRegistry) -> Result<Tensor> {
    let lam = p.rate();
    let inv = q.scale().broadcast_mul(lam)?.recip()?; // 1/(λs)
    let log_mgf = log1p(&inv)?.neg()?;
    let cross = gumbel_cross_entropy(&lam.recip()?, &log_mgf, q)?;
    minus_entropy(p, &cross)
}

/// KL(Exponential(λ) ‖ Normal(μ, σ)) = ln λ − 1 + ln σ + ½ ln 2π + (1/λ² + (1/λ − μ)²)/(2σ²).
fn exponential_normal(p: &Exponential, q: &Normal, _: &KlRegistry) -> Result<Tensor> {
    let mean = p.rate().recip()?;
    let var = mean.sqr()?;
    minus_entropy(p, &normal_cross_entropy(&mean, &var, q)?)
}

/// KL(Exponential ‖ Pareto) = +inf: Pareto's `[scale, ∞)`, scale > 0, does not cover [0, ∞).
fn exponential_pareto(p: &Exponential, q: &Pareto, _: &KlRegistry) -> Result<Tensor> {
    infinite(p, q)
}

/// KL(Exponential ‖ Uniform) = +inf: a bounded interval does not cover [0, ∞).
fn exponential_uniform(p: &Exponential, q: &Uniform, _: &KlRegistry) -> Result<Tensor> {
    infinite(p, q)
}

// ---------------------------------------------------------------------------------------
// Gamma ‖ ·
// ---------------------------------------------------------------------------------------

/// KL(Gamma ‖ Beta) = +inf: Beta's (0, 1) does not cover (0, ∞).
fn gamma_beta(p: &Gamma, q: &Beta, _: &KlRegistry) -> Result<Tensor> {
    infinite(p, q)
}

/// KL(Gamma(α, β) ‖ Exponential(λ)) = −H(p) − ln λ + λ α/β.
fn gamma_exponential(p: &Gamma, q: &Exponential, _: &KlRegistry) -> Result<Tensor> {
    let mean = (p.concentration() / p.rate())?;
    minus_entropy(p, &exponential_cross_entropy(&mean, q)?)
}

/// KL(Gamma(α₁, β₁) ‖ Gamma(α₂, β₂)) = (α₁ − α₂) ψ(α₁) − ln Γ(α₁) + ln Γ(α₂)
/// + α₂ ln(β₁/β₂) + α₁ (β₂/β₁ − 1).
fn gamma_gamma(p: &Gamma, q: &Gamma, _: &KlRegistry) -> Result<Tensor> {
    let (a1, b1) = (p.concentration(), p.rate());
    let (a2, b2) = (q.concentration(), q.rate());
    let t1 = a1.broadcast_sub(a2)?.broadcast_mul(&digamma(a1)?)?;
    let t2 = lgamma(a2)?.broadcast_sub(&lgamma(a1)?)?;
    let ratio = b2.broadcast_div(b1)?; // β₂/β₁
    let t3 = a2.broadcast_mul(&ratio.log()?)?.neg()?;
    let t4 = a1.broadcast_mul(&(ratio - 1.0)?)?;
    Ok(((t1 + t2)? + (t3 + t4)?)?)
}

/// KL(Gamma(α, β) ‖ Gumbel(μ, s)) = −H(p) + ln s + (α/β − μ)/s + exp(μ/s − α ln(1 + 1/(βs)))
/// (`E[e^{−x/s}] = (1 + 1/(βs))^{−α}`).
fn gamma_gumbel(p: &Gamma, q: &Gumbel, _: &KlRegistry) -> Result<Tensor> {
    let (a, b) = (p.concentration(), p.rate());
    let inv = q.scale().broadcast_mul(b)?.recip()?; // 1/(βs)
    let log_mgf = log1p(&inv)?.broadcast_mul(a)?.neg()?;
    let cross = gumbel_cross_entropy(&(a / b)?, &log_mgf, q)?;
    minus_entropy(p, &cross)
}

/// KL(Gamma(α, β) ‖ Normal(μ, σ)) = −H(p) + ln σ + ½ ln 2π + (α/β² + (α/β − μ)²)/(2σ²).
fn gamma_normal(p: &Gamma, q: &Normal, _: &KlRegistry) -> Result<Tensor> {
    let (a, b) = (p.concentration(), p.rate());
    let mean = (a / b)?;
    let var = (&mean / b)?;
    minus_entropy(p, &normal_cross_entropy(&mean, &var, q)?)
}

/// KL(Gamma ‖ Pareto) = +inf: Pareto's `[scale, ∞)`, scale > 0, does not cover (0, ∞).
fn gamma_pareto(p: &Gamma, q: &Pareto, _: &KlRegistry) -> Result<Tensor> {
    infinite(p, q)
}

/// KL(Gamma ‖ Uniform) = +inf: a bounded interval does not cover (0, ∞).
fn gamma_uniform(p: &Gamma, q: &Uniform, _: &KlRegistry) -> Result<Tensor> {
    infinite(p, q)
}

// ---------------------------------------------------------------------------------------
// Dirichlet ‖ Dirichlet
// ---------------------------------------------------------------------------------------

/// KL(Dir(α) ‖ Dir(β)) = ln Γ(α₀) − ln Γ(β₀) + Σᵢ (ln Γ(βᵢ) − ln Γ(αᵢ))
/// + Σᵢ (αᵢ − βᵢ)(ψ(αᵢ) − ψ(α₀)), with α₀ = Σᵢ αᵢ, β₀ = Σᵢ βᵢ (sums over the last dim).
fn dirichlet_dirichlet(p: &Dirichlet, q: &Dirichlet, _: &KlRegistry) -> Result<Tensor> {
    let (a, b) = (p.concentration(), q.concentration());
    let (a0, b0) = (a.sum_keepdim(D::Minus1)?, b.sum_keepdim(D::Minus1)?);
    // ln Γ(α₀) − ln Γ(β₀), kept with a trailing 1 so it broadcasts like the per-class terms.
    let norm = lgamma(&a0)?.broadcast_sub(&lgamma(&b0)?)?;
    let per = lgamma(b)?.broadcast_sub(&lgamma(a)?)?;
    let centred = digamma(a)?.broadcast_sub(&digamma(&a0)?)?;
    let per = (per + a.broadcast_sub(b)?.broadcast_mul(&centred)?)?;
    Ok(per
        .sum_keepdim(D::Minus1)?
        .broadcast_add(&norm)?
        .squeeze(D::Minus1)?)
}
