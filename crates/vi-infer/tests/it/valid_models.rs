//! Pyro's valid/invalid model–guide pairs (`tests/infer/test_valid_models.py`, pyro-ppl/pyro
//! at ff6ae1c, 2024-10), ported: for each test that applies to vi, the same model and guide
//! structure and data, run for one SVI step (Pyro's `assert_ok`: Adam at lr 1e-6, one step,
//! no error) or expected to fail with the matching typed error (Pyro's `assert_error`, whose
//! `match=` text maps to an `InferError` variant). Pyro's `Trace_ELBO` is `TraceElbo`; where
//! Pyro also runs `TraceMeanField_ELBO`, or where the case is a structural check that both
//! ELBOs share, both run. Pyro's `TraceGraph_ELBO` rows are `TraceGraphElbo`: every case run
//! with a default `TraceElbo` runs under it too, and must give the same loss (ok cases) or
//! the same error (error cases). Pyro's `TraceEnum_ELBO` / `TraceTMC_ELBO` /
//! `EnergyDistance` rows of the same tests are not repeated (vi has no such objectives). Pyro's `expand_by(sizes)` prepends `sizes` to the batch shape; here
//! [`expand_by`] does the same with `expand`. Where an `ok` case has an exact loss, the
//! loss is checked too. Also here: `SafetyTests` of `tests/infer/test_inference.py`.
//!
//! Where vi deliberately differs, the test asserts vi's behaviour and says so:
//! - a latent site the guide lacks, or a guide site the model lacks, is an error
//!   (`LatentNotInGuide`, `GuideSiteNotInModel`) where Pyro warns (its test suite turns
//!   warnings into errors, so Pyro's `assert_error` cases agree);
//! - shape and structure checks run with validation off too (docs/guide.md: "shapes are
//!   always checked"), where Pyro skips `check_model_guide_match` without validation;
//! - a mean-field guide that draws a site before a site it depends on in the model gets a
//!   Monte Carlo term for it instead of Pyro's warning (`mean_field_out_of_order`);
//! - a `factor` in the guide is an error: vi has no `has_rsample` option on `factor`
//!   (`factor_in_guide_error`, where Pyro's `test_factor_in_guide_ok` passes);
//! - a log-prob dim with no plate of its own is an error even right of a plate's dim
//!   (`plate_shape_broadcasting`), where Pyro's `check_site_shape` leaves it free.
//!
//! Ported, with the reasons for partial ports:
//! - `test_iplate_*`, `test_plate_iplate_ok`, `test_iplate_plate_ok`,
//!   `test_three_indep_plate_at_different_depths_ok`: Pyro's sequential plate (`for i in
//!   pyro.plate(..)`) is a Rust `for` loop with distinct site names; their subsampled
//!   variants are not portable (a sequential plate's own random subsample, shared between
//!   guide and model, has no vi equivalent), so only the full variants run, and a sequential
//!   plate inside or around a vectorised plate runs over all its indices;
//! - `test_iplate_in_model_not_guide_ok` / `test_iplate_in_guide_not_model_error`: an empty
//!   `for` loop leaves no trace in vi, so the statement ported is an empty vectorised plate
//!   (Pyro records any sized plate, vectorised or not, as a `_Subsample` site);
//! - `test_plate_subsample_param_ok`, `test_nested_plate_plate_subsample_param_ok`: vi's
//!   `param` has no `event_dim` and does not subsample itself; the guide indexes the full
//!   parameter with the plate's indices (`index_select`), the equivalent user code;
//! - `test_plate_stack_*`: `pyro.plate_stack` is nested `plate_dim`s (rightmost size at dim
//!   −1), as Pyro builds it;
//! - `test_three_indep_plate_at_different_depths_ok`, `test_plate_wrong_size_error`: Pyro
//!   runs them under `TraceGraph_ELBO` only; the structure is ELBO-independent and runs
//!   under `TraceElbo`;
//! - `test_no_plate_enum_discrete_batch_error`: Pyro runs it under `TraceEnum_ELBO`; the
//!   error (a batch dim outside any plate) is `check_site_shape`'s, which `Trace_ELBO`
//!   shares, so it runs under `TraceElbo` without enumeration;
//! - `test_reparam_mask_*` / `test_reparam_scale_*` / `test_obs_mask_*`: a Python `bool`
//!   mask and a 0-d `torch.tensor(bool)` are the same 0-d `u8` tensor here; random
//!   Dirichlet data (`torch.randn(2, 3).exp()`, normalised) is fixed data here.
//!
//! Not applicable (no vi counterpart):
//! - enumeration (`TraceEnum_ELBO`, `config_enumerate`, `infer={"enumerate": ..}`,
//!   `pyro.markov`): `test_enum_discrete_misuse_warning`, `test_enum_discrete_single_ok`,
//!   `test_enum_discrete_missing_config_warning`, `test_enum_discrete_single_single_ok`,
//!   `test_enum_discrete_iplate_single_ok`, `test_plate_enum_discrete_batch_ok`,
//!   `test_plate_enum_discrete_no_discrete_vars_warning`, `test_enum_discrete_parallel_ok`,
//!   `test_enum_discrete_parallel_nested_ok`, `test_enumerate_parallel_plate_ok`,
//!   `test_enum_discrete_plate_dependency_warning`,
//!   `test_enum_discrete_iplate_plate_dependency_ok`,
//!   `test_enum_discrete_iplates_plate_dependency_warning`,
//!   `test_enum_discrete_plates_dependency_ok`, `test_enum_discrete_non_enumerated_plate_ok`,
//!   `test_enum_discrete_plate_shape_broadcasting_ok`, `test_enum_in_model_ok`,
//!   `test_enum_in_model_plate_ok`, `test_enum_sequential_in_model_error`,
//!   `test_enum_in_model_plate_reuse_ok`, `test_enum_in_model_multi_scale_error`,
//!   `test_enum_in_model_diamond_error`, `test_enum_discrete_vectorized_num_particles`,
//!   `test_enum_recycling_chain`, `test_enum_recycling_dbn`, `test_enum_recycling_nested`,
//!   `test_enum_recycling_grid`, `test_enum_recycling_reentrant`,
//!   `test_enum_recycling_reentrant_history`, `test_enum_recycling_mutual_recursion`,
//!   `test_enum_recycling_interleave`, `test_enum_recycling_plate`, `test_markov_history`;
//! - `pyro.param(.., event_dim=..)` shape checks: `test_plate_param_size_mismatch_error`;
//! - `pyro.subsample`: `test_plate_subsample_primitive_ok` (the same indexing as
//!   `plate_subsample_param_ok` here);
//! - a plate without a size: `test_plate_no_size_ok`;
//! - `block_plate`: `test_block_plate_name_ok`, `test_block_plate_dim_ok`,
//!   `test_block_plate_missing_error`;
//! - `TraceTailAdaptive_ELBO`: `test_tail_adaptive_ok`, `test_tail_adaptive_error`,
//!   `test_tail_adaptive_warning`;
//! - `EnergyDistance` (and the Stable distribution): `test_no_log_prob_ok`;
//! - `poutine.reparam` / `LatentStableReparam`: `test_reparam_stable`;
//! - `poutine.collapse` (funsor): `test_collapse_normal_normal`,
//!   `test_collapse_normal_normal_plate`, `test_collapse_normal_plate_normal`,
//!   `test_collapse_beta_bernoulli`, `test_collapse_beta_binomial`,
//!   `test_collapse_beta_binomial_plate`, `test_collapse_barrier`;
//! - `OrderedLogistic` (no such distribution): `test_ordered_logistic_plate`.

use candle_core::{DType, Device, Tensor};
use vi_dist::{
    Bernoulli, Beta, Constraint, Dirichlet, Distribution, LogNormal, MultivariateNormal, Normal,
};
use vi_infer::{
    Ctx, Elbo, InferError, Plate, StepReport, Svi, TermKind, TraceElbo, TraceGraphElbo,
    TraceMeanFieldElbo,
};

use crate::common::{Res, adam, empty, host, normal_lp, s, step_error, t};

type R = vi_infer::Result<()>;

fn u8s(v: &[u8]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}

/// Pyro's `d.expand_by(sizes)`: `sizes` prepended to the batch shape.
fn expand_by(d: &dyn Distribution, sizes: &[usize]) -> vi_infer::Result<Box<dyn Distribution>> {
    let shape: Vec<usize> = sizes.iter().chain(d.batch_shape()).copied().collect();
    Ok(d.expand(&shape)?)
}

