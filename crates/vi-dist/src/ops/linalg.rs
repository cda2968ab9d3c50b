//! Matrix ops on batched `[.., n, n]` tensors: diagonal, Cholesky, triangular solves and what
//! the multivariate normal families build from them.
//!
//! `cholesky` and the triangular solves run as host kernels ([`kernels`]) on the CPU, with
//! backward passes; on other devices they are composed from candle ops ([`composed`]), so
//! they run unchanged there. Everything else here is composed from those and candle ops.

mod composed;
mod kernels;

use std::sync::{Arc, Mutex};

use candle_core::{D, DType, Tensor};

use self::kernels::{CholeskyOp, TriSolveOp};
use crate::broadcast::broadcast_shapes;
use crate::error::{DistError, Result};

/// The square size `n` of a `[.., n, n]` tensor, or an error naming `op` and the shape.
pub(crate) fn square_size(op: &'static str, x: &Tensor) -> Result<usize> {
    let dims = x.dims();
    let r = dims.len();
    if r < 2 || dims[r - 1] != dims[r - 2] {
        return Err(DistError::Op {
            op,
            msg: format!("expected square matrices [.., n, n], got shape {dims:?}"),
        });
    }
    Ok(dims[r - 1])
}

/// An error unless `x` is f32 or f64 (the dtypes the kernels and tolerances are made for).
fn check_float(op: &'static str, x: &Tensor) -> Result<()> {
    match x.dtype() {
        DType::F32 | DType::F64 => Ok(()),
        other => Err(DistError::Op {
            op,
            msg: format!("needs f32 or f64, got {other:?} (shape {:?})", x.dims()),
        }),
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

/// The diagonal of each matrix: `[.., n, n] -> [.., n]`, differentiable.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let m = Tensor::new(&[[1.0f64, 2.0], [3.0, 4.0]], &Device::Cpu)?;
/// assert_eq!(vi_dist::ops::diagonal(&m)?.to_vec1::<f64>()?, vec![1.0, 4.0]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn diagonal(x: &Tensor) -> Result<Tensor> {
    let n = square_size("diagonal", x)?;
    let eye = Tensor::eye(n, x.dtype(), x.device())?;
    Ok(x.broadcast_mul(&eye)?.sum(D::Minus1)?)
}

/// Diagonal matrices from vectors: `[.., n] -> [.., n, n]`, differentiable (torch's
/// `diag_embed`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let v = Tensor::new(&[1.0f64, 2.0], &Device::Cpu)?;
/// let m = vi_dist::ops::diag_embed(&v)?;
/// assert_eq!(m.to_vec2::<f64>()?, vec![vec![1.0, 0.0], vec![0.0, 2.0]]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn diag_embed(v: &Tensor) -> Result<Tensor> {
    let Some(&n) = v.dims().last() else {
        return Err(DistError::Op {
            op: "diag_embed",
            msg: "needs vectors [.., n], got a scalar".to_string(),
        });
    };
    let eye = Tensor::eye(n, v.dtype(), v.device())?;
    Ok(v.unsqueeze(D::Minus1)?.broadcast_mul(&eye)?)
}

/// The lower triangle of each matrix (zeros above the diagonal), differentiable (torch's
/// `tril`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let m = Tensor::new(&[[1.0f64, 2.0], [3.0, 4.0]], &Device::Cpu)?;
/// assert_eq!(vi_dist::ops::tril(&m)?.to_vec2::<f64>()?, vec![vec![1.0, 0.0], vec![3.0, 4.0]]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn tril(x: &Tensor) -> Result<Tensor> {
    let n = square_size("tril", x)?;
    Ok(x.broadcast_mul(&Tensor::tril2(n, x.dtype(), x.device())?)?)
}

/// The upper triangle of each matrix.
fn triu(x: &Tensor) -> Result<Tensor> {
    let n = square_size("triu", x)?;
    Ok(x.broadcast_mul(&Tensor::triu2(n, x.dtype(), x.device())?)?)
}

