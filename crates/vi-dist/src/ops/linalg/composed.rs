//! Cholesky and triangular solves composed from candle ops (narrow, matmul, cat), one column
//! or row at a time, so they run and differentiate through autograd on any device. The CPU
//! uses the host kernels; these are the path for CUDA and Metal, tested against the kernels.

use candle_core::{D, Tensor};

use crate::error::Result;

/// Lower Cholesky factor of `[.., n, n]`, from the symmetrised input `(A + Aᵀ) / 2` so that
/// autograd gives the symmetric gradient (torch's convention) rather than one confined to the
/// lower triangle. Returns the factor and the pivots `[.., n]` (squared diagonal before the
/// square root) for the caller's positive-definiteness check.
pub(crate) fn cholesky(a: &Tensor, n: usize) -> Result<(Tensor, Tensor)> {
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
            v = (v - super::batch_matmul(&prev, &row_j)?)?;
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

/// Solve `op(A) X = B` (`op(A)` = `A` or `Aᵀ`; `A` lower triangular when `lower`) by forward
/// or back substitution, one row of `X` at a time. `A [.., n, n]` and `B [.., n, k]` have
/// equal batch dims.
pub(crate) fn solve(a: &Tensor, b: &Tensor, lower: bool, transpose: bool) -> Result<Tensor> {
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
            s = (s - super::batch_matmul(&m_row, &done)?)?;
        }
        let d = m.narrow(rows, i, 1)?.narrow(cols_dim, i, 1)?;
        x[i] = Some(s.broadcast_div(&d)?);
    }
    let x: Vec<Tensor> = x.into_iter().flatten().collect();
    Ok(Tensor::cat(&x, rows)?)
}
