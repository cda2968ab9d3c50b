//! The exponential distribution.

use candle_core::Tensor;
use rand::RngCore;

use crate::broadcast::broadcast_params;
use crate::constraint::Constraint;
use crate::distribution::{Distribution, validate_param, validate_value};
use crate::error::{Result, located};
use crate::family::{dist_common, expand_param, sample_by_rsample};
use crate::rng::uniform_inverse;

/// `Exponential(rate)`: density `rate · exp(−rate · x)` on `x ≥ 0`, as
/// `torch.distributions.Exponential` (whose `log_prob` does not mask negative values when
/// validation is off; nor does this one). Reparameterised: `ε / rate`, `ε = −ln u`,
/// `u ~ U(0, 1)`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Distribution, Exponential};
/// let d = Exponential::new(&Tensor::new(2.0f64, &Device::Cpu)?)?;
/// let lp = d.log_prob(&Tensor::new(0.5f64, &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp - (2f64.ln() - 1.0)).abs() < 1e-12);
/// assert_eq!(d.mean()?.to_scalar::<f64>()?, 0.5);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Exponential {
    rate: Tensor,
    batch: Vec<usize>,
}

impl Exponential {
    /// Build from `rate` (> 0), the inverse of the mean.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Exponential, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = Exponential::new(&Tensor::ones((2, 3), DType::F64, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2, 3][..], &[][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn new(rate: &Tensor) -> Result<Self> {
        located(|| {
            let ([rate], batch) = broadcast_params("Exponential", [("rate", rate, 0)])?;
            validate_param("Exponential", "rate", &rate, &Constraint::Positive)?;
            Ok(Self { rate, batch })
        })
    }

    /// The rate, shape `batch`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Exponential;
    /// let cpu = Device::Cpu;
    /// let d = Exponential::new(&Tensor::ones((2, 3), DType::F64, &cpu)?)?;
    /// assert_eq!(d.rate().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn rate(&self) -> &Tensor {
        &self.rate
    }
}

/// Standard exponential draws `−ln u`, computed in f64 on the host (shared with Pareto).
pub(crate) fn standard_exponential(
    shape: &[usize],
    like: &Tensor,
    rng: &mut dyn RngCore,
) -> Result<Tensor> {
    uniform_inverse(shape, like.dtype(), like.device(), rng, |u| -u.ln())
}

impl Distribution for Exponential {
    dist_common!("Exponential", rate);

    sample_by_rsample!();

    fn rsample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        let shape = self.extended_shape(sample_shape);
        let eps = standard_exponential(&shape, &self.rate, rng)?;
        Ok(eps.broadcast_div(&self.rate)?)
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        validate_value(self, value)?;
        Ok(self
            .rate
            .log()?
            .broadcast_sub(&value.broadcast_mul(&self.rate)?)?)
    }

    fn entropy(&self) -> Result<Tensor> {
        Ok(self.rate.log()?.affine(-1.0, 1.0)?)
    }

    fn mean(&self) -> Result<Tensor> {
        Ok(self.rate.recip()?)
    }

    fn variance(&self) -> Result<Tensor> {
        Ok(self.rate.sqr()?.recip()?)
    }

    fn support(&self) -> Constraint {
        Constraint::NonNegative
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            Ok(Box::new(Exponential {
                rate: expand_param(self.name(), &self.batch, &self.rate, batch_shape, 0)?,
                batch: batch_shape.to_vec(),
            }))
        })
    }
}