/// `ln |det A|` of triangular matrices: `Σᵢ ln aᵢᵢ`, `[.., n, n] -> [..]` (for a Cholesky
/// factor `L` of `Σ`, this is `½ ln det Σ`). Assumes a positive diagonal.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let l = Tensor::new(&[[2.0f64, 0.0], [1.0, 3.0]], &Device::Cpu)?;
/// let v = vi_dist::ops::triangular_logdet(&l)?.to_scalar::<f64>()?;
/// assert!((v - 6f64.ln()).abs() < 1e-12);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn triangular_logdet(a: &Tensor) -> Result<Tensor> {
    Ok(diagonal(a)?.log()?.sum(D::Minus1)?)
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
            .map(|m| {
                u8::from(is_symmetric(m, n, tol) && kernels::cholesky_host(m, n, &mut l).is_ok())
            })
            .collect()
    };
    Ok(Tensor::from_vec(out, batch, x.device())?)
}

fn is_symmetric(m: &[f64], n: usize, tol: f64) -> bool {
    let scale = m.iter().fold(0.0f64, |a, v| a.max(v.abs())).max(1.0);
    (0..n).all(|i| (0..i).all(|j| (m[i * n + j] - m[j * n + i]).abs() <= tol * scale))
}

/// Matrix product over any number of batch dims, which broadcast: `[.., m, k] × [.., k, n]
/// -> [.., m, n]` (candle's `matmul` takes at most two batch dims and no broadcasting).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// let a = Tensor::ones((2, 3, 4, 2, 5), DType::F64, &Device::Cpu)?;
/// let b = Tensor::ones((4, 5, 1), DType::F64, &Device::Cpu)?;
/// let c = vi_dist::ops::batch_matmul(&a, &b)?;
/// assert_eq!(c.dims(), &[2, 3, 4, 2, 1]);
/// assert_eq!(c.flatten_all()?.max(0)?.to_scalar::<f64>()?, 5.0);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn batch_matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (ad, bd) = (a.dims(), b.dims());
    let (ra, rb) = (ad.len(), bd.len());
    let err = |why: &str| DistError::Op {
        op: "batch_matmul",
        msg: format!("{why}: shapes {ad:?} and {bd:?}"),
    };
    if ra < 2 || rb < 2 || ad[ra - 1] != bd[rb - 2] {
        return Err(err("needs [.., m, k] and [.., k, n]"));
    }
    let (m, k, n) = (ad[ra - 2], ad[ra - 1], bd[rb - 1]);
    let batch = broadcast_shapes(&[&ad[..ra - 2], &bd[..rb - 2]])
        .ok_or_else(|| err("batch dims do not broadcast"))?;
    let count: usize = batch.iter().product();
    let flat = |t: &Tensor, tail: [usize; 2]| -> Result<Tensor> {
        let target: Vec<usize> = batch.iter().copied().chain(tail).collect();
        let t = if t.dims() == target.as_slice() {
            t.clone()
        } else {
            t.broadcast_as(target)?
        };
        Ok(t.reshape((count, tail[0], tail[1]))?)
    };
    let y = flat(a, [m, k])?.matmul(&flat(b, [k, n])?)?;
    let out: Vec<usize> = batch.iter().copied().chain([m, n]).collect();
    Ok(y.reshape(out)?)
}

// ---------- Cholesky ----------

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
    let (l, pivots) = composed::cholesky(a, n)?;
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

// ---------- triangular solves ----------

/// `X = A⁻¹ B` for triangular `A [.., n, n]` (lower when `lower`, else upper; only that
/// triangle is read) and `B [.., n, k]`, batch dims broadcast, as
/// `torch.linalg.solve_triangular(A, B, upper=not lower)`.
///
/// Differentiable in both: `∂B = A⁻ᵀ Ḡ`, `∂A = −∂B Xᵀ` projected to `A`'s triangle (as
/// torch). A zero on the diagonal gives `inf`/`NaN`, as torch.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let a = Tensor::new(&[[2.0f64, 0.0], [1.0, 4.0]], &Device::Cpu)?;
/// let b = Tensor::new(&[[2.0f64], [9.0]], &Device::Cpu)?;
/// let x = vi_dist::ops::solve_triangular(&a, &b, true)?;
/// assert_eq!(x.to_vec2::<f64>()?, vec![vec![1.0], vec![2.0]]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn solve_triangular(a: &Tensor, b: &Tensor, lower: bool) -> Result<Tensor> {
    tri_solve(a, b, lower, false, false)
}

