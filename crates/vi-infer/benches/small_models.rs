//! What the framework costs on small models: `Svi::step` (`TraceMeanFieldElbo`, Adam) against
//! the same loss and step written in plain candle, f32 on the CPU, three models in one run.
//!
//! - `tiny`: one scalar latent `μ ~ Normal(0, 10)` and 100 observations
//!   `y_i ~ Normal(μ, 1)` in a plate; guide `Normal(loc, scale)`, `scale` positive (stored as
//!   its log). The KL is analytic.
//! - `regression`: Bayesian linear regression, `w ~ Normal(0, 1).to_event(1)` on 3 dims,
//!   `b ~ Normal(0, 10)`, `σ ~ HalfNormal(1)`, and `y_i ~ Normal(x_i · w + b, σ)` for
//!   N = 1000 synthetic points in a plate; guide `Normal.to_event(1)` on `w`, `Normal` on `b`
//!   and `LogNormal` on `σ`. The KLs of `w` and `b` are analytic; `LogNormal ‖ HalfNormal`
//!   has no closed form, so `σ` takes the Monte Carlo term `log q(σ) − log p(σ)` at the
//!   guide's draw — on both sides, so the comparison stays like for like, and the framework's
//!   fallback path is part of what is timed.
//! - `plate`: one latent `z [256, 50]` in a plate, `Normal(0, 1).to_event(1)`, observed
//!   `x [256, 50] ~ Normal(z, 1).to_event(1)`; guide `Normal(loc, scale).to_event(1)` with
//!   `loc`, `scale [256, 50]` (the model of `benches/svi.rs`).
//!
//! The plain versions hold the same parameters as `Var`s (positive ones as their logs, as
//! `Constraint::Positive` stores them), draw `ε` from the same seeded generator in the same
//! order and shapes (so both compute the same losses, checked before timing), compute the
//! loss with candle ops as a new candle user would, run one backward pass and one step of
//! the same `vi_optim::Adam`, and read the loss back.
//!
//! A third side, `direct`, computes the same loss from the vi-dist and vi-kl objects called
//! directly (the same distributions, `rsample`, `log_prob`, `kl_divergence`, the plate's
//! `expand`, the same transform of the positive parameters) without `Ctx`, traces, handlers
//! or `Svi`: `vi − direct` is the framework's bookkeeping, `direct − plain` its
//! distribution math.
//!
//! Every side runs with value validation off (`vi_dist::set_validation(false)`), as one
//! trains; the paired figures also time `Svi::step` with validation on, for reference.
//!
//! At the end the bench prints, per model, `model=<name> vi_us=<A> plain_us=<B> ratio=<A/B>`:
//! medians of single steps timed with the sides alternating in blocks of `common::BLOCK` steps
//! (which side goes first alternating too), in this process; then `direct_us`, the
//! validation-on figure and the heap allocations per step of each side (the global allocator
//! is mimalloc behind a thread-local counter).
//!
//! `SMALL_MODELS_STEPS=<n>` sets the timed steps of each side (default per model);
//! `SMALL_MODELS_PAIRED_ONLY=1` skips criterion's groups;
//! `SMALL_MODELS_PROFILE=<model>/<vi|plain|direct|checked>` only runs that side (`checked`: vi
//! with validation on), for `perf record`.
//!
//! Note: unless `RAYON_NUM_THREADS` is set, candle 0.11 works out its thread count on every
//! CPU matmul, reading `/proc/cpuinfo` (`num_cpus::get_physical`): about 30 µs per matmul
//! here, three per regression step, on both sides alike. Set `RAYON_NUM_THREADS` to time the
//! regression without it.

use std::time::Duration;

use candle_core::{DType, Device, Tensor, Var};
use criterion::Criterion;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_dist::{Constraint, Distribution, HalfNormal, LogNormal, Normal};
use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
use vi_optim::{Adam, Optimizer};

mod common;

use common::{
    DTYPE, INIT_SCALE, PLATE_D, PLATE_N, Program, SEED, adam, paired, plate_data, plate_svi,
};

