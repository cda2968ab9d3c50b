//! Issue 16: every place that computed a wrong number silently now stops with a typed error
//! that names what is wrong (or computes the right number). Each test is a case that passed
//! silently, or failed wrongly, before.

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_dist::{Bernoulli, Beta, Constraint, Distribution, MultivariateNormal, Normal, Poisson};
use vi_infer::{
    Ctx, Elbo, InferError, ParamStore, Plate, Svi, TermKind, TraceElbo, TraceMeanFieldElbo,
};

use crate::common::{
    BoxedProgram, Res, adam, assert_mentions, elbo_error, elbo_output, empty, normal_lp, s, t,
};

/// The error of `compute` with `TraceElbo` and with `TraceMeanFieldElbo`, on the CPU in f64
/// (each must fail).
fn both_elbos_fail(
    mut model: impl FnMut(&mut Ctx) -> vi_infer::Result<()>,
    mut guide: impl FnMut(&mut Ctx) -> vi_infer::Result<()>,
) -> [InferError; 2] {
    let (dev, dt) = (&Device::Cpu, DType::F64);
    [
        elbo_error(&TraceElbo::new(), dev, dt, &mut model, &mut guide),
        elbo_error(&TraceMeanFieldElbo::new(), dev, dt, &mut model, &mut guide),
    ]
}

// 1. ---------------------------------------------------------------------------------------

fn scale_model_and_guide() -> (BoxedProgram<'static>, BoxedProgram<'static>) {
    let model = Box::new(|ctx: &mut Ctx| -> vi_infer::Result<()> {
        let z = ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
        ctx.observe("x", Normal::new(&z, &s(1.0))?, &s(0.7))?;
        Ok(())
    });
    let guide = Box::new(|ctx: &mut Ctx| -> vi_infer::Result<()> {
        let loc = ctx.param("loc", &s(0.0), Constraint::Real)?;
        let scale = ctx.param("scale", &s(1.0), Constraint::Positive)?;
        ctx.sample("z", Normal::new(&loc, &scale)?)?;
        Ok(())
    });
    (model, guide)
}

#[test]
fn get_after_load_is_the_constrained_value() -> Res {
    let (model, guide) = scale_model_and_guide();
    let mut svi = Svi::new(model, guide, adam(0.01), TraceMeanFieldElbo::new()).seed(3);
    for _ in 0..50 {
        svi.step()?;
    }
    let trained = svi.store().get("scale")?.unwrap().to_scalar::<f64>()?;
    let raw = svi
        .store()
        .unconstrained("scale")
        .unwrap()
        .as_tensor()
        .to_scalar::<f64>()?;
    assert!((raw - trained.ln()).abs() < 1e-12 && (trained - raw).abs() > 0.1);
    let dir = std::env::temp_dir();
    let (a, b) = (
        dir.join("vi_reliability_svi.safetensors"),
        dir.join("vi_reliability_store.safetensors"),
    );
    svi.save(&a)?;
    svi.store().save(&b)?;

    // A fresh Svi that has never run the guide: `get` is the constrained value at once.
    let (model, guide) = scale_model_and_guide();
    let mut fresh = Svi::new(model, guide, adam(0.01), TraceMeanFieldElbo::new());
    fresh.load(&a)?;
    assert_eq!(
        fresh.store().get("scale")?.unwrap().to_scalar::<f64>()?,
        trained
    );
    let mut store = ParamStore::new(&Device::Cpu, DType::F64);
    store.load(&b)?;
    assert_eq!(store.get("scale")?.unwrap().to_scalar::<f64>()?, trained);
    assert_eq!(
        store.get("loc")?.unwrap().to_scalar::<f64>()?,
        svi.store().get("loc")?.unwrap().to_scalar::<f64>()?
    );

    // Bare values (no constraint): a typed error, never the raw storage.
    let mut bare = ParamStore::new(&Device::Cpu, DType::F64);
    bare.load_tensors(&svi.store().named_tensors())?;
    let e = bare.get("scale").unwrap_err();
    assert!(
        matches!(&e, InferError::Param { name, .. } if name == "scale"),
        "{e}"
    );
    assert_mentions(&e, &["without its constraint"]);
    // A constraint in the file that disagrees with the program's is an error too.
    let mut other = ParamStore::new(&Device::Cpu, DType::F64);
    other.load(&b)?;
    let e = other
        .param("scale", || Ok(s(1.0)), &Constraint::UnitInterval)
        .unwrap_err();
    assert_mentions(&e, &["scale", "unit_interval", "positive"]);
    Ok(())
}

