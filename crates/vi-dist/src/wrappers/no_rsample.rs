//! `NoRsample`: a distribution that hides its reparameterised sampler (Pyro's
//! `.has_rsample_(False)`), so that inference takes the score-function path.

use crate::distribution::Distribution;
use crate::error::Result;

/// The base distribution with `has_rsample() == false`: draws are detached, and an ELBO that
/// meets it in a guide uses the score-function gradient (`TraceElbo`) instead of the pathwise
/// one. Everything else is the base's.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Distribution, Normal};
/// let d = Normal::new(&Tensor::new(0.0f64, &Device::Cpu)?, &Tensor::new(1.0f64, &Device::Cpu)?)?;
/// assert!(d.has_rsample());
/// assert!(!d.without_rsample().has_rsample());
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct NoRsample {
    base: Box<dyn Distribution>,
}

impl NoRsample {
    /// `base` without its reparameterised sampler.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::{Distribution, Normal, NoRsample};
    /// let n = Normal::new(&Tensor::new(0.0f64, &Device::Cpu)?, &Tensor::new(1.0f64, &Device::Cpu)?)?;
    /// let d = NoRsample::new(Box::new(n));
    /// assert_eq!(d.base().name(), "Normal");
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn new(base: Box<dyn Distribution>) -> Self {
        Self { base }
    }

    /// The wrapped distribution.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::{Distribution, Normal};
    /// let n = Normal::new(&Tensor::new(0.0f64, &Device::Cpu)?, &Tensor::new(1.0f64, &Device::Cpu)?)?;
    /// assert!(n.without_rsample().base().has_rsample());
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn base(&self) -> &dyn Distribution {
        self.base.as_ref()
    }
}

impl Distribution for NoRsample {
    fn name(&self) -> &'static str {
        "NoRsample"
    }
    forward_to_base! {
        batch_shape, event_shape, dtype, device, sample, log_prob,
        validate, entropy, mean, variance, support, enumerate_support, feasible_like, boxed
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        Ok(Box::new(NoRsample::new(self.base.expand(batch_shape)?)))
    }
    fn describe(&self) -> String {
        format!("NoRsample({})", self.base.describe())
    }
}
