//! The `bench` subcommand: the time of one SVI step against the same step in plain candle
//! ([`crate::plain`]), from the same initial weights on the same batch, in one run.
//!
//! Both run with value validation off, as training does. After the warm-up, the two
//! alternate in blocks of [`BLOCK`] steps, which one goes first alternating too
//! (`svi plain | plain svi | …`), so a load that changes over time — other processes on a
//! shared machine — hits both alike; each step is timed on its own and the report gives
//! the median of each. On a busy machine the figures still move by several percent from
//! run to run: give it more steps.

use std::cell::RefCell;
use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use vi_infer::candle::{Device, Tensor};
use vi_infer::optim::{Adam, AdamOptions};
use vi_infer::{Ctx, InferError, ParamStore, Svi, TraceMeanFieldElbo};

use crate::objective::Objective;

use crate::data::{self, DataError};
use crate::model::{Sizes, Vae};
use crate::plain::PlainVae;

/// Steps of one side timed before the other side takes its turn.
pub const BLOCK: usize = 1;

/// The learning rate of both Adams (Pyro's VAE tutorial).
pub const LR: f64 = 1e-3;

/// What to benchmark.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Images per step (the first `batch` training images, every step).
    pub batch: usize,
    /// Untimed steps of each side before timing.
    pub warmup: usize,
    /// Timed steps of each side (rounded up to whole blocks of [`BLOCK`]).
    pub steps: usize,
    /// Seeds the weights and both generators of `ε`.
    pub seed: u64,
    /// The network sizes.
    pub sizes: Sizes,
    /// Where the MNIST files are (`train-images-idx3-ubyte.gz`, …).
    pub data_dir: PathBuf,
    /// Where both run.
    pub device: Device,
}

impl Default for BenchConfig {
    /// Batch 256, 5 warm-up steps, 30 timed steps, seed 0, Pyro's sizes, the bundled data,
    /// the CPU.
    fn default() -> Self {
        Self {
            batch: 256,
            warmup: 5,
            steps: 30,
            seed: 0,
            sizes: Sizes::default(),
            data_dir: data::bundled_dir(),
            device: Device::Cpu,
        }
    }
}

/// The median milliseconds per step of each side.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BenchReport {
    /// `Svi::step` (`TraceMeanFieldElbo`, Adam) on the VAE's model and guide.
    pub svi_step_ms: f64,
    /// The same step in plain candle.
    pub plain_candle_ms: f64,
}

impl BenchReport {
    /// `svi_step_ms / plain_candle_ms`: what the framework costs (1.05 = 5% over plain).
    ///
    /// ```
    /// let r = vae::bench::BenchReport { svi_step_ms: 21.0, plain_candle_ms: 20.0 };
    /// assert!((r.ratio() - 1.05).abs() < 1e-12);
    /// ```
    pub fn ratio(&self) -> f64 {
        self.svi_step_ms / self.plain_candle_ms
    }
}

impl fmt::Display for BenchReport {
    /// `svi_step_ms=A plain_candle_ms=B ratio=R`, three decimals each.
    ///
    /// ```
    /// let r = vae::bench::BenchReport { svi_step_ms: 21.0, plain_candle_ms: 20.0 };
    /// assert_eq!(r.to_string(), "svi_step_ms=21.000 plain_candle_ms=20.000 ratio=1.050");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "svi_step_ms={:.3} plain_candle_ms={:.3} ratio={:.3}",
            self.svi_step_ms,
            self.plain_candle_ms,
            self.ratio()
        )
    }
}

/// What can stop the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The data could not be read.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A step failed.
    #[error(transparent)]
    Infer(#[from] InferError),
    /// The configuration cannot be run.
    #[error("bench: {0}")]
    Config(String),
}

impl From<vi_infer::candle::Error> for BenchError {
    fn from(e: vi_infer::candle::Error) -> Self {
        BenchError::Infer(e.into())
    }
}

type Step = Box<dyn FnMut() -> vi_infer::Result<f64>>;

