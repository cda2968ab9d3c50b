//! The special functions composed from candle ops, so they run (and differentiate through
//! autograd) on any device. The CPU uses the host kernels behind [`crate::ops`]; these are the
//! path for CUDA and Metal, and are tested against the kernels on the CPU.

use std::f64::consts::PI;

use candle_core::Tensor;

use crate::broadcast::map_compact;
use crate::error::Result;

/// Lanczos coefficients (g = 7, n = 9), the standard published set.
const LANCZOS_G: f64 = 7.0;
const LANCZOS: [f64; 9] = [
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

/// `ln Γ(x)` by the Lanczos approximation, with the reflection formula below 0.5.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[0.5f64, 5.0], &Device::Cpu)?;
/// let y = vi_dist::ops::composed::lgamma(&x)?.to_vec1::<f64>()?;
/// assert!((y[0] - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
/// assert!((y[1] - 24f64.ln()).abs() < 1e-12);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn lgamma(x: &Tensor) -> Result<Tensor> {
    let reflect = x.lt(0.5)?;
    let one_minus = x.affine(-1.0, 1.0)?;
    let z = reflect.where_cond(&one_minus, x)?.affine(1.0, -1.0)?;
    let mut a = z.ones_like()?.affine(LANCZOS[0], 0.0)?;
    for (i, c) in LANCZOS.iter().enumerate().skip(1) {
        a = (a + z.affine(1.0, i as f64)?.recip()?.affine(*c, 0.0)?)?;
    }
    let t = z.affine(1.0, LANCZOS_G + 0.5)?;
    let lg = ((z.affine(1.0, 0.5)? * t.log()?)? - &t)?
        .add(&a.log()?)?
        .affine(1.0, 0.5 * (2.0 * PI).ln())?;
    let sin = x.affine(PI, 0.0)?.sin()?.abs()?;
    let reflected = (sin.log()?.neg()?.affine(1.0, PI.ln())? - &lg)?;
    Ok(reflect.where_cond(&reflected, &lg)?)
}

/// Shift `x` up by `n` with the recurrence, returning the shifted value and the sum of
/// `term(x + k)` for `k < n`.
fn shift(
    x: &Tensor,
    n: usize,
    term: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<(Tensor, Tensor)> {
    let mut acc = x.zeros_like()?;
    for k in 0..n {
        acc = (acc + term(&x.affine(1.0, k as f64)?)?)?;
    }
    Ok((x.affine(1.0, n as f64)?, acc))
}

/// ψ(x): shift to x ≥ 10 by ψ(x) = ψ(x + 1) − 1/x, then the asymptotic series; reflection
/// ψ(1 − x) − π / tan(πx) for negative x.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let y = vi_dist::ops::composed::digamma(&Tensor::new(&[1.0f64], &Device::Cpu)?)?;
/// assert!((y.to_vec1::<f64>()?[0] + 0.5772156649015329).abs() < 1e-12);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn digamma(x: &Tensor) -> Result<Tensor> {
    let neg = x.lt(0.0)?;
    let xp = neg.where_cond(&x.affine(-1.0, 1.0)?, x)?;
    let (y, acc) = shift(&xp, 10, |t| Ok(t.recip()?))?;
    let z = y.sqr()?.recip()?;
    // ln y − 1/(2y) − z (1/12 − z (1/120 − z (1/252 − z (1/240 − z/132))))
    let poly = z.affine(-1.0 / 132.0, 1.0 / 240.0)?;
    let poly = (&z * poly)?.affine(-1.0, 1.0 / 252.0)?;
    let poly = (&z * poly)?.affine(-1.0, 1.0 / 120.0)?;
    let poly = (&z * poly)?.affine(-1.0, 1.0 / 12.0)?;
    let psi = ((y.log()? - y.recip()?.affine(0.5, 0.0)?)? - (z * poly)?)?;
    let psi = (psi - acc)?;
    let pix = x.affine(PI, 0.0)?;
    let reflected = (&psi - (pix.cos()? / pix.sin()?)?.affine(PI, 0.0)?)?;
    Ok(neg.where_cond(&reflected, &psi)?)
}

