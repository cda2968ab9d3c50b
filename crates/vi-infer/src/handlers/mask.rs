//! `mask`: count log-densities only where a mask is set.

use candle_core::{DType, Tensor};

use crate::error::Result;
use crate::message::Message;
use crate::messenger::Messenger;

/// Counts the log-density of every sample site inside only where `mask` is set
/// (`poutine.mask`); masks combine by logical and. The mask broadcasts against each site's
/// batch shape.
///
/// ```
/// # use candle_core::{DType, Device, Tensor};
/// # use vi_dist::{Constraint, Distribution, Normal};
/// # use vi_infer::{Ctx, ParamStore};
/// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
/// # let mut ctx = Ctx::new(&mut store, &mut rng);
/// use vi_infer::handlers::MaskMessenger;
/// let m = Tensor::new(&[0.0f64, 1.0, 1.0], &dev)?; // nonzero counts
/// let (_, tr) = ctx.trace(|ctx| ctx.with(MaskMessenger::new(&m)?, |ctx| ctx.sample("z", Normal::new(&zero, &one)?)))?;
/// assert_eq!(tr.get("z").unwrap().log_prob()?.to_vec1::<f64>()?[0], 0.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MaskMessenger {
    mask: Tensor,
}

impl MaskMessenger {
    /// Masks with `mask` (any dtype: nonzero counts).
    ///
    /// ```
    /// let m = candle_core::Tensor::new(&[1u8, 0], &candle_core::Device::Cpu)?;
    /// let _h = vi_infer::handlers::MaskMessenger::new(&m)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(mask: &Tensor) -> Result<Self> {
        let mask = if mask.dtype() == DType::U8 {
            mask.clone()
        } else {
            mask.ne(0.0)?
        };
        Ok(Self { mask })
    }
}

impl Messenger for MaskMessenger {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        msg.mask = Some(match &msg.mask {
            None => self.mask.clone(),
            Some(m) => m.broadcast_mul(&self.mask)?,
        });
        Ok(())
    }
}