#[test]
fn constraints_with_bounds_round_trip_through_a_checkpoint() -> Res {
    let dev = Device::Cpu;
    let mut store = ParamStore::new(&dev, DType::F64);
    let low = t(&[1.0, 2.0]);
    let cases = [
        (
            "a",
            Constraint::GreaterThan(vi_dist::Bound::Scalar(-2.5)),
            t(&[0.0, 3.0]),
        ),
        (
            "b",
            Constraint::Interval {
                low: vi_dist::Bound::Scalar(0.0),
                high: vi_dist::Bound::Scalar(1e-3),
            },
            t(&[5e-4, 1e-4]),
        ),
        (
            "c",
            Constraint::GreaterThanEq(vi_dist::Bound::Tensor(low.clone())),
            t(&[1.5, 7.0]),
        ),
        ("d", Constraint::Simplex, t(&[0.2, 0.3, 0.5])),
    ];
    for (name, c, init) in &cases {
        store.param(name, || Ok(init.clone()), c)?;
    }
    let path = std::env::temp_dir().join("vi_reliability_bounds.safetensors");
    store.save(&path)?;
    let mut back = ParamStore::new(&dev, DType::F64);
    back.load(&path)?;
    for (name, _, init) in &cases {
        let got = vi_test::to_vec(&back.get(name)?.unwrap())?;
        let want = vi_test::to_vec(init)?;
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() < 1e-12 * w.abs().max(1.0),
                "{name}: {got:?} vs {want:?}"
            );
        }
    }
    // The program names the same constraints: accepted (a tensor bound compares by value).
    for (name, c, init) in &cases {
        back.param(name, || Ok(init.clone()), c)?;
    }
    Ok(())
}

// 2. ---------------------------------------------------------------------------------------

#[test]
fn observed_value_with_a_batch_dim_outside_the_plates() {
    // A [5, 1] value inside plate("data", 5) broadcast to a [5, 5] log-likelihood.
    let x = Tensor::new(&[[0.1f64], [0.2], [0.3], [0.4], [0.5]], &Device::Cpu).unwrap();
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("data", 5, |ctx| {
            ctx.observe("x", Normal::new(&s(0.0), &s(1.0))?, &x)
        })?;
        Ok(())
    };
    for e in both_elbos_fail(model, empty) {
        assert!(
            matches!(&e, InferError::SiteShape { site, shape, dim: -2, size: 5, plate: None, .. } if site == "x" && **shape == [5, 5]),
            "{e:?}"
        );
        assert_mentions(
            &e,
            &["site `x`", "[5, 5]", "dim -2", "`data` (dim -1, size 5)"],
        );
    }
    // The right shape gives the right loss: 5 × N(0, 1) log-density terms.
    let flat = x.flatten_all().unwrap();
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("data", 5, |ctx| {
            ctx.observe("x", Normal::new(&s(0.0), &s(1.0))?, &flat)
        })?;
        Ok(())
    };
    let out = elbo_output(&TraceElbo::new(), &Device::Cpu, DType::F64, 0, model, empty).unwrap();
    let want: f64 = [0.1f64, 0.2, 0.3, 0.4, 0.5]
        .iter()
        .map(|v| 0.5 * v * v + 0.5 * (2.0 * std::f64::consts::PI).ln())
        .sum();
    assert!((out.loss.to_scalar::<f64>().unwrap() - want).abs() < 1e-12);
}

#[test]
fn guide_batch_dim_that_no_plate_declares() {
    // MultivariateNormal::from_diag_scale(loc [3], scale [3, 3]) has batch [3]: three KLs
    // summed into one site.
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.sample("z", Normal::new(&t(&[0.0; 3]), &t(&[1.0; 3]))?.to_event(1)?)?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let m = Tensor::ones((3, 3), DType::F64, &Device::Cpu)?;
        ctx.sample("z", MultivariateNormal::from_diag_scale(&t(&[0.0; 3]), &m)?)?;
        Ok(())
    };
    for e in both_elbos_fail(model, guide) {
        assert!(
            matches!(e.root(), InferError::SiteShape { site, .. } | InferError::BatchShape { site, .. } if site == "z"),
            "{e:?}"
        );
    }
    // Model batch [1] against guide batch [5], no plate.
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.sample("z", Normal::new(&t(&[0.0]), &t(&[1.0]))?)?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.sample("z", Normal::new(&t(&[0.0; 5]), &t(&[1.0; 5]))?)?;
        Ok(())
    };
    for e in both_elbos_fail(model, guide) {
        assert!(
            matches!(&e, InferError::SiteShape { site, size: 5, .. } | InferError::BatchShape { site, .. } if site == "z"),
            "{e:?}"
        );
    }
}

