//! Typed errors where users meet them (`Svi::step`, the ELBOs): each names the site, the
//! plate and the shapes involved.

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_dist::{Constraint, DistError, Distribution, Gamma, Normal, Poisson};
use vi_infer::{Ctx, Elbo, InferError, ParamStore, TraceElbo, TraceMeanFieldElbo};

use crate::common::{Res, adam, assert_mentions, elbo_error, normal, scalar, step_error, tensor};

/// A learnable guide for the scalar latent `name`: `Normal(loc, scale)`.
fn guide_site(ctx: &mut Ctx, name: &str, dev: &Device, dt: DType) -> vi_infer::Result<Tensor> {
    let loc = ctx.param(
        &format!("{name}_loc"),
        &scalar(0.0, dev, dt)?,
        Constraint::Real,
    )?;
    let scale = ctx.param(
        &format!("{name}_scale"),
        &scalar(1.0, dev, dt)?,
        Constraint::Positive,
    )?;
    ctx.sample(name, Normal::new(&loc, &scale)?)
}

/// The error of one `Svi::step` of `model` and `guide` with `TraceMeanFieldElbo` and Adam at
/// learning rate 0.01 (must fail).
fn svi_error(
    model: impl FnMut(&mut Ctx) -> vi_infer::Result<()>,
    guide: impl FnMut(&mut Ctx) -> vi_infer::Result<()>,
) -> InferError {
    step_error(model, guide, adam(0.01), TraceMeanFieldElbo::new())
}

// ---------------------------------------------------------------------------------------

fn guide_site_absent_from_the_model(dev: &Device, dt: DType) -> Res {
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.sample("z", normal(0.0, 1.0, dev, dt)?)?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        guide_site(ctx, "z", dev, dt)?;
        guide_site(ctx, "extra", dev, dt)?;
        Ok(())
    };
    for e in [
        svi_error(model, guide),
        elbo_error(&TraceElbo::new(), dev, dt, model, guide),
    ] {
        assert!(
            matches!(&e, InferError::GuideSiteNotInModel { site } if site == "extra"),
            "{e:?}"
        );
        assert_mentions(&e, &["guide site `extra`"]);
    }
    Ok(())
}
vi_test::test_device!(guide_site_absent_from_the_model);

fn guide_site_observed_in_the_model(dev: &Device, dt: DType) -> Res {
    // The guide samples `x`, which the model observes: the guide's draw would be ignored
    // (TraceMeanFieldElbo) or add a spurious entropy term (TraceElbo).
    let x = scalar(0.3, dev, dt)?;
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let z = ctx.sample("z", normal(0.0, 1.0, dev, dt)?)?;
        ctx.observe("x", Normal::new(&z, &scalar(1.0, dev, dt)?)?, &x)?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        guide_site(ctx, "z", dev, dt)?;
        guide_site(ctx, "x", dev, dt)?;
        Ok(())
    };
    for e in [
        svi_error(model, guide),
        elbo_error(&TraceElbo::new(), dev, dt, model, guide),
    ] {
        assert!(
            matches!(&e, InferError::GuideSiteNotInModel { site } if site == "x"),
            "{e:?}"
        );
        assert_mentions(&e, &["guide site `x`"]);
    }
    Ok(())
}
vi_test::test_device!(guide_site_observed_in_the_model);

