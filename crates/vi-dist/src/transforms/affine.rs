//! The affine transform `loc + scale · x`.

use candle_core::Tensor;

use super::{Transform, check_rank, downcast};
use crate::broadcast::broadcast_shapes;
use crate::broadcast::sum_rightmost;
use crate::constraint::{Bound, Constraint};
use crate::error::{DistError, Result};

/// `y = loc + scale · x`, as `torch.distributions.transforms.AffineTransform`;
/// `log |det J| = Σ_event ln |scale|`.
///
/// `loc` and `scale` are numbers or tensors (a [`Bound`]) that broadcast against `x`; tensors
/// are cast to `x`'s dtype and device. With [`Affine::with_event_dim`] the last `n` dims of `x`
/// form one event and the log-determinant is summed over them.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::transforms::{Affine};
/// use vi_dist::{Transform};
/// let t = Affine::new(1.0, 2.0);
/// let x = Tensor::new(&[0.0f64, 3.0], &Device::Cpu)?;
/// let y = t.forward(&x)?;
/// assert_eq!(y.to_vec1::<f64>()?, vec![1.0, 7.0]);
/// assert_eq!(t.inverse(&y)?.to_vec1::<f64>()?, vec![0.0, 3.0]);
/// let ladj = t.log_abs_det_jacobian(&x, &y)?.to_vec1::<f64>()?;
/// assert!((ladj[0] - 2f64.ln()).abs() < 1e-15);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Affine {
    loc: Bound,
    scale: Bound,
    event_dim: usize,
}

impl Affine {
    /// `loc + scale · x` elementwise (event dim 0).
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::Transform;
    /// use vi_dist::transforms::Affine;
    /// let t = Affine::new(1.0, Tensor::new(&[2.0f64, -3.0], &Device::Cpu)?);
    /// let y = t.forward(&Tensor::new(&[1.0f64, 1.0], &Device::Cpu)?)?;
    /// assert_eq!(y.to_vec1::<f64>()?, vec![3.0, -2.0]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn new(loc: impl Into<Bound>, scale: impl Into<Bound>) -> Self {
        Self {
            loc: loc.into(),
            scale: scale.into(),
            event_dim: 0,
        }
    }

    /// The same map with the last `event_dim` dims of the input as one event (torch's
    /// `AffineTransform(loc, scale, event_dim)`).
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::transforms::{Affine};
    /// use vi_dist::{Transform};
    /// let t = Affine::new(0.0, 3.0).with_event_dim(1);
    /// let x = Tensor::zeros((4, 2), candle_core::DType::F64, &Device::Cpu)?;
    /// let ladj = t.log_abs_det_jacobian(&x, &t.forward(&x)?)?;
    /// assert_eq!(ladj.dims(), &[4]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Transform;
    /// use vi_dist::transforms::Affine;
    /// let t = Affine::new(0.0, 2.0).with_event_dim(1);
    /// let x = Tensor::ones((4, 3), DType::F64, &Device::Cpu)?;
    /// let ladj = t.log_abs_det_jacobian(&x, &t.forward(&x)?)?;
    /// assert_eq!(ladj.dims(), &[4]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn with_event_dim(mut self, event_dim: usize) -> Self {
        self.event_dim = event_dim;
        self
    }

    /// The shift.
    ///
    /// ```
    /// use vi_dist::{Bound, transforms::Affine};
    /// assert!(matches!(Affine::new(1.0, 2.0).loc(), Bound::Scalar(v) if *v == 1.0));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn loc(&self) -> &Bound {
        &self.loc
    }

    /// The scale.
    ///
    /// ```
    /// use vi_dist::{Bound, transforms::Affine};
    /// assert!(matches!(Affine::new(1.0, 2.0).scale(), Bound::Scalar(v) if *v == 2.0));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn scale(&self) -> &Bound {
        &self.scale
    }
}

/// `x · b`, by `affine` for a number and broadcasting for a tensor.
fn mul_bound(x: &Tensor, b: &Bound) -> Result<Tensor> {
    Ok(match b {
        Bound::Scalar(v) => x.affine(*v, 0.0)?,
        Bound::Tensor(_) => x.broadcast_mul(&b.to_tensor(x)?)?,
    })
}

/// `x + b`.
fn add_bound(x: &Tensor, b: &Bound) -> Result<Tensor> {
    Ok(match b {
        Bound::Scalar(v) => x.affine(1.0, *v)?,
        Bound::Tensor(_) => x.broadcast_add(&b.to_tensor(x)?)?,
    })
}

/// `x − b`.
fn sub_bound(x: &Tensor, b: &Bound) -> Result<Tensor> {
    Ok(match b {
        Bound::Scalar(v) => x.affine(1.0, -*v)?,
        Bound::Tensor(_) => x.broadcast_sub(&b.to_tensor(x)?)?,
    })
}

/// `x / b`.
fn div_bound(x: &Tensor, b: &Bound) -> Result<Tensor> {
    Ok(match b {
        Bound::Scalar(v) => x.affine(1.0 / *v, 0.0)?,
        Bound::Tensor(_) => x.broadcast_div(&b.to_tensor(x)?)?,
    })
}

impl Transform for Affine {
    fn name(&self) -> &'static str {
        "affine"
    }

    fn domain(&self) -> Constraint {
        Constraint::Real.independent(self.event_dim)
    }

    fn codomain(&self) -> Constraint {
        Constraint::Real.independent(self.event_dim)
    }

    fn event_dim(&self) -> usize {
        self.event_dim
    }

    fn codomain_event_dim(&self) -> usize {
        self.event_dim
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        check_rank("affine", x, self.event_dim)?;
        add_bound(&mul_bound(x, &self.scale)?, &self.loc)
    }

    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        check_rank("affine", y, self.event_dim)?;
        div_bound(&sub_bound(y, &self.loc)?, &self.scale)
    }

    fn log_abs_det_jacobian(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        check_rank("affine", x, self.event_dim)?;
        let log_scale = self.scale.to_tensor(x)?.abs()?.log()?;
        let shape = broadcast_shapes(&[x.dims(), y.dims(), log_scale.dims()]).ok_or_else(|| {
            DistError::Transform {
                transform: "affine",
                msg: format!(
                    "x {:?}, y {:?} and scale {:?} do not broadcast",
                    x.dims(),
                    y.dims(),
                    log_scale.dims()
                ),
            }
        })?;
        sum_rightmost(&log_scale.broadcast_as(shape)?, self.event_dim)
    }

    fn forward_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        self.param_shape(shape)
    }

    fn inverse_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        self.param_shape(shape)
    }

    fn same_as(&self, other: &dyn Transform) -> bool {
        downcast::<Self>(other).is_some_and(|o| {
            self.event_dim == o.event_dim
                && self.loc.same_as(&o.loc)
                && self.scale.same_as(&o.scale)
        })
    }
}

impl Affine {
    /// `shape` broadcast with the shapes of `loc` and `scale`.
    fn param_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        let dims = |b: &Bound| match b {
            Bound::Scalar(_) => Vec::new(),
            Bound::Tensor(t) => t.dims().to_vec(),
        };
        let (l, s) = (dims(&self.loc), dims(&self.scale));
        broadcast_shapes(&[shape, &l, &s]).ok_or_else(|| DistError::Transform {
            transform: "affine",
            msg: format!("shape {shape:?} does not broadcast with loc {l:?} and scale {s:?}"),
        })
    }
}
