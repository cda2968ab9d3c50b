//! `substitute`: replace parameters' values.

use std::collections::HashMap;

use candle_core::Tensor;

use crate::error::Result;
use crate::message::{Message, SiteKind};
use crate::messenger::Messenger;

/// Replaces the named parameters' values (`poutine.substitute` / NumPyro's `substitute`):
/// `ctx.param` returns the given tensor instead of the store's.
///
/// ```
/// # use candle_core::{DType, Device, Tensor};
/// # use vi_dist::{Constraint, Distribution, Normal};
/// # use vi_infer::{Ctx, ParamStore};
/// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
/// # let mut ctx = Ctx::new(&mut store, &mut rng);
/// use vi_infer::handlers::SubstituteMessenger;
/// let (w, _) = ctx.with(SubstituteMessenger::new([("w".to_string(), zero.clone())]), |ctx| {
///     ctx.param("w", &one, Constraint::Real)
/// })?;
/// assert_eq!(w.to_vec1::<f64>()?, vec![0.0; 3]);
/// // The store still holds its own value.
/// assert_eq!(ctx.store().get("w")?.map(|t| t.to_vec1::<f64>()).transpose()?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct SubstituteMessenger {
    data: HashMap<String, Tensor>,
}

impl SubstituteMessenger {
    /// Substitutes `data` (param name → constrained value).
    ///
    /// ```
    /// let _s = vi_infer::handlers::SubstituteMessenger::new(Vec::new());
    /// ```
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
