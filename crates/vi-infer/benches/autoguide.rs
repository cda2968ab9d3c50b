//! What an automatic guide and `Predictive` cost, f32 on the CPU, in one run:
//!
//! - `regression` and `plate` (the models of `benches/small_models.rs`): an `Svi::step` with
//!   `AutoNormal` against the same step with the equivalent guide by hand (`Normal` on `w`
//!   and `b`, `LogNormal` on `σ`; `Normal(loc, scale).to_event(1)` on `z`). `AutoNormal`
//!   starts where the guide by hand does (`Init::Feasible`: locations 0 in the unconstrained
//!   space; `init_scale` 0.5), so the two compute the same losses from the same draws, checked
//!   before timing. Target: AutoNormal ≤ 1.15 × by hand.
//! - `regression`, `AutoMultivariateNormal` and `AutoDiagonalNormal` steps, for reference.
//! - `Predictive` with `parallel(true)`, 1000 samples of the regression's posterior predictive
//!   (the guide `AutoNormal`; `y` is 1000 × 1000 draws), against one `Svi::step` of the same
//!   model and guide; and the same with `return_sites` the latents only. Target: ≤ 5 × a step.
//!
//! Medians of single calls, the sides alternating in blocks (`common::paired`); value
//! validation off, as one trains. Prints `bench=<name> a_us=<A> b_us=<B> ratio=<A/B>` lines.
//! `AUTOGUIDE_STEPS=<n>` sets the timed steps per side.

