//! The Gumbel (type-I extreme value) distribution.

use std::f64::consts::PI;

use candle_core::Tensor;
use rand::RngCore;

use crate::constraint::Constraint;
use crate::distribution::{Distribution, validate_value};
use crate::error::{Result, located};
use crate::family::{dist_common, expand_param, loc_scale, sample_by_rsample};
use crate::rng::uniform_inverse;

/// The Euler–Mascheroni constant γ (the mean of the standard Gumbel).
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// `Gumbel(loc, scale)`: density `exp(−(z + e^{−z})) / scale` with `z = (x − loc) / scale`, as
/// `torch.distributions.Gumbel`. Reparameterised: `loc − scale · ln(−ln u)`, `u ~ U(0, 1)`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Distribution, Gumbel};
/// let d = Gumbel::new(&Tensor::new(0.0f64, &Device::Cpu)?, &Tensor::new(1.0f64, &Device::Cpu)?)?;
/// let lp = d.log_prob(&Tensor::new(0.0f64, &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp + 1.0).abs() < 1e-12);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Gumbel {
    loc: Tensor,
    scale: Tensor,
    batch: Vec<usize>,
}

impl Gumbel {
    /// Build from `loc` (the mode) and `scale` (> 0); the two broadcast against each other.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Gumbel, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = Gumbel::new(&Tensor::zeros((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2, 3][..], &[][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn new(loc: &Tensor, scale: &Tensor) -> Result<Self> {
        located(|| {
            let ([loc, scale], batch) = loc_scale("Gumbel", loc, scale)?;
            Ok(Self { loc, scale, batch })
        })
    }

    /// The location (mode), broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Gumbel;
    /// let cpu = Device::Cpu;
    /// let d = Gumbel::new(&Tensor::zeros((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.loc().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn loc(&self) -> &Tensor {
        &self.loc
    }

    /// The scale, broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Gumbel;
    /// let cpu = Device::Cpu;
    /// let d = Gumbel::new(&Tensor::zeros((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.scale().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn scale(&self) -> &Tensor {
        &self.scale
    }
}

impl Distribution for Gumbel {
    dist_common!("Gumbel", loc);

    sample_by_rsample!();

    fn rsample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        let shape = self.extended_shape(sample_shape);
        let eps = uniform_inverse(&shape, self.dtype(), self.device(), rng, |u| {
            -(-u.ln()).ln()
        })?;
        Ok(eps.broadcast_mul(&self.scale)?.broadcast_add(&self.loc)?)
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        validate_value(self, value)?;
        // y = −z = (loc − x) / scale; log density y − e^y − ln scale, as torch.
        let y = value
            .broadcast_sub(&self.loc)?
            .broadcast_div(&self.scale)?
            .neg()?;
        Ok((&y - y.exp()?)?.broadcast_sub(&self.scale.log()?)?)
    }

    fn entropy(&self) -> Result<Tensor> {
        Ok(self.scale.log()?.affine(1.0, 1.0 + EULER_GAMMA)?)
    }

    fn mean(&self) -> Result<Tensor> {
        Ok((&self.loc + self.scale.affine(EULER_GAMMA, 0.0)?)?)
    }

    fn variance(&self) -> Result<Tensor> {
        Ok(self.scale.sqr()?.affine(PI * PI / 6.0, 0.0)?)
    }

    fn support(&self) -> Constraint {
        Constraint::Real
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            let e = |t: &Tensor| expand_param(self.name(), &self.batch, t, batch_shape, 0);
            Ok(Box::new(Gumbel {
                loc: e(&self.loc)?,
                scale: e(&self.scale)?,
                batch: batch_shape.to_vec(),
            }))
        })
    }
}
