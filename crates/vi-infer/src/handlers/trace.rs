//! `trace`: record every site.

use crate::error::Result;
use crate::message::Message;
use crate::messenger::Messenger;
use crate::trace::Trace;

/// Records every message it sees into a [`Trace`] (`poutine.trace`). Sample, deterministic
/// and subsample names must be unique within one trace.
///
/// ```
/// # use candle_core::{DType, Device, Tensor};
/// # use vi_dist::{Constraint, Distribution, Normal};
/// # use vi_infer::{Ctx, ParamStore};
/// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
/// # let mut ctx = Ctx::new(&mut store, &mut rng);
/// use vi_infer::handlers::TraceMessenger;
/// let (_, h) = ctx.with(TraceMessenger::new(), |ctx| ctx.sample("z", Normal::new(&zero, &one)?))?;
/// assert_eq!(h.into_trace().names().collect::<Vec<_>>(), ["z"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct TraceMessenger {
    trace: Trace,
}

impl TraceMessenger {
    /// An empty recorder.
    ///
    /// ```
    /// let h = vi_infer::handlers::TraceMessenger::new();
    /// assert!(h.into_trace().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The trace recorded so far, mutably (the context records into it directly).
    pub(crate) fn trace_mut(&mut self) -> &mut Trace {
        &mut self.trace
    }

    /// The recorded trace.
    ///
    /// ```
    /// let trace = vi_infer::handlers::TraceMessenger::new().into_trace();
    /// assert_eq!(trace.len(), 0);
    /// ```
    pub fn into_trace(self) -> Trace {
        self.trace
    }
}

impl Messenger for TraceMessenger {
    fn postprocess(&mut self, msg: &Message) -> Result<()> {
        self.trace.record(msg)
    }
}
