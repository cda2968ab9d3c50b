//! `trace`: record every site.

use crate::error::Result;
use crate::message::Message;
use crate::messenger::Messenger;
use crate::trace::Trace;

/// Records every message it sees into a [`Trace`] (`poutine.trace`). Sample, deterministic
/// and subsample names must be unique within one trace.
#[derive(Debug, Default)]
pub struct TraceMessenger {
    trace: Trace,
}

impl TraceMessenger {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The recorded trace.
    pub fn into_trace(self) -> Trace {
        self.trace
    }
}

impl Messenger for TraceMessenger {
    fn postprocess(&mut self, msg: &Message) -> Result<()> {
        self.trace.record(msg)
    }
}
