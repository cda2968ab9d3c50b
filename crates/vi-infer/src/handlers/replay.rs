//! `replay`: take sample values from another trace.

use std::collections::HashMap;

use candle_core::Tensor;

use crate::error::Result;
use crate::message::{Message, SiteKind};
use crate::messenger::Messenger;
use crate::trace::Trace;

/// Gives each latent sample site (and each subsampled plate) the value it has in a trace,
/// when the trace has it (`poutine.replay`): the model, replayed against the guide's trace,
/// scores the guide's draws. Observed sites keep their data.
#[derive(Debug, Default)]
pub struct ReplayMessenger {
    values: HashMap<String, Tensor>,
}

impl ReplayMessenger {
    /// Replays the sample and subsample values of `trace`.
    pub fn new(trace: &Trace) -> Self {
        let values = trace
            .sites()
            .filter(|s| matches!(s.kind, SiteKind::Sample | SiteKind::Subsample))
            .map(|s| (s.name.clone(), s.value.clone()))
            .collect();
        Self { values }
    }
}

impl Messenger for ReplayMessenger {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        let replayable = msg.is_latent() || msg.kind == SiteKind::Subsample;
        if replayable && let Some(v) = self.values.get(&msg.name) {
            msg.value = Some(v.clone());
        }
        Ok(())
    }
}
