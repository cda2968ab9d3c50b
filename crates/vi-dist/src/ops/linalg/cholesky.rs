//! The Cholesky factor: the host kernel (a `CustomOp1` with torch's symmetric backward), the
//! path composed from candle ops for other devices, and what is built on the factor
//! (positive-definiteness checks, `precision_to_scale_tril`).

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, D, DType, Layout, Shape, Tensor};

use super::batch::{batch_matmul, flip_matrix};
use super::solve::{solve_triangular_transposed, triangular_inverse};
use super::{check_float, host_f64, square_size, to_storage};
use crate::error::{DistError, Result};

/// The lower Cholesky factor `L` of symmetric positive-definite matrices, `L Lᵀ = A`, as
/// `torch.linalg.cholesky`: `[.., n, n] -> [.., n, n]`. Reads the lower triangle of `A`.
///
/// A matrix without a factor is a [`DistError::Op`] naming the shape and the batch element
/// (never NaN). The backward pass gives torch's symmetric gradient
/// `½ (Φ + Φᵀ)` with `Φ = L⁻ᵀ P(Lᵀ Ḡ) L⁻¹` (`P`: lower triangle, diagonal halved), so
/// gradients w.r.t. a covariance matrix are symmetric.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let a = Tensor::new(&[[4.0f64, 2.0], [2.0, 5.0]], &Device::Cpu)?;
/// let l = vi_dist::ops::cholesky(&a)?;
/// assert_eq!(l.to_vec2::<f64>()?, vec![vec![2.0, 0.0], vec![1.0, 2.0]]);
/// let bad = Tensor::new(&[[1.0f64, 2.0], [2.0, 1.0]], &Device::Cpu)?;
/// assert!(matches!(vi_dist::ops::cholesky(&bad), Err(vi_dist::DistError::Op { .. })));
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn cholesky(a: &Tensor) -> Result<Tensor> {
    let n = square_size("cholesky", a)?;
    check_float("cholesky", a)?;
    if !a.device().is_cpu() {
        return cholesky_composed(a);
    }
    let failed = Arc::new(Mutex::new(None));
    let op = CholeskyOp {
        failed: Arc::clone(&failed),
    };
    match a.contiguous()?.apply_op1(op) {
        Ok(l) => Ok(l),
        Err(e) => match failed.lock().ok().and_then(|f| *f) {
            Some((b, pivot)) => Err(not_pd(a, n, b, Some(pivot))),
            None => Err(e.into()),
        },
    }
}

/// The typed error for the `b`-th matrix of `a` having no Cholesky factor.
fn not_pd(a: &Tensor, n: usize, b: usize, pivot: Option<usize>) -> DistError {
    let batch = &a.dims()[..a.rank() - 2];
    let at = match pivot {
        Some(j) => format!(" (pivot {j} of {n} is not positive)"),
        None => String::new(),
    };
    DistError::Op {
        op: "cholesky",
        msg: format!(
            "matrix {:?} of input shape {:?} is not positive definite{at}",
            batch_index(batch, b),
            a.dims()
        ),
    }
}

/// The multi-index of the `flat`-th matrix of a batch of shape `batch`.
fn batch_index(batch: &[usize], mut flat: usize) -> Vec<usize> {
    let mut idx = vec![0; batch.len()];
    for (i, &d) in batch.iter().enumerate().rev() {
        if d > 0 {
            idx[i] = flat % d;
            flat /= d;
        }
    }
    idx
}

/// [`cholesky`] composed from candle ops (the path for non-CPU devices; runs anywhere, with
/// autograd giving the same symmetric gradient). Checks the pivots on the host.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let a = Tensor::new(&[[4.0f64, 2.0], [2.0, 5.0]], &Device::Cpu)?;
/// let l = vi_dist::ops::composed::cholesky(&a)?;
/// assert_eq!(l.to_vec2::<f64>()?, vec![vec![2.0, 0.0], vec![1.0, 2.0]]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn cholesky_composed(a: &Tensor) -> Result<Tensor> {
    let n = square_size("cholesky", a)?;
    check_float("cholesky", a)?;
    let (l, pivots) = cholesky_columns(a, n)?;
    if n > 0 {
        let p = crate::rng::to_host(&pivots)?;
        let lv = crate::rng::to_host(&l)?;
        for (b, (pm, lm)) in p.chunks(n).zip(lv.chunks(n * n)).enumerate() {
            let bad_pivot = pm.iter().position(|&d| !(d > 0.0 && d.is_finite()));
            if bad_pivot.is_some() || lm.iter().any(|v| !v.is_finite()) {
                return Err(not_pd(a, n, b, bad_pivot));
            }
        }
    }
    Ok(l)
}