// Like the example binaries: candle's CPU path allocates an output per op. Wrapped to count
// the allocations of this thread (a thread-local add per call), reported per step.
#[global_allocator]
static GLOBAL: Counting = Counting(mimalloc::MiMalloc);

struct Counting(mimalloc::MiMalloc);

thread_local! {
    static ALLOCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to mimalloc; the counter is a const-initialised
// thread-local `Cell` (no allocation, no lazy initialisation).
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is mimalloc's.
        unsafe { self.0.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as above.
        unsafe { self.0.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCS.with(|n| n.set(n.get() + 1));
        // SAFETY: as above.
        unsafe { self.0.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        ALLOCS.with(|n| n.set(n.get() + 1));
        // SAFETY: as above.
        unsafe { self.0.realloc(ptr, layout, size) }
    }
}

/// The allocations (and reallocations) this thread has made so far.
fn allocs() -> u64 {
    ALLOCS.with(|n| n.get())
}

/// Allocations per call of `f`, over 100 calls.
fn allocs_per_step(f: &mut dyn FnMut() -> f64) -> f64 {
    let before = allocs();
    for _ in 0..100 {
        std::hint::black_box(f());
    }
    (allocs() - before) as f64 / 100.0
}

/// `½ ln 2π`.
const HALF_LN_2PI: f64 = 0.918_938_533_204_672_7;

/// The two steppers of one model: each runs one step and returns the loss.
struct Pair {
    name: &'static str,
    steps: usize,
    vi: Box<dyn FnMut() -> f64>,
    plain: Box<dyn FnMut() -> f64>,
    /// The same loss from vi-dist and vi-kl objects called directly (no `Ctx`, traces,
    /// handlers or `Svi`): what separates the framework's bookkeeping from its
    /// distribution math.
    direct: Box<dyn FnMut() -> f64>,
}

fn svi_stepper<M: Program + 'static, G: Program + 'static>(
    mut svi: Svi<M, G, Adam, TraceMeanFieldElbo>,
) -> Box<dyn FnMut() -> f64> {
    Box::new(move || svi.step().unwrap().loss)
}

/// `KL(N(loc, scale) ‖ N(μ0, σ0))` for constant prior parameters, elementwise:
/// `ln(σ0 / scale) + (scale² + (loc − μ0)²) / (2σ0²) − ½`.
fn kl_normal_const(loc: &Tensor, scale: &Tensor, mu0: f64, sigma0: f64) -> Tensor {
    let v = 1.0 / (2.0 * sigma0 * sigma0);
    let quad = (scale.sqr().unwrap() + loc.affine(1.0, -mu0).unwrap().sqr().unwrap()).unwrap();
    (quad.affine(v, sigma0.ln() - 0.5).unwrap() - scale.log().unwrap()).unwrap()
}

/// `log N(z; 0, 1) = −½ z² − ½ ln 2π`, elementwise.
fn std_normal_log_prob(z: &Tensor) -> Tensor {
    z.sqr().unwrap().affine(-0.5, -HALF_LN_2PI).unwrap()
}

fn loss_f64(loss: &Tensor) -> f64 {
    loss.to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// One backward pass of `loss` and one step of `opt` on the named `params`; the loss as an
/// f64 (the end of every plain and direct step).
fn step(opt: &mut Adam, params: &[(&str, &Var)], loss: &Tensor) -> f64 {
    let grads = loss.backward().unwrap();
    opt.step_params(params, &grads).unwrap();
    loss_f64(loss)
}

fn scalar(v: f64, dev: &Device) -> Tensor {
    Tensor::new(v as f32, dev).unwrap()
}

// ---------------------------------------------------------------------------------------
// tiny: μ ~ Normal(0, 10), y_i ~ Normal(μ, 1), i < 100.

const TINY_N: usize = 100;

fn tiny_data(dev: &Device) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    (vi_dist::standard_normal(&[TINY_N], DTYPE, dev, &mut rng).unwrap() + 1.5).unwrap()
}

fn tiny_vi(dev: &Device) -> Box<dyn FnMut() -> f64> {
    let y = tiny_data(dev);
    let (zero, one, ten) = (scalar(0.0, dev), scalar(1.0, dev), scalar(10.0, dev));
    let model = move |ctx: &mut Ctx<'_>| {
        let mu = ctx.sample("mu", Normal::new(&zero, &ten)?)?;
        ctx.plate("data", TINY_N, |ctx| {
            ctx.observe("y", Normal::new(&mu, &one)?, &y)
        })?;
        Ok(())
    };
    let dev_g = dev.clone();
    let guide = move |ctx: &mut Ctx<'_>| {
        let loc = ctx.param_with("mu_loc", || Tensor::new(0f32, &dev_g), Constraint::Real)?;
        let scale = ctx.param_with(
            "mu_scale",
            || Tensor::new(INIT_SCALE as f32, &dev_g),
            Constraint::Positive,
        )?;
        ctx.sample("mu", Normal::new(&loc, &scale)?)?;
        Ok(())
    };
    svi_stepper(Svi::new(model, guide, adam(), TraceMeanFieldElbo::new()).seed(SEED))
}