/// Pyro's `test_nested_plate_plate_dim_error_1` and `_3` (Bernoulli(p) with p of shape [1]).
#[test]
fn nested_plate_dim_errors() {
    let p = t(&[0.5]);
    let bern = |shape: &[usize]| -> vi_infer::Result<Box<dyn Distribution>> {
        Ok(Bernoulli::from_probs(&p)?.expand(shape)?)
    };
    // _1: x is [5, 1] in plate_outer (size 5, dim -1): [5, 5], dim -2 in no plate.
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate_subsample("plate_outer", 10, 5, |ctx, _| {
            ctx.sample_boxed("x", bern(&[5, 1])?)?;
            ctx.plate_subsample("plate_inner", 11, 6, |ctx, _| {
                ctx.sample_boxed("y", bern(&[6, 1])?)?;
                ctx.sample_boxed("z", bern(&[6, 5])?)
            })
        })?;
        Ok(())
    };
    let e = both_elbos_fail(model, model);
    for e in &e {
        assert!(
            matches!(e, InferError::SiteShape { site, dim: -2, .. } if site == "x"),
            "{e:?}"
        );
    }
    // _3: in both plates, y is [5, 1]: dim -2 (plate_inner, size 6) has 5.
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate_subsample("plate_outer", 10, 5, |ctx, _| {
            ctx.plate_subsample("plate_inner", 11, 6, |ctx, _| {
                ctx.sample_boxed("x", bern(&[6, 1])?)?;
                ctx.sample_boxed("y", bern(&[5, 1])?)?;
                ctx.sample_boxed("z", bern(&[5, 6])?)
            })
        })?;
        Ok(())
    };
    for e in both_elbos_fail(model, model) {
        assert!(
            matches!(&e, InferError::PlateSize { site, plate, .. } if site == "y" && plate == "plate_inner"),
            "{e:?}"
        );
    }
    // The valid version (test_nested_plate_plate_ok) passes.
    let ok = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate_subsample("plate_outer", 10, 5, |ctx, _| {
            ctx.sample_boxed("x", bern(&[5])?)?;
            ctx.plate_subsample("plate_inner", 11, 6, |ctx, _| {
                ctx.sample_boxed("y", bern(&[6, 5])?)
            })
        })?;
        Ok(())
    };
    elbo_output(&TraceElbo::new(), &Device::Cpu, DType::F64, 0, ok, ok).unwrap();
}

// 3. ---------------------------------------------------------------------------------------

#[test]
fn model_and_guide_batch_shapes_are_compared() {
    // A scalar prior scored on three guide draws.
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("p", 3, |ctx| {
            ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)
        })?;
        Ok(())
    };
    for e in both_elbos_fail(model, guide) {
        assert!(
            matches!(&e, InferError::BatchShape { site, dim: -1, .. } if site == "z"),
            "{e:?}"
        );
        assert_mentions(&e, &["site `z`", "[]", "[3]"]);
    }
    // Pyro's test_model_guide_shape_mismatch_error: [1, 2] against [2, 1], both to_event(2).
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let loc = Tensor::zeros((1, 2), DType::F64, &Device::Cpu)?;
        ctx.sample("x", Normal::new(&loc, &loc.ones_like()?)?.to_event(2)?)?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let loc = Tensor::zeros((2, 1), DType::F64, &Device::Cpu)?;
        ctx.sample("x", Normal::new(&loc, &loc.ones_like()?)?.to_event(2)?)?;
        Ok(())
    };
    for e in both_elbos_fail(model, guide) {
        assert!(
            matches!(&e, InferError::EventShape { site, .. } if site == "x"),
            "{e:?}"
        );
    }
}

/// Pyro's `test_irange_in_guide_not_model_error` (with a subsampled plate).
#[test]
fn plate_in_guide_but_not_model() {
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.sample("x", Bernoulli::from_probs(&s(0.5))?)?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate_subsample("irange", 10, 5, |_, _| Ok(()))?;
        ctx.sample("x", Bernoulli::from_probs(&s(0.5))?)?;
        Ok(())
    };
    for e in both_elbos_fail(model, guide) {
        assert!(
            matches!(&e, InferError::GuidePlateNotInModel { plate, .. } if plate == "irange"),
            "{e:?}"
        );
    }
}

// 4. ---------------------------------------------------------------------------------------

#[test]
fn masked_missing_data_is_observed_where_kept() -> Res {
    let x = t(&[0.5, f64::NAN, -1.0]);
    let keep = Tensor::new(&[1u8, 0, 1], &Device::Cpu)?;
    let mut model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("data", 3, |ctx| {
            ctx.observe("x", Normal::new(&s(0.0), &s(1.0))?.mask(&keep)?, &x)
        })?;
        Ok(())
    };
    let mut store = ParamStore::new(&Device::Cpu, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let out = TraceMeanFieldElbo::new().compute(&mut model, &mut empty, &mut store, &mut rng)?;
    let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
    let want = 0.5 * 0.25 + 0.5 + 2.0 * half_log_2pi;
    assert!((out.loss.to_scalar::<f64>()? - want).abs() < 1e-12);
    // Unmasked, the NaN is still an error naming the site and its plate.
    let mut bad = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("data", 3, |ctx| {
            ctx.observe("x", Normal::new(&s(0.0), &s(1.0))?, &x)
        })?;
        Ok(())
    };
    let e = TraceElbo::new()
        .compute(&mut bad, &mut empty, &mut store, &mut rng)
        .unwrap_err();
    assert!(
        matches!(&e, InferError::Observed { site, plates, .. } if site == "x" && plates == &["data"]),
        "{e:?}"
    );
    assert_mentions(&e, &["observed site `x` (in plate `data`)"]);
    Ok(())
}

