//! The point mass, with Pyro's `log_density`.

use candle_core::Tensor;
use rand::RngCore;

use crate::broadcast::{broadcast_params, sum_rightmost};
use crate::constraint::Constraint;
use crate::distribution::{Distribution, validate_value};
use crate::error::{DistError, Result, located};
use crate::family::{dist_common, expand_param, sample_by_rsample};

/// `Delta(v, log_density, event_dim)`: all mass at `v`, as Pyro's `dist.Delta`.
///
/// `log_prob(x)` is `log_density` where `x == v` (whole events) and `−inf` elsewhere.
/// `rsample` returns `v` itself, so gradients flow to `v` (Pyro's use for MAP guides).
/// `log_density` is kept by KL too: `KL(Delta ‖ q) = log_density − log q(v)` (Pyro drops it).
/// The entropy is taken as `−log_density`, the same convention.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Delta, Distribution};
/// let v = Tensor::new(&[1.0f64, 2.0], &Device::Cpu)?;
/// let d = Delta::new(&v, None, 1)?;
/// assert_eq!((d.batch_shape(), d.event_shape()), (&[][..], &[2][..]));
/// assert_eq!(d.log_prob(&v)?.to_scalar::<f64>()?, 0.0);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Delta {
    v: Tensor,
    log_density: Tensor,
    batch: Vec<usize>,
    event: Vec<usize>,
}

impl Delta {
    /// A point mass at `v` whose last `event_dim` dims form one event, with an optional
    /// `log_density` (shape broadcastable to the batch shape; 0 when `None`).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Delta, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = Delta::new(&Tensor::zeros((2, 3), DType::F64, &cpu)?, None, 1)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2][..], &[3][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn new(v: &Tensor, log_density: Option<&Tensor>, event_dim: usize) -> Result<Self> {
        located(|| {
            if event_dim > v.rank() {
                return Err(DistError::ParamShape {
                    dist: "Delta",
                    param: "v",
                    expected: format!("at least event_dim = {event_dim} dims"),
                    found: v.dims().to_vec(),
                });
            }
            let zero;
            let log_density = match log_density {
                Some(ld) => ld,
                None => {
                    zero = Tensor::zeros((), v.dtype(), v.device())?;
                    &zero
                }
            };
            let ([v, log_density], batch) = broadcast_params(
                "Delta",
                [("v", v, event_dim), ("log_density", log_density, 0)],
            )?;
            let event = v.dims()[v.rank() - event_dim..].to_vec();
            Ok(Self {
                v,
                log_density,
                batch,
                event,
            })
        })
    }

    /// The support point, shape `batch + event`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Delta;
    /// let cpu = Device::Cpu;
    /// let d = Delta::new(&Tensor::zeros((2, 3), DType::F64, &cpu)?, None, 1)?;
    /// assert_eq!(d.v().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn v(&self) -> &Tensor {
        &self.v
    }

    /// The log density added to `log_prob`, shape `batch`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Delta;
    /// let cpu = Device::Cpu;
    /// let d = Delta::new(&Tensor::zeros((2, 3), DType::F64, &cpu)?, None, 1)?;
    /// assert_eq!(d.log_density().dims(), &[2]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn log_density(&self) -> &Tensor {
        &self.log_density
    }
}

impl Distribution for Delta {
    dist_common!("Delta", v, event);

    sample_by_rsample!();

    fn rsample(&self, sample_shape: &[usize], _rng: &mut dyn RngCore) -> Result<Tensor> {
        Ok(self.v.broadcast_as(self.extended_shape(sample_shape))?)
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        validate_value(self, value)?;
        // ln 1 = 0 where equal, ln 0 = −inf elsewhere, summed over the event.
        let lp = value.broadcast_eq(&self.v)?.to_dtype(self.dtype())?.log()?;
        Ok(sum_rightmost(&lp, self.event.len())?.broadcast_add(&self.log_density)?)
    }

    fn entropy(&self) -> Result<Tensor> {
        Ok(self.log_density.neg()?)
    }

    fn mean(&self) -> Result<Tensor> {
        Ok(self.v.clone())
    }

    fn variance(&self) -> Result<Tensor> {
        Ok(self.v.zeros_like()?)
    }

    fn support(&self) -> Constraint {
        Constraint::Real.independent(self.event.len())
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            let n = self.event.len();
            Ok(Box::new(Delta {
                v: expand_param(self.name(), &self.batch, &self.v, batch_shape, n)?,
                log_density: expand_param(
                    self.name(),
                    &self.batch,
                    &self.log_density,
                    batch_shape,
                    0,
                )?,
                batch: batch_shape.to_vec(),
                event: self.event.clone(),
            }))
        })
    }
}
