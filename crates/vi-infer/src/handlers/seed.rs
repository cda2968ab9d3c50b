//! `seed`: draw from a generator of one's own.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::messenger::Messenger;

/// Draws the values of the sample sites (and the indices of subsampled plates) inside from a
/// generator seeded with a fixed seed (`handlers.seed`): the same seed gives the same
/// draws, whatever ran before. The draw happens once every handler has seen the site, so
/// plates inside or outside the seed have expanded it, and a site whose value a handler
/// supplies (replay, condition), inside or outside the seed, takes no draw. Nested seeds:
/// the innermost draws.
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
    fn rng(&mut self) -> Option<&mut dyn RngCore> {
        Some(&mut self.rng)
    }
}