// 6. ---------------------------------------------------------------------------------------

#[test]
fn errors_say_where_they_come_from() {
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
        Ok(())
    };
    // A constructor error in the guide: which program, and the site before it.
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let loc = ctx.param("loc", &s(0.0), Constraint::Real)?;
        ctx.sample("z", Normal::new(&loc, &s(-1.0))?)?;
        Ok(())
    };
    for e in both_elbos_fail(model, guide) {
        assert!(
            matches!(&e, InferError::InProgram { program: "guide", last_site: Some(l), .. } if l == "loc"),
            "{e:?}"
        );
        assert!(matches!(e.root(), InferError::Dist(_)));
        assert_mentions(&e, &["in the guide (after site `loc`)", "scale"]);
    }
    // A support error inside a site names the site and its plates.
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("data", 2, |ctx| {
            ctx.observe("counts", Poisson::new(&s(3.0))?, &t(&[1.0, -1.0]))
        })?;
        Ok(())
    };
    for e in both_elbos_fail(model, empty) {
        assert!(
            matches!(&e, InferError::Observed { site, plates, .. } if site == "counts" && plates == &["data"]),
            "{e:?}"
        );
    }
}

// 7. ---------------------------------------------------------------------------------------

#[test]
fn non_finite_loss_leaves_parameters_untouched() -> Res {
    // Beta observed exactly at 1 with concentration0 > 1: log p = −inf.
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let z = ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
        let a = z.exp()?;
        ctx.observe("y", Beta::new(&a, &s(2.0))?, &s(1.0))?;
        ctx.observe("ok", Normal::new(&z, &s(1.0))?, &s(0.1))?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let loc = ctx.param("loc", &s(0.2), Constraint::Real)?;
        ctx.sample("z", Normal::new(&loc, &s(0.5))?)?;
        Ok(())
    };
    let mut svi = Svi::new(model, guide, adam(0.01), TraceMeanFieldElbo::new());
    use vi_optim::Optimizer;
    let state_before = svi.optimizer().state_dict()?.len();
    let e = svi.step().unwrap_err();
    assert!(
        matches!(&e, InferError::NonFinite { terms, .. } if terms.len() == 1 && terms[0].0 == "y"),
        "{e:?}"
    );
    assert_mentions(
        &e,
        &[
            "the loss is inf",
            "site `y` (log-likelihood: -inf)",
            "unchanged",
        ],
    );
    assert_eq!(svi.store().get("loc")?.unwrap().to_scalar::<f64>()?, 0.2);
    assert_eq!(svi.optimizer().state_dict()?.len(), state_before);

    // NaN data with validation off: the step says which site.
    let x = t(&[0.3, f64::NAN]);
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let z = ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
        ctx.plate("data", 2, |ctx| {
            ctx.observe("x", Normal::new(&z, &s(1.0))?, &x)
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let loc = ctx.param("loc", &s(0.2), Constraint::Real)?;
        ctx.sample("z", Normal::new(&loc, &s(0.5))?)?;
        Ok(())
    };
    let mut svi = Svi::new(model, guide, adam(0.01), TraceMeanFieldElbo::new());
    let e = vi_dist::with_validation(false, || svi.step()).unwrap_err();
    assert!(
        matches!(&e, InferError::NonFinite { terms, .. } if terms.iter().any(|t| t.0 == "x")),
        "{e:?}"
    );
    assert_eq!(svi.store().get("loc")?.unwrap().to_scalar::<f64>()?, 0.2);
    Ok(())
}

#[test]
fn non_finite_gradient_names_the_parameter() -> Res {
    // loc = sqrt(p − 1) at p = 1: the loss is finite, d loc / d p is infinite.
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let p = ctx.param("p", &s(1.0), Constraint::Real)?;
        let loc = (p - 1.0)?.sqrt()?;
        ctx.sample("z", Normal::new(&loc, &s(0.5))?)?;
        Ok(())
    };
    let mut svi = Svi::new(model, guide, adam(0.01), TraceMeanFieldElbo::new());
    let e = svi.step().unwrap_err();
    assert!(
        matches!(&e, InferError::NonFinite { what, .. } if what.contains("param `p`")),
        "{e:?}"
    );
    assert_eq!(svi.store().get("p")?.unwrap().to_scalar::<f64>()?, 1.0);
    Ok(())
}

// 8. ---------------------------------------------------------------------------------------

