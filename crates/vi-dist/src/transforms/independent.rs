//! A transform with more trailing dims reinterpreted as one event.

use candle_core::Tensor;

use super::{Transform, check_rank, downcast};
use crate::broadcast::sum_rightmost;
use crate::constraint::Constraint;
use crate::error::Result;

/// `base` with `n` more trailing dims in each event, as
/// `torch.distributions.transforms.IndependentTransform`: the same values, and the
/// log-determinant summed over those `n` dims (what
/// [`transform_to`](crate::transform_to) gives for `independent(c, n)`).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use vi_dist::transforms::{Exp, IndependentTransform};
/// use vi_dist::{Transform};
/// let t = IndependentTransform::new(Box::new(Exp), 1);
/// let x = Tensor::ones((4, 3), DType::F64, &Device::Cpu)?;
/// let ladj = t.log_abs_det_jacobian(&x, &t.forward(&x)?)?;
/// assert_eq!(ladj.to_vec1::<f64>()?, vec![3.0; 4]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Debug)]
pub struct IndependentTransform {
    base: Box<dyn Transform>,
    reinterpreted: usize,
}

impl IndependentTransform {
    /// `base` with its last `reinterpreted_batch_ndims` batch dims moved into the event.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Transform;
    /// use vi_dist::transforms::{Exp, IndependentTransform};
    /// let t = IndependentTransform::new(Box::new(Exp), 1);
    /// let x = Tensor::ones((2, 3), DType::F64, &Device::Cpu)?;
    /// assert_eq!(t.log_abs_det_jacobian(&x, &t.forward(&x)?)?.to_vec1::<f64>()?, vec![3.0, 3.0]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn new(base: Box<dyn Transform>, reinterpreted_batch_ndims: usize) -> Self {
        Self {
            base,
            reinterpreted: reinterpreted_batch_ndims,
        }
    }

    /// The wrapped transform.
    ///
    /// ```
    /// use vi_dist::Transform;
    /// use vi_dist::transforms::{Exp, IndependentTransform};
    /// assert_eq!(IndependentTransform::new(Box::new(Exp), 1).base().name(), "exp");
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn base(&self) -> &dyn Transform {
        self.base.as_ref()
    }

    /// How many dims were moved into the event.
    ///
    /// ```
    /// use vi_dist::transforms::{Exp, IndependentTransform};
    /// assert_eq!(IndependentTransform::new(Box::new(Exp), 2).reinterpreted_batch_ndims(), 2);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn reinterpreted_batch_ndims(&self) -> usize {
        self.reinterpreted
    }
}

impl Transform for IndependentTransform {
    fn name(&self) -> &'static str {
        "independent"
    }

    fn domain(&self) -> Constraint {
        self.base.domain().independent(self.reinterpreted)
    }

    fn codomain(&self) -> Constraint {
        self.base.codomain().independent(self.reinterpreted)
    }

    fn event_dim(&self) -> usize {
        self.base.event_dim() + self.reinterpreted
    }

    fn codomain_event_dim(&self) -> usize {
        self.base.codomain_event_dim() + self.reinterpreted
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        check_rank("independent", x, self.event_dim())?;
        self.base.forward(x)
    }

    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        check_rank("independent", y, self.codomain_event_dim())?;
        self.base.inverse(y)
    }

    fn log_abs_det_jacobian(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        check_rank("independent", x, self.event_dim())?;
        sum_rightmost(&self.base.log_abs_det_jacobian(x, y)?, self.reinterpreted)
    }

    fn forward_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        self.base.forward_shape(shape)
    }

    fn inverse_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        self.base.inverse_shape(shape)
    }

    fn same_as(&self, other: &dyn Transform) -> bool {
        downcast::<Self>(other).is_some_and(|o| {
            self.reinterpreted == o.reinterpreted && self.base.same_as(o.base.as_ref())
        })
    }

    fn injective(&self) -> bool {
        self.base.injective()
    }
}
