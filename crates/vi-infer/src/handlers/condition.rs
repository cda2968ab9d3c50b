//! `condition`: fix sample sites to data.

use std::collections::HashMap;

use candle_core::Tensor;

use crate::error::Result;
use crate::message::{Message, SiteKind};
use crate::messenger::Messenger;

/// Fixes the named sample sites to the given values and marks them observed
/// (`poutine.condition`): a latent site becomes a likelihood term.
///
/// ```
/// # use candle_core::{DType, Device, Tensor};
/// # use vi_dist::{Constraint, Distribution, Normal};
/// # use vi_infer::{Ctx, ParamStore};
/// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
/// # let mut ctx = Ctx::new(&mut store, &mut rng);
/// use vi_infer::handlers::ConditionMessenger;
/// let data = [("z".to_string(), one.clone())];
/// let (z, _) = ctx.with(ConditionMessenger::new(data), |ctx| ctx.sample("z", Normal::new(&zero, &one)?))?;
/// assert_eq!(z.to_vec1::<f64>()?, vec![1.0; 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct ConditionMessenger {
    data: HashMap<String, Tensor>,
}

impl ConditionMessenger {
    /// Conditions on `data` (site name → value).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// let data: HashMap<String, candle_core::Tensor> = HashMap::new();
    /// let _c = vi_infer::handlers::ConditionMessenger::new(data);
    /// ```
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
