//! `vae`: trains the VAE of Pyro's tutorial on MNIST with `vi-infer`'s SVI, and writes
//! reconstructions, prior samples, the ELBO curve, per-epoch figures and checkpoints.
//!
//! `cargo run --release -p vae` trains a few epochs on the bundled MNIST subset;
//! `cargo run --release -p vae -- train --help` lists the options.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use vae::checkpoint::CheckpointMeta;
use vae::model::Sizes;
use vae::objective::Objective;
use vae::train::{DEFAULT_EPOCHS, Event, TrainConfig, TrainError, train};
use vi_infer::candle::Device;
use vi_infer::parallel::Communicator;

// candle's CPU path allocates an output per op: mimalloc makes that cheap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A variational autoencoder on MNIST, trained with vi-infer's SVI (Pyro's VAE tutorial).
///
/// Without a subcommand it trains (`train`'s options apply).
#[derive(Parser, Debug)]
#[command(name = "vae", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train the VAE (the default).
    Train(TrainArgs),
    /// Time one SVI step against the same step written in plain candle (same initial
    /// weights, same batch, same draws), alternating the two, and print
    /// `svi_step_ms=A plain_candle_ms=B ratio=A/B`; with `--elbo iwae`, the IWAE step against
    /// the single-particle step instead.
    Bench(BenchArgs),
    /// Measure a trained run's test ELBO and its test log-likelihood estimated with
    /// `--ll-samples` importance samples per image, from the checkpoint in `--out-dir`.
    Evaluate(EvaluateArgs),
}

#[derive(Args, Debug, Clone)]
struct EvaluateArgs {
    /// The output directory of the run (its `checkpoint.txt`).
    #[arg(long, default_value = "vae-output")]
    out_dir: PathBuf,
    /// Directory of the MNIST files [default: the bundled subset].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Importance samples per test image (VAE papers report 5000).
    #[arg(long, default_value_t = 1000)]
    ll_samples: usize,
    /// Use only the first N test images [default: as many as the run used].
    #[arg(long, value_name = "N")]
    test_size: Option<usize>,
    /// Where to compute.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
}