use candle_core::{D, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_dist::{Constraint, Distribution, HalfNormal, LogNormal, Normal};
use vi_infer::autoguide::{AutoDiagonalNormal, AutoMultivariateNormal, AutoNormal, Init};
use vi_infer::{Ctx, Predictive, Svi, TraceMeanFieldElbo};

mod common;

use common::{DTYPE, INIT_SCALE, PLATE_D, PLATE_N, SEED, adam, paired, plate_data, plate_svi};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REG_N: usize = 1000;
const REG_D: usize = 3;

/// `x [1000, 3]`, `y [1000]`, as `small_models`' regression.
fn reg_data(dev: &Device) -> (Tensor, Tensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x = vi_dist::standard_normal(&[REG_N, REG_D], DTYPE, dev, &mut rng).unwrap();
    let noise = vi_dist::standard_normal(&[REG_N], DTYPE, dev, &mut rng).unwrap();
    let w = Tensor::new(&[[1f32], [-2.0], [0.5]], dev).unwrap();
    let y = (x.matmul(&w).unwrap().squeeze(1).unwrap() + 0.3).unwrap();
    let y = (y + (noise * 0.5).unwrap()).unwrap();
    (x, y)
}

/// The regression model's tensors.
struct Reg {
    x: Tensor,
    y: Tensor,
    zeros: Tensor,
    ones: Tensor,
    zero: Tensor,
    one: Tensor,
    ten: Tensor,
}

impl Reg {
    fn new(dev: &Device) -> Self {
        let (x, y) = reg_data(dev);
        let s = |v: f32| Tensor::new(v, dev).unwrap();
        Self {
            x,
            y,
            zeros: Tensor::zeros(REG_D, DTYPE, dev).unwrap(),
            ones: Tensor::ones(REG_D, DTYPE, dev).unwrap(),
            zero: s(0.0),
            one: s(1.0),
            ten: s(10.0),
        }
    }

    /// `small_models`' regression, the mean by broadcasting (so it also runs in
    /// `Predictive`'s outer plate).
    fn model(&self, ctx: &mut Ctx<'_>) -> vi_infer::Result<()> {
        let w = ctx.sample("w", Normal::new(&self.zeros, &self.ones)?.to_event(1)?)?;
        let b = ctx.sample("b", Normal::new(&self.zero, &self.ten)?)?;
        let sigma = ctx.sample("sigma", HalfNormal::new(&self.one)?)?;
        let mean = self
            .x
            .broadcast_mul(&w)?
            .sum(D::Minus1)?
            .broadcast_add(&b)?;
        ctx.plate("data", REG_N, |ctx| {
            ctx.observe("y", Normal::new(&mean, &sigma)?, &self.y)
        })?;
        Ok(())
    }

    /// The guide by hand: `small_models`' regression guide.
    fn guide(&self, ctx: &mut Ctx<'_>) -> vi_infer::Result<()> {
        let (real, pos) = (Constraint::Real, Constraint::Positive);
        let d = self.x.device();
        let half = INIT_SCALE as f32;
        let w_loc = ctx.param_with("w_loc", || Tensor::zeros(REG_D, DTYPE, d), real.clone())?;
        let w_scale = ctx.param_with("w_scale", || Tensor::full(half, REG_D, d), pos.clone())?;
        let b_loc = ctx.param_with("b_loc", || Tensor::new(0f32, d), real.clone())?;
        let b_scale = ctx.param_with("b_scale", || Tensor::new(half, d), pos.clone())?;
        let s_loc = ctx.param_with("sigma_loc", || Tensor::new(0f32, d), real)?;
        let s_scale = ctx.param_with("sigma_scale", || Tensor::new(half, d), pos)?;
        ctx.sample("w", Normal::new(&w_loc, &w_scale)?.to_event(1)?)?;
        ctx.sample("b", Normal::new(&b_loc, &b_scale)?)?;
        ctx.sample("sigma", LogNormal::new(&s_loc, &s_scale)?)?;
        Ok(())
    }
}

/// The `plate` model (its guide by hand is `common::plate_svi`'s).
struct PlateModel {
    x: Tensor,
    zero: Tensor,
    one: Tensor,
}

impl PlateModel {
    fn new(dev: &Device) -> Self {
        Self {
            x: plate_data(dev),
            zero: Tensor::zeros(PLATE_D, DTYPE, dev).unwrap(),
            one: Tensor::ones(PLATE_D, DTYPE, dev).unwrap(),
        }
    }

    fn model(&self, ctx: &mut Ctx<'_>) -> vi_infer::Result<()> {
        ctx.plate("data", PLATE_N, |ctx| {
            let z = ctx.sample("z", Normal::new(&self.zero, &self.one)?.to_event(1)?)?;
            ctx.observe("x", Normal::new(&z, &self.one)?.to_event(1)?, &self.x)?;
            Ok(())
        })
    }
}

/// One side: a step, returning the loss.
type Stepper<'a> = Box<dyn FnMut() -> f64 + 'a>;

/// `Svi` of `model` and `guide` as a stepper returning the loss.
fn stepper<'a>(
    model: impl FnMut(&mut Ctx<'_>) -> vi_infer::Result<()> + 'a,
    guide: impl FnMut(&mut Ctx<'_>) -> vi_infer::Result<()> + 'a,
) -> Stepper<'a> {
    let mut svi = Svi::new(model, guide, adam(), TraceMeanFieldElbo::new()).seed(SEED);
    Box::new(move || svi.step().unwrap().loss)
}

/// Both sides compute the same losses, step after step.
fn check_agree(name: &str, a: &mut dyn FnMut() -> f64, b: &mut dyn FnMut() -> f64) {
    for k in 0..5 {
        let (x, y) = (a(), b());
        assert!(
            (x - y).abs() <= 1e-4 * y.abs().max(1.0),
            "{name} step {k}: AutoNormal loss {x}, by hand {y}"
        );
    }
}

fn steps(default: usize) -> usize {
    std::env::var("AUTOGUIDE_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let dev = Device::Cpu;
    vi_dist::set_validation(false);
    let mut lines = Vec::new();

    // AutoNormal against the guide by hand.
    let reg = Reg::new(&dev);
    let plate = PlateModel::new(&dev);
    let auto_reg = AutoNormal::new(|ctx: &mut Ctx<'_>| reg.model(ctx))
        .init(Init::Feasible)
        .init_scale(INIT_SCALE);
    let auto_plate = AutoNormal::new(|ctx: &mut Ctx<'_>| plate.model(ctx))
        .init(Init::Feasible)
        .init_scale(INIT_SCALE);
    let mut plate_hand = plate_svi(&dev);
    let pairs: Vec<(&str, Stepper, Stepper, usize)> = vec![
        (
            "regression",
            stepper(|ctx: &mut Ctx<'_>| reg.model(ctx), auto_reg.as_fn()),
            stepper(
                |ctx: &mut Ctx<'_>| reg.model(ctx),
                |ctx: &mut Ctx<'_>| reg.guide(ctx),
            ),
            steps(5000),
        ),
        (
            "plate",
            stepper(|ctx: &mut Ctx<'_>| plate.model(ctx), auto_plate.as_fn()),
            Box::new(move || plate_hand.step().unwrap().loss),
            steps(1000),
        ),
    ];
    for (name, mut auto, mut hand, n) in pairs {
        check_agree(name, &mut auto, &mut hand);
        let med = paired(&mut [&mut auto, &mut hand], n);
        lines.push(format!(
            "bench={name}_autonormal_vs_hand auto_us={:.2} hand_us={:.2} ratio={:.3}",
            med[0],
            med[1],
            med[0] / med[1]
        ));
    }

    // The joint guides on the regression, against AutoNormal.
    let normal = AutoNormal::new(|ctx: &mut Ctx<'_>| reg.model(ctx));
    let diag = AutoDiagonalNormal::new(|ctx: &mut Ctx<'_>| reg.model(ctx));
    let mvn = AutoMultivariateNormal::new(|ctx: &mut Ctx<'_>| reg.model(ctx));
    let mut a = stepper(|ctx: &mut Ctx<'_>| reg.model(ctx), normal.as_fn());
    let mut b = stepper(|ctx: &mut Ctx<'_>| reg.model(ctx), diag.as_fn());
    let mut c = stepper(|ctx: &mut Ctx<'_>| reg.model(ctx), mvn.as_fn());
    let med = paired(&mut [&mut a, &mut b, &mut c], steps(5000));
    lines.push(format!(
        "bench=regression_guides autonormal_us={:.2} autodiagonalnormal_us={:.2} \
         automultivariatenormal_us={:.2}",
        med[0], med[1], med[2]
    ));

    // Predictive (parallel, 1000 samples) against one step, the guide AutoNormal trained a
    // little.
    let guide = AutoNormal::new(|ctx: &mut Ctx<'_>| reg.model(ctx));
    let mut svi = Svi::new(
        |ctx: &mut Ctx<'_>| reg.model(ctx),
        guide.as_fn(),
        adam(),
        TraceMeanFieldElbo::new(),
    )
    .seed(SEED);
    for _ in 0..200 {
        svi.step().unwrap();
    }
    let svi = std::cell::RefCell::new(svi);
    let mut step = || svi.borrow_mut().step().unwrap().loss;
    let mut all = Predictive::with_guide(|ctx: &mut Ctx<'_>| reg.model(ctx), guide.as_fn())
        .num_samples(1000)
        .parallel(true)
        .max_plate_nesting(1);
    let mut latents = Predictive::with_guide(|ctx: &mut Ctx<'_>| reg.model(ctx), guide.as_fn())
        .num_samples(1000)
        .parallel(true)
        .max_plate_nesting(1)
        .return_sites(&["w", "b", "sigma"]);
    let mut predict_all = || {
        let mut s = svi.borrow_mut();
        let draws = all.run(s.store_mut()).unwrap();
        assert_eq!(draws["y"].dims(), &[1000, REG_N]);
        draws["y"].dims()[0] as f64
    };
    let mut predict_latents = || {
        let mut s = svi.borrow_mut();
        let draws = latents.run(s.store_mut()).unwrap();
        draws["w"].dims()[0] as f64
    };
    let med = paired(
        &mut [&mut predict_all, &mut predict_latents, &mut step],
        steps(200),
    );
    lines.push(format!(
        "bench=predictive_parallel_1000 predictive_us={:.1} latents_only_us={:.1} step_us={:.2} \
         ratio={:.1} latents_only_ratio={:.2}",
        med[0],
        med[1],
        med[2],
        med[0] / med[2],
        med[1] / med[2]
    ));
    for l in &lines {
        println!("{l}");
    }
}