fn tiny_plain(dev: &Device) -> Box<dyn FnMut() -> f64> {
    let y = tiny_data(dev);
    let loc = Var::new(0f32, dev).unwrap();
    let log_scale = Var::new(INIT_SCALE.ln() as f32, dev).unwrap();
    let mut opt = adam();
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    Box::new(move || {
        let scale = log_scale.as_tensor().exp().unwrap();
        let eps = vi_dist::standard_normal(&[], DTYPE, y.device(), &mut rng).unwrap();
        let mu = ((eps * &scale).unwrap() + loc.as_tensor()).unwrap();
        let kl = kl_normal_const(loc.as_tensor(), &scale, 0.0, 10.0);
        // Σ log N(y_i; μ, 1) = Σ −½ (y_i − μ)² − N ½ ln 2π
        let ll = std_normal_log_prob(&y.broadcast_sub(&mu).unwrap())
            .sum_all()
            .unwrap();
        let loss = (kl - ll).unwrap();
        step(
            &mut opt,
            &[("mu_loc", &loc), ("mu_scale", &log_scale)],
            &loss,
        )
    })
}

fn tiny_direct(dev: &Device) -> Box<dyn FnMut() -> f64> {
    let y = tiny_data(dev);
    let (zero, one, ten) = (scalar(0.0, dev), scalar(1.0, dev), scalar(10.0, dev));
    let loc = Var::new(0f32, dev).unwrap();
    let log_scale = Var::new(INIT_SCALE.ln() as f32, dev).unwrap();
    let exp = vi_dist::transform_to(&Constraint::Positive).unwrap();
    let mut opt = adam();
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    Box::new(move || {
        let scale = exp.forward(log_scale.as_tensor()).unwrap();
        let q = Normal::new(loc.as_tensor(), &scale).unwrap();
        let mu = q.rsample(&[], &mut rng).unwrap();
        let p = Normal::new(&zero, &ten).unwrap();
        let kl = vi_kl::kl_divergence(&q, &p).unwrap();
        let lik = Normal::new(&mu, &one).unwrap().expand(&[TINY_N]).unwrap();
        let ll = lik.log_prob(&y).unwrap().sum_all().unwrap();
        let loss = (kl - ll).unwrap();
        step(
            &mut opt,
            &[("mu_loc", &loc), ("mu_scale", &log_scale)],
            &loss,
        )
    })
}

// ---------------------------------------------------------------------------------------
// regression: w[3] ~ Normal(0, 1), b ~ Normal(0, 10), σ ~ HalfNormal(1),
// y_i ~ Normal(x_i · w + b, σ), i < 1000.

const REG_N: usize = 1000;
const REG_D: usize = 3;

/// `x [1000, 3]` and `y [1000]` from `w = (1, −2, 0.5)`, `b = 0.3`, `σ = 0.5`.
fn reg_data(dev: &Device) -> (Tensor, Tensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x = vi_dist::standard_normal(&[REG_N, REG_D], DTYPE, dev, &mut rng).unwrap();
    let noise = vi_dist::standard_normal(&[REG_N], DTYPE, dev, &mut rng).unwrap();
    let w = Tensor::new(&[[1f32], [-2.0], [0.5]], dev).unwrap();
    let y = (x.matmul(&w).unwrap().squeeze(1).unwrap() + 0.3).unwrap();
    let y = (y + (noise * 0.5).unwrap()).unwrap();
    (x, y)
}

