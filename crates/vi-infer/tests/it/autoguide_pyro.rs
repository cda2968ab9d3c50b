//! Pyro's `tests/infer/test_autoguide.py`, the cases that apply, one test each with Pyro's
//! name (the shapes, median, quantiles, initialisation and subsampling cases; the rest of the
//! port is in `autoguide.rs`). Not ported: `AutoIAFNormal`, `AutoLaplaceApproximation`,
//! `AutoDiscreteParallel` and `TraceEnum_ELBO` / `TraceGraph_ELBO` (not in vi), torch.jit
//! serialisation, `PyroModule` models, sequential plates (`test_iplate_smoke`, an xfail in
//! Pyro too), and `create_plates` (vi's guides read the model's plates themselves; Pyro's
//! `test_subsample_guide` is ported without it).

use std::cell::RefCell;
use std::collections::HashMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_infer::autoguide::{
    AutoDelta, AutoDiagonalNormal, AutoGuide, AutoGuideList, AutoLowRankMultivariateNormal,
    AutoMultivariateNormal, AutoNormal, Init,
};
use vi_infer::candle::{DType, Device, Tensor};
use vi_infer::dist::{
    Bernoulli, Beta, Dirichlet, Distribution, LogNormal, MultivariateNormal, Normal,
};
use vi_infer::handlers::Block;
use vi_infer::{Ctx, Elbo, ParamStore, Plate, Svi, TraceElbo, TraceMeanFieldElbo};

use crate::common::{Res, adam, host, run};

/// Every guide of `model`, by name (`init` for each).
fn all_guides<'m, M>(model: M, init: &Init) -> Vec<(&'static str, Box<dyn AutoGuide + 'm>)>
where
    M: FnMut(&mut Ctx<'_>) -> vi_infer::Result<()> + Copy + 'm,
{
    vec![
        (
            "AutoDelta",
            Box::new(AutoDelta::new(model).init(init.clone())),
        ),
        (
            "AutoNormal",
            Box::new(AutoNormal::new(model).init(init.clone())),
        ),
        (
            "AutoDiagonalNormal",
            Box::new(AutoDiagonalNormal::new(model).init(init.clone())),
        ),
        (
            "AutoMultivariateNormal",
            Box::new(AutoMultivariateNormal::new(model).init(init.clone())),
        ),
        (
            "AutoLowRankMultivariateNormal",
            Box::new(AutoLowRankMultivariateNormal::new(model).init(init.clone())),
        ),
    ]
}

fn scalars() -> Res<(Tensor, Tensor)> {
    Ok((
        Tensor::new(0.0f64, &Device::Cpu)?,
        Tensor::new(1.0f64, &Device::Cpu)?,
    ))
}

/// `test_scores`: the joint guides' model sites are point masses (log q = 0 there, the
/// density lives in the auxiliary latent, which the model does not have).
#[test]
fn test_scores() -> Res {
    let (zero, one) = scalars()?;
    let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?).map(|_| ());
    for (name, guide) in all_guides(model, &Init::default()) {
        let mut store = ParamStore::new(&Device::Cpu, DType::F64);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut ctx = Ctx::new(&mut store, &mut rng);
        let ((), g) = ctx.trace(|ctx| guide.call(ctx))?;
        let ((), m) = ctx.trace(|ctx| ctx.replay(&g, model))?;
        assert_ne!(m.get("z").unwrap().log_prob_sum()?.to_scalar::<f64>()?, 0.0);
        let aux = format!("_{name}_latent");
        if name.starts_with("AutoDiag")
            || name.starts_with("AutoMulti")
            || name.starts_with("AutoLow")
        {
            assert!(!m.contains(&aux));
            assert_ne!(
                g.get(&aux).unwrap().log_prob_sum()?.to_scalar::<f64>()?,
                0.0
            );
            assert_eq!(
                g.get("z").unwrap().log_prob_sum()?.to_scalar::<f64>()?,
                0.0,
                "{name}"
            );
        }
    }
    Ok(())
}

