//! Matrix helpers on batched `[.., n, n]` tensors.

use candle_core::{D, DType, Tensor};

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

/// Per matrix, 1 where it is symmetric (to a relative tolerance) and has a Cholesky factor,
/// else 0: shape `[..]`. Reads the matrices back to the host.
pub fn is_positive_definite(x: &Tensor) -> Result<Tensor> {
    let n = square_size("positive_definite", x)?;
    let batch: Vec<usize> = x.dims()[..x.rank() - 2].to_vec();
    let data = x.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let tol = if x.dtype() == DType::F64 { 1e-10 } else { 1e-5 };
    let out: Vec<u8> = data
        .chunks(n * n.max(1))
        .map(|m| u8::from(host_is_pd(m, n, tol)))
        .collect();
    let count = batch.iter().product::<usize>();
    let out = if n == 0 { vec![1u8; count] } else { out };
    Ok(Tensor::from_vec(out, batch, x.device())?)
}

fn host_is_pd(m: &[f64], n: usize, tol: f64) -> bool {
    let scale = m.iter().fold(0.0f64, |a, v| a.max(v.abs())).max(1.0);
    for i in 0..n {
        for j in 0..i {
            if (m[i * n + j] - m[j * n + i]).abs() > tol * scale {
                return false;
            }
        }
    }
    let mut l = vec![0.0f64; n * n];
    for j in 0..n {
        let mut d = m[j * n + j];
        for k in 0..j {
            d -= l[j * n + k] * l[j * n + k];
        }
        if d.is_nan() || d <= 0.0 {
            return false;
        }
        let d = d.sqrt();
        l[j * n + j] = d;
        for i in j + 1..n {
            let mut s = m[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            l[i * n + j] = s / d;
        }
    }
    true
}
