//! Training: the SVI loop over shuffled minibatches, the test ELBO, the pictures, the CSV
//! files and a checkpoint each epoch, from which `--resume` continues bit-identically.
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
//! and the prior draws of the sample grid (fixed, so the pictures of successive epochs show
//! the same latent points).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use vi_infer::candle::{self, DType, Device, Tensor};
use vi_infer::optim::{Adam, AdamOptions};
use vi_infer::{Ctx, Elbo, InferError, ParamStore, Svi, TraceMeanFieldElbo};

use crate::data::{self, DataError, Split};
use crate::model::{Sizes, Vae};
use crate::pictures::{self, Series};

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
        source: image::ImageError,
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
    /// The training ELBO per image: minus the sum of the epoch's step losses over the
    /// number of images (as Pyro's tutorial reports it, so it mixes the parameters of the
    /// whole epoch).
    pub train_elbo: f64,
    /// The test ELBO per image after the epoch (one draw of `z` per image).
    pub test_elbo: f64,
    /// The mean KL(q(z|x) ‖ p(z)) per latent dimension over the epoch's training images,
    /// from the `z` site of each step's report.
    pub kl_per_dim: f64,
    /// Seconds the epoch's SVI steps took (not the evaluation, pictures or checkpoint).
    pub seconds: f64,
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

/// The files a run writes in its output directory.
#[derive(Clone, Debug)]
pub struct Outputs {
    /// Test digits (odd rows) over their reconstructions (even rows), one column per digit.
    pub reconstructions: PathBuf,
    /// Images decoded from 100 fixed draws of the prior.
    pub samples: PathBuf,
    /// The ELBO curve.
    pub curve: PathBuf,
    /// The per-epoch figures.
    pub epochs_csv: PathBuf,
    /// The per-step losses.
    pub steps_csv: PathBuf,
    /// The checkpoint's description (what `--resume` reads).
    pub checkpoint: PathBuf,
}

impl Outputs {
    /// The files in `dir`.
    ///
    /// ```
    /// let o = vae::train::Outputs::in_dir("out".as_ref());
    /// assert_eq!(o.samples, std::path::Path::new("out/samples.png"));
    /// ```
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            reconstructions: dir.join("reconstructions.png"),
            samples: dir.join("samples.png"),
            curve: dir.join("elbo.png"),
            epochs_csv: dir.join("epochs.csv"),
            steps_csv: dir.join("steps.csv"),
            checkpoint: dir.join(CHECKPOINT_META),
        }
    }
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

/// The checkpoint's description: the epoch reached, the `Svi` checkpoint file, and the
/// options it was trained with (so that `--resume` continues the same run).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointMeta {
    /// Epochs done.
    pub epoch: usize,
    /// The run's `--epochs` (what `--resume` trains up to unless told otherwise).
    pub target_epochs: usize,
    /// The `Svi::save` file (parameters, Adam's state, the guide's generator), relative to
    /// the output directory.
    pub file: String,
    /// The run's seed.
    pub seed: u64,
    /// Images per minibatch.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Hidden and latent widths.
    pub sizes: Sizes,
    /// Training images.
    pub train_images: usize,
    /// Test images.
    pub test_images: usize,
}

/// The name of the checkpoint's description in the output directory.
pub const CHECKPOINT_META: &str = "checkpoint.txt";

