//! KL throughput: a diagonal Normal pair (`Normal.to_event(1)`) on [256, 50] against the same
//! expression in plain candle; MultivariateNormal ‖ MultivariateNormal for d = 50; and the
//! seed pair, `Normal.to_event(1)` (batch 256) ‖ MultivariateNormal, d = 50.

use candle_core::{DType, Device, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use vi_dist::{Distribution, MultivariateNormal, Normal};
use vi_kl::kl_divergence;

// Like the example binaries: candle's CPU path allocates an output per op.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The KL of two diagonal Normals summed over the last dim, written directly in candle.
fn plain_kl(mp: &Tensor, sp: &Tensor, mq: &Tensor, sq: &Tensor) -> candle_core::Result<Tensor> {
    let ratio = (sp / sq)?.sqr()?;
    let t = ((mp - mq)? / sq)?.sqr()?;
    let kl = (((ratio.clone() + t)? - ratio.log()?)? - 1.0)?;
    (kl * 0.5)?.sum(1)
}

fn normal_pair(c: &mut Criterion) {
    let dev = Device::Cpu;
    for dtype in [DType::F32, DType::F64] {
        let shape = (256, 50);
        let mp = Tensor::randn(0f64, 1.0, shape, &dev)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let sp = Tensor::rand(0.5f64, 1.5, shape, &dev)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let mq = Tensor::randn(0f64, 1.0, shape, &dev)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let sq = Tensor::rand(0.5f64, 1.5, shape, &dev)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let p = Normal::new(&mp, &sp).unwrap().to_event(1).unwrap();
        let q = Normal::new(&mq, &sq).unwrap().to_event(1).unwrap();
        let mut g = c.benchmark_group(format!("kl_diag_normal_256x50_{dtype:?}"));
        g.bench_function("vi", |b| b.iter(|| kl_divergence(&p, &q).unwrap()));
        g.bench_function("plain_candle", |b| {
            b.iter(|| plain_kl(&mp, &sp, &mq, &sq).unwrap())
        });
        g.finish();
    }
}

fn mvn_pair(c: &mut Criterion) {
    let dev = Device::Cpu;
    let d = 50;
    for dtype in [DType::F32, DType::F64] {
        // Well-conditioned covariances A Aᵀ / d + I.
        let cov = |seed: f64| {
            let a = (Tensor::randn(seed * 0.0, 1.0, (d, d), &dev).unwrap() / (d as f64).sqrt())
                .unwrap();
            let eye = Tensor::eye(d, DType::F64, &dev).unwrap();
            (a.matmul(&a.t().unwrap()).unwrap() + eye)
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
        };
        let loc = |s| {
            Tensor::randn(0f64, s, d, &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
        };
        let p = MultivariateNormal::from_covariance(&loc(1.0), &cov(1.0)).unwrap();
        let q = MultivariateNormal::from_covariance(&loc(0.5), &cov(2.0)).unwrap();
        c.bench_function(&format!("kl_mvn_mvn_d50_{dtype:?}"), |b| {
            b.iter(|| kl_divergence(&p, &q).unwrap())
        });
        // The seed pair: a mean-field guide (batch 256) against the MVN prior.
        let guide = Normal::new(
            &Tensor::randn(0f64, 1.0, (256, d), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
            &Tensor::rand(0.5f64, 1.5, (256, d), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
        )
        .unwrap()
        .to_event(1)
        .unwrap();
        c.bench_function(&format!("kl_diag_normal_256_vs_mvn_d50_{dtype:?}"), |b| {
            b.iter(|| kl_divergence(&guide, &q).unwrap())
        });
    }
}

criterion_group!(benches, normal_pair, mvn_pair);
criterion_main!(benches);
