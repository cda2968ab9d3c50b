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
///
/// ```
/// # use candle_core::{DType, Device, Tensor};
/// # use vi_dist::{Constraint, Distribution, Normal};
/// # use vi_infer::{Ctx, ParamStore};
/// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
/// # let mut ctx = Ctx::new(&mut store, &mut rng);
/// use vi_infer::handlers::ReplayMessenger;
/// let (z, guide) = ctx.trace(|ctx| ctx.sample("z", Normal::new(&zero, &one)?))?;
/// let (again, _) = ctx.with(ReplayMessenger::new(&guide), |ctx| ctx.sample("z", Normal::new(&one, &one)?))?;
/// assert_eq!(z.to_vec1::<f64>()?, again.to_vec1::<f64>()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct ReplayMessenger {
    values: HashMap<String, Tensor>,
    /// A trace replayed in place (the ELBOs' guide trace, moved in and taken back out, so
    /// that no value or name is copied).
    trace: Option<Trace>,
}

impl ReplayMessenger {
    /// Replays the sample and subsample values of `trace`.
    ///
    /// ```
    /// let empty = vi_infer::Trace::new();
    /// let _replay = vi_infer::handlers::ReplayMessenger::new(&empty);
    /// ```
    pub fn new(trace: &Trace) -> Self {
        let values = trace
            .sites()
            .filter(|s| matches!(s.kind, SiteKind::Sample | SiteKind::Subsample))
            .map(|s| (s.name.clone(), s.value.clone()))
            .collect();
        Self {
            values,
            trace: None,
        }
    }

    /// Replays the given values (site name → value) at the latent sample sites and subsampled
    /// plates of those names, as a trace holding them would.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// use vi_infer::handlers::ReplayMessenger;
    /// let replay = ReplayMessenger::from_values([("z".to_string(), one.clone())]);
    /// let (z, _) = ctx.with(replay, |ctx| ctx.sample("z", Normal::new(&zero, &one)?))?;
    /// assert_eq!(z.to_vec1::<f64>()?, vec![1.0; 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_values(values: impl IntoIterator<Item = (String, Tensor)>) -> Self {
        Self {
            values: values.into_iter().collect(),
            trace: None,
        }
    }

    /// Replays `trace` without copying it; [`into_trace`](Self::into_trace) gives it back.
    pub(crate) fn owning(trace: Trace) -> Self {
        Self {
            values: HashMap::new(),
            trace: Some(trace),
        }
    }

    /// The trace given to [`owning`](Self::owning).
    pub(crate) fn into_trace(self) -> Option<Trace> {
        self.trace
    }
}

impl Messenger for ReplayMessenger {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        let replayable = msg.is_latent() || msg.kind == SiteKind::Subsample;
        if !replayable {
            return Ok(());
        }
        let value = match &self.trace {
            Some(tr) => {
                let site = tr
                    .get(&msg.name)
                    .filter(|s| matches!(s.kind, SiteKind::Sample | SiteKind::Subsample));
                // A value enumerated in the guide (or drawn there from a distribution over
                // enumerated values) keeps its enumeration dims in the model.
                if let Some(s) = site
                    && !s.infer.dim_ids.is_empty()
                {
                    msg.infer.enum_dim = s.infer.enum_dim;
                    msg.infer.dim_ids = s.infer.dim_ids.clone();
                }
                site.map(|s| &s.value)
            }
            None => self.values.get(&msg.name),
        };
        if let Some(v) = value {
            msg.value = Some(v.clone());
        }
        Ok(())
    }
}
