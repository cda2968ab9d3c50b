//! torch's `StepLR`.

use crate::error::{Result, check};
use crate::optimizer::LrTransform;
use crate::state::StateDict;

use super::{LrSchedule, epoch_state, load_epoch};

/// torch's `StepLR`: the learning rate times `gamma` every `step_size` epochs,
/// `lr(e) = base · gamma^⌊e / step_size⌋`.
///
/// ```
/// use vi_optim::{LrSchedule, StepLr};
///
/// let mut s = StepLr::new(3, 0.1)?;
/// let mut lrs = vec![];
/// for _ in 0..7 {
///     lrs.push(s.transform().apply(1.0));
///     s.advance(None, 0.0)?;
/// }
/// let expected = [1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1f64.powi(2)];
/// assert!(lrs.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-15));
/// # Ok::<(), vi_optim::OptimError>(())
/// ```
#[derive(Clone, Debug)]
pub struct StepLr {
    step_size: u64,
    gamma: f64,
    epoch: u64,
}

impl StepLr {
    /// Multiply by `gamma` every `step_size` epochs (`step_size ≥ 1`, `gamma ≥ 0`).
    ///
    /// ```
    /// assert!(vi_optim::StepLr::new(0, 0.1).is_err());
    /// ```
    pub fn new(step_size: u64, gamma: f64) -> Result<Self> {
        check(
            "StepLR",
            None,
            "step_size",
            step_size as f64,
            step_size >= 1,
            "step_size ≥ 1",
        )?;
        check(
            "StepLR",
            None,
            "gamma",
            gamma,
            gamma >= 0.0 && gamma.is_finite(),
            "a finite gamma ≥ 0",
        )?;
        Ok(StepLr {
            step_size,
            gamma,
            epoch: 0,
        })
    }
}

impl LrSchedule for StepLr {
    fn name(&self) -> &'static str {
        "StepLR"
    }
    fn transform(&self) -> LrTransform {
        LrTransform::scaled(self.gamma.powf((self.epoch / self.step_size) as f64))
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
