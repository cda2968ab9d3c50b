//! Training: the SVI loop over shuffled minibatches, the test ELBO, the pictures, the CSV
//! files and a checkpoint each epoch, from which `--resume` continues bit-identically.
//! The files are written by [`crate::outputs`], the checkpoint by [`crate::checkpoint`].
//!
//! # Feeding minibatches to the model and the guide
//!
//! [`Svi`] owns its model and guide: closures it calls with a [`Ctx`] only. The minibatch
//! of each step reaches them through a [`RefCell`] the closures capture by reference: the
//! loop puts the batch in the cell (`*batch.borrow_mut() = x`), then calls `svi.step()`,
//! during which the closures read it (`vae.model(ctx, &batch.borrow())`). The two borrows
//! never overlap, so the cell never panics. This is the counterpart of Pyro's
//! `svi.step(x)`, which passes `x` on to `model(x)` and `guide(x)`.
//!
//! # Reproducibility
//!
//! Every random choice comes from its own generator, derived from `--seed`:
//! the initial weights; the guide's draws (the generator inside [`Svi`], saved in its
//! checkpoint); the shuffle of epoch `e` (a generator seeded from the seed and `e` alone, so
//! resuming needs only the epoch counter); the test ELBO's draws (the same generator,
//! reseeded, at every evaluation: it never touches the training generator, and each epoch's
//! test ELBO is measured with the same noise, so epochs compare without Monte Carlo jitter);
//! the test log-likelihood's draws (likewise, on a stream of their own); and the prior draws
//! of the sample grid (fixed, so the pictures of successive epochs show the same latent
//! points).

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use vi_infer::candle::{self, DType, Device, Tensor};
use vi_infer::optim::{Adam, AdamOptions};
use vi_infer::parallel::Communicator;
use vi_infer::{Ctx, InferError, ParamStore, Plate, Svi};

use crate::checkpoint;
use crate::data::{self, DataError, Split};
use crate::evaluate::{evaluate, test_log_likelihood};
use crate::model::{Sizes, Vae};
use crate::objective::Objective;
use crate::outputs::{self, Outputs};

/// Epochs of the default run: what `cargo run --release -p vae` trains on the bundled data
/// (800 steps of 256 images, as many as 3.4 epochs of the full set: 25 to 90 seconds on two
/// CPU cores, depending on what else runs).
pub const DEFAULT_EPOCHS: usize = 20;

/// Everything a training run needs.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Train until this many epochs are done (counting those of a resumed checkpoint).
    pub epochs: usize,
    /// Images per minibatch (the last one of an epoch may be smaller).
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Hidden and latent widths.
    pub sizes: Sizes,
    /// The seed every generator of the run derives from.
    pub seed: u64,
    /// Where the MNIST files are.
    pub data_dir: PathBuf,
    /// Where the pictures, CSV files and checkpoints go.
    pub out_dir: PathBuf,
    /// Continue from the checkpoint in `out_dir`.
    pub resume: bool,
    /// Where the tensors live.
    pub device: Device,
    /// Use only the first this many training images (`None`: all).
    pub train_limit: Option<usize>,
    /// Use only the first this many test images (`None`: all).
    pub test_limit: Option<usize>,
    /// Write the pictures (reconstructions, samples, ELBO curve) after each epoch.
    pub pictures: bool,
    /// The bound the run maximises.
    pub objective: Objective,
    /// After each epoch, also estimate the test log-likelihood with this many importance
    /// samples per image (the `test_ll` column of `epochs.csv`; `None`: not measured).
    pub ll_samples: Option<usize>,
    /// Data-parallel training over this communicator (`--distributed`): each step's batch
    /// is the world's, each rank takes its share of it, the epochs hold whole batches only
    /// (the last partial one is left out), and rank 0 alone writes the outputs. `None`: one
    /// process.
    pub communicator: Option<Arc<dyn Communicator>>,
}