/// The two steppers of the benchmark, from the same initial weights on the same batch: the
/// SVI step and the plain-candle step. Both return the loss read back as `f64`.
pub struct Pair {
    svi: Step,
    plain: PlainVae,
    x: Rc<RefCell<Tensor>>,
}

impl fmt::Debug for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pair")
            .field("plain", &self.plain)
            .field("x", &self.x.borrow().shape())
            .finish_non_exhaustive()
    }
}

impl Pair {
    /// Builds both from `config`: the first `config.batch` training images of
    /// `config.data_dir`, a [`Vae`] initialised with `config.seed`, its weights copied into
    /// a [`PlainVae`], and both generators of `ε` seeded with `config.seed`.
    ///
    /// ```no_run
    /// use vae::bench::{BenchConfig, Pair};
    /// let mut pair = Pair::new(&BenchConfig { batch: 8, ..Default::default() })?;
    /// let (a, b) = (pair.svi_step()?, pair.plain_step()?);
    /// assert!((a - b).abs() <= 1e-4 * b.abs());
    /// # Ok::<(), vae::bench::BenchError>(())
    /// ```
    pub fn new(config: &BenchConfig) -> Result<Self, BenchError> {
        let train = data::load_split(&config.data_dir, "train", &config.device)?;
        if config.batch == 0 || config.batch > train.len() {
            return Err(BenchError::Config(format!(
                "batch {} with {} training images in {}",
                config.batch,
                train.len(),
                config.data_dir.display()
            )));
        }
        let x = train.images.narrow(0, 0, config.batch)?;
        Self::from_batch(x, config.sizes, config.seed)
    }

    /// Builds both on the batch `x` (`[batch, 784]`, f32 or f64), as [`Pair::new`].
    ///
    /// ```
    /// use vae::bench::Pair;
    /// use vae::model::Sizes;
    /// use vi_infer::candle::{Device, Tensor};
    /// vi_infer::dist::set_validation(false); // grey pixels: not {0, 1}, as MNIST's
    /// let x = Tensor::full(0.5f32, (4, 784), &Device::Cpu)?;
    /// let mut pair = Pair::from_batch(x, Sizes { hidden: 8, latent: 2 }, 0)?;
    /// let (a, b) = (pair.svi_step()?, pair.plain_step()?);
    /// assert!((a - b).abs() <= 1e-4 * b.abs());
    /// # Ok::<(), vae::bench::BenchError>(())
    /// ```
    pub fn from_batch(x: Tensor, sizes: Sizes, seed: u64) -> Result<Self, BenchError> {
        let mut store = ParamStore::new(x.device(), x.dtype());
        let vae = Vae::new(&mut store, sizes, seed)?;
        let plain = PlainVae::from_store(&store, sizes, LR, seed)?;
        let x = Rc::new(RefCell::new(x));
        let (vae_m, x_m) = (vae.clone(), x.clone());
        let model = move |ctx: &mut Ctx<'_>| vae_m.model(ctx, &x_m.borrow());
        let x_g = x.clone();
        let guide = move |ctx: &mut Ctx<'_>| vae.guide(ctx, &x_g.borrow());
        let adam = Adam::empty(AdamOptions {
            lr: LR,
            ..Default::default()
        })
        .map_err(InferError::from)?;
        let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new())
            .with_store(store)
            .seed(seed);
        Ok(Self {
            svi: Box::new(move || Ok(svi.step()?.loss)),
            plain,
            x,
        })
    }

    /// One `Svi::step`; its loss.
    pub fn svi_step(&mut self) -> vi_infer::Result<f64> {
        (self.svi)()
    }

    /// One plain-candle step; its loss.
    pub fn plain_step(&mut self) -> vi_infer::Result<f64> {
        let x = self.x.borrow().clone();
        self.plain.step(&x)
    }

    /// Makes `x` (`[batch, 784]`, the dtype and device of the first) the batch of both sides'
    /// next steps.
    pub fn set_batch(&mut self, x: Tensor) {
        *self.x.borrow_mut() = x;
    }
}

