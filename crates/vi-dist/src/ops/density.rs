//! The hot distribution math — normal log density and reparameterised draw, Bernoulli log
//! mass from logits, normal‖normal KL — as one call each that takes the fused CPU kernel
//! ([`super::fused`]) where it applies (CPU tensors of one dtype, f32 or f64) and the composed
//! candle expression ([`super::composed`]) everywhere else (other devices and dtypes). Both
//! give the same values and gradients. The `_sum` versions sum over trailing (event) dims:
//! inside the fused op on the CPU, with candle's `sum` after the composed expression
//! elsewhere.

use candle_core::{D, Tensor};

use super::{composed, fused};
use crate::error::{DistError, Result};

/// `t` summed over its trailing `dims` dims (the composed half of the `_sum` ops); an error,
/// as the fused op's, when `t` has fewer dims.
fn sum_trailing(op: &'static str, t: Tensor, dims: usize) -> Result<Tensor> {
    if dims > t.rank() {
        return Err(DistError::Op {
            op,
            msg: format!("cannot sum {dims} trailing dims of shape {:?}", t.dims()),
        });
    }
    let mut t = t;
    for _ in 0..dims {
        t = t.sum(D::Minus1)?;
    }
    Ok(t)
}

/// The normal log density `−½ ((v − μ)/σ)² − ln σ − ½ ln 2π` of `value` under
/// `Normal(loc, scale)`, the three broadcast together: what `Normal`, `LogNormal` and
/// `HalfNormal` evaluate (torch's `Normal.log_prob`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let cpu = Device::Cpu;
/// let v = Tensor::new(&[[0.0f32], [2.0]], &cpu)?; // [2, 1] against a [3] batch
/// let loc = Tensor::new(&[0.0f32, 1.0, 2.0], &cpu)?;
/// let lp = vi_dist::ops::normal_log_prob(&v, &loc, &Tensor::new(1.0f32, &cpu)?)?;
/// assert_eq!(lp.dims(), &[2, 3]);
/// assert!((lp.to_vec2::<f32>()?[1][2] + 0.918_938_5).abs() < 1e-6);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn normal_log_prob(value: &Tensor, loc: &Tensor, scale: &Tensor) -> Result<Tensor> {
    if fused::is_supported(&[value, loc, scale]) {
        fused::normal_log_prob(value, loc, scale)
    } else {
        composed::normal_log_prob(value, loc, scale)
    }
}

/// The reparameterised normal draw `loc + scale · eps` (`eps` standard normal), the three
/// broadcast together: `Normal::rsample` after drawing `eps` on the host.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let cpu = Device::Cpu;
/// let eps = Tensor::new(&[0.0f64, 1.0], &cpu)?;
/// let z = vi_dist::ops::normal_rsample(&Tensor::new(3.0f64, &cpu)?, &Tensor::new(2.0f64, &cpu)?, &eps)?;
/// assert_eq!(z.to_vec1::<f64>()?, vec![3.0, 5.0]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn normal_rsample(loc: &Tensor, scale: &Tensor, eps: &Tensor) -> Result<Tensor> {
    if fused::is_supported(&[loc, scale, eps]) {
        fused::normal_rsample(loc, scale, eps)
    } else {
        composed::normal_rsample(loc, scale, eps)
    }
}

/// The Bernoulli log mass `v · l − softplus(l)` of `value` under log-odds `logits`, broadcast
/// together (torch's `−binary_cross_entropy_with_logits(logits, value)`): `Bernoulli::log_prob`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let cpu = Device::Cpu;
/// let lp = vi_dist::ops::bernoulli_log_prob(&Tensor::new(&[1.0f64], &cpu)?, &Tensor::new(&[2.0f64], &cpu)?)?;
/// let p = 1.0 / (1.0 + (-2.0f64).exp());
/// assert!((lp.to_vec1::<f64>()?[0] - p.ln()).abs() < 1e-15);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn bernoulli_log_prob(value: &Tensor, logits: &Tensor) -> Result<Tensor> {
    if fused::is_supported(&[value, logits]) {
        fused::bernoulli_log_prob(value, logits)
    } else {
        composed::bernoulli_log_prob(value, logits)
    }
}