#[test]
fn bad_checkpoint_files_name_the_file() -> Res {
    let dir = std::env::temp_dir().join(format!("vi_reliability_ckpt_{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let good = dir.join("good.safetensors");
    let (model, guide) = scale_model_and_guide();
    let mut svi = Svi::new(model, guide, adam(0.01), TraceMeanFieldElbo::new());
    svi.step()?;
    svi.save(&good)?;
    let bytes = std::fs::read(&good)?;
    let cases: [(&str, Option<Vec<u8>>); 4] = [
        ("missing.safetensors", None),
        ("empty.safetensors", Some(Vec::new())),
        (
            "truncated.safetensors",
            Some(bytes[..bytes.len() / 2].to_vec()),
        ),
        (
            "garbage.safetensors",
            Some(b"not a checkpoint at all, just text".to_vec()),
        ),
    ];
    for (name, content) in cases {
        let path = dir.join(name);
        if let Some(c) = content {
            std::fs::write(&path, c)?;
        }
        let e = svi.load(&path).unwrap_err();
        assert!(
            matches!(&e, InferError::Io { path: p, .. } if p.ends_with(name)),
            "{name}: {e:?}"
        );
        let e = svi.store_mut().load(&path).unwrap_err();
        assert!(matches!(&e, InferError::Io { .. }), "{name}: {e:?}");
    }
    // A failed load left the store as it was: the next step runs.
    svi.step()?;

    // A checkpoint whose parameter has another shape than the program now uses.
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("p", 2, |ctx| {
            ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let loc = ctx.param("loc", &t(&[0.0, 0.0]), Constraint::Real)?;
        let scale = ctx.param("scale", &t(&[1.0, 1.0]), Constraint::Positive)?;
        ctx.plate("p", 2, |ctx| ctx.sample("z", Normal::new(&loc, &scale)?))?;
        Ok(())
    };
    let mut other = Svi::new(model, guide, adam(0.01), TraceMeanFieldElbo::new());
    other.load(&good)?; // scalar loc and scale
    let e = other.step().unwrap_err();
    assert!(
        matches!(e.root(), InferError::Param { name, .. } if name == "loc"),
        "{e:?}"
    );
    assert_mentions(&e, &["loc", "[]", "[2]"]);

    // Saving goes through a temporary file: a failed rename (the target is a directory)
    // leaves no temporary file behind, and saving over a good file replaces it whole.
    let target = dir.join("a_directory");
    std::fs::create_dir_all(&target)?;
    assert!(matches!(
        svi.save(&target).unwrap_err(),
        InferError::Io { .. }
    ));
    svi.save(&good)?;
    let leftovers: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    svi.load(&good)?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

// 9. ---------------------------------------------------------------------------------------

#[test]
fn returned_traces_hold_what_the_step_used() -> Res {
    let (model, guide) = scale_model_and_guide();
    let mut svi = Svi::new(model, guide, adam(0.01), TraceMeanFieldElbo::new()).seed(1);
    svi.step()?;
    let report = svi.step()?;
    // Recompute the KL from the returned guide trace after the optimizer has stepped.
    let q = report.guide_trace.get("z").unwrap().dist.as_ref().unwrap();
    let p = report.model_trace.get("z").unwrap().dist.as_ref().unwrap();
    let again = vi_kl::kl_divergence(q.as_ref(), p.as_ref())?.to_scalar::<f64>()?;
    assert_eq!(again, report.site("z").unwrap().sum_f64()?);
    let loc_used = report
        .guide_trace
        .get("loc")
        .unwrap()
        .value
        .to_scalar::<f64>()?;
    assert_ne!(
        loc_used,
        svi.store().get("loc")?.unwrap().to_scalar::<f64>()?
    );
    Ok(())
}

// 10. --------------------------------------------------------------------------------------

#[test]
fn infinite_parameter_init_is_an_error() {
    let mut store = ParamStore::new(&Device::Cpu, DType::F64);
    let e = store
        .param("w", || Ok(t(&[0.0, f64::INFINITY])), &Constraint::Real)
        .unwrap_err();
    assert!(
        matches!(&e, InferError::Param { name, .. } if name == "w"),
        "{e:?}"
    );
    assert_mentions(&e, &["inf at [1]"]);
    let e = vi_dist::with_validation(false, || {
        store.param("s", || Ok(t(&[1.0, 0.0])), &Constraint::Positive)
    })
    .unwrap_err();
    assert_mentions(&e, &["param `s`", "-inf at [1]"]);
}

// 11. --------------------------------------------------------------------------------------

#[test]
fn empty_model_and_guide_have_loss_zero() -> Res {
    for elbo in [&TraceElbo::new() as &dyn Elbo, &TraceMeanFieldElbo::new()] {
        let out = elbo_output(elbo, &Device::Cpu, DType::F64, 0, empty, empty)?;
        assert_eq!(out.loss.to_scalar::<f64>()?, 0.0);
        assert!(out.sites.is_empty());
    }
    // Through Svi: a step on nothing is a step.
    let mut svi = Svi::new(empty, empty, adam(0.01), TraceElbo::new());
    assert_eq!(svi.step()?.loss, 0.0);
    // A model whose latent is conditioned away (test_nonempty_model_empty_guide_ok).
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let loc = t(&[0.0, 0.0]);
        ctx.observe("x", Normal::new(&loc, &t(&[1.0, 1.0]))?.to_event(1)?, &loc)?;
        Ok(())
    };
    let mut svi = Svi::new(model, empty, adam(0.01), TraceMeanFieldElbo::new());
    let loss = svi.step()?.loss;
    assert!((loss - (2.0 * std::f64::consts::PI).ln()).abs() < 1e-12);
    Ok(())
}

// 12. --------------------------------------------------------------------------------------

/// Pyro's `test_plate_reuse_ok` with a subsampled plate at a given dim, and a plate with
/// indices of one's own.
#[test]
fn subsampled_plates_are_reentered_with_the_same_indices() -> Res {
    let p = s(0.5);
    let program = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let outer = Plate::new("plate_outer", 10).subsample_size(5).dim(-1);
        let inner = Plate::new("plate_inner", 11).subsample_size(6).dim(-2);
        let a = ctx.plate_with(outer.clone(), |ctx, i| {
            ctx.sample("x", Bernoulli::from_probs(&p)?)?;
            Ok(i.clone())
        })?;
        ctx.plate_with(inner.clone(), |ctx, _| {
            ctx.sample("y", Bernoulli::from_probs(&p)?)
        })?;
        let b = ctx.plate_with(outer, |ctx, i| {
            ctx.plate_with(inner.clone(), |ctx, _| {
                ctx.sample("z", Bernoulli::from_probs(&p)?)
            })?;
            Ok(i.clone())
        })?;
        assert_eq!(a.to_vec1::<u32>()?, b.to_vec1::<u32>()?);
        Ok(())
    };
    let (mut m, mut g) = (program, program);
    let mut store = ParamStore::new(&Device::Cpu, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let out = TraceElbo::new().compute(&mut m, &mut g, &mut store, &mut rng)?;
    assert_eq!(out.model_trace.get("z").unwrap().value.dims(), &[6, 5]);
    assert_eq!(out.model_trace.get("y").unwrap().value.dims(), &[6, 1]);
    // The model replayed the guide's indices.
    assert_eq!(
        out.model_trace
            .get("plate_outer")
            .unwrap()
            .value
            .to_vec1::<u32>()?,
        out.guide_trace
            .get("plate_outer")
            .unwrap()
            .value
            .to_vec1::<u32>()?
    );
    // Another size under the same name is an error.
    let mut twice = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate_subsample("d", 10, 5, |_, _| Ok(()))?;
        ctx.plate_subsample("d", 10, 4, |_, _| Ok(()))
    };
    let e = TraceElbo::new()
        .compute(&mut twice, &mut empty, &mut store, &mut rng)
        .unwrap_err();
    assert!(
        matches!(&e, InferError::Plate { plate, .. } if plate == "d"),
        "{e:?}"
    );

    // Indices of one's own: recorded, scaled, checked.
    let idx = Tensor::new(&[9u32, 0, 4], &Device::Cpu)?;
    let data = Tensor::arange(0.0f64, 10.0, &Device::Cpu)?;
    let mut own = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate_with(Plate::new("data", 10).subsample(&idx), |ctx, i| {
            ctx.observe(
                "x",
                Normal::new(&s(0.0), &s(1.0))?,
                &data.index_select(i, 0)?,
            )
        })?;
        Ok(())
    };
    let out = TraceElbo::new().compute(&mut own, &mut empty, &mut store, &mut rng)?;
    let x = out.model_trace.get("x").unwrap();
    assert_eq!(x.value.to_vec1::<f64>()?, [9.0, 0.0, 4.0]);
    assert!((x.scale - 10.0 / 3.0).abs() < 1e-15);
    let bad = Tensor::new(&[3u32, 10], &Device::Cpu)?;
    let mut out_of_range = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate_with(Plate::new("data", 10).subsample(&bad), |_, _| Ok(()))
    };
    let e = TraceElbo::new()
        .compute(&mut out_of_range, &mut empty, &mut store, &mut rng)
        .unwrap_err();
    assert_mentions(&e, &["plate `data`", "10", "outside 0..10"]);
    Ok(())
}

