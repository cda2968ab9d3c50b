//! `Normal` log_prob and rsample on [256, 50] against the same expressions in plain candle;
//! the fused CPU kernels (`vi_dist::ops::fused`) against their composed candle twins
//! (`vi_dist::ops::composed`), forward + backward, on the VAE's shapes [256, 784] and [256, 50];
//! and the summing fused ops (`Independent(.., 1)`) against the fused op then candle's `sum`.

use std::f64::consts::PI;

use candle_core::{D, DType, Device, Tensor, Var};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use vi_dist::ops::{composed, fused};
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

type Op = fn(&[&Tensor]) -> vi_dist::Result<Tensor>;

/// Forward, then backward of the sum (gradients for the tracked inputs only).
fn fwd_bwd(op: Op, inputs: &[&Tensor]) -> candle_core::backprop::GradStore {
    op(inputs).unwrap().sum_all().unwrap().backward().unwrap()
}

fn fused_vs_composed(c: &mut Criterion) {
    let dev = Device::Cpu;
    for (rows, cols) in [(256usize, 784usize), (256, 50)] {
        let shape = (rows, cols);
        let var = |t: Tensor| Var::from_tensor(&t).unwrap().as_tensor().clone();
        let x = var(Tensor::randn(0f32, 2.0, shape, &dev).unwrap());
        let loc = var(Tensor::randn(0f32, 1.0, shape, &dev).unwrap());
        let scale = var(Tensor::rand(0.5f32, 1.5, shape, &dev).unwrap());
        let data = Tensor::rand(0f32, 1.0, shape, &dev)
            .unwrap()
            .ge(0.5)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let eps = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
        // the VAE's prior: Normal(0, 1) expanded to the batch (stride-0 views, no gradient)
        let zero = Tensor::zeros((), DType::F32, &dev)
            .unwrap()
            .broadcast_as(shape)
            .unwrap();
        let one = Tensor::ones((), DType::F32, &dev)
            .unwrap()
            .broadcast_as(shape)
            .unwrap();
        let cases: [(&str, Op, Op, Vec<&Tensor>); 6] = [
            (
                "softplus",
                |t| fused::softplus(t[0]),
                |t| composed::softplus(t[0]),
                vec![&x],
            ),
            (
                "bernoulli_log_prob",
                |t| fused::bernoulli_log_prob(t[0], t[1]),
                |t| composed::bernoulli_log_prob(t[0], t[1]),
                vec![&data, &x],
            ),
            (
                "normal_log_prob",
                |t| fused::normal_log_prob(t[0], t[1], t[2]),
                |t| composed::normal_log_prob(t[0], t[1], t[2]),
                vec![&x, &loc, &scale],
            ),
            (
                "normal_log_prob_prior",
                |t| fused::normal_log_prob(t[0], t[1], t[2]),
                |t| composed::normal_log_prob(t[0], t[1], t[2]),
                vec![&x, &zero, &one],
            ),
            (
                "normal_rsample",
                |t| fused::normal_rsample(t[0], t[1], t[2]),
                |t| composed::normal_rsample(t[0], t[1], t[2]),
                vec![&loc, &scale, &eps],
            ),
            (
                "kl_normal_normal_prior",
                |t| fused::kl_normal_normal(t[0], t[1], t[2], t[3]),
                |t| composed::kl_normal_normal(t[0], t[1], t[2], t[3]),
                vec![&loc, &scale, &zero, &one],
            ),
        ];
        // `Independent(.., 1).log_prob` and the Independent KL: the fused op summing over the
        // event dim inside (`sum`), against the fused op then candle's `sum` (`then_sum`).
        let summed: [(&str, Op, Op, Vec<&Tensor>); 3] = [
            (
                "bernoulli_log_prob_event",
                |t| fused::bernoulli_log_prob_sum(t[0], t[1], 1),
                |t| Ok(fused::bernoulli_log_prob(t[0], t[1])?.sum(D::Minus1)?),
                vec![&data, &x],
            ),
            (
                "normal_log_prob_event",
                |t| fused::normal_log_prob_sum(t[0], t[1], t[2], 1),
                |t| Ok(fused::normal_log_prob(t[0], t[1], t[2])?.sum(D::Minus1)?),
                vec![&x, &loc, &scale],
            ),
            (
                "kl_normal_normal_prior_event",
                |t| fused::kl_normal_normal_sum(t[0], t[1], t[2], t[3], 1),
                |t| Ok(fused::kl_normal_normal(t[0], t[1], t[2], t[3])?.sum(D::Minus1)?),
                vec![&loc, &scale, &zero, &one],
            ),
        ];
        let mut g = c.benchmark_group(format!("fwd_bwd_{rows}x{cols}"));
        for (name, f, comp, inputs) in &cases {
            g.bench_function(format!("{name}/fused"), |b| b.iter(|| fwd_bwd(*f, inputs)));
            g.bench_function(format!("{name}/composed"), |b| {
                b.iter(|| fwd_bwd(*comp, inputs))
            });
        }
        for (name, f, then_sum, inputs) in &summed {
            g.bench_function(format!("{name}/sum"), |b| b.iter(|| fwd_bwd(*f, inputs)));
            g.bench_function(format!("{name}/then_sum"), |b| {
                b.iter(|| fwd_bwd(*then_sum, inputs))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench, fused_vs_composed);
criterion_main!(benches);
