//! Scalar special functions candle lacks: `lgamma`, `digamma`, `trigamma`, `log1p`, `expm1`,
//! `softplus`, `sigmoid`, `xlogy`, as differentiable tensor ops.
//!
//! On the CPU each is one host kernel (`libm`, `statrs`, std; `softplus` and `sigmoid` the
//! vectorised fused kernels of [`super::fused`]) with a backward pass; on other devices each
//! is composed from candle ops so it runs unchanged there.

use candle_core::Tensor;

use super::elementwise::Elementwise;
use crate::broadcast::{broadcast_shapes, full_like};
use crate::error::{DistError, Result};

fn on_cpu(x: &Tensor) -> bool {
    x.device().is_cpu()
}

// ---------- host kernels ----------

fn lgamma_f64(x: f64) -> f64 {
    libm::lgamma(x)
}

fn digamma_f64(x: f64) -> f64 {
    statrs::function::gamma::digamma(x)
}

/// Trigamma ψ′(x): recurrence up to x ≥ 10 (so the first omitted term, B₁₄/x¹⁵, is below
/// 1e-15), then the asymptotic series
/// 1/x + 1/(2x²) + Σ B₂ₖ / x^{2k+1}; reflection for negative non-integers.
pub(crate) fn trigamma_f64(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 && x == x.floor() {
        return f64::INFINITY;
    }
    if x < 0.0 {
        // ψ'(1 - x) + ψ'(x) = π² / sin²(πx)
        let s = (std::f64::consts::PI * x).sin();
        return -trigamma_f64(1.0 - x) + std::f64::consts::PI.powi(2) / (s * s);
    }
    let mut x = x;
    let mut acc = 0.0;
    while x < 10.0 {
        acc += 1.0 / (x * x);
        x += 1.0;
    }
    let z = 1.0 / (x * x);
    // Bernoulli numbers B2..B12 over x^(2k+1)
    let series = z
        * (1.0 / 6.0
            - z * (1.0 / 30.0
                - z * (1.0 / 42.0 - z * (1.0 / 30.0 - z * (5.0 / 66.0 - z * 691.0 / 2730.0)))));
    acc + 1.0 / x + z / 2.0 + series / x
}

// ---------- the ops ----------

const LGAMMA: Elementwise = Elementwise {
    name: "lgamma",
    f64_fn: lgamma_f64,
    f32_fn: |x| lgamma_f64(x as f64) as f32,
    derivative: Some(|x, _| digamma(x).map_err(candle_core::Error::wrap)),
};

const DIGAMMA: Elementwise = Elementwise {
    name: "digamma",
    f64_fn: digamma_f64,
    f32_fn: |x| digamma_f64(x as f64) as f32,
    derivative: Some(|x, _| trigamma(x).map_err(candle_core::Error::wrap)),
};

const TRIGAMMA: Elementwise = Elementwise {
    name: "trigamma",
    f64_fn: trigamma_f64,
    f32_fn: |x| trigamma_f64(x as f64) as f32,
    derivative: None,
};

const LOG1P: Elementwise = Elementwise {
    name: "log1p",
    f64_fn: f64::ln_1p,
    f32_fn: f32::ln_1p,
    derivative: Some(|x, _| (x + 1.0)?.recip()),
};

const EXPM1: Elementwise = Elementwise {
    name: "expm1",
    f64_fn: f64::exp_m1,
    f32_fn: f32::exp_m1,
    derivative: Some(|_, y| y + 1.0),
};

/// `ln Γ(x)`, elementwise, differentiable (`d/dx = digamma`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[1.0f64, 5.0], &Device::Cpu)?;
/// let y = vi_dist::ops::lgamma(&x)?.to_vec1::<f64>()?;
/// assert!((y[1] - 24f64.ln()).abs() < 1e-12);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn lgamma(x: &Tensor) -> Result<Tensor> {
    if on_cpu(x) {
        Ok(x.apply_op1(LGAMMA)?)
    } else {
        super::composed::lgamma(x)
    }
}

/// The digamma function ψ(x) = d/dx ln Γ(x), elementwise, differentiable (`d/dx = trigamma`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[1.0f64], &Device::Cpu)?;
/// let y = vi_dist::ops::digamma(&x)?.to_vec1::<f64>()?;
/// assert!((y[0] + 0.5772156649015329).abs() < 1e-12); // -γ
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn digamma(x: &Tensor) -> Result<Tensor> {
    if on_cpu(x) {
        Ok(x.apply_op1(DIGAMMA)?)
    } else {
        super::composed::digamma(x)
    }
}