// 13. --------------------------------------------------------------------------------------

#[test]
fn factor_adds_its_log_weight() -> Res {
    let w = t(&[-0.5, 1.25]);
    let mut model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("data", 2, |ctx| ctx.factor("f", &w))?;
        Ok(())
    };
    let mut store = ParamStore::new(&Device::Cpu, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for elbo in [&TraceElbo::new() as &dyn Elbo, &TraceMeanFieldElbo::new()] {
        let out = elbo.compute(&mut model, &mut empty, &mut store, &mut rng)?;
        assert_eq!(out.loss.to_scalar::<f64>()?, -0.75);
        assert_eq!(out.sites[0].kind, TermKind::LogLikelihood);
    }
    // A factor outside the plate its weight is batched over is a shape error.
    let mut loose = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.factor("f", &w)?;
        Ok(())
    };
    let e = TraceElbo::new()
        .compute(&mut loose, &mut empty, &mut store, &mut rng)
        .unwrap_err();
    assert!(
        matches!(&e, InferError::SiteShape { site, .. } if site == "f"),
        "{e:?}"
    );
    Ok(())
}

#[test]
fn tensor_scale_weights_each_element() -> Res {
    let w = t(&[1.0, 0.5, 2.0]);
    let x = t(&[0.1, 0.2, 0.3]);
    let mut model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("data", 3, |ctx| {
            ctx.scale_by(&w, |ctx| {
                ctx.observe("x", Normal::new(&s(0.0), &s(1.0))?, &x)
            })
        })?;
        Ok(())
    };
    let mut store = ParamStore::new(&Device::Cpu, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let out = TraceElbo::new().compute(&mut model, &mut empty, &mut store, &mut rng)?;
    let lp = |v: f64| normal_lp(v, 0.0, 1.0);
    let want = -(lp(0.1) + 0.5 * lp(0.2) + 2.0 * lp(0.3));
    assert!((out.loss.to_scalar::<f64>()? - want).abs() < 1e-12);
    // A scale that would widen the site is an error; a non-positive one too.
    let wide = Tensor::ones((2, 3), DType::F64, &Device::Cpu)?;
    let mut widened = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("data", 3, |ctx| {
            ctx.scale_by(&wide, |ctx| {
                ctx.observe("x", Normal::new(&s(0.0), &s(1.0))?, &x)
            })
        })?;
        Ok(())
    };
    let e = TraceElbo::new()
        .compute(&mut widened, &mut empty, &mut store, &mut rng)
        .unwrap_err();
    assert!(
        matches!(&e, InferError::SiteShape { site, .. } if site == "x"),
        "{e:?}"
    );
    let mut negative =
        |ctx: &mut Ctx| -> vi_infer::Result<()> { ctx.scale_by(&t(&[-1.0]), |_| Ok(())) };
    assert!(
        TraceElbo::new()
            .compute(&mut negative, &mut empty, &mut store, &mut rng)
            .is_err()
    );
    Ok(())
}

