//! torch's `ExponentialLR`.

use crate::error::{Check, Result};
use crate::lr_transform::LrTransform;

use super::epoch_schedule;

/// torch's `ExponentialLR`: `lr(e) = base · gammaᵉ`.
///
/// ```
/// use vi_optim::{ExponentialLr, LrSchedule};
///
/// let mut s = ExponentialLr::new(0.9)?;
/// s.advance(None, 0.0)?;
/// s.advance(None, 0.0)?;
/// assert!((s.transform().apply(1.0) - 0.81).abs() < 1e-15);
/// # Ok::<(), vi_optim::OptimError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ExponentialLr {
    gamma: f64,
    epoch: u64,
}

impl ExponentialLr {
    /// Multiply by `gamma ≥ 0` every epoch.
    ///
    /// ```
    /// assert!(vi_optim::ExponentialLr::new(-0.5).is_err());
    /// ```
    pub fn new(gamma: f64) -> Result<Self> {
        Check::new(Self::NAME, None).non_negative("gamma", gamma)?;
        Ok(ExponentialLr { gamma, epoch: 0 })
    }

    const NAME: &'static str = "ExponentialLR";

    fn current(&self) -> LrTransform {
        LrTransform::scaled(self.gamma.powf(self.epoch as f64))
    }
}

epoch_schedule!(ExponentialLr);
