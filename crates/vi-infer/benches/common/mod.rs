//! What the two benches share: the dtype, seed and initial guide scale of every side, the
//! optimizer, and the `plate` model with its guide as `Svi` (the model `benches/svi.rs` times,
//! and the `plate` model of `benches/small_models.rs`).

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
