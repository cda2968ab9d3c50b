//! Pyro's valid/invalid model–guide pairs (`tests/infer/test_valid_models.py`, pyro-ppl/pyro
//! at ff6ae1c, 2024-10), ported: for each test that applies to vi, the same model and guide
//! structure and data, run for one SVI step (Pyro's `assert_ok`: Adam at lr 1e-6, one step,
//! no error) or expected to fail with the matching typed error (Pyro's `assert_error`, whose
//! `match=` text maps to an `InferError` variant). Pyro's `Trace_ELBO` is `TraceElbo`; where
//! Pyro also runs `TraceMeanField_ELBO`, or where the case is a structural check that both
//! ELBOs share, both run. Pyro's `TraceGraph_ELBO` rows are `TraceGraphElbo`: every case run
//! with a default `TraceElbo` runs under it too, and must give the same loss (ok cases) or
//! the same error (error cases). Pyro's `TraceEnum_ELBO` rows are `TraceEnumElbo`: every
//! case run with a default `TraceElbo` runs under it too, the guide under `config_enumerate`
//! as in Pyro's rows (which most of these tests have), and must give a finite loss (ok cases)
//! or an error of the same kind (error cases); the enumeration tests (below) are its own.
//! The row of `test_iplate_iplate_ok` and `_swap_ok` (nine enumerated sites) is
//! `iplate_iplate_trace_enum`, a typed error in vi: see the enumeration paragraph.
//! Pyro's `TraceTMC_ELBO` and `EnergyDistance` rows are not repeated (vi has no such
//! objectives). Pyro's `expand_by(sizes)` prepends `sizes` to the batch shape; here
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
//!   shares, so it runs under `TraceElbo` without enumeration too (`no_plate_batch_error`);
//! - `test_reparam_mask_*` / `test_reparam_scale_*` / `test_obs_mask_*`: a Python `bool`
//!   mask and a 0-d `torch.tensor(bool)` are the same 0-d `u8` tensor here; random
//!   Dirichlet data (`torch.randn(2, 3).exp()`, normalised) is fixed data here.
//!
//! Enumeration (`TraceEnum_ELBO`, `config_enumerate`, `infer={"enumerate": "parallel"}`,
//! `pyro.markov`): vi's `TraceEnumElbo`, `ctx.config_enumerate` / `sample_enum`, `ctx.markov`,
//! `markov_history` and `markov_context`. Only parallel enumeration exists in vi: the rows of
//! `enumerate="sequential"`, `expand=True` and `num_samples` (Monte Carlo enumeration) are not
//! ported, the rows `None` and `"parallel"` are. Pyro's `assert_warning` has no counterpart
//! (vi has no warnings): where Pyro warns only to advise (`strict_enumeration_warning`; a
//! mark under an ELBO that does not enumerate; a site after an enumerated site of a plate it
//! is outside of, by site order), vi runs and the test asserts the run; where the dependence
//! is real and visible in the enumeration dims vi errs instead
//! (`enum_discrete_plate_dependency_warning`). Pyro's shape assertions inside the model are
//! checked on the traces, and a loss that has a closed form is checked (q = p gives 0).
//! Ported: `test_enum_discrete_misuse_warning`, `test_enum_discrete_single_ok`,
//! `test_enum_discrete_missing_config_warning`, `test_enum_discrete_single_single_ok`,
//! `test_enum_discrete_iplate_single_ok` (five sites scaled by 2 for Pyro's sequential plate
//! of 10 subsampled to 5), `test_plate_enum_discrete_batch_ok`,
//! `test_plate_enum_discrete_no_discrete_vars_warning` (equal to `TraceElbo`'s loss),
//! `test_no_plate_enum_discrete_batch_error` (vi's `SiteShape`, Pyro's invalid log_prob
//! shape),
//! `test_enum_discrete_parallel_ok`, `test_enum_discrete_parallel_nested_ok`,
//! `test_enumerate_parallel_plate_ok`, `test_enum_discrete_plate_dependency_warning`,
//! `test_enum_discrete_iplate_plate_dependency_ok`,
//! `test_enum_discrete_iplates_plate_dependency_warning`,
//! `test_enum_discrete_plates_dependency_ok`, `test_enum_discrete_non_enumerated_plate_ok`,
//! `test_enum_discrete_plate_shape_broadcasting_ok`, `test_enum_in_model_ok`,
//! `test_enum_in_model_plate_ok`, `test_enum_in_model_plate_reuse_ok` (exact loss),
//! `test_enum_in_model_multi_scale_error`, `test_enum_in_model_diamond_error` (Pyro's
//! `use_vindex` rows are one: vi indexes with `vindex`),
//! `test_enum_discrete_vectorized_num_particles`, `test_enum_recycling_chain`,
//! `test_enum_recycling_dbn` (exact loss; the `use_vindex` rows are one),
//! `test_enum_recycling_nested`, `test_enum_recycling_reentrant` (with
//! `test_enum_recycling_mutual_recursion` and the history-1 row of
//! `test_enum_recycling_reentrant_history`: in vi each recursive call is a `markov_context`;
//! Pyro's leaf probabilities of 1 make a false leaf impossible, which vi scores `−∞` where
//! Pyro's clamped Bernoulli stays finite, so that row is a `NonFinite` step here and the
//! structure runs with leaf probabilities 1/2), `test_enum_recycling_plate`,
//! `test_markov_history` (vi's error for a window too short: `Enumeration`, the site's
//! distribution varies along its own dim; Pyro's: "Enumeration dim conflict").
//!
//! Where vi disagrees with Pyro, the test asserts vi's behaviour and says so: tensors of rank
//! above 8 (enumeration, plate and event dims together), which candle's CPU kernels do not take
//! (`NdIter`'s `MAX_DIMS` = 8), where Pyro (torch) runs. vi stops with a typed `Enumeration`
//! error naming the site (or, from `vindex`, wrapped in `InProgram` with the last site)
//! instead of a panic inside candle: `iplate_iplate_trace_enum` (nine enumerated sites),
//! `enum_recycling_dbn_without_markov` (22), `enum_recycling_plate` and
//! `enum_recycling_reentrant` (Pyro's tree; a shallower one runs).
//!
//! Not applicable (no vi counterpart):
//! - of the enumeration tests (see above): `test_enum_sequential_in_model_error` (no
//!   sequential enumeration), `test_enum_recycling_grid` (`pyro.markov(keep=True)`, a chain
//!   whose steps stay visible when it is re-entered for the next row: vi's `markov` has no
//!   `keep`),
//!   `test_enum_recycling_interleave` (re-entering a `pyro.markov()` context object: vi's
//!   contexts are closures, not objects), the history-2 row of
//!   `test_enum_recycling_reentrant_history` (vi's `markov_context` has no history);
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
    Bernoulli, Beta, Categorical, Constraint, Dirichlet, Distribution, LogNormal,
    MultivariateNormal, Normal, OneHotCategorical,
};
use vi_infer::{
    Ctx, Elbo, InferError, Plate, StepReport, Svi, TermKind, TraceElbo, TraceEnumElbo,
    TraceGraphElbo, TraceMeanFieldElbo, vindex,
};