/// Times both steps as the module doc says and returns the median milliseconds per step of
/// each. Value validation is off while it runs (and restored after).
///
/// ```no_run
/// let report = vae::bench::run(&vae::bench::BenchConfig::default())?;
/// println!("{report}"); // svi_step_ms=… plain_candle_ms=… ratio=…
/// # Ok::<(), vae::bench::BenchError>(())
/// ```
pub fn run(config: &BenchConfig) -> Result<BenchReport, BenchError> {
    vi_infer::dist::with_validation(false, || run_unvalidated(config))
}

fn run_unvalidated(config: &BenchConfig) -> Result<BenchReport, BenchError> {
    if config.steps == 0 {
        return Err(BenchError::Config("steps must be at least 1".into()));
    }
    let mut pair = Pair::new(config)?;
    for _ in 0..config.warmup {
        pair.svi_step()?;
        pair.plain_step()?;
    }
    let rounds = config.steps.div_ceil(BLOCK);
    let (mut svi, mut plain) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for side in 0..2 {
            let svi_turn = (side == 0) == (round % 2 == 0);
            for _ in 0..BLOCK {
                let t = Instant::now();
                if svi_turn {
                    pair.svi_step()?;
                    svi.push(t.elapsed().as_secs_f64() * 1e3);
                } else {
                    pair.plain_step()?;
                    plain.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
    }
    Ok(BenchReport {
        svi_step_ms: median(&mut svi),
        plain_candle_ms: median(&mut plain),
    })
}

/// The seconds of one pass over the training set of each side.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochReport {
    /// The sum of the `Svi::step` times over the epoch's batches.
    pub svi_epoch_s: f64,
    /// The sum of the plain-candle step times over the same batches.
    pub plain_candle_epoch_s: f64,
    /// The number of steps (batches) in the epoch.
    pub steps: usize,
}

impl fmt::Display for EpochReport {
    /// `svi_epoch_s=A plain_candle_epoch_s=B ratio=R steps=N`.
    ///
    /// ```
    /// let r = vae::bench::EpochReport { svi_epoch_s: 6.0, plain_candle_epoch_s: 6.0, steps: 235 };
    /// assert_eq!(r.to_string(), "svi_epoch_s=6.000 plain_candle_epoch_s=6.000 ratio=1.000 steps=235");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "svi_epoch_s={:.3} plain_candle_epoch_s={:.3} ratio={:.3} steps={}",
            self.svi_epoch_s,
            self.plain_candle_epoch_s,
            self.svi_epoch_s / self.plain_candle_epoch_s,
            self.steps
        )
    }
}

/// One epoch of each side over the whole training set of `config.data_dir`, in batches of
/// `config.batch` in file order (a last partial batch included), after `config.warmup`
/// untimed steps on the first batch: the SVI step and the plain step on each batch in turn,
/// which one goes first alternating, each step timed on its own. `config.steps` is not used.
/// Value validation is off while it runs.
///
/// ```no_run
/// let config = vae::bench::BenchConfig { data_dir: "data/mnist".into(), ..Default::default() };
/// println!("{}", vae::bench::run_epoch(&config)?);
/// # Ok::<(), vae::bench::BenchError>(())
/// ```
pub fn run_epoch(config: &BenchConfig) -> Result<EpochReport, BenchError> {
    vi_infer::dist::with_validation(false, || {
        let train = data::load_split(&config.data_dir, "train", &config.device)?;
        let n = train.len();
        if config.batch == 0 || n == 0 {
            return Err(BenchError::Config(format!(
                "batch {} with {n} training images in {}",
                config.batch,
                config.data_dir.display()
            )));
        }
        let first = train.images.narrow(0, 0, config.batch.min(n))?;
        let mut pair = Pair::from_batch(first, config.sizes, config.seed)?;
        for _ in 0..config.warmup {
            pair.svi_step()?;
            pair.plain_step()?;
        }
        let (mut svi, mut plain, mut steps) = (0.0, 0.0, 0);
        for (k, start) in (0..n).step_by(config.batch).enumerate() {
            pair.set_batch(train.images.narrow(0, start, config.batch.min(n - start))?);
            for side in 0..2 {
                let t = Instant::now();
                if (side == 0) == (k % 2 == 0) {
                    pair.svi_step()?;
                    svi += t.elapsed().as_secs_f64();
                } else {
                    pair.plain_step()?;
                    plain += t.elapsed().as_secs_f64();
                }
            }
            steps += 1;
        }
        Ok(EpochReport {
            svi_epoch_s: svi,
            plain_candle_epoch_s: plain,
            steps,
        })
    })
}

