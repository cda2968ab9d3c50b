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
///
/// ```
/// # use candle_core::{DType, Device, Tensor};
/// # use vi_dist::{Constraint, Distribution, Normal};
/// # use vi_infer::{Ctx, ParamStore};
/// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
/// # let mut ctx = Ctx::new(&mut store, &mut rng);
/// use vi_infer::handlers::SeedMessenger;
/// let (a, _) = ctx.with(SeedMessenger::new(7), |ctx| ctx.sample("a", Normal::new(&zero, &one)?))?;
/// let (b, _) = ctx.with(SeedMessenger::new(7), |ctx| ctx.sample("b", Normal::new(&zero, &one)?))?;
/// assert_eq!(a.to_vec1::<f64>()?, b.to_vec1::<f64>()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SeedMessenger {
    rng: ChaCha8Rng,
}

impl SeedMessenger {
    /// A generator seeded with `seed`.
    ///
    /// ```
    /// let _seed = vi_infer::handlers::SeedMessenger::new(3);
    /// ```
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
