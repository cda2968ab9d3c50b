//! Data-parallel SVI of the VAE (`--distributed`, launched with `mpirun -np N`): every rank
//! takes its share of each batch ([`Vae::model_indexed`]), the gradients are averaged by one
//! all-reduce, every rank takes the same step ([`Svi::data_parallel`]).
//!
//! The communicator is any [`Communicator`]: the binary passes MPI's (`--features mpi`);
//! with [`SingleProcess`](vi_infer::parallel::SingleProcess) it is a world of one.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vi_infer::candle::{DType, Tensor};
use vi_infer::optim::{Adam, AdamOptions};
use vi_infer::parallel::Communicator;
use vi_infer::{Ctx, InferError, ParamStore, Plate, Svi, TraceMeanFieldElbo};

use crate::bench::{BenchConfig, BenchError, LR};
use crate::data;
use crate::model::{Sizes, Vae};

/// What `bench --distributed` measures: the world's step against one rank's alone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DistributedReport {
    /// The number of ranks.
    pub ranks: usize,
    /// The world's batch per step (each rank takes `batch / ranks`).
    pub batch: usize,
    /// The median step of the world, in milliseconds (rank 0's; the ranks step together).
    pub step_ms: f64,
    /// The median time of a step spent in collectives (waiting for the other ranks
    /// included), in milliseconds.
    pub collectives_ms: f64,
    /// The median of a step's time outside the collectives (the rank's own work), on the
    /// slowest and on the fastest rank, in milliseconds.
    pub compute_ms: (f64, f64),
    /// The median time of one all-reduce of a buffer of the gradients' size on its own
    /// (after a barrier), in milliseconds.
    pub allreduce_ms: f64,
    /// The number of floats the gradients' all-reduce carries.
    pub gradient_floats: usize,
    /// The median step of rank 0 alone (no communication, the others idle) on its share of
    /// the batch, in milliseconds.
    pub alone_step_ms: f64,
}

impl DistributedReport {
    /// The world's images per second.
    ///
    /// ```
    /// let r = vae::distributed::DistributedReport { ranks: 2, batch: 256, step_ms: 100.0,
    ///     collectives_ms: 5.0, compute_ms: (95.0, 94.0), allreduce_ms: 2.0, gradient_floats: 688_884, alone_step_ms: 95.0 };
    /// assert_eq!(r.samples_per_s(), 2560.0);
    /// ```
    pub fn samples_per_s(&self) -> f64 {
        self.batch as f64 / (self.step_ms / 1e3)
    }

    /// Rank 0's images per second alone, on its share.
    ///
    /// ```
    /// let r = vae::distributed::DistributedReport { ranks: 2, batch: 256, step_ms: 100.0,
    ///     collectives_ms: 5.0, compute_ms: (95.0, 94.0), allreduce_ms: 2.0, gradient_floats: 688_884, alone_step_ms: 80.0 };
    /// assert_eq!(r.alone_samples_per_s(), 1600.0);
    /// ```
    pub fn alone_samples_per_s(&self) -> f64 {
        (self.batch / self.ranks) as f64 / (self.alone_step_ms / 1e3)
    }
}

impl fmt::Display for DistributedReport {
    /// Three lines: the world, one rank alone, the speed-up.
    ///
    /// ```
    /// let r = vae::distributed::DistributedReport { ranks: 2, batch: 256, step_ms: 100.0,
    ///     collectives_ms: 5.0, compute_ms: (95.0, 94.0), allreduce_ms: 2.0, gradient_floats: 688_884, alone_step_ms: 80.0 };
    /// let text = r.to_string();
    /// assert!(text.contains("samples_per_s=2560.0") && text.contains("speedup=1.600"));
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "world: ranks={} batch={} ({} per rank) step_ms={:.3} samples_per_s={:.1} \
             collectives_ms={:.3} ({:.1}% of the step) allreduce_ms={:.3} ({} floats, {:.1}% of the step) \
             compute_ms={:.3} (slowest rank) {:.3} (fastest)",
            self.ranks,
            self.batch,
            self.batch / self.ranks,
            self.step_ms,
            self.samples_per_s(),
            self.collectives_ms,
            100.0 * self.collectives_ms / self.step_ms,
            self.allreduce_ms,
            self.gradient_floats,
            100.0 * self.allreduce_ms / self.step_ms,
            self.compute_ms.0,
            self.compute_ms.1,
        )?;
        writeln!(
            f,
            "one rank alone: batch={} step_ms={:.3} samples_per_s={:.1}",
            self.batch / self.ranks,
            self.alone_step_ms,
            self.alone_samples_per_s()
        )?;
        write!(
            f,
            "speedup={:.3} (world samples/s over one rank's alone)",
            self.samples_per_s() / self.alone_samples_per_s()
        )
    }
}

