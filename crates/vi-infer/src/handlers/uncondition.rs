//! `uncondition`: draw observed sites instead of scoring data.

use crate::error::Result;
use crate::message::{Message, SiteKind};
use crate::messenger::Messenger;

/// Releases observed sample sites (`poutine.uncondition`): their data is set aside and a value
/// is drawn from the distribution instead, recorded as a latent site. Factors
/// (`ctx.factor`, a [`Unit`](vi_dist::Unit) distribution) stay as they are. A posterior
/// predictive draws the observations this way.
///
/// ```
/// # use candle_core::{DType, Device, Tensor};
/// # use vi_dist::{Constraint, Distribution, Normal};
/// # use vi_infer::{Ctx, ParamStore};
/// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
/// # let mut ctx = Ctx::new(&mut store, &mut rng);
/// use vi_infer::handlers::UnconditionMessenger;
/// let (_, tr) = ctx.trace(|ctx| {
///     ctx.with(UnconditionMessenger::new(), |ctx| ctx.observe("x", Normal::new(&zero, &one)?, &one))
/// })?;
/// let x = tr.get("x").unwrap();
/// assert!(x.is_latent() && x.value.to_vec1::<f64>()? != vec![1.0; 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct UnconditionMessenger {
    released: Vec<String>,
    /// Only these sites, when set.
    only: Option<Vec<String>>,
}

impl UnconditionMessenger {
    /// A handler that has released nothing yet.
    ///
    /// ```
    /// assert!(vi_infer::handlers::UnconditionMessenger::new().released().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A handler that releases only the named observed sites (the others keep their data).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// use vi_infer::handlers::UnconditionMessenger;
    /// let (_, h) = ctx.with(UnconditionMessenger::only(["y"]), |ctx| {
    ///     ctx.observe("x", Normal::new(&zero, &one)?, &one)?;
    ///     ctx.observe("y", Normal::new(&zero, &one)?, &one)
    /// })?;
    /// assert_eq!(h.released(), ["y"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn only<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Self {
            released: Vec::new(),
            only: Some(names.into_iter().map(Into::into).collect()),
        }
    }

    /// The observed sites it released, in order.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// use vi_infer::handlers::UnconditionMessenger;
    /// let (_, h) = ctx.with(UnconditionMessenger::new(), |ctx| ctx.observe("x", Normal::new(&zero, &one)?, &one))?;
    /// assert_eq!(h.released(), ["x"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn released(&self) -> &[String] {
        &self.released
    }
}

impl Messenger for UnconditionMessenger {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        let is_factor = msg.dist.as_ref().is_some_and(|d| d.name() == "Unit");
        let chosen = self.only.as_ref().is_none_or(|o| o.contains(&msg.name));
        if msg.kind == SiteKind::Sample && msg.is_observed && !is_factor && chosen {
            msg.is_observed = false;
            msg.value = None;
            self.released.push(msg.name.clone());
        }
        Ok(())
    }
}