use crate::common::{Res, adam, assert_mentions, empty, host, normal_lp, s, step_error, t};

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
/// `TraceGraph_ELBO` row) succeeds too, with the same loss from the same draws, and under
/// `TraceEnumElbo` with the guide under `config_enumerate` (Pyro's `TraceEnum_ELBO` row), with
/// a finite loss.
fn assert_ok<TM, TG, E: Elbo + std::fmt::Debug>(
    model: impl FnMut(&mut Ctx<'_>) -> vi_infer::Result<TM> + Clone,
    guide: impl FnMut(&mut Ctx<'_>) -> vi_infer::Result<TG> + Clone,
    elbo: E,
) -> StepReport {
    assert_ok_rows(model, guide, elbo, true)
}

/// [`assert_ok`], the `TraceEnumElbo` row left out unless `enum_row`.
fn assert_ok_rows<TM, TG, E: Elbo + std::fmt::Debug>(
    model: impl FnMut(&mut Ctx<'_>) -> vi_infer::Result<TM> + Clone,
    guide: impl FnMut(&mut Ctx<'_>) -> vi_infer::Result<TG> + Clone,
    elbo: E,
    enum_row: bool,
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
        let enum_guide = enumerated_mut(guide.clone());
        let mut svi = Svi::new(model.clone(), guide, adam(1e-6), TraceGraphElbo::new()).seed(0);
        match svi.step() {
            Ok(g) => assert_eq!(g.loss, r.loss, "TraceGraphElbo's loss"),
            Err(e) => panic!("the TraceGraphElbo step should succeed, got: {e}"),
        }
        if !enum_row {
            return r;
        }
        let mut svi = Svi::new(model, enum_guide, adam(1e-6), TraceEnumElbo::new()).seed(0);
        match svi.step() {
            Ok(g) => assert!(g.loss.is_finite(), "TraceEnumElbo's loss {}", g.loss),
            Err(e) => panic!("the TraceEnumElbo step should succeed, got: {e}"),
        }
    }
    r
}

/// `guide` under `config_enumerate` (Pyro's `TraceEnum_ELBO` rows of the structural tests).
fn enumerated_mut<T>(
    mut guide: impl FnMut(&mut Ctx<'_>) -> vi_infer::Result<T>,
) -> impl FnMut(&mut Ctx<'_>) -> vi_infer::Result<T> {
    move |ctx: &mut Ctx<'_>| ctx.config_enumerate(|ctx| guide(ctx))
}

/// Whether `elbo` is `TraceElbo::new()` (by its settings, as `Debug` shows them).
fn is_default_trace_elbo(elbo: &impl std::fmt::Debug) -> bool {
    format!("{elbo:?}") == format!("{:?}", TraceElbo::new())
}

/// Pyro's `assert_error`: the SVI step fails; returns the error. Given a default `TraceElbo`,
/// `TraceGraphElbo` fails with the same message, and `TraceEnumElbo` (the guide under
/// `config_enumerate`) with an error of the same kind.
fn assert_error<TM, TG, E: Elbo + std::fmt::Debug>(
    model: impl FnMut(&mut Ctx<'_>) -> vi_infer::Result<TM> + Clone,
    guide: impl FnMut(&mut Ctx<'_>) -> vi_infer::Result<TG> + Clone,
    elbo: E,
) -> InferError {
    let graph = is_default_trace_elbo(&elbo);
    let e = step_error(model.clone(), guide.clone(), adam(1e-6), elbo);
    if graph {
        let enum_guide = enumerated_mut(guide.clone());
        let g = step_error(model.clone(), guide, adam(1e-6), TraceGraphElbo::new());
        assert_eq!(g.to_string(), e.to_string(), "TraceGraphElbo's error");
        let g = step_error(model, enum_guide, adam(1e-6), TraceEnumElbo::new());
        assert_eq!(
            std::mem::discriminant(g.root()),
            std::mem::discriminant(e.root()),
            "TraceEnumElbo's error: {g} (TraceElbo's: {e})"
        );
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

/// `x_i_j` for a 3 × 3 grid of loops (Pyro's two nested `pyro.plate` iterations), each
/// `Bernoulli(0.5)`: the model of `test_iplate_iplate_ok` and its rows.
fn grid_model(ctx: &mut Ctx) -> R {
    for i in 0..3 {
        for j in 0..3 {
            ctx.sample(&format!("x_{i}_{j}"), Bernoulli::from_probs(&s(0.5))?)?;
        }
    }
    Ok(())
}

/// The guide of [`grid_model`]: the same sites, row by row, `Bernoulli(p)`.
fn grid_guide(ctx: &mut Ctx) -> R {
    let p = param_p(ctx)?;
    for i in 0..3 {
        for j in 0..3 {
            ctx.sample(&format!("x_{i}_{j}"), Bernoulli::from_probs(&p)?)?;
        }
    }
    Ok(())
}

#[test]
fn iplate_iplate_ok() {
    // Pyro: max_plate_nesting 0 and inf (here: given as 0, and left to vi).
    let model = grid_model;
    let guide = grid_guide;
    // The `TraceEnum_ELBO` row: `iplate_iplate_trace_enum`.
    assert_ok_rows(model, guide, TraceElbo::new(), false);
    assert_ok(model, guide, TraceElbo::new().max_plate_nesting(0));
}

#[test]
fn iplate_iplate_swap_ok() {
    // The guide runs the loops the other way round: the site order differs, nothing else.
    let model = grid_model;
    let guide = |ctx: &mut Ctx| -> R {
        let p = param_p(ctx)?;
        for j in 0..3 {
            for i in 0..3 {
                ctx.sample(&format!("x_{i}_{j}"), Bernoulli::from_probs(&p)?)?;
            }
        }
        Ok(())
    };
    // The `TraceEnum_ELBO` row: `iplate_iplate_trace_enum`.
    assert_ok_rows(model, guide, TraceElbo::new(), false);
    assert_ok(model, guide, TraceElbo::new().max_plate_nesting(0));
}

/// The `TraceEnum_ELBO` row of `test_iplate_iplate_ok` (and `_swap_ok`): nine sites enumerated
/// in the guide, nine enumeration dims. Pyro runs it (torch takes 25 dims); vi stops with a
/// typed error instead: candle's CPU kernels take at most 8 dims (`NdIter`'s `MAX_DIMS`), so
/// the ninth site, `x_2_2` (dim -9), is an `Enumeration` error naming it.
#[test]
fn iplate_iplate_trace_enum() {
    let model = grid_model;
    let guide = grid_guide;
    let e = step_error(model, enumerated(&guide), adam(1e-6), TraceEnumElbo::new());
    assert_eq!(enum_sites(&e), ["x_2_2"]);
    assert_mentions(&e, &["dim -9", "rank 9", "at most 8 dims", "`markov`"]);
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
    let r = assert_ok(model, guide, elbo);
    // Pyro's `TraceEnum_ELBO` row (the guide under `config_enumerate`, nothing discrete to
    // enumerate): `TraceElbo`'s loss from the same draws.
    let elbo = TraceEnumElbo::new()
        .num_particles(10)
        .vectorize_particles(true)
        .max_plate_nesting(2);
    let e = assert_ok(model, enumerated(&guide), elbo);
    assert_close(e.loss, r.loss, 1e-12);
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

// Enumeration (`TraceEnumElbo`) ---------------------------------------------------------------

/// `program` with every discrete latent site marked for parallel enumeration (Pyro's
/// `config_enumerate(program)`), as a closure that can be copied.
fn enumerated<T>(
    program: &impl Fn(&mut Ctx<'_>) -> vi_infer::Result<T>,
) -> impl Fn(&mut Ctx<'_>) -> vi_infer::Result<T> + Copy + '_ {
    move |ctx: &mut Ctx<'_>| ctx.config_enumerate(|ctx| program(ctx))
}

/// `sample_boxed`, marked for enumeration when `mark` (Pyro's `infer={"enumerate":
/// "parallel"}` against `None`).
fn sample_marked(
    ctx: &mut Ctx,
    name: &str,
    d: Box<dyn Distribution>,
    mark: bool,
) -> vi_infer::Result<Tensor> {
    if mark {
        ctx.config_enumerate(|ctx| ctx.sample_boxed(name, d))
    } else {
        ctx.sample_boxed(name, d)
    }
}

/// The shape of `site`'s value in `tr`.
fn dims(tr: &vi_infer::Trace, site: &str) -> Vec<usize> {
    tr.get(site)
        .unwrap_or_else(|| panic!("no site {site}"))
        .value
        .dims()
        .to_vec()
}

/// `TraceEnumElbo` with `max_plate_nesting` when given (Pyro's `float("inf")`: left to vi's
/// probing run).
fn enum_elbo(nesting: Option<usize>) -> TraceEnumElbo {
    match nesting {
        Some(n) => TraceEnumElbo::new().max_plate_nesting(n),
        None => TraceEnumElbo::new(),
    }
}

/// The sites an `InferError::Enumeration` names (a panic for another error).
fn enum_sites(e: &InferError) -> Vec<String> {
    match e.root() {
        InferError::Enumeration { sites, .. } => sites.clone(),
        other => panic!("expected an enumeration error, got {other:?}"),
    }
}

/// `x ~ Bernoulli(0.5)` in the model, `Bernoulli(p)` in the guide (p = 0.5): q = p, so every
/// term `log q − log p` is 0, drawn or enumerated.
fn bern_pair() -> (impl Fn(&mut Ctx) -> R + Copy, impl Fn(&mut Ctx) -> R + Copy) {
    let model = |ctx: &mut Ctx| -> R {
        ctx.sample("x", Bernoulli::from_probs(&s(0.5))?)?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> R {
        let p = param_p(ctx)?;
        ctx.sample("x", Bernoulli::from_probs(&p)?)?;
        Ok(())
    };
    (model, guide)
}

#[test]
fn enum_discrete_misuse_warning() {
    // Pyro warns when the guide marks `x` for enumeration under an ELBO that does not
    // enumerate, and when nothing is marked under `TraceEnum_ELBO`. vi has no warnings: the
    // mark is ignored outside an enumerating ELBO (x drawn), and an unmarked site is drawn
    // under `TraceEnumElbo` (a score-function term); both are valid, and run. The
    // "sequential" rows have no vi counterpart.
    let model = bern_pair().0;
    for mark in [false, true] {
        let guide = move |ctx: &mut Ctx| -> R {
            let q = Box::new(Bernoulli::from_probs(&param_p(ctx)?)?);
            sample_marked(ctx, "x", q, mark)?;
            Ok(())
        };
        let runs = [
            assert_ok(model, guide, TraceElbo::new().max_plate_nesting(0)),
            assert_ok(model, guide, TraceGraphElbo::new().max_plate_nesting(0)),
            assert_ok(model, guide, TraceEnumElbo::new().max_plate_nesting(0)),
        ];
        for (i, r) in runs.iter().enumerate() {
            assert_close(r.loss, 0.0, 1e-12);
            let want: &[usize] = if mark && i == 2 { &[2] } else { &[] };
            assert_eq!(dims(&r.guide_trace, "x"), want, "mark {mark}, ELBO {i}");
        }
    }
}

#[test]
fn enum_discrete_single_ok() {
    let (model, guide) = bern_pair();
    let r = assert_ok(model, enumerated(&guide), TraceEnumElbo::new());
    assert_eq!(dims(&r.guide_trace, "x"), [2]);
    assert_eq!(dims(&r.model_trace, "x"), [2]);
    assert_close(r.loss, 0.0, 1e-12);
}

#[test]
fn enum_discrete_missing_config_warning() {
    // The guide not marked: Pyro warns when `strict_enumeration_warning` (vi has no such
    // warning) and runs otherwise; vi runs it, x drawn.
    let (model, guide) = bern_pair();
    let r = assert_ok(model, guide, TraceEnumElbo::new());
    assert_eq!(dims(&r.guide_trace, "x"), [] as [usize; 0]);
    assert_close(r.loss, 0.0, 1e-12);
}

#[test]
fn enum_discrete_single_single_ok() {
    let model = |ctx: &mut Ctx| -> R {
        ctx.sample("x", Bernoulli::from_probs(&s(0.5))?)?;
        ctx.sample("y", Bernoulli::from_probs(&s(0.5))?)?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> R {
        let p = param_p(ctx)?;
        ctx.sample("x", Bernoulli::from_probs(&p)?)?;
        ctx.sample("y", Bernoulli::from_probs(&p)?)?;
        Ok(())
    };
    let r = assert_ok(model, enumerated(&guide), TraceEnumElbo::new());
    // Each enumerated site on a dim of its own.
    assert_eq!(dims(&r.guide_trace, "x"), [2]);
    assert_eq!(dims(&r.guide_trace, "y"), [2, 1]);
    assert_close(r.loss, 0.0, 1e-12);
}

#[test]
fn enum_discrete_iplate_single_ok() {
    // Pyro's sequential plate of 10 subsampled to 5: five sites, each scaled by 10 / 5, in both
    // programs (the five indices, part of the site names, are fixed here: see the module doc).
    let program = |learn: bool| {
        move |ctx: &mut Ctx| -> R {
            let p = if learn { param_p(ctx)? } else { s(0.5) };
            ctx.scale(2.0, |ctx| {
                for i in 0..5 {
                    ctx.sample(&format!("x_{i}"), Bernoulli::from_probs(&p)?)?;
                }
                Ok(())
            })
        }
    };
    let guide = program(true);
    let r = assert_ok(program(false), enumerated(&guide), TraceEnumElbo::new());
    assert_eq!(dims(&r.guide_trace, "x_4"), [2, 1, 1, 1, 1]);
    assert_eq!(r.guide_trace.get("x_4").unwrap().scale, 2.0);
    assert_close(r.loss, 0.0, 1e-12);
}

#[test]
fn plate_enum_discrete_batch_ok() {
    let program = |learn: bool| {
        move |ctx: &mut Ctx| -> R {
            let p = if learn { param_p(ctx)? } else { s(0.5) };
            ctx.plate_with(plate("plate", 10, Some(5)), |ctx, ind| {
                ctx.sample_boxed("x", bern_by(&p, &[ind.dims()[0]])?)
            })?;
            Ok(())
        }
    };
    let guide = program(true);
    let r = assert_ok(program(false), enumerated(&guide), TraceEnumElbo::new());
    assert_eq!(dims(&r.guide_trace, "x"), [2, 1]);
    assert_close(r.loss, 0.0, 1e-12);
}

#[test]
fn plate_enum_discrete_no_discrete_vars_warning() {
    // Nothing to enumerate (Normal sites; Pyro's guide is marked "sequential", which has no
    // effect on them): Pyro warns when strict, vi runs, and with nothing enumerated
    // `TraceEnumElbo` is `TraceElbo`: the same loss from the same draws.
    let model = |ctx: &mut Ctx| -> R {
        ctx.plate_with(plate("plate", 10, Some(5)), |ctx, ind| {
            let d = Normal::new(&s(0.0), &s(1.0))?;
            ctx.sample_boxed("x", expand_by(&d, &[ind.dims()[0]])?)
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> R {
        let loc = ctx.param("loc", &s(1.0), Constraint::Real)?;
        let scale = ctx.param("scale", &s(2.0), Constraint::Positive)?;
        ctx.plate_with(plate("plate", 10, Some(5)), |ctx, ind| {
            let d = Normal::new(&loc, &scale)?;
            ctx.sample_boxed("x", expand_by(&d, &[ind.dims()[0]])?)
        })?;
        Ok(())
    };
    let r = assert_ok(model, enumerated(&guide), TraceEnumElbo::new());
    let want = assert_ok(model, guide, TraceElbo::new());
    assert_close(r.loss, want.loss, 1e-12);
}

#[test]
fn no_plate_enum_discrete_batch_error() {
    // Batch [5] outside any plate, the guide enumerated (Pyro: "invalid log_prob shape"): vi's
    // shape check, as under `TraceElbo` (`no_plate_batch_error`).
    let program = |learn: bool| {
        move |ctx: &mut Ctx| -> R {
            let p = if learn { param_p(ctx)? } else { s(0.5) };
            ctx.sample_boxed("x", bern_by(&p, &[5])?)?;
            Ok(())
        }
    };
    let guide = program(true);
    let e = assert_error(program(false), enumerated(&guide), TraceEnumElbo::new());
    assert!(
        matches!(e.root(), InferError::SiteShape { site, dim: -1, size: 5, .. } if site == "x"),
        "{e:?}"
    );
}

#[test]
fn enum_discrete_parallel_ok() {
    let (model, guide) = bern_pair();
    for nesting in [Some(0), Some(1), Some(2), None] {
        let r = assert_ok(model, enumerated(&guide), enum_elbo(nesting));
        // [2] and a 1 per plate dim (none found by vi's probing run for `None`).
        let mut want = vec![2];
        want.extend(std::iter::repeat_n(1, nesting.unwrap_or(0)));
        assert_eq!(dims(&r.guide_trace, "x"), want, "{nesting:?}");
        assert_eq!(dims(&r.model_trace, "x"), want, "{nesting:?}");
        assert_close(r.loss, 0.0, 1e-12);
    }
}

#[test]
fn enum_discrete_parallel_nested_ok() {
    let model = |ctx: &mut Ctx| -> R {
        ctx.sample("x2", OneHotCategorical::from_probs(&t(&[0.5; 2]))?)?;
        ctx.sample("x3", OneHotCategorical::from_probs(&t(&[1.0 / 3.0; 3]))?)?;
        Ok(())
    };
    for nesting in [Some(0), Some(1), Some(2), None] {
        let r = assert_ok(model, enumerated(&model), enum_elbo(nesting));
        let ones = std::iter::repeat_n(1, nesting.unwrap_or(0));
        let x2: Vec<usize> = [2].into_iter().chain(ones.clone()).chain([2]).collect();
        let x3: Vec<usize> = [3, 1].into_iter().chain(ones).chain([3]).collect();
        assert_eq!(dims(&r.model_trace, "x2"), x2, "{nesting:?}");
        assert_eq!(dims(&r.model_trace, "x3"), x3, "{nesting:?}");
        assert_close(r.loss, 0.0, 1e-12);
    }
}

#[test]
fn enumerate_parallel_plate_ok() {
    // Rows (None, no expand) and ("parallel", no expand); the "sequential", `expand=True` and
    // `num_samples` rows have no vi counterpart.
    let model = |ctx: &mut Ctx| -> R {
        let cpu = Device::Cpu;
        let p2 = t(&[0.5; 2]);
        let p34 = Tensor::full(0.25f64, (3, 4), &cpu)?;
        let p536 = Tensor::full(1.0f64 / 6.0, (5, 3, 6), &cpu)?;
        ctx.sample("x2", Categorical::from_probs(&p2)?)?;
        ctx.plate("outer", 3, |ctx| {
            ctx.sample("x34", Categorical::from_probs(&p34)?)?;
            ctx.plate("inner", 5, |ctx| {
                ctx.sample("x536", Categorical::from_probs(&p536)?)
            })
        })?;
        Ok(())
    };
    let elbo = || TraceEnumElbo::new().max_plate_nesting(2);
    let check = |r: &StepReport, want: [&[usize]; 3]| {
        for (site, w) in ["x2", "x34", "x536"].into_iter().zip(want) {
            assert_eq!(dims(&r.model_trace, site), w, "{site}");
        }
        assert_close(r.loss, 0.0, 1e-12);
    };
    // Drawn: every dim a plate dim.
    check(&assert_ok(model, model, elbo()), [&[], &[3], &[5, 3]]);
    // Enumerated: enumeration dims left of the plates' placeholders.
    check(
        &assert_ok(model, enumerated(&model), elbo()),
        [&[2, 1, 1], &[4, 1, 1, 1], &[6, 1, 1, 1, 1]],
    );
}

#[test]
fn enum_discrete_plate_dependency_warning() {
    // `y` outside the plate reads `x` (enumerated inside it) through `x.mean()`, which loses
    // the enumeration dim. Pyro warns with validation on (its check is by site order) and
    // runs otherwise; vi finds dependencies through the enumeration dims only, so this one
    // runs in every row (rows: x marked or not, validation on or off, max_plate_nesting 1 or
    // inf; "sequential" has no vi counterpart). Where the dependency keeps the dim (below),
    // vi's error replaces Pyro's warning.
    for mark in [false, true] {
        for validate in [true, false] {
            for nesting in [Some(1), None] {
                let model = move |ctx: &mut Ctx| -> R {
                    ctx.sample_enum("w", Bernoulli::from_probs(&s(0.5))?)?;
                    let x = ctx.plate_with(plate("plate", 10, Some(5)), |ctx, _| {
                        let d = Box::new(Bernoulli::from_probs(&t(&[0.5; 5]))?);
                        sample_marked(ctx, "x", d, mark)
                    })?;
                    ctx.sample("y", Bernoulli::from_probs(&x.mean_all()?)?)?;
                    Ok(())
                };
                let r = vi_dist::with_validation(validate, || {
                    assert_ok(model, model, enum_elbo(nesting))
                });
                let want: &[usize] = if mark { &[2, 1, 1] } else { &[5] };
                assert_eq!(dims(&r.guide_trace, "x"), want);
                assert_close(r.loss, 0.0, 1e-12);
            }
        }
    }
    // vi's stricter case: y reads x's mean over the plate only, keeping x's enumeration dim.
    let model = |ctx: &mut Ctx| -> R {
        let x = ctx.plate_with(plate("plate", 10, Some(5)), |ctx, _| {
            ctx.sample_enum("x", Bernoulli::from_probs(&t(&[0.5; 5]))?)
        })?;
        ctx.sample("y", Bernoulli::from_probs(&x.mean_keepdim(1)?)?)?;
        Ok(())
    };
    let e = assert_error(model, model, TraceEnumElbo::new().max_plate_nesting(1));
    assert_eq!(enum_sites(&e), ["y", "x"]);
    assert_mentions(&e, &["outside its plates", "plate"]);
}

/// The model of `test_enum_discrete_iplate_plate_dependency_ok`: `w` enumerated; three
/// iterations of a sequential plate, each with a global `y_i` and an `x_i` in a plate of 10
/// subsampled to 5 (the same subsample each time), marked when `mark`.
fn iplate_plate_model(mark: bool) -> impl Fn(&mut Ctx) -> R + Copy {
    move |ctx: &mut Ctx| -> R {
        ctx.sample_enum("w", Bernoulli::from_probs(&s(0.5))?)?;
        for i in 0..3 {
            ctx.sample(&format!("y_{i}"), Bernoulli::from_probs(&s(0.5))?)?;
            ctx.plate_with(plate("plate", 10, Some(5)), |ctx, _| {
                let d = Box::new(Bernoulli::from_probs(&t(&[0.5; 5]))?);
                sample_marked(ctx, &format!("x_{i}"), d, mark)
            })?;
        }
        Ok(())
    }
}

#[test]
fn enum_discrete_iplate_plate_dependency_ok() {
    // Rows: x_i marked or not, max_plate_nesting 1 or inf ("sequential": no vi counterpart).
    for mark in [false, true] {
        for nesting in [Some(1), None] {
            let model = iplate_plate_model(mark);
            let r = assert_ok(model, model, enum_elbo(nesting));
            assert_close(r.loss, 0.0, 1e-12);
        }
    }
}

#[test]
fn enum_discrete_iplates_plate_dependency_warning() {
    // Two sequential plates: `x_i` in the vectorised plate (marked or not), then global `y_i`
    // that depend on nothing. Pyro warns with validation on and a mark (by site order);
    // vi runs every row.
    for mark in [false, true] {
        for validate in [true, false] {
            for nesting in [Some(1), None] {
                let model = move |ctx: &mut Ctx| -> R {
                    ctx.sample_enum("w", Bernoulli::from_probs(&s(0.5))?)?;
                    for i in 0..2 {
                        ctx.plate_with(plate("plate", 10, Some(5)), |ctx, _| {
                            let d = Box::new(Bernoulli::from_probs(&t(&[0.5; 5]))?);
                            sample_marked(ctx, &format!("x_{i}"), d, mark)
                        })?;
                    }
                    for i in 0..2 {
                        ctx.sample(&format!("y_{i}"), Bernoulli::from_probs(&s(0.5))?)?;
                    }
                    Ok(())
                };
                let r = vi_dist::with_validation(validate, || {
                    assert_ok(model, model, enum_elbo(nesting))
                });
                assert_close(r.loss, 0.0, 1e-12);
            }
        }
    }
}

#[test]
fn enum_discrete_plates_dependency_ok() {
    // Pyro's `enumerate_` parameter is not used by its model (only `w` is marked): one run.
    let model = |ctx: &mut Ctx| -> R {
        let half = || Bernoulli::from_probs(&s(0.5));
        let x_plate = || plate("x_plate", 10, Some(5)).dim(-1);
        let y_plate = || plate("y_plate", 11, Some(6)).dim(-2);
        ctx.sample_enum("w", half()?)?;
        ctx.sample("a", half()?)?;
        ctx.plate_with(x_plate(), |ctx, _| {
            ctx.sample("b", Bernoulli::from_probs(&t(&[0.5; 5]))?)
        })?;
        ctx.plate_with(y_plate(), |ctx, _| {
            let p = Tensor::full(0.5f64, (6, 1), &Device::Cpu)?;
            ctx.sample("c", Bernoulli::from_probs(&p)?)
        })?;
        ctx.plate_with(x_plate(), |ctx, _| {
            ctx.plate_with(y_plate(), |ctx, _| {
                let p = Tensor::full(0.5f64, (6, 5), &Device::Cpu)?;
                ctx.sample("d", Bernoulli::from_probs(&p)?)
            })
        })?;
        Ok(())
    };
    let r = assert_ok(model, model, TraceEnumElbo::new().max_plate_nesting(2));
    assert_eq!(dims(&r.guide_trace, "w"), [2, 1, 1]);
    assert_eq!(dims(&r.guide_trace, "d"), [6, 5]);
    assert_close(r.loss, 0.0, 1e-12);
}

#[test]
fn enum_discrete_non_enumerated_plate_ok() {
    // `b` (marked or not) depends on `a`, drawn in another plate and never enumerated.
    for mark in [false, true] {
        let model = move |ctx: &mut Ctx| -> R {
            ctx.sample_enum("w", Bernoulli::from_probs(&s(0.5))?)?;
            let a = ctx.plate("non_enum", 2, |ctx| {
                ctx.sample("a", Bernoulli::from_probs(&t(&[0.5; 2]))?)
            })?;
            let p = a.sum_all()?.affine(0.25, 0.25)?; // (1 + Σa) / (2 + 2)
            ctx.plate("enum_1", 3, |ctx| {
                sample_marked(ctx, "b", bern_by(&p, &[3])?, mark)
            })?;
            Ok(())
        };
        let r = vi_dist::with_validation(true, || {
            assert_ok(model, model, TraceEnumElbo::new().max_plate_nesting(1))
        });
        let want: &[usize] = if mark { &[2, 1, 1] } else { &[3] };
        assert_eq!(dims(&r.guide_trace, "b"), want);
        assert_close(r.loss, 0.0, 1e-12);
    }
}

/// The model of `test_enum_discrete_plate_shape_broadcasting_ok` and
/// `test_enum_discrete_vectorized_num_particles`: `b ~ Beta(1.1, 1.1)` in `x_plate` (10,
/// subsampled 5, dim −1), `c ~ Bernoulli(0.5)` in `y_plate` (11, subsampled 6, dim −2), `d ~
/// Bernoulli(b)` in both; inside a plate of 50 particles at dim −3 when `particles`.
fn broadcasting_model(particles: bool) -> impl Fn(&mut Ctx) -> R + Copy {
    move |ctx: &mut Ctx| -> R {
        let body = |ctx: &mut Ctx| -> R {
            let x_plate = || plate("x_plate", 10, Some(5)).dim(-1);
            let y_plate = || plate("y_plate", 11, Some(6)).dim(-2);
            let b = ctx.plate_with(x_plate(), |ctx, _| {
                ctx.sample("b", Beta::new(&s(1.1), &s(1.1))?)
            })?;
            ctx.plate_with(y_plate(), |ctx, _| {
                ctx.sample("c", Bernoulli::from_probs(&s(0.5))?)
            })?;
            ctx.plate_with(x_plate(), |ctx, _| {
                ctx.plate_with(y_plate(), |ctx, _| {
                    ctx.sample("d", Bernoulli::from_probs(&b)?)
                })
            })?;
            Ok(())
        };
        if particles {
            ctx.plate_dim("num_particles", 50, -3, body)
        } else {
            body(ctx)
        }
    }
}

/// `b`, `c` and `d`'s shapes in the model's trace.
fn bcd_dims(r: &StepReport) -> [Vec<usize>; 3] {
    ["b", "c", "d"].map(|site| dims(&r.model_trace, site))
}

#[test]
fn enum_discrete_plate_shape_broadcasting_ok() {
    // Rows (None, expand) and ("parallel", no expand); the "sequential", `expand=True` and
    // `num_samples` rows have no vi counterpart.
    let model = broadcasting_model(true);
    let elbo = || TraceEnumElbo::new().max_plate_nesting(3);
    let r = assert_ok(model, model, elbo());
    let want: [Vec<usize>; 3] = [vec![50, 1, 5], vec![50, 6, 1], vec![50, 6, 5]];
    assert_eq!(bcd_dims(&r), want);
    assert_close(r.loss, 0.0, 1e-12);
    let r = assert_ok(model, enumerated(&model), elbo());
    let want: [Vec<usize>; 3] = [vec![50, 1, 5], vec![2, 1, 1, 1], vec![2, 1, 1, 1, 1]];
    assert_eq!(bcd_dims(&r), want);
    assert_close(r.loss, 0.0, 1e-12);
}

#[test]
fn enum_discrete_vectorized_num_particles() {
    // Rows (None) and ("parallel", no expand), each with 1 and 50 vectorised particles; the
    // model marked, used as its own guide. The other rows have no vi counterpart.
    let model = broadcasting_model(false);
    let marked = enumerated(&model);
    for n in [1, 50] {
        let elbo = || {
            TraceEnumElbo::new()
                .max_plate_nesting(2)
                .num_particles(n)
                .vectorize_particles(true)
        };
        let r = assert_ok(model, model, elbo());
        let want: [Vec<usize>; 3] = if n > 1 {
            [vec![n, 1, 5], vec![n, 6, 1], vec![n, 6, 5]]
        } else {
            [vec![5], vec![6, 1], vec![6, 5]]
        };
        assert_eq!(bcd_dims(&r), want, "None, {n} particles");
        assert_close(r.loss, 0.0, 1e-12);
        let r = assert_ok(marked, marked, elbo());
        let want: [Vec<usize>; 3] = if n > 1 {
            [vec![n, 1, 5], vec![2, 1, 1, 1], vec![2, 1, 1, 1, 1]]
        } else {
            [vec![5], vec![2, 1, 1], vec![2, 1, 1, 1]]
        };
        assert_eq!(bcd_dims(&r), want, "parallel, {n} particles");
        assert_close(r.loss, 0.0, 1e-12);
    }
}

/// `p + v / 2` (the probabilities of `test_enum_in_model_*`).
fn p_plus_half(p: &Tensor, v: &Tensor) -> vi_infer::Result<Tensor> {
    Ok(v.affine(0.5, 0.0)?.broadcast_add(p)?)
}

#[test]
fn enum_in_model_ok() {
    // The chain a → b → … → g: b and e enumerated in the guide, c and f in the model, a and d
    // drawn, g observed.
    let model = |ctx: &mut Ctx| -> R {
        let p = ctx.param("p", &s(0.25), Constraint::Real)?;
        let bern = |v: &Tensor| -> vi_infer::Result<Bernoulli> {
            Ok(Bernoulli::from_probs(&p_plus_half(&p, v)?)?)
        };
        let a = ctx.sample("a", Bernoulli::from_probs(&p)?)?;
        let b = ctx.sample("b", bern(&a)?)?;
        let c = ctx.sample_enum("c", bern(&b)?)?;
        let d = ctx.sample("d", bern(&c)?)?;
        let e = ctx.sample("e", bern(&d)?)?;
        let f = ctx.sample_enum("f", bern(&e)?)?;
        ctx.observe("g", bern(&f)?, &s(0.0))?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> R {
        let p = ctx.param("p", &s(0.25), Constraint::Real)?;
        let bern = |v: &Tensor| -> vi_infer::Result<Bernoulli> {
            Ok(Bernoulli::from_probs(&p_plus_half(&p, v)?)?)
        };
        let a = ctx.sample("a", Bernoulli::from_probs(&p)?)?;
        let b = ctx.sample_enum("b", bern(&a)?)?;
        let d = ctx.sample("d", bern(&b)?)?;
        ctx.sample_enum("e", bern(&d)?)?;
        Ok(())
    };
    let r = assert_ok(model, guide, TraceEnumElbo::new().max_plate_nesting(0));
    let want: [&[usize]; 7] = [&[], &[2], &[2, 1, 1], &[2], &[2, 1], &[2, 1, 1, 1], &[]];
    for (site, w) in ["a", "b", "c", "d", "e", "f", "g"].into_iter().zip(want) {
        assert_eq!(dims(&r.model_trace, site), w, "{site}");
    }
}

#[test]
fn enum_in_model_plate_ok() {
    // As `enum_in_model_ok`, c to g in a plate of 3.
    let model = |ctx: &mut Ctx| -> R {
        let p = ctx.param("p", &s(0.25), Constraint::Real)?;
        let bern = |v: &Tensor| -> vi_infer::Result<Bernoulli> {
            Ok(Bernoulli::from_probs(&p_plus_half(&p, v)?)?)
        };
        let a = ctx.sample("a", Bernoulli::from_probs(&p)?)?;
        let b = ctx.sample("b", bern(&a)?)?;
        ctx.plate("data", 3, |ctx| {
            let c = ctx.sample_enum("c", bern(&b)?)?;
            let d = ctx.sample("d", bern(&c)?)?;
            let e = ctx.sample("e", bern(&d)?)?;
            let f = ctx.sample_enum("f", bern(&e)?)?;
            ctx.observe("g", bern(&f)?, &t(&[0.0; 3]))
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> R {
        let p = ctx.param("p", &s(0.25), Constraint::Real)?;
        let bern = |v: &Tensor| -> vi_infer::Result<Bernoulli> {
            Ok(Bernoulli::from_probs(&p_plus_half(&p, v)?)?)
        };
        let a = ctx.sample("a", Bernoulli::from_probs(&p)?)?;
        let b = ctx.sample_enum("b", bern(&a)?)?;
        ctx.plate("data", 3, |ctx| {
            let d = ctx.sample("d", bern(&b)?)?;
            ctx.sample_enum("e", bern(&d)?)
        })?;
        Ok(())
    };
    let r = assert_ok(model, guide, TraceEnumElbo::new().max_plate_nesting(1));
    let want: [&[usize]; 7] = [
        &[],
        &[2, 1],
        &[2, 1, 1, 1],
        &[2, 3],
        &[2, 1, 1],
        &[2, 1, 1, 1, 1],
        &[3],
    ];
    for (site, w) in ["a", "b", "c", "d", "e", "f", "g"].into_iter().zip(want) {
        assert_eq!(dims(&r.model_trace, site), w, "{site}");
    }
}

#[test]
fn enum_in_model_plate_reuse_ok() {
    // Two global sites enumerated in the model, each with data in a plate at dim −1 (the plate
    // dim reused): −log Σ_a p(a) Π p(b | a) − log Σ_c p(c) Π p(d | c).
    let model = |ctx: &mut Ctx| -> R {
        ctx.config_enumerate(|ctx| {
            let p = ctx.param("p", &t(&[0.2, 0.8]), Constraint::Real)?;
            let a = ctx.sample("a", Bernoulli::from_probs(&s(0.3))?)?;
            ctx.plate("b_axis", 2, |ctx| {
                let d = Bernoulli::from_probs(&vindex(&p, &[&a])?)?;
                ctx.observe("b", d, &t(&[0.0, 1.0]))
            })?;
            let c = ctx.sample("c", Bernoulli::from_probs(&s(0.3))?)?;
            ctx.plate("c_axis", 2, |ctx| {
                let d = Bernoulli::from_probs(&vindex(&p, &[&c])?)?;
                ctx.observe("d", d, &t(&[0.0, 0.0]))
            })?;
            Ok(())
        })
    };
    let r = assert_ok(model, empty, TraceEnumElbo::new().max_plate_nesting(1));
    let (p, prior) = ([0.2, 0.8], [0.7, 0.3]);
    let marginal = |data: [f64; 2]| -> f64 {
        (0..2)
            .map(|k| {
                let lik: f64 = data
                    .iter()
                    .map(|&y| if y == 1.0 { p[k] } else { 1.0 - p[k] })
                    .product();
                prior[k] * lik
            })
            .sum()
    };
    let want = -(marginal([0.0, 1.0]).ln() + marginal([0.0, 0.0]).ln());
    assert_close(r.loss, want, 1e-12);
}

#[test]
fn enum_in_model_multi_scale_error() {
    // Pyro: "Expected all enumerated sample sites to share a common poutine.scale".
    let model = |ctx: &mut Ctx| -> R {
        ctx.config_enumerate(|ctx| {
            let p = ctx.param("p", &t(&[0.2, 0.8]), Constraint::Real)?;
            let x = ctx.sample("x", Bernoulli::from_probs(&s(0.3))?)?;
            ctx.scale(2.0, |ctx| {
                let d = Bernoulli::from_probs(&vindex(&p, &[&x])?)?;
                ctx.observe("y", d, &s(0.0))
            })?;
            Ok(())
        })
    };
    let e = assert_error(model, empty, TraceEnumElbo::new().max_plate_nesting(0));
    assert_eq!(enum_sites(&e), ["x", "y"]);
    assert_mentions(&e, &["different scales"]);
}

#[test]
fn enum_in_model_diamond_error() {
    // `d` in two independent plates depends on `b` and `c`, enumerated one in each (Pyro:
    // "Expected tree-structured plate nesting"). Pyro's rows index with `Vindex` or by hand;
    // vi has one spelling, `vindex`.
    let model = |ctx: &mut Ctx| -> R {
        ctx.config_enumerate(|ctx| {
            let cpu = Device::Cpu;
            let pa = ctx.param("probs_a", &t(&[0.45, 0.55]), Constraint::Simplex)?;
            let b0 = Tensor::new(&[[0.6f64, 0.4], [0.4, 0.6]], &cpu)?;
            let pb = ctx.param("probs_b", &b0, Constraint::Simplex)?;
            let c0 = Tensor::new(&[[0.75f64, 0.25], [0.55, 0.45]], &cpu)?;
            let pc = ctx.param("probs_c", &c0, Constraint::Simplex)?;
            let d0 = Tensor::new(
                &[[[0.4f64, 0.6], [0.3, 0.7]], [[0.3, 0.7], [0.2, 0.8]]],
                &cpu,
            )?;
            let pd = ctx.param("probs_d", &d0, Constraint::Simplex)?;
            let data = Tensor::new(&[[0.0f64, 1.0], [0.0, 0.0]], &cpu)?;
            let b_axis = || plate("b_axis", 2, None).dim(-1);
            let c_axis = || plate("c_axis", 2, None).dim(-2);
            let a = ctx.sample("a", Categorical::from_probs(&pa)?)?;
            let b = ctx.plate_with(b_axis(), |ctx, _| {
                ctx.sample("b", Categorical::from_probs(&vindex(&pb, &[&a])?)?)
            })?;
            let c = ctx.plate_with(c_axis(), |ctx, _| {
                ctx.sample("c", Categorical::from_probs(&vindex(&pc, &[&a])?)?)
            })?;
            ctx.plate_with(b_axis(), |ctx, _| {
                ctx.plate_with(c_axis(), |ctx, _| {
                    let probs = vindex(&pd, &[&b, &c])?;
                    ctx.observe("d", Categorical::from_probs(&probs)?, &data)
                })
            })?;
            Ok(())
        })
    };
    let e = assert_error(model, empty, TraceEnumElbo::new().max_plate_nesting(2));
    let sites = enum_sites(&e);
    assert!(
        sites.iter().any(|s| s == "b") && sites.iter().any(|s| s == "c"),
        "{e}"
    );
    assert_mentions(&e, &["tree-structured"]);
}

#[test]
fn enum_recycling_chain() {
    // 100 steps in `markov`: two dims for the whole chain. Nothing observed: the marginal is 1.
    let model = |ctx: &mut Ctx| -> R {
        ctx.config_enumerate(|ctx| {
            let p0 = Tensor::new(&[[0.2f64, 0.8], [0.1, 0.9]], &Device::Cpu)?;
            let p = ctx.param("p", &p0, Constraint::Real)?;
            let mut x = s(0.0);
            ctx.markov(0..100, |ctx, t| {
                x = ctx.sample(
                    &format!("x_{t}"),
                    Categorical::from_probs(&vindex(&p, &[&x])?)?,
                )?;
                assert!(x.rank() <= 2, "x_{t}: {:?}", x.dims());
                Ok(())
            })?;
            Ok(())
        })
    };
    let r = assert_ok(model, empty, TraceEnumElbo::new().max_plate_nesting(0));
    assert_close(r.loss, 0.0, 1e-10);
}

/// The model of `test_enum_recycling_dbn`: x_t → x_{t+1} (3 states), y_t (2 values), z_t |
/// x_t, y_t observed; every table uniform (Pyro's unnormalised ones), so p(z_t = 0) = 1/4 and
/// the loss is T log 4. With `markov` (100 steps) or without (11 steps, a dim per site).
/// Pyro's rows with and without `Vindex` are one here.
fn dbn(markov: bool) -> impl Fn(&mut Ctx) -> R + Copy {
    move |ctx: &mut Ctx| -> R {
        ctx.config_enumerate(|ctx| {
            let cpu = Device::Cpu;
            let p = ctx.param(
                "p",
                &Tensor::ones((3, 3), DType::F64, &cpu)?,
                Constraint::Real,
            )?;
            let q = ctx.param("q", &Tensor::ones(2, DType::F64, &cpu)?, Constraint::Real)?;
            let r0 = Tensor::ones((3, 2, 4), DType::F64, &cpu)?;
            let r = ctx.param("r", &r0, Constraint::Real)?;
            let mut x = s(0.0);
            let mut step = |ctx: &mut Ctx, t: usize| -> R {
                let d = Categorical::from_probs(&vindex(&p, &[&x])?)?;
                x = ctx.sample(&format!("x_{t}"), d)?;
                let y = ctx.sample(&format!("y_{t}"), Categorical::from_probs(&q)?)?;
                let probs = vindex(&r, &[&x, &y])?;
                ctx.observe(&format!("z_{t}"), Categorical::from_probs(&probs)?, &s(0.0))?;
                Ok(())
            };
            if markov {
                ctx.markov(0..100, step)?;
            } else {
                for t in 0..11 {
                    step(ctx, t)?;
                }
            }
            Ok(())
        })
    }
}

#[test]
fn enum_recycling_dbn() {
    let r = assert_ok(dbn(true), empty, TraceEnumElbo::new().max_plate_nesting(0));
    assert_close(r.loss, 100.0 * 4f64.ln(), 1e-10);
}

/// vi disagrees with Pyro here: without `markov` the 22 sites take 22 enumeration dims, which
/// torch (Pyro) runs (it goes to 25), but candle's CPU kernels take at most 8 (`NdIter`'s
/// `MAX_DIMS`). vi stops with a typed error instead: `y_3` takes dim -8, and `vindex` of the
/// table of `z_3` on `x_3` and `y_3` would be of rank 9 (8 dims and the table's last), an
/// `Enumeration` error in the model after `y_3`. (With `markov`: `enum_recycling_dbn`.)
#[test]
fn enum_recycling_dbn_without_markov() {
    let e = step_error(
        dbn(false),
        empty,
        adam(1e-6),
        TraceEnumElbo::new().max_plate_nesting(0),
    );
    assert!(
        matches!(&e, InferError::InProgram { program: "model", last_site: Some(s), .. } if s == "y_3"),
        "{e}"
    );
    assert!(enum_sites(&e).is_empty(), "{e}");
    assert_mentions(&e, &["vindex", "rank 9", "at most 8 dims", "`markov`"]);
}

#[test]
fn enum_recycling_nested() {
    // x, then a chain y_0..y_9, each y_i starting a chain z_i0..z_i9: nested `markov`.
    let model = |ctx: &mut Ctx| -> R {
        ctx.config_enumerate(|ctx| {
            let ones = Tensor::ones((3, 3), DType::F64, &Device::Cpu)?;
            let p = ctx.param("p", &ones, Constraint::Real)?;
            let x = ctx.sample("x", Categorical::from_probs(&p.get(0)?)?)?;
            let mut y = x;
            ctx.markov(0..10, |ctx, i| {
                y = ctx.sample(
                    &format!("y_{i}"),
                    Categorical::from_probs(&vindex(&p, &[&y])?)?,
                )?;
                let mut z = y.clone();
                ctx.markov(0..10, |ctx, j| {
                    let d = Categorical::from_probs(&vindex(&p, &[&z])?)?;
                    z = ctx.sample(&format!("z_{i}_{j}"), d)?;
                    Ok(())
                })?;
                Ok(())
            })?;
            Ok(())
        })
    };
    let r = assert_ok(model, empty, TraceEnumElbo::new().max_plate_nesting(0));
    assert_close(r.loss, 0.0, 1e-10);
    // Recycled: at most five dims among the 111 sites (z_1_1 sees x, y_0, y_1 and z_1_0).
    let widest = r.model_trace.sites().map(|s| s.value.rank()).max().unwrap();
    assert!(widest <= 5, "a value of rank {widest}");
}

/// The data of `test_enum_recycling_reentrant`: a tree of booleans.
#[derive(Clone)]
enum Tree {
    Leaf(bool),
    Node(Vec<Tree>),
}

impl Tree {
    /// `(True, False)`, then five times `(data, data, False)`.
    fn pyro_data() -> Tree {
        Tree::nested(5)
    }

    /// `(True, False)`, then `k` times `(data, data, False)`.
    fn nested(k: usize) -> Tree {
        let mut data = Tree::Node(vec![Tree::Leaf(true), Tree::Leaf(false)]);
        for _ in 0..k {
            data = Tree::Node(vec![data.clone(), data, Tree::Leaf(false)]);
        }
        data
    }

    /// The numbers of leaves that are true and false.
    fn leaves(&self) -> (usize, usize) {
        match self {
            Tree::Leaf(true) => (1, 0),
            Tree::Leaf(false) => (0, 1),
            Tree::Node(children) => children.iter().fold((0, 0), |(t, f), c| {
                let (a, b) = c.leaves();
                (t + a, f + b)
            }),
        }
    }
}

/// The recursive model of `test_enum_recycling_reentrant`: each call in a `markov_context`
/// of its own (Pyro's `@pyro.markov` function); a branch's children each get an enumerated
/// state (10 values) given the parent's, a leaf is observed given its parent's state, with
/// probability `leaf_p` whatever the state.
fn reentrant(ctx: &mut Ctx, data: &Tree, state: &Tensor, address: &str, leaf_p: f64) -> R {
    ctx.markov_context(|ctx| match data {
        Tree::Leaf(v) => {
            let p0 = Tensor::full(leaf_p, 10, &Device::Cpu)?;
            let p = ctx.param("p_leaf", &p0, Constraint::Real)?;
            let obs = s(if *v { 1.0 } else { 0.0 });
            let d = Bernoulli::from_probs(&vindex(&p, &[state])?)?;
            ctx.observe(&format!("leaf_{address}"), d, &obs)?;
            Ok(())
        }
        Tree::Node(children) => {
            let ones = Tensor::ones((10, 10), DType::F64, &Device::Cpu)?;
            let p = ctx.param("p_branch", &ones, Constraint::Real)?;
            for (branch, letter) in children.iter().zip('a'..='g') {
                let address = format!("{address}{letter}");
                let d = Categorical::from_probs(&vindex(&p, &[state])?)?;
                let next = ctx.sample_enum(&format!("branch_{address}"), d)?;
                reentrant(ctx, branch, &next, &address, leaf_p)?;
            }
            Ok(())
        }
    })
}

/// vi disagrees with Pyro here: Pyro's `@pyro.markov` function re-enters one context, whose
/// history 1 lets a branch see its parent only; vi's `markov_context` opens a context per call
/// (Pyro's `with pyro.markov():`), and a site sees every enclosing one, so the dims grow with
/// the depth of the tree. On Pyro's tree they pass the 8 dims candle's CPU kernels take
/// (`NdIter`'s `MAX_DIMS`), where Pyro (torch) runs: vi stops with a typed error instead, an
/// `Enumeration` error naming the first branch site past the limit. A shallower tree runs.
#[test]
fn enum_recycling_reentrant() {
    // Also `test_enum_recycling_mutual_recursion` (two `pyro.markov` functions calling each
    // other: in vi the same recursion, each call in a `markov_context`) and the history-1 row
    // of `test_enum_recycling_reentrant_history`. 157 enumerated branch sites.
    let elbo = || TraceEnumElbo::new().max_plate_nesting(0);
    let data = Tree::pyro_data();
    for leaf_p in [1.0, 0.5] {
        let model = |ctx: &mut Ctx| -> R { reentrant(ctx, &data, &s(0.0), "", leaf_p) };
        let e = step_error(model, empty, adam(1e-6), elbo());
        assert_eq!(enum_sites(&e), ["branch_aaabbb"], "{e}");
        assert_mentions(&e, &["dim -9", "rank 9", "at most 8 dims", "`markov`"]);
    }
    // The same structure, shallower (3 wraps instead of 5).
    let data = Tree::nested(3);
    // Pyro's leaf probabilities are ones: a false leaf has probability 0. Pyro's Bernoulli
    // clamps it (a finite log-probability); vi's is −∞ (vi-dist's exact `ln 0`), so vi's step
    // is `NonFinite`.
    let model = |ctx: &mut Ctx| -> R { reentrant(ctx, &data, &s(0.0), "", 1.0) };
    let e = step_error(model, empty, adam(1e-6), elbo());
    assert!(matches!(e.root(), InferError::NonFinite { .. }), "{e}");
    // With leaf probabilities 1/2 it runs; the branches sum to 1, so the loss is
    // (number of leaves) · log 2.
    let model = |ctx: &mut Ctx| -> R { reentrant(ctx, &data, &s(0.0), "", 0.5) };
    let r = assert_ok(model, empty, elbo());
    let (trues, falses) = data.leaves();
    assert_close(r.loss, (trues + falses) as f64 * 2f64.ln(), 1e-10);
    let widest = r.model_trace.sites().map(|s| s.value.rank()).max().unwrap();
    assert!(widest <= 8, "a value of rank {widest}");
}

/// vi disagrees with Pyro here: the global sites and the chains' recycled dims reach dim -8
/// (six enumeration dims left of the two plate dims) at `x_1`, and the `vindex` of the
/// transition table on it for `x_2` would be of rank 9, which Pyro (torch) runs but candle's CPU
/// kernels do not (at most 8 dims, `NdIter`'s `MAX_DIMS`). vi stops with a typed error instead:
/// an `Enumeration` error in the model after `x_1`.
#[test]
fn enum_recycling_plate() {
    // Chains in plates and outside, the plates' sites depending on the global `a` and (in
    // `plate_x` × `plate_z`) on `b`. Nothing observed: the marginal is 1.
    let model = |ctx: &mut Ctx| -> R {
        ctx.config_enumerate(|ctx| {
            let cpu = Device::Cpu;
            let p = ctx.param(
                "p",
                &Tensor::ones((3, 3), DType::F64, &cpu)?,
                Constraint::Real,
            )?;
            let q = ctx.param("q", &t(&[0.5, 0.5]), Constraint::Real)?;
            let plate_x = || plate("plate_x", 2, None).dim(-1);
            let plate_y = || plate("plate_y", 3, None).dim(-1);
            let plate_z = || plate("plate_z", 4, None).dim(-2);
            let chain = |ctx: &mut Ctx, name: &str, n: usize| -> R {
                let mut v = s(0.0);
                ctx.markov(0..n, |ctx, i| {
                    let d = Categorical::from_probs(&vindex(&p, &[&v])?)?;
                    v = ctx.sample(&format!("{name}_{i}"), d)?;
                    Ok(())
                })?;
                Ok(())
            };
            let a = ctx.sample("a", Bernoulli::from_probs(&q.get(0)?)?)?;
            chain(ctx, "w", 5)?;
            let b = ctx.plate_with(plate_x(), |ctx, _| {
                let b = ctx.sample("b", Bernoulli::from_probs(&vindex(&q, &[&a])?)?)?;
                chain(ctx, "x", 6)?;
                Ok(b)
            })?;
            ctx.plate_with(plate_y(), |ctx, _| {
                ctx.sample("c", Bernoulli::from_probs(&vindex(&q, &[&a])?)?)?;
                chain(ctx, "y", 7)
            })?;
            ctx.plate_with(plate_z(), |ctx, _| {
                ctx.sample("d", Bernoulli::from_probs(&vindex(&q, &[&a])?)?)?;
                chain(ctx, "z", 8)
            })?;
            ctx.plate_with(plate_x(), |ctx, _| {
                ctx.plate_with(plate_z(), |ctx, _| {
                    ctx.sample("e", Bernoulli::from_probs(&vindex(&q, &[&b])?)?)?;
                    chain(ctx, "xz", 9)
                })
            })?;
            Ok(())
        })
    };
    let e = step_error(
        model,
        empty,
        adam(1e-6),
        TraceEnumElbo::new().max_plate_nesting(2),
    );
    assert!(
        matches!(&e, InferError::InProgram { program: "model", last_site: Some(s), .. } if s == "x_1"),
        "{e}"
    );
    assert!(enum_sites(&e).is_empty(), "{e}");
    assert_mentions(&e, &["vindex", "rank 9", "at most 8 dims", "`markov`"]);
}

#[test]
fn markov_history() {
    // x_t | x_{t−2}, x_{t−1}: a window of history 2 or more runs (the loss: every y_t = 0 has
    // probability 3/4), a shorter one is an error at the first site that reads outside it
    // (Pyro: "Enumeration dim conflict"; vi: the distribution varies along the dim that site
    // gets).
    for history in 0..4 {
        let model = move |ctx: &mut Ctx| -> R {
            ctx.config_enumerate(|ctx| {
                let cpu = Device::Cpu;
                let p = ctx.param("p", &Tensor::full(0.25f64, (2, 2), &cpu)?, Constraint::Real)?;
                let q = ctx.param("q", &Tensor::full(0.25f64, 2, &cpu)?, Constraint::Real)?;
                let (mut prev, mut curr) = (s(0.0), s(0.0));
                ctx.markov_history(history, 0..10, |ctx, t| {
                    let probs = vindex(&p, &[&prev, &curr])?;
                    let x = ctx.sample(&format!("x_{t}"), Bernoulli::from_probs(&probs)?)?;
                    prev = std::mem::replace(&mut curr, x);
                    let y = Bernoulli::from_probs(&vindex(&q, &[&curr])?)?;
                    ctx.observe(&format!("y_{t}"), y, &s(0.0))?;
                    Ok(())
                })?;
                Ok(())
            })
        };
        let elbo = TraceEnumElbo::new().max_plate_nesting(0);
        if history < 2 {
            let e = assert_error(model, empty, elbo);
            assert_eq!(
                enum_sites(&e),
                [format!("x_{}", history + 1)],
                "history {history}"
            );
            assert_mentions(&e, &["varies along dim"]);
        } else {
            let r = assert_ok(model, empty, elbo);
            assert_close(r.loss, -10.0 * 0.75f64.ln(), 1e-10);
        }
    }
}
