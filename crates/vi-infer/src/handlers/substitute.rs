//! `substitute`: replace parameters' values.

use std::collections::HashMap;

use candle_core::Tensor;

use crate::error::Result;
use crate::message::{Message, SiteKind};
use crate::messenger::Messenger;

/// Replaces the named parameters' values (`poutine.substitute` / NumPyro's `substitute`):
/// `ctx.param` returns the given tensor instead of the store's.
#[derive(Debug, Default)]
pub struct SubstituteMessenger {
    data: HashMap<String, Tensor>,
}

impl SubstituteMessenger {
    /// Substitutes `data` (param name → constrained value).
    pub fn new(data: impl IntoIterator<Item = (String, Tensor)>) -> Self {
        Self {
            data: data.into_iter().collect(),
        }
    }
}

impl Messenger for SubstituteMessenger {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if msg.kind == SiteKind::Param
            && let Some(v) = self.data.get(&msg.name)
        {
            msg.value = Some(v.clone());
        }
        Ok(())
    }
}
