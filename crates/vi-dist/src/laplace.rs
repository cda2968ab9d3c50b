//! The Laplace (double exponential) distribution.

use candle_core::Tensor;
use rand::RngCore;

use crate::constraint::Constraint;
use crate::distribution::{Distribution, validate_value};
use crate::error::{Result, located};
use crate::family::{dist_common, expand_param, loc_scale, sample_by_rsample};
use crate::rng::uniform_inverse;

/// `Laplace(loc, scale)`: density `exp(−|x − loc| / scale) / (2 scale)`, as
/// `torch.distributions.Laplace`. Reparameterised by inversion: `loc + scale · ε` with
/// `ε = ln(2u)` for `u < ½` and `−ln(2(1 − u))` otherwise, `u ~ U(0, 1)`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Distribution, Laplace};
/// let d = Laplace::new(&Tensor::new(0.0f64, &Device::Cpu)?, &Tensor::new(1.0f64, &Device::Cpu)?)?;
/// let lp = d.log_prob(&Tensor::new(-1.0f64, &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp + 1.0 + 2f64.ln()).abs() < 1e-12);
/// assert_eq!(d.variance()?.to_scalar::<f64>()?, 2.0);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Laplace {
    loc: Tensor,
    scale: Tensor,
    batch: Vec<usize>,
}

impl Laplace {
    /// Build from `loc` (mean and median) and `scale` (> 0); the two broadcast against each
    /// other.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Laplace, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = Laplace::new(&Tensor::zeros((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2, 3][..], &[][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn new(loc: &Tensor, scale: &Tensor) -> Result<Self> {
        located(|| {
            let ([loc, scale], batch) = loc_scale("Laplace", loc, scale)?;
            Ok(Self { loc, scale, batch })
        })
    }

    /// The mean (and median), broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Laplace;
    /// let cpu = Device::Cpu;
    /// let d = Laplace::new(&Tensor::zeros((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.loc().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn loc(&self) -> &Tensor {
        &self.loc
    }

    /// The scale (half the variance is `scale²`), broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Laplace;
    /// let cpu = Device::Cpu;
    /// let d = Laplace::new(&Tensor::zeros((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.scale().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn scale(&self) -> &Tensor {
        &self.scale
    }
}

impl Distribution for Laplace {
    dist_common!("Laplace", loc);

    sample_by_rsample!();

    fn rsample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        let shape = self.extended_shape(sample_shape);
        // Each tail from its own side, so 1 − u is exact and neither logarithm loses digits.
        let eps = uniform_inverse(&shape, self.dtype(), self.device(), rng, |u| {
            if u < 0.5 {
                (2.0 * u).ln()
            } else {
                -(2.0 * (1.0 - u)).ln()
            }
        })?;
        Ok(eps.broadcast_mul(&self.scale)?.broadcast_add(&self.loc)?)
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        validate_value(self, value)?;
        // |x − loc| as (x − loc)·sign(x − loc) with the sign held constant: its gradient is the
        // sign, 0 at x = loc (torch's subgradient there; candle's `abs` gives ±1).
        let d = value.broadcast_sub(&self.loc)?;
        let sign = (d.gt(0.0)?.to_dtype(d.dtype())? - d.lt(0.0)?.to_dtype(d.dtype())?)?;
        let z = (d * sign)?.broadcast_div(&self.scale)?;
        let log_2scale = self.scale.log()?.affine(1.0, std::f64::consts::LN_2)?;
        Ok(z.neg()?.broadcast_sub(&log_2scale)?)
    }

    fn entropy(&self) -> Result<Tensor> {
        Ok(self
            .scale
            .log()?
            .affine(1.0, 1.0 + std::f64::consts::LN_2)?)
    }

    fn mean(&self) -> Result<Tensor> {
        Ok(self.loc.clone())
    }

    fn variance(&self) -> Result<Tensor> {
        Ok(self.scale.sqr()?.affine(2.0, 0.0)?)
    }

    fn support(&self) -> Constraint {
        Constraint::Real
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            let e = |t: &Tensor| expand_param(self.name(), &self.batch, t, batch_shape, 0);
            Ok(Box::new(Laplace {
                loc: e(&self.loc)?,
                scale: e(&self.scale)?,
                batch: batch_shape.to_vec(),
            }))
        })
    }
}