/// The regression's mean `x · w + b` (`x [N, 3]`, `w [3]`, `b []`), on the plain and direct
/// sides.
fn reg_mean(x: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
    x.matmul(&w.unsqueeze(1).unwrap())
        .unwrap()
        .squeeze(1)
        .unwrap()
        .broadcast_add(b)
        .unwrap()
}

/// The regression guide's parameters as `Var`s, each scale as its log (as
/// `Constraint::Positive` stores it), for the plain and direct sides.
struct RegParams {
    w_loc: Var,
    w_log_scale: Var,
    b_loc: Var,
    b_log_scale: Var,
    s_loc: Var,
    s_log_scale: Var,
}

impl RegParams {
    fn new(dev: &Device) -> Self {
        let log_half = INIT_SCALE.ln() as f32;
        Self {
            w_loc: Var::zeros(REG_D, DTYPE, dev).unwrap(),
            w_log_scale: Var::from_tensor(&Tensor::full(log_half, REG_D, dev).unwrap()).unwrap(),
            b_loc: Var::new(0f32, dev).unwrap(),
            b_log_scale: Var::new(log_half, dev).unwrap(),
            s_loc: Var::new(0f32, dev).unwrap(),
            s_log_scale: Var::new(log_half, dev).unwrap(),
        }
    }

    /// Each under the name of its parameter on the vi side.
    fn named(&self) -> [(&'static str, &Var); 6] {
        [
            ("w_loc", &self.w_loc),
            ("w_scale", &self.w_log_scale),
            ("b_loc", &self.b_loc),
            ("b_scale", &self.b_log_scale),
            ("sigma_loc", &self.s_loc),
            ("sigma_scale", &self.s_log_scale),
        ]
    }
}

fn reg_vi(dev: &Device) -> Box<dyn FnMut() -> f64> {
    let (x, y) = reg_data(dev);
    let zeros = Tensor::zeros(REG_D, DTYPE, dev).unwrap();
    let ones = Tensor::ones(REG_D, DTYPE, dev).unwrap();
    let (zero, one, ten) = (scalar(0.0, dev), scalar(1.0, dev), scalar(10.0, dev));
    let model = move |ctx: &mut Ctx<'_>| {
        let w = ctx.sample("w", Normal::new(&zeros, &ones)?.to_event(1)?)?;
        let b = ctx.sample("b", Normal::new(&zero, &ten)?)?;
        let sigma = ctx.sample("sigma", HalfNormal::new(&one)?)?;
        ctx.plate("data", REG_N, |ctx| {
            let mean = x.matmul(&w.unsqueeze(1)?)?.squeeze(1)?.broadcast_add(&b)?;
            ctx.observe("y", Normal::new(&mean, &sigma)?, &y)
        })?;
        Ok(())
    };
    let d = dev.clone();
    let guide = move |ctx: &mut Ctx<'_>| {
        let real = Constraint::Real;
        let pos = Constraint::Positive;
        let half = INIT_SCALE as f32;
        let w_loc = ctx.param_with("w_loc", || Tensor::zeros(REG_D, DTYPE, &d), real.clone())?;
        let w_scale = ctx.param_with("w_scale", || Tensor::full(half, REG_D, &d), pos.clone())?;
        let b_loc = ctx.param_with("b_loc", || Tensor::new(0f32, &d), real.clone())?;
        let b_scale = ctx.param_with("b_scale", || Tensor::new(half, &d), pos.clone())?;
        let s_loc = ctx.param_with("sigma_loc", || Tensor::new(0f32, &d), real)?;
        let s_scale = ctx.param_with("sigma_scale", || Tensor::new(half, &d), pos)?;
        ctx.sample("w", Normal::new(&w_loc, &w_scale)?.to_event(1)?)?;
        ctx.sample("b", Normal::new(&b_loc, &b_scale)?)?;
        ctx.sample("sigma", LogNormal::new(&s_loc, &s_scale)?)?;
        Ok(())
    };
    svi_stepper(Svi::new(model, guide, adam(), TraceMeanFieldElbo::new()).seed(SEED))
}

