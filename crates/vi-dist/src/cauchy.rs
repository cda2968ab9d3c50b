//! The Cauchy distribution.

use std::f64::consts::PI;

use candle_core::Tensor;
use rand::RngCore;

use crate::broadcast::full;
use crate::constraint::Constraint;
use crate::distribution::{Distribution, validate_value};
use crate::error::{Result, located};
use crate::family::{dist_common, expand_param, loc_scale, sample_by_rsample};
use crate::rng::uniform_inverse;

/// `Cauchy(loc, scale)`: density `1 / (π scale (1 + ((x − loc) / scale)²))`, as
/// `torch.distributions.Cauchy`. The mean is undefined (`nan`) and the variance infinite, as
/// torch reports them. Reparameterised: `loc + scale · tan(π (u − ½))`, `u ~ U(0, 1)`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Cauchy, Distribution};
/// let d = Cauchy::new(&Tensor::new(0.0f64, &Device::Cpu)?, &Tensor::new(1.0f64, &Device::Cpu)?)?;
/// let lp = d.log_prob(&Tensor::new(1.0f64, &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp + (2.0 * std::f64::consts::PI).ln()).abs() < 1e-12);
/// assert!(d.mean()?.to_scalar::<f64>()?.is_nan());
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Cauchy {
    loc: Tensor,
    scale: Tensor,
    batch: Vec<usize>,
}

impl Cauchy {
    /// Build from `loc` (the median) and `scale` (> 0, the half width at half maximum); the
    /// two broadcast against each other.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Cauchy, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = Cauchy::new(&Tensor::zeros((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2, 3][..], &[][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn new(loc: &Tensor, scale: &Tensor) -> Result<Self> {
        located(|| {
            let ([loc, scale], batch) = loc_scale("Cauchy", loc, scale)?;
            Ok(Self { loc, scale, batch })
        })
    }

    /// The median, broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Cauchy;
    /// let cpu = Device::Cpu;
    /// let d = Cauchy::new(&Tensor::zeros((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.loc().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn loc(&self) -> &Tensor {
        &self.loc
    }

    /// The half width at half maximum, broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Cauchy;
    /// let cpu = Device::Cpu;
    /// let d = Cauchy::new(&Tensor::zeros((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.scale().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn scale(&self) -> &Tensor {
        &self.scale
    }
}

/// Standard Cauchy draws `tan(π (u − ½))`, computed in f64 on the host (shared with
/// HalfCauchy).
pub(crate) fn standard_cauchy(
    shape: &[usize],
    like: &Tensor,
    rng: &mut dyn RngCore,
) -> Result<Tensor> {
    uniform_inverse(shape, like.dtype(), like.device(), rng, |u| {
        (PI * (u - 0.5)).tan()
    })
}

/// The Cauchy log density at distance `a = |x − loc|` from the centre:
/// `−ln π − ln scale − ln(1 + (a / scale)²)` (shared with HalfCauchy), finite wherever the
/// density is (see [`ln_one_plus_ratio_sq`]).
pub(crate) fn cauchy_log_prob(a: &Tensor, scale: &Tensor) -> Result<Tensor> {
    Ok(ln_one_plus_ratio_sq(a, scale)?
        .affine(-1.0, -PI.ln())?
        .broadcast_sub(&scale.log()?)?)
}

/// `ln(1 + (a / t)²)` for `a >= 0`, `t > 0` (broadcast), computed so that `(a / t)²` never
/// overflows: with `m = max(a, t)` and `n = min(a, t)` it is `2 (ln m − ln t) + ln(1 + (n / m)²)`
/// — `ln(1 + (a/t)²)` itself where `a <= t`, `2 ln(a / t) + ln(1 + (t/a)²)` beyond. The
/// log densities of Cauchy, HalfCauchy and StudentT far in their tails (`|x − loc| / scale`
/// above 1e154 in f64, 1e19 in f32), where squaring first gives `−∞` and NaN gradients (as
/// torch does) instead of a finite figure.
pub(crate) fn ln_one_plus_ratio_sq(a: &Tensor, t: &Tensor) -> Result<Tensor> {
    let m = a.broadcast_maximum(t)?;
    let n = a.broadcast_minimum(t)?;
    let ln_ratio = m.log()?.broadcast_sub(&t.log()?)?;
    Ok((ln_ratio.affine(2.0, 0.0)? + crate::ops::log1p(&(n / &m)?.sqr()?)?)?)
}

impl Distribution for Cauchy {
    dist_common!("Cauchy", loc);

    sample_by_rsample!();

    fn rsample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        let shape = self.extended_shape(sample_shape);
        let eps = standard_cauchy(&shape, &self.loc, rng)?;
        Ok(eps.broadcast_mul(&self.scale)?.broadcast_add(&self.loc)?)
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        validate_value(self, value)?;
        let a = value.broadcast_sub(&self.loc)?.abs()?;
        cauchy_log_prob(&a, &self.scale)
    }

    fn entropy(&self) -> Result<Tensor> {
        Ok(self.scale.log()?.affine(1.0, (4.0 * PI).ln())?)
    }

    fn mean(&self) -> Result<Tensor> {
        full(f64::NAN, &self.batch, &self.loc)
    }

    fn variance(&self) -> Result<Tensor> {
        full(f64::INFINITY, &self.batch, &self.loc)
    }

    fn support(&self) -> Constraint {
        Constraint::Real
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            let e = |t: &Tensor| expand_param(self.name(), &self.batch, t, batch_shape, 0);
            Ok(Box::new(Cauchy {
                loc: e(&self.loc)?,
                scale: e(&self.scale)?,
                batch: batch_shape.to_vec(),
            }))
        })
    }
}