/// `X = A⁻ᵀ B`: [`solve_triangular`] with the transpose of `A` (lower when `lower`), without
/// materialising the transpose.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let a = Tensor::new(&[[2.0f64, 0.0], [1.0, 4.0]], &Device::Cpu)?;
/// let b = Tensor::new(&[[4.0f64], [8.0]], &Device::Cpu)?;
/// // Aᵀ = [[2, 1], [0, 4]]: x₂ = 2, x₁ = (4 − 2) / 2 = 1
/// let x = vi_dist::ops::solve_triangular_transposed(&a, &b, true)?;
/// assert_eq!(x.to_vec2::<f64>()?, vec![vec![1.0], vec![2.0]]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn solve_triangular_transposed(a: &Tensor, b: &Tensor, lower: bool) -> Result<Tensor> {
    tri_solve(a, b, lower, true, false)
}

/// [`solve_triangular`] composed from candle ops (the path for non-CPU devices; runs
/// anywhere, differentiable through autograd).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let a = Tensor::new(&[[2.0f64, 0.0], [1.0, 4.0]], &Device::Cpu)?;
/// let b = Tensor::new(&[[2.0f64], [9.0]], &Device::Cpu)?;
/// let x = vi_dist::ops::composed::solve_triangular(&a, &b, true)?;
/// assert_eq!(x.to_vec2::<f64>()?, vec![vec![1.0], vec![2.0]]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn solve_triangular_composed(a: &Tensor, b: &Tensor, lower: bool) -> Result<Tensor> {
    tri_solve(a, b, lower, false, true)
}

/// [`solve_triangular_transposed`] composed from candle ops.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let a = Tensor::new(&[[2.0f64, 0.0], [1.0, 4.0]], &Device::Cpu)?;
/// let b = Tensor::new(&[[4.0f64], [8.0]], &Device::Cpu)?;
/// let x = vi_dist::ops::composed::solve_triangular_transposed(&a, &b, true)?;
/// assert_eq!(x.to_vec2::<f64>()?, vec![vec![1.0], vec![2.0]]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn solve_triangular_transposed_composed(a: &Tensor, b: &Tensor, lower: bool) -> Result<Tensor> {
    tri_solve(a, b, lower, true, true)
}

/// Check shapes, broadcast batch dims, and run the kernel (CPU) or the composed path.
fn tri_solve(
    a: &Tensor,
    b: &Tensor,
    lower: bool,
    transpose: bool,
    force_composed: bool,
) -> Result<Tensor> {
    const OP: &str = "solve_triangular";
    check_float(OP, a)?;
    let (ad, bd) = (a.dims(), b.dims());
    let shape_err = |why: &str| DistError::Op {
        op: OP,
        msg: format!("{why}: a has shape {ad:?}, b has shape {bd:?}"),
    };
    let n = square_size(OP, a).map_err(|_| shape_err("a must be square [.., n, n]"))?;
    if b.rank() < 2 || bd[b.rank() - 2] != n {
        return Err(shape_err("b must be [.., n, k] with n the size of a"));
    }
    if a.dtype() != b.dtype() || !a.device().same_device(b.device()) {
        return Err(shape_err("a and b must share dtype and device"));
    }
    let k = bd[b.rank() - 1];
    let batch = broadcast_shapes(&[&ad[..a.rank() - 2], &bd[..b.rank() - 2]])
        .ok_or_else(|| shape_err("batch dims do not broadcast"))?;
    let to = |t: &Tensor, tail: [usize; 2]| -> Result<Tensor> {
        let target: Vec<usize> = batch.iter().copied().chain(tail).collect();
        Ok(if t.dims() == target.as_slice() {
            t.clone()
        } else {
            t.broadcast_as(target)?
        })
    };
    let (a, b) = (to(a, [n, n])?, to(b, [n, k])?);
    if force_composed || !a.device().is_cpu() {
        return composed::solve(&a, &b, lower, transpose);
    }
    Ok(a.contiguous()?
        .apply_op2(&b.contiguous()?, TriSolveOp { lower, transpose })?)
}

