//! Pairs whose `p` is a location-scale family or a transform of one: Normal, Laplace,
//! Cauchy, Gumbel, HalfNormal, LogNormal.

use candle_core::Tensor;
use vi_dist::{
    Beta, Cauchy, Distribution, Exponential, Gamma, Gumbel, HalfNormal, Laplace, LogNormal, Normal,
    Pareto, Uniform,
};

use crate::error::Result;
use crate::registry::KlRegistry;
use crate::util::infinite;

/// The Euler–Mascheroni constant γ: the mean of a standard Gumbel.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// What the always-infinite rules say in the table of pairs.
const REAL_LINE_NOTE: &str = "+inf: q's support does not cover p's";

pub(super) fn register(reg: &mut KlRegistry) {
    reg.insert_with_sum("closed form", normal_normal, normal_normal_sum);
    reg.insert("closed form", normal_gumbel);
    reg.insert("closed form", normal_laplace);
    reg.insert(REAL_LINE_NOTE, real_line_vs_bounded::<Normal, Beta>);
    reg.insert(REAL_LINE_NOTE, real_line_vs_bounded::<Normal, Exponential>);
    reg.insert(REAL_LINE_NOTE, real_line_vs_bounded::<Normal, Gamma>);
    reg.insert(REAL_LINE_NOTE, real_line_vs_bounded::<Normal, Pareto>);
    reg.insert(REAL_LINE_NOTE, real_line_vs_bounded::<Normal, Uniform>);

    reg.insert("closed form", laplace_laplace);
    reg.insert("closed form", laplace_normal);
    reg.insert(REAL_LINE_NOTE, real_line_vs_bounded::<Laplace, Beta>);
    reg.insert(REAL_LINE_NOTE, real_line_vs_bounded::<Laplace, Exponential>);
    reg.insert(REAL_LINE_NOTE, real_line_vs_bounded::<Laplace, Gamma>);
    reg.insert(REAL_LINE_NOTE, real_line_vs_bounded::<Laplace, Pareto>);
    reg.insert(REAL_LINE_NOTE, real_line_vs_bounded::<Laplace, Uniform>);

    reg.insert("closed form", gumbel_gumbel);
    reg.insert("closed form", gumbel_normal);
    reg.insert(REAL_LINE_NOTE, real_line_vs_bounded::<Gumbel, Beta>);
    reg.insert(REAL_LINE_NOTE, real_line_vs_bounded::<Gumbel, Exponential>);
    reg.insert(REAL_LINE_NOTE, real_line_vs_bounded::<Gumbel, Gamma>);
    reg.insert(REAL_LINE_NOTE, real_line_vs_bounded::<Gumbel, Pareto>);
    reg.insert(REAL_LINE_NOTE, real_line_vs_bounded::<Gumbel, Uniform>);

    reg.insert("closed form", cauchy_cauchy);
    reg.insert("closed form", halfnormal_halfnormal);
    reg.insert("closed form", lognormal_lognormal);
}

/// KL(N(μp, σp²) ‖ N(μq, σq²)) = ½ (r + ((μp − μq)/σq)² − 1 − ln r), r = (σp/σq)²: one fused
/// CPU kernel (forward and backward) for CPU f32/f64 tensors, composed candle ops elsewhere
/// (`vi_dist::ops::kl_normal_normal`).
fn gaussian(loc_p: &Tensor, scale_p: &Tensor, loc_q: &Tensor, scale_q: &Tensor) -> Result<Tensor> {
    Ok(vi_dist::ops::kl_normal_normal(
        loc_p, scale_p, loc_q, scale_q,
    )?)
}

/// KL(N(μp, σp²) ‖ N(μq, σq²)) = ½ (r + ((μp − μq)/σq)² − 1 − ln r), r = (σp/σq)².
fn normal_normal(p: &Normal, q: &Normal, _: &KlRegistry) -> Result<Tensor> {
    gaussian(p.loc(), p.scale(), q.loc(), q.scale())
}