fn model_latent_absent_from_the_guide(dev: &Device, dt: DType) -> Res {
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.sample("z", normal(0.0, 1.0, dev, dt)?)?;
        ctx.plate("data", 3, |ctx| {
            ctx.sample("local", normal(0.0, 1.0, dev, dt)?)
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        guide_site(ctx, "z", dev, dt)?;
        Ok(())
    };
    for e in [
        svi_error(model, guide),
        elbo_error(&TraceElbo::new(), dev, dt, model, guide),
    ] {
        assert!(
            matches!(&e, InferError::LatentNotInGuide { site } if site == "local"),
            "{e:?}"
        );
        assert_mentions(&e, &["model latent site `local`"]);
    }
    Ok(())
}
vi_test::test_device!(model_latent_absent_from_the_guide);

fn event_shapes_differ(dev: &Device, dt: DType) -> Res {
    let zeros = tensor(&[0.0; 3], dev, dt)?;
    let ones = tensor(&[1.0; 3], dev, dt)?;
    // The model treats z as one 3-vector, the guide as 3 independent scalars.
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.sample("z", Normal::new(&zeros, &ones)?.to_event(1)?)?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let loc = ctx.param("loc", &zeros, Constraint::Real)?;
        ctx.sample("z", Normal::new(&loc, &ones)?)?;
        Ok(())
    };
    for e in [
        svi_error(model, guide),
        elbo_error(&TraceElbo::new(), dev, dt, model, guide),
    ] {
        match &e {
            InferError::EventShape {
                site,
                model: m,
                guide: g,
                ..
            } => {
                assert_eq!(site, "z");
                assert_eq!((&**m, &**g), (&[3usize][..], &[][..]));
            }
            other => panic!("expected EventShape, got {other:?}"),
        }
        assert_mentions(
            &e,
            &["site `z`", "Independent(Normal, 1)", "[3]", "Normal has []"],
        );
    }
    Ok(())
}
vi_test::test_device!(event_shapes_differ);

fn site_name_used_twice(dev: &Device, dt: DType) -> Res {
    let dup = |e: InferError, name: &str| {
        assert!(
            matches!(&e, InferError::DuplicateSite { site } if site == name),
            "{e:?}"
        );
        assert_mentions(&e, &[&format!("site `{name}` is used twice")]);
    };
    let good_model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.sample("z", normal(0.0, 1.0, dev, dt)?)?;
        Ok(())
    };
    let good_guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        guide_site(ctx, "z", dev, dt)?;
        Ok(())
    };
    // In the model.
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.sample("z", normal(0.0, 1.0, dev, dt)?)?;
        ctx.observe("z", normal(0.0, 1.0, dev, dt)?, &scalar(0.0, dev, dt)?)?;
        Ok(())
    };
    dup(svi_error(model, good_guide), "z");
    // In the guide.
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        guide_site(ctx, "z", dev, dt)?;
        ctx.sample("z", normal(0.0, 1.0, dev, dt)?)?;
        Ok(())
    };
    dup(svi_error(good_model, guide), "z");
    // A subsampled plate and a site of the same name.
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.sample("z", normal(0.0, 1.0, dev, dt)?)?;
        ctx.plate_subsample("data", 10, 5, |ctx, _| {
            ctx.observe("data", normal(0.0, 1.0, dev, dt)?, &scalar(0.0, dev, dt)?)
        })?;
        Ok(())
    };
    dup(svi_error(model, good_guide), "data");
    // A parameter and a latent of the same name.
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let loc = ctx.param("z", &scalar(0.0, dev, dt)?, Constraint::Real)?;
        ctx.sample("z", Normal::new(&loc, &scalar(1.0, dev, dt)?)?)?;
        Ok(())
    };
    dup(svi_error(good_model, guide), "z");
    Ok(())
}
vi_test::test_device!(site_name_used_twice);

