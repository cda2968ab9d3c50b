//! The continuous uniform distribution.

use candle_core::Tensor;
use rand::RngCore;

use crate::broadcast::broadcast_params;
use crate::constraint::{Bound, Constraint};
use crate::distribution::{Distribution, validate_param, validate_value};
use crate::error::{Result, located};
use crate::family::{dist_common, expand_param, sample_by_rsample};
use crate::rng::uniform_open01;

/// `Uniform(low, high)`: density `1 / (high − low)` on `[low, high)`, as
/// `torch.distributions.Uniform` (`log_prob` is `−inf` outside when validation is off, and at
/// `high` itself, as torch). Reparameterised: `low + u · (high − low)`, `u ~ U(0, 1)`, so
/// gradients reach both bounds.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Distribution, Uniform};
/// let d = Uniform::new(&Tensor::new(1.0f64, &Device::Cpu)?, &Tensor::new(5.0f64, &Device::Cpu)?)?;
/// let lp = d.log_prob(&Tensor::new(2.0f64, &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp + 4f64.ln()).abs() < 1e-12);
/// assert_eq!(d.mean()?.to_scalar::<f64>()?, 3.0);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Uniform {
    low: Tensor,
    high: Tensor,
    batch: Vec<usize>,
}

impl Uniform {
    /// Build from `low < high`; the two broadcast against each other. With validation on, a
    /// NaN bound is a [`DistError::ParamSupport`](crate::DistError) naming it, and
    /// `low >= high` one naming `high` with constraint `greater_than(low)` (torch raises a
    /// `ValueError` for the same).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Uniform, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = Uniform::new(&Tensor::zeros((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2, 3][..], &[][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn new(low: &Tensor, high: &Tensor) -> Result<Self> {
        located(|| {
            let ([low, high], batch) =
                broadcast_params("Uniform", [("low", low, 0), ("high", high, 0)])?;
            validate_param("Uniform", "low", &low, &Constraint::Real)?;
            validate_param("Uniform", "high", &high, &Constraint::Real)?;
            let above_low = Constraint::greater_than(Bound::Tensor(low.clone()));
            validate_param("Uniform", "high", &high, &above_low)?;
            Ok(Self { low, high, batch })
        })
    }

    /// The lower bound, broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Uniform;
    /// let cpu = Device::Cpu;
    /// let d = Uniform::new(&Tensor::zeros((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.low().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn low(&self) -> &Tensor {
        &self.low
    }

    /// The upper bound, broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Uniform;
    /// let cpu = Device::Cpu;
    /// let d = Uniform::new(&Tensor::zeros((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.high().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn high(&self) -> &Tensor {
        &self.high
    }

    fn width(&self) -> Result<Tensor> {
        Ok((&self.high - &self.low)?)
    }
}

impl Distribution for Uniform {
    dist_common!("Uniform", low);

    sample_by_rsample!();

    fn rsample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        let shape = self.extended_shape(sample_shape);
        let u = uniform_open01(&shape, self.dtype(), self.device(), rng)?;
        Ok(u.broadcast_mul(&self.width()?)?.broadcast_add(&self.low)?)
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        validate_value(self, value)?;
        // ln 1 = 0 inside [low, high), ln 0 = −inf outside; the indicator carries no gradient.
        let inside = value
            .broadcast_ge(&self.low)?
            .broadcast_mul(&value.broadcast_lt(&self.high)?)?
            .to_dtype(self.dtype())?
            .log()?;
        Ok(inside.broadcast_sub(&self.width()?.log()?)?)
    }

    fn entropy(&self) -> Result<Tensor> {
        Ok(self.width()?.log()?)
    }

    fn mean(&self) -> Result<Tensor> {
        Ok((&self.low + &self.high)?.affine(0.5, 0.0)?)
    }

    fn variance(&self) -> Result<Tensor> {
        Ok(self.width()?.sqr()?.affine(1.0 / 12.0, 0.0)?)
    }

    fn support(&self) -> Constraint {
        Constraint::interval(&self.low, &self.high)
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            let e = |t: &Tensor| expand_param(self.name(), &self.batch, t, batch_shape, 0);
            Ok(Box::new(Uniform {
                low: e(&self.low)?,
                high: e(&self.high)?,
                batch: batch_shape.to_vec(),
            }))
        })
    }
}
