//! torch's `StepLR`.

use crate::error::{Check, Result};
use crate::lr_transform::LrTransform;

use super::epoch_schedule;

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
        let check = Check::new(Self::NAME, None);
        check.at_least_one("step_size", step_size)?;
        check.non_negative("gamma", gamma)?;
        Ok(StepLr {
            step_size,
            gamma,
            epoch: 0,
        })
    }

    const NAME: &'static str = "StepLR";

    fn current(&self) -> LrTransform {
        LrTransform::scaled(self.gamma.powf((self.epoch / self.step_size) as f64))
    }
}

epoch_schedule!(StepLr);