/// Lower Cholesky factor of `[.., n, n]`, from the symmetrised input `(A + Aᵀ) / 2` so that
/// autograd gives the symmetric gradient (torch's convention) rather than one confined to the
/// lower triangle. Returns the factor and the pivots `[.., n]` (squared diagonal before the
/// square root) for the caller's positive-definiteness check.
fn cholesky_columns(a: &Tensor, n: usize) -> Result<(Tensor, Tensor)> {
    let a = ((a + a.t()?)? * 0.5)?;
    let (dtype, device) = (a.dtype(), a.device());
    let (rows, cols_dim) = (a.rank() - 2, a.rank() - 1);
    let mut cols: Vec<Tensor> = Vec::with_capacity(n);
    let mut pivots: Vec<Tensor> = Vec::with_capacity(n);
    for j in 0..n {
        let mut v = a.narrow(cols_dim, j, 1)?;
        if j > 0 {
            let prev = Tensor::cat(&cols, cols_dim)?;
            let row_j = prev.narrow(rows, j, 1)?.t()?;
            v = (v - batch_matmul(&prev, &row_j)?)?;
        }
        let d2 = v.narrow(rows, j, 1)?;
        // Rows above j are not part of this column of a lower factor.
        let below: Vec<f64> = (0..n).map(|i| f64::from(u8::from(i >= j))).collect();
        let mask = Tensor::from_vec(below, (n, 1), device)?.to_dtype(dtype)?;
        cols.push(v.broadcast_div(&d2.sqrt()?)?.broadcast_mul(&mask)?);
        pivots.push(d2.squeeze(cols_dim)?);
    }
    if n == 0 {
        let mut pivot_shape = a.dims()[..rows].to_vec();
        pivot_shape.push(0);
        return Ok((a.clone(), Tensor::zeros(pivot_shape, dtype, device)?));
    }
    Ok((
        Tensor::cat(&cols, cols_dim)?,
        Tensor::cat(&pivots, D::Minus1)?,
    ))
}

/// Gradient of `cholesky` w.r.t. `A` given `L` and the gradient `gl` w.r.t. `L`.
///
/// With `dA = dL Lᵀ + L dLᵀ`, `L⁻¹ dL = P(L⁻¹ dA L⁻ᵀ)` (lower triangle, diagonal halved), so
/// `⟨Ḡ, dL⟩ = ⟨L⁻ᵀ P(Lᵀ Ḡ) L⁻¹, dA⟩`; symmetrising gives the gradient on symmetric
/// matrices. The upper triangle of `Ḡ` drops out (`Lᵀ triu₁(Ḡ)` is strictly upper).
pub(crate) fn cholesky_backward(l: &Tensor, gl: &Tensor) -> Result<Tensor> {
    let n = square_size("cholesky backward", l)?;
    let (dtype, device) = (l.dtype(), l.device());
    let m = batch_matmul(&l.t()?, gl)?;
    let half_diag_lower =
        (Tensor::tril2(n, dtype, device)? - (Tensor::eye(n, dtype, device)? * 0.5)?)?;
    let p = m.broadcast_mul(&half_diag_lower)?;
    let s = ((&p + p.t()?)? * 0.5)?;
    let x = solve_triangular_transposed(l, &s, true)?;
    let ga = solve_triangular_transposed(l, &x.t()?, true)?;
    Ok(((&ga + ga.t()?)? * 0.5)?)
}