fn reg_plain(dev: &Device) -> Box<dyn FnMut() -> f64> {
    let (x, y) = reg_data(dev);
    let params = RegParams::new(dev);
    let mut opt = adam();
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    Box::new(move || {
        let dev = x.device();
        let w_scale = params.w_log_scale.as_tensor().exp().unwrap();
        let b_scale = params.b_log_scale.as_tensor().exp().unwrap();
        let s_scale = params.s_log_scale.as_tensor().exp().unwrap();
        // The guide's draws, in its order.
        let eps_w = vi_dist::standard_normal(&[REG_D], DTYPE, dev, &mut rng).unwrap();
        let eps_b = vi_dist::standard_normal(&[], DTYPE, dev, &mut rng).unwrap();
        let eps_s = vi_dist::standard_normal(&[], DTYPE, dev, &mut rng).unwrap();
        let w = ((eps_w * &w_scale).unwrap() + params.w_loc.as_tensor()).unwrap();
        let b = ((eps_b * &b_scale).unwrap() + params.b_loc.as_tensor()).unwrap();
        let sigma = ((eps_s * &s_scale).unwrap() + params.s_loc.as_tensor())
            .unwrap()
            .exp()
            .unwrap();
        // Analytic KLs of w and b.
        let kl_w = kl_normal_const(params.w_loc.as_tensor(), &w_scale, 0.0, 1.0)
            .sum_all()
            .unwrap();
        let kl_b = kl_normal_const(params.b_loc.as_tensor(), &b_scale, 0.0, 10.0);
        // σ: log q(σ) − log p(σ), q = LogNormal(s_loc, s_scale), p = HalfNormal(1).
        let log_sigma = sigma.log().unwrap();
        let zq = ((&log_sigma - params.s_loc.as_tensor()).unwrap() / &s_scale).unwrap();
        let log_q =
            ((std_normal_log_prob(&zq) - s_scale.log().unwrap()).unwrap() - &log_sigma).unwrap();
        let log_p = sigma
            .sqr()
            .unwrap()
            .affine(-0.5, 2f64.ln() - HALF_LN_2PI)
            .unwrap();
        let mc = (log_q - log_p).unwrap();
        // Σ log N(y_i; x_i · w + b, σ)
        let mean = reg_mean(&x, &w, &b);
        let z = (&y - mean).unwrap().broadcast_div(&sigma).unwrap();
        let ll = std_normal_log_prob(&z)
            .broadcast_sub(&log_sigma)
            .unwrap()
            .sum_all()
            .unwrap();
        let loss = (((kl_w + kl_b).unwrap() + mc).unwrap() - ll).unwrap();
        step(&mut opt, &params.named(), &loss)
    })
}

