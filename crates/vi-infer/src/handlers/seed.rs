//! `seed`: draw from a generator of one's own.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::ctx::draw_with;
use crate::error::Result;
use crate::message::{Message, SiteKind};
use crate::messenger::Messenger;

/// Draws the values of the sample sites (and the indices of subsampled plates) inside from a
/// generator seeded with a fixed seed (`handlers.seed`): the same seed gives the same
/// draws, whatever ran before. A value set by an inner handler (replay, condition) is kept.
#[derive(Debug)]
pub struct SeedMessenger {
    rng: ChaCha8Rng,
}

impl SeedMessenger {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl Messenger for SeedMessenger {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if msg.value.is_some() {
            return Ok(());
        }
        match msg.kind {
            SiteKind::Sample | SiteKind::Subsample => draw_with(msg, &mut self.rng),
            SiteKind::Param | SiteKind::Deterministic => Ok(()),
        }
    }
}
