//! What the two benches share: the dtype, seed and initial guide scale of every side, the
//! optimizer, and the `plate` model with its guide as `Svi` (the model `benches/svi.rs` times,
//! and the `plate` model of `benches/small_models.rs`).

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_dist::{Constraint, Distribution, Normal};
use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
use vi_optim::{Adam, AdamOptions};

pub(crate) const DTYPE: DType = DType::F32;
/// Seeds the generator of `ε` of every side.
pub(crate) const SEED: u64 = 7;
/// The initial guide scale.
pub(crate) const INIT_SCALE: f64 = 0.5;

/// The `plate` model's plate size.
pub(crate) const PLATE_N: usize = 256;
/// The `plate` model's event size.
pub(crate) const PLATE_D: usize = 50;

/// The optimizer of every side: Adam at learning rate 0.01.
pub(crate) fn adam() -> Adam {
    Adam::empty(AdamOptions {
        lr: 1e-2,
        ..Default::default()
    })
    .unwrap()
}

/// A model or a guide.
pub(crate) trait Program: FnMut(&mut Ctx<'_>) -> vi_infer::Result<()> {}
impl<F: FnMut(&mut Ctx<'_>) -> vi_infer::Result<()>> Program for F {}

/// The `plate` model's data: `x [256, 50]`, fixed.
pub(crate) fn plate_data(dev: &Device) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    vi_dist::standard_normal(&[PLATE_N, PLATE_D], DTYPE, dev, &mut rng).unwrap()
}

/// `Svi` on the `plate` model, `z [256, 50] ~ Normal(0, 1).to_event(1)` in a plate and
/// `x ~ Normal(z, 1).to_event(1)`, with the guide `Normal(loc, scale).to_event(1)`, `loc` and a
/// positive `scale [256, 50]` through `ctx.param`. The model and guide own what they hold
/// (they borrow nothing from the caller).
pub(crate) fn plate_svi(
    dev: &Device,
) -> Svi<impl Program + use<>, impl Program + use<>, Adam, TraceMeanFieldElbo> {
    let x = plate_data(dev);
    let zero = Tensor::zeros(PLATE_D, DTYPE, dev).unwrap();
    let one = Tensor::ones(PLATE_D, DTYPE, dev).unwrap();
    let model = move |ctx: &mut Ctx<'_>| {
        ctx.plate("data", PLATE_N, |ctx| {
            let z = ctx.sample("z", Normal::new(&zero, &one)?.to_event(1)?)?;
            ctx.observe("x", Normal::new(&z, &one)?.to_event(1)?, &x)?;
            Ok(())
        })
    };
    let d = dev.clone();
    let guide = move |ctx: &mut Ctx<'_>| {
        let shape = (PLATE_N, PLATE_D);
        let loc = ctx.param_with("loc", || Tensor::zeros(shape, DTYPE, &d), Constraint::Real)?;
        let scale = ctx.param_with(
            "scale",
            || Tensor::full(INIT_SCALE as f32, shape, &d),
            Constraint::Positive,
        )?;
        ctx.plate("data", PLATE_N, |ctx| {
            ctx.sample("z", Normal::new(&loc, &scale)?.to_event(1)?)?;
            Ok(())
        })
    };
    Svi::new(model, guide, adam(), TraceMeanFieldElbo::new()).seed(SEED)
}

/// Steps of one side timed before the other side takes its turn.
// `benches/svi.rs` times with a loop of its own: these three are the other benches'.
#[allow(dead_code)]
pub(crate) const BLOCK: usize = 10;

/// The median (the mean of the middle two for an even count).
#[allow(dead_code)]
pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Medians in µs of single steps of the sides, alternating in blocks of [`BLOCK`] steps with
/// the order rotating each round.
#[allow(dead_code)]
pub(crate) fn paired(sides: &mut [&mut dyn FnMut() -> f64], steps: usize) -> Vec<f64> {
    for _ in 0..(steps / 10).max(2 * BLOCK) {
        for s in sides.iter_mut() {
            s();
        }
    }
    let n = sides.len();
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(steps); n];
    for round in 0..steps.div_ceil(BLOCK) {
        for k in 0..n {
            let i = (k + round) % n;
            for _ in 0..BLOCK {
                let t = Instant::now();
                std::hint::black_box((sides[i])());
                times[i].push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
    }
    times.iter_mut().map(|t| median(t)).collect()
}
