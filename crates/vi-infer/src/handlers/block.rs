//! `block`: hide sites from the handlers outside.

use std::collections::HashSet;

use crate::error::Result;
use crate::message::Message;
use crate::messenger::Messenger;

/// Which sites a [`BlockMessenger`] hides.
///
/// ```
/// use vi_infer::handlers::Block;
/// assert!(Block::All.hides("anything"));
/// ```
#[derive(Clone, Debug)]
pub enum Block {
    /// Every site.
    All,
    /// The named sites.
    Hide(HashSet<String>),
    /// Every site but the named ones.
    Expose(HashSet<String>),
}

impl Block {
    /// Hides the named sites.
    ///
    /// ```
    /// let b = vi_infer::handlers::Block::hide(["z"]);
    /// assert!(b.hides("z") && !b.hides("x"));
    /// ```
    pub fn hide<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Block::Hide(names.into_iter().map(Into::into).collect())
    }

    /// Hides every site but the named ones.
    ///
    /// ```
    /// let b = vi_infer::handlers::Block::expose(["z"]);
    /// assert!(!b.hides("z") && b.hides("x"));
    /// ```
    pub fn expose<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Block::Expose(names.into_iter().map(Into::into).collect())
    }

    /// Whether the site `name` is hidden.
    ///
    /// ```
    /// let b = vi_infer::handlers::Block::hide(["z"]);
    /// assert!(b.hides("z"));
    /// ```
    pub fn hides(&self, name: &str) -> bool {
        match self {
            Block::All => true,
            Block::Hide(h) => h.contains(name),
            Block::Expose(e) => !e.contains(name),
        }
    }
}

/// Hides sites from the handlers outside it (`poutine.block`): they still run (values are
/// drawn, params read), but an outer `trace` does not record them.
///
/// ```
/// # use candle_core::{DType, Device, Tensor};
/// # use vi_dist::{Constraint, Distribution, Normal};
/// # use vi_infer::{Ctx, ParamStore};
/// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
/// # let mut ctx = Ctx::new(&mut store, &mut rng);
/// use vi_infer::handlers::{Block, BlockMessenger};
/// let (_, tr) = ctx.trace(|ctx| {
///     ctx.with(BlockMessenger::new(Block::expose(["b"])), |ctx| {
///         ctx.sample("a", Normal::new(&zero, &one)?)?;
///         ctx.sample("b", Normal::new(&zero, &one)?)
///     })
/// })?;
/// assert_eq!(tr.names().collect::<Vec<_>>(), ["b"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct BlockMessenger {
    which: Block,
}

impl BlockMessenger {
    /// Blocks the sites `which` selects.
    ///
    /// ```
    /// let _b = vi_infer::handlers::BlockMessenger::new(vi_infer::handlers::Block::All);
    /// ```
    pub fn new(which: Block) -> Self {
        Self { which }
    }
}

impl Messenger for BlockMessenger {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if self.which.hides(&msg.name) {
            msg.stop = true;
        }
        Ok(())
    }
}
