//! [`Bound`]: a number or a tensor bounding an interval constraint.

use std::fmt;

use candle_core::{DType, Tensor};

use crate::error::Result;

/// A bound of an interval constraint: a number, or a tensor that broadcasts against the value
/// (Uniform's `low`/`high`, Pareto's `scale`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Bound, Constraint};
/// let low = Tensor::new(&[0.0f64, 1.0], &Device::Cpu)?;
/// let c = Constraint::interval(Bound::Tensor(low), 2.0);
/// assert!(c.all(&Tensor::new(&[0.5f64, 1.5], &Device::Cpu)?)?);
/// assert!(!c.all(&Tensor::new(&[0.5f64, 0.5], &Device::Cpu)?)?);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub enum Bound {
    /// The same bound for every element.
    Scalar(f64),
    /// Per-element bounds (broadcast against the value).
    Tensor(Tensor),
}

impl Bound {
    /// Whether two bounds are the same: scalars bit for bit, tensors the same tensor or the
    /// same shape and values (read back to compare).
    ///
    /// ```
    /// use vi_dist::Bound;
    /// assert!(Bound::Scalar(1.5).same_as(&Bound::Scalar(1.5)));
    /// ```
    pub fn same_as(&self, other: &Bound) -> bool {
        match (self, other) {
            (Bound::Scalar(a), Bound::Scalar(b)) => a.to_bits() == b.to_bits(),
            (Bound::Tensor(a), Bound::Tensor(b)) => {
                if a.id() == b.id() {
                    return true;
                }
                let values = |t: &Tensor| -> candle_core::Result<Vec<f64>> {
                    t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()
                };
                a.dims() == b.dims()
                    && matches!((values(a), values(b)), (Ok(x), Ok(y))
                        if x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()))
            }
            _ => false,
        }
    }

    /// The bound as a tensor in the dtype and on the device of `like` (a scalar bound gives a
    /// 0-dim tensor), ready to broadcast against it.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Bound;
    /// let like = Tensor::zeros(3, DType::F32, &Device::Cpu)?;
    /// let b = Bound::Scalar(2.5).to_tensor(&like)?;
    /// assert_eq!((b.dtype(), b.to_scalar::<f32>()?), (DType::F32, 2.5));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn to_tensor(&self, like: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Bound::Scalar(v) => Tensor::new(*v, like.device())?.to_dtype(like.dtype())?,
            Bound::Tensor(t) => t.to_dtype(like.dtype())?.to_device(like.device())?,
        })
    }
}

impl From<f64> for Bound {
    fn from(v: f64) -> Self {
        Bound::Scalar(v)
    }
}

impl From<Tensor> for Bound {
    fn from(t: Tensor) -> Self {
        Bound::Tensor(t)
    }
}

impl From<&Tensor> for Bound {
    fn from(t: &Tensor) -> Self {
        Bound::Tensor(t.clone())
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Scalar(v) => write!(f, "{v}"),
            Bound::Tensor(t) => write!(f, "tensor{:?}", t.dims()),
        }
    }
}