fn plate_size_disagrees_with_a_distribution(dev: &Device, dt: DType) -> Res {
    let four = Normal::new(&tensor(&[0.0; 4], dev, dt)?, &tensor(&[1.0; 4], dev, dt)?)?;
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("data", 3, |ctx| guide_site(ctx, "z", dev, dt))?;
        Ok(())
    };
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("data", 3, |ctx| ctx.sample("z", four.clone()))?;
        Ok(())
    };
    let e = svi_error(model, guide);
    assert!(
        matches!(&e, InferError::PlateSize { site, plate, size: 3, dim: -1, batch, .. }
            if site == "z" && plate == "data" && **batch == [4]),
        "{e:?}"
    );
    assert_mentions(
        &e,
        &[
            "site `z`",
            "plate `data`",
            "size 3",
            "dim -1",
            "[4]",
            "Normal",
        ],
    );
    // At an inner dim, and in a subsampled plate (whose batch size is the subsample size).
    let wide = Normal::new(
        &Tensor::zeros((4, 2), dt, dev)?,
        &Tensor::ones((4, 2), dt, dev)?,
    )?;
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("cols", 2, |ctx| {
            ctx.plate_subsample("rows", 100, 5, |ctx, _| guide_site(ctx, "w", dev, dt))
        })?;
        Ok(())
    };
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("cols", 2, |ctx| {
            ctx.plate_subsample("rows", 100, 5, |ctx, _| ctx.sample("w", wide.clone()))
        })?;
        Ok(())
    };
    let e = svi_error(model, guide);
    assert!(
        matches!(&e, InferError::PlateSize { site, plate, size: 5, dim: -2, batch, .. }
            if site == "w" && plate == "rows" && **batch == [4, 2]),
        "{e:?}"
    );
    assert_mentions(
        &e,
        &["site `w`", "plate `rows`", "size 5", "dim -2", "[4, 2]"],
    );
    Ok(())
}
vi_test::test_device!(plate_size_disagrees_with_a_distribution);

fn plate_size_disagrees_with_observed_data(dev: &Device, dt: DType) -> Res {
    // 50 data points in a plate of 100.
    let data = Tensor::zeros(50, dt, dev)?;
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        guide_site(ctx, "mu", dev, dt)?;
        Ok(())
    };
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let mu = ctx.sample("mu", normal(0.0, 1.0, dev, dt)?)?;
        ctx.plate("data", 100, |ctx| {
            ctx.observe("x", Normal::new(&mu, &scalar(1.0, dev, dt)?)?, &data)
        })?;
        Ok(())
    };
    let e = svi_error(model, guide);
    assert!(
        matches!(&e, InferError::PlateSize { site, plate, size: 100, dim: -1, batch, .. }
            if site == "x" && plate == "data" && **batch == [50]),
        "{e:?}"
    );
    assert_mentions(
        &e,
        &[
            "site `x`",
            "plate `data`",
            "size 100",
            "the observed value",
            "[50]",
        ],
    );
    // Event dims are not batch dims: 3-vectors, 50 of them, in a plate of 100.
    let data = Tensor::zeros((50, 3), dt, dev)?;
    let zeros = Tensor::zeros(3, dt, dev)?;
    let ones = Tensor::ones(3, dt, dev)?;
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.sample("mu", normal(0.0, 1.0, dev, dt)?)?;
        ctx.plate("data", 100, |ctx| {
            ctx.observe("v", Normal::new(&zeros, &ones)?.to_event(1)?, &data)
        })?;
        Ok(())
    };
    let e = svi_error(model, guide);
    assert!(
        matches!(&e, InferError::PlateSize { site, batch, .. } if site == "v" && **batch == [50]),
        "{e:?}"
    );
    Ok(())
}
vi_test::test_device!(plate_size_disagrees_with_observed_data);

fn guide_and_model_plates_differ_in_size(dev: &Device, dt: DType) -> Res {
    // The guide's draw of `z` (3 of them) replayed into the model's plate of 4.
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("data", 3, |ctx| guide_site(ctx, "z", dev, dt))?;
        Ok(())
    };
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("data", 4, |ctx| ctx.sample("z", normal(0.0, 1.0, dev, dt)?))?;
        Ok(())
    };
    for e in [
        svi_error(model, guide),
        elbo_error(&TraceElbo::new(), dev, dt, model, guide),
    ] {
        assert!(
            matches!(&e, InferError::PlateSize { site, plate, size: 4, dim: -1, batch, .. }
                if site == "z" && plate == "data" && **batch == [3]),
            "{e:?}"
        );
        assert_mentions(
            &e,
            &["site `z`", "plate `data`", "size 4", "the value", "[3]"],
        );
    }
    Ok(())
}
vi_test::test_device!(guide_and_model_plates_differ_in_size);