impl CheckpointMeta {
    /// Reads `checkpoint.txt` from `out_dir`.
    ///
    /// ```
    /// let err = vae::train::CheckpointMeta::read("no-such-dir".as_ref()).unwrap_err();
    /// assert!(err.to_string().contains("checkpoint.txt"));
    /// ```
    pub fn read(out_dir: &Path) -> Result<Self, TrainError> {
        let path = out_dir.join(CHECKPOINT_META);
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::Checkpoint {
            path: path.clone(),
            msg: format!(
                "cannot read it ({e}): --resume needs the output directory of an earlier run"
            ),
        })?;
        let bad = |msg: String| TrainError::Checkpoint {
            path: path.clone(),
            msg,
        };
        let mut fields = std::collections::HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(bad(format!("`{line}` is not `key = value`")));
            };
            fields.insert(k.trim().to_string(), v.trim().to_string());
        }
        fn get<T: std::str::FromStr>(
            fields: &std::collections::HashMap<String, String>,
            key: &str,
        ) -> Result<T, String> {
            let v = fields.get(key).ok_or(format!("lacks `{key}`"))?;
            v.parse().map_err(|_| format!("`{key} = {v}` is malformed"))
        }
        let meta = (|| -> Result<Self, String> {
            if get::<u32>(&fields, "format")? != 1 {
                return Err("unknown format (expected `format = 1`)".into());
            }
            Ok(Self {
                epoch: get(&fields, "epoch")?,
                target_epochs: get(&fields, "target_epochs")?,
                file: get(&fields, "file")?,
                seed: get(&fields, "seed")?,
                batch_size: get(&fields, "batch_size")?,
                lr: get(&fields, "lr")?,
                sizes: Sizes {
                    hidden: get(&fields, "hidden")?,
                    latent: get(&fields, "latent")?,
                },
                train_images: get(&fields, "train_images")?,
                test_images: get(&fields, "test_images")?,
            })
        })()
        .map_err(bad)?;
        Ok(meta)
    }

    fn to_text(&self) -> String {
        format!(
            "# The checkpoint of a `vae train` run: continue it with\n\
             #   cargo run --release -p vae -- train --resume --out-dir <this directory> --epochs N\n\
             format = 1\nepoch = {}\ntarget_epochs = {}\nfile = {}\nseed = {}\nbatch_size = {}\nlr = {}\n\
             hidden = {}\nlatent = {}\ntrain_images = {}\ntest_images = {}\n",
            self.epoch,
            self.target_epochs,
            self.file,
            self.seed,
            self.batch_size,
            self.lr,
            self.sizes.hidden,
            self.sizes.latent,
            self.train_images,
            self.test_images
        )
    }

    /// Whether a run of `cfg` on `train`/`test` images continues this checkpoint; the
    /// mismatches otherwise, as `--option checkpoint-value (this run: value)`.
    fn mismatches(&self, cfg: &TrainConfig, train: usize, test: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |name: &str, saved: String, now: String| {
            if saved != now {
                out.push(format!("{name} {saved} (this run: {now})"));
            }
        };
        check("--seed", self.seed.to_string(), cfg.seed.to_string());
        check(
            "--batch-size",
            self.batch_size.to_string(),
            cfg.batch_size.to_string(),
        );
        check("--lr", self.lr.to_string(), cfg.lr.to_string());
        check(
            "--hidden",
            self.sizes.hidden.to_string(),
            cfg.sizes.hidden.to_string(),
        );
        check(
            "--latent",
            self.sizes.latent.to_string(),
            cfg.sizes.latent.to_string(),
        );
        check(
            "training images",
            self.train_images.to_string(),
            train.to_string(),
        );
        check(
            "test images",
            self.test_images.to_string(),
            test.to_string(),
        );
        out
    }
}

