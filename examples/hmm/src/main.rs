//! Fits the HMM of the `hmm` library to a sequence drawn with known parameters and prints the
//! recovered transition matrix and emissions beside the truth, then decodes the states with
//! `infer_discrete` (Viterbi) and checks them against a plain dynamic-programming Viterbi;
//! or times one SVI step against the same likelihood written directly in candle.
//!
//! `cargo run --release -p hmm [-- --steps N] [--t T] [--k K] [--seed S]`
//! `cargo run --release -p hmm -- bench [--t T] [--k K] [--steps N]`

use std::time::Instant;

use hmm::{Params, initial, model, read_params, simulate, viterbi};
use rand::SeedableRng;
use vi_infer::candle::{DType, Device, Tensor};
use vi_infer::optim::{Adam, AdamOptions};
use vi_infer::{Ctx, InferDiscrete, ParamStore, Svi, TraceEnumElbo};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its index in mimalloc 3's `mi_option_t`; see
/// `examples/vae`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps the memory mimalloc frees (unless `MIMALLOC_PURGE_DELAY` says otherwise): every step
/// allocates the same sizes, and pages handed back to the OS come back zero-filled.
fn default_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's documented options to a documented value (-1: never
        // purge); mimalloc reads it each time it considers a purge.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

struct Args {
    bench: bool,
    steps: usize,
    t: usize,
    k: usize,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        bench: false,
        steps: 0,
        t: 0,
        k: 0,
        seed: 0,
    };
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("bench") {
        a.bench = true;
        args.next();
    }
    while let Some(flag) = args.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = args.next().ok_or(format!("{name} needs a value"))?;
            v.parse().map_err(|e| format!("{name} {v}: {e}"))
        };
        match flag.as_str() {
            "--steps" => a.steps = value("--steps")? as usize,
            "--t" => a.t = value("--t")? as usize,
            "--k" => a.k = value("--k")? as usize,
            "--seed" => a.seed = value("--seed")?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let (t, k, steps) = if a.bench {
        (1000, 10, 20)
    } else {
        (500, 3, 300)
    };
    if a.t == 0 {
        a.t = t;
    }
    if a.k == 0 {
        a.k = k;
    }
    if a.steps == 0 {
        a.steps = steps;
    }
    Ok(a)
}

fn matrix(m: &[Vec<f64>]) -> String {
    m.iter()
        .map(|r| {
            r.iter()
                .map(|x| format!("{x:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n    ")
}

fn fit(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let truth = Params::truth(a.k);
    let (states, ys) = simulate(&truth, a.t, a.seed);
    let start = initial(a.k, &ys);
    let dev = Device::Cpu;
    let y = Tensor::new(ys.as_slice(), &dev)?;
    let adam = Adam::empty(AdamOptions {
        lr: 0.05,
        ..Default::default()
    })?;
    let elbo = TraceEnumElbo::new().max_plate_nesting(0);
    let init = start.clone();
    let yy = y.clone();
    let mut svi = Svi::new(
        move |ctx: &mut Ctx| model(ctx, &yy, &init).map(|_| ()),
        |_: &mut Ctx| Ok(()),
        adam,
        elbo,
    )
    .seed(a.seed);
    let clock = Instant::now();
    let mut first = None;
    let mut last = 0.0;
    for _ in 0..a.steps {
        let r = svi.step()?;
        first.get_or_insert(r.loss);
        last = r.loss;
    }
    let secs = clock.elapsed().as_secs_f64();
    let fitted = read_params(svi.store(), &start)?;
    println!(
        "HMM: K = {}, T = {}, {} steps of markov + TraceEnumElbo + Adam: {secs:.2} s ({:.1} ms/step); \
         −log p(y) {:.1} -> {last:.1}",
        a.k,
        a.t,
        a.steps,
        1e3 * secs / a.steps as f64,
        first.unwrap_or(f64::NAN),
    );
    println!("transition matrix, true:\n    {}", matrix(&truth.trans));
    println!("transition matrix, fitted:\n    {}", matrix(&fitted.trans));
    println!("emission means, true {:?}", truth.locs);
    println!(
        "emission means, fitted [{}]",
        fitted
            .locs
            .iter()
            .map(|x| format!("{x:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "emission scale, true {}, fitted {:.3}",
        truth.scale, fitted.scale
    );
    // Decode with the fitted parameters: infer_discrete (temperature 0) against Viterbi.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
    let mut store = ParamStore::new(&dev, DType::F64);
    let init = fitted.clone();
    let path = {
        let mut ctx = Ctx::new(&mut store, &mut rng);
        ctx.infer_discrete(&InferDiscrete::map().max_plate_nesting(0), |ctx| {
            model(ctx, &y, &init)
        })?
    };
    let decoded: Vec<usize> = path
        .iter()
        .map(|s| s.to_scalar::<f64>().map(|v| v as usize))
        .collect::<Result<_, _>>()?;
    let dp = viterbi(&fitted, &ys);
    let agree = decoded.iter().zip(&dp).filter(|(a, b)| a == b).count();
    let right = decoded.iter().zip(&states).filter(|(a, b)| a == b).count();
    println!(
        "infer_discrete (temperature 0) vs dynamic-programming Viterbi: {agree}/{} states agree; \
         {right}/{} equal the true states",
        a.t, a.t
    );
    if agree != a.t {
        return Err("infer_discrete and Viterbi disagree".into());
    }
    Ok(())
}

fn bench(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    vi_infer::dist::set_validation(false);
    let report = hmm::bench::run(a.k, a.t, a.steps, a.seed)?;
    println!("{report}");
    Ok(())
}

/// The stack of the thread that runs the work: candle's backward pass walks the graph
/// recursively, and a chain of `T` steps makes a graph `T` deep (8 MiB, the main thread's
/// stack, overflows at T = 4000).
const STACK: usize = 1 << 30;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    default_allocator();
    let a = parse_args()?;
    let worker = std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || {
            let r = if a.bench { bench(&a) } else { fit(&a) };
            r.map_err(|e| e.to_string())
        })?;
    match worker.join() {
        Ok(r) => Ok(r?),
        Err(_) => Err("the worker thread panicked".into()),
    }
}
