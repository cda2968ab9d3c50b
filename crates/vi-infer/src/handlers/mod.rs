//! The effect handlers, one small [`Messenger`](crate::Messenger) each, as NumPyro's
//! `handlers.py`. Use them through [`Ctx`](crate::Ctx)'s methods (`ctx.trace(..)`,
//! `ctx.replay(..)`, `ctx.seed(..)`, …) or push one with [`Ctx::with`](crate::Ctx::with).

mod block;
mod condition;
mod mask;
mod plate;
mod replay;
mod scale;
mod seed;
mod substitute;
mod trace;
mod uncondition;

pub use block::{Block, BlockMessenger};
pub use condition::ConditionMessenger;
pub use mask::MaskMessenger;
pub use plate::PlateMessenger;
pub use replay::ReplayMessenger;
pub use scale::ScaleMessenger;
pub use seed::SeedMessenger;
pub use substitute::SubstituteMessenger;
pub use trace::TraceMessenger;

pub use crate::enumerate::{ConfigEnumerate, EnumMessenger, MarkovMessenger};
pub use uncondition::UnconditionMessenger;