fn run_evaluate(args: &EvaluateArgs) -> Result<(), TrainError> {
    let data_dir = args.data_dir.clone().unwrap_or_else(vae::data::bundled_dir);
    let device = pick_device(args.device);
    let t = std::time::Instant::now();
    let e = vae::evaluate::evaluate_checkpoint(
        &args.out_dir,
        &data_dir,
        args.ll_samples,
        args.test_size,
        &device,
    )?;
    println!(
        "epoch {} checkpoint, {} test images: test ELBO {:.3}  test log-likelihood (K = {}) {:.3}  ({:.1} s)",
        e.epoch,
        e.images,
        e.test_elbo,
        e.ll_samples,
        e.test_ll,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

#[derive(Args, Debug, Clone)]
struct BenchArgs {
    /// Images per step.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Timed steps of each side.
    #[arg(long, default_value_t = 30)]
    steps: usize,
    /// Untimed steps of each side first.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Dimension of the latent z.
    #[arg(long, default_value_t = 50)]
    latent: usize,
    /// Width of the hidden layers.
    #[arg(long, default_value_t = 400)]
    hidden: usize,
    /// Seeds the weights and the draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The device (CUDA only in a build with `--features cuda`).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    /// Directory of the MNIST IDX files [default: the bundled subset].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Time one whole epoch of each side over the training set instead (prints
    /// `svi_epoch_s=A plain_candle_epoch_s=B ratio=A/B steps=N`; `--steps` is not used).
    #[arg(long)]
    epoch: bool,
    /// `iwae`: time the importance-weighted step (`--particles` samples per image, drawn at
    /// once) against the single-particle step, and print `iwae_step_ms=A single_step_ms=B
    /// ratio=A/B particles=K ratio_per_particle=A/(B K)`.
    #[arg(long, value_enum, default_value = "mean-field")]
    elbo: ElboArg,
    /// Importance samples per image for `--elbo iwae`.
    #[arg(long, default_value_t = 5)]
    particles: usize,
    /// Data-parallel over MPI (a `--features mpi` build under `mpirun -np N`): time the
    /// world's step on batches of `--batch-size` images drawn from the training set (each
    /// rank its share), the all-reduce alone, then one rank alone on its share; rank 0
    /// prints the world's and one rank's step time and samples per second.
    #[arg(long)]
    distributed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ElboArg {
    /// The ELBO with the KL of z in closed form (Pyro's tutorial).
    MeanField,
    /// The importance-weighted bound (IWAE) with `--particles` samples per image.
    Iwae,
}

impl ElboArg {
    fn name(self) -> &'static str {
        match self {
            ElboArg::MeanField => "mean-field",
            ElboArg::Iwae => "iwae",
        }
    }
}

fn run_bench(args: &BenchArgs) -> Result<(), vae::bench::BenchError> {
    let config = vae::bench::BenchConfig {
        batch: args.batch_size,
        warmup: args.warmup,
        steps: args.steps,
        seed: args.seed,
        sizes: Sizes {
            hidden: args.hidden,
            latent: args.latent,
        },
        data_dir: args.data_dir.clone().unwrap_or_else(vae::data::bundled_dir),
        device: pick_device(args.device),
    };
    if args.distributed {
        let comm = world().map_err(vae::bench::BenchError::Config)?;
        if let Some(report) = vae::distributed::bench(&config, comm)? {
            println!("{report}");
        }
    } else if args.elbo == ElboArg::Iwae {
        let objective = Objective::from_parts("iwae", args.particles)
            .map_err(vae::bench::BenchError::Config)?;
        println!("{}", vae::bench::run_objective(&config, objective)?);
    } else if args.epoch {
        println!("{}", vae::bench::run_epoch(&config)?);
    } else {
        println!("{}", vae::bench::run(&config)?);
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DeviceArg {
    /// The CPU.
    Cpu,
    /// The first CUDA GPU (needs a build with `--features cuda`; falls back to the CPU).
    Cuda,
}

#[derive(Args, Debug, Clone)]
struct TrainArgs {
    /// Train until this many epochs are done [default: 20; with --resume, the checkpoint's].
    #[arg(long)]
    epochs: Option<usize>,
    /// Images per minibatch [default: 256].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Adam's learning rate [default: 0.001].
    #[arg(long)]
    lr: Option<f64>,
    /// Dimension of the latent z [default: 50].
    #[arg(long)]
    latent: Option<usize>,
    /// Width of the hidden layers [default: 400].
    #[arg(long)]
    hidden: Option<usize>,
    /// Seed of every random choice (initial weights, draws, shuffles) [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Where to compute.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
    /// Directory of the MNIST files (train-images-idx3-ubyte.gz, …) [default: the bundled
    /// 10k/2k subset].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where the pictures, CSV files and checkpoints go.
    #[arg(long, default_value = "vae-output")]
    out_dir: PathBuf,
    /// Continue the run whose checkpoint is in --out-dir (options left out are the
    /// checkpoint's; options given must match it).
    #[arg(long)]
    resume: bool,
    /// Use only the first N training images.
    #[arg(long, value_name = "N")]
    train_size: Option<usize>,
    /// Use only the first N test images.
    #[arg(long, value_name = "N")]
    test_size: Option<usize>,
    /// The bound to maximise [default: mean-field; with --resume, the checkpoint's].
    #[arg(long, value_enum)]
    elbo: Option<ElboArg>,
    /// Importance samples per image for `--elbo iwae` [default: 5; with --resume, the
    /// checkpoint's].
    #[arg(long)]
    particles: Option<usize>,
    /// After each epoch, also estimate the test log-likelihood with K importance samples per
    /// image (a `test_ll` column in epochs.csv).
    #[arg(long, value_name = "K")]
    ll_samples: Option<usize>,
    /// Data-parallel over MPI (a `--features mpi` build under `mpirun -np N`): each step's
    /// batch of `--batch-size` images is the world's, each rank takes its share, rank 0
    /// writes the outputs.
    #[arg(long)]
    distributed: bool,
}

/// The MPI world (`--distributed`).
#[cfg(feature = "mpi")]
fn world() -> Result<Arc<dyn Communicator>, String> {
    let mpi = vi_infer::parallel::Mpi::init().map_err(|e| e.to_string())?;
    // Rank 0 writes pictures and checkpoints between steps: a generous deadline.
    Ok(Arc::new(mpi.timeout(std::time::Duration::from_secs(3600))))
}

/// The MPI world (`--distributed`): not in this build.
#[cfg(not(feature = "mpi"))]
fn world() -> Result<Arc<dyn Communicator>, String> {
    Err(
        "--distributed needs a build with MPI: cargo build --release -p vae --features mpi, \
         then mpirun -np N target/release/vae … --distributed"
            .into(),
    )
}

/// The device asked for, or the CPU with a note saying why not.
fn pick_device(arg: DeviceArg) -> Device {
    match arg {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Cuda if !cfg!(feature = "cuda") => {
            eprintln!(
                "note: this binary was built without CUDA; training on the CPU \
                 (build with `cargo run --release -p vae --features cuda -- --device cuda`)"
            );
            Device::Cpu
        }
        DeviceArg::Cuda => match Device::new_cuda(0) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("note: no usable CUDA device ({e}); training on the CPU");
                Device::Cpu
            }
        },
    }
}

/// The run's configuration: the options given, the checkpoint's for those left out when
/// resuming, the defaults otherwise.
fn config(args: &TrainArgs) -> Result<TrainConfig, TrainError> {
    let data_dir = args.data_dir.clone().unwrap_or_else(vae::data::bundled_dir);
    let mut cfg = TrainConfig::new(data_dir, args.out_dir.clone());
    cfg.resume = args.resume;
    cfg.train_limit = args.train_size;
    cfg.test_limit = args.test_size;
    if args.resume {
        let meta = CheckpointMeta::read(&args.out_dir)?;
        cfg.epochs = meta.target_epochs;
        cfg.batch_size = meta.batch_size;
        cfg.lr = meta.lr;
        cfg.sizes = meta.sizes;
        cfg.seed = meta.seed;
        cfg.train_limit = cfg.train_limit.or(Some(meta.train_images));
        cfg.test_limit = cfg.test_limit.or(Some(meta.test_images));
        cfg.objective = meta.objective;
        cfg.ll_samples = meta.ll_samples;
    } else {
        cfg.epochs = DEFAULT_EPOCHS;
        if let Ok(meta) = CheckpointMeta::read(&args.out_dir) {
            eprintln!(
                "note: starting afresh in {}: its checkpoint (epoch {}) will be replaced \
                 (--resume continues it instead)",
                args.out_dir.display(),
                meta.epoch
            );
        }
    }
    let d = Sizes::default();
    cfg.epochs = args.epochs.unwrap_or(cfg.epochs);
    cfg.batch_size = args.batch_size.unwrap_or(cfg.batch_size);
    cfg.lr = args.lr.unwrap_or(cfg.lr);
    cfg.sizes = Sizes {
        hidden: args.hidden.unwrap_or(if args.resume {
            cfg.sizes.hidden
        } else {
            d.hidden
        }),
        latent: args.latent.unwrap_or(if args.resume {
            cfg.sizes.latent
        } else {
            d.latent
        }),
    };
    cfg.seed = args.seed.unwrap_or(cfg.seed);
    let (name, particles) = match (args.elbo, args.resume) {
        (Some(e), _) => (
            e.name(),
            args.particles
                .unwrap_or(if e == ElboArg::Iwae { 5 } else { 1 }),
        ),
        (None, true) => (
            cfg.objective.name(),
            args.particles.unwrap_or(cfg.objective.particles()),
        ),
        (None, false) => ("mean-field", args.particles.unwrap_or(1)),
    };
    cfg.objective = Objective::from_parts(name, particles).map_err(TrainError::Config)?;
    if args.ll_samples.is_some() || !args.resume {
        cfg.ll_samples = args.ll_samples;
    }
    cfg.device = pick_device(args.device);
    if args.distributed {
        cfg.communicator = Some(world().map_err(TrainError::Config)?);
    }
    Ok(cfg)
}

fn run_train(args: &TrainArgs) -> Result<(), TrainError> {
    let cfg = config(args)?;
    if let Some(c) = &cfg.communicator {
        if c.rank() != 0 {
            // Rank 0 reports; the others train quietly.
            train(&cfg, &mut |_| {})?;
            return Ok(());
        }
        println!(
            "data-parallel over {} ({} ranks): batch {} per step, {} per rank",
            c.name(),
            c.world_size(),
            cfg.batch_size,
            cfg.batch_size / c.world_size()
        );
    }
    let device = if cfg.device.is_cuda() { "CUDA" } else { "CPU" };
    let data = if args.data_dir.is_none() {
        format!("the bundled MNIST subset ({})", cfg.data_dir.display())
    } else {
        cfg.data_dir.display().to_string()
    };
    println!(
        "VAE 784-{h}-{l} (Pyro's tutorial) on {data}: {o}, Adam lr {lr}, batch {b}, seed {s}, \
         {device}",
        o = cfg.objective,
        h = cfg.sizes.hidden,
        l = cfg.sizes.latent,
        lr = cfg.lr,
        b = cfg.batch_size,
        s = cfg.seed,
    );
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} steps  loss/image {msg}  {elapsed}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let mut bar: Option<ProgressBar> = None;
    let objective_is_iwae = matches!(cfg.objective, Objective::Iwae { .. });
    let (mut steps, epochs) = (0u64, cfg.epochs);
    let mut on_event = |event: Event<'_>| match event {
        Event::Start {
            done,
            steps_per_epoch,
            train_images,
            test_images,
        } => {
            steps = steps_per_epoch as u64;
            println!(
                "{train_images} training and {test_images} test images, {steps_per_epoch} \
                 steps per epoch; {}",
                if done > 0 {
                    format!("resuming after epoch {done} of {epochs}")
                } else {
                    format!("{epochs} epoch{}", if epochs == 1 { "" } else { "s" })
                }
            );
        }
        Event::Step {
            record,
            running_loss,
        } => {
            let b = bar.get_or_insert_with(|| {
                let b = ProgressBar::new(steps).with_style(style.clone());
                b.set_prefix(format!("epoch {:>3}/{epochs}", record.epoch));
                b
            });
            b.set_position(record.step as u64);
            b.set_message(format!("{running_loss:.2}"));
        }
        Event::Epoch(s) => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            let ll = s
                .test_ll
                .map_or(String::new(), |v| format!("  test LL {v:>9.3}"));
            println!(
                "epoch {:>3}/{epochs}  train {} {:>9.3}  test ELBO {:>9.3}{ll}  KL(z)/dim {:.4}  {:>6.2} s",
                s.epoch,
                if objective_is_iwae { "IWAE" } else { "ELBO" },
                s.train_elbo,
                s.test_elbo,
                s.kl_per_dim,
                s.seconds
            );
        }
    };
    let outcome = train(&cfg, &mut on_event)?;
    let o = &outcome.outputs;
    if outcome.resumed_from >= cfg.epochs {
        println!(
            "the checkpoint is already at epoch {} (pass a larger --epochs to train on)",
            outcome.resumed_from
        );
    }
    if outcome.history.is_empty() {
        return Ok(());
    }
    println!("pictures:");
    println!(
        "  {}  test digits (rows 1, 3, 5, 7) over their reconstructions",
        o.reconstructions.display()
    );
    println!(
        "  {}  100 images decoded from draws of the prior",
        o.samples.display()
    );
    println!("  {}  the ELBO per image", o.curve.display());
    println!(
        "figures: {} (per epoch), {} (per step)",
        o.epochs_csv.display(),
        o.steps_csv.display()
    );
    println!(
        "checkpoint: {} (continue with --resume --epochs N)",
        o.checkpoint.display()
    );
    Ok(())
}