/// [`normal_normal`] summed over the trailing `dims` batch dims inside one op (fused on the
/// CPU with f64 accumulation, `vi_dist::ops::kl_normal_normal_sum`): no separate `sum` node.
fn normal_normal_sum(p: &Normal, q: &Normal, dims: usize) -> Result<Tensor> {
    Ok(vi_dist::ops::kl_normal_normal_sum(
        p.loc(),
        p.scale(),
        q.loc(),
        q.scale(),
        dims,
    )?)
}

/// KL(LogNormal(μp, σp) ‖ LogNormal(μq, σq)) = KL(N(μp, σp²) ‖ N(μq, σq²)): the KL is
/// invariant under the common bijection `exp`.
fn lognormal_lognormal(p: &LogNormal, q: &LogNormal, _: &KlRegistry) -> Result<Tensor> {
    gaussian(p.loc(), p.scale(), q.loc(), q.scale())
}

/// KL(HalfNormal(σp) ‖ HalfNormal(σq)) = ½ (r − 1 − ln r), r = (σp/σq)²: the KL of the
/// zero-mean Normals they fold.
fn halfnormal_halfnormal(p: &HalfNormal, q: &HalfNormal, _: &KlRegistry) -> Result<Tensor> {
    let ratio = p.scale().broadcast_div(q.scale())?.sqr()?;
    let kl = ((&ratio - ratio.log()?)? - 1.0)?;
    Ok((kl * 0.5)?)
}

/// KL(N(μ, σ²) ‖ Gumbel(m, β)) = ln(β/σ) − ½ ln(2π) − ½ + (μ − m)/β
/// + exp(−(μ − m)/β + σ²/(2β²)), from E[e^{−x/β}] = e^{−μ/β + σ²/(2β²)} under N(μ, σ²).
fn normal_gumbel(p: &Normal, q: &Gumbel, _: &KlRegistry) -> Result<Tensor> {
    let z = p.loc().broadcast_sub(q.loc())?.broadcast_div(q.scale())?;
    let s = p.scale().broadcast_div(q.scale())?;
    let log_ratio = s.log()?.neg()?;
    let mgf = ((s.sqr()? * 0.5)? - &z)?.exp()?;
    let c = -0.5 * (2.0 * std::f64::consts::PI).ln() - 0.5;
    Ok(((log_ratio + z)? + mgf)?.affine(1.0, c)?)
}

/// KL(N(μ, σ²) ‖ Laplace(m, b)) = ln(b/σ) + ½ ln(2/π) − ½ + E|x − m|/b, where
/// E|x − m| = σ √(2/π) exp(−d²/(2σ²)) + d erf(d/(σ√2)), d = μ − m (the folded-normal mean).
fn normal_laplace(p: &Normal, q: &Laplace, _: &KlRegistry) -> Result<Tensor> {
    let d = p.loc().broadcast_sub(q.loc())?;
    let u = (d.broadcast_div(p.scale())? * std::f64::consts::FRAC_1_SQRT_2)?;
    let two_over_pi = 2.0 / std::f64::consts::PI;
    let folded = (p
        .scale()
        .broadcast_mul(&u.sqr()?.neg()?.exp()?)?
        .affine(two_over_pi.sqrt(), 0.0)?
        + (&d * u.erf()?)?)?;
    let log_ratio = q.scale().broadcast_div(p.scale())?.log()?;
    let kl = (log_ratio + folded.broadcast_div(q.scale())?)?;
    Ok(kl.affine(1.0, 0.5 * two_over_pi.ln() - 0.5)?)
}

/// KL(Laplace(μp, bp) ‖ Laplace(μq, bq)) = ln(bq/bp) − 1 + (|d| + bp exp(−|d|/bp))/bq,
/// d = μp − μq.
fn laplace_laplace(p: &Laplace, q: &Laplace, _: &KlRegistry) -> Result<Tensor> {
    let abs_d = p.loc().broadcast_sub(q.loc())?.abs()?;
    let tail = p
        .scale()
        .broadcast_mul(&abs_d.broadcast_div(p.scale())?.neg()?.exp()?)?;
    let log_ratio = q.scale().broadcast_div(p.scale())?.log()?;
    let kl = (log_ratio + (abs_d + tail)?.broadcast_div(q.scale())?)?;
    Ok((kl - 1.0)?)
}

