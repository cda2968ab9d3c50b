//! torch's `ExponentialLR`.

use crate::error::{Result, check};
use crate::optimizer::LrTransform;
use crate::state::StateDict;

use super::{LrSchedule, epoch_state, load_epoch};

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
        check(
            "ExponentialLR",
            None,
            "gamma",
            gamma,
            gamma >= 0.0 && gamma.is_finite(),
            "a finite gamma ≥ 0",
        )?;
        Ok(ExponentialLr { gamma, epoch: 0 })
    }
}

impl LrSchedule for ExponentialLr {
    fn name(&self) -> &'static str {
        "ExponentialLR"
    }
    fn transform(&self) -> LrTransform {
        LrTransform::scaled(self.gamma.powf(self.epoch as f64))
    }
    fn advance(&mut self, _: Option<f64>, _: f64) -> Result<()> {
        self.epoch += 1;
        Ok(())
    }
    fn state_dict(&self) -> Result<StateDict> {
        epoch_state(self.epoch)
    }
    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.epoch = load_epoch(self.name(), state)?;
        Ok(())
    }
}
