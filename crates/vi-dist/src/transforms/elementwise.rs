//! Elementwise transforms of the real line: identity, exp, sigmoid, softplus.

use candle_core::backend::BackendStorage;
use candle_core::cpu_backend::{binary_map, unary_map};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};

use super::{Transform, is};
use crate::constraint::Constraint;
use crate::error::Result;
use crate::finfo::{eps, tiny};
use crate::ops;

/// `y = x` on the reals, as `torch.distributions.transforms.identity_transform`
/// (what [`transform_to`](crate::transform_to) gives for `real`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::transforms::{Identity};
/// use vi_dist::{Transform};
/// let x = Tensor::new(&[1.5f64], &Device::Cpu)?;
/// assert_eq!(Identity.forward(&x)?.to_vec1::<f64>()?, vec![1.5]);
/// assert_eq!(Identity.log_abs_det_jacobian(&x, &x)?.to_vec1::<f64>()?, vec![0.0]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

impl Transform for Identity {
    fn name(&self) -> &'static str {
        "identity"
    }

    fn domain(&self) -> Constraint {
        Constraint::Real
    }

    fn codomain(&self) -> Constraint {
        Constraint::Real
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.clone())
    }

    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        Ok(y.clone())
    }

    fn log_abs_det_jacobian(&self, x: &Tensor, _y: &Tensor) -> Result<Tensor> {
        Ok(x.zeros_like()?)
    }

    fn same_as(&self, other: &dyn Transform) -> bool {
        is::<Self>(other)
    }
}

/// `y = eˣ`, real → positive, as `torch.distributions.transforms.ExpTransform`;
/// `log |dy/dx| = x`.
///
/// The output is clamped below at the dtype's smallest normal number, so a very negative `x`
/// (below about −87 in f32) still gives a positive value instead of underflowing to 0.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::transforms::{Exp};
/// use vi_dist::{Transform};
/// let x = Tensor::new(&[0.0f32, -1000.0], &Device::Cpu)?;
/// let y = Exp.forward(&x)?;
/// assert_eq!(y.to_vec1::<f32>()?[0], 1.0);
/// assert!(y.to_vec1::<f32>()?[1] > 0.0);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Exp;

/// `eˣ` clamped below at the dtype's smallest normal number (gradient `eˣ` above the clamp,
/// 0 at and below it). On the CPU in f32/f64 one host kernel with a one-pass backward (the
/// hot path of every positive parameter); elsewhere `exp` then `maximum`.
pub(crate) fn positive_exp(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        return Ok(x.apply_op1(PositiveExp)?);
    }
    Ok(x.exp()?.maximum(tiny(x.dtype()))?)
}

/// The host kernel of [`positive_exp`]: `y = eˣ`, raised to `tiny` where smaller (a NaN stays
/// NaN, as candle's `maximum` keeps its left operand then).
struct PositiveExp;

impl CustomOp1 for PositiveExp {
    fn name(&self) -> &'static str {
        "positive_exp"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = match s {
            CpuStorage::F64(v) => {
                let t = f64::MIN_POSITIVE;
                CpuStorage::F64(unary_map(v, l, |x: f64| {
                    let e = x.exp();
                    if e < t { t } else { e }
                }))
            }
            CpuStorage::F32(v) => {
                let t = f32::MIN_POSITIVE;
                CpuStorage::F32(unary_map(v, l, |x: f32| {
                    let e = x.exp();
                    if e < t { t } else { e }
                }))
            }
            other => candle_core::bail!("positive_exp: no kernel for {:?}", other.dtype()),
        };
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.apply_op2_no_bwd(y, &PositiveExpGrad)?))
    }
}

/// `g · y`, or 0 where `y ≤ tiny`: one pass over contiguous data, candle's strided map
/// otherwise.
fn exp_grad<T>(g: &[T], gl: &Layout, y: &[T], yl: &Layout, tiny: T, zero: T) -> Vec<T>
where
    T: Copy + PartialOrd + std::ops::Mul<Output = T>,
{
    // A select then a product (not a branch around the product), so the loop vectorises.
    let f = |g: T, y: T| g * if y <= tiny { zero } else { y };
    match (gl.contiguous_offsets(), yl.contiguous_offsets()) {
        (Some((g0, g1)), Some((y0, y1))) => {
            let (g, y) = (&g[g0..g1], &y[y0..y1]);
            let mut out = Vec::with_capacity(g.len());
            out.extend(g.iter().zip(y).map(|(&g, &y)| f(g, y)));
            out
        }
        _ => binary_map(gl, yl, g, y, f),
    }
}

/// The backward of [`PositiveExp`] from its output: `g · y` where `y` is above the clamp,
/// 0 where it was clamped.
struct PositiveExpGrad;