/// The thread setup measured fastest on the CPU (docs/performance.md, "Threads"), unless
/// the environment already sets it: every core in rayon's pool, where candle's GEMM and
/// vi's fused kernels run (`RAYON_NUM_THREADS`, which also spares candle a read of
/// `/proc/cpuinfo` per matmul), and no workers in candle's second pool for its own
/// elementwise ops (`CANDLE_NUM_THREADS=1`), whose spinning workers otherwise take a core
/// from the GEMM's threads.
fn default_threads() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (var, value) in [
        ("RAYON_NUM_THREADS", cores.to_string()),
        ("CANDLE_NUM_THREADS", "1".to_string()),
    ] {
        if std::env::var_os(var).is_none() {
            // SAFETY: called first thing in `main`, before any other thread exists, so
            // nothing reads or writes the environment concurrently.
            unsafe { std::env::set_var(var, value) };
        }
    }
}

/// mimalloc's `mi_option_purge_delay` (its index in mimalloc 3's `mi_option_t`, which
/// libmimalloc-sys builds by default but names no constant for).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps the memory mimalloc frees, unless `MIMALLOC_PURGE_DELAY` says otherwise: by default
/// it hands freed pages back to the OS after a delay, so every step's large tensors landed on
/// fresh pages that the kernel zero-fills on first touch (a quarter of the CPU time of a
/// step before this). A training run reuses the same sizes every step, so nothing is lost.
fn default_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's documented options to a documented value (-1: never
        // purge); mimalloc reads it each time it considers a purge.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

fn main() -> ExitCode {
    default_threads();
    default_allocator();
    let cli = Cli::parse();
    // The error as its message: the run's errors hold candle's, which need not be `Send`.
    let run = || -> Result<(), String> {
        match &cli.command {
            Some(Command::Train(args)) => run_train(args).map_err(|e| e.to_string()),
            Some(Command::Bench(args)) => run_bench(args).map_err(|e| e.to_string()),
            Some(Command::Evaluate(args)) => run_evaluate(args).map_err(|e| e.to_string()),
            None => run_train(&cli.train).map_err(|e| e.to_string()),
        }
    };
    // The whole run on a thread of rayon's pool, where candle's GEMM and vi's kernels split
    // their work: a parallel region then runs on this thread and the pool's other workers,
    // with no third thread waking up and going back to sleep around each one.
    let result = match rayon::ThreadPoolBuilder::new().build() {
        Ok(pool) => pool.install(run),
        Err(_) => run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
