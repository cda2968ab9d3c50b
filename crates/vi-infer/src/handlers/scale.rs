//! `scale`: multiply log-densities.

use crate::error::{InferError, Result};
use crate::message::Message;
use crate::messenger::Messenger;

/// Multiplies the log-density of every sample site inside by a positive factor
/// (`poutine.scale`), e.g. to weight a likelihood term (KL annealing).
///
/// ```
/// # use candle_core::{DType, Device, Tensor};
/// # use rand::SeedableRng;
/// # use vi_dist::{Constraint, Distribution, Normal};
/// # use vi_infer::{Ctx, ParamStore};
/// # let dev = Device::Cpu;
/// # let mut store = ParamStore::new(&dev, DType::F64);
/// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// # let mut ctx = Ctx::new(&mut store, &mut rng);
/// # let zero = Tensor::zeros(3, DType::F64, &dev)?;
/// # let one = Tensor::ones(3, DType::F64, &dev)?;
/// use vi_infer::handlers::ScaleMessenger;
/// let (_, tr) = ctx.trace(|ctx| ctx.with(ScaleMessenger::new(0.1)?, |ctx| ctx.sample("z", Normal::new(&zero, &one)?)))?;
/// assert_eq!(tr.get("z").unwrap().scale, 0.1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