/// ψ'(x): shift to x ≥ 10, then the asymptotic series
/// `1/y + 1/(2y²) + Σ B₂ₖ / y^{2k+1}` through B₁₂ (truncation below 1e-15 relative);
/// reflection `ψ'(x) = π² / sin²(πx) − ψ'(1 − x)` for negative x, with `sin(πx)` taken at the
/// exactly reduced argument `x − round(x)`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let y = vi_dist::ops::composed::trigamma(&Tensor::new(&[1.0f64], &Device::Cpu)?)?;
/// assert!((y.to_vec1::<f64>()?[0] - std::f64::consts::PI.powi(2) / 6.0).abs() < 1e-12);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn trigamma(x: &Tensor) -> Result<Tensor> {
    let neg = x.lt(0.0)?;
    let xp = neg.where_cond(&x.affine(-1.0, 1.0)?, x)?;
    let (y, acc) = shift(&xp, 10, |t| Ok(t.sqr()?.recip()?))?;
    let z = y.sqr()?.recip()?;
    // 1/y + z/2 + (z/y)(1/6 − z (1/30 − z (1/42 − z (1/30 − z (5/66 − z 691/2730)))))
    let poly = z.affine(-691.0 / 2730.0, 5.0 / 66.0)?;
    let poly = (&z * poly)?.affine(-1.0, 1.0 / 30.0)?;
    let poly = (&z * poly)?.affine(-1.0, 1.0 / 42.0)?;
    let poly = (&z * poly)?.affine(-1.0, 1.0 / 30.0)?;
    let poly = (&z * poly)?.affine(-1.0, 1.0 / 6.0)?;
    let series = ((&z * poly)? / &y)?;
    let direct = ((y.recip()? + z.affine(0.5, 0.0)?)? + series)?.add(&acc)?;
    // Both branches finite where unselected ("double where"), so gradients stay finite.
    let r = (x - x.round()?)?;
    let sin = r.affine(PI, 0.0)?.sin()?;
    let sin = neg.where_cond(&sin, &sin.ones_like()?)?;
    let reflected = (sin.sqr()?.recip()?.affine(PI * PI, 0.0)? - &direct)?;
    Ok(neg.where_cond(&reflected, &direct)?)
}

/// `ln(1 + x)` by Goldberg's trick: `ln(u) · x / (u − 1)` with `u = 1 + x` rounded.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let y = vi_dist::ops::composed::log1p(&Tensor::new(&[1e-20f64, 1.0], &Device::Cpu)?)?;
/// assert_eq!(y.to_vec1::<f64>()?, vec![1e-20, 2f64.ln()]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn log1p(x: &Tensor) -> Result<Tensor> {
    let u = x.affine(1.0, 1.0)?;
    let um1 = u.affine(1.0, -1.0)?;
    let exact = um1.eq(0.0)?;
    // where u − 1 == 0 the quotient is 0/0: divide by one instead and select x.
    let safe = exact.where_cond(&um1.ones_like()?, &um1)?;
    let tricky = ((u.log()? * x)? / safe)?;
    Ok(exact.where_cond(x, &tricky)?)
}

/// `eˣ − 1`: `(u − 1) · x / ln(u)` with `u = eˣ` for small |x|, `eˣ − 1` otherwise.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let y = vi_dist::ops::composed::expm1(&Tensor::new(&[1e-20f64], &Device::Cpu)?)?;
/// assert_eq!(y.to_vec1::<f64>()?, vec![1e-20]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn expm1(x: &Tensor) -> Result<Tensor> {
    let small = x.abs()?.lt(0.5)?;
    let xs = small.where_cond(x, &x.zeros_like()?)?;
    let u = xs.exp()?;
    let lnu = u.log()?;
    let exact = lnu.eq(0.0)?;
    let safe = exact.where_cond(&lnu.ones_like()?, &lnu)?;
    let tricky = ((u.affine(1.0, -1.0)? * &xs)? / safe)?;
    let small_val = exact.where_cond(&xs, &tricky)?;
    Ok(small.where_cond(&small_val, &x.exp()?.affine(1.0, -1.0)?)?)
}

/// `max(x, 0) + ln(1 + e^{−|x|})`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let y = vi_dist::ops::composed::softplus(&Tensor::new(&[1000.0f64, -1000.0], &Device::Cpu)?)?;
/// assert_eq!(y.to_vec1::<f64>()?, vec![1000.0, 0.0]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    Ok((x.relu()? + log1p(&x.abs()?.neg()?.exp()?)?)?)
}