/// `KL(N(μp, σp²) ‖ N(μq, σq²)) = ½ (r + ((μp − μq)/σq)² − 1 − ln r)`, `r = (σp/σq)²`, the four
/// broadcast together: the Normal‖Normal rule of `vi-kl` (torch's `_kl_normal_normal`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let cpu = Device::Cpu;
/// let (zero, one, two) = (Tensor::new(0.0f64, &cpu)?, Tensor::new(1.0f64, &cpu)?, Tensor::new(2.0f64, &cpu)?);
/// let kl = vi_dist::ops::kl_normal_normal(&zero, &two, &zero, &one)?.to_scalar::<f64>()?;
/// assert!((kl - (0.5 * (4.0 - 1.0) - 2f64.ln())).abs() < 1e-15);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn kl_normal_normal(
    loc_p: &Tensor,
    scale_p: &Tensor,
    loc_q: &Tensor,
    scale_q: &Tensor,
) -> Result<Tensor> {
    if fused::is_supported(&[loc_p, scale_p, loc_q, scale_q]) {
        fused::kl_normal_normal(loc_p, scale_p, loc_q, scale_q)
    } else {
        composed::kl_normal_normal(loc_p, scale_p, loc_q, scale_q)
    }
}

/// [`normal_log_prob`] summed over the trailing `dims` dims of the broadcast shape:
/// `Independent(Normal, dims).log_prob`. On the CPU (f32/f64) the sum runs inside the fused
/// op, accumulated in f64, and its backward is one pass from the summed gradient
/// ([`fused::normal_log_prob_sum`]); elsewhere it is the composed expression then `sum`.
/// An error when `dims` exceeds the broadcast rank.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let cpu = Device::Cpu;
/// let v = Tensor::new(&[[0.0f32, 0.0], [1.0, -1.0]], &cpu)?;
/// let lp = vi_dist::ops::normal_log_prob_sum(&v, &Tensor::new(0.0f32, &cpu)?, &Tensor::new(1.0f32, &cpu)?, 1)?;
/// let half_ln_2pi = 0.918_938_5f32;
/// assert_eq!(lp.dims(), &[2]);
/// assert!((lp.to_vec1::<f32>()?[1] + 1.0 + 2.0 * half_ln_2pi).abs() < 1e-5);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn normal_log_prob_sum(
    value: &Tensor,
    loc: &Tensor,
    scale: &Tensor,
    dims: usize,
) -> Result<Tensor> {
    if fused::is_supported(&[value, loc, scale]) {
        fused::normal_log_prob_sum(value, loc, scale, dims)
    } else {
        let lp = composed::normal_log_prob(value, loc, scale)?;
        sum_trailing("normal_log_prob_sum", lp, dims)
    }
}

/// [`bernoulli_log_prob`] summed over the trailing `dims` dims of the broadcast shape:
/// `Independent(Bernoulli, dims).log_prob` (the VAE's likelihood). Fused with the sum on the
/// CPU ([`fused::bernoulli_log_prob_sum`]), composed then `sum` elsewhere.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let cpu = Device::Cpu;
/// let x = Tensor::new(&[[1.0f64, 0.0, 1.0]], &cpu)?;
/// let logits = Tensor::new(&[0.5f64, -1.0, 2.0], &cpu)?;
/// let lp = vi_dist::ops::bernoulli_log_prob_sum(&x, &logits, 1)?;
/// let each = vi_dist::ops::bernoulli_log_prob(&x, &logits)?.sum_all()?.to_scalar::<f64>()?;
/// assert!((lp.to_vec1::<f64>()?[0] - each).abs() < 1e-14);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn bernoulli_log_prob_sum(value: &Tensor, logits: &Tensor, dims: usize) -> Result<Tensor> {
    if fused::is_supported(&[value, logits]) {
        fused::bernoulli_log_prob_sum(value, logits, dims)
    } else {
        let lp = composed::bernoulli_log_prob(value, logits)?;
        sum_trailing("bernoulli_log_prob_sum", lp, dims)
    }
}

/// [`kl_normal_normal`] summed over the trailing `dims` dims of the broadcast shape: the KL of
/// `Independent(Normal, dims)` to `Independent(Normal, dims)`. Fused with the sum on the CPU
/// ([`fused::kl_normal_normal_sum`]), composed then `sum` elsewhere.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// let cpu = Device::Cpu;
/// let loc = Tensor::ones((4, 3), DType::F32, &cpu)?;
/// let (zero, one) = (Tensor::zeros(3, DType::F32, &cpu)?, Tensor::ones(3, DType::F32, &cpu)?);
/// let kl = vi_dist::ops::kl_normal_normal_sum(&loc, &one, &zero, &one, 1)?;
/// assert_eq!(kl.to_vec1::<f32>()?, vec![1.5; 4]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn kl_normal_normal_sum(
    loc_p: &Tensor,
    scale_p: &Tensor,
    loc_q: &Tensor,
    scale_q: &Tensor,
    dims: usize,
) -> Result<Tensor> {
    if fused::is_supported(&[loc_p, scale_p, loc_q, scale_q]) {
        fused::kl_normal_normal_sum(loc_p, scale_p, loc_q, scale_q, dims)
    } else {
        let kl = composed::kl_normal_normal(loc_p, scale_p, loc_q, scale_q)?;
        sum_trailing("kl_normal_normal_sum", kl, dims)
    }
}
