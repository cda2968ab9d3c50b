//! The hot distribution math — normal log density and reparameterised draw, Bernoulli log
//! mass from logits, normal‖normal KL — as one call each that takes the fused CPU kernel
//! ([`super::fused`]) where it applies (CPU tensors of one dtype, f32 or f64) and the composed
//! candle expression ([`super::composed`]) everywhere else (other devices and dtypes). Both
//! give the same values and gradients.

use candle_core::Tensor;

use super::{composed, fused};
use crate::error::Result;

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