/// `1 / (1 + e⁻ˣ)` through `e = e^{−|x|}` so nothing overflows.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let y = vi_dist::ops::composed::sigmoid(&Tensor::new(&[0.0f64, -1000.0], &Device::Cpu)?)?;
/// assert_eq!(y.to_vec1::<f64>()?, vec![0.5, 0.0]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    let e = x.abs()?.neg()?.exp()?;
    let num = x.ge(0.0)?.where_cond(&e.ones_like()?, &e)?;
    Ok((num / e.affine(1.0, 1.0)?)?)
}

/// `−½ ((v − μ)/σ)² − ½ ln 2π − ln σ`, broadcast (`ln σ` once per distinct element of a
/// broadcast `scale`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let cpu = Device::Cpu;
/// let lp = vi_dist::ops::composed::normal_log_prob(&Tensor::new(1.0f64, &cpu)?, &Tensor::new(1.0f64, &cpu)?, &Tensor::new(1.0f64, &cpu)?)?;
/// assert!((lp.to_scalar::<f64>()? + 0.5 * (2.0 * std::f64::consts::PI).ln()).abs() < 1e-15);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn normal_log_prob(value: &Tensor, loc: &Tensor, scale: &Tensor) -> Result<Tensor> {
    let z = value.broadcast_sub(loc)?.broadcast_div(scale)?;
    Ok(z.sqr()?
        .affine(-0.5, -0.5 * (2.0 * PI).ln())?
        .broadcast_sub(&map_compact(scale, |s| s.log())?)?)
}

/// `eps · scale + loc`, broadcast.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let cpu = Device::Cpu;
/// let z = vi_dist::ops::composed::normal_rsample(&Tensor::new(1.0f64, &cpu)?, &Tensor::new(2.0f64, &cpu)?, &Tensor::new(&[0.5f64], &cpu)?)?;
/// assert_eq!(z.to_vec1::<f64>()?, vec![2.0]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn normal_rsample(loc: &Tensor, scale: &Tensor, eps: &Tensor) -> Result<Tensor> {
    Ok(eps.broadcast_mul(scale)?.broadcast_add(loc)?)
}

/// `v · l − softplus(l)`, broadcast (with the composed [`softplus`]).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let cpu = Device::Cpu;
/// let lp = vi_dist::ops::composed::bernoulli_log_prob(&Tensor::new(0.0f64, &cpu)?, &Tensor::new(0.0f64, &cpu)?)?;
/// assert!((lp.to_scalar::<f64>()? - 0.5f64.ln()).abs() < 1e-15);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn bernoulli_log_prob(value: &Tensor, logits: &Tensor) -> Result<Tensor> {
    Ok(value
        .broadcast_mul(logits)?
        .broadcast_sub(&softplus(logits)?)?)
}

/// `½ (r + ((μp − μq)/σq)² − 1 − ln r)`, `r = (σp/σq)²`, broadcast.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let cpu = Device::Cpu;
/// let (zero, one) = (Tensor::new(0.0f64, &cpu)?, Tensor::new(1.0f64, &cpu)?);
/// let kl = vi_dist::ops::composed::kl_normal_normal(&one, &one, &zero, &one)?;
/// assert!((kl.to_scalar::<f64>()? - 0.5).abs() < 1e-15);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn kl_normal_normal(
    loc_p: &Tensor,
    scale_p: &Tensor,
    loc_q: &Tensor,
    scale_q: &Tensor,
) -> Result<Tensor> {
    let ratio = scale_p.broadcast_div(scale_q)?.sqr()?;
    let t = loc_p.broadcast_sub(loc_q)?.broadcast_div(scale_q)?.sqr()?;
    let kl = (ratio.broadcast_add(&t)?.broadcast_sub(&ratio.log()?)? - 1.0)?;
    Ok((kl * 0.5)?)
}

pub use super::linalg::{
    cholesky_composed as cholesky, solve_triangular_composed as solve_triangular,
    solve_triangular_transposed_composed as solve_triangular_transposed,
};

pub use super::gamma_grad::{
    composed_reparameterize as reparameterize_standard_gamma,
    host_standard_gamma_grad as standard_gamma_grad,
};
