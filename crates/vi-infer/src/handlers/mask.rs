//! `mask`: count log-densities only where a mask is set.

use candle_core::{DType, Tensor};

use crate::error::Result;
use crate::message::Message;
use crate::messenger::Messenger;

/// Counts the log-density of every sample site inside only where `mask` is set
/// (`poutine.mask`); masks combine by logical and. The mask broadcasts against each site's
/// batch shape.
#[derive(Debug)]
pub struct MaskMessenger {
    mask: Tensor,
}

impl MaskMessenger {
    /// Masks with `mask` (any dtype: nonzero counts).
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