/// The median milliseconds per step of an objective's SVI step and of the single-particle
/// (mean-field) step, from the same initial weights on the same batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ObjectiveReport {
    /// The objective timed.
    pub objective: Objective,
    /// Its `Svi::step`.
    pub objective_ms: f64,
    /// The default `Svi::step` (`TraceMeanFieldElbo`, one draw per image).
    pub single_ms: f64,
}

impl ObjectiveReport {
    /// `objective_ms / single_ms`.
    ///
    /// ```
    /// use vae::bench::ObjectiveReport;
    /// use vae::objective::Objective;
    /// let r = ObjectiveReport { objective: Objective::Iwae { particles: 5 }, objective_ms: 50.0, single_ms: 20.0 };
    /// assert_eq!(r.ratio(), 2.5);
    /// ```
    pub fn ratio(&self) -> f64 {
        self.objective_ms / self.single_ms
    }
}

impl fmt::Display for ObjectiveReport {
    /// `iwae_step_ms=A single_step_ms=B ratio=R particles=K ratio_per_particle=R/K`.
    ///
    /// ```
    /// use vae::bench::ObjectiveReport;
    /// use vae::objective::Objective;
    /// let r = ObjectiveReport { objective: Objective::Iwae { particles: 5 }, objective_ms: 50.0, single_ms: 20.0 };
    /// assert_eq!(r.to_string(), "iwae_step_ms=50.000 single_step_ms=20.000 ratio=2.500 particles=5 ratio_per_particle=0.500");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = self.objective.particles();
        write!(
            f,
            "{}_step_ms={:.3} single_step_ms={:.3} ratio={:.3} particles={k} ratio_per_particle={:.3}",
            self.objective.name().replace('-', "_"),
            self.objective_ms,
            self.single_ms,
            self.ratio(),
            self.ratio() / k as f64
        )
    }
}

/// An `Svi::step` of the VAE with `objective` on the batch in `x`, from weights seeded with
/// `seed`; returns the loss.
fn objective_step(
    x: Rc<RefCell<Tensor>>,
    sizes: Sizes,
    seed: u64,
    objective: Objective,
) -> Result<Step, BenchError> {
    let (device, dtype) = {
        let b = x.borrow();
        (b.device().clone(), b.dtype())
    };
    let mut store = ParamStore::new(&device, dtype);
    let vae = Vae::new(&mut store, sizes, seed)?;
    let (vae_m, x_m) = (vae.clone(), x.clone());
    let model = move |ctx: &mut Ctx<'_>| vae_m.model(ctx, &x_m.borrow());
    let guide = move |ctx: &mut Ctx<'_>| vae.guide(ctx, &x.borrow());
    let adam = Adam::empty(AdamOptions {
        lr: LR,
        ..Default::default()
    })
    .map_err(InferError::from)?;
    let mut svi = Svi::new(model, guide, adam, objective.elbo()?)
        .with_store(store)
        .seed(seed);
    Ok(Box::new(move || Ok(svi.step()?.loss)))
}

