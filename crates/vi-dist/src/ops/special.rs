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

/// `x · ln y` with `0 · ln y = 0` for every `y` (0 and `+∞` included; NaN stays NaN),
/// elementwise with `x` and `y` broadcast, as `torch.xlogy`. Composed from candle ops (every
/// device).
///
/// Gradients are `ln y` for `x` and `x / y` for `y` wherever the value is finite (so `x = 0`
/// gets the true `ln y`, and along `x = 0` the gradient in `y` is 0). Where the value is
/// infinite (`y = 0`, `x ≠ 0`) no gradient flows: both are 0, never `∞` or NaN, so a KL that is
/// `+∞` somewhere in a batch keeps finite gradients elsewhere (torch gives `−∞` and `±∞` there;
/// the log densities of this crate follow torch, see [`xlogy_torch_grad`]).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[0.0f64, 2.0, 2.0, 0.0], &Device::Cpu)?;
/// let y = Tensor::new(&[0.0f64, 0.0, 3.0, f64::INFINITY], &Device::Cpu)?;
/// let v = vi_dist::ops::xlogy(&x, &y)?.to_vec1::<f64>()?;
/// assert_eq!(v[..2], [0.0, f64::NEG_INFINITY]);
/// assert!((v[2] - 2.0 * 3f64.ln()).abs() < 1e-15);
/// assert_eq!(v[3], 0.0);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn xlogy(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let (x, y) = broadcast_pair("xlogy", x, y)?;
    finite_grad(&x, &y, 0.0, xlogy_torch_grad)
}

/// [`xlogy`] with torch's gradients where the value is infinite: at `y = 0`, `x ≠ 0` the
/// gradient in `x` is `−∞` and in `y` is `x / 0 = ±∞`. Where `x = 0` and `y = 0` both are 0
/// (torch gives `y` the gradient `0 / 0 = NaN`, but `x · ln y` is identically 0 along `x = 0`:
/// Poisson with rate 0 at the value 0 has `d log p / d rate = −1`). The `(α − 1) ln x` terms
/// of Gamma, Beta and Dirichlet and the `k ln(rate)` of Poisson.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// let x = Tensor::new(&[0.0f64, 2.0, 2.0, 0.0], &Device::Cpu)?;
/// let y = Var::new(&[0.0f64, 0.0, 3.0, 5.0], &Device::Cpu)?;
/// let v = vi_dist::ops::xlogy_torch_grad(&x, y.as_tensor())?;
/// assert_eq!(v.to_vec1::<f64>()?[..2], [0.0, f64::NEG_INFINITY]);
/// let g = v.sum_all()?.backward()?;
/// let gy = g.get(y.as_tensor()).unwrap().to_vec1::<f64>()?;
/// assert_eq!(gy, vec![0.0, f64::INFINITY, 2.0 / 3.0, 0.0]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn xlogy_torch_grad(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let (x, y) = broadcast_pair("xlogy", x, y)?;
    // Where x = 0 and ln y is infinite, take ln 1 instead: the product is 0 and both
    // gradients 0, with no 0 · ∞ in the value or in the backward pass.
    let edge = (x.eq(0.0)? * (y.eq(0.0)? + y.eq(f64::INFINITY)?)?)?;
    let ln_y = edge.where_cond(&full_like(1.0, &y)?, &y)?.log()?;
    Ok((x * ln_y)?)
}

/// `x · ln(1 + y)` with `0 · ln(1 + y) = 0` for every `y` (`−1` and `+∞` included; NaN stays
/// NaN), elementwise with `x` and `y` broadcast, as `torch.special.xlog1py`: the
/// `(n − k) ln(1 − p)` of the discrete families given by probabilities, accurate for small `p`.
/// Gradients `ln(1 + y)` for `x` and `x / (1 + y)` for `y`, none where the value is infinite
/// (`y = −1`, `x ≠ 0`), as [`xlogy`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[0.0f64, 3.0, 2.0], &Device::Cpu)?;
/// let y = Tensor::new(&[-1.0f64, -1.0, -1e-20], &Device::Cpu)?;
/// let v = vi_dist::ops::xlog1py(&x, &y)?.to_vec1::<f64>()?;
/// assert_eq!(v, vec![0.0, f64::NEG_INFINITY, -2e-20]); // ln(1 − 1e-20) kept
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn xlog1py(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let (x, y) = broadcast_pair("xlog1py", x, y)?;
    finite_grad(&x, &y, -1.0, |x, y| {
        let edge = (x.eq(0.0)? * (y.eq(-1.0)? + y.eq(f64::INFINITY)?)?)?;
        let ln_1py = log1p(&edge.where_cond(&full_like(0.0, y)?, y)?)?;
        Ok((x * ln_1py)?)
    })
}

/// `f(x, y)` (an `x · ln(y − pole)`-like product, infinite where `y = pole` and `x ≠ 0`) with
/// no gradient flowing where it is infinite: there `f` sees `y` moved off the pole (to
/// `pole + 1`) and the result is the constant `∓∞` (by the sign of `x`), so no `0 · ∞`
/// reaches the backward pass.
fn finite_grad(
    x: &Tensor,
    y: &Tensor,
    pole: f64,
    f: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let infinite = (y.eq(pole)? * x.ne(0.0)?)?;
    let y_off = infinite.where_cond(&full_like(pole + 1.0, y)?, y)?;
    let value = f(x, &y_off)?;
    let xd = x.detach();
    let edge = xd.gt(0.0)?.where_cond(
        &full_like(f64::NEG_INFINITY, &xd)?,
        &full_like(f64::INFINITY, &xd)?,
    )?;
    Ok(infinite.where_cond(&edge, &value)?)
}

/// `x` and `y` broadcast to their common shape.
fn broadcast_pair(op: &'static str, x: &Tensor, y: &Tensor) -> Result<(Tensor, Tensor)> {
    let shape = broadcast_shapes(&[x.dims(), y.dims()]).ok_or_else(|| DistError::Op {
        op,
        msg: format!("shapes {:?} and {:?} do not broadcast", x.dims(), y.dims()),
    })?;
    Ok((
        x.broadcast_as(shape.as_slice())?,
        y.broadcast_as(shape.as_slice())?,
    ))
}