impl TrainConfig {
    /// Pyro's tutorial settings (batch 256, Adam lr 1e-3, 400 hidden, 50 latent), seed 0,
    /// [`DEFAULT_EPOCHS`] epochs on the CPU.
    ///
    /// ```
    /// let cfg = vae::train::TrainConfig::new(vae::data::bundled_dir(), "vae-output");
    /// assert_eq!((cfg.batch_size, cfg.sizes.latent), (256, 50));
    /// ```
    pub fn new(data_dir: impl Into<PathBuf>, out_dir: impl Into<PathBuf>) -> Self {
        Self {
            epochs: DEFAULT_EPOCHS,
            batch_size: 256,
            lr: 1e-3,
            sizes: Sizes::default(),
            seed: 0,
            data_dir: data_dir.into(),
            out_dir: out_dir.into(),
            resume: false,
            device: Device::Cpu,
            train_limit: None,
            test_limit: None,
            pictures: true,
            objective: Objective::MeanField,
            ll_samples: None,
            communicator: None,
        }
    }
}

/// What went wrong in a run; every variant says which file or option.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The data could not be read.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Inference failed.
    #[error(transparent)]
    Infer(#[from] InferError),
    /// A tensor op failed.
    #[error(transparent)]
    Candle(#[from] candle::Error),
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A picture could not be written.
    #[error("{path}: cannot write the picture ({source})")]
    Image {
        /// The file.
        path: PathBuf,
        /// The encoder's error.
        source: png::EncodingError,
    },
    /// The checkpoint is missing, malformed, or was trained with other options.
    #[error("{path}: {msg}")]
    Checkpoint {
        /// The checkpoint's file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// An option is out of range, or training diverged.
    #[error("{0}")]
    Config(String),
}

/// The figures of one epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochStats {
    /// The epoch, from 1.
    pub epoch: usize,
    /// The training bound per image: minus the sum of the epoch's step losses over the
    /// number of images (as Pyro's tutorial reports it, so it mixes the parameters of the
    /// whole epoch). The ELBO, or with [`Objective::Iwae`] the importance-weighted bound.
    pub train_elbo: f64,
    /// The test ELBO per image after the epoch (one draw of `z` per image, analytic KL).
    pub test_elbo: f64,
    /// The mean KL(q(z|x) ‖ p(z)) per latent dimension over the epoch's training images,
    /// from the `z` site of each step's report (in closed form with the mean-field ELBO; its
    /// one-draw estimate, averaged over the particles, with IWAE).
    pub kl_per_dim: f64,
    /// Seconds the epoch's SVI steps took (not the evaluation, pictures or checkpoint).
    pub seconds: f64,
    /// The test log-likelihood estimate per image after the epoch, with
    /// [`TrainConfig::ll_samples`] importance samples (`None` when not measured).
    pub test_ll: Option<f64>,
}

/// One SVI step's loss.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRecord {
    /// The epoch, from 1.
    pub epoch: usize,
    /// The step within the epoch, from 1.
    pub step: usize,
    /// Images in the minibatch.
    pub images: usize,
    /// The step's loss (−ELBO of the minibatch, summed over its images).
    pub loss: f64,
}

/// What a run reports as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    /// The data is loaded and training is about to start.
    Start {
        /// Epochs already done (from a checkpoint).
        done: usize,
        /// Steps per epoch.
        steps_per_epoch: usize,
        /// Training images.
        train_images: usize,
        /// Test images.
        test_images: usize,
    },
    /// One SVI step is done.
    Step {
        /// Its record.
        record: &'a StepRecord,
        /// The mean loss per image over the epoch so far.
        running_loss: f64,
    },
    /// An epoch is done and its outputs written.
    Epoch(&'a EpochStats),
}

/// What a run returns.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Every epoch's figures (those of a resumed checkpoint first).
    pub history: Vec<EpochStats>,
    /// Every step's loss (those of a resumed checkpoint first).
    pub steps: Vec<StepRecord>,
    /// Epochs done before this run (from the checkpoint; 0 for a fresh run).
    pub resumed_from: usize,
    /// The files written.
    pub outputs: Outputs,
}

/// Seeds of the run's generators, one stream each.
pub(crate) mod streams {
    pub const INIT: u64 = 1;
    pub const SVI: u64 = 2;
    pub const SHUFFLE: u64 = 3;
    pub const EVAL: u64 = 4;
    pub const SAMPLES: u64 = 5;
    pub const LL: u64 = 6;
}

/// A seed for stream `stream` of the run seeded with `seed` (SplitMix64 of both).
pub fn sub_seed(seed: u64, stream: u64) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    mix(seed ^ mix(stream))
}