/// Per matrix, 1 where it is symmetric (to a relative tolerance) and has a Cholesky factor,
/// else 0: shape `[..]`. Reads the matrices back to the host.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let m = Tensor::new(&[[[2.0f64, 1.0], [1.0, 2.0]], [[1.0, 2.0], [2.0, 1.0]]], &Device::Cpu)?;
/// assert_eq!(vi_dist::ops::is_positive_definite(&m)?.to_vec1::<u8>()?, vec![1, 0]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn is_positive_definite(x: &Tensor) -> Result<Tensor> {
    let n = square_size("positive_definite", x)?;
    let batch: Vec<usize> = x.dims()[..x.rank() - 2].to_vec();
    let count = batch.iter().product::<usize>();
    let out = if n == 0 {
        vec![1u8; count]
    } else {
        let data = crate::rng::to_host(x)?;
        let tol = if x.dtype() == DType::F64 { 1e-10 } else { 1e-5 };
        let mut l = vec![0.0; n * n];
        data.chunks(n * n)
            .map(|m| u8::from(is_symmetric(m, n, tol) && cholesky_host(m, n, &mut l).is_ok()))
            .collect()
    };
    Ok(Tensor::from_vec(out, batch, x.device())?)
}

fn is_symmetric(m: &[f64], n: usize, tol: f64) -> bool {
    let scale = m.iter().fold(0.0f64, |a, v| a.max(v.abs())).max(1.0);
    (0..n).all(|i| (0..i).all(|j| (m[i * n + j] - m[j * n + i]).abs() <= tol * scale))
}

/// Lower triangular `L` with `L Lᵀ = P⁻¹` from a precision matrix `P`, without inverting `P`:
/// factor the flipped matrix, `J P J = L_f L_fᵀ`, so `P = U Uᵀ` with `U = J L_f J` upper, and
/// `P⁻¹ = U⁻ᵀ U⁻¹` with `U⁻ᵀ` lower (the approach of torch's `_precision_to_scale_tril`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let p = Tensor::new(&[[4.0f64, 0.0], [0.0, 0.25]], &Device::Cpu)?;
/// let l = vi_dist::ops::precision_to_scale_tril(&p)?;
/// assert_eq!(l.to_vec2::<f64>()?, vec![vec![0.5, 0.0], vec![0.0, 2.0]]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn precision_to_scale_tril(p: &Tensor) -> Result<Tensor> {
    let u = flip_matrix(&cholesky(&flip_matrix(p)?)?)?;
    Ok(triangular_inverse(&u, false)?.t()?)
}

/// Cholesky factor of one row-major `n × n` matrix, reading only its lower triangle (as
/// LAPACK's `potrf`). `Err(j)` when the `j`-th pivot is not positive and finite.
fn cholesky_host(a: &[f64], n: usize, l: &mut [f64]) -> std::result::Result<(), usize> {
    l.fill(0.0);
    for j in 0..n {
        let row_j = j * n;
        let mut d = a[row_j + j];
        for k in 0..j {
            d -= l[row_j + k] * l[row_j + k];
        }
        if !(d > 0.0 && d.is_finite()) {
            return Err(j);
        }
        let d = d.sqrt();
        l[row_j + j] = d;
        for i in j + 1..n {
            let row_i = i * n;
            let mut s = a[row_i + j];
            for k in 0..j {
                s -= l[row_i + k] * l[row_j + k];
            }
            let v = s / d;
            if !v.is_finite() {
                return Err(j);
            }
            l[row_i + j] = v;
        }
    }
    Ok(())
}

/// Batched Cholesky as a `CustomOp1`. A matrix without a factor makes `cpu_fwd` fail and
/// records its batch index and pivot in `failed` (candle's error cannot carry our typed
/// error).
struct CholeskyOp {
    failed: Arc<Mutex<Option<(usize, usize)>>>,
}

impl CustomOp1 for CholeskyOp {
    fn name(&self) -> &'static str {
        "cholesky"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (a, dtype) = host_f64("cholesky", s, l)?;
        let n = l.dims().last().copied().unwrap_or(0);
        let mut out = vec![0.0; a.len()];
        if n > 0 {
            for (b, (am, lm)) in a.chunks(n * n).zip(out.chunks_mut(n * n)).enumerate() {
                if let Err(pivot) = cholesky_host(am, n, lm) {
                    if let Ok(mut f) = self.failed.lock() {
                        *f = Some((b, pivot));
                    }
                    candle_core::bail!(
                        "cholesky: matrix {b} of the batch is not positive definite"
                    );
                }
            }
        }
        Ok((to_storage(out, dtype), l.shape().clone()))
    }

    fn bwd(&self, _a: &Tensor, l: &Tensor, gl: &Tensor) -> candle_core::Result<Option<Tensor>> {
        cholesky_backward(l, gl)
            .map(Some)
            .map_err(candle_core::Error::wrap)
    }
}
