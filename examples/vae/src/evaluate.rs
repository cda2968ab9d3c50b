//! The test ELBO: the loss of the current parameters over the test set, measured with the
//! same noise at every evaluation (a generator of its own, reseeded at each call).

use std::cell::RefCell;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_infer::candle::{DType, Tensor};
use vi_infer::{Ctx, Elbo, ParamStore, TraceMeanFieldElbo};

use crate::data::Split;
use crate::model::Vae;
use crate::train::{TrainConfig, TrainError, streams, sub_seed};

/// The test ELBO per image: `TraceMeanFieldElbo::compute` over the test set in batches,
/// on a generator of its own (reseeded at each call), so the training run's generator and
/// parameters are untouched.
pub(crate) fn evaluate(
    vae: &Vae,
    batch: &RefCell<Tensor>,
    store: &mut ParamStore,
    test: &Split,
    cfg: &TrainConfig,
) -> Result<f64, TrainError> {
    let mut rng = ChaCha8Rng::seed_from_u64(sub_seed(cfg.seed, streams::EVAL));
    let elbo = TraceMeanFieldElbo::new();
    let mut model = |ctx: &mut Ctx<'_>| vae.model(ctx, &batch.borrow());
    let mut guide = |ctx: &mut Ctx<'_>| vae.guide(ctx, &batch.borrow());
    let mut total = 0.0;
    let mut start = 0;
    while start < test.len() {
        let n = cfg.batch_size.min(test.len() - start);
        *batch.borrow_mut() = test.images.narrow(0, start, n)?;
        let out = elbo.compute(&mut model, &mut guide, store, &mut rng)?;
        total += out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        start += n;
    }
    Ok(-total / test.len() as f64)
}
