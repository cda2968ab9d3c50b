//! Host kernels for the triangular ops: Cholesky and triangular solves over contiguous f32/f64
//! batches of small matrices, as candle `CustomOp`s with backward passes.
//!
//! Hand-written loops rather than a linear-algebra crate: the matrices here are small (event
//! sizes of distributions), the loops are a few dozen lines, and the workspace stays free of a
//! large dependency to compile. Both dtypes compute in f64 internally.

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};

/// The data of a contiguous f32/f64 storage as f64, with its dtype.
fn host_f64(op: &str, s: &CpuStorage, l: &Layout) -> candle_core::Result<(Vec<f64>, DType)> {
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("{op}: the host kernel needs a contiguous input")
    };
    Ok(match s {
        CpuStorage::F64(v) => (v[start..end].to_vec(), DType::F64),
        CpuStorage::F32(v) => (
            v[start..end].iter().map(|&x| f64::from(x)).collect(),
            DType::F32,
        ),
        other => candle_core::bail!("{op}: no kernel for dtype {:?}", other.dtype()),
    })
}

/// f64 results back in `dtype`.
fn to_storage(v: Vec<f64>, dtype: DType) -> CpuStorage {
    match dtype {
        DType::F32 => CpuStorage::F32(v.into_iter().map(|x| x as f32).collect()),
        _ => CpuStorage::F64(v),
    }
}

/// Cholesky factor of one row-major `n × n` matrix, reading only its lower triangle (as
/// LAPACK's `potrf`). `Err(j)` when the `j`-th pivot is not positive and finite.
pub(crate) fn cholesky_host(a: &[f64], n: usize, l: &mut [f64]) -> Result<(), usize> {
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

/// Solve `op(A) X = B` for one triangular `A` (`n × n`) and `B` (`n × k`), row-major, where
/// `op(A)` is `A` or `Aᵀ` and `A`'s non-zero triangle is the lower one when `lower`.
pub(crate) fn solve_host(
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

/// Batched Cholesky as a `CustomOp1`. A matrix without a factor makes `cpu_fwd` fail and
/// records its batch index and pivot in `failed` (candle's error cannot carry our typed
/// error).
pub(crate) struct CholeskyOp {
    pub(crate) failed: Arc<Mutex<Option<(usize, usize)>>>,
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
        super::cholesky_backward(l, gl)
            .map(Some)
            .map_err(candle_core::Error::wrap)
    }
}

/// Batched triangular solve `op(A) X = B` as a `CustomOp2` over `A [.., n, n]` and
/// `B [.., n, k]` with equal batch dims.
pub(crate) struct TriSolveOp {
    pub(crate) lower: bool,
    pub(crate) transpose: bool,
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
        let (ga, gb) = super::solve_backward(a, x, gx, self.lower, self.transpose)
            .map_err(candle_core::Error::wrap)?;
        Ok((Some(ga), Some(gb)))
    }
}
