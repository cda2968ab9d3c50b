//! One Adam step over the VAE's parameter set (784-400-2×50-400-784, ≈ 0.69 M f32 values):
//! ours (in-place CPU path, and the composed path) against candle-nn's `AdamW` with weight
//! decay 0, which computes the same update. `cargo bench -p vi-optim`.
//!
//! mimalloc, as the workspace's binaries use: with the system allocator the composed paths'
//! times (an allocation per op) do not repeat from one run to the next. Figures, and the
//! machines they come from: docs/performance.md ("Adam in place").

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use criterion::{Criterion, criterion_group, criterion_main};
use vi_optim::{Adam, AdamOptions, Optimizer as _};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The VAE's Linear layers as (out, in): weights and biases.
const LAYERS: [(usize, usize); 5] = [(400, 784), (50, 400), (50, 400), (400, 50), (784, 400)];

fn filled(shape: &[usize], seed: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|i| ((i as f32 + 1.0) * seed).sin() * 0.05)
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).expect("host tensor")
}

fn vae_params() -> (Vec<(String, Var)>, GradStore) {
    let mut params = Vec::new();
    let mut grads = GradStore::default();
    for (i, (out, inp)) in LAYERS.into_iter().enumerate() {
        for (kind, shape) in [("weight", vec![out, inp]), ("bias", vec![out])] {
            let var = Var::from_tensor(&filled(&shape, 0.37 + i as f32)).expect("var");
            grads.insert(var.as_tensor(), filled(&shape, 1.13 + i as f32));
            params.push((format!("fc{i}.{kind}"), var));
        }
    }
    (params, grads)
}

fn bench(c: &mut Criterion) {
    let (params, grads) = vae_params();
    let total: usize = params.iter().map(|(_, v)| v.elem_count()).sum();
    assert!(params.iter().all(|(_, v)| v.dtype() == DType::F32));
    let options = AdamOptions {
        lr: 1e-3,
        ..Default::default()
    };
    let mut group = c.benchmark_group(format!("adam_step_vae_{total}_f32"));

    let mut ours = Adam::new(params.clone(), options.clone()).expect("adam");
    group.bench_function("vi_optim_adam_inplace", |b| {
        b.iter(|| ours.step(std::hint::black_box(&grads)).expect("step"))
    });

    let mut composed = Adam::new(params.clone(), options).expect("adam");
    composed.set_cpu_fast_path(false);
    group.bench_function("vi_optim_adam_composed", |b| {
        b.iter(|| composed.step(std::hint::black_box(&grads)).expect("step"))
    });

    let vars = params.iter().map(|(_, v)| v.clone()).collect();
    let config = candle_nn::ParamsAdamW {
        lr: 1e-3,
        weight_decay: 0.0,
        ..Default::default()
    };
    let mut theirs = <candle_nn::AdamW as candle_nn::Optimizer>::new(vars, config).expect("adamw");
    group.bench_function("candle_nn_adamw_wd0", |b| {
        b.iter(|| {
            candle_nn::Optimizer::step(&mut theirs, std::hint::black_box(&grads)).expect("step")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
