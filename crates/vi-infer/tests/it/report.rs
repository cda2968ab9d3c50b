//! The step report: each latent site's KL equals `kl_divergence(guide, prior)` by hand,
//! times the plate scale; resuming from a checkpoint continues bit-identically.

use candle_core::{DType, Device, Tensor};
use vi_dist::{Constraint, Distribution, MultivariateNormal, Normal};
use vi_infer::{Ctx, Svi, TermKind, TraceMeanFieldElbo};
use vi_kl::kl_divergence;
use vi_optim::Adam;

use crate::common::{Res, adam, max_abs_diff};

const SIZE: usize = 40;
const BATCH: usize = 8;
const D: usize = 3;

/// A VAE-shaped model: z [BATCH, D] in a subsampled data plate (scale SIZE / BATCH), a
/// per-point guide `Normal(loc, scale).to_event(1)`, and the given prior for z.
fn vae_shaped(prior_is_mvn: bool) -> Res {
    let dev = Device::Cpu;
    let data = Tensor::rand(-1.0f64, 1.0, (SIZE, D), &dev)?;
    let prior_loc = Tensor::new(&[0.1f64, -0.2, 0.3], &dev)?;
    let prior_tril = Tensor::new(
        &[[1.0f64, 0.0, 0.0], [0.4, 0.9, 0.0], [-0.3, 0.2, 1.1]],
        &dev,
    )?;
    let prior = move || -> vi_infer::Result<Box<dyn Distribution>> {
        Ok(if prior_is_mvn {
            Box::new(MultivariateNormal::from_scale_tril(
                &prior_loc,
                &prior_tril,
            )?)
        } else {
            Box::new(
                Normal::new(
                    &prior_loc,
                    &Tensor::new(&[1.0f64, 0.5, 2.0], prior_loc.device())?,
                )?
                .to_event(1)?,
            )
        })
    };
    let prior_m = prior.clone();
    let data_m = data.clone();
    let model = move |ctx: &mut Ctx| {
        ctx.plate_subsample("data", SIZE, BATCH, |ctx, idx| {
            let z = ctx.sample_boxed("z", prior_m()?)?;
            let x = data_m.index_select(idx, 0)?;
            ctx.observe(
                "x",
                Normal::new(&z, &Tensor::new(0.5f64, z.device())?)?.to_event(1)?,
                &x,
            )
        })
    };
    let dev_g = dev.clone();
    let guide = move |ctx: &mut Ctx| {
        let loc = ctx.param_with(
            "loc",
            || Tensor::rand(-0.5f64, 0.5, (SIZE, D), &dev_g),
            Constraint::Real,
        )?;
        let scale = ctx.param_with(
            "scale",
            || Tensor::rand(0.5f64, 1.5, (SIZE, D), &dev_g),
            Constraint::Positive,
        )?;
        ctx.plate_subsample("data", SIZE, BATCH, |ctx, idx| {
            let q = Normal::new(&loc.index_select(idx, 0)?, &scale.index_select(idx, 0)?)?;
            ctx.sample("z", q.to_event(1)?)
        })
    };
    let mut svi = Svi::new(model, guide, adam(0.01), TraceMeanFieldElbo::new()).seed(4);
    for step in 0..3 {
        let report = svi.step()?;
        let term = report.site("z").expect("z is reported");
        assert_eq!(term.kind, TermKind::KlAnalytic);
        assert_eq!(term.value.dims(), &[BATCH]);
        // By hand: the guide's distribution at this step's indices against the prior.
        let idx = &report
            .guide_trace
            .get("data")
            .expect("subsample site")
            .value;
        let g = report.guide_trace.get("z").unwrap().dist.as_ref().unwrap();
        let kl = kl_divergence(g.as_ref(), prior()?.as_ref())?;
        let want = (kl * (SIZE as f64 / BATCH as f64))?;
        assert!(max_abs_diff(&term.value, &want) < 1e-10, "step {step}");
        let want_sum = want.sum_all()?.to_scalar::<f64>()?;
        assert!((term.sum.to_scalar::<f64>()? - want_sum).abs() < 1e-10);
        assert_eq!(idx.dims(), &[BATCH]);
        // The likelihood term is reported as such.
        assert_eq!(report.site("x").unwrap().kind, TermKind::LogLikelihood);
        // loss = −(Σ log-lik − Σ KL)
        let ll = report.site("x").unwrap().sum.to_scalar::<f64>()?;
        assert!((report.loss - (want_sum - ll)).abs() < 1e-9 * report.loss.abs().max(1.0));
    }
    Ok(())
}

#[test]
fn report_kl_normal_prior() -> Res {
    vae_shaped(false)
}

#[test]
fn report_kl_mvn_prior() -> Res {
    vae_shaped(true)
}