fn reg_direct(dev: &Device) -> Box<dyn FnMut() -> f64> {
    let (x, y) = reg_data(dev);
    let zeros = Tensor::zeros(REG_D, DTYPE, dev).unwrap();
    let ones = Tensor::ones(REG_D, DTYPE, dev).unwrap();
    let (zero, one, ten) = (scalar(0.0, dev), scalar(1.0, dev), scalar(10.0, dev));
    let params = RegParams::new(dev);
    let exp = vi_dist::transform_to(&Constraint::Positive).unwrap();
    let mut opt = adam();
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    Box::new(move || {
        let qw = Normal::new(
            params.w_loc.as_tensor(),
            &exp.forward(params.w_log_scale.as_tensor()).unwrap(),
        )
        .unwrap()
        .to_event(1)
        .unwrap();
        let qb = Normal::new(
            params.b_loc.as_tensor(),
            &exp.forward(params.b_log_scale.as_tensor()).unwrap(),
        )
        .unwrap();
        let qs = LogNormal::new(
            params.s_loc.as_tensor(),
            &exp.forward(params.s_log_scale.as_tensor()).unwrap(),
        )
        .unwrap();
        let w = qw.rsample(&[], &mut rng).unwrap();
        let b = qb.rsample(&[], &mut rng).unwrap();
        let sigma = qs.rsample(&[], &mut rng).unwrap();
        let pw = Normal::new(&zeros, &ones).unwrap().to_event(1).unwrap();
        let pb = Normal::new(&zero, &ten).unwrap();
        let ps = HalfNormal::new(&one).unwrap();
        let kl_w = vi_kl::kl_divergence(&qw, &pw).unwrap().sum_all().unwrap();
        let kl_b = vi_kl::kl_divergence(&qb, &pb).unwrap();
        let mc = (qs.log_prob(&sigma).unwrap() - ps.log_prob(&sigma).unwrap()).unwrap();
        let mean = reg_mean(&x, &w, &b);
        let lik = Normal::new(&mean, &sigma).unwrap();
        let ll = lik.log_prob(&y).unwrap().sum_all().unwrap();
        let loss = (((kl_w + kl_b).unwrap() + mc).unwrap() - ll).unwrap();
        step(&mut opt, &params.named(), &loss)
    })
}

// ---------------------------------------------------------------------------------------
// plate: z [256, 50] ~ Normal(0, 1).to_event(1) in a plate, x ~ Normal(z, 1).to_event(1).

fn plate_vi(dev: &Device) -> Box<dyn FnMut() -> f64> {
    svi_stepper(plate_svi(dev))
}

fn plate_plain(dev: &Device) -> Box<dyn FnMut() -> f64> {
    let x = plate_data(dev);
    let shape = (PLATE_N, PLATE_D);
    let loc = Var::zeros(shape, DTYPE, dev).unwrap();
    let log_scale =
        Var::from_tensor(&Tensor::full(INIT_SCALE.ln() as f32, shape, dev).unwrap()).unwrap();
    let mut opt = adam();
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    Box::new(move || {
        let scale = log_scale.as_tensor().exp().unwrap();
        let eps =
            vi_dist::standard_normal(&[PLATE_N, PLATE_D], DTYPE, x.device(), &mut rng).unwrap();
        let z = ((eps * &scale).unwrap() + loc.as_tensor()).unwrap();
        let kl = kl_normal_const(loc.as_tensor(), &scale, 0.0, 1.0)
            .sum_all()
            .unwrap();
        // Σ log N(x; z, 1)
        let ll = std_normal_log_prob(&(&x - &z).unwrap()).sum_all().unwrap();
        let loss = (kl - ll).unwrap();
        step(&mut opt, &[("loc", &loc), ("scale", &log_scale)], &loss)
    })
}

fn plate_direct(dev: &Device) -> Box<dyn FnMut() -> f64> {
    let x = plate_data(dev);
    let zero = Tensor::zeros(PLATE_D, DTYPE, dev).unwrap();
    let one = Tensor::ones(PLATE_D, DTYPE, dev).unwrap();
    let shape = (PLATE_N, PLATE_D);
    let loc = Var::zeros(shape, DTYPE, dev).unwrap();
    let log_scale =
        Var::from_tensor(&Tensor::full(INIT_SCALE.ln() as f32, shape, dev).unwrap()).unwrap();
    let exp = vi_dist::transform_to(&Constraint::Positive).unwrap();
    let mut opt = adam();
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    Box::new(move || {
        let scale = exp.forward(log_scale.as_tensor()).unwrap();
        let q = Normal::new(loc.as_tensor(), &scale)
            .unwrap()
            .to_event(1)
            .unwrap();
        let z = q.rsample(&[], &mut rng).unwrap();
        let p = Normal::new(&zero, &one)
            .unwrap()
            .to_event(1)
            .unwrap()
            .expand(&[PLATE_N])
            .unwrap();
        let kl = vi_kl::kl_divergence(&q, p.as_ref())
            .unwrap()
            .sum_all()
            .unwrap();
        let lik = Normal::new(&z, &one).unwrap().to_event(1).unwrap();
        let ll = lik.log_prob(&x).unwrap().sum_all().unwrap();
        let loss = (kl - ll).unwrap();
        step(&mut opt, &[("loc", &loc), ("scale", &log_scale)], &loss)
    })
}

