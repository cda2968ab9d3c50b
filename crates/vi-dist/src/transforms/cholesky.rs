//! Square matrices onto lower Cholesky factors and onto positive-definite matrices.

use candle_core::{D, DType, Tensor};

use super::elementwise::positive_exp;
use super::{Transform, max_finite};
use crate::constraint::Constraint;
use crate::error::{DistError, Result};
use crate::ops::{diagonal, square_size};
use crate::validation::validation_enabled;

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
/// use vi_dist::{Constraint, LowerCholesky, Transform};
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

/// `[.., n] → [.., n, n]` with `d` on the diagonal.
fn diag_embed(d: &Tensor, n: usize) -> Result<Tensor> {
    let eye = Tensor::eye(n, d.dtype(), d.device())?;
    Ok(d.unsqueeze(d.rank())?.broadcast_mul(&eye)?)
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
        let d = positive_exp(&diagonal(x)?)?.minimum(max_finite(x.dtype()))?;
        Ok((strict_lower(x, n)? + diag_embed(&d, n)?)?)
    }

    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        let n = square_size("lower_cholesky", y)?;
        Ok((strict_lower(y, n)? + diag_embed(&diagonal(y)?.log()?, n)?)?)
    }

    fn log_abs_det_jacobian(&self, x: &Tensor, _y: &Tensor) -> Result<Tensor> {
        square_size("lower_cholesky", x)?;
        Ok(diagonal(x)?.sum(D::Minus1)?)
    }
}

/// Unconstrained square matrix → symmetric positive-definite matrix `L Lᵀ` with
/// `L = LowerCholesky(x)`, as `torch.distributions.transforms.PositiveDefiniteTransform`.
///
/// The inverse takes the Cholesky factor, then [`LowerCholesky`]'s inverse; with validation on
/// (see [`set_validation`](crate::set_validation)) it first checks on the host that the input is
/// positive definite, else a non-positive-definite input gives NaN. The log-determinant is that
/// of the bijection from the lower triangle of `x` to the lower triangle of `y` (torch has
/// none): `n ln 2 + Σᵢ (n + 1 − i) xᵢᵢ` for `i = 0 … n − 1` (the factor `2ⁿ ∏ Lᵢᵢ^{n−i}` of
/// `L ↦ L Lᵀ` times the `∏ Lᵢᵢ` of the exp on the diagonal).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use vi_dist::{Constraint, PositiveDefinite, Transform};
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
        let lt = l.t()?.contiguous()?;
        Ok(l.matmul(&lt)?)
    }

    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        square_size("positive_definite", y)?;
        if validation_enabled() && !Constraint::PositiveDefinite.all(y)? {
            return Err(DistError::Transform {
                transform: "positive_definite",
                msg: format!(
                    "inverse of a matrix that is not positive definite (shape {:?})",
                    y.dims()
                ),
            });
        }
        LowerCholesky.inverse(&cholesky(y)?)
    }

    fn log_abs_det_jacobian(&self, x: &Tensor, _y: &Tensor) -> Result<Tensor> {
        let n = square_size("positive_definite", x)?;
        let i = Tensor::arange(0u32, n as u32, x.device())?.to_dtype(x.dtype())?;
        let weights = i.affine(-1.0, n as f64 + 1.0)?;
        let weighted = diagonal(x)?.broadcast_mul(&weights)?.sum(D::Minus1)?;
        Ok(weighted.affine(1.0, n as f64 * std::f64::consts::LN_2)?)
    }
}

/// The lower Cholesky factor of each `[.., n, n]` matrix, column by column from candle ops, so
/// it differentiates through autograd and runs on any device (reads the lower triangle only).
///
/// Column `j` is `v / √v_j` below the diagonal, with `v = A[:, j] − L[:, :j] L[j, :j]ᵀ`.
/// This is the composed fallback until a dedicated `ops::cholesky` kernel exists.
fn cholesky(a: &Tensor) -> Result<Tensor> {
    let n = square_size("cholesky", a)?;
    let r = a.rank();
    let rows = Tensor::arange(0u32, n as u32, a.device())?.unsqueeze(1)?;
    let mut cols: Vec<Tensor> = Vec::with_capacity(n);
    for j in 0..n {
        let mut v = a.narrow(r - 1, j, 1)?;
        if j > 0 {
            let l = Tensor::cat(&cols, r - 1)?;
            let row = l.narrow(r - 2, j, 1)?.t()?.contiguous()?;
            v = (v - l.matmul(&row)?)?;
        }
        let d = v.narrow(r - 2, j, 1)?.sqrt()?;
        let below = rows.ge(j as u32)?.to_dtype(a.dtype())?;
        cols.push(v.broadcast_div(&d)?.broadcast_mul(&below)?);
    }
    if cols.is_empty() {
        return Ok(a.clone());
    }
    Ok(Tensor::cat(&cols, r - 1)?)
}
