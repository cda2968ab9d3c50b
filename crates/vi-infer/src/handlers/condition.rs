//! `condition`: fix sample sites to data.

use std::collections::HashMap;

use candle_core::Tensor;

use crate::error::Result;
use crate::message::{Message, SiteKind};
use crate::messenger::Messenger;

/// Fixes the named sample sites to the given values and marks them observed
/// (`poutine.condition`): a latent site becomes a likelihood term.
#[derive(Debug, Default)]
pub struct ConditionMessenger {
    data: HashMap<String, Tensor>,
}

impl ConditionMessenger {
    /// Conditions on `data` (site name → value).
    pub fn new(data: impl IntoIterator<Item = (String, Tensor)>) -> Self {
        Self {
            data: data.into_iter().collect(),
        }
    }
}

impl Messenger for ConditionMessenger {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if msg.kind == SiteKind::Sample
            && let Some(v) = self.data.get(&msg.name)
        {
            msg.value = Some(v.clone());
            msg.is_observed = true;
        }
        Ok(())
    }
}
