//! `scale`: multiply log-densities.

use crate::error::{InferError, Result};
use crate::message::Message;
use crate::messenger::Messenger;

/// Multiplies the log-density of every sample site inside by a positive factor
/// (`poutine.scale`), e.g. to weight a likelihood term (KL annealing).
#[derive(Debug)]
pub struct ScaleMessenger {
    factor: f64,
}

impl ScaleMessenger {
    /// Scales by `factor`, which must be positive and finite.
    ///
    /// ```
    /// assert!(vi_infer::handlers::ScaleMessenger::new(0.5).is_ok());
    /// assert!(vi_infer::handlers::ScaleMessenger::new(-1.0).is_err());
    /// ```
    pub fn new(factor: f64) -> Result<Self> {
        if !(factor.is_finite() && factor > 0.0) {
            return Err(InferError::Invalid(format!(
                "scale: the factor must be positive and finite, got {factor}"
            )));
        }
        Ok(Self { factor })
    }
}

impl Messenger for ScaleMessenger {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        msg.scale *= self.factor;
        Ok(())
    }
}
