//! Products, diagonals and triangles of batched matrices, composed from candle ops (so
//! differentiable and on any device), and the folding of leading sample dims into columns
//! that lets one batched matrix op serve every sample.

use candle_core::{D, Tensor};

use super::square_size;
use crate::broadcast::broadcast_shapes;
use crate::error::{DistError, Result};

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
pub(super) fn triu(x: &Tensor) -> Result<Tensor> {
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

/// Reverse the rows and the columns of each matrix (`J A J` with `J` the exchange matrix),
/// differentiable.
pub(crate) fn flip_matrix(x: &Tensor) -> Result<Tensor> {
    let n = square_size("flip", x)?;
    let idx: Vec<u32> = (0..n as u32).rev().collect();
    let idx = Tensor::from_vec(idx, n, x.device())?;
    Ok(x.index_select(&idx, D::Minus1)?
        .index_select(&idx, D::Minus2)?)
}

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
