//! The handler trait: NumPyro's `Messenger`, as a Rust trait object on the context's stack.

use std::any::Any;

use rand::RngCore;

use crate::error::Result;
use crate::message::{Message, PlateFrame};

/// An effect handler. Each handler on a [`Ctx`](crate::Ctx)'s stack sees every message on
/// its way in ([`process`](Messenger::process), innermost handler first) and, once the value
/// is set, on its way out ([`postprocess`](Messenger::postprocess), outermost first), as
/// NumPyro's `handlers.py`. A handler that sets `msg.stop` hides the message from the
/// handlers outside it (`block`).
///
/// ```
/// use vi_infer::{Message, Messenger, Result, SiteKind};
/// /// Counts the sample sites it sees.
/// #[derive(Default)]
/// struct Count(usize);
/// impl Messenger for Count {
///     fn postprocess(&mut self, msg: &Message) -> Result<()> {
///         if msg.kind == SiteKind::Sample {
///             self.0 += 1;
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Messenger: Any {
    /// Sees (and may change) a message before its value is set.
    fn process(&mut self, _msg: &mut Message) -> Result<()> {
        Ok(())
    }

    /// Sees a message after its value is set.
    fn postprocess(&mut self, _msg: &Message) -> Result<()> {
        Ok(())
    }

    /// The plate this handler stands for, if it is one (the plate handler): the context reads
    /// the active plates off its stack.
    fn plate(&self) -> Option<&PlateFrame> {
        None
    }

    /// The generator that draws the value of a message no handler gave one (`seed`): the
    /// innermost handler the message reached that has one draws it, after every handler's
    /// `process` (so plates have expanded the distribution); the context's generator
    /// otherwise.
    fn rng(&mut self) -> Option<&mut dyn RngCore> {
        None
    }
}
