//! One SVI step of the VAE (`TraceMeanFieldElbo`, Adam) against the same step in plain
//! candle (`vae::plain`), batch 256 of the bundled MNIST subset, f32 on the CPU, validation
//! off as in training. Both start from the same weights and draw the same `ε`.
//!
//! `cargo bench -p vae --bench vae`; `cargo run --release -p vae -- bench` gives the
//! paired ratio in one line, as does `VAE_PAIRED=<steps> cargo bench -p vae --bench vae`
//! (then `vae::bench::run` with that many timed steps of each, before criterion's runs).

use criterion::{Criterion, criterion_group, criterion_main};
use vae::bench::{BenchConfig, Pair};

// As the example binary: candle's CPU path allocates an output per op.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn vae_step(c: &mut Criterion) {
    vi_infer::dist::set_validation(false);
    let config = BenchConfig::default();
    if let Some(steps) = std::env::var("VAE_PAIRED")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    {
        let report = vae::bench::run(&BenchConfig {
            steps,
            ..config.clone()
        })
        .unwrap();
        eprintln!("paired, {steps} steps each: {report}");
    }
    let mut g = c.benchmark_group(format!("vae_step_batch{}", config.batch));
    g.sample_size(20);
    let mut pair = Pair::new(&config).unwrap();
    g.bench_function("svi", |b| b.iter(|| pair.svi_step().unwrap()));
    let mut pair = Pair::new(&config).unwrap();
    g.bench_function("plain_candle", |b| b.iter(|| pair.plain_step().unwrap()));
    g.finish();
}

criterion_group!(benches, vae_step);
criterion_main!(benches);
