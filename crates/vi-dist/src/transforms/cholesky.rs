//! Square matrices onto lower Cholesky factors and onto positive-definite matrices.

use candle_core::{D, DType, Tensor};

use super::elementwise::positive_exp;
use super::{Transform, is};
use crate::constraint::Constraint;
use crate::error::Result;
use crate::ops::{batch_matmul, cholesky, diag_embed, diagonal, square_size};

/// Unconstrained square matrix → lower-triangular matrix with positive diagonal, as
/// `torch.distributions.transforms.LowerCholeskyTransform`: the strict lower part is kept,
/// the diagonal exponentiated and the strict upper part dropped.
///
/// The map is a bijection between lower-triangular matrices; on full matrices it ignores the
/// upper part, so `inverse` returns a lower-triangular matrix. The log-determinant is that of
/// the bijection on the lower triangle (torch has none): `Σᵢ xᵢᵢ`, shape `x.shape[..rank−2]`.
/// The diagonal is clamped to the dtype's finite positive range.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::transforms::{LowerCholesky};
/// use vi_dist::{Constraint, Transform};
/// let x = Tensor::new(&[[0.0f64, 5.0], [2.0, 1.0]], &Device::Cpu)?;
/// let l = LowerCholesky.forward(&x)?;
/// assert_eq!(l.to_vec2::<f64>()?, vec![vec![1.0, 0.0], vec![2.0, 1f64.exp()]]);
/// assert!(Constraint::LowerCholesky.all(&l)?);
/// assert_eq!(LowerCholesky.log_abs_det_jacobian(&x, &l)?.to_scalar::<f64>()?, 1.0);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct LowerCholesky;

/// The strict lower triangle of each matrix (zeros elsewhere), differentiable.
fn strict_lower(x: &Tensor, n: usize) -> Result<Tensor> {
    let mask = (Tensor::tril2(n, DType::F32, x.device())?
        - Tensor::eye(n, DType::F32, x.device())?)?
    .ne(0.0)?
    .broadcast_as(x.shape())?;
    Ok(mask.where_cond(x, &x.zeros_like()?)?)
}

impl Transform for LowerCholesky {
    fn name(&self) -> &'static str {
        "lower_cholesky"
    }

    fn domain(&self) -> Constraint {
        Constraint::Real.independent(2)
    }

    fn codomain(&self) -> Constraint {
        Constraint::LowerCholesky
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let n = square_size("lower_cholesky", x)?;
        let d = positive_exp(&diagonal(x)?)?.minimum(crate::finfo::max(x.dtype()))?;
        Ok((strict_lower(x, n)? + diag_embed(&d)?)?)
    }

    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        let n = square_size("lower_cholesky", y)?;
        Ok((strict_lower(y, n)? + diag_embed(&diagonal(y)?.log()?)?)?)
    }

    fn log_abs_det_jacobian(&self, x: &Tensor, _y: &Tensor) -> Result<Tensor> {
        square_size("lower_cholesky", x)?;
        Ok(diagonal(x)?.sum(D::Minus1)?)
    }

    fn same_as(&self, other: &dyn Transform) -> bool {
        is::<Self>(other)
    }

    fn injective(&self) -> bool {
        false
    }
}

/// Unconstrained square matrix → symmetric positive-definite matrix `L Lᵀ` with
/// `L = LowerCholesky(x)`, as `torch.distributions.transforms.PositiveDefiniteTransform`.
///
/// The inverse takes the Cholesky factor ([`ops::cholesky`](crate::ops::cholesky), whose
/// [`DistError::Op`](crate::DistError::Op) names a matrix that is not positive definite), then
/// [`LowerCholesky`]'s inverse. The log-determinant is that
/// of the bijection from the lower triangle of `x` to the lower triangle of `y` (torch has
/// none): `n ln 2 + Σᵢ (n + 1 − i) xᵢᵢ` for `i = 0 … n − 1` (the factor `2ⁿ ∏ Lᵢᵢ^{n−i}` of
/// `L ↦ L Lᵀ` times the `∏ Lᵢᵢ` of the exp on the diagonal).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use vi_dist::transforms::{PositiveDefinite};
/// use vi_dist::{Constraint, Transform};
/// let x = Tensor::new(&[[0.0f64, 0.0], [1.0, 0.0]], &Device::Cpu)?;
/// let y = PositiveDefinite.forward(&x)?;
/// assert_eq!(y.to_vec2::<f64>()?, vec![vec![1.0, 1.0], vec![1.0, 2.0]]);
/// assert!(Constraint::PositiveDefinite.all(&y)?);
/// let back = PositiveDefinite.inverse(&y)?.to_vec2::<f64>()?;
/// assert!((back[1][0] - 1.0).abs() < 1e-12 && back[1][1].abs() < 1e-12);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct PositiveDefinite;

impl Transform for PositiveDefinite {
    fn name(&self) -> &'static str {
        "positive_definite"
    }

    fn domain(&self) -> Constraint {
        Constraint::Real.independent(2)
    }

    fn codomain(&self) -> Constraint {
        Constraint::PositiveDefinite
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let l = LowerCholesky.forward(x)?;
        batch_matmul(&l, &l.t()?)
    }

    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        LowerCholesky.inverse(&cholesky(y)?)
    }

    fn log_abs_det_jacobian(&self, x: &Tensor, _y: &Tensor) -> Result<Tensor> {
        let n = square_size("positive_definite", x)?;
        let i = Tensor::arange(0u32, n as u32, x.device())?.to_dtype(x.dtype())?;
        let weights = i.affine(-1.0, n as f64 + 1.0)?;
        let weighted = diagonal(x)?.broadcast_mul(&weights)?.sum(D::Minus1)?;
        Ok(weighted.affine(1.0, n as f64 * std::f64::consts::LN_2)?)
    }

    fn same_as(&self, other: &dyn Transform) -> bool {
        is::<Self>(other)
    }

    fn injective(&self) -> bool {
        false
    }
}
