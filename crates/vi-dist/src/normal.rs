//! The normal distribution.

use std::f64::consts::PI;

use candle_core::Tensor;
use rand::RngCore;

use crate::constraint::Constraint;
use crate::distribution::{Distribution, validate_value};
use crate::error::{Result, located};
use crate::family::{dist_common, expand_param, loc_scale, sample_by_rsample};
use crate::rng::standard_normal;

/// `Normal(loc, scale)`: density `exp(−(x − loc)² / (2 scale²)) / (scale √(2π))`, as
/// `torch.distributions.Normal`. Reparameterised: `loc + scale · ε`, `ε ~ N(0, 1)`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Distribution, Normal};
/// let d = Normal::new(&Tensor::new(0.0f64, &Device::Cpu)?, &Tensor::new(1.0f64, &Device::Cpu)?)?;
/// let lp = d.log_prob(&Tensor::new(0.0f64, &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp + 0.5 * (2.0 * std::f64::consts::PI).ln()).abs() < 1e-12);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Normal {
    loc: Tensor,
    scale: Tensor,
    batch: Vec<usize>,
}

impl Normal {
    /// Build from `loc` and `scale` (> 0); the two broadcast against each other.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Normal, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = Normal::new(&Tensor::zeros((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2, 3][..], &[][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn new(loc: &Tensor, scale: &Tensor) -> Result<Self> {
        located(|| {
            let ([loc, scale], batch) = loc_scale("Normal", loc, scale)?;
            Ok(Self { loc, scale, batch })
        })
    }

    /// The mean parameter, broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Normal;
    /// let cpu = Device::Cpu;
    /// let d = Normal::new(&Tensor::zeros((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.loc().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn loc(&self) -> &Tensor {
        &self.loc
    }

    /// The standard deviation, broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Normal;
    /// let cpu = Device::Cpu;
    /// let d = Normal::new(&Tensor::zeros((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.scale().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn scale(&self) -> &Tensor {
        &self.scale
    }
}

impl Distribution for Normal {
    dist_common!("Normal", loc);

    sample_by_rsample!();

    fn rsample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        let shape = self.extended_shape(sample_shape);
        let eps = standard_normal(&shape, self.dtype(), self.device(), rng)?;
        crate::ops::normal_rsample(&self.loc, &self.scale, &eps)
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        validate_value(self, value)?;
        crate::ops::normal_log_prob(value, &self.loc, &self.scale)
    }

    fn log_prob_summed(&self, value: &Tensor, dims: usize) -> Option<Result<Tensor>> {
        Some(
            validate_value(self, value)
                .and_then(|_| crate::ops::normal_log_prob_sum(value, &self.loc, &self.scale, dims)),
        )
    }

    fn entropy(&self) -> Result<Tensor> {
        Ok(self.scale.log()?.affine(1.0, 0.5 + 0.5 * (2.0 * PI).ln())?)
    }

    fn mean(&self) -> Result<Tensor> {
        Ok(self.loc.clone())
    }

    fn variance(&self) -> Result<Tensor> {
        Ok(self.scale.sqr()?)
    }

    fn support(&self) -> Constraint {
        Constraint::Real
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            let e = |t: &Tensor| expand_param(self.name(), &self.batch, t, batch_shape, 0);
            Ok(Box::new(Normal {
                loc: e(&self.loc)?,
                scale: e(&self.scale)?,
                batch: batch_shape.to_vec(),
            }))
        })
    }
}