/// Times `objective`'s SVI step against the single-particle step (`TraceMeanFieldElbo`) on the
/// first `config.batch` training images, alternating the two as [`run`] does, and returns the
/// median milliseconds of each. Value validation is off while it runs.
///
/// ```no_run
/// use vae::objective::Objective;
/// let r = vae::bench::run_objective(&vae::bench::BenchConfig::default(), Objective::Iwae { particles: 5 })?;
/// println!("{r}"); // iwae_step_ms=… single_step_ms=… ratio=…
/// # Ok::<(), vae::bench::BenchError>(())
/// ```
pub fn run_objective(
    config: &BenchConfig,
    objective: Objective,
) -> Result<ObjectiveReport, BenchError> {
    vi_infer::dist::with_validation(false, || {
        if config.steps == 0 {
            return Err(BenchError::Config("steps must be at least 1".into()));
        }
        let train = data::load_split(&config.data_dir, "train", &config.device)?;
        if config.batch == 0 || config.batch > train.len() {
            return Err(BenchError::Config(format!(
                "batch {} with {} training images in {}",
                config.batch,
                train.len(),
                config.data_dir.display()
            )));
        }
        let x = Rc::new(RefCell::new(train.images.narrow(0, 0, config.batch)?));
        let mut timed = objective_step(x.clone(), config.sizes, config.seed, objective)?;
        let mut single = objective_step(x, config.sizes, config.seed, Objective::MeanField)?;
        for _ in 0..config.warmup {
            timed()?;
            single()?;
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for round in 0..config.steps {
            for side in 0..2 {
                let t = Instant::now();
                if (side == 0) == (round % 2 == 0) {
                    timed()?;
                    a.push(t.elapsed().as_secs_f64() * 1e3);
                } else {
                    single()?;
                    b.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
        Ok(ObjectiveReport {
            objective,
            objective_ms: median(&mut a),
            single_ms: median(&mut b),
        })
    })
}

/// The median (the mean of the middle two for an even count); 0 for none.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SVI step and the plain step compute the same losses from the same draws, step
    /// after step, on a batch of the bundled data.
    #[test]
    fn svi_and_plain_agree() {
        let config = BenchConfig {
            batch: 32,
            ..Default::default()
        };
        let (losses, different) = vi_infer::dist::with_validation(false, || {
            let mut pair = Pair::new(&config).unwrap();
            let mut losses = Vec::new();
            for _ in 0..4 {
                losses.push((pair.svi_step().unwrap(), pair.plain_step().unwrap()));
            }
            // Another seed draws other ε: the comparison can tell.
            let x = pair.x.borrow().clone();
            let mut other = Pair::from_batch(x, config.sizes, config.seed + 1).unwrap();
            let different = other.plain_step().unwrap();
            (losses, different)
        });
        for (k, (a, b)) in losses.iter().enumerate() {
            assert!(
                (a - b).abs() <= 2e-5 * b.abs(),
                "step {k}: svi loss {a}, plain loss {b}"
            );
        }
        // The loss falls over the steps (the parameters moved alike on both sides).
        assert!(losses[3].1 < losses[0].1, "{losses:?}");
        assert!((different - losses[0].1).abs() > 1e-3 * different.abs());
    }

    #[test]
    fn f64_agrees_closely() {
        let x = Tensor::full(0.25f64, (3, 784), &Device::Cpu).unwrap();
        let sizes = Sizes {
            hidden: 16,
            latent: 4,
        };
        vi_infer::dist::with_validation(false, || {
            let mut pair = Pair::from_batch(x, sizes, 3).unwrap();
            for k in 0..3 {
                let (a, b) = (pair.svi_step().unwrap(), pair.plain_step().unwrap());
                assert!((a - b).abs() <= 1e-10 * b.abs(), "step {k}: {a} vs {b}");
            }
        });
    }

    #[test]
    fn median_and_display() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        let r = BenchReport {
            svi_step_ms: 10.5,
            plain_candle_ms: 10.0,
        };
        assert_eq!(
            r.to_string(),
            "svi_step_ms=10.500 plain_candle_ms=10.000 ratio=1.050"
        );
    }

    #[test]
    fn bad_batch_is_a_config_error() {
        let config = BenchConfig {
            batch: 0,
            ..Default::default()
        };
        assert!(matches!(Pair::new(&config), Err(BenchError::Config(_))));
    }
}