#[allow(clippy::type_complexity)]
fn small_svi(
    dev: &Device,
) -> Svi<
    impl FnMut(&mut Ctx) -> vi_infer::Result<()>,
    impl FnMut(&mut Ctx) -> vi_infer::Result<Tensor>,
    Adam,
    TraceMeanFieldElbo,
> {
    let data = Tensor::new(&[0.3f32, 1.2, 0.8, -0.1, 0.5], dev).unwrap();
    let d1 = dev.clone();
    let model = move |ctx: &mut Ctx| {
        let zero = Tensor::zeros((), DType::F32, &d1)?;
        let one = Tensor::ones((), DType::F32, &d1)?;
        let mu = ctx.sample("mu", Normal::new(&zero, &one)?)?;
        ctx.plate_subsample("data", 5, 2, |ctx, idx| {
            ctx.observe("x", Normal::new(&mu, &one)?, &data.index_select(idx, 0)?)
        })?;
        Ok(())
    };
    let d2 = dev.clone();
    let guide = move |ctx: &mut Ctx| {
        let loc = ctx.param(
            "loc",
            &Tensor::zeros((), DType::F32, &d2)?,
            Constraint::Real,
        )?;
        let scale = ctx.param(
            "scale",
            &Tensor::ones((), DType::F32, &d2)?,
            Constraint::Positive,
        )?;
        ctx.sample("mu", Normal::new(&loc, &scale)?)
    };
    Svi::new(model, guide, adam(0.05), TraceMeanFieldElbo::new()).seed(9)
}

#[test]
fn checkpoint_resume_is_bit_identical() -> Res {
    let dev = Device::Cpu;
    let path = std::env::temp_dir().join(format!(
        "vi_infer_resume_{}.safetensors",
        std::process::id()
    ));
    let mut a = small_svi(&dev);
    for _ in 0..5 {
        a.step()?;
    }
    a.save(&path)?;
    let mut losses_a = vec![];
    for _ in 0..5 {
        losses_a.push(a.step()?.loss);
    }
    let mut b = small_svi(&dev);
    b.load(&path)?;
    let mut losses_b = vec![];
    for _ in 0..5 {
        losses_b.push(b.step()?.loss);
    }
    std::fs::remove_file(&path).ok();
    assert_eq!(losses_a, losses_b);
    for name in ["loc", "scale"] {
        let pa = a.store().get(name)?.unwrap().to_scalar::<f32>()?;
        let pb = b.store().get(name)?.unwrap().to_scalar::<f32>()?;
        assert_eq!(pa.to_bits(), pb.to_bits(), "{name}");
    }
    // A run that did not resume differs (the check can fail).
    let mut c = small_svi(&dev);
    let losses_c: Vec<f64> = (0..5).map(|_| c.step().unwrap().loss).collect();
    assert_ne!(losses_a, losses_c);
    Ok(())
}

/// The optimizer steps exactly what the traces touched: params read this step and the
/// variables of modules marked with `ctx.module`; a stored param or module not used this
/// step keeps its value.
#[test]
fn optimizer_steps_exactly_the_touched_params() -> Res {
    use candle_nn::Module;
    let dev = Device::Cpu;
    let mut store = vi_infer::ParamStore::new(&dev, DType::F64);
    let enc = candle_nn::linear(2, 1, store.var_builder("enc")?)?;
    let unused = candle_nn::linear(2, 1, store.var_builder("unused")?)?;
    // A param that exists in the store but no program reads.
    store.param("stale", || Tensor::new(&[1.0f64], &dev), &Constraint::Real)?;
    let x = Tensor::new(&[[0.5f64, -1.0]], &dev)?;
    let one = Tensor::ones(1, DType::F64, &dev)?;
    let model = |ctx: &mut Ctx| {
        ctx.sample("z", Normal::new(&one.zeros_like()?, &one)?)?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| {
        let loc = ctx.module("enc", &enc)?.forward(&x)?.flatten_all()?;
        let scale = ctx.param("scale", &one, Constraint::Positive)?;
        ctx.sample("z", Normal::new(&loc, &scale)?)
    };
    let before = |s: &vi_infer::ParamStore| -> Vec<Vec<f64>> {
        [
            "enc.weight",
            "enc.bias",
            "unused.weight",
            "unused.bias",
            "stale",
        ]
        .iter()
        .map(|n| vi_test::to_vec(&s.get(n).unwrap().unwrap()).unwrap())
        .collect()
    };
    let b0 = before(&store);
    let mut svi = Svi::new(model, guide, adam(0.1), TraceMeanFieldElbo::new()).with_store(store);
    svi.step()?;
    let b1 = before(svi.store());
    assert_ne!(b0[0], b1[0], "enc.weight moved");
    assert_ne!(b0[1], b1[1], "enc.bias moved");
    assert_eq!(b0[2], b1[2], "unused.weight kept");
    assert_eq!(b0[3], b1[3], "unused.bias kept");
    assert_eq!(b0[4], b1[4], "stale kept");
    let _ = unused;
    Ok(())
}