/// `Bernoulli(p).expand_by(sizes)`.
fn bern_by(p: &Tensor, sizes: &[usize]) -> vi_infer::Result<Box<dyn Distribution>> {
    expand_by(&Bernoulli::from_probs(p)?, sizes)
}

/// A plate of `size`, subsampled to `sub` when given.
fn plate(name: &str, size: usize, sub: Option<usize>) -> Plate<'_> {
    match sub {
        Some(n) => Plate::new(name, size).subsample_size(n),
        None => Plate::new(name, size),
    }
}

/// The guide's `p = pyro.param("p", torch.tensor(0.5))`.
fn param_p(ctx: &mut Ctx) -> vi_infer::Result<Tensor> {
    ctx.param("p", &s(0.5), Constraint::Real)
}

/// Pyro's `assert_ok`: one SVI step (Adam at lr 1e-6) succeeds with a finite loss. Given a
/// `TraceElbo` with its default settings, the same step under `TraceGraphElbo` (Pyro's
/// `TraceGraph_ELBO` row) succeeds too, with the same loss from the same draws.
fn assert_ok<TM, TG, E: Elbo + std::fmt::Debug>(
    model: impl FnMut(&mut Ctx<'_>) -> vi_infer::Result<TM> + Clone,
    guide: impl FnMut(&mut Ctx<'_>) -> vi_infer::Result<TG> + Clone,
    elbo: E,
) -> StepReport {
    let graph = is_default_trace_elbo(&elbo);
    let mut svi = Svi::new(model.clone(), guide.clone(), adam(1e-6), elbo).seed(0);
    let r = match svi.step() {
        Ok(r) => {
            assert!(r.loss.is_finite(), "loss {}", r.loss);
            r
        }
        Err(e) => panic!("the step should succeed, got: {e}"),
    };
    if graph {
        let mut svi = Svi::new(model, guide, adam(1e-6), TraceGraphElbo::new()).seed(0);
        match svi.step() {
            Ok(g) => assert_eq!(g.loss, r.loss, "TraceGraphElbo's loss"),
            Err(e) => panic!("the TraceGraphElbo step should succeed, got: {e}"),
        }
    }
    r
}

/// Whether `elbo` is `TraceElbo::new()` (by its settings, as `Debug` shows them).
fn is_default_trace_elbo(elbo: &impl std::fmt::Debug) -> bool {
    format!("{elbo:?}") == format!("{:?}", TraceElbo::new())
}

/// Pyro's `assert_error`: the SVI step fails; returns the error. Given a default `TraceElbo`,
/// `TraceGraphElbo` fails with the same message.
fn assert_error<TM, TG, E: Elbo + std::fmt::Debug>(
    model: impl FnMut(&mut Ctx<'_>) -> vi_infer::Result<TM> + Clone,
    guide: impl FnMut(&mut Ctx<'_>) -> vi_infer::Result<TG> + Clone,
    elbo: E,
) -> InferError {
    let graph = is_default_trace_elbo(&elbo);
    let e = step_error(model.clone(), guide.clone(), adam(1e-6), elbo);
    if graph {
        let g = step_error(model, guide, adam(1e-6), TraceGraphElbo::new());
        assert_eq!(g.to_string(), e.to_string(), "TraceGraphElbo's error");
    }
    e
}

/// `assert_ok` with `TraceElbo` (and so `TraceGraphElbo`) and with `TraceMeanFieldElbo`.
fn ok_both<TM, TG>(
    model: &impl Fn(&mut Ctx<'_>) -> vi_infer::Result<TM>,
    guide: &impl Fn(&mut Ctx<'_>) -> vi_infer::Result<TG>,
) -> [StepReport; 2] {
    [
        assert_ok(model, guide, TraceElbo::new()),
        assert_ok(model, guide, TraceMeanFieldElbo::new()),
    ]
}

/// `assert_error` with `TraceElbo` (and so `TraceGraphElbo`) and with `TraceMeanFieldElbo`.
fn error_both<TM, TG>(
    model: &impl Fn(&mut Ctx<'_>) -> vi_infer::Result<TM>,
    guide: &impl Fn(&mut Ctx<'_>) -> vi_infer::Result<TG>,
) -> [InferError; 2] {
    [
        assert_error(model, guide, TraceElbo::new()),
        assert_error(model, guide, TraceMeanFieldElbo::new()),
    ]
}

fn assert_close(got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol * want.abs().max(1.0),
        "got {got}, expected {want}"
    );
}

// Empty programs, name clashes, event shapes ------------------------------------------------

#[test]
fn nonempty_model_empty_guide_ok() {
    let (loc, scale) = (t(&[0.0, 0.0]), t(&[1.0, 1.0]));
    let model = |ctx: &mut Ctx| -> R {
        ctx.observe("x", Normal::new(&loc, &scale)?.to_event(1)?, &loc)?;
        Ok(())
    };
    for r in ok_both(&model, &empty) {
        // −log N(0 | 0, 1) twice.
        assert_close(r.loss, (2.0 * std::f64::consts::PI).ln(), 1e-12);
    }
}

#[test]
fn nonempty_model_empty_guide_error() {
    // Pyro warns ("Found vars in model but not guide"), its suite makes it an error; vi errs.
    let model = |ctx: &mut Ctx| -> R {
        ctx.sample("x", Normal::new(&s(0.0), &s(1.0))?)?;
        Ok(())
    };
    for e in error_both(&model, &empty) {
        assert!(
            matches!(e.root(), InferError::LatentNotInGuide { site } if site == "x"),
            "{e:?}"
        );
    }
}

#[test]
fn empty_model_empty_guide_ok() {
    for r in ok_both(&empty, &empty) {
        assert_eq!(r.loss, 0.0);
    }
}

#[test]
fn variable_clash_in_model_error() {
    let model = |ctx: &mut Ctx| -> R {
        ctx.sample("x", Bernoulli::from_probs(&s(0.5))?)?;
        ctx.sample("x", Bernoulli::from_probs(&s(0.5))?)?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> R {
        let p = param_p(ctx)?;
        ctx.sample("x", Bernoulli::from_probs(&p)?)?;
        Ok(())
    };
    for e in error_both(&model, &guide) {
        assert!(
            matches!(e.root(), InferError::DuplicateSite { site } if site == "x"),
            "{e:?}"
        );
    }
}

#[test]
fn variable_clash_in_guide_error() {
    let model = |ctx: &mut Ctx| -> R {
        ctx.sample("x", Bernoulli::from_probs(&s(0.5))?)?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> R {
        let p = param_p(ctx)?;
        ctx.sample("x", Bernoulli::from_probs(&p)?)?;
        ctx.sample("x", Bernoulli::from_probs(&p)?)?;
        Ok(())
    };
    for e in error_both(&model, &guide) {
        assert!(
            matches!(e.root(), InferError::DuplicateSite { site } if site == "x"),
            "{e:?}"
        );
    }
}

#[test]
fn model_guide_dim_mismatch_error() {
    // Model event shape [2], guide event shape [2, 1].
    let model = |ctx: &mut Ctx| -> R {
        ctx.sample("x", Normal::new(&t(&[0.0; 2]), &t(&[1.0; 2]))?.to_event(1)?)?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> R {
        let zeros = Tensor::zeros((2, 1), DType::F64, &Device::Cpu)?;
        let loc = ctx.param("loc", &zeros, Constraint::Real)?;
        let scale = ctx.param("scale", &zeros.ones_like()?, Constraint::Positive)?;
        ctx.sample("x", Normal::new(&loc, &scale)?.to_event(2)?)?;
        Ok(())
    };
    for e in error_both(&model, &guide) {
        assert!(
            matches!(e.root(), InferError::EventShape { site, .. } if site == "x"),
            "{e:?}"
        );
    }
}

#[test]
fn model_guide_shape_mismatch_error() {
    // Both have two event dims, [1, 2] against [2, 1]: Pyro passes its event_dim check and
    // fails on "Model and guide shapes disagree"; vi compares event shapes exactly, so it is
    // `EventShape` here.
    let model = |ctx: &mut Ctx| -> R {
        let zeros = Tensor::zeros((1, 2), DType::F64, &Device::Cpu)?;
        ctx.sample("x", Normal::new(&zeros, &zeros.ones_like()?)?.to_event(2)?)?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> R {
        let zeros = Tensor::zeros((2, 1), DType::F64, &Device::Cpu)?;
        let loc = ctx.param("loc", &zeros, Constraint::Real)?;
        let scale = ctx.param("scale", &zeros.ones_like()?, Constraint::Positive)?;
        ctx.sample("x", Normal::new(&loc, &scale)?.to_event(2)?)?;
        Ok(())
    };
    for e in error_both(&model, &guide) {
        assert!(
            matches!(e.root(), InferError::EventShape { site, .. } | InferError::BatchShape { site, .. } if site == "x"),
            "{e:?}"
        );
    }
}

// has_rsample ---------------------------------------------------------------------------------

#[test]
fn set_has_rsample_ok() {
    // Sparse gradients: loc = clamp(100 z, 0, 1). Both guides (with and without rsample) are
    // valid; they draw the same z from the same seed, so the losses agree.
    let model = |ctx: &mut Ctx| -> R {
        let z = ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
        let loc = z.affine(100.0, 0.0)?.clamp(0.0, 1.0)?;
        ctx.observe("x", Normal::new(&loc, &s(1.0))?, &s(0.0))?;
        Ok(())
    };
    let mut losses = Vec::new();
    for has_rsample in [false, true] {
        let guide = |ctx: &mut Ctx| -> R {
            let loc = ctx.param("loc", &s(0.0), Constraint::Real)?;
            let q = Normal::new(&loc, &s(1.0))?;
            if has_rsample {
                ctx.sample("z", q)?;
            } else {
                ctx.sample("z", q.without_rsample())?;
            }
            Ok(())
        };
        losses.push(assert_ok(model, guide, TraceElbo::new()).loss);
    }
    assert_eq!(losses[0], losses[1]);
}

#[test]
fn not_has_rsample_ok() {
    // A discontinuous model: p = clamp(round(z), 0.2, 0.8).
    let model = |ctx: &mut Ctx| -> R {
        let z = ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
        let p = z.round()?.clamp(0.2, 0.8)?;
        ctx.observe("x", Bernoulli::from_probs(&p)?, &s(0.0))?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> R {
        let loc = ctx.param("loc", &s(0.0), Constraint::Real)?;
        ctx.sample("z", Normal::new(&loc, &s(1.0))?.without_rsample())?;
        Ok(())
    };
    assert_ok(model, guide, TraceElbo::new());
}

// Sequential plates (a `for` loop) ------------------------------------------------------------

#[test]
fn iplate_ok() {
    // Full variant only: see the module doc.
    let model = |ctx: &mut Ctx| -> R {
        for i in 0..4 {
            ctx.sample(&format!("x_{i}"), Bernoulli::from_probs(&s(0.5))?)?;
        }
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> R {
        let p = param_p(ctx)?;
        for i in 0..4 {
            ctx.sample(&format!("x_{i}"), Bernoulli::from_probs(&p)?)?;
        }
        Ok(())
    };
    assert_ok(model, guide, TraceElbo::new());
}

#[test]
fn iplate_variable_clash_error() {
    let model = |ctx: &mut Ctx| -> R {
        for _ in 0..2 {
            ctx.sample("x", Bernoulli::from_probs(&s(0.5))?)?;
        }
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> R {
        let p = param_p(ctx)?;
        for _ in 0..2 {
            ctx.sample("x", Bernoulli::from_probs(&p)?)?;
        }
        Ok(())
    };
    for e in error_both(&model, &guide) {
        assert!(
            matches!(e.root(), InferError::DuplicateSite { site } if site == "x"),
            "{e:?}"
        );
    }
}

#[test]
fn iplate_iplate_ok() {
    // Pyro: max_plate_nesting 0 and inf (here: given as 0, and left to vi).
    let model = |ctx: &mut Ctx| -> R {
        for i in 0..3 {
            for j in 0..3 {
                ctx.sample(&format!("x_{i}_{j}"), Bernoulli::from_probs(&s(0.5))?)?;
            }
        }
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> R {
        let p = param_p(ctx)?;
        for i in 0..3 {
            for j in 0..3 {
                ctx.sample(&format!("x_{i}_{j}"), Bernoulli::from_probs(&p)?)?;
            }
        }
        Ok(())
    };
    assert_ok(model, guide, TraceElbo::new());
    assert_ok(model, guide, TraceElbo::new().max_plate_nesting(0));
}

#[test]
fn iplate_iplate_swap_ok() {
    // The guide runs the loops the other way round: the site order differs, nothing else.
    let model = |ctx: &mut Ctx| -> R {
        for i in 0..3 {
            for j in 0..3 {
                ctx.sample(&format!("x_{i}_{j}"), Bernoulli::from_probs(&s(0.5))?)?;
            }
        }
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> R {
        let p = param_p(ctx)?;
        for j in 0..3 {
            for i in 0..3 {
                ctx.sample(&format!("x_{i}_{j}"), Bernoulli::from_probs(&p)?)?;
            }
        }
        Ok(())
    };
    assert_ok(model, guide, TraceElbo::new());
    assert_ok(model, guide, TraceElbo::new().max_plate_nesting(0));
}

#[test]
fn iplate_in_model_not_guide_ok() {
    // The model enters a plate (full or subsampled 5 of 10) that holds no site and that the
    // guide never enters.
    for sub in [None, Some(5)] {
        let model = |ctx: &mut Ctx| -> R {
            ctx.plate_with(plate("plate", 10, sub), |_, _| Ok(()))?;
            ctx.sample("x", Bernoulli::from_probs(&s(0.5))?)?;
            Ok(())
        };
        let guide = |ctx: &mut Ctx| -> R {
            let p = param_p(ctx)?;
            ctx.sample("x", Bernoulli::from_probs(&p)?)?;
            Ok(())
        };
        assert_ok(model, guide, TraceElbo::new());
    }
}

fn plate_in_guide_only(sub: Option<usize>) -> (impl Fn(&mut Ctx) -> R, impl Fn(&mut Ctx) -> R) {
    let model = |ctx: &mut Ctx| -> R {
        ctx.sample("x", Bernoulli::from_probs(&s(0.5))?)?;
        Ok(())
    };
    let guide = move |ctx: &mut Ctx| -> R {
        let p = param_p(ctx)?;
        ctx.plate_with(plate("plate", 10, sub), |_, _| Ok(()))?;
        ctx.sample("x", Bernoulli::from_probs(&p)?)?;
        Ok(())
    };
    (model, guide)
}

#[test]
fn iplate_in_guide_not_model_error() {
    // Subsampled 5 of 10: the guide draws indices the model never uses. With validation
    // off Pyro skips the check and passes; vi checks structure always (stricter).
    let (model, guide) = plate_in_guide_only(Some(5));
    for validate in [true, false] {
        let e =
            vi_dist::with_validation(validate, || assert_error(&model, &guide, TraceElbo::new()));
        assert!(
            matches!(e.root(), InferError::GuidePlateNotInModel { plate, .. } if plate == "plate"),
            "{e:?}"
        );
    }
}

#[test]
fn iplate_in_guide_not_model_error_full() {
    let (model, guide) = plate_in_guide_only(None);
    let e = assert_error(&model, &guide, TraceElbo::new());
    assert!(
        matches!(e.root(), InferError::GuidePlateNotInModel { plate, .. } if plate == "plate"),
        "{e:?}"
    );
}

#[test]
fn plate_iplate_ok() {
    // A sequential plate inside a subsampled vectorised plate (3, subsample 2). Pyro's inner
    // sequential plate subsamples too (2 of 3); here it runs over all 3.
    let program = |learn: bool| {
        move |ctx: &mut Ctx| -> R {
            let p = if learn { param_p(ctx)? } else { s(0.5) };
            ctx.plate_with(Plate::new("plate", 3).subsample_size(2), |ctx, ind| {
                for i in 0..3 {
                    ctx.sample_boxed(&format!("x_{i}"), bern_by(&p, &[ind.dims()[0]])?)?;
                }
                Ok(())
            })
        }
    };
    assert_ok(program(false), program(true), TraceElbo::new());
}

#[test]
fn iplate_plate_ok() {
    // The same subsampled plate entered once per iteration of a sequential loop: each entry
    // reuses the indices drawn at the first.
    let program = |learn: bool| {
        move |ctx: &mut Ctx| -> R {
            let p = if learn { param_p(ctx)? } else { s(0.5) };
            let mut seen = Vec::new();
            for i in 0..3 {
                ctx.plate_with(Plate::new("plate", 3).subsample_size(2), |ctx, ind| {
                    seen.push(ind.to_vec1::<u32>()?);
                    ctx.sample_boxed(&format!("x_{i}"), bern_by(&p, &[ind.dims()[0]])?)
                })?;
            }
            assert!(seen.iter().all(|s| s == &seen[0]), "{seen:?}");
            Ok(())
        }
    };
    assert_ok(program(false), program(true), TraceElbo::new());
}

#[test]
fn three_indep_plate_at_different_depths_ok() {
    // x_0, x_1 in a sequential plate; y_0, y_1 in a nested sequential plate and the
    // subsampled plate `plate2`; z in `plate2` (entered three times, same indices).
    let program = |learn: bool| {
        move |ctx: &mut Ctx| -> R {
            let p = if learn { param_p(ctx)? } else { s(0.5) };
            let inner = Plate::new("plate2", 10).subsample_size(5);
            for i in 0..2 {
                ctx.sample(&format!("x_{i}"), Bernoulli::from_probs(&p)?)?;
                if i == 0 {
                    for j in 0..2 {
                        ctx.plate_with(inner.clone(), |ctx, ind| {
                            ctx.sample_boxed(&format!("y_{j}"), bern_by(&p, &[ind.dims()[0]])?)
                        })?;
                    }
                } else {
                    ctx.plate_with(inner.clone(), |ctx, ind| {
                        ctx.sample_boxed("z", bern_by(&p, &[ind.dims()[0]])?)
                    })?;
                }
            }
            Ok(())
        }
    };
    assert_ok(program(false), program(true), TraceElbo::new());
}

// Vectorised plates ---------------------------------------------------------------------------

#[test]
fn plate_ok() {
    for sub in [None, Some(5)] {
        let program = |learn: bool| {
            move |ctx: &mut Ctx| -> R {
                let p = if learn { param_p(ctx)? } else { s(0.5) };
                ctx.plate_with(plate("plate", 10, sub), |ctx, ind| {
                    ctx.sample_boxed("x", bern_by(&p, &[ind.dims()[0]])?)
                })?;
                Ok(())
            }
        };
        let r = assert_ok(program(false), program(true), TraceElbo::new());
        assert_eq!(
            r.guide_trace.get("x").unwrap().value.dims(),
            &[sub.unwrap_or(10)]
        );
    }
}

#[test]
fn plate_subsample_param_ok() {
    // Pyro's `pyro.param(.., event_dim=0)` inside a subsampled plate is subsampled by the
    // plate; in vi the guide indexes the full parameter itself.
    for sub in [None, Some(5)] {
        let model = |ctx: &mut Ctx| -> R {
            ctx.plate_with(plate("plate", 10, sub), |ctx, _| {
                ctx.sample("x", Bernoulli::from_probs(&s(0.5))?)
            })?;
            Ok(())
        };
        let guide = |ctx: &mut Ctx| -> R {
            ctx.plate_with(plate("plate", 10, sub), |ctx, ind| {
                let p0 = ctx.param("p0", &s(0.0), Constraint::Real)?;
                assert_eq!(p0.dims(), &[] as &[usize]);
                let full = ctx.param("p", &(t(&[1.0; 10]) * 0.5)?, Constraint::Real)?;
                let p = full.index_select(ind, 0)?;
                assert_eq!(p.dims(), ind.dims());
                ctx.sample("x", Bernoulli::from_probs(&p)?)
            })?;
            Ok(())
        };
        assert_ok(model, guide, TraceElbo::new());
    }
}

#[test]
fn plate_broadcast_error() {
    // Batch [2] inside a plate of 5 (subsampled from 10).
    let model = |ctx: &mut Ctx| -> R {
        ctx.plate_with(Plate::new("plate", 10).subsample_size(5), |ctx, _| {
            ctx.sample_boxed("x", bern_by(&s(0.5), &[2])?)
        })?;
        Ok(())
    };
    for e in error_both(&model, &model) {
        assert!(
            matches!(e.root(), InferError::PlateSize { site, plate, size: 5, .. } if site == "x" && plate == "plate"),
            "{e:?}"
        );
    }
}

#[test]
fn plate_wrong_size_error() {
    // Batch [6] inside a plate of 5. (Pyro: TraceGraph_ELBO.)
    let program = |learn: bool| {
        move |ctx: &mut Ctx| -> R {
            let p = if learn { param_p(ctx)? } else { s(0.5) };
            ctx.plate_with(Plate::new("plate", 10).subsample_size(5), |ctx, ind| {
                ctx.sample_boxed("x", bern_by(&p, &[1 + ind.dims()[0]])?)
            })?;
            Ok(())
        }
    };
    let e = assert_error(program(false), program(true), TraceElbo::new());
    assert!(
        matches!(e.root(), InferError::PlateSize { site, size: 5, .. } if site == "x"),
        "{e:?}"
    );
}

#[test]
fn no_plate_batch_error() {
    // `test_no_plate_enum_discrete_batch_error` without enumeration: batch [5], no plate.
    let program = |learn: bool| {
        move |ctx: &mut Ctx| -> R {
            let p = if learn { param_p(ctx)? } else { s(0.5) };
            ctx.sample_boxed("x", bern_by(&p, &[5])?)?;
            Ok(())
        }
    };
    let e = assert_error(program(false), program(true), TraceElbo::new());
    assert!(
        matches!(e.root(), InferError::SiteShape { site, dim: -1, size: 5, .. } if site == "x"),
        "{e:?}"
    );
}

/// Pyro's `pyro.plate_stack(prefix, sizes)`: plates `{prefix}_{i}` at dims `i − len`, so
/// the last size is at dim −1.
fn plate_stack<T>(
    ctx: &mut Ctx,
    prefix: &str,
    sizes: &[usize],
    f: &mut dyn FnMut(&mut Ctx) -> vi_infer::Result<T>,
) -> vi_infer::Result<T> {
    fn level<T>(
        ctx: &mut Ctx,
        prefix: &str,
        sizes: &[usize],
        i: usize,
        f: &mut dyn FnMut(&mut Ctx) -> vi_infer::Result<T>,
    ) -> vi_infer::Result<T> {
        if i == sizes.len() {
            return f(ctx);
        }
        let dim = i as isize - sizes.len() as isize;
        ctx.plate_dim(&format!("{prefix}_{i}"), sizes[i], dim, |ctx| {
            level(ctx, prefix, sizes, i + 1, f)
        })
    }
    level(ctx, prefix, sizes, 0, f)
}

const STACKS: [&[usize]; 3] = [&[3], &[3, 4], &[3, 4, 5]];

#[test]
fn plate_stack_ok() {
    for sizes in STACKS {
        let program = |learn: bool| {
            move |ctx: &mut Ctx| -> R {
                let p = if learn { param_p(ctx)? } else { s(0.5) };
                plate_stack(ctx, "plate_stack", sizes, &mut |ctx| {
                    ctx.sample("x", Bernoulli::from_probs(&p)?)
                })?;
                Ok(())
            }
        };
        let r = assert_ok(program(false), program(true), TraceElbo::new());
        assert_eq!(r.model_trace.get("x").unwrap().value.dims(), sizes);
    }
}

#[test]
fn plate_stack_and_plate_ok() {
    for sizes in STACKS {
        let program = |learn: bool| {
            move |ctx: &mut Ctx| -> R {
                let p = if learn { param_p(ctx)? } else { s(0.5) };
                plate_stack(ctx, "plate_stack", sizes, &mut |ctx| {
                    ctx.plate("plate", 7, |ctx| {
                        ctx.sample("x", Bernoulli::from_probs(&p)?)
                    })
                })?;
                Ok(())
            }
        };
        let r = assert_ok(program(false), program(true), TraceElbo::new());
        // `plate` takes the first free dim left of the stack.
        let want: Vec<usize> = [7].iter().chain(sizes).copied().collect();
        assert_eq!(
            r.model_trace.get("x").unwrap().value.dims(),
            want.as_slice()
        );
    }
}

#[test]
fn plate_stack_sizes() -> Res {
    use rand::SeedableRng;
    for sizes in STACKS {
        let mut store = vi_infer::ParamStore::new(&Device::Cpu, DType::F64);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let mut ctx = Ctx::new(&mut store, &mut rng);
        let x = plate_stack(&mut ctx, "plate_stack", sizes, &mut |ctx| {
            ctx.sample("x", Bernoulli::from_probs(&t(&[0.5; 3]))?.to_event(1)?)
        })?;
        let want: Vec<usize> = sizes.iter().chain(&[3]).copied().collect();
        assert_eq!(x.dims(), want.as_slice());
    }
    Ok(())
}

#[test]
fn nested_plate_plate_ok() {
    let model = |ctx: &mut Ctx| -> R {
        let p = s(0.5);
        ctx.plate_with(
            Plate::new("plate_outer", 10).subsample_size(5),
            |ctx, outer| {
                let n_outer = outer.dims()[0];
                ctx.sample_boxed("x", bern_by(&p, &[n_outer])?)?;
                ctx.plate_with(
                    Plate::new("plate_inner", 11).subsample_size(6),
                    |ctx, inner| ctx.sample_boxed("y", bern_by(&p, &[inner.dims()[0], n_outer])?),
                )
            },
        )?;
        Ok(())
    };
    let r = assert_ok(model, model, TraceElbo::new());
    assert_eq!(r.model_trace.get("y").unwrap().value.dims(), &[6, 5]);
}

#[test]
fn plate_reuse_ok() {
    // Two subsampled plates at fixed dims, entered alone and together: the same indices
    // each time.
    let model = |ctx: &mut Ctx| -> R {
        let p = s(0.5);
        let outer = Plate::new("plate_outer", 10).subsample_size(5).dim(-1);
        let inner = Plate::new("plate_inner", 11).subsample_size(6).dim(-2);
        ctx.plate_with(outer.clone(), |ctx, io| {
            ctx.sample_boxed("x", bern_by(&p, &[io.dims()[0]])?)
        })?;
        ctx.plate_with(inner.clone(), |ctx, ii| {
            ctx.sample_boxed("y", bern_by(&p, &[ii.dims()[0], 1])?)
        })?;
        ctx.plate_with(outer, |ctx, io| {
            ctx.plate_with(inner, |ctx, ii| {
                ctx.sample_boxed("z", bern_by(&p, &[ii.dims()[0], io.dims()[0]])?)
            })
        })?;
        Ok(())
    };
    let r = assert_ok(model, model, TraceElbo::new());
    let dims = |n: &str| r.model_trace.get(n).unwrap().value.dims().to_vec();
    assert_eq!(
        (dims("x"), dims("y"), dims("z")),
        (vec![5], vec![6, 1], vec![6, 5])
    );
}

/// The model of `test_nested_plate_plate_dim_error_*`: `p = [0.5]` (batch [1]), `x` in
/// `plate_outer` (10, subsample 5), `y` and `z` also in `plate_inner` (11, subsample 6),
/// each `Bernoulli(p).expand_by(sizes)` with the case's sizes (5 for the outer plate's
/// subsample, 6 for the inner's).
fn nested_dims(
    x: &'static [usize],
    y: &'static [usize],
    z: &'static [usize],
) -> impl Fn(&mut Ctx) -> R {
    move |ctx: &mut Ctx| -> R {
        let p = t(&[0.5]);
        ctx.plate_with(Plate::new("plate_outer", 10).subsample_size(5), |ctx, _| {
            ctx.sample_boxed("x", bern_by(&p, x)?)?;
            ctx.plate_with(Plate::new("plate_inner", 11).subsample_size(6), |ctx, _| {
                ctx.sample_boxed("y", bern_by(&p, y)?)?;
                ctx.sample_boxed("z", bern_by(&p, z)?)
            })
        })?;
        Ok(())
    }
}

#[test]
fn nested_plate_plate_dim_error_1() {
    // x: [5, 1] → [5, 5] in plate_outer (dim −1): its dim −2 belongs to no plate it is in.
    let model = nested_dims(&[5], &[6], &[5, 6]);
    for e in error_both(&model, &model) {
        assert!(
            matches!(e.root(), InferError::SiteShape { site, dim: -2, size: 5, .. } if site == "x"),
            "{e:?}"
        );
    }
}

#[test]
fn nested_plate_plate_dim_error_2() {
    // y: [5, 1] in plate_inner (dim −2, size 6): shape mismatch inside the plate.
    let model = nested_dims(&[5, 1], &[5], &[5, 6]);
    for e in error_both(&model, &model) {
        assert!(
            matches!(e.root(), InferError::PlateSize { site, plate, size: 6, dim: -2, .. } if site == "y" && plate == "plate_inner"),
            "{e:?}"
        );
    }
}

#[test]
fn nested_plate_plate_dim_error_3() {
    // x: [5, 1, 1] → [5, 1, 5]: dim −3 is no plate's. (Pyro: "invalid log_prob shape".)
    let model = nested_dims(&[5, 1], &[6], &[6, 1]);
    for e in error_both(&model, &model) {
        assert!(
            matches!(e.root(), InferError::SiteShape { site, dim: -3, size: 5, .. } if site == "x"),
            "{e:?}"
        );
    }
}

#[test]
fn nested_plate_plate_dim_error_4() {
    // z: [5, 5, 1] in plate_inner (dim −2, size 6): shape mismatch inside the plate.
    let model = nested_dims(&[5, 1], &[6], &[5, 5]);
    for e in error_both(&model, &model) {
        assert!(
            matches!(e.root(), InferError::PlateSize { site, plate, size: 6, .. } if site == "z" && plate == "plate_inner"),
            "{e:?}"
        );
    }
}

#[test]
fn nested_plate_plate_subsample_param_ok() {
    // Parameters over the full plates, indexed by the plates' indices in the guide.
    let model = |ctx: &mut Ctx| -> R {
        ctx.plate_with(Plate::new("plate_outer", 10).subsample_size(5), |ctx, _| {
            ctx.sample("x", Bernoulli::from_probs(&s(0.2))?)?;
            ctx.plate_with(Plate::new("plate_inner", 11).subsample_size(6), |ctx, _| {
                ctx.sample("y", Bernoulli::from_probs(&s(0.2))?)
            })
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> R {
        let half = |shape: (usize, usize)| Tensor::full(0.5f64, shape, &Device::Cpu);
        let p0 = ctx.param("p0", &half((4, 5))?, Constraint::Real)?;
        assert_eq!(p0.dims(), &[4, 5]);
        ctx.plate_with(
            Plate::new("plate_outer", 10).subsample_size(5),
            |ctx, io| {
                let p1 = ctx.param("p1", &half((10, 3))?, Constraint::Real)?;
                assert_eq!(p1.index_select(io, 0)?.dims(), &[5, 3]);
                let px = ctx.param("px", &(t(&[1.0; 10]) * 0.5)?, Constraint::Real)?;
                let px = px.index_select(io, 0)?;
                assert_eq!(px.dims(), &[5]);
                ctx.sample("x", Bernoulli::from_probs(&px)?)?;
                ctx.plate_with(
                    Plate::new("plate_inner", 11).subsample_size(6),
                    |ctx, ii| {
                        let py = ctx.param("py", &half((11, 10))?, Constraint::Real)?;
                        let py = py.index_select(ii, 0)?.index_select(io, 1)?;
                        assert_eq!(py.dims(), &[6, 5]);
                        ctx.sample("y", Bernoulli::from_probs(&py)?)
                    },
                )
            },
        )?;
        Ok(())
    };
    assert_ok(model, guide, TraceElbo::new());
}

#[test]
fn nonnested_plate_plate_ok() {
    // Two sibling plates, both at dim −1.
    let model = |ctx: &mut Ctx| -> R {
        let p = s(0.5);
        ctx.plate_with(Plate::new("plate_0", 10).subsample_size(5), |ctx, i| {
            ctx.sample_boxed("x0", bern_by(&p, &[i.dims()[0]])?)
        })?;
        ctx.plate_with(Plate::new("plate_1", 11).subsample_size(6), |ctx, i| {
            ctx.sample_boxed("x1", bern_by(&p, &[i.dims()[0]])?)
        })?;
        Ok(())
    };
    assert_ok(model, model, TraceElbo::new());
}

#[test]
fn dim_allocation_ok() {
    // A plate at dim −3, then plates without a dim take the rightmost free one: −1, −2, −4.
    let model = |ctx: &mut Ctx| -> R {
        let p = s(0.5);
        let b = || Bernoulli::from_probs(&p);
        let (x, y, z, q) = ctx.plate_with(
            Plate::new("plate_outer", 10).subsample_size(5).dim(-3),
            |ctx, _| {
                let x = ctx.sample("x", b()?)?;
                ctx.plate_with(
                    Plate::new("plate_inner_1", 11).subsample_size(6),
                    |ctx, _| {
                        let y = ctx.sample("y", b()?)?;
                        ctx.plate_with(
                            Plate::new("plate_inner_2", 12).subsample_size(7),
                            |ctx, _| {
                                let z = ctx.sample("z", b()?)?;
                                ctx.plate_with(
                                    Plate::new("plate_inner_3", 13).subsample_size(8),
                                    |ctx, _| {
                                        let q = ctx.sample("q", b()?)?;
                                        Ok((x, y, z, q))
                                    },
                                )
                            },
                        )
                    },
                )
            },
        )?;
        assert_eq!(x.dims(), &[5, 1, 1]);
        assert_eq!(y.dims(), &[5, 1, 6]);
        assert_eq!(z.dims(), &[5, 7, 6]);
        assert_eq!(q.dims(), &[8, 5, 7, 6]);
        Ok(())
    };
    assert_ok(model, model, TraceElbo::new().max_plate_nesting(4));
}

#[test]
fn dim_allocation_error() {
    // plate_outer at −2, plate_inner_1 takes −1, plate_inner_2 asks for −1: collision.
    let model = |ctx: &mut Ctx| -> R {
        let p = s(0.5);
        ctx.plate_with(
            Plate::new("plate_outer", 10).subsample_size(5).dim(-2),
            |ctx, _| {
                ctx.sample("x", Bernoulli::from_probs(&p)?)?;
                ctx.plate_with(
                    Plate::new("plate_inner_1", 11).subsample_size(6),
                    |ctx, _| {
                        ctx.sample("y", Bernoulli::from_probs(&p)?)?;
                        ctx.plate_with(
                            Plate::new("plate_inner_2", 12).subsample_size(7).dim(-1),
                            |ctx, _| ctx.sample("z", Bernoulli::from_probs(&p)?),
                        )
                    },
                )
            },
        )?;
        Ok(())
    };
    let e = assert_error(model, model, TraceElbo::new());
    assert!(
        matches!(e.root(), InferError::Plate { plate, msg } if plate == "plate_inner_2" && msg.contains("plate_inner_1")),
        "{e:?}"
    );
}

/// The rows of the data of `test_plate_shape_broadcasting` and `test_vectorized_num_particles`.
const DATA_ROWS: usize = 1000;

/// `test_plate_shape_broadcasting`: a hand-written particle plate at dim −3, `p` in
/// `components` (dim −1), the data [1000, 2] observed in `data` (dim −2) and the particle
/// plate but not in `components`: the observed site's log-prob is [10, 1000, 2], and its dim
/// −1 has no plate while plates sit left of it. Pyro's `check_site_shape` leaves such a dim
/// free (any size); vi requires it to be 1 (its rule since issue 16: every batch dim is 1 or
/// a plate's, the stricter check). The loss Pyro computes is right (the sum over the dim), so
/// this is a case vi rejects and Pyro accepts, by design; `plate_shape_broadcasting_in_all_plates`
/// is vi's spelling.
#[test]
fn plate_shape_broadcasting() {
    let data = Tensor::ones((DATA_ROWS, 2), DType::F64, &Device::Cpu).unwrap();
    let beta = || Beta::new(&s(1.1), &s(1.1));
    let model = |ctx: &mut Ctx| -> R {
        ctx.plate_dim("num_particles", 10, -3, |ctx| {
            let p = ctx.plate_dim("components", 2, -1, |ctx| ctx.sample("p", beta()?))?;
            assert_eq!(p.dims(), &[10, 1, 2]);
            ctx.plate_dim("data", DATA_ROWS, -2, |ctx| {
                ctx.observe("obs", Bernoulli::from_probs(&p)?, &data)
            })
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> R {
        ctx.plate_dim("num_particles", 10, -3, |ctx| {
            ctx.plate_dim("components", 2, -1, |ctx| ctx.sample("p", beta()?))
        })?;
        Ok(())
    };
    let e = assert_error(&model, &guide, TraceElbo::new());
    assert!(
        matches!(e.root(), InferError::SiteShape { site, dim: -1, size: 2, .. } if site == "obs"),
        "{e:?}"
    );
}

#[test]
fn plate_shape_broadcasting_in_all_plates() {
    // vi's spelling of the model above: the observed site also enters `components` (the
    // Bernoulli factorises over it), so every dim of its log-prob has a plate. The loss is
    // the one Pyro computes for the model above: the same sum.
    let data = Tensor::ones((DATA_ROWS, 2), DType::F64, &Device::Cpu).unwrap();
    let beta = || Beta::new(&s(1.1), &s(1.1));
    let model = |ctx: &mut Ctx| -> R {
        ctx.plate_dim("num_particles", 10, -3, |ctx| {
            let p = ctx.plate_dim("components", 2, -1, |ctx| ctx.sample("p", beta()?))?;
            assert_eq!(p.dims(), &[10, 1, 2]);
            ctx.plate_dim("data", DATA_ROWS, -2, |ctx| {
                ctx.plate_dim("components", 2, -1, |ctx| {
                    ctx.observe("obs", Bernoulli::from_probs(&p)?, &data)
                })
            })
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> R {
        ctx.plate_dim("num_particles", 10, -3, |ctx| {
            ctx.plate_dim("components", 2, -1, |ctx| ctx.sample("p", beta()?))
        })?;
        Ok(())
    };
    let r = assert_ok(model, guide, TraceElbo::new());
    // Model and guide draw p from the same Beta, so the latent term is 0 and the loss is
    // −Σ log p over the 10 × 1000 × 2 ones.
    let p = host(&r.model_trace.get("p").unwrap().value);
    let want: f64 = -p.iter().map(|p| p.ln()).sum::<f64>() * DATA_ROWS as f64;
    assert_close(r.loss, want, 1e-10);
}

#[test]
fn vectorized_num_particles() {
    // Ten particles in a plate at dim −3, outside `components` (−1) and `data` (−2).
    let data = Tensor::ones((DATA_ROWS, 2), DType::F64, &Device::Cpu).unwrap();
    let beta = || Beta::new(&s(1.1), &s(1.1));
    let model = |ctx: &mut Ctx| -> R {
        ctx.plate("components", 2, |ctx| {
            let p = ctx.sample("p", beta()?)?;
            assert_eq!(p.dims(), &[10, 1, 2]);
            ctx.plate("data", DATA_ROWS, |ctx| {
                ctx.observe("obs", Bernoulli::from_probs(&p)?, &data)
            })
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> R {
        ctx.plate("components", 2, |ctx| ctx.sample("p", beta()?))?;
        Ok(())
    };
    let elbo = TraceElbo::new()
        .num_particles(10)
        .vectorize_particles(true)
        .max_plate_nesting(2);
    assert_ok(model, guide, elbo);
}

// factor ----------------------------------------------------------------------------------

#[test]
fn factor_in_model_ok() {
    let model = |ctx: &mut Ctx| -> R {
        ctx.factor("f", &s(0.0))?;
        Ok(())
    };
    for r in ok_both(&model, &empty) {
        assert_eq!(r.loss, 0.0);
    }
}

#[test]
fn factor_in_guide_error() {
    // Pyro: "missing specification of has_rsample". vi: a factor is an observed site, and a
    // guide site observed (or absent) in the model is an error.
    let guide = |ctx: &mut Ctx| -> R {
        ctx.factor("f", &s(0.0))?;
        Ok(())
    };
    for e in error_both(&empty, &guide) {
        assert!(
            matches!(e.root(), InferError::GuideSiteNotInModel { site } if site == "f"),
            "{e:?}"
        );
    }
}

// Mean field --------------------------------------------------------------------------------

#[test]
fn mean_field_ok() {
    // x and y latent; the guide's y depends on its x as the model's does. Every KL is 0.
    let model = |ctx: &mut Ctx| -> R {
        let x = ctx.sample("x", Normal::new(&s(0.0), &s(1.0))?)?;
        ctx.sample("y", Normal::new(&x, &s(1.0))?)?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> R {
        let loc = ctx.param("loc", &s(0.0), Constraint::Real)?;
        let x = ctx.sample("x", Normal::new(&loc, &s(1.0))?)?;
        ctx.sample("y", Normal::new(&x, &s(1.0))?)?;
        Ok(())
    };
    let r = assert_ok(model, guide, TraceMeanFieldElbo::new());
    assert_eq!(r.loss, 0.0);
}

#[test]
fn mean_field_mask_ok() {
    for mask in [1u8, 0] {
        let m = u8s(&[mask]).squeeze(0).unwrap();
        let model = |ctx: &mut Ctx| -> R {
            let x = ctx.sample("x", Normal::new(&s(0.0), &s(1.0))?.mask(&m)?)?;
            ctx.sample("y", Normal::new(&x, &s(1.0))?)?;
            Ok(())
        };
        let guide = |ctx: &mut Ctx| -> R {
            let loc = ctx.param("loc", &s(0.0), Constraint::Real)?;
            let x = ctx.sample("x", Normal::new(&loc, &s(1.0))?.mask(&m)?)?;
            ctx.sample("y", Normal::new(&x, &s(1.0))?)?;
            Ok(())
        };
        let r = assert_ok(model, guide, TraceMeanFieldElbo::new());
        assert_eq!(r.loss, 0.0);
    }
}

#[test]
fn mean_field_out_of_order() {
    // `test_mean_field_warn`: the guide draws y first and x from it, while the model draws
    // x first and y from it. Pyro warns ("Failed to verify mean field restriction"); vi takes
    // the Monte Carlo term for y, the site whose analytic KL would not be a term of the
    // joint KL, and the analytic one for x.
    let model = |ctx: &mut Ctx| -> R {
        let x = ctx.sample("x", Normal::new(&s(0.0), &s(1.0))?)?;
        ctx.sample("y", Normal::new(&x, &s(1.0))?)?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> R {
        let loc = ctx.param("loc", &s(0.0), Constraint::Real)?;
        let y = ctx.sample("y", Normal::new(&loc, &s(1.0))?)?;
        ctx.sample("x", Normal::new(&y, &s(1.0))?)?;
        Ok(())
    };
    let r = assert_ok(model, guide, TraceMeanFieldElbo::new());
    assert_eq!(r.site("x").unwrap().kind, TermKind::KlAnalytic);
    assert_eq!(r.site("y").unwrap().kind, TermKind::KlMonteCarlo);
}

// Reparameterised guides with masks and scales ------------------------------------------------

/// `test_reparam_*`'s model and guide: x ~ N(0, 1), y ~ N(x, 1) observed at 0 under
/// `wrap` (a mask or a scale); the guide x ~ N(loc, 1).
fn reparam_pair(
    wrap: impl Fn(&mut Ctx, &mut dyn FnMut(&mut Ctx) -> R) -> R,
) -> (impl Fn(&mut Ctx) -> R, impl Fn(&mut Ctx) -> R) {
    let model = move |ctx: &mut Ctx| -> R {
        let x = ctx.sample("x", Normal::new(&s(0.0), &s(1.0))?)?;
        wrap(ctx, &mut |ctx| {
            ctx.observe("y", Normal::new(&x, &s(1.0))?, &s(0.0))?;
            Ok(())
        })
    };
    let guide = |ctx: &mut Ctx| -> R {
        let loc = ctx.param("loc", &s(0.0), Constraint::Real)?;
        ctx.sample("x", Normal::new(&loc, &s(1.0))?)?;
        Ok(())
    };
    (model, guide)
}

/// y's log-likelihood term and the closed form at the drawn x, times `factor`.
fn check_y_term(r: &StepReport, factor: f64) {
    let x = host(&r.model_trace.get("x").unwrap().value)[0];
    let y = r.site("y").unwrap().sum_f64().unwrap();
    assert_close(y, factor * normal_lp(0.0, x, 1.0), 1e-12);
}

#[test]
fn reparam_ok() {
    let (model, guide) = reparam_pair(|ctx, f| f(ctx));
    for r in ok_both(&model, &guide) {
        check_y_term(&r, 1.0);
    }
}

#[test]
fn reparam_mask_ok() {
    // Pyro's True / tensor(True) and False / tensor(False).
    for keep in [1u8, 0] {
        let m = u8s(&[keep]).squeeze(0).unwrap();
        let (model, guide) = reparam_pair(|ctx, f| ctx.mask(&m, |ctx| f(ctx)));
        for r in ok_both(&model, &guide) {
            check_y_term(&r, f64::from(keep));
        }
    }
}

#[test]
fn reparam_scale_ok() {
    // Pyro's scales 1, 0.1 and tensor(0.5).
    for (factor, as_tensor) in [(1.0, false), (0.1, false), (0.5, true)] {
        let (model, guide) = reparam_pair(|ctx, f| {
            if as_tensor {
                ctx.scale_by(&s(factor), |ctx| f(ctx))
            } else {
                ctx.scale(factor, |ctx| f(ctx))
            }
        });
        for r in ok_both(&model, &guide) {
            check_y_term(&r, factor);
        }
    }
}

/// Two 3-vectors on the simplex, the Dirichlet observations of `test_reparam_*_plate_ok`
/// (fixed here; Pyro's are `randn(2, 3).exp()`, normalised).
const SIMPLEX_DATA: [[f64; 3]; 2] = [[0.2, 0.3, 0.5], [0.6, 0.1, 0.3]];

/// c ~ LogNormal(0, 1) in R³ (one event); in `plate("data", 2)` under `wrap`, the data ~
/// Dirichlet(c); the guide c ~ LogNormal(loc, scale).
fn dirichlet_pair(
    wrap: impl Fn(&mut Ctx, &mut dyn FnMut(&mut Ctx) -> R) -> R,
) -> (impl Fn(&mut Ctx) -> R, impl Fn(&mut Ctx) -> R) {
    let data = Tensor::new(&SIMPLEX_DATA, &Device::Cpu).unwrap();
    let model = move |ctx: &mut Ctx| -> R {
        let prior = LogNormal::new(&t(&[0.0; 3]), &t(&[1.0; 3]))?.to_event(1)?;
        let c = ctx.sample("c", prior)?;
        ctx.plate("data", 2, |ctx| {
            wrap(ctx, &mut |ctx| {
                ctx.observe("obs", Dirichlet::new(&c)?, &data)?;
                Ok(())
            })
        })
    };
    let guide = |ctx: &mut Ctx| -> R {
        let loc = ctx.param("loc", &t(&[0.0; 3]), Constraint::Real)?;
        let scale = ctx.param("scale", &t(&[1.0; 3]), Constraint::Positive)?;
        ctx.sample("c", LogNormal::new(&loc, &scale)?.to_event(1)?)?;
        Ok(())
    };
    (model, guide)
}

/// log Γ(x) for x > 0 (Lanczos, g = 7, nine terms: about 1e-15 relative).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The observed term and the closed form: Σ_i w_i log Dirichlet(data_i | c).
fn check_dirichlet_term(r: &StepReport, weights: [f64; 2]) {
    let c = host(&r.model_trace.get("c").unwrap().value);
    let mut want = 0.0;
    for (row, w) in SIMPLEX_DATA.iter().zip(weights) {
        let mut lp = ln_gamma(c.iter().sum());
        for (ci, xi) in c.iter().zip(row) {
            lp += (ci - 1.0) * xi.ln() - ln_gamma(*ci);
        }
        want += w * lp;
    }
    assert_close(r.site("obs").unwrap().sum_f64().unwrap(), want, 1e-10);
}

#[test]
fn reparam_mask_plate_ok() {
    // Pyro's True / tensor(True), False / tensor(False) and tensor([False, True]).
    for keep in [&[1u8][..], &[0], &[0, 1]] {
        let m = if keep.len() == 1 {
            u8s(keep).squeeze(0).unwrap()
        } else {
            u8s(keep)
        };
        let (model, guide) = dirichlet_pair(|ctx, f| ctx.mask(&m, |ctx| f(ctx)));
        let w = |i: usize| f64::from(keep[i.min(keep.len() - 1)]);
        for r in ok_both(&model, &guide) {
            check_dirichlet_term(&r, [w(0), w(1)]);
        }
    }
}

#[test]
fn reparam_scale_plate_ok() {
    // Pyro's scales 1, 0.1, tensor(0.5) and tensor([0.1, 0.9]).
    let cases: [(&[f64], bool); 4] = [
        (&[1.0], false),
        (&[0.1], false),
        (&[0.5], true),
        (&[0.1, 0.9], true),
    ];
    for (factor, as_tensor) in cases {
        let (model, guide) = dirichlet_pair(|ctx, f| {
            if !as_tensor {
                ctx.scale(factor[0], |ctx| f(ctx))
            } else if factor.len() == 1 {
                ctx.scale_by(&s(factor[0]), |ctx| f(ctx))
            } else {
                ctx.scale_by(&t(factor), |ctx| f(ctx))
            }
        });
        let w = |i: usize| factor[i.min(factor.len() - 1)];
        for r in ok_both(&model, &guide) {
            check_dirichlet_term(&r, [w(0), w(1)]);
        }
    }
}

// obs_mask --------------------------------------------------------------------------------

/// The masks of `test_obs_mask_ok` (and, with 4 entries, `..._multivariate_ok`): 0-d true
/// and false, [true], [false], and a mixed one.
fn obs_masks(mixed: &[u8]) -> Vec<Tensor> {
    vec![
        u8s(&[1]).squeeze(0).unwrap(),
        u8s(&[0]).squeeze(0).unwrap(),
        u8s(&[1]),
        u8s(&[0]),
        u8s(mixed),
    ]
}

/// Whether each `row` (the trailing `event` elements) of `y` equals the data 7 exactly,
/// against the mask broadcast to the rows.
fn check_observed_rows(y: &Tensor, mask: &Tensor, event: usize) {
    let rows = y.dims()[..y.rank() - event].to_vec();
    let values = host(y);
    let width = values.len() / rows.iter().product::<usize>();
    let keep = host(
        &mask
            .to_dtype(DType::F64)
            .unwrap()
            .broadcast_as(rows.as_slice())
            .unwrap(),
    );
    for (row, k) in values.chunks(width).zip(keep) {
        let observed = row.iter().all(|v| *v == 7.0);
        assert_eq!(observed, k == 1.0, "row {row:?}, mask {k}");
    }
}

fn obs_mask_elbos(particles: usize) -> (TraceElbo, TraceMeanFieldElbo) {
    (
        TraceElbo::new()
            .num_particles(particles)
            .vectorize_particles(true),
        TraceMeanFieldElbo::new()
            .num_particles(particles)
            .vectorize_particles(true),
    )
}

#[test]
fn obs_mask_ok() {
    let data = t(&[7.0; 3]);
    for mask in obs_masks(&[0, 1, 0]) {
        let unseen = mask.eq(0u8).unwrap();
        let model = |ctx: &mut Ctx| -> R {
            let x = ctx.sample("x", Normal::new(&s(0.0), &s(1.0))?)?;
            ctx.plate("plate", 3, |ctx| {
                let y = ctx.observe_masked("y", Normal::new(&x, &s(1.0))?, &data, &mask)?;
                check_observed_rows(&y, &mask, 0);
                Ok(())
            })
        };
        let guide = |ctx: &mut Ctx| -> R {
            let loc = ctx.param("loc", &s(0.0), Constraint::Real)?;
            let scale = ctx.param("scale", &s(1.0), Constraint::Positive)?;
            let x = ctx.sample("x", Normal::new(&loc, &scale)?)?;
            ctx.plate("plate", 3, |ctx| {
                ctx.mask(&unseen, |ctx| {
                    ctx.sample("y_unobserved", Normal::new(&x, &s(1.0))?)
                })
            })?;
            Ok(())
        };
        for particles in [1, 2] {
            let (trace, mean_field) = obs_mask_elbos(particles);
            assert_ok(model, guide, trace);
            assert_ok(model, guide, mean_field);
        }
    }
}

#[test]
fn obs_mask_multivariate_ok() {
    let data = Tensor::full(7.0f64, (4, 3), &Device::Cpu).unwrap();
    let eye = Tensor::eye(3, DType::F64, &Device::Cpu).unwrap();
    for mask in obs_masks(&[0, 1, 1, 0]) {
        let unseen = mask.eq(0u8).unwrap();
        let model = |ctx: &mut Ctx| -> R {
            let x = ctx.sample(
                "x",
                MultivariateNormal::from_covariance(&t(&[0.0; 3]), &eye)?,
            )?;
            ctx.plate("plate", 4, |ctx| {
                let d = MultivariateNormal::from_covariance(&x, &eye)?;
                let y = ctx.observe_masked("y", d, &data, &mask)?;
                check_observed_rows(&y, &mask, 1);
                Ok(())
            })
        };
        let guide = |ctx: &mut Ctx| -> R {
            let loc = ctx.param("loc", &t(&[0.0; 3]), Constraint::Real)?;
            let cov = ctx.param("cov", &eye, Constraint::PositiveDefinite)?;
            let x = ctx.sample("x", MultivariateNormal::from_covariance(&loc, &cov)?)?;
            ctx.plate("plate", 4, |ctx| {
                ctx.mask(&unseen, |ctx| {
                    ctx.sample(
                        "y_unobserved",
                        MultivariateNormal::from_covariance(&x, &eye)?,
                    )
                })
            })?;
            Ok(())
        };
        for particles in [1, 2] {
            let (trace, mean_field) = obs_mask_elbos(particles);
            assert_ok(model, guide, trace);
            assert_ok(model, guide, mean_field);
        }
    }
}

#[test]
fn obs_mask_multivariate_error() {
    // The mask [3, 2] covers the event dim of a MultivariateNormal in R²: invalid.
    let data = Tensor::full(7.0f64, (3, 2), &Device::Cpu).unwrap();
    let eye = Tensor::eye(2, DType::F64, &Device::Cpu).unwrap();
    let mask = Tensor::new(&[[0u8, 0], [0, 1], [1, 0]], &Device::Cpu).unwrap();
    let unseen = mask.eq(0u8).unwrap();
    let model = |ctx: &mut Ctx| -> R {
        let x = ctx.sample(
            "x",
            MultivariateNormal::from_covariance(&t(&[0.0; 2]), &eye)?,
        )?;
        ctx.plate("plate", 3, |ctx| {
            let d = MultivariateNormal::from_covariance(&x, &eye)?;
            ctx.observe_masked("y", d, &data, &mask)
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> R {
        let loc = ctx.param("loc", &t(&[0.0; 2]), Constraint::Real)?;
        let x = ctx.sample("x", MultivariateNormal::from_covariance(&loc, &eye)?)?;
        ctx.plate("plate", 3, |ctx| {
            ctx.mask(&unseen, |ctx| {
                ctx.sample(
                    "y_unobserved",
                    MultivariateNormal::from_covariance(&x, &eye)?,
                )
            })
        })?;
        Ok(())
    };
    // Pyro: "Invalid obs_mask shape". vi names the site, the mask's shape and the event.
    for e in error_both(&model, &guide) {
        assert!(matches!(e.root(), InferError::Invalid(_)), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("site `y`") && text.contains("obs_mask of shape [3, 2]"),
            "{text}"
        );
    }
}

// test_inference.py: SafetyTests ------------------------------------------------------------

fn safety_guide(ctx: &mut Ctx) -> R {
    let p = ctx.param("p", &t(&[1.0]), Constraint::Positive)?;
    ctx.sample("loc_q", Normal::new(&t(&[0.0]), &p)?)?;
    ctx.sample("loc_q_2", Normal::new(&t(&[0.0]), &p)?)?;
    Ok(())
}

#[test]
fn duplicate_names() {
    // A param and a sample site of the model share the name `loc_q`.
    let model = |ctx: &mut Ctx| -> R {
        ctx.param("loc_q", &t(&[1.0]), Constraint::Real)?;
        ctx.sample("loc_q", Normal::new(&t(&[0.0]), &t(&[1.0]))?)?;
        Ok(())
    };
    let e = assert_error(model, safety_guide, TraceElbo::new());
    assert!(
        matches!(e.root(), InferError::DuplicateSite { site } if site == "loc_q"),
        "{e:?}"
    );
}

#[test]
fn extra_samples() {
    // The guide samples `loc_q_2`, which the model lacks: Pyro warns, vi errs (stricter).
    let model = |ctx: &mut Ctx| -> R {
        ctx.sample("loc_q", Normal::new(&t(&[0.0]), &t(&[1.0]))?)?;
        Ok(())
    };
    let e = assert_error(model, safety_guide, TraceElbo::new());
    assert!(
        matches!(e.root(), InferError::GuideSiteNotInModel { site } if site == "loc_q_2"),
        "{e:?}"
    );
}

#[test]
fn duplicate_obs_name() {
    // A latent and an observed site of the model share the name `loc_q`.
    let model = |ctx: &mut Ctx| -> R {
        ctx.sample("loc_q", Normal::new(&t(&[0.0]), &t(&[1.0]))?)?;
        ctx.observe("loc_q", Normal::new(&t(&[0.0]), &t(&[1.0]))?, &t(&[0.0]))?;
        Ok(())
    };
    let e = assert_error(model, safety_guide, TraceElbo::new());
    assert!(
        matches!(e.root(), InferError::DuplicateSite { site } if site == "loc_q"),
        "{e:?}"
    );
}