fn observed_value_outside_the_support(dev: &Device, dt: DType) -> Res {
    let counts = tensor(&[-1.0, 2.0], dev, dt)?;
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let a = ctx.param("a", &scalar(2.0, dev, dt)?, Constraint::Positive)?;
        let b = ctx.param("b", &scalar(1.0, dev, dt)?, Constraint::Positive)?;
        ctx.sample("rate", Gamma::new(&a, &b)?)?;
        Ok(())
    };
    let prior = || -> vi_infer::Result<Gamma> {
        Ok(Gamma::new(&scalar(2.0, dev, dt)?, &scalar(1.0, dev, dt)?)?)
    };
    let check = |e: &InferError| {
        match e {
            InferError::Observed { site, source, .. } => {
                assert_eq!(site, "counts");
                assert!(
                    matches!(
                        **source,
                        DistError::ValueSupport {
                            dist: "Poisson",
                            ..
                        }
                    ),
                    "{source:?}"
                );
            }
            other => panic!("expected Observed, got {other:?}"),
        }
        assert_mentions(e, &["observed site `counts`", "Poisson", "[2]", "support"]);
    };
    // Observed with `ctx.observe`.
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let rate = ctx.sample("rate", prior()?)?;
        ctx.plate("data", 2, |ctx| {
            ctx.observe("counts", Poisson::new(&rate)?, &counts)
        })?;
        Ok(())
    };
    check(&svi_error(model, guide));
    check(&elbo_error(&TraceElbo::new(), dev, dt, model, guide));
    // Observed through `condition`: the same error, met when the ELBO scores the site.
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.condition([("counts".to_string(), counts.clone())], |ctx| {
            let rate = ctx.sample("rate", prior()?)?;
            ctx.plate("data", 2, |ctx| ctx.sample("counts", Poisson::new(&rate)?))
        })?;
        Ok(())
    };
    check(&svi_error(model, guide));
    // Directly at `ctx.observe`, without an ELBO.
    let mut store = ParamStore::new(dev, dt);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut ctx = Ctx::new(&mut store, &mut rng);
    let rate = scalar(3.0, dev, dt)?;
    check(
        &ctx.observe("counts", Poisson::new(&rate)?, &counts)
            .unwrap_err(),
    );
    // A value in the support but of a non-broadcasting shape names the site too.
    let e = ctx
        .observe(
            "counts",
            Poisson::new(&tensor(&[1.0, 2.0, 3.0], dev, dt)?)?,
            &tensor(&[1.0, 2.0], dev, dt)?,
        )
        .unwrap_err();
    assert!(
        matches!(&e, InferError::Observed { site, .. } if site == "counts"),
        "{e:?}"
    );
    assert_mentions(&e, &["observed site `counts`", "[2]"]);
    Ok(())
}
vi_test::test_device!(observed_value_outside_the_support);

#[test]
fn matching_model_and_guide_pass_the_checks() -> Res {
    // No false positives: a model and guide that agree run through both ELBOs.
    let (dev, dt) = (Device::Cpu, DType::F64);
    let data = tensor(&[0.1, 0.2, 0.3], &dev, dt)?;
    let mut model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let mu = ctx.sample("mu", normal(0.0, 1.0, &dev, dt)?)?;
        ctx.plate("data", 3, |ctx| {
            ctx.observe("x", Normal::new(&mu, &scalar(1.0, &dev, dt)?)?, &data)
        })?;
        Ok(())
    };
    let mut guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        guide_site(ctx, "mu", &dev, dt)?;
        Ok(())
    };
    let mut store = ParamStore::new(&dev, dt);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let out = TraceMeanFieldElbo::new().compute(&mut model, &mut guide, &mut store, &mut rng)?;
    assert_eq!(out.sites.len(), 2);
    let out = TraceElbo::new().compute(&mut model, &mut guide, &mut store, &mut rng)?;
    assert_eq!(out.sites.len(), 2);
    assert!(out.loss.to_scalar::<f64>()?.is_finite());
    Ok(())
}
