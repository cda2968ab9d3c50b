//! Triangular solves: the host kernel (a `CustomOp2` with backward passes for both operands),
//! the forward/back substitution composed from candle ops for other devices, and what is
//! built on them (`cholesky_solve`, `triangular_inverse`).

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

use super::batch::{batch_matmul, tril, triu};
use super::{check_float, host_f64, square_size, to_storage};
use crate::broadcast::broadcast_shapes;
use crate::error::{DistError, Result};

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
        return solve_by_substitution(&a, &b, lower, transpose);
    }
    Ok(a.contiguous()?
        .apply_op2(&b.contiguous()?, TriSolveOp { lower, transpose })?)
}

/// Solve `op(A) X = B` (`op(A)` = `A` or `Aᵀ`; `A` lower triangular when `lower`) by forward
/// or back substitution, one row of `X` at a time. `A [.., n, n]` and `B [.., n, k]` have
/// equal batch dims.
fn solve_by_substitution(a: &Tensor, b: &Tensor, lower: bool, transpose: bool) -> Result<Tensor> {
    let m = if transpose { a.t()? } else { a.clone() };
    let (rows, cols_dim) = (a.rank() - 2, a.rank() - 1);
    let n = a.dims()[cols_dim];
    if n == 0 {
        return Ok(b.clone());
    }
    let forward = lower != transpose;
    let order: Vec<usize> = if forward {
        (0..n).collect()
    } else {
        (0..n).rev().collect()
    };
    let mut x: Vec<Option<Tensor>> = vec![None; n];
    for i in order {
        let mut s = b.narrow(rows, i, 1)?;
        let (start, len) = if forward { (0, i) } else { (i + 1, n - i - 1) };
        if len > 0 {
            let done: Vec<Tensor> = x[start..start + len].iter().flatten().cloned().collect();
            let done = Tensor::cat(&done, rows)?;
            let m_row = m
                .narrow(rows, i, 1)?
                .narrow(cols_dim, start, len)?
                .contiguous()?;
            s = (s - batch_matmul(&m_row, &done)?)?;
        }
        let d = m.narrow(rows, i, 1)?.narrow(cols_dim, i, 1)?;
        x[i] = Some(s.broadcast_div(&d)?);
    }
    let x: Vec<Tensor> = x.into_iter().flatten().collect();
    Ok(Tensor::cat(&x, rows)?)
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

/// Solve `op(A) X = B` for one triangular `A` (`n × n`) and `B` (`n × k`), row-major, where
/// `op(A)` is `A` or `Aᵀ` and `A`'s non-zero triangle is the lower one when `lower`.
fn solve_host(
    a: &[f64],
    b: &[f64],
    n: usize,
    k: usize,
    lower: bool,
    transpose: bool,
    x: &mut [f64],
) {
    x.copy_from_slice(b);
    let m = |i: usize, j: usize| {
        if transpose {
            a[j * n + i]
        } else {
            a[i * n + j]
        }
    };
    // op(A) is lower triangular when exactly one of (A lower, transposed) holds the other way.
    let forward = lower != transpose;
    // Row i of X takes the solved rows j (before it going forward, after it going backward):
    // whole-row updates on disjoint slices, which the compiler vectorises.
    let axpy = |xi: &mut [f64], xj: &[f64], mij: f64| {
        for (a, b) in xi.iter_mut().zip(xj) {
            *a -= mij * b;
        }
    };
    let scale = |xi: &mut [f64], d: f64| {
        for a in xi.iter_mut() {
            *a /= d;
        }
    };
    if forward {
        for i in 0..n {
            let (solved, rest) = x.split_at_mut(i * k);
            let xi = &mut rest[..k];
            for (j, xj) in solved.chunks_exact(k).enumerate() {
                let mij = m(i, j);
                if mij != 0.0 {
                    axpy(xi, xj, mij);
                }
            }
            scale(xi, m(i, i));
        }
    } else {
        for i in (0..n).rev() {
            let (head, solved) = x.split_at_mut((i + 1) * k);
            let xi = &mut head[i * k..];
            for (off, xj) in solved.chunks_exact(k).enumerate() {
                let mij = m(i, i + 1 + off);
                if mij != 0.0 {
                    axpy(xi, xj, mij);
                }
            }
            scale(xi, m(i, i));
        }
    }
}

/// Batched triangular solve `op(A) X = B` as a `CustomOp2` over `A [.., n, n]` and
/// `B [.., n, k]` with equal batch dims.
struct TriSolveOp {
    lower: bool,
    transpose: bool,
}

impl CustomOp2 for TriSolveOp {
    fn name(&self) -> &'static str {
        "solve_triangular"
    }

    fn cpu_fwd(
        &self,
        sa: &CpuStorage,
        la: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (a, dtype) = host_f64("solve_triangular", sa, la)?;
        let (b, _) = host_f64("solve_triangular", sb, lb)?;
        let bd = lb.dims();
        let r = bd.len();
        let (n, k) = (bd[r - 2], bd[r - 1]);
        let mut x = vec![0.0; b.len()];
        if n > 0 && k > 0 {
            for ((am, bm), xm) in a
                .chunks(n * n)
                .zip(b.chunks(n * k))
                .zip(x.chunks_mut(n * k))
            {
                solve_host(am, bm, n, k, self.lower, self.transpose, xm);
            }
        }
        Ok((to_storage(x, dtype), lb.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        _b: &Tensor,
        x: &Tensor,
        gx: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (ga, gb) = solve_backward(a, x, gx, self.lower, self.transpose)
            .map_err(candle_core::Error::wrap)?;
        Ok((Some(ga), Some(gb)))
    }
}