/// Seeds of the run's generators, one stream each.
mod streams {
    pub const INIT: u64 = 1;
    pub const SVI: u64 = 2;
    pub const SHUFFLE: u64 = 3;
    pub const EVAL: u64 = 4;
    pub const SAMPLES: u64 = 5;
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
        let meta = CheckpointMeta::read(&cfg.out_dir)?;
        let wrong = meta.mismatches(cfg, train.len(), test.len());
        if !wrong.is_empty() {
            return Err(TrainError::Checkpoint {
                path: outputs.checkpoint.clone(),
                msg: format!(
                    "trained with {}: resume with the same options and data",
                    wrong.join(", ")
                ),
            });
        }
        Some(meta)
    } else {
        None
    };

    let mut store = ParamStore::new(&device, DType::F32);
    let vae = Vae::new(&mut store, cfg.sizes, sub_seed(cfg.seed, streams::INIT))?;
    // The minibatch of the current step, read by the model and the guide (module doc).
    let batch = RefCell::new(test.images.narrow(0, 0, 1)?);
    let model = |ctx: &mut Ctx<'_>| vae.model(ctx, &batch.borrow());
    let guide = |ctx: &mut Ctx<'_>| vae.guide(ctx, &batch.borrow());
    let adam = Adam::empty(AdamOptions {
        lr: cfg.lr,
        ..Default::default()
    })
    .map_err(InferError::from)?;
    let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new())
        .with_store(store)
        .seed(sub_seed(cfg.seed, streams::SVI));

    let (mut history, mut steps, done) = match &resume {
        Some(meta) => {
            let file = cfg.out_dir.join(&meta.file);
            if !file.is_file() {
                return Err(TrainError::Checkpoint {
                    path: outputs.checkpoint.clone(),
                    msg: format!("names {}, which is missing", file.display()),
                });
            }
            svi.load(&file).map_err(|e| TrainError::Checkpoint {
                path: file.clone(),
                msg: format!("cannot load it ({e})"),
            })?;
            let history = read_epochs(&outputs.epochs_csv, meta.epoch)?;
            let steps = read_steps(&outputs.steps_csv, meta.epoch)?;
            (history, steps, meta.epoch)
        }
        None => (Vec::new(), Vec::new(), 0),
    };

    let steps_per_epoch = train.len().div_ceil(cfg.batch_size);
    on_event(Event::Start {
        done,
        steps_per_epoch,
        train_images: train.len(),
        test_images: test.len(),
    });
    let picks = reconstruction_picks(&test.labels);
    let latent = cfg.sizes.latent as f64;
    for epoch in done + 1..=cfg.epochs {
        let order = epoch_order(train.len(), cfg.seed, epoch);
        let start = Instant::now();
        let (mut loss_sum, mut kl_sum, mut seen) = (0.0, 0.0, 0usize);
        for (i, chunk) in order.chunks(cfg.batch_size).enumerate() {
            let idx = Tensor::from_slice(chunk, chunk.len(), &device)?;
            *batch.borrow_mut() = train.images.index_select(&idx, 0)?;
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
        history.push(EpochStats {
            epoch,
            train_elbo: -loss_sum / seen as f64,
            test_elbo,
            kl_per_dim: kl_sum / (seen as f64 * latent),
            seconds,
        });
        if cfg.pictures {
            write_pictures(&vae, &test, &picks, &history, &steps, cfg, &outputs)?;
        }
        write_epochs(&outputs.epochs_csv, &history)?;
        write_steps(&outputs.steps_csv, &steps)?;
        // The checkpoint last: its description is written (atomically) once everything
        // it describes is on disk, then the previous epoch's file is removed.
        let file = format!("checkpoint-epoch{epoch}.safetensors");
        let tmp = cfg.out_dir.join(format!("{file}.tmp"));
        svi.save(&tmp)?;
        rename(&tmp, &cfg.out_dir.join(&file))?;
        let meta = CheckpointMeta {
            epoch,
            target_epochs: cfg.epochs,
            file: file.clone(),
            seed: cfg.seed,
            batch_size: cfg.batch_size,
            lr: cfg.lr,
            sizes: cfg.sizes,
            train_images: train.len(),
            test_images: test.len(),
        };
        write_atomic(&outputs.checkpoint, meta.to_text().as_bytes())?;
        remove_stale_checkpoints(&cfg.out_dir, &file);
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

/// Removes the checkpoint files of other epochs (of this run or an earlier one) from
/// `dir`, keeping `keep`. Best effort: a leftover file is harmless.
fn remove_stale_checkpoints(dir: &Path, keep: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = name
            .strip_prefix("checkpoint-epoch")
            .and_then(|r| r.strip_suffix(".safetensors"))
            .is_some_and(|n| n.parse::<usize>().is_ok());
        if stale && name != keep {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The test ELBO per image: `TraceMeanFieldElbo::compute` over the test set in batches,
/// on a generator of its own (reseeded at each call), so the training run's generator and
/// parameters are untouched.
fn evaluate(
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

/// Test images for the reconstruction grid: in row `r`, column `d`, the `r`-th test image
/// of digit `d` (4 rows of 10).
fn reconstruction_picks(labels: &[u8]) -> Vec<Option<usize>> {
    let mut picks = vec![None; 40];
    let mut seen = [0usize; 10];
    for (i, &l) in labels.iter().enumerate() {
        let d = l as usize;
        if d < 10 && seen[d] < 4 {
            picks[seen[d] * 10 + d] = Some(i);
            seen[d] += 1;
        }
    }
    picks
}

/// Rows of a `[n, 784]` tensor on the host.
fn host_rows(t: &Tensor) -> Result<Vec<Vec<f32>>, TrainError> {
    Ok(t.to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .to_vec2::<f32>()?)
}

fn write_pictures(
    vae: &Vae,
    test: &Split,
    picks: &[Option<usize>],
    history: &[EpochStats],
    steps: &[StepRecord],
    cfg: &TrainConfig,
    outputs: &Outputs,
) -> Result<(), TrainError> {
    // Reconstructions: pairs of rows, the test digits over their reconstructions.
    let chosen: Vec<u32> = picks.iter().flatten().map(|&i| i as u32).collect();
    let idx = Tensor::from_slice(&chosen, chosen.len(), &cfg.device)?;
    let originals = test.images.index_select(&idx, 0)?;
    let recon = vae.reconstruct(&originals)?;
    let (orig, rec) = (host_rows(&originals)?, host_rows(&recon)?);
    // Cell `p` of the picks is row `row_of[p]` of the tensors above.
    let mut row_of = vec![None; picks.len()];
    let mut next = 0;
    for (p, pick) in picks.iter().enumerate() {
        if pick.is_some() {
            row_of[p] = Some(next);
            next += 1;
        }
    }
    let mut cells: Vec<Option<&[f32]>> = Vec::with_capacity(80);
    for r in 0..4 {
        for pass in [&orig, &rec] {
            for c in 0..10 {
                cells.push(row_of[r * 10 + c].and_then(|k| pass.get(k).map(Vec::as_slice)));
            }
        }
    }
    save(
        &pictures::digit_grid(&cells, 8, 10, 2, 2),
        &outputs.reconstructions,
    )?;

    // Samples: 100 fixed draws of the prior, decoded.
    let mut rng = ChaCha8Rng::seed_from_u64(sub_seed(cfg.seed, streams::SAMPLES));
    let samples = host_rows(&vae.sample_prior(100, &mut rng)?)?;
    let cells: Vec<Option<&[f32]>> = samples.iter().map(|s| Some(s.as_slice())).collect();
    save(
        &pictures::digit_grid(&cells, 10, 10, 2, 2),
        &outputs.samples,
    )?;

    // The ELBO curve: each step's training ELBO per image (x in epochs), each epoch's
    // training and test ELBO.
    let per_epoch = steps.iter().fold(0, |m, s| m.max(s.step)).max(1) as f64;
    let step_points: Vec<(f64, f64)> = steps
        .iter()
        .map(|s| {
            (
                (s.epoch - 1) as f64 + s.step as f64 / per_epoch,
                -s.loss / s.images as f64,
            )
        })
        .collect();
    // The y range leaves out the first half of the first epoch (the initial loss is far
    // below everything after it and would flatten the rest of the curve).
    let settled = step_points
        .iter()
        .filter(|p| p.0 > 0.5 || history.len() <= 1)
        .map(|p| p.1)
        .chain(history.iter().flat_map(|h| [h.train_elbo, h.test_elbo]))
        .filter(|v| v.is_finite());
    let lo = settled.clone().fold(f64::INFINITY, f64::min);
    let hi = settled.fold(f64::NEG_INFINITY, f64::max);
    let range = (lo.is_finite() && hi.is_finite()).then_some((lo, hi));
    let series = [
        Series {
            label: "train ELBO, per step".into(),
            points: step_points,
            color: [170, 200, 235],
            width: 1,
            markers: false,
        },
        Series {
            label: "train ELBO, per epoch".into(),
            points: history
                .iter()
                .map(|h| (h.epoch as f64, h.train_elbo))
                .collect(),
            color: [31, 119, 180],
            width: 2,
            markers: true,
        },
        Series {
            label: "test ELBO".into(),
            points: history
                .iter()
                .map(|h| (h.epoch as f64, h.test_elbo))
                .collect(),
            color: [255, 127, 14],
            width: 2,
            markers: true,
        },
    ];
    save(
        &pictures::plot("ELBO per image", &series, range),
        &outputs.curve,
    )
}

fn save<P, C>(img: &image::ImageBuffer<P, C>, path: &Path) -> Result<(), TrainError>
where
    P: image::Pixel + image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
    C: std::ops::Deref<Target = [P::Subpixel]>,
{
    let tmp = tmp_path(path);
    pictures::save_png(img, &tmp).map_err(|source| TrainError::Image {
        path: path.to_path_buf(),
        source,
    })?;
    rename(&tmp, path)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn rename(from: &Path, to: &Path) -> Result<(), TrainError> {
    std::fs::rename(from, to).map_err(|source| TrainError::Io {
        path: to.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes).map_err(|source| TrainError::Io {
        path: tmp.clone(),
        source,
    })?;
    rename(&tmp, path)
}

const EPOCHS_HEADER: &str = "epoch,train_elbo,test_elbo,kl_per_dim,seconds";
const STEPS_HEADER: &str = "epoch,step,images,loss";

/// Writes the per-epoch figures (full precision: `f64`'s shortest round-trip form).
fn write_epochs(path: &Path, history: &[EpochStats]) -> Result<(), TrainError> {
    let mut s = format!("{EPOCHS_HEADER}\n");
    for h in history {
        let _ = writeln!(
            s,
            "{},{},{},{},{}",
            h.epoch, h.train_elbo, h.test_elbo, h.kl_per_dim, h.seconds
        );
    }
    write_atomic(path, s.as_bytes())
}

fn write_steps(path: &Path, steps: &[StepRecord]) -> Result<(), TrainError> {
    let mut s = format!("{STEPS_HEADER}\n");
    for r in steps {
        let _ = writeln!(s, "{},{},{},{}", r.epoch, r.step, r.images, r.loss);
    }
    write_atomic(path, s.as_bytes())
}

/// The rows of a CSV file written by this module, up to epoch `upto`, each parsed by `row`.
fn read_csv<T>(
    path: &Path,
    header: &str,
    upto: usize,
    row: impl Fn(&[&str]) -> Option<(usize, T)>,
) -> Result<Vec<T>, TrainError> {
    let bad = |msg: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        bad(format!(
            "cannot read it ({e}); it is written with the checkpoint"
        ))
    })?;
    let mut lines = text.lines();
    if lines.next() != Some(header) {
        return Err(bad(format!("expected the header `{header}`")));
    }
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let cols: Vec<&str> = line.split(',').collect();
        let (epoch, value) = row(&cols).ok_or_else(|| bad(format!("line {}: `{line}`", i + 2)))?;
        if epoch <= upto {
            out.push(value);
        }
    }
    Ok(out)
}

fn read_epochs(path: &Path, upto: usize) -> Result<Vec<EpochStats>, TrainError> {
    let rows = read_csv(path, EPOCHS_HEADER, upto, |c| {
        let [e, tr, te, kl, s] = c else { return None };
        let epoch = e.parse().ok()?;
        Some((
            epoch,
            EpochStats {
                epoch,
                train_elbo: tr.parse().ok()?,
                test_elbo: te.parse().ok()?,
                kl_per_dim: kl.parse().ok()?,
                seconds: s.parse().ok()?,
            },
        ))
    })?;
    if rows.len() != upto {
        return Err(TrainError::Checkpoint {
            path: path.to_path_buf(),
            msg: format!(
                "{} epochs recorded, the checkpoint is at epoch {upto}",
                rows.len()
            ),
        });
    }
    Ok(rows)
}

fn read_steps(path: &Path, upto: usize) -> Result<Vec<StepRecord>, TrainError> {
    read_csv(path, STEPS_HEADER, upto, |c| {
        let [e, s, n, l] = c else { return None };
        let epoch = e.parse().ok()?;
        Some((
            epoch,
            StepRecord {
                epoch,
                step: s.parse().ok()?,
                images: n.parse().ok()?,
                loss: l.parse().ok()?,
            },
        ))
    })
}