type Program = Box<dyn FnMut(&mut Ctx<'_>) -> vi_infer::Result<()>>;

/// The SVI of the VAE on `images` (`[N, 784]`), each step on `batch` images drawn by the
/// plate `data` (the world's batch once data-parallel), weights from `seed`.
pub fn indexed_svi(
    images: &Tensor,
    sizes: Sizes,
    seed: u64,
    batch: usize,
) -> Result<Svi<Program, Program, Adam, TraceMeanFieldElbo>, InferError> {
    let mut store = ParamStore::new(images.device(), DType::F32);
    let vae = Vae::new(&mut store, sizes, seed)?;
    let n = images.dims()[0];
    let (vae_m, images_m) = (vae.clone(), images.to_dtype(DType::F32)?);
    let images_g = images_m.clone();
    let model: Program = Box::new(move |ctx: &mut Ctx<'_>| {
        let plate = Plate::new("data", n).subsample_size(batch);
        vae_m.model_indexed(ctx, &images_m, plate, batch)
    });
    let guide: Program = Box::new(move |ctx: &mut Ctx<'_>| {
        let plate = Plate::new("data", n).subsample_size(batch);
        vae.guide_indexed(ctx, &images_g, plate, batch)
    });
    let adam = Adam::empty(AdamOptions {
        lr: LR,
        ..Default::default()
    })
    .map_err(InferError::from)?;
    Ok(Svi::new(model, guide, adam, TraceMeanFieldElbo::new())
        .with_store(store)
        .seed(seed))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `bench --distributed`: on every rank, `config.warmup` untimed and `config.steps` timed
/// data-parallel steps of the VAE on batches of `config.batch` images drawn from the
/// training set (each rank its share); then the all-reduce of a gradient-sized buffer on its
/// own; then rank 0 alone on its share of the batch, without communication, while the others
/// wait. Rank 0 gets the report, the others `None`. Value validation is off while it runs.
///
/// ```
/// use std::sync::Arc;
/// use vi_infer::parallel::SingleProcess;
/// use vae::bench::BenchConfig;
/// use vae::model::Sizes;
/// let config = BenchConfig { batch: 8, warmup: 1, steps: 2, sizes: Sizes { hidden: 8, latent: 2 }, ..Default::default() };
/// let report = vae::distributed::bench(&config, Arc::new(SingleProcess))?.expect("rank 0");
/// assert_eq!((report.ranks, report.batch), (1, 8));
/// assert!(report.step_ms > 0.0 && report.alone_step_ms > 0.0);
/// # Ok::<(), vae::bench::BenchError>(())
/// ```
pub fn bench(
    config: &BenchConfig,
    comm: Arc<dyn Communicator>,
) -> Result<Option<DistributedReport>, BenchError> {
    vi_infer::dist::with_validation(false, || bench_unvalidated(config, comm))
}

fn bench_unvalidated(
    config: &BenchConfig,
    comm: Arc<dyn Communicator>,
) -> Result<Option<DistributedReport>, BenchError> {
    let (rank, ranks) = (comm.rank(), comm.world_size());
    if config.steps == 0 || config.batch == 0 || !config.batch.is_multiple_of(ranks) {
        return Err(BenchError::Config(format!(
            "--steps {} and --batch-size {} over {ranks} ranks: at least one step, and a batch \
             that is a multiple of the number of ranks",
            config.steps, config.batch
        )));
    }
    let train = data::load_split(&config.data_dir, "train", &config.device)?;
    if config.batch > train.len() {
        return Err(BenchError::Config(format!(
            "batch {} with {} training images",
            config.batch,
            train.len()
        )));
    }
    // The world.
    let mut svi = indexed_svi(&train.images, config.sizes, config.seed, config.batch)?
        .data_parallel(comm.clone());
    let (mut steps, mut waits, mut own) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..config.warmup + config.steps {
        let t = Instant::now();
        let report = svi.step()?;
        if i >= config.warmup {
            let (step, wait) = (t.elapsed(), report.communication.unwrap_or_default());
            steps.push(ms(step));
            waits.push(ms(wait));
            own.push(ms(step.saturating_sub(wait)));
        }
    }
    // Each rank's own work, gathered.
    let mine = median(&mut own);
    let all: Vec<f64> = comm
        .all_gather_bytes(&mine.to_le_bytes())?
        .iter()
        .map(|b| f64::from_le_bytes(b.as_slice().try_into().unwrap_or([0; 8])))
        .collect();
    let compute_ms = (
        all.iter().copied().fold(f64::MIN, f64::max),
        all.iter().copied().fold(f64::MAX, f64::min),
    );
    // The all-reduce of a buffer the size of the gradients, on its own.
    let floats: usize = svi
        .store()
        .named_tensors()
        .values()
        .map(|t| t.elem_count())
        .sum();
    let buf = Tensor::ones(floats, DType::F32, &config.device)?;
    let mut reduces = Vec::new();
    for _ in 0..config.steps.max(5) {
        comm.barrier()?;
        let t = Instant::now();
        comm.all_reduce_sum(&buf)?;
        reduces.push(ms(t.elapsed()));
    }
    drop(svi);
    comm.barrier()?;
    // Rank 0 alone on its share.
    let mut alone = Vec::new();
    if rank == 0 {
        let mut svi = indexed_svi(
            &train.images,
            config.sizes,
            config.seed,
            config.batch / ranks,
        )?;
        for i in 0..config.warmup + config.steps {
            let t = Instant::now();
            svi.step()?;
            if i >= config.warmup {
                alone.push(ms(t.elapsed()));
            }
        }
    }
    comm.barrier()?;
    Ok((rank == 0).then(|| DistributedReport {
        ranks,
        batch: config.batch,
        step_ms: median(&mut steps),
        collectives_ms: median(&mut waits),
        compute_ms,
        allreduce_ms: median(&mut reduces),
        gradient_floats: floats,
        alone_step_ms: median(&mut alone),
    }))
}
