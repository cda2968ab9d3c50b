//! The log-normal distribution.

use std::f64::consts::PI;

use candle_core::Tensor;
use rand::RngCore;

use crate::constraint::Constraint;
use crate::distribution::{Distribution, validate_value};
use crate::error::{Result, located};
use crate::family::{dist_common, expand_param, loc_scale, sample_by_rsample};
use crate::rng::standard_normal;

/// `LogNormal(loc, scale)`: the law of `exp(y)` for `y ~ Normal(loc, scale)`, as
/// `torch.distributions.LogNormal`. Density
/// `exp(−(ln x − loc)² / (2 scale²)) / (x scale √(2π))` on `x > 0`.
/// Reparameterised: `exp(loc + scale · ε)`, `ε ~ N(0, 1)`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Distribution, LogNormal};
/// let d = LogNormal::new(&Tensor::new(0.0f64, &Device::Cpu)?, &Tensor::new(1.0f64, &Device::Cpu)?)?;
/// // at x = 1, ln x = 0: the normal density at its mode.
/// let lp = d.log_prob(&Tensor::new(1.0f64, &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp + 0.5 * (2.0 * std::f64::consts::PI).ln()).abs() < 1e-12);
/// let mean = d.mean()?.to_scalar::<f64>()?;
/// assert!((mean - 0.5f64.exp()).abs() < 1e-12);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct LogNormal {
    loc: Tensor,
    scale: Tensor,
    batch: Vec<usize>,
}

impl LogNormal {
    /// Build from `loc` and `scale` (> 0) of the underlying normal; the two broadcast against
    /// each other.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{LogNormal, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = LogNormal::new(&Tensor::zeros((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2, 3][..], &[][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn new(loc: &Tensor, scale: &Tensor) -> Result<Self> {
        located(|| {
            let ([loc, scale], batch) = loc_scale("LogNormal", loc, scale)?;
            Ok(Self { loc, scale, batch })
        })
    }

    /// The mean of `ln x`, broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::LogNormal;
    /// let cpu = Device::Cpu;
    /// let d = LogNormal::new(&Tensor::zeros((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.loc().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn loc(&self) -> &Tensor {
        &self.loc
    }

    /// The standard deviation of `ln x`, broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::LogNormal;
    /// let cpu = Device::Cpu;
    /// let d = LogNormal::new(&Tensor::zeros((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.scale().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn scale(&self) -> &Tensor {
        &self.scale
    }
}

impl Distribution for LogNormal {
    dist_common!("LogNormal", loc);

    sample_by_rsample!();

    fn rsample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        let shape = self.extended_shape(sample_shape);
        let eps = standard_normal(&shape, self.dtype(), self.device(), rng)?;
        Ok(crate::ops::normal_rsample(&self.loc, &self.scale, &eps)?.exp()?)
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        validate_value(self, value)?;
        // The normal log density of ln x, less ln x (the Jacobian of exp), as torch's
        // TransformedDistribution(Normal, ExpTransform).
        let log_x = value.log()?;
        Ok(crate::ops::normal_log_prob(&log_x, &self.loc, &self.scale)?.broadcast_sub(&log_x)?)
    }

    fn entropy(&self) -> Result<Tensor> {
        Ok((self.scale.log()? + &self.loc)?.affine(1.0, 0.5 + 0.5 * (2.0 * PI).ln())?)
    }

    fn mean(&self) -> Result<Tensor> {
        Ok((&self.loc + self.scale.sqr()?.affine(0.5, 0.0)?)?.exp()?)
    }

    fn variance(&self) -> Result<Tensor> {
        // (e^{σ²} − 1) e^{2μ + σ²}, with expm1 for small σ as torch.
        let s2 = self.scale.sqr()?;
        let growth = (self.loc.affine(2.0, 0.0)? + &s2)?.exp()?;
        Ok((crate::ops::expm1(&s2)? * growth)?)
    }

    fn support(&self) -> Constraint {
        Constraint::Positive
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            let e = |t: &Tensor| expand_param(self.name(), &self.batch, t, batch_shape, 0);
            Ok(Box::new(LogNormal {
                loc: e(&self.loc)?,
                scale: e(&self.scale)?,
                batch: batch_shape.to_vec(),
            }))
        })
    }
}