/// `test_factor`: factors add to the model's log density and nothing else: with the same
/// draws, the loss moves by −(1 + 3) when the factor moves by 1 (once outside the plate of 3,
/// once inside), for every guide and both ELBOs.
#[test]
fn test_factor() -> Res {
    let dev = Device::Cpu;
    let (zero, one) = scalars()?;
    let (zeros2, ones2) = (
        Tensor::zeros(2, DType::F64, &dev)?,
        Tensor::ones(2, DType::F64, &dev)?,
    );
    let log_factor = RefCell::new(Tensor::new(0.0f64, &dev)?);
    let model = |ctx: &mut Ctx| {
        let f = log_factor.borrow().clone();
        ctx.sample("z1", Normal::new(&zero, &one)?)?;
        ctx.factor("f1", &f)?;
        ctx.sample("z2", Normal::new(&zeros2, &ones2)?.to_event(1)?)?;
        ctx.plate("plate", 3, |ctx| {
            ctx.factor("f2", &f.broadcast_as(3)?)?;
            ctx.sample("z3", Normal::new(&zero, &one)?)
        })?;
        Ok(())
    };
    let elbos: Vec<Box<dyn Elbo>> = vec![
        Box::new(TraceElbo::new()),
        Box::new(TraceMeanFieldElbo::new()),
    ];
    for elbo in &elbos {
        for (name, guide) in all_guides(model, &Init::default()) {
            let mut store = ParamStore::new(&dev, DType::F64);
            let mut loss_at = |v: f64| -> vi_infer::Result<f64> {
                *log_factor.borrow_mut() = Tensor::new(v, &dev)?;
                let mut rng = ChaCha8Rng::seed_from_u64(123);
                let out = elbo.compute(
                    &mut { model },
                    &mut |ctx: &mut Ctx| guide.call(ctx),
                    &mut store,
                    &mut rng,
                )?;
                Ok(out.loss.to_scalar::<f64>()?)
            };
            loss_at(0.0)?; // the parameters
            let d = loss_at(5.0)? - loss_at(4.0)?;
            assert!((d + 4.0).abs() < 1e-9, "{name}: {d}");
        }
    }
    Ok(())
}

/// `test_shapes`: a scalar, a vector, a plated site, a multivariate normal, a Dirichlet and a
/// masked vector site: a finite loss for every guide, initialisation and ELBO.
#[test]
fn test_shapes() -> Res {
    let dev = Device::Cpu;
    let (zero, one) = scalars()?;
    let (zeros2, ones2) = (
        Tensor::zeros(2, DType::F64, &dev)?,
        Tensor::ones(2, DType::F64, &dev)?,
    );
    let eye2 = Tensor::eye(2, DType::F64, &dev)?;
    let ones3 = Tensor::ones(3, DType::F64, &dev)?;
    let mask = Tensor::new(&[0u8, 1], &dev)?;
    let model = |ctx: &mut Ctx| {
        ctx.sample("z1", Normal::new(&zero, &one)?)?;
        ctx.sample("z2", Normal::new(&zeros2, &ones2)?.to_event(1)?)?;
        ctx.plate("plate", 3, |ctx| {
            ctx.sample("z3", Normal::new(&zero, &one)?)
        })?;
        ctx.sample("z4", MultivariateNormal::from_scale_tril(&zeros2, &eye2)?)?;
        ctx.sample("z5", Dirichlet::new(&ones3)?)?;
        ctx.sample(
            "z6",
            Normal::new(&zeros2, &ones2)?.mask(&mask)?.to_event(1)?,
        )?;
        Ok(())
    };
    for init in [Init::Feasible, Init::Mean, Init::median(), Init::Sample] {
        for (name, guide) in all_guides(model, &init) {
            for mean_field in [false, true] {
                let mut store = ParamStore::new(&dev, DType::F64);
                let mut rng = ChaCha8Rng::seed_from_u64(0);
                let mut g = |ctx: &mut Ctx| guide.call(ctx);
                let out = if mean_field {
                    TraceMeanFieldElbo::new().compute(
                        &mut { model },
                        &mut g,
                        &mut store,
                        &mut rng,
                    )?
                } else {
                    TraceElbo::new().compute(&mut { model }, &mut g, &mut store, &mut rng)?
                };
                let loss = out.loss.to_scalar::<f64>()?;
                assert!(loss.is_finite(), "{name} {init:?}: {loss}");
            }
        }
    }
    Ok(())
}

