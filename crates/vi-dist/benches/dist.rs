//! `Normal` log_prob and rsample on [256, 50] against the same expressions in plain candle.

use std::f64::consts::PI;

use candle_core::{DType, Device, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use vi_dist::{Distribution, Normal};

// Like the example binaries: candle's CPU path allocates an output per op.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let shape = (256, 50);
    let loc = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
    let scale = Tensor::rand(0.5f32, 1.5, shape, &dev).unwrap();
    let x = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);

    let mut g = c.benchmark_group("normal_log_prob_256x50");
    g.bench_function("vi", |b| {
        // Value checks off, as a training loop runs: criterion may call this on another
        // thread, and the switch is per thread.
        b.iter(|| {
            vi_dist::set_validation(false);
            let d = Normal::new(&loc, &scale).unwrap();
            d.log_prob(&x).unwrap()
        })
    });
    g.bench_function("plain_candle", |b| {
        b.iter(|| {
            let z = ((&x - &loc).unwrap() / &scale).unwrap();
            ((z.sqr().unwrap() * -0.5).unwrap() - scale.log().unwrap())
                .unwrap()
                .affine(1.0, -0.5 * (2.0 * PI).ln())
                .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("normal_rsample_256x50");
    g.bench_function("vi", |b| {
        b.iter(|| {
            vi_dist::set_validation(false);
            let d = Normal::new(&loc, &scale).unwrap();
            d.rsample(&[], &mut rng).unwrap()
        })
    });
    let mut rng2 = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    g.bench_function("plain_candle", |b| {
        b.iter(|| {
            let eps = vi_dist::standard_normal(&[256, 50], DType::F32, &dev, &mut rng2).unwrap();
            ((eps * &scale).unwrap() + &loc).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