// ---------------------------------------------------------------------------------------

type Build = fn(&Device) -> Box<dyn FnMut() -> f64>;

/// A model: its name, its builders (vi, plain, direct) and its default number of timed
/// steps.
type Spec = (&'static str, Build, Build, Build, usize);

const MODELS: [Spec; 3] = [
    ("tiny", tiny_vi, tiny_plain, tiny_direct, 20_000),
    ("regression", reg_vi, reg_plain, reg_direct, 10_000),
    ("plate", plate_vi, plate_plain, plate_direct, 2_000),
];

fn pair(dev: &Device, (name, vi, plain, direct, steps): Spec) -> Pair {
    let steps = std::env::var("SMALL_MODELS_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(steps);
    Pair {
        name,
        steps,
        vi: vi(dev),
        plain: plain(dev),
        direct: direct(dev),
    }
}

/// Both sides compute the same losses from the same draws, step after step.
fn check_agree(p: &mut Pair) {
    for k in 0..5 {
        let (a, b, c) = ((p.vi)(), (p.plain)(), (p.direct)());
        assert!(
            (a - b).abs() <= 1e-4 * b.abs().max(1.0) && (c - b).abs() <= 1e-4 * b.abs().max(1.0),
            "{} step {k}: vi loss {a}, plain loss {b}, direct loss {c}",
            p.name
        );
    }
}

/// `SMALL_MODELS_PROFILE=<model>/<vi|plain|direct|checked>`: runs that side alone (for `perf record`).
fn profile(dev: &Device, which: &str) {
    let Some(spec) = MODELS.iter().find(|m| which.starts_with(m.0)) else {
        panic!("SMALL_MODELS_PROFILE={which}: no such model");
    };
    let mut p = pair(dev, *spec);
    let side = if which.ends_with("/plain") {
        &mut p.plain
    } else if which.ends_with("/direct") {
        &mut p.direct
    } else if which.ends_with("/checked") {
        vi_dist::set_validation(true);
        &mut p.vi
    } else {
        &mut p.vi
    };
    for _ in 0..p.steps {
        std::hint::black_box(side());
    }
}

fn main() {
    let dev = Device::Cpu;
    vi_dist::set_validation(false);
    if let Ok(which) = std::env::var("SMALL_MODELS_PROFILE") {
        profile(&dev, &which);
        return;
    }
    let mut lines = Vec::new();
    for spec in MODELS {
        let mut p = pair(&dev, spec);
        check_agree(&mut p);
        let mut checked = (spec.1)(&dev);
        // With validation on: the same model and guide.
        let mut checked = move || vi_dist::with_validation(true, &mut checked);
        let counts = [
            allocs_per_step(&mut p.vi),
            allocs_per_step(&mut p.plain),
            allocs_per_step(&mut p.direct),
        ];
        let med = paired(
            &mut [&mut p.vi, &mut p.plain, &mut p.direct, &mut checked],
            p.steps,
        );
        lines.push(format!(
            "model={} vi_us={:.2} plain_us={:.2} ratio={:.3} direct_us={:.2} \
             vi_validation_on_us={:.2} allocs_per_step(vi/plain/direct)={:.0}/{:.0}/{:.0}",
            p.name,
            med[0],
            med[1],
            med[0] / med[1],
            med[2],
            med[3],
            counts[0],
            counts[1],
            counts[2]
        ));
    }

    if std::env::var("SMALL_MODELS_PAIRED_ONLY").is_err() {
        let mut c = Criterion::default()
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .configure_from_args();
        for spec in MODELS {
            let mut p = pair(&dev, spec);
            let mut g = c.benchmark_group(format!("small_models_{}", p.name));
            g.bench_function("vi", |b| b.iter(&mut p.vi));
            g.bench_function("plain_candle", |b| b.iter(&mut p.plain));
            g.finish();
        }
        c.final_summary();
    }

    for l in &lines {
        println!("{l}");
    }
}
