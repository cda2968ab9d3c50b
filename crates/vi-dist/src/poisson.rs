//! The Poisson distribution.

use candle_core::Tensor;
use rand::RngCore;
use rand_distr::Distribution as _;

use crate::broadcast::broadcast_params;
use crate::constraint::Constraint;
use crate::distribution::{Distribution, validate_param, validate_value};
use crate::error::{DistError, Result, located};
use crate::family::{dist_common, expand_param};
use crate::ops::xlogy_torch_grad as xlogy;
use crate::probs::{float_value, host_samplers};
use crate::rng::draw_each;

/// `Poisson(rate)` on `0, 1, 2, …`: `P(k) = rateᵏ e^{−rate} / k!`, as
/// `torch.distributions.Poisson`.
///
/// `log_prob(k) = k·ln(rate) − rate − ln Γ(k + 1)`, with `0·ln 0 = 0` so that `rate = 0`
/// puts all mass on 0 (torch's `xlogy`). The entropy has no closed form (torch has none
/// either): [`entropy`](Distribution::entropy) returns [`DistError::Undefined`]. Values may be
/// floats holding integers or integer tensors. Not reparameterisable.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Distribution, Poisson};
/// let d = Poisson::new(&Tensor::new(2.0f64, &Device::Cpu)?)?;
/// let lp = d.log_prob(&Tensor::new(3.0f64, &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp - (8.0f64.ln() - 2.0 - 6.0f64.ln())).abs() < 1e-12);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Poisson {
    rate: Tensor,
    batch: Vec<usize>,
}

impl Poisson {
    /// Build from the mean `rate` (>= 0).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Poisson, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = Poisson::new(&Tensor::ones((2, 3), DType::F64, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2, 3][..], &[][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn new(rate: &Tensor) -> Result<Self> {
        located(|| {
            let ([rate], batch) = broadcast_params("Poisson", [("rate", rate, 0)])?;
            validate_param("Poisson", "rate", &rate, &Constraint::NonNegative)?;
            Ok(Self { rate, batch })
        })
    }

    /// The rate (mean), broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Poisson;
    /// let cpu = Device::Cpu;
    /// let d = Poisson::new(&Tensor::ones((2, 3), DType::F64, &cpu)?)?;
    /// assert_eq!(d.rate().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn rate(&self) -> &Tensor {
        &self.rate
    }
}

impl Distribution for Poisson {
    dist_common!("Poisson", rate);

    fn sample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        // rand_distr's Poisson needs rate > 0; a rate of 0 always gives 0.
        let samplers = host_samplers(self.name(), "rate", &self.rate, |r| {
            if r == 0.0 {
                Ok(None)
            } else {
                rand_distr::Poisson::new(r).map(Some)
            }
        })?;
        draw_each(self, &samplers, sample_shape, rng, |s, r| {
            s.as_ref().map_or(0.0, |p| p.sample(r))
        })
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let value = float_value(value, self.dtype())?;
        let out = validate_value(self, &value)?;
        let k = value.broadcast_as(out.as_slice())?;
        // k·ln(rate) with 0·ln 0 = 0, so rate = 0 puts all mass on 0.
        let log_factorial = crate::ops::lgamma(&k.affine(1.0, 1.0)?)?;
        let lp = xlogy(&k, &self.rate)?.broadcast_sub(&self.rate)?;
        Ok((lp - log_factorial)?)
    }

    fn entropy(&self) -> Result<Tensor> {
        Err(DistError::Undefined {
            dist: self.name(),
            what: "entropy",
        })
    }

    fn mean(&self) -> Result<Tensor> {
        Ok(self.rate.clone())
    }

    fn variance(&self) -> Result<Tensor> {
        Ok(self.rate.clone())
    }

    fn support(&self) -> Constraint {
        Constraint::NonNegativeInteger
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            Ok(Box::new(Poisson {
                rate: expand_param(self.name(), &self.batch, &self.rate, batch_shape, 0)?,
                batch: batch_shape.to_vec(),
            }))
        })
    }
}