/// KL(Laplace(μ, b) ‖ N(m, σ²)) = ln(σ/b) + ½ ln(π/2) − 1 + ((μ − m)² + 2b²)/(2σ²).
fn laplace_normal(p: &Laplace, q: &Normal, _: &KlRegistry) -> Result<Tensor> {
    let second_moment = p
        .loc()
        .broadcast_sub(q.loc())?
        .sqr()?
        .broadcast_add(&(p.scale().sqr()? * 2.0)?)?;
    let quad = (second_moment.broadcast_div(&q.scale().sqr()?)? * 0.5)?;
    let log_ratio = q.scale().broadcast_div(p.scale())?.log()?;
    let c = 0.5 * (std::f64::consts::PI / 2.0).ln() - 1.0;
    Ok((log_ratio + quad)?.affine(1.0, c)?)
}

/// KL(Gumbel(μp, βp) ‖ Gumbel(μq, βq)) = ln(βq/βp) − γ − 1 + (μp − μq + γ βp)/βq
/// + exp((μq − μp)/βq + ln Γ(1 + βp/βq)), γ the Euler–Mascheroni constant.
fn gumbel_gumbel(p: &Gumbel, q: &Gumbel, _: &KlRegistry) -> Result<Tensor> {
    let z = p.loc().broadcast_sub(q.loc())?.broadcast_div(q.scale())?;
    let s = p.scale().broadcast_div(q.scale())?;
    let log_ratio = s.log()?.neg()?;
    let lg = vi_dist::ops::lgamma(&(&s + 1.0)?)?;
    let mgf = (lg - &z)?.exp()?;
    let linear = (z + (s * EULER_GAMMA)?)?;
    Ok(((log_ratio + linear)? + mgf)?.affine(1.0, -EULER_GAMMA - 1.0)?)
}

/// KL(Gumbel(μ, β) ‖ N(m, σ²)) = ln(σ/β) + ½ ln(2π) − γ − 1
/// + ((μ + γβ − m)² + π²β²/6)/(2σ²), from the Gumbel's mean μ + γβ and variance π²β²/6.
fn gumbel_normal(p: &Gumbel, q: &Normal, _: &KlRegistry) -> Result<Tensor> {
    let pi = std::f64::consts::PI;
    let mean_gap = (p.loc() + (p.scale() * EULER_GAMMA)?)?.broadcast_sub(q.loc())?;
    let second_moment = mean_gap
        .sqr()?
        .broadcast_add(&(p.scale().sqr()? * (pi * pi / 6.0))?)?;
    let quad = (second_moment.broadcast_div(&q.scale().sqr()?)? * 0.5)?;
    let log_ratio = q.scale().broadcast_div(p.scale())?.log()?;
    let c = 0.5 * (2.0 * pi).ln() - EULER_GAMMA - 1.0;
    Ok((log_ratio + quad)?.affine(1.0, c)?)
}

/// KL(Cauchy(μp, γp) ‖ Cauchy(μq, γq)) = ln(((γp + γq)² + (μp − μq)²) / (4 γp γq));
/// symmetric in p and q.
fn cauchy_cauchy(p: &Cauchy, q: &Cauchy, _: &KlRegistry) -> Result<Tensor> {
    let num =
        (p.scale().broadcast_add(q.scale())?.sqr()? + p.loc().broadcast_sub(q.loc())?.sqr()?)?;
    let den = (p.scale().broadcast_mul(q.scale())? * 4.0)?;
    Ok((num.log()? - den.log()?)?)
}

/// KL(p ‖ q) = +∞ for a `p` with positive density on the whole real line (Normal, Laplace,
/// Gumbel) and a `q` whose support is a half-line or an interval (Beta, Exponential, Gamma,
/// Pareto, Uniform). A constant: no gradient reaches either side.
fn real_line_vs_bounded<P: Distribution, Q: Distribution>(
    p: &P,
    q: &Q,
    _: &KlRegistry,
) -> Result<Tensor> {
    infinite(p, q)
}