#[test]
fn observe_with_a_mask_imputes_the_missing_entries() -> Res {
    let x = t(&[0.5, f64::NAN, -1.0]);
    let seen = Tensor::new(&[1u8, 0, 1], &Device::Cpu)?;
    let mut model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("data", 3, |ctx| {
            ctx.observe_masked("x", Normal::new(&s(0.0), &s(1.0))?, &x, &seen)
        })?;
        Ok(())
    };
    let mut guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let loc = ctx.param("loc", &t(&[0.0, 0.0, 0.0]), Constraint::Real)?;
        ctx.plate("data", 3, |ctx| {
            ctx.sample(
                "x_unobserved",
                Normal::new(&loc, &s(1.0))?.mask(&seen.eq(0u8)?)?,
            )
        })?;
        Ok(())
    };
    let mut store = ParamStore::new(&Device::Cpu, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let out = TraceMeanFieldElbo::new().compute(&mut model, &mut guide, &mut store, &mut rng)?;
    // The observed part: two N(0, 1) terms; the latent part: KL(N(0,1) ‖ N(0,1)) = 0.
    let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
    let want = 0.5 * 0.25 + 0.5 + 2.0 * half_log_2pi;
    assert!((out.loss.to_scalar::<f64>()? - want).abs() < 1e-12);
    let combined = out.model_trace.get("x").unwrap().value.to_vec1::<f64>()?;
    let drawn = out
        .guide_trace
        .get("x_unobserved")
        .unwrap()
        .value
        .to_vec1::<f64>()?;
    assert_eq!(combined, [0.5, drawn[1], -1.0]);
    // A mask over the event dims is an error that says so.
    let y = Tensor::zeros((3, 2), DType::F64, &Device::Cpu)?;
    let per_element = Tensor::ones((3, 2), DType::U8, &Device::Cpu)?;
    let mut bad = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let d = Normal::new(&t(&[0.0, 0.0]), &t(&[1.0, 1.0]))?.to_event(1)?;
        ctx.plate("data", 3, |ctx| {
            ctx.observe_masked("y", d, &y, &per_element)
        })?;
        Ok(())
    };
    let e = TraceElbo::new()
        .compute(&mut bad, &mut empty, &mut store, &mut rng)
        .unwrap_err();
    assert_mentions(
        &e,
        &["site `y`", "obs_mask of shape [3, 2]", "event shape [2]"],
    );
    Ok(())
}

