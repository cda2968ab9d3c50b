//! The test figures: the test ELBO and the test log-likelihood estimate of the current
//! parameters over the test set, each measured with the same noise at every evaluation (a
//! generator of its own, reseeded at each call); and both from a run's checkpoint
//! (`vae evaluate`).

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_infer::candle::{DType, Device, Tensor};
use vi_infer::{Ctx, Elbo, ParamStore, RenyiElbo, TraceElbo, TraceMeanFieldElbo};

use crate::checkpoint::CheckpointMeta;
use crate::data::{self, Split};
use crate::model::Vae;
use crate::train::{TrainConfig, TrainError, streams, sub_seed};

/// Rows (images × importance samples) of one batch of the log-likelihood estimate: the
/// decoder's logits are `[rows, 784]` (about 50 MB in f32).
pub const LL_ROWS: usize = 16_384;

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
    per_image(
        &TraceMeanFieldElbo::new(),
        vae,
        batch,
        store,
        test,
        cfg.batch_size,
        sub_seed(cfg.seed, streams::EVAL),
    )
}

/// The test log-likelihood per image estimated with `k` importance samples per image, the
/// figure VAE papers report (Burda et al. 2015): `log p(x) ≈ log 1/K Σ_k p(x, z_k) / q(z_k | x)`
/// with `z_k` drawn from the guide, averaged over the test images. It is a lower bound of
/// `log p(x)` in expectation, rising with `k` towards it; with `k = 1` it is the test ELBO
/// with the KL of `z` estimated from the draw (`TraceElbo`), whose expectation is the test
/// ELBO's. Batches hold at most [`LL_ROWS`] / `k` images; a generator of its own, reseeded at
/// each call.
///
/// ```
/// use std::cell::RefCell;
/// use vae::model::{Sizes, Vae};
/// use vi_infer::candle::{DType, Device, Tensor};
/// use vi_infer::ParamStore;
/// vi_infer::dist::set_validation(false); // grey pixels
/// let mut store = ParamStore::new(&Device::Cpu, DType::F32);
/// let vae = Vae::new(&mut store, Sizes { hidden: 8, latent: 2 }, 0)?;
/// let test = vae::data::Split { images: Tensor::full(0.5f32, (6, 784), &Device::Cpu)?, labels: vec![0; 6] };
/// let batch = RefCell::new(test.images.clone());
/// let ll = vae::evaluate::test_log_likelihood(&vae, &batch, &mut store, &test, 4, 10, 0)?;
/// assert!(ll.is_finite() && ll < 0.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn test_log_likelihood(
    vae: &Vae,
    batch: &RefCell<Tensor>,
    store: &mut ParamStore,
    test: &Split,
    batch_size: usize,
    k: usize,
    seed: u64,
) -> Result<f64, TrainError> {
    if k == 0 {
        return Err(TrainError::Config("--ll-samples must be at least 1".into()));
    }
    let images = batch_size.min((LL_ROWS / k).max(1));
    if k == 1 {
        return per_image(&TraceElbo::new(), vae, batch, store, test, images, seed);
    }
    let iwae = RenyiElbo::new(0.0)?
        .num_particles(k)
        .vectorize_particles(true)
        .max_plate_nesting(1);
    per_image(&iwae, vae, batch, store, test, images, seed)
}

/// −(the loss of `elbo`) per image over the test set, in batches of `images`, on a generator
/// seeded with `seed`.
fn per_image(
    elbo: &dyn Elbo,
    vae: &Vae,
    batch: &RefCell<Tensor>,
    store: &mut ParamStore,
    test: &Split,
    images: usize,
    seed: u64,
) -> Result<f64, TrainError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut model = |ctx: &mut Ctx<'_>| vae.model(ctx, &batch.borrow());
    let mut guide = |ctx: &mut Ctx<'_>| vae.guide(ctx, &batch.borrow());
    let mut total = 0.0;
    let mut start = 0;
    while start < test.len() {
        let n = images.min(test.len() - start);
        *batch.borrow_mut() = test.images.narrow(0, start, n)?;
        let out = elbo.compute(&mut model, &mut guide, store, &mut rng)?;
        total += out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        start += n;
    }
    Ok(-total / test.len() as f64)
}

/// The test figures of a run's checkpoint (`vae evaluate`).
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// The checkpoint's epoch.
    pub epoch: usize,
    /// Test images.
    pub images: usize,
    /// The test ELBO per image (analytic KL, one draw per image).
    pub test_elbo: f64,
    /// The importance samples per image of [`test_ll`](Evaluation::test_ll).
    pub ll_samples: usize,
    /// The test log-likelihood estimate per image ([`test_log_likelihood`]).
    pub test_ll: f64,
}

/// Loads the checkpoint in `out_dir` (its options: sizes, seed, batch size) and measures the
/// test ELBO and the test log-likelihood with `ll_samples` importance samples per image on
/// the test set of `data_dir` (its first `test_limit` images when given; by default as many
/// as the run used). Validation is off, as in training.
///
/// ```no_run
/// let e = vae::evaluate::evaluate_checkpoint("vae-output".as_ref(), &vae::data::bundled_dir(), 1000, None, &vi_infer::candle::Device::Cpu)?;
/// println!("test log-likelihood {:.2} nats per image", e.test_ll);
/// # Ok::<(), vae::train::TrainError>(())
/// ```
pub fn evaluate_checkpoint(
    out_dir: &Path,
    data_dir: &Path,
    ll_samples: usize,
    test_limit: Option<usize>,
    device: &Device,
) -> Result<Evaluation, TrainError> {
    vi_infer::dist::with_validation(false, || {
        let meta = CheckpointMeta::read(out_dir)?;
        let test = data::load_split(data_dir, "t10k", device)?;
        let n = test_limit.unwrap_or(meta.test_images).min(test.len());
        let test = Split {
            images: test.images.narrow(0, 0, n)?,
            labels: test.labels[..n].to_vec(),
        };
        let mut store = ParamStore::new(device, DType::F32);
        let vae = Vae::new(&mut store, meta.sizes, 0)?;
        let file: PathBuf = out_dir.join(&meta.file);
        let all = vi_infer::candle::safetensors::load(&file, device).map_err(|e| {
            TrainError::Checkpoint {
                path: file.clone(),
                msg: format!("cannot load it ({e})"),
            }
        })?;
        let params: std::collections::HashMap<String, Tensor> = all
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("param/").map(|n| (n.to_string(), v)))
            .collect();
        store.load_tensors(&params)?;
        let mut cfg = TrainConfig::new(data_dir, out_dir);
        cfg.seed = meta.seed;
        cfg.batch_size = meta.batch_size;
        let batch = RefCell::new(test.images.narrow(0, 0, 1)?);
        let test_elbo = evaluate(&vae, &batch, &mut store, &test, &cfg)?;
        let test_ll = test_log_likelihood(
            &vae,
            &batch,
            &mut store,
            &test,
            cfg.batch_size,
            ll_samples,
            sub_seed(cfg.seed, streams::LL),
        )?;
        Ok(Evaluation {
            epoch: meta.epoch,
            images: n,
            test_elbo,
            ll_samples,
            test_ll,
        })
    })
}