/// Gradients of `X = op(A)⁻¹ B` w.r.t. `A` and `B`: with `M = op(A)`, `∂B = M⁻ᵀ Ḡ` and
/// `∂M = −∂B Xᵀ`; `∂A = ∂M` or `∂Mᵀ`, projected to `A`'s triangle.
pub(crate) fn solve_backward(
    a: &Tensor,
    x: &Tensor,
    gx: &Tensor,
    lower: bool,
    transpose: bool,
) -> Result<(Tensor, Tensor)> {
    let gb = tri_solve(a, gx, lower, !transpose, false)?;
    let ga = if transpose {
        batch_matmul(x, &gb.t()?)?
    } else {
        batch_matmul(&gb, &x.t()?)?
    }
    .neg()?;
    let ga = if lower { tril(&ga)? } else { triu(&ga)? };
    Ok((ga, gb))
}

/// `(L Lᵀ)⁻¹ B` from a lower Cholesky factor `L [.., n, n]` and `B [.., n, k]`, as
/// `torch.cholesky_solve`: two triangular solves, differentiable.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let l = Tensor::new(&[[2.0f64, 0.0], [1.0, 2.0]], &Device::Cpu)?; // L Lᵀ = [[4, 2], [2, 5]]
/// let b = Tensor::new(&[[6.0f64], [7.0]], &Device::Cpu)?;
/// let x = vi_dist::ops::cholesky_solve(&l, &b)?.to_vec2::<f64>()?;
/// assert!((x[0][0] - 1.0).abs() < 1e-12 && (x[1][0] - 1.0).abs() < 1e-12);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn cholesky_solve(l: &Tensor, b: &Tensor) -> Result<Tensor> {
    solve_triangular_transposed(l, &solve_triangular(l, b, true)?, true)
}

/// The inverse of triangular matrices (lower when `lower`), itself triangular:
/// `A⁻¹ = solve_triangular(A, I)`, differentiable.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let a = Tensor::new(&[[2.0f64, 0.0], [1.0, 4.0]], &Device::Cpu)?;
/// let inv = vi_dist::ops::triangular_inverse(&a, true)?;
/// assert_eq!(inv.to_vec2::<f64>()?, vec![vec![0.5, 0.0], vec![-0.125, 0.25]]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn triangular_inverse(a: &Tensor, lower: bool) -> Result<Tensor> {
    let n = square_size("triangular_inverse", a)?;
    let eye = Tensor::eye(n, a.dtype(), a.device())?;
    solve_triangular(a, &eye, lower)
}

/// Reverse the rows and the columns of each matrix (`J A J` with `J` the exchange matrix),
/// differentiable.
pub(crate) fn flip_matrix(x: &Tensor) -> Result<Tensor> {
    let n = square_size("flip", x)?;
    let idx: Vec<u32> = (0..n as u32).rev().collect();
    let idx = Tensor::from_vec(idx, n, x.device())?;
    Ok(x.index_select(&idx, D::Minus1)?
        .index_select(&idx, D::Minus2)?)
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

// ---------- batched columns (for MVN-style families) ----------

/// `x` of shape `lead + batch + [n]` as the columns of `batch + [n, prod(lead)]`, so one
/// batched matrix op over `batch` handles every leading (sample) index.
pub(crate) fn fold_leading(x: &Tensor, lead: usize) -> Result<Tensor> {
    let dims = x.dims();
    let e: usize = dims[..lead].iter().product();
    let rest = &dims[lead..];
    let n = rest.last().copied().unwrap_or(1);
    let bprod: usize = rest[..rest.len().saturating_sub(1)].iter().product();
    let mut shape = rest.to_vec();
    shape.push(e);
    Ok(x.reshape((e, bprod, n))?
        .permute((1, 2, 0))?
        .reshape(shape)?)
}

/// The inverse of [`fold_leading`]: `y [batch.., m, prod(lead)]` to `lead + batch + [m]`.
pub(crate) fn unfold_leading(y: &Tensor, lead: &[usize]) -> Result<Tensor> {
    let dims = y.dims();
    let r = dims.len();
    let (m, e) = (dims[r - 2], dims[r - 1]);
    let batch = &dims[..r - 2];
    let bprod: usize = batch.iter().product();
    let shape: Vec<usize> = lead.iter().chain(batch).copied().chain([m]).collect();
    Ok(y.reshape((bprod, m, e))?
        .permute((2, 0, 1))?
        .reshape(shape)?)
}
