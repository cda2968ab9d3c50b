//! Pyro's Gaussian-mixture tutorial: fits the mixture of the `gmm` library to the tutorial's
//! five points (K = 2) and prints the weights, locations, scale and each point's assignment;
//! or times one SVI step against the same objective written directly in candle.
//!
//! `cargo run --release -p gmm [-- --tries N] [--steps N]`
//! `cargo run --release -p gmm -- bench [--n N] [--k K] [--steps N]`

use std::time::Instant;

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    default_allocator();
    let mut args = std::env::args().skip(1).peekable();
    let bench = args.peek().map(String::as_str) == Some("bench");
    if bench {
        args.next();
    }
    let (mut n, mut k, mut steps, mut tries) = (10_000usize, 5usize, 0usize, 100u64);
    while let Some(flag) = args.next() {
        let v: u64 = args
            .next()
            .ok_or(format!("{flag} needs a value"))?
            .parse()?;
        match flag.as_str() {
            "--n" => n = v as usize,
            "--k" => k = v as usize,
            "--steps" => steps = v as usize,
            "--tries" => tries = v,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if bench {
        vi_infer::dist::set_validation(false);
        let report = gmm::bench::run(n, k, if steps == 0 { 50 } else { steps })?;
        println!("{report}");
        return Ok(());
    }
    let steps = if steps == 0 { 200 } else { steps };
    let clock = Instant::now();
    let fit = gmm::fit(&gmm::TUTORIAL_DATA, 2, tries, steps)?;
    println!(
        "Gaussian mixture, K = 2, data {:?}: best of {tries} initialisations (seed {}), \
         {steps} Adam steps, {:.2} s",
        gmm::TUTORIAL_DATA,
        fit.seed,
        clock.elapsed().as_secs_f64()
    );
    println!(
        "initial loss = {:.4}, final loss = {:.4}",
        fit.initial_loss, fit.final_loss
    );
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.4}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("weights = [{}]", fmt(&fit.weights));
    println!("locs = [{}]", fmt(&fit.locs));
    println!("scale = {:.4}", fit.scale);
    println!("assignment = {:?}", fit.assignment);
    Ok(())
}
