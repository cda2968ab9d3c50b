//! Matrix ops on batched `[.., n, n]` tensors: Cholesky, triangular solves, and the batched
//! helpers the multivariate normal families build from them.
//!
//! [`cholesky`] and the triangular solves run as host kernels on the CPU, with backward
//! passes; on other devices they are composed from candle ops, one column or row at a time,
//! so they run unchanged there (the CPU tests compare the two). Each op's file holds both
//! paths: `cholesky` (the factor, its backward, positive-definiteness and
//! `precision_to_scale_tril`), `solve` (triangular solves, their backward, `cholesky_solve`,
//! `triangular_inverse`), `batch` (products, diagonals and triangles of batched matrices, and
//! the folding of sample dims into columns).
//!
//! The host kernels are hand-written loops rather than a linear-algebra crate: the matrices
//! here are small (event sizes of distributions), the loops are a few dozen lines, and the
//! workspace stays free of a large dependency to compile. Both dtypes compute in f64 inside.

mod batch;
mod cholesky;
mod solve;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Tensor};

use crate::error::{DistError, Result};

pub use batch::{batch_matmul, diag_embed, diagonal, triangular_logdet, tril};
pub(crate) use batch::{flip_matrix, fold_leading, unfold_leading};
pub use cholesky::{cholesky, cholesky_composed, is_positive_definite, precision_to_scale_tril};
pub use solve::{
    cholesky_solve, solve_triangular, solve_triangular_composed, solve_triangular_transposed,
    solve_triangular_transposed_composed, triangular_inverse,
};

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
pub(super) fn check_float(op: &'static str, x: &Tensor) -> Result<()> {
    match x.dtype() {
        DType::F32 | DType::F64 => Ok(()),
        other => Err(DistError::Op {
            op,
            msg: format!("needs f32 or f64, got {other:?} (shape {:?})", x.dims()),
        }),
    }
}

/// The data of a contiguous f32/f64 storage as f64, with its dtype.
pub(super) fn host_f64(
    op: &str,
    s: &CpuStorage,
    l: &Layout,
) -> candle_core::Result<(Vec<f64>, DType)> {
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
pub(super) fn to_storage(v: Vec<f64>, dtype: DType) -> CpuStorage {
    match dtype {
        DType::F32 => CpuStorage::F32(v.into_iter().map(|x| x as f32).collect()),
        _ => CpuStorage::F64(v),
    }
}