/// The order of the training images in epoch `epoch` (from 1): a shuffle by a generator
/// that depends on the seed and the epoch only.
///
/// ```
/// let a = vae::train::epoch_order(10, 0, 1);
/// assert_eq!(a, vae::train::epoch_order(10, 0, 1));
/// assert_ne!(a, vae::train::epoch_order(10, 0, 2));
/// ```
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(sub_seed(seed, streams::SHUFFLE));
    rng.set_stream(epoch as u64);
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.shuffle(&mut rng);
    order
}

/// Keeps the first `limit` images of a split.
fn truncate(split: Split, limit: Option<usize>) -> Result<Split, TrainError> {
    match limit {
        Some(n) if n < split.len() => Ok(Split {
            images: split.images.narrow(0, 0, n)?,
            labels: split.labels[..n].to_vec(),
        }),
        _ => Ok(split),
    }
}

/// Trains the VAE as `cfg` says, calling `on_event` at the start, after each step and after
/// each epoch. Value validation is off during the run (the pixels in `[0, 1]` are not the
/// booleans a Bernoulli's support holds, as in Pyro's tutorial).
pub fn train(
    cfg: &TrainConfig,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<Outcome, TrainError> {
    vi_infer::dist::with_validation(false, || run(cfg, on_event))
}

fn run(cfg: &TrainConfig, on_event: &mut dyn FnMut(Event<'_>)) -> Result<Outcome, TrainError> {
    if cfg.batch_size == 0 {
        return Err(TrainError::Config("--batch-size must be at least 1".into()));
    }
    if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        return Err(TrainError::Config(format!(
            "--lr {}: the learning rate must be positive",
            cfg.lr
        )));
    }
    if cfg.ll_samples == Some(0) {
        return Err(TrainError::Config("--ll-samples must be at least 1".into()));
    }
    // The objective's own checks (at least two importance samples for IWAE).
    Objective::from_parts(cfg.objective.name(), cfg.objective.particles())
        .map_err(TrainError::Config)?;
    if cfg.sizes.hidden == 0 || cfg.sizes.latent == 0 {
        return Err(TrainError::Config(
            "--hidden and --latent must be at least 1".into(),
        ));
    }
    let device = cfg.device.clone();
    let (train, test) = data::load(&cfg.data_dir, &device)?;
    let train = truncate(train, cfg.train_limit)?;
    let test = truncate(test, cfg.test_limit)?;
    if train.is_empty() || test.is_empty() {
        return Err(TrainError::Config(format!(
            "{}: no training or no test images",
            cfg.data_dir.display()
        )));
    }
    std::fs::create_dir_all(&cfg.out_dir).map_err(|source| TrainError::Io {
        path: cfg.out_dir.clone(),
        source,
    })?;
    let outputs = Outputs::in_dir(&cfg.out_dir);
    let resume = if cfg.resume {
        Some(checkpoint::read_for_resume(
            cfg,
            train.len(),
            test.len(),
            &outputs,
        )?)
    } else {
        None
    };

    let world = cfg.communicator.clone();
    let lead = world.as_ref().is_none_or(|c| c.rank() == 0);
    if let Some(c) = &world
        && !cfg.batch_size.is_multiple_of(c.world_size())
    {
        return Err(TrainError::Config(format!(
            "--batch-size {} does not split over {} ranks",
            cfg.batch_size,
            c.world_size()
        )));
    }
    let mut store = ParamStore::new(&device, DType::F32);
    let vae = Vae::new(&mut store, cfg.sizes, sub_seed(cfg.seed, streams::INIT))?;
    // The minibatch of the current step, read by the model and the guide (module doc); when
    // data-parallel, the world's batch as indices into the training images instead.
    let batch = RefCell::new(test.images.narrow(0, 0, 1)?);
    let world_batch: RefCell<Option<Tensor>> = RefCell::new(None);
    let n_train = train.len();
    let model = |ctx: &mut Ctx<'_>| match &*world_batch.borrow() {
        Some(idx) => {
            let plate = Plate::new("data", n_train).subsample(idx);
            vae.model_indexed(ctx, &train.images, plate, idx.dims()[0])
        }
        None => vae.model(ctx, &batch.borrow()),
    };
    let guide = |ctx: &mut Ctx<'_>| match &*world_batch.borrow() {
        Some(idx) => {
            let plate = Plate::new("data", n_train).subsample(idx);
            vae.guide_indexed(ctx, &train.images, plate, idx.dims()[0])
        }
        None => vae.guide(ctx, &batch.borrow()),
    };
    let adam = Adam::empty(AdamOptions {
        lr: cfg.lr,
        ..Default::default()
    })
    .map_err(InferError::from)?;
    let mut svi = Svi::new(model, guide, adam, cfg.objective.elbo()?)
        .with_store(store)
        .seed(sub_seed(cfg.seed, streams::SVI));
    if let Some(c) = &world {
        svi = svi.data_parallel(c.clone());
    }

    let (mut history, mut steps, done) = match &resume {
        Some(meta) => {
            let (history, steps) = checkpoint::restore(cfg, meta, &outputs, |file| svi.load(file))?;
            (history, steps, meta.epoch)
        }
        None => (Vec::new(), Vec::new(), 0),
    };

    let steps_per_epoch = match world {
        Some(_) => train.len() / cfg.batch_size,
        None => train.len().div_ceil(cfg.batch_size),
    };
    on_event(Event::Start {
        done,
        steps_per_epoch,
        train_images: train.len(),
        test_images: test.len(),
    });
    let picks = outputs::reconstruction_picks(&test.labels);
    let latent = cfg.sizes.latent as f64;
    for epoch in done + 1..=cfg.epochs {
        let order = epoch_order(train.len(), cfg.seed, epoch);
        let start = Instant::now();
        let (mut loss_sum, mut kl_sum, mut seen) = (0.0, 0.0, 0usize);
        for (i, chunk) in order.chunks(cfg.batch_size).enumerate() {
            if world.is_some() && chunk.len() < cfg.batch_size {
                break;
            }
            let idx = Tensor::from_slice(chunk, chunk.len(), &device)?;
            match world {
                Some(_) => *world_batch.borrow_mut() = Some(idx),
                None => *batch.borrow_mut() = train.images.index_select(&idx, 0)?,
            }
            let report = svi.step()?;
            if !report.loss.is_finite() {
                return Err(TrainError::Config(format!(
                    "the loss is {} at epoch {epoch}, step {}: training diverged (try a smaller --lr)",
                    report.loss,
                    i + 1
                )));
            }
            let kl = match report.site("z") {
                Some(term) => term.sum_f64()?,
                None => f64::NAN,
            };
            loss_sum += report.loss;
            kl_sum += kl;
            seen += chunk.len();
            steps.push(StepRecord {
                epoch,
                step: i + 1,
                images: chunk.len(),
                loss: report.loss,
            });
            if let Some(record) = steps.last() {
                on_event(Event::Step {
                    record,
                    running_loss: loss_sum / seen as f64,
                });
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        let test_elbo = evaluate(&vae, &batch, svi.store_mut(), &test, cfg)?;
        let test_ll = match cfg.ll_samples {
            Some(k) => Some(test_log_likelihood(
                &vae,
                &batch,
                svi.store_mut(),
                &test,
                cfg.batch_size,
                k,
                sub_seed(cfg.seed, streams::LL),
            )?),
            None => None,
        };
        history.push(EpochStats {
            epoch,
            train_elbo: -loss_sum / seen as f64,
            test_elbo,
            kl_per_dim: kl_sum / (seen as f64 * latent),
            seconds,
            test_ll,
        });
        if !lead {
            // Rank 0 writes the outputs; this rank joins the checkpoint's save (which rank 0
            // writes) and goes on.
            svi.save(cfg.out_dir.join("unused"))?;
            continue;
        }
        if cfg.pictures {
            outputs::write_pictures(&vae, &test, &picks, &history, &steps, cfg, &outputs)?;
        }
        outputs::write_epochs(&outputs.epochs_csv, &history, cfg.ll_samples.is_some())?;
        outputs::write_steps(&outputs.steps_csv, &steps)?;
        // The checkpoint last: its description is written (atomically) once everything
        // it describes is on disk, then the previous epoch's file is removed.
        checkpoint::write(cfg, epoch, train.len(), test.len(), &outputs, |file| {
            svi.save(file)
        })?;
        if let Some(stats) = history.last() {
            on_event(Event::Epoch(stats));
        }
    }
    Ok(Outcome {
        history,
        steps,
        resumed_from: done,
        outputs,
    })
}
