//! The overhead of an SVI step: `Svi::step` with `TraceMeanFieldElbo` and Adam against the
//! same loss written in plain candle, f32 on the CPU.
//!
//! Model: one latent site `z` in a plate of 256, `Normal(0, 1).to_event(1)` on 50 dims, and an
//! observed `x [256, 50] ~ Normal(z, 1).to_event(1)`. Guide: `Normal(loc, scale).to_event(1)`
//! with `loc [256, 50]` and a positive `scale [256, 50]` (stored as its log, as
//! `Constraint::Positive` does), both through `ctx.param`.
//!
//! The plain version holds the same two parameters as `Var`s, draws `ε` from the same
//! generator (so both compute the same losses, checked before timing), computes
//! `z = loc + scale · ε`, the analytic KL of the two diagonal Normals, the likelihood, one
//! backward pass and one step of the same `vi_optim::Adam`, and reads the loss back.
//!
//! Both run with value validation off (`vi_dist::set_validation(false)`), as one trains; a
//! third entry times `Svi::step` with validation on, for reference.

use std::f64::consts::PI;

use candle_core::{DType, Device, Tensor, Var};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_optim::{Adam, Optimizer};

mod common;

use common::{DTYPE, INIT_SCALE, PLATE_D as D, PLATE_N as N, SEED, adam, plate_data, plate_svi};

// Like the example binaries: candle's CPU path allocates an output per op.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The same loss and step in plain candle.
struct Plain {
    loc: Var,
    log_scale: Var,
    prior_loc: Tensor,
    prior_scale: Tensor,
    obs_scale: Tensor,
    x: Tensor,
    opt: Adam,
    rng: ChaCha8Rng,
}

impl Plain {
    fn new(dev: &Device) -> Self {
        let loc = Var::zeros((N, D), DTYPE, dev).unwrap();
        let log_scale =
            Var::from_tensor(&Tensor::full(INIT_SCALE.ln() as f32, (N, D), dev).unwrap()).unwrap();
        Self {
            loc,
            log_scale,
            prior_loc: Tensor::zeros(D, DTYPE, dev).unwrap(),
            prior_scale: Tensor::ones(D, DTYPE, dev).unwrap(),
            obs_scale: Tensor::ones(D, DTYPE, dev).unwrap(),
            x: plate_data(dev),
            opt: adam(),
            rng: ChaCha8Rng::seed_from_u64(SEED),
        }
    }

    fn step(&mut self) -> candle_core::Result<f64> {
        let loc = self.loc.as_tensor();
        let scale = self.log_scale.as_tensor().exp()?;
        // z = loc + scale · ε
        let eps = vi_dist::standard_normal(&[N, D], DTYPE, loc.device(), &mut self.rng)
            .map_err(candle_core::Error::wrap)?;
        let z = (eps * &scale)?.add(loc)?;
        // KL(N(loc, scale) ‖ N(μ0, σ0)) = ½ (r + ((loc − μ0)/σ0)² − 1 − ln r), r = (scale/σ0)²
        let ratio = scale.broadcast_div(&self.prior_scale)?.sqr()?;
        let t = loc
            .broadcast_sub(&self.prior_loc)?
            .broadcast_div(&self.prior_scale)?
            .sqr()?;
        let kl = (((&ratio + t)? - ratio.log()?)? - 1.0)? * 0.5;
        let kl = kl?.sum_all()?;
        // log N(x; z, σ) = −((x − z)/σ)²/2 − ½ ln 2π − ln σ
        let u = (&self.x - &z)?.broadcast_div(&self.obs_scale)?;
        let ll = u
            .sqr()?
            .affine(-0.5, -0.5 * (2.0 * PI).ln())?
            .broadcast_sub(&self.obs_scale.log()?)?
            .sum_all()?;
        let loss = (kl - ll)?;
        let grads = loss.backward()?;
        self.opt
            .step_params(&[("loc", &self.loc), ("scale", &self.log_scale)], &grads)
            .map_err(candle_core::Error::wrap)?;
        loss.to_dtype(DType::F64)?.to_scalar::<f64>()
    }
}

fn svi_step(c: &mut Criterion) {
    let dev = Device::Cpu;
    vi_dist::set_validation(false);

    // Both compute the same losses from the same draws.
    {
        let mut svi = plate_svi(&dev);
        let mut plain = Plain::new(&dev);
        for k in 0..5 {
            let a = svi.step().unwrap().loss;
            let b = plain.step().unwrap();
            assert!(
                (a - b).abs() <= 1e-4 * b.abs(),
                "step {k}: vi loss {a}, plain loss {b}"
            );
        }
    }

    if let Some(rounds) = std::env::var("SVI_PAIRED")
        .ok()
        .and_then(|r| r.parse::<usize>().ok())
    {
        paired(&dev, rounds);
    }

    let mut g = c.benchmark_group(format!("svi_step_normal_{N}x{D}_{DTYPE:?}"));
    let mut svi = plate_svi(&dev);
    g.bench_function("vi", |b| b.iter(|| svi.step().unwrap().loss));
    let mut plain = Plain::new(&dev);
    g.bench_function("plain_candle", |b| b.iter(|| plain.step().unwrap()));
    vi_dist::set_validation(true);
    let mut svi = plate_svi(&dev);
    g.bench_function("vi_validation_on", |b| b.iter(|| svi.step().unwrap().loss));
    g.finish();
}

/// `SVI_PAIRED=<rounds>`: alternates blocks of 50 steps of each, so that a load that changes
/// over time (a shared machine) hits both alike; prints the median ms per step of each and
/// the median of the per-round ratios.
fn paired(dev: &Device, rounds: usize) {
    const BLOCK: usize = 50;
    let mut svi = plate_svi(dev);
    let mut plain = Plain::new(dev);
    for _ in 0..4 * BLOCK {
        svi.step().unwrap();
        plain.step().unwrap();
    }
    let time = |f: &mut dyn FnMut()| {
        let t = std::time::Instant::now();
        for _ in 0..BLOCK {
            f();
        }
        t.elapsed().as_secs_f64() * 1e3 / BLOCK as f64
    };
    let (mut a, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let tv = time(&mut || {
            svi.step().unwrap();
        });
        let tp = time(&mut || {
            plain.step().unwrap();
        });
        a.push(tv);
        b.push(tp);
        r.push(tv / tp);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    eprintln!(
        "paired ({rounds} rounds of {BLOCK} steps): vi {:.4} ms/step, plain {:.4} ms/step, \
         ratio (median of rounds) {:.3}",
        median(&mut a),
        median(&mut b),
        median(&mut r)
    );
}

criterion_group!(benches, svi_step);
criterion_main!(benches);