/// The model of `test_median` and `test_quantiles`: `x ~ Normal(0, 1)`, `y ~ LogNormal(0, 1)`,
/// `z ~ Beta(2, 2)`, nothing observed (the guide fits the prior).
fn prior_fit<'m>(
    guide: &'m dyn AutoGuide,
    model: impl FnMut(&mut Ctx) -> vi_infer::Result<()> + 'm,
    check: impl FnOnce(&ParamStore) -> Res,
) -> Res {
    let opts = vi_infer::optim::AdamOptions {
        lr: 0.05,
        betas: (0.8, 0.99),
        ..Default::default()
    };
    let elbo = TraceElbo::new()
        .num_particles(100)
        .vectorize_particles(true);
    let mut svi = Svi::new(
        model,
        |ctx: &mut Ctx| guide.call(ctx),
        vi_infer::optim::Adam::empty(opts)?,
        elbo,
    )
    .seed(0);
    for _ in 0..100 {
        svi.step()?;
    }
    check(svi.store())
}

/// `test_median`: after fitting the prior, the median of each site: `x` 0, `y` 1 (the mode
/// e⁻¹ for `AutoDelta`), `z` ½, within 0.1.
#[test]
fn test_median() -> Res {
    let (zero, one) = scalars()?;
    let two = (&one * 2.0)?;
    let model = |ctx: &mut Ctx| {
        ctx.sample("x", Normal::new(&zero, &one)?)?;
        ctx.sample("y", LogNormal::new(&zero, &one)?)?;
        ctx.sample("z", Beta::new(&two, &two)?)?;
        Ok(())
    };
    let mut guides = all_guides(model, &Init::default());
    guides.push((
        "AutoGuideList",
        Box::new(
            AutoGuideList::new()
                .push(AutoDelta::new(model).block(Block::expose(["x"])))
                .push(AutoDiagonalNormal::new(model).block(Block::hide(["x"]))),
        ),
    ));
    for init in [Init::Feasible, Init::Mean, Init::Sample] {
        guides.push((
            "AutoDiagonalNormal",
            Box::new(AutoDiagonalNormal::new(model).init(init)),
        ));
    }
    for (name, guide) in &guides {
        prior_fit(guide.as_ref(), model, |store| {
            let m = guide.median(store)?;
            let y_want = if *name == "AutoDelta" {
                (-1f64).exp()
            } else {
                1.0
            };
            for (site, want) in [("x", 0.0), ("y", y_want), ("z", 0.5)] {
                let got = m[site].to_scalar::<f64>()?;
                assert!(
                    (got - want).abs() < 0.1,
                    "{name} {site}: {got}, want {want}"
                );
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// `test_quantiles`: the quantiles 0.1, 0.5, 0.9 of the fitted prior are ordered as Pyro's test
/// requires, and the 0.5 quantile is the median.
#[test]
fn test_quantiles() -> Res {
    let (zero, one) = scalars()?;
    let two = (&one * 2.0)?;
    let model = |ctx: &mut Ctx| {
        ctx.sample("x", Normal::new(&zero, &one)?)?;
        ctx.sample("y", LogNormal::new(&zero, &one)?)?;
        ctx.sample("z", Beta::new(&two, &two)?)?;
        Ok(())
    };
    for (name, guide) in all_guides(model, &Init::default()).into_iter().skip(1) {
        prior_fit(guide.as_ref(), model, |store| {
            let q = guide.quantiles(store, &[0.1, 0.5, 0.9])?;
            let m = guide.median(store)?;
            let at = |s: &str| host(&q[s]);
            for s in ["x", "y", "z"] {
                assert!(
                    (at(s)[1] - m[s].to_scalar::<f64>()?).abs() < 1e-12,
                    "{name} {s}"
                );
            }
            let (x, y, z) = (at("x"), at("y"), at("z"));
            assert!(
                -3.0 < x[0] && x[0] + 1.0 < x[1] && x[1] + 1.0 < x[2] && x[2] < 3.0,
                "{name} x {x:?}"
            );
            assert!(
                0.01 < y[0] && y[0] * 2.0 < y[1] && y[1] * 2.0 < y[2] && y[2] < 100.0,
                "{name} y {y:?}"
            );
            assert!(
                0.01 < z[0] && z[0] + 0.1 < z[1] && z[1] + 0.1 < z[2] && z[2] < 0.99,
                "{name} z {z:?}"
            );
            Ok(())
        })?;
    }
    Ok(())
}

/// `test_guide_list` and `test_callable`: an `AutoGuideList` of two automatic parts over `x`
/// and `y` (a vector and a multivariate normal), and one of a part by hand and an automatic
/// one.
#[test]
fn test_guide_list_and_callable() -> Res {
    let dev = Device::Cpu;
    let (zero, one) = scalars()?;
    let (zeros5, eye5) = (
        Tensor::zeros(5, DType::F64, &dev)?,
        Tensor::eye(5, DType::F64, &dev)?,
    );
    let model = |ctx: &mut Ctx| {
        ctx.sample("x", Normal::new(&zero, &one)?)?;
        ctx.sample("y", MultivariateNormal::from_scale_tril(&zeros5, &eye5)?)?;
        Ok(())
    };
    for (name, _) in all_guides(model, &Init::default()) {
        let part = |expose: &'static str| -> Box<dyn AutoGuide> {
            let b = Block::expose([expose]);
            let prefix = format!("{name}_{expose}");
            match name {
                "AutoDelta" => Box::new(AutoDelta::new(model).block(b).prefix(&prefix)),
                "AutoNormal" => Box::new(AutoNormal::new(model).block(b).prefix(&prefix)),
                "AutoDiagonalNormal" => {
                    Box::new(AutoDiagonalNormal::new(model).block(b).prefix(&prefix))
                }
                "AutoMultivariateNormal" => {
                    Box::new(AutoMultivariateNormal::new(model).block(b).prefix(&prefix))
                }
                _ => Box::new(
                    AutoLowRankMultivariateNormal::new(model)
                        .block(b)
                        .prefix(&prefix),
                ),
            }
        };
        let list = AutoGuideList::new().push(part("x")).push(part("y"));
        let mut store = ParamStore::new(&dev, DType::F64);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let ((), tr) = Ctx::new(&mut store, &mut rng).trace(list.as_fn())?;
        assert!(tr.contains("x") && tr.contains("y"), "{name}");
        let x_loc = Tensor::new(0.0f64, &dev)?;
        let callable = AutoGuideList::new()
            .push_fn(|ctx: &mut Ctx| {
                let loc = ctx.param("x_loc", &x_loc, vi_infer::dist::Constraint::Real)?;
                ctx.sample("x", vi_infer::dist::Delta::new(&loc, None, 0)?)
            })
            .push(part("y"));
        let ((), tr) = Ctx::new(&mut store, &mut rng).trace(callable.as_fn())?;
        assert!(tr.contains("x") && tr.contains("y"));
        assert_eq!(callable.latent_sites(), ["y"]);
    }
    Ok(())
}

/// `test_empty_model_error`: a model without latent sites is an error.
#[test]
fn test_empty_model_error() -> Res {
    let model = |_: &mut Ctx| Ok(());
    let guide = AutoDiagonalNormal::new(model);
    let e = run(&Device::Cpu, DType::F64, 0, |ctx| guide.call(ctx)).unwrap_err();
    assert!(e.to_string().contains("no latent site"), "{e}");
    Ok(())
}

/// `test_init_loc_fn`: `init_to_value` for every site: the medians before training are the
/// given values, for every guide.
#[test]
fn test_init_loc_fn() -> Res {
    let dev = Device::Cpu;
    let (zero, one) = scalars()?;
    let (zeros5, eye5) = (
        Tensor::zeros(5, DType::F64, &dev)?,
        Tensor::eye(5, DType::F64, &dev)?,
    );
    let model = |ctx: &mut Ctx| {
        ctx.sample("x", Normal::new(&zero, &one)?)?;
        ctx.sample("y", MultivariateNormal::from_scale_tril(&zeros5, &eye5)?)?;
        Ok(())
    };
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let inits = HashMap::from([
        (
            "x".to_string(),
            vi_infer::dist::standard_normal(&[], DType::F64, &dev, &mut rng)?,
        ),
        (
            "y".to_string(),
            vi_infer::dist::standard_normal(&[5], DType::F64, &dev, &mut rng)?,
        ),
    ]);
    for (name, guide) in all_guides(model, &Init::value(inits.clone())) {
        let mut store = ParamStore::new(&dev, DType::F64);
        let mut r = ChaCha8Rng::seed_from_u64(0);
        guide.call(&mut Ctx::new(&mut store, &mut r))?;
        let m = guide.median(&store)?;
        for s in ["x", "y"] {
            let d = crate::common::max_abs_diff(&m[s], &inits[s]);
            assert!(d < 1e-12, "{name} {s}: {d}");
        }
    }
    Ok(())
}

/// `test_init_scale`: the joint guides' marginal scales start at `init_scale` (their rms within
/// a factor 2), also for a rank (100) above the latent dim's root.
#[test]
fn test_init_scale() -> Res {
    let dev = Device::Cpu;
    let (zero, one) = scalars()?;
    let (zeros5, eye5) = (
        Tensor::zeros(5, DType::F64, &dev)?,
        Tensor::eye(5, DType::F64, &dev)?,
    );
    let model = |ctx: &mut Ctx| {
        ctx.sample("x", Normal::new(&zero, &one)?)?;
        ctx.sample("y", MultivariateNormal::from_scale_tril(&zeros5, &eye5)?)?;
        ctx.plate("plate", 100, |ctx| {
            ctx.sample("z", Normal::new(&zero, &one)?)
        })?;
        Ok(())
    };
    for scale in [1e-1, 1e-4, 1e-8] {
        let rms = [
            marginal_rms(&AutoDiagonalNormal::new(model).init_scale(scale), |g, s| {
                g.get_posterior(s)
            })?,
            marginal_rms(
                &AutoMultivariateNormal::new(model).init_scale(scale),
                |g, s| g.get_posterior(s),
            )?,
            marginal_rms(
                &AutoLowRankMultivariateNormal::new(model).init_scale(scale),
                |g, s| g.get_posterior(s),
            )?,
            marginal_rms(
                &AutoLowRankMultivariateNormal::new(model)
                    .init_scale(scale)
                    .rank(100),
                |g, s| g.get_posterior(s),
            )?,
        ];
        for (name, r) in ["diagonal", "mvn", "low rank", "low rank 100"]
            .iter()
            .zip(rms)
        {
            assert!(
                0.5 * scale < r && r < 2.0 * scale,
                "{name} at {scale}: rms {r}"
            );
        }
    }
    Ok(())
}

/// The rms of a guide's marginal sds before training.
fn marginal_rms<G: AutoGuide>(
    guide: &G,
    posterior: impl Fn(&G, &ParamStore) -> vi_infer::Result<Box<dyn Distribution>>,
) -> Res<f64> {
    let mut store = ParamStore::new(&Device::Cpu, DType::F64);
    let mut r = ChaCha8Rng::seed_from_u64(0);
    guide.call(&mut Ctx::new(&mut store, &mut r))?;
    let var = host(&posterior(guide, &store)?.variance()?);
    Ok((var.iter().sum::<f64>() / var.len() as f64).sqrt())
}

/// `test_subsample_guide` (from Pyro's easyguide tutorial), without `create_plates`: a drift
/// and 8 local time series states inside a plate of 50 the model subsamples with its own
/// indices, batches of 20, 20 and 10 (the last one smaller); `AutoDelta`, `AutoNormal` and an
/// `AutoGuideList` of the two, with three initialisations. Every step's guide and model see
/// the model's indices.
#[test]
fn test_subsample_guide() -> Res {
    let dev = Device::Cpu;
    let (full, steps_t) = (50usize, 8usize);
    let mut rng = ChaCha8Rng::seed_from_u64(123);
    let data = vi_infer::dist::standard_normal(&[steps_t, full], DType::F64, &dev, &mut rng)?
        .ge(0.0)?
        .to_dtype(DType::F64)?;
    let (m1, half) = (Tensor::new(-1.0f64, &dev)?, Tensor::new(0.5f64, &dev)?);
    let batch = RefCell::new((Tensor::new(&[0u32], &dev)?, data.narrow(1, 0, 1)?));
    let model = |ctx: &mut Ctx| {
        let (idx, obs) = batch.borrow().clone();
        let drift = ctx.sample("drift", LogNormal::new(&m1, &half)?)?;
        ctx.plate_with(Plate::new("data", full).subsample(&idx), |ctx, _| {
            let mut z = drift.zeros_like()?;
            for t in 0..steps_t {
                z = ctx.sample(&format!("state_{t}"), Normal::new(&z, &drift)?)?;
                ctx.observe(
                    &format!("obs_{t}"),
                    Bernoulli::from_logits(&z)?,
                    &obs.get(t)?,
                )?;
            }
            Ok(())
        })
    };
    for init in [Init::median(), Init::Mean, Init::Feasible] {
        let guides: Vec<Box<dyn AutoGuide>> = vec![
            Box::new(AutoDelta::new(model).init(init.clone())),
            Box::new(AutoNormal::new(model).init(init.clone())),
            Box::new(
                AutoGuideList::new()
                    .push(
                        AutoDelta::new(model)
                            .init(init.clone())
                            .block(Block::expose(["drift"])),
                    )
                    .push(
                        AutoNormal::new(model)
                            .init(init.clone())
                            .block(Block::hide(["drift"])),
                    ),
            ),
        ];
        for guide in guides {
            let mut svi = Svi::new(
                model,
                |ctx: &mut Ctx| guide.call(ctx),
                adam(0.02),
                TraceElbo::new(),
            )
            .seed(0);
            for _epoch in 0..2 {
                let mut beg = 0;
                while beg < full {
                    let end = (beg + 20).min(full);
                    let idx = Tensor::arange(beg as u32, end as u32, &dev)?;
                    *batch.borrow_mut() = (idx.clone(), data.narrow(1, beg, end - beg)?);
                    let report = svi.step()?;
                    assert!(report.loss.is_finite());
                    let g = report
                        .guide_trace
                        .get("data")
                        .unwrap()
                        .value
                        .to_vec1::<u32>()?;
                    assert_eq!(g, idx.to_vec1::<u32>()?);
                    assert_eq!(
                        report.guide_trace.get("state_3").unwrap().value.dims(),
                        &[end - beg]
                    );
                    beg = end;
                }
            }
            assert_eq!(guide.median(svi.store())?["state_0"].dims(), &[full]);
        }
    }
    Ok(())
}