impl CustomOp2 for PositiveExpGrad {
    fn name(&self) -> &'static str {
        "positive_exp_grad"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = match (gs, ys) {
            (CpuStorage::F64(g), CpuStorage::F64(y)) => {
                CpuStorage::F64(exp_grad(g, gl, y, yl, f64::MIN_POSITIVE, 0.0))
            }
            (CpuStorage::F32(g), CpuStorage::F32(y)) => {
                CpuStorage::F32(exp_grad(g, gl, y, yl, f32::MIN_POSITIVE, 0.0))
            }
            (g, y) => candle_core::bail!(
                "positive_exp_grad: no kernel for {:?} and {:?}",
                g.dtype(),
                y.dtype()
            ),
        };
        Ok((out, yl.shape().clone()))
    }
}

impl Transform for Exp {
    fn name(&self) -> &'static str {
        "exp"
    }

    fn domain(&self) -> Constraint {
        Constraint::Real
    }

    fn codomain(&self) -> Constraint {
        Constraint::Positive
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        positive_exp(x)
    }

    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        Ok(y.log()?)
    }

    fn log_abs_det_jacobian(&self, x: &Tensor, _y: &Tensor) -> Result<Tensor> {
        Ok(x.clone())
    }

    fn same_as(&self, other: &dyn Transform) -> bool {
        is::<Self>(other)
    }
}

/// `y = 1 / (1 + e⁻ˣ)`, real → unit interval, as
/// `torch.distributions.transforms.SigmoidTransform`; `log |dy/dx| = −softplus(−x) − softplus(x)`.
///
/// As torch (`clamp_probs`), the output is clamped to `[eps, 1 − eps]` with `eps` the dtype's
/// machine epsilon, so it stays strictly inside (0, 1) in finite precision and its logit is
/// finite; the inverse clamps its input to `[tiny, 1 − eps]` likewise.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::transforms::{Sigmoid};
/// use vi_dist::{Transform};
/// let x = Tensor::new(&[0.0f64, 1e4], &Device::Cpu)?;
/// let y = Sigmoid.forward(&x)?.to_vec1::<f64>()?;
/// assert_eq!(y[0], 0.5);
/// assert!(y[1] < 1.0);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Sigmoid;

impl Transform for Sigmoid {
    fn name(&self) -> &'static str {
        "sigmoid"
    }

    fn domain(&self) -> Constraint {
        Constraint::Real
    }

    fn codomain(&self) -> Constraint {
        Constraint::UnitInterval
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::probs::clamp_probs(&ops::sigmoid(x)?)
    }

    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        let y = y.clamp(tiny(y.dtype()), 1.0 - eps(y.dtype()))?;
        Ok((y.log()? - ops::log1p(&y.neg()?)?)?)
    }

    fn log_abs_det_jacobian(&self, x: &Tensor, _y: &Tensor) -> Result<Tensor> {
        Ok((ops::softplus(&x.neg()?)? + ops::softplus(x)?)?.neg()?)
    }

    fn same_as(&self, other: &dyn Transform) -> bool {
        is::<Self>(other)
    }
}

/// `y = ln(1 + eˣ)`, real → positive, as `torch.distributions.transforms.SoftplusTransform`;
/// inverse `y + ln(−expm1(−y))`, `log |dy/dx| = −softplus(−x)`.
///
/// The output is clamped below at the dtype's smallest normal number, as [`Exp`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::transforms::{Softplus};
/// use vi_dist::{Transform};
/// let x = Tensor::new(&[0.0f64], &Device::Cpu)?;
/// let y = Softplus.forward(&x)?;
/// assert!((y.to_vec1::<f64>()?[0] - 2f64.ln()).abs() < 1e-15);
/// assert!(Softplus.inverse(&y)?.to_vec1::<f64>()?[0].abs() < 1e-15);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Softplus;

impl Transform for Softplus {
    fn name(&self) -> &'static str {
        "softplus"
    }

    fn domain(&self) -> Constraint {
        Constraint::Real
    }

    fn codomain(&self) -> Constraint {
        Constraint::Positive
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(ops::softplus(x)?.maximum(tiny(x.dtype()))?)
    }

    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        let minus_expm1 = ops::expm1(&y.neg()?)?.neg()?;
        Ok((y + minus_expm1.log()?)?)
    }

    fn log_abs_det_jacobian(&self, x: &Tensor, _y: &Tensor) -> Result<Tensor> {
        Ok(ops::softplus(&x.neg()?)?.neg()?)
    }

    fn same_as(&self, other: &dyn Transform) -> bool {
        is::<Self>(other)
    }
}