#[test]
fn without_rsample_takes_the_score_function_path() -> Res {
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let loc = ctx.param("loc", &s(0.3), Constraint::Real)?;
        ctx.sample("z", Normal::new(&loc, &s(1.0))?.without_rsample())?;
        Ok(())
    };
    let (mut m, mut g) = (model, guide);
    let mut store = ParamStore::new(&Device::Cpu, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let out = TraceElbo::new().compute(&mut m, &mut g, &mut store, &mut rng)?;
    // The surrogate adds log q(z) · (log p − log q) at the draw: it differs from the loss.
    let z = out.guide_trace.get("z").unwrap().value.to_scalar::<f64>()?;
    assert!(!out.guide_trace.get("z").unwrap().value.track_op());
    let lq = -0.5 * (z - 0.3) * (z - 0.3) - 0.5 * (2.0 * std::f64::consts::PI).ln();
    let lp = -0.5 * z * z - 0.5 * (2.0 * std::f64::consts::PI).ln();
    let surrogate = out.surrogate.to_scalar::<f64>()?;
    assert!(
        (surrogate - (-(lp - lq) - lq * (lp - lq))).abs() < 1e-12,
        "{surrogate}"
    );
    let e = TraceMeanFieldElbo::new()
        .compute(&mut m, &mut g, &mut store, &mut rng)
        .unwrap_err();
    assert!(
        matches!(&e, InferError::NotReparameterized { site, .. } if site == "z"),
        "{e:?}"
    );
    Ok(())
}

// 14. --------------------------------------------------------------------------------------

#[test]
fn guide_sites_out_of_model_order_take_the_monte_carlo_term() -> Res {
    // The guide draws y, then x given y; the model draws x, then y. x's analytic KL would be
    // computed at y's draw as if x came first: x keeps its closed form (it comes first in the
    // model), y takes log q − log p.
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.sample("x", Normal::new(&s(0.0), &s(1.0))?)?;
        ctx.sample("y", Normal::new(&s(0.0), &s(1.0))?)?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let y = ctx.sample("y", Normal::new(&s(0.5), &s(1.0))?)?;
        ctx.sample("x", Normal::new(&y, &s(1.0))?)?;
        Ok(())
    };
    let (mut m, mut g) = (model, guide);
    let mut store = ParamStore::new(&Device::Cpu, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let out = TraceMeanFieldElbo::new().compute(&mut m, &mut g, &mut store, &mut rng)?;
    let kinds: Vec<(&str, TermKind)> = out
        .sites
        .iter()
        .map(|t| (t.name.as_str(), t.kind))
        .collect();
    assert_eq!(
        kinds,
        [("x", TermKind::KlAnalytic), ("y", TermKind::KlMonteCarlo)]
    );
    // The same order on both sides keeps both closed forms.
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let x = ctx.sample("x", Normal::new(&s(0.5), &s(1.0))?)?;
        ctx.sample("y", Normal::new(&x, &s(1.0))?)?;
        Ok(())
    };
    let mut g = guide;
    let out = TraceMeanFieldElbo::new().compute(&mut m, &mut g, &mut store, &mut rng)?;
    assert!(out.sites.iter().all(|t| t.kind == TermKind::KlAnalytic));
    Ok(())
}

/// Observed indices and counts as integer tensors (as Pyro's models pass them: `obs=
/// torch.tensor([0, 2])`) pass the default validation and give the loss of the same values
/// in floats; an index outside the support is still a support error naming the site.
#[test]
fn integer_observations_of_discrete_sites() -> Res {
    let logits = t(&[0.3, -1.0, 0.5]);
    let run = |obs: Tensor| -> vi_infer::Result<f64> {
        let logits = logits.clone();
        let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
            ctx.plate("data", 4, |ctx| {
                ctx.observe("y", vi_dist::Categorical::from_logits(&logits)?, &obs)
            })?;
            let rate = t(&[2.0]);
            ctx.observe(
                "n",
                Poisson::new(&rate)?,
                &Tensor::new(&[3i64], &Device::Cpu)?,
            )?;
            Ok(())
        };
        let out = elbo_output(&TraceElbo::new(), &Device::Cpu, DType::F64, 0, model, empty)?;
        Ok(out.loss.to_scalar::<f64>()?)
    };
    let float = run(t(&[0.0, 2.0, 1.0, 2.0]))?;
    for ints in [
        Tensor::new(&[0u32, 2, 1, 2], &Device::Cpu)?,
        Tensor::new(&[0i64, 2, 1, 2], &Device::Cpu)?,
        Tensor::new(&[0u8, 2, 1, 2], &Device::Cpu)?,
    ] {
        let loss = run(ints)?;
        assert!((loss - float).abs() < 1e-12, "{loss} against {float}");
    }
    // By hand: −Σ log softmax(logits)[y] − log Poisson(3; 2).
    let lse = [0.3f64, -1.0, 0.5]
        .iter()
        .map(|x| x.exp())
        .sum::<f64>()
        .ln();
    let lp_y: f64 = [0.3, 0.5, -1.0, 0.5].iter().map(|l| l - lse).sum();
    let lp_n = 3.0 * 2f64.ln() - 2.0 - 6f64.ln();
    assert!((float + lp_y + lp_n).abs() < 1e-12, "{float}");
    let e = run(Tensor::new(&[0u32, 3, 1, 2], &Device::Cpu)?).unwrap_err();
    assert_mentions(&e, &["y", "Categorical"]);
    Ok(())
}