/// The trigamma function ψ'(x), elementwise (no backward: its derivative is not needed by any
/// distribution here).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[1.0f64], &Device::Cpu)?;
/// let y = vi_dist::ops::trigamma(&x)?.to_vec1::<f64>()?;
/// assert!((y[0] - std::f64::consts::PI.powi(2) / 6.0).abs() < 1e-12);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn trigamma(x: &Tensor) -> Result<Tensor> {
    if on_cpu(x) {
        Ok(x.apply_op1(TRIGAMMA)?)
    } else {
        super::composed::trigamma(x)
    }
}

/// `ln(1 + x)`, accurate for small `x`, differentiable.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[1e-20f64], &Device::Cpu)?;
/// assert_eq!(vi_dist::ops::log1p(&x)?.to_vec1::<f64>()?, vec![1e-20]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn log1p(x: &Tensor) -> Result<Tensor> {
    if on_cpu(x) {
        Ok(x.apply_op1(LOG1P)?)
    } else {
        super::composed::log1p(x)
    }
}

/// `eˣ − 1`, accurate for small `x`, differentiable.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[1e-20f64], &Device::Cpu)?;
/// assert_eq!(vi_dist::ops::expm1(&x)?.to_vec1::<f64>()?, vec![1e-20]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn expm1(x: &Tensor) -> Result<Tensor> {
    if on_cpu(x) {
        Ok(x.apply_op1(EXPM1)?)
    } else {
        super::composed::expm1(x)
    }
}

/// `ln(1 + eˣ)` without overflow, differentiable (`d/dx = sigmoid`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[1000.0f64, -1000.0], &Device::Cpu)?;
/// assert_eq!(vi_dist::ops::softplus(&x)?.to_vec1::<f64>()?, vec![1000.0, 0.0]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    if super::fused::is_supported(&[x]) {
        super::fused::softplus(x)
    } else {
        super::composed::softplus(x)
    }
}

/// The logistic sigmoid `1 / (1 + e⁻ˣ)`, stable for large `|x|`, differentiable.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[0.0f64], &Device::Cpu)?;
/// assert_eq!(vi_dist::ops::sigmoid(&x)?.to_vec1::<f64>()?, vec![0.5]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    if super::fused::is_supported(&[x]) {
        super::fused::sigmoid(x)
    } else {
        super::composed::sigmoid(x)
    }
}

/// `x · ln y` with `0 · ln 0 = 0`, elementwise with `x` and `y` broadcast, as `torch.xlogy`:
/// the `(α − 1) ln x` terms of Gamma, Beta and Dirichlet and the `k ln(rate)` of Poisson.
/// Composed from candle ops (every device).
///
/// Where `y = 0` the value is a constant (`0` if `x = 0`, else `∓∞`) and no gradient flows;
/// elsewhere the gradient is `ln y` for `x` and `x / y` for `y` (torch gives `x` no gradient
/// where `x = 0`; here it gets the true `ln y`). Both branches of every `where` are finite, so
/// no `0 · ∞` reaches the gradients.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[0.0f64, 2.0, 2.0], &Device::Cpu)?;
/// let y = Tensor::new(&[0.0f64, 0.0, 3.0], &Device::Cpu)?;
/// let v = vi_dist::ops::xlogy(&x, &y)?.to_vec1::<f64>()?;
/// assert_eq!(v[..2], [0.0, f64::NEG_INFINITY]);
/// assert!((v[2] - 2.0 * 3f64.ln()).abs() < 1e-15);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn xlogy(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let shape = broadcast_shapes(&[x.dims(), y.dims()]).ok_or_else(|| DistError::Op {
        op: "xlogy",
        msg: format!("shapes {:?} and {:?} do not broadcast", x.dims(), y.dims()),
    })?;
    let x = x.broadcast_as(shape.as_slice())?;
    let y = y.broadcast_as(shape.as_slice())?;
    let y_zero = y.eq(0.0)?;
    // ln of y with zeros replaced by 1, so the selected branch is finite everywhere.
    let ln_y = y_zero.where_cond(&full_like(1.0, &y)?, &y)?.log()?;
    let main = (&x * ln_y)?;
    let xd = x.detach();
    let edge = xd.eq(0.0)?.where_cond(
        &full_like(0.0, &xd)?,
        &xd.gt(0.0)?.where_cond(
            &full_like(f64::NEG_INFINITY, &xd)?,
            &full_like(f64::INFINITY, &xd)?,
        )?,
    )?;
    Ok(y_zero.where_cond(&edge, &main)?)
}
