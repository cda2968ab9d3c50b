//! Ports of Pyro's `tests/infer/test_enum.py` (pyro-ppl/pyro at ff6ae1c, 2024-10; the peer's
//! truth for enumeration semantics). Most compare an enumerated, plated model with a
//! hand-written equivalent (a loop of sites instead of a plate, or the sum done by hand),
//! losses and gradients equal, as Pyro's `_check_loss_and_grads`; `pyro_kl.rs` holds the cases
//! checked against a closed-form KL divergence. Pyro's data and tolerances are kept (random
//! data is fixed data here); where a row's particle count is raised, the test says why. Only
//! parallel enumeration exists in vi, so every row with `enumerate="sequential"`,
//! `expand=True` or `num_samples` (Monte Carlo enumeration) is left out of the ports below.
//!
//! Ported here: `test_elbo_enumerate_1`, `_2`, `_3` (scale 1 and 10),
//! `test_elbo_enumerate_plate_1` to `_4` (single, batch, masked; scale 1 and 10),
//! `test_elbo_enumerate_plate_5` (the error), `_6` (parallel), `_7`,
//! `test_elbo_enumerate_plates_1` to `_7` (`_6`: a loop and a plate crossed, either way, and
//! the error for two crossed plates; `_7`: any of them vectorised), `_8` (the outer axis
//! sequential, and the error where it is a plate), `test_elbo_scale`,
//! `test_elbo_hmm_in_model` and `test_elbo_hmm_in_guide` (golden gradients, converted from Pyro's softmax logits: see
//! [`per_raw`]), `test_hmm_enumerate_model` and `test_hmm_enumerate_model_and_guide` (Pyro only
//! runs them; here the losses equal the forward algorithm's), `test_svi_step_smoke` (with the
//! exact loss where the guide enumerates), `test_multi_dependence_enumeration`.
//! Ported in `pyro_kl.rs`: `test_elbo_bern`, `test_elbo_bern_bern`, `test_elbo_berns`,
//! `test_elbo_categoricals`, `test_elbo_normals` (the row that draws every site),
//! `test_elbo_plate`, `test_elbo_iplate`, `test_elbo_plate_plate`, `test_elbo_plate_iplate`,
//! `test_elbo_iplate_plate`, `test_elbo_iplate_iplate` (Pyro's `for i in pyro.plate(..)` as
//! `ctx.plate_seq`), `test_non_mean_field_bern_bern_elbo_gradient`,
//! `test_non_mean_field_bern_normal_elbo_gradient` (rows without `num_samples`),
//! `test_non_mean_field_normal_bern_elbo_gradient`, `test_avoid_nan`,
//! `test_bernoulli_pyramid_elbo_gradient`, `test_bernoulli_non_tree_elbo_gradient` (their
//! "parallel" rows without `expand`).
//!
//! Not applicable:
//! - sequential enumeration, which vi does not have: `test_iter_discrete_traces_order`,
//!   `_scalar`, `_vector`, `test_gmm_iter_discrete_traces`,
//!   `test_gmm_batch_iter_discrete_traces` (`iter_discrete_traces`),
//!   `test_enumerate_sequential_guide`, `test_enumerate_sequential_model`;
//! - `test_unsafe_bernoulli` (checks a test helper of Pyro's; vi's Bernoulli is exact at 0 and
//!   1 itself, see `test_avoid_nan`);
//! - `test_elbo_normal` (its enumerated row is Monte Carlo enumeration, `num_samples`; its
//!   drawn row is `TraceElbo`'s business, tested elsewhere);
//! - `test_differentiable_loss` (Pyro's two code paths, `differentiable_loss` and
//!   `loss_and_grads`, agree; vi has one);
//! - `test_svi_step_guide_uses_grad` (a guide that differentiates inside itself, a Newton step
//!   by `torch.autograd.grad` with `create_graph`);
//! - `test_elbo_rsvi` (`ShapeAugmentedGamma`, rejection-sampled reparameterisation);
//! - `test_elbo_hmm_growth`, `test_elbo_dbn_growth` (Pyro's own time and cache growth; vi's
//!   costs are in `docs/performance.md`);
//! - `test_elbo_zip` (`ZeroInflatedPoisson`, `MaskedMixture`), `test_mixture_of_diag_normals`
//!   (`MixtureOfDiagNormals*`): no such distributions;
//! - `test_compute_marginals_single`, `_restrictions`, `_hmm`, `test_marginals_2678`
//!   (`TraceEnum_ELBO.compute_marginals`), `test_backwardsample_posterior_smoke`, `_2`, `_3`,
//!   `_restrictions` (`sample_posterior`): not in vi (its `infer_discrete` is tested in
//!   `discrete.rs`);
//! - `test_vectorized_importance` (`vectorized_importance_weights`).

use candle_core::{Device, Tensor};
use vi_dist::{Categorical, Constraint, Distribution, Normal};
use vi_infer::{Ctx, InferError, Plate, TraceEnumElbo, vindex};

use super::{assert_grads, loss_and_grads};
use crate::common::Res;

type Program<'a> = Box<dyn FnMut(&mut Ctx) -> vi_infer::Result<()> + 'a>;

fn t(v: &[f64]) -> vi_infer::Result<Tensor> {
    Ok(Tensor::new(v, &Device::Cpu)?)
}

fn t2(v: &[[f64; 2]; 2]) -> vi_infer::Result<Tensor> {
    Ok(Tensor::new(v, &Device::Cpu)?)
}

fn s(v: f64) -> vi_infer::Result<Tensor> {
    Ok(Tensor::new(v, &Device::Cpu)?)
}

/// A simplex parameter.
fn simplex(ctx: &mut Ctx, name: &str, init: &Tensor) -> vi_infer::Result<Tensor> {
    ctx.param(name, init, Constraint::Simplex)
}

/// `Categorical(probs)`.
fn cat(probs: &Tensor) -> vi_infer::Result<Categorical> {
    Ok(Categorical::from_probs(probs)?)
}

/// Runs `body` under `scale` (none when 1).
fn scaled<T>(
    ctx: &mut Ctx,
    scale: f64,
    body: impl FnOnce(&mut Ctx) -> vi_infer::Result<T>,
) -> vi_infer::Result<T> {
    if scale == 1.0 {
        body(ctx)
    } else {
        ctx.scale(scale, body)
    }
}

/// Pyro's `_check_loss_and_grads(expected, actual)`: the two pairs give the same loss and the
/// same gradients.
fn check_same(
    expected: (TraceEnumElbo, Program<'_>, Program<'_>),
    actual: (TraceEnumElbo, Program<'_>, Program<'_>),
    what: &str,
) -> Res {
    let (ea, mut ma, mut ga) = expected;
    let want = loss_and_grads(&ea, 0, |c| ma(c), |c| ga(c))?;
    let (eb, mut mb, mut gb) = actual;
    let got = loss_and_grads(&eb, 0, |c| mb(c), |c| gb(c))?;
    crate::common::assert_close_tol(&[got.loss], &[want.loss], 1e-10, &format!("{what}: loss"));
    assert_grads(&got.grads, &want.grads, 1e-10, what);
    Ok(())
}

fn nothing<'a>() -> Program<'a> {
    Box::new(|_| Ok(()))
}

/// The parameters of `test_elbo_enumerate_1`..`_3` and `plate_1`..`_3`.
fn xyz_params(ctx: &mut Ctx) -> vi_infer::Result<(Tensor, Tensor, Tensor)> {
    let x = simplex(ctx, "model_probs_x", &t(&[0.4, 0.6])?)?;
    let y = simplex(ctx, "model_probs_y", &t2(&[[0.75, 0.25], [0.55, 0.45]])?)?;
    let z = simplex(ctx, "model_probs_z", &t2(&[[0.3, 0.7], [0.2, 0.8]])?)?;
    Ok((x, y, z))
}

/// The guide of `test_elbo_enumerate_1`..`_3`: `x` enumerated.
fn x_guide<'a>(scale: f64) -> Program<'a> {
    Box::new(move |ctx: &mut Ctx| {
        scaled(ctx, scale, |ctx| {
            let q = simplex(ctx, "guide_probs_x", &t(&[0.1, 0.9])?)?;
            ctx.config_enumerate(|ctx| ctx.sample("x", cat(&q)?))?;
            Ok(())
        })
    })
}

/// `test_elbo_enumerate_1`: `y` enumerated in the model, with nothing downstream of it, adds
/// nothing.
#[test]
fn elbo_enumerate_1() -> Res {
    for scale in [1.0, 10.0] {
        let auto: Program = Box::new(move |ctx| {
            scaled(ctx, scale, |ctx| {
                let (px, py, _) = xyz_params(ctx)?;
                let pz = simplex(ctx, "model_probs_z1", &t(&[0.3, 0.7])?)?;
                let x = ctx.sample("x", cat(&px)?)?;
                ctx.sample_enum("y", cat(&vindex(&py, &[&x])?)?)?;
                ctx.observe("z", cat(&pz)?, &s(0.0)?)?;
                Ok(())
            })
        });
        let hand: Program = Box::new(move |ctx| {
            scaled(ctx, scale, |ctx| {
                let (px, _, _) = xyz_params(ctx)?;
                let pz = simplex(ctx, "model_probs_z1", &t(&[0.3, 0.7])?)?;
                ctx.sample("x", cat(&px)?)?;
                ctx.observe("z", cat(&pz)?, &s(0.0)?)?;
                Ok(())
            })
        });
        check_same(
            (TraceEnumElbo::new(), hand, x_guide(scale)),
            (TraceEnumElbo::new(), auto, x_guide(scale)),
            &format!("enumerate_1, scale {scale}"),
        )?;
    }
    Ok(())
}

/// `test_elbo_enumerate_2` (`scale` outside everything) and `_3` (`scale` only around the
/// enumerated site and its child): `y` summed out equals `z` drawn from `probs_y · probs_z`.
#[test]
fn elbo_enumerate_2_and_3() -> Res {
    for (scale, inner) in [(1.0, false), (10.0, false), (1.0, true), (10.0, true)] {
        let (outer, inner) = if inner { (1.0, scale) } else { (scale, 1.0) };
        let auto: Program = Box::new(move |ctx| {
            scaled(ctx, outer, |ctx| {
                let (px, py, pz) = xyz_params(ctx)?;
                let x = ctx.sample("x", cat(&px)?)?;
                scaled(ctx, inner, |ctx| {
                    let y = ctx.sample_enum("y", cat(&vindex(&py, &[&x])?)?)?;
                    ctx.observe("z", cat(&vindex(&pz, &[&y])?)?, &s(0.0)?)
                })?;
                Ok(())
            })
        });
        let hand: Program = Box::new(move |ctx| {
            scaled(ctx, outer, |ctx| {
                let (px, py, pz) = xyz_params(ctx)?;
                let pyz = py.matmul(&pz)?;
                let x = ctx.sample("x", cat(&px)?)?;
                scaled(ctx, inner, |ctx| {
                    ctx.observe("z", cat(&vindex(&pyz, &[&x])?)?, &s(0.0)?)
                })?;
                Ok(())
            })
        });
        check_same(
            (TraceEnumElbo::new(), hand, x_guide(outer)),
            (TraceEnumElbo::new(), auto, x_guide(outer)),
            &format!("enumerate_2/3, scale {outer} outside, {inner} inside"),
        )?;
    }
    Ok(())
}

/// The cases of `plate_1`..`_3`: `(num_samples, num_masked)`, with fixed data.
const PLATE_CASES: [(usize, usize); 3] = [(1, 1), (2, 2), (3, 2)];
const PLATE_DATA: [f64; 3] = [1.0, 0.0, 1.0];

/// The mask of the first `m` of `n` elements (none when all).
fn first(n: usize, m: usize) -> vi_infer::Result<Option<Tensor>> {
    if n == m {
        return Ok(None);
    }
    let v: Vec<u8> = (0..n).map(|i| u8::from(i < m)).collect();
    Ok(Some(Tensor::new(v, &Device::Cpu)?))
}

fn masked<T>(
    ctx: &mut Ctx,
    mask: &Option<Tensor>,
    body: impl FnOnce(&mut Ctx) -> vi_infer::Result<T>,
) -> vi_infer::Result<T> {
    match mask {
        Some(m) => ctx.mask(m, body),
        None => body(ctx),
    }
}

/// `test_elbo_enumerate_plate_1`: `x → y → z`, `z` in a plate (masked past `num_masked`).
#[test]
fn elbo_enumerate_plate_1() -> Res {
    for scale in [1.0, 10.0] {
        for (n, m) in PLATE_CASES {
            let data = t(&PLATE_DATA[..n])?;
            let mask = first(n, m)?;
            let d = data.clone();
            let auto: Program = Box::new(move |ctx| {
                let (px, py, pz) = xyz_params(ctx)?;
                let x = ctx.sample("x", cat(&px)?)?;
                scaled(ctx, scale, |ctx| {
                    let y = ctx.sample_enum("y", cat(&vindex(&py, &[&x])?)?)?;
                    ctx.plate("data", n, |ctx| {
                        masked(ctx, &mask, |ctx| {
                            ctx.observe("z", cat(&vindex(&pz, &[&y])?)?, &d)
                        })
                    })
                })?;
                Ok(())
            });
            let hand: Program = Box::new(move |ctx| {
                let (px, py, pz) = xyz_params(ctx)?;
                let x = ctx.sample("x", cat(&px)?)?;
                scaled(ctx, scale, |ctx| {
                    let y = ctx.sample_enum("y", cat(&vindex(&py, &[&x])?)?)?;
                    for (i, v) in PLATE_DATA.iter().enumerate().take(m) {
                        let obs = s(*v)?;
                        ctx.observe(&format!("z_{i}"), cat(&vindex(&pz, &[&y])?)?, &obs)?;
                    }
                    Ok(())
                })?;
                Ok(())
            });
            check_same(
                (
                    TraceEnumElbo::new().max_plate_nesting(0),
                    hand,
                    x_guide(1.0),
                ),
                (
                    TraceEnumElbo::new().max_plate_nesting(1),
                    auto,
                    x_guide(1.0),
                ),
                &format!("plate_1 ({n}, {m}), scale {scale}"),
            )?;
        }
    }
    Ok(())
}

/// `test_elbo_enumerate_plate_2`: `x → y → z`, `y` and `z` in a plate: the masked elements of
/// an enumerated site drop out.
#[test]
fn elbo_enumerate_plate_2() -> Res {
    for scale in [1.0, 10.0] {
        for (n, m) in PLATE_CASES {
            let data = t(&PLATE_DATA[..n])?;
            let mask = first(n, m)?;
            let auto: Program = Box::new(move |ctx| {
                let (px, py, pz) = xyz_params(ctx)?;
                let x = ctx.sample("x", cat(&px)?)?;
                scaled(ctx, scale, |ctx| {
                    ctx.plate("data", n, |ctx| {
                        masked(ctx, &mask, |ctx| {
                            let y = ctx.sample_enum("y", cat(&vindex(&py, &[&x])?)?)?;
                            ctx.observe("z", cat(&vindex(&pz, &[&y])?)?, &data)
                        })
                    })
                })?;
                Ok(())
            });
            let hand: Program = Box::new(move |ctx| {
                let (px, py, pz) = xyz_params(ctx)?;
                let x = ctx.sample("x", cat(&px)?)?;
                scaled(ctx, scale, |ctx| {
                    for (i, v) in PLATE_DATA.iter().enumerate().take(m) {
                        let y = ctx.sample_enum(&format!("y_{i}"), cat(&vindex(&py, &[&x])?)?)?;
                        let obs = s(*v)?;
                        ctx.observe(&format!("z_{i}"), cat(&vindex(&pz, &[&y])?)?, &obs)?;
                    }
                    Ok(())
                })?;
                Ok(())
            });
            check_same(
                (
                    TraceEnumElbo::new().max_plate_nesting(1),
                    hand,
                    x_guide(1.0),
                ),
                (
                    TraceEnumElbo::new().max_plate_nesting(1),
                    auto,
                    x_guide(1.0),
                ),
                &format!("plate_2 ({n}, {m}), scale {scale}"),
            )?;
        }
    }
    Ok(())
}

/// `test_elbo_enumerate_plate_3`: everything in the plate, `x` enumerated in the guide, `y`
/// in the model.
#[test]
fn elbo_enumerate_plate_3() -> Res {
    for scale in [1.0, 10.0] {
        for (n, m) in PLATE_CASES {
            let data = t(&PLATE_DATA[..n])?;
            let mask = first(n, m)?;
            let mask_g = mask.clone();
            let auto: Program = Box::new(move |ctx| {
                scaled(ctx, scale, |ctx| {
                    let (px, py, pz) = xyz_params(ctx)?;
                    ctx.plate("data", n, |ctx| {
                        masked(ctx, &mask, |ctx| {
                            let x = ctx.sample("x", cat(&px)?)?;
                            let y = ctx.sample_enum("y", cat(&vindex(&py, &[&x])?)?)?;
                            ctx.observe("z", cat(&vindex(&pz, &[&y])?)?, &data)
                        })
                    })
                })?;
                Ok(())
            });
            let auto_guide: Program = Box::new(move |ctx| {
                scaled(ctx, scale, |ctx| {
                    let q = simplex(ctx, "guide_probs_x", &t(&[0.1, 0.9])?)?;
                    ctx.plate("data", n, |ctx| {
                        masked(ctx, &mask_g, |ctx| {
                            ctx.config_enumerate(|ctx| ctx.sample("x", cat(&q)?))
                        })
                    })
                })?;
                Ok(())
            });
            let hand: Program = Box::new(move |ctx| {
                scaled(ctx, scale, |ctx| {
                    let (px, py, pz) = xyz_params(ctx)?;
                    for (i, v) in PLATE_DATA.iter().enumerate().take(m) {
                        let x = ctx.sample(&format!("x_{i}"), cat(&px)?)?;
                        let y = ctx.sample_enum(&format!("y_{i}"), cat(&vindex(&py, &[&x])?)?)?;
                        let obs = s(*v)?;
                        ctx.observe(&format!("z_{i}"), cat(&vindex(&pz, &[&y])?)?, &obs)?;
                    }
                    Ok(())
                })
            });
            let hand_guide: Program = Box::new(move |ctx| {
                scaled(ctx, scale, |ctx| {
                    let q = simplex(ctx, "guide_probs_x", &t(&[0.1, 0.9])?)?;
                    for i in 0..m {
                        ctx.config_enumerate(|ctx| ctx.sample(&format!("x_{i}"), cat(&q)?))?;
                    }
                    Ok(())
                })
            });
            check_same(
                (TraceEnumElbo::new().max_plate_nesting(1), hand, hand_guide),
                (TraceEnumElbo::new().max_plate_nesting(1), auto, auto_guide),
                &format!("plate_3 ({n}, {m}), scale {scale}"),
            )?;
        }
    }
    Ok(())
}

/// `test_elbo_enumerate_plate_4`: an observation outside the plate and one inside, both
/// depending on the global `a`, everything enumerated in the model.
#[test]
fn elbo_enumerate_plate_4() -> Res {
    let params = |ctx: &mut Ctx| -> vi_infer::Result<[Tensor; 4]> {
        Ok([
            simplex(ctx, "probs_a", &t(&[0.4, 0.6])?)?,
            simplex(ctx, "probs_b", &t(&[0.6, 0.4])?)?,
            ctx.param("locs", &t(&[-1.0, 1.0])?, Constraint::Real)?,
            ctx.param("scales", &t(&[1.0, 2.0])?, Constraint::Positive)?,
        ])
    };
    for scale in [1.0, 10.0] {
        for (outer_obs, inner_obs) in [(false, true), (true, false), (true, true)] {
            let auto: Program = Box::new(move |ctx| {
                scaled(ctx, scale, |ctx| {
                    let [pa, pb, locs, scales] = params(ctx)?;
                    let a = ctx.sample_enum("a", cat(&pa)?)?;
                    let sa = vindex(&scales, &[&a])?;
                    if outer_obs {
                        ctx.observe("outer_obs", Normal::new(&s(0.0)?, &sa)?, &s(2.0)?)?;
                    }
                    ctx.plate("inner", 2, |ctx| {
                        let b = ctx.sample_enum("b", cat(&pb)?)?;
                        if inner_obs {
                            let d = Normal::new(&vindex(&locs, &[&b])?, &sa)?;
                            ctx.observe("inner_obs", d, &t(&[0.5, 1.5])?)?;
                        }
                        Ok(())
                    })
                })
            });
            let hand: Program = Box::new(move |ctx| {
                scaled(ctx, scale, |ctx| {
                    let [pa, pb, locs, scales] = params(ctx)?;
                    let a = ctx.sample_enum("a", cat(&pa)?)?;
                    let sa = vindex(&scales, &[&a])?;
                    if outer_obs {
                        ctx.observe("outer_obs", Normal::new(&s(0.0)?, &sa)?, &s(2.0)?)?;
                    }
                    for (i, y) in [0.5, 1.5].into_iter().enumerate() {
                        let b = ctx.sample_enum(&format!("b_{i}"), cat(&pb)?)?;
                        if inner_obs {
                            let d = Normal::new(&vindex(&locs, &[&b])?, &sa)?;
                            ctx.observe(&format!("inner_obs_{i}"), d, &s(y)?)?;
                        }
                    }
                    Ok(())
                })
            });
            check_same(
                (TraceEnumElbo::new().max_plate_nesting(0), hand, nothing()),
                (TraceEnumElbo::new().max_plate_nesting(1), auto, nothing()),
                &format!("plate_4 ({outer_obs}, {inner_obs}), scale {scale}"),
            )?;
        }
    }
    Ok(())
}

/// The parameters of `plate_5` and `_6`: `probs_c` indexed by `[a, b]`.
fn abc_params(ctx: &mut Ctx) -> vi_infer::Result<[Tensor; 3]> {
    let c = Tensor::new(
        &[
            [[0.4f64, 0.5, 0.1], [0.3, 0.5, 0.2]],
            [[0.3, 0.4, 0.3], [0.4, 0.4, 0.2]],
        ],
        &Device::Cpu,
    )?;
    Ok([
        simplex(ctx, "model_probs_a", &t(&[0.45, 0.55])?)?,
        simplex(ctx, "model_probs_b", &t(&[0.6, 0.4])?)?,
        simplex(ctx, "model_probs_c", &c)?,
    ])
}

/// `test_elbo_enumerate_plate_5`: `a` enumerated in the model outside the plate in which the
/// guide enumerates `b`: model enumeration more global than guide enumeration is a typed error
/// naming `b` (Pyro: "Expected model enumeration to be no more global than guide").
#[test]
fn elbo_enumerate_plate_5() -> Res {
    let data = t(&[1.0, 2.0])?;
    let mut model = vi_infer::config_enumerate(|ctx: &mut Ctx| {
        let [pa, pb, pc] = abc_params(ctx)?;
        let a = ctx.sample("a", cat(&pa)?)?;
        ctx.plate("b_axis", 2, |ctx| {
            let b = ctx.sample("b", cat(&pb)?)?;
            ctx.observe("c", cat(&vindex(&pc, &[&a, &b])?)?, &data)
        })?;
        Ok(())
    });
    let mut guide = vi_infer::config_enumerate(|ctx: &mut Ctx| {
        let q = simplex(ctx, "guide_probs_b", &t(&[0.8, 0.2])?)?;
        ctx.plate("b_axis", 2, |ctx| ctx.sample("b", cat(&q)?))?;
        Ok(())
    });
    let elbo = TraceEnumElbo::new().max_plate_nesting(1);
    let err = match loss_and_grads(&elbo, 0, |c| model(c), |c| guide(c)) {
        Ok(_) => panic!("model enumeration more global than guide enumeration must fail"),
        Err(e) => e,
    };
    let err = err.downcast::<InferError>().expect("an InferError");
    assert!(
        matches!(&*err, InferError::Enumeration { sites, .. } if sites == &["b"]),
        "{err}"
    );
    crate::common::assert_mentions(&err, &["no more global than guide enumeration", "b_axis"]);
    Ok(())
}

/// `test_elbo_enumerate_plate_6` (parallel): `b` enumerated in the guide and `a` in the model,
/// both global, `c` in a plate depending on both; the plate against a loop.
#[test]
fn elbo_enumerate_plate_6() -> Res {
    let data = [1.0, 2.0];
    let guide = || -> Program {
        Box::new(|ctx| {
            let q = simplex(ctx, "guide_probs_b", &t(&[0.8, 0.2])?)?;
            ctx.config_enumerate(|ctx| ctx.sample("b", cat(&q)?))?;
            Ok(())
        })
    };
    let plated: Program = Box::new(move |ctx| {
        ctx.config_enumerate(|ctx| {
            let [pa, pb, pc] = abc_params(ctx)?;
            let a = ctx.sample("a", cat(&pa)?)?;
            let b = ctx.sample("b", cat(&pb)?)?;
            ctx.plate("b_axis", 2, |ctx| {
                ctx.observe("c", cat(&vindex(&pc, &[&a, &b])?)?, &t(&data)?)
            })?;
            Ok(())
        })
    });
    let looped: Program = Box::new(move |ctx| {
        ctx.config_enumerate(|ctx| {
            let [pa, pb, pc] = abc_params(ctx)?;
            let a = ctx.sample("a", cat(&pa)?)?;
            let b = ctx.sample("b", cat(&pb)?)?;
            for (i, c) in data.iter().enumerate() {
                ctx.observe(&format!("c_{i}"), cat(&vindex(&pc, &[&a, &b])?)?, &s(*c)?)?;
            }
            Ok(())
        })
    });
    check_same(
        (TraceEnumElbo::new().max_plate_nesting(0), looped, guide()),
        (TraceEnumElbo::new().max_plate_nesting(1), plated, guide()),
        "plate_6",
    )
}

/// `test_elbo_enumerate_plate_7`: model and guide enumeration mixed — `a` enumerated in the
/// guide, `b` in the model, `c` drawn by the guide (deterministically given `a`) in a plate,
/// `d` enumerated in the model in the plate.
#[test]
fn elbo_enumerate_plate_7() -> Res {
    let params = |ctx: &mut Ctx| -> vi_infer::Result<[Tensor; 5]> {
        let d = Tensor::new(
            &[[[0.4f64, 0.6], [0.3, 0.7]], [[0.3, 0.7], [0.2, 0.8]]],
            &Device::Cpu,
        )?;
        Ok([
            simplex(ctx, "model_probs_a", &t(&[0.45, 0.55])?)?,
            simplex(ctx, "model_probs_b", &t2(&[[0.6, 0.4], [0.4, 0.6]])?)?,
            simplex(ctx, "model_probs_c", &t2(&[[0.75, 0.25], [0.55, 0.45]])?)?,
            simplex(ctx, "model_probs_d", &d)?,
            simplex(ctx, "model_probs_e", &t2(&[[0.75, 0.25], [0.55, 0.45]])?)?,
        ])
    };
    // Pyro's guide_probs_c is [[0, 1], [1, 0]]: deterministic. A simplex parameter is stored
    // unconstrained, so exact zeros are out of reach; 1e-12 keeps the draw deterministic
    // in practice and the terms finite.
    let guide_params = |ctx: &mut Ctx| -> vi_infer::Result<[Tensor; 2]> {
        let e = 1e-12;
        Ok([
            simplex(ctx, "guide_probs_a", &t(&[0.35, 0.65])?)?,
            simplex(ctx, "guide_probs_c", &t2(&[[e, 1.0 - e], [1.0 - e, e]])?)?,
        ])
    };
    for scale in [1.0, 10.0] {
        let auto: Program = Box::new(move |ctx| {
            scaled(ctx, scale, |ctx| {
                let [pa, pb, pc, pd, pe] = params(ctx)?;
                let a = ctx.sample("a", cat(&pa)?)?;
                let b = ctx.sample_enum("b", cat(&vindex(&pb, &[&a])?)?)?;
                ctx.plate("data", 2, |ctx| {
                    let c = ctx.sample("c", cat(&vindex(&pc, &[&a])?)?)?;
                    let d = ctx.sample_enum("d", cat(&vindex(&pd, &[&b, &c])?)?)?;
                    ctx.observe("obs", cat(&vindex(&pe, &[&d])?)?, &t(&[0.0, 0.0])?)
                })?;
                Ok(())
            })
        });
        let auto_guide: Program = Box::new(move |ctx| {
            scaled(ctx, scale, |ctx| {
                let [qa, qc] = guide_params(ctx)?;
                let a = ctx.sample_enum("a", cat(&qa)?)?;
                ctx.plate("data", 2, |ctx| ctx.sample("c", cat(&vindex(&qc, &[&a])?)?))?;
                Ok(())
            })
        });
        let hand: Program = Box::new(move |ctx| {
            scaled(ctx, scale, |ctx| {
                let [pa, pb, pc, pd, pe] = params(ctx)?;
                let a = ctx.sample("a", cat(&pa)?)?;
                let b = ctx.sample_enum("b", cat(&vindex(&pb, &[&a])?)?)?;
                for i in 0..2 {
                    let c = ctx.sample(&format!("c_{i}"), cat(&vindex(&pc, &[&a])?)?)?;
                    let d = ctx.sample_enum(&format!("d_{i}"), cat(&vindex(&pd, &[&b, &c])?)?)?;
                    ctx.observe(&format!("obs_{i}"), cat(&vindex(&pe, &[&d])?)?, &s(0.0)?)?;
                }
                Ok(())
            })
        });
        let hand_guide: Program = Box::new(move |ctx| {
            scaled(ctx, scale, |ctx| {
                let [qa, qc] = guide_params(ctx)?;
                let a = ctx.sample_enum("a", cat(&qa)?)?;
                for i in 0..2 {
                    ctx.sample(&format!("c_{i}"), cat(&vindex(&qc, &[&a])?)?)?;
                }
                Ok(())
            })
        });
        check_same(
            (TraceEnumElbo::new().max_plate_nesting(0), hand, hand_guide),
            (TraceEnumElbo::new().max_plate_nesting(1), auto, auto_guide),
            &format!("plate_7, scale {scale}"),
        )?;
    }
    Ok(())
}

/// `test_elbo_enumerate_plates_1`: two unrelated plates, each with its own enumerated site.
#[test]
fn elbo_enumerate_plates_1() -> Res {
    let params = |ctx: &mut Ctx| -> vi_infer::Result<[Tensor; 4]> {
        Ok([
            simplex(ctx, "probs_a", &t(&[0.45, 0.55])?)?,
            simplex(ctx, "probs_b", &t2(&[[0.6, 0.4], [0.4, 0.6]])?)?,
            simplex(ctx, "probs_c", &t(&[0.75, 0.25])?)?,
            simplex(ctx, "probs_d", &t2(&[[0.4, 0.6], [0.3, 0.7]])?)?,
        ])
    };
    let (b_data, d_data) = ([0.0, 1.0], [0.0, 0.0, 1.0]);
    for scale in [1.0, 10.0] {
        let auto: Program = Box::new(move |ctx| {
            scaled(ctx, scale, |ctx| {
                ctx.config_enumerate(|ctx| {
                    let [pa, pb, pc, pd] = params(ctx)?;
                    ctx.plate("a_axis", 2, |ctx| {
                        let a = ctx.sample("a", cat(&pa)?)?;
                        ctx.observe("b", cat(&vindex(&pb, &[&a])?)?, &t(&b_data)?)
                    })?;
                    ctx.plate("c_axis", 3, |ctx| {
                        let c = ctx.sample("c", cat(&pc)?)?;
                        ctx.observe("d", cat(&vindex(&pd, &[&c])?)?, &t(&d_data)?)
                    })?;
                    Ok(())
                })
            })
        });
        let hand: Program = Box::new(move |ctx| {
            scaled(ctx, scale, |ctx| {
                ctx.config_enumerate(|ctx| {
                    let [pa, pb, pc, pd] = params(ctx)?;
                    for (i, v) in b_data.iter().enumerate() {
                        let a = ctx.sample(&format!("a_{i}"), cat(&pa)?)?;
                        ctx.observe(&format!("b_{i}"), cat(&vindex(&pb, &[&a])?)?, &s(*v)?)?;
                    }
                    for (j, v) in d_data.iter().enumerate() {
                        let c = ctx.sample(&format!("c_{j}"), cat(&pc)?)?;
                        ctx.observe(&format!("d_{j}"), cat(&vindex(&pd, &[&c])?)?, &s(*v)?)?;
                    }
                    Ok(())
                })
            })
        });
        check_same(
            (TraceEnumElbo::new().max_plate_nesting(0), hand, nothing()),
            (TraceEnumElbo::new().max_plate_nesting(1), auto, nothing()),
            &format!("plates_1, scale {scale}"),
        )?;
    }
    Ok(())
}

/// `test_elbo_enumerate_plates_2`: one global site, two plates depending on it.
#[test]
fn elbo_enumerate_plates_2() -> Res {
    let params = |ctx: &mut Ctx| -> vi_infer::Result<[Tensor; 3]> {
        Ok([
            simplex(ctx, "probs_a", &t(&[0.45, 0.55])?)?,
            simplex(ctx, "probs_b", &t2(&[[0.6, 0.4], [0.4, 0.6]])?)?,
            simplex(ctx, "probs_c", &t2(&[[0.75, 0.25], [0.55, 0.45]])?)?,
        ])
    };
    let (b_data, c_data) = ([0.0, 1.0], [0.0, 0.0, 1.0]);
    for scale in [1.0, 10.0] {
        let auto: Program = Box::new(move |ctx| {
            scaled(ctx, scale, |ctx| {
                ctx.config_enumerate(|ctx| {
                    let [pa, pb, pc] = params(ctx)?;
                    let a = ctx.sample("a", cat(&pa)?)?;
                    ctx.plate("b_axis", 2, |ctx| {
                        ctx.observe("b", cat(&vindex(&pb, &[&a])?)?, &t(&b_data)?)
                    })?;
                    ctx.plate("c_axis", 3, |ctx| {
                        ctx.observe("c", cat(&vindex(&pc, &[&a])?)?, &t(&c_data)?)
                    })?;
                    Ok(())
                })
            })
        });
        let hand: Program = Box::new(move |ctx| {
            scaled(ctx, scale, |ctx| {
                ctx.config_enumerate(|ctx| {
                    let [pa, pb, pc] = params(ctx)?;
                    let a = ctx.sample("a", cat(&pa)?)?;
                    for (i, v) in b_data.iter().enumerate() {
                        ctx.observe(&format!("b_{i}"), cat(&vindex(&pb, &[&a])?)?, &s(*v)?)?;
                    }
                    for (j, v) in c_data.iter().enumerate() {
                        ctx.observe(&format!("c_{j}"), cat(&vindex(&pc, &[&a])?)?, &s(*v)?)?;
                    }
                    Ok(())
                })
            })
        });
        check_same(
            (TraceEnumElbo::new().max_plate_nesting(0), hand, nothing()),
            (TraceEnumElbo::new().max_plate_nesting(1), auto, nothing()),
            &format!("plates_2, scale {scale}"),
        )?;
    }
    Ok(())
}

/// `test_elbo_enumerate_plates_3` (one global site, two nested plates multiplied out in one
/// step), `_4` (`a → b` in the outer plate `→ c` in the inner one) and `_5` (`c` depends on
/// `a` and `b`).
#[test]
fn elbo_enumerate_plates_3_4_5() -> Res {
    let data = [[0.0, 1.0], [0.0, 0.0]];
    let params = |ctx: &mut Ctx| -> vi_infer::Result<[Tensor; 4]> {
        let c5 = Tensor::new(
            &[[[0.4f64, 0.6], [0.3, 0.7]], [[0.2, 0.8], [0.1, 0.9]]],
            &Device::Cpu,
        )?;
        Ok([
            simplex(ctx, "probs_a", &t(&[0.45, 0.55])?)?,
            simplex(ctx, "probs_b", &t2(&[[0.6, 0.4], [0.4, 0.6]])?)?,
            simplex(ctx, "probs_c", &t2(&[[0.4, 0.6], [0.3, 0.7]])?)?,
            simplex(ctx, "probs_c5", &c5)?,
        ])
    };
    for case in [3, 4, 5] {
        for scale in [1.0, 10.0] {
            let auto: Program = Box::new(move |ctx| {
                scaled(ctx, scale, |ctx| {
                    ctx.config_enumerate(|ctx| {
                        let [pa, pb, pc, pc5] = params(ctx)?;
                        let a = ctx.sample("a", cat(&pa)?)?;
                        let obs = Tensor::new(&data, &Device::Cpu)?;
                        ctx.plate("outer", 2, |ctx| {
                            let b = if case == 3 {
                                None
                            } else {
                                Some(ctx.sample("b", cat(&vindex(&pb, &[&a])?)?)?)
                            };
                            ctx.plate("inner", 2, |ctx| {
                                let probs = match (case, &b) {
                                    (3, _) => vindex(&pb, &[&a])?,
                                    (4, Some(b)) => vindex(&pc, &[b])?,
                                    (_, Some(b)) => vindex(&pc5, &[&a, b])?,
                                    _ => unreachable!(),
                                };
                                ctx.observe("c", cat(&probs)?, &obs)
                            })
                        })?;
                        Ok(())
                    })
                })
            });
            let hand: Program = Box::new(move |ctx| {
                scaled(ctx, scale, |ctx| {
                    ctx.config_enumerate(|ctx| {
                        let [pa, pb, pc, pc5] = params(ctx)?;
                        let a = ctx.sample("a", cat(&pa)?)?;
                        for (i, row) in data.iter().enumerate() {
                            let b = if case == 3 {
                                None
                            } else {
                                Some(ctx.sample(&format!("b_{i}"), cat(&vindex(&pb, &[&a])?)?)?)
                            };
                            for (j, v) in row.iter().enumerate() {
                                let probs = match (case, &b) {
                                    (3, _) => vindex(&pb, &[&a])?,
                                    (4, Some(b)) => vindex(&pc, &[b])?,
                                    (_, Some(b)) => vindex(&pc5, &[&a, b])?,
                                    _ => unreachable!(),
                                };
                                ctx.observe(&format!("c_{i}_{j}"), cat(&probs)?, &s(*v)?)?;
                            }
                        }
                        Ok(())
                    })
                })
            });
            check_same(
                (TraceEnumElbo::new().max_plate_nesting(0), hand, nothing()),
                (TraceEnumElbo::new().max_plate_nesting(2), auto, nothing()),
                &format!("plates_{case}, scale {scale}"),
            )?;
        }
    }
    Ok(())
}

/// The four models of `test_elbo_enumerate_plates_6` and `_7`: `a`, then `b` over an axis
/// of 2 and `c` over another, each axis a loop of sites (`seq`) or a vectorised plate; over
/// both, `d` observed given `b` and `c` (`_6`), or `d` given `b` and `e` given `c` (`_7`).
fn plates_model<'a>(case: u8, b_seq: bool, c_seq: bool, scale: f64) -> Program<'a> {
    let data = [[0.0, 1.0], [0.0, 0.0]];
    Box::new(move |ctx: &mut Ctx| {
        scaled(ctx, scale, |ctx| {
            ctx.config_enumerate(|ctx| {
                let pa = simplex(ctx, "probs_a", &t(&[0.45, 0.55])?)?;
                let pb = simplex(ctx, "probs_b", &t2(&[[0.6, 0.4], [0.4, 0.6]])?)?;
                let pc = simplex(ctx, "probs_c", &t2(&[[0.75, 0.25], [0.55, 0.45]])?)?;
                let (pd, pe) = if case == 6 {
                    let d0 = Tensor::new(
                        &[[[0.4f64, 0.6], [0.3, 0.7]], [[0.3, 0.7], [0.2, 0.8]]],
                        &Device::Cpu,
                    )?;
                    (simplex(ctx, "probs_d", &d0)?, None)
                } else {
                    let pd = simplex(ctx, "probs_d", &t2(&[[0.3, 0.7], [0.2, 0.8]])?)?;
                    let pe = simplex(ctx, "probs_e", &t2(&[[0.4, 0.6], [0.3, 0.7]])?)?;
                    (pd, Some(pe))
                };
                let a = ctx.sample("a", cat(&pa)?)?;
                type Body<'f> = &'f mut dyn FnMut(&mut Ctx) -> vi_infer::Result<Tensor>;
                let b_axis = |ctx: &mut Ctx, f: Body<'_>| {
                    ctx.plate_with(Plate::new("b_axis", 2).dim(-1), |ctx, _| f(ctx))
                };
                let c_axis = |ctx: &mut Ctx, f: Body<'_>| {
                    let dim = if b_seq { -1 } else { -2 };
                    ctx.plate_with(Plate::new("c_axis", 2).dim(dim), |ctx, _| f(ctx))
                };
                // b: one site per i, or one plated site; c alike.
                let b: Vec<Tensor> = if b_seq {
                    (0..2)
                        .map(|i| ctx.sample(&format!("b_{i}"), cat(&vindex(&pb, &[&a])?)?))
                        .collect::<vi_infer::Result<_>>()?
                } else {
                    vec![b_axis(ctx, &mut |ctx| {
                        ctx.sample("b", cat(&vindex(&pb, &[&a])?)?)
                    })?]
                };
                let c: Vec<Tensor> = if c_seq {
                    (0..2)
                        .map(|j| ctx.sample(&format!("c_{j}"), cat(&vindex(&pc, &[&a])?)?))
                        .collect::<vi_infer::Result<_>>()?
                } else {
                    vec![c_axis(ctx, &mut |ctx| {
                        ctx.sample("c", cat(&vindex(&pc, &[&a])?)?)
                    })?]
                };
                // The observations of one cell (or row, column, grid), named with `suffix`.
                let observe =
                    |ctx: &mut Ctx, suffix: &str, b: &Tensor, c: &Tensor, obs: &Tensor| match &pe {
                        None => {
                            let d = cat(&vindex(&pd, &[b, c])?)?;
                            ctx.observe(&format!("d{suffix}"), d, obs)
                        }
                        Some(pe) => {
                            ctx.observe(&format!("d{suffix}"), cat(&vindex(&pd, &[b])?)?, obs)?;
                            ctx.observe(&format!("e{suffix}"), cat(&vindex(pe, &[c])?)?, obs)
                        }
                    };
                match (b_seq, c_seq) {
                    (true, true) => {
                        for (i, row) in data.iter().enumerate() {
                            for (j, v) in row.iter().enumerate() {
                                observe(ctx, &format!("_{i}_{j}"), &b[i], &c[j], &s(*v)?)?;
                            }
                        }
                    }
                    (true, false) => {
                        for (i, row) in data.iter().enumerate() {
                            let obs = t(row)?;
                            c_axis(ctx, &mut |ctx| {
                                observe(ctx, &format!("_{i}"), &b[i], &c[0], &obs)
                            })?;
                        }
                    }
                    (false, true) => {
                        for j in 0..2 {
                            let obs = t(&[data[0][j], data[1][j]])?;
                            b_axis(ctx, &mut |ctx| {
                                observe(ctx, &format!("_{j}"), &b[0], &c[j], &obs)
                            })?;
                        }
                    }
                    (false, false) => {
                        let obs = Tensor::new(&data, &Device::Cpu)?;
                        b_axis(ctx, &mut |ctx| {
                            c_axis(ctx, &mut |ctx| observe(ctx, "", &b[0], &c[0], &obs))
                        })?;
                    }
                }
                Ok(())
            })
        })
    })
}

/// `test_elbo_enumerate_plates_6`: either axis (not both) of two crossed ones can be a
/// vectorised plate, the losses and gradients equal to those with two loops; both vectorised
/// is the typed error (Pyro: "Expected tree-structured plate nesting").
#[test]
fn elbo_enumerate_plates_6() -> Res {
    for scale in [1.0, 10.0] {
        let what = |form: &str| format!("plates_6 {form}, scale {scale}");
        let seq_seq = || {
            (
                TraceEnumElbo::new().max_plate_nesting(0),
                plates_model(6, true, true, scale),
                nothing(),
            )
        };
        check_same(
            seq_seq(),
            (
                TraceEnumElbo::new().max_plate_nesting(1),
                plates_model(6, false, true, scale),
                nothing(),
            ),
            &what("plate_iplate"),
        )?;
        check_same(
            seq_seq(),
            (
                TraceEnumElbo::new().max_plate_nesting(1),
                plates_model(6, true, false, scale),
                nothing(),
            ),
            &what("iplate_plate"),
        )?;
        let mut model = plates_model(6, false, false, scale);
        let elbo = TraceEnumElbo::new().max_plate_nesting(2);
        let err = match loss_and_grads(&elbo, 0, |c| model(c), |_| Ok(())) {
            Ok(_) => panic!("{}: two crossed plates must fail", what("plate_plate")),
            Err(e) => e.downcast::<InferError>().expect("an InferError"),
        };
        assert!(
            matches!(err.root(), InferError::Enumeration { .. }),
            "{err}"
        );
        crate::common::assert_mentions(&err, &["tree-structured"]);
    }
    Ok(())
}

/// `test_elbo_enumerate_plates_7`: the same crossed axes, `d` depending on `b` only and `e` on
/// `c` only: any of the axes, or both, can be vectorised, the losses and gradients equal to
/// those with two loops.
#[test]
fn elbo_enumerate_plates_7() -> Res {
    for scale in [1.0, 10.0] {
        let seq_seq = || {
            (
                TraceEnumElbo::new().max_plate_nesting(0),
                plates_model(7, true, true, scale),
                nothing(),
            )
        };
        for (b_seq, c_seq, nesting) in [(false, true, 1), (true, false, 1), (false, false, 2)] {
            check_same(
                seq_seq(),
                (
                    TraceEnumElbo::new().max_plate_nesting(nesting),
                    plates_model(7, b_seq, c_seq, scale),
                    nothing(),
                ),
                &format!("plates_7 (b loop {b_seq}, c loop {c_seq}), scale {scale}"),
            )?;
        }
    }
    Ok(())
}

/// `test_elbo_scale`: a two-component mixture whose component the guide enumerates, against
/// the same mixture written by hand (each component's data under `scale_by` of its
/// probability). Pyro's data are three draws from N(0, 2); fixed here.
#[test]
fn elbo_scale() -> Res {
    let data = [0.4, -1.3, 2.1];
    fn component(
        ctx: &mut Ctx,
        data: &[f64],
        which: &Tensor,
        suffix: &str,
    ) -> vi_infer::Result<()> {
        let locs = ctx.param("locs", &t(&[-1.0, 1.0])?, Constraint::Real)?;
        let loc = vindex(&locs, &[which])?;
        ctx.plate(&format!("data{suffix}"), data.len(), |ctx| {
            ctx.observe(
                &format!("obs{suffix}"),
                Normal::new(&loc, &s(1.0)?)?,
                &t(data)?,
            )
        })?;
        Ok(())
    }
    let probs = |ctx: &mut Ctx| simplex(ctx, "mixture_probs", &t(&[0.25, 0.75])?);
    let auto: Program = Box::new(move |ctx| {
        let mp = probs(ctx)?;
        let which = ctx.sample("which", cat(&mp)?)?;
        component(ctx, &data, &which, "")
    });
    let auto_guide: Program = Box::new(move |ctx| {
        let mp = probs(ctx)?;
        ctx.sample_enum("which", cat(&mp)?)?;
        Ok(())
    });
    let hand: Program = Box::new(move |ctx| {
        let mp = probs(ctx)?;
        for w in 0..2 {
            let which = s(w as f64)?;
            ctx.scale_by(&mp.get(w)?, |ctx| {
                component(ctx, &data, &which, &format!("_{w}"))
            })?;
        }
        Ok(())
    });
    check_same(
        (TraceEnumElbo::new().max_plate_nesting(1), hand, nothing()),
        (TraceEnumElbo::new().max_plate_nesting(1), auto, auto_guide),
        "elbo_scale",
    )
}

/// Pyro's golden gradients of a simplex parameter are w.r.t. its softmax logits; vi's simplex
/// parameters are stick-breaking, so the HMM ports below keep the probabilities as raw
/// (`Real`) parameters, which `Categorical` normalises: at probabilities `p` summing to 1 the
/// logits' gradient is `p ⊙` the raw gradient, so the golden values are divided by `p`.
fn per_raw(logit_grads: &[[f64; 2]], probs: &[[f64; 2]]) -> Vec<f64> {
    logit_grads
        .iter()
        .zip(probs)
        .flat_map(|(g, p)| [g[0] / p[0], g[1] / p[1]])
        .collect()
}

/// `test_elbo_hmm_in_model` ("parallel" rows; `expand=True` and "sequential" have no vi
/// counterpart): an HMM with Gaussian emissions whose states a mean-field guide enumerates
/// step by step inside `markov`; Pyro's golden gradients (`obs_scale` through `exp`, in vi as
/// in Pyro; the simplex ones per [`per_raw`]).
#[test]
fn elbo_hmm_in_model() -> Res {
    for steps in [2usize, 3, 10, 20, 30] {
        let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let trans0 = t2(&[[0.9, 0.1], [0.1, 0.9]])?;
            let trans = ctx.param("transition_probs", &trans0, Constraint::Real)?;
            let locs = ctx.param("obs_locs", &t(&[-1.0, 1.0])?, Constraint::Real)?;
            let scale = ctx.param("obs_scale", &s(1.0)?, Constraint::Positive)?;
            let mut x: Option<Tensor> = None;
            ctx.markov(0..steps, |ctx, i| {
                let probs = match &x {
                    None => t(&[0.5, 0.5])?,
                    Some(x) => vindex(&trans, &[x])?,
                };
                let xi = ctx.sample(&format!("x_{i}"), cat(&probs)?)?;
                let y = Normal::new(&vindex(&locs, &[&xi])?, &scale)?;
                ctx.observe(&format!("y_{i}"), y, &s(1.0)?)?;
                x = Some(xi);
                Ok(())
            })?;
            Ok(())
        };
        let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let mf0 = Tensor::full(0.5f64, (steps, 2), &Device::Cpu)?;
            let mf = ctx.param("mean_field_probs", &mf0, Constraint::Real)?;
            ctx.markov(0..steps, |ctx, i| {
                ctx.sample_enum(&format!("x_{i}"), cat(&mf.get(i)?)?)
            })?;
            Ok(())
        };
        let got = loss_and_grads(&TraceEnumElbo::new(), 0, model, guide)?;
        let n = steps as f64;
        let tr = 0.2 * (n - 1.0);
        let want = [
            (
                "mean_field_probs",
                per_raw(&vec![[0.5, -0.5]; steps], &vec![[0.5, 0.5]; steps]),
            ),
            ("obs_locs", vec![-n, 0.0]),
            ("obs_scale", vec![-n]),
            (
                "transition_probs",
                per_raw(&[[tr, -tr], [-tr, tr]], &[[0.9, 0.1], [0.1, 0.9]]),
            ),
        ];
        for (name, w) in want {
            let what = format!("hmm_in_model, {steps} steps: ∂/∂{name}");
            crate::common::assert_within_abs(&what, &got.grads[name], &w, 1e-5);
        }
    }
    Ok(())
}

/// `test_elbo_hmm_in_guide` ("parallel" rows with golden values; `expand=True` and
/// "sequential" have no vi counterpart): the guide enumerates the states of its own chain
/// inside `markov`, sharing the transition probabilities with the model; categorical
/// emissions, every observation 1.
#[test]
fn elbo_hmm_in_guide() -> Res {
    let golden: [(usize, f64, [f64; 2]); 5] = [
        (2, 0.1029949, [0.75, 0.25]),
        (3, 0.25748726, [1.125, 0.375]),
        (10, 1.64832076, [3.75, 1.25]),
        (20, 3.70781687, [7.5, 2.5]),
        (30, 5.76771452, [11.25, 3.75]),
    ];
    let p = [[0.75, 0.25], [0.25, 0.75]];
    for (steps, tr, em) in golden {
        let chain = move |ctx: &mut Ctx, observe: bool| -> vi_infer::Result<()> {
            let trans = ctx.param("transition_probs", &t2(&p)?, Constraint::Real)?;
            let emission = if observe {
                Some(ctx.param("emission_probs", &t2(&p)?, Constraint::Real)?)
            } else {
                None
            };
            let mut x: Option<Tensor> = None;
            ctx.markov(0..steps, |ctx, i| {
                let probs = match &x {
                    None => t(&[0.5, 0.5])?,
                    Some(x) => vindex(&trans, &[x])?,
                };
                let xi = if observe {
                    ctx.sample(&format!("x_{i}"), cat(&probs)?)?
                } else {
                    ctx.sample_enum(&format!("x_{i}"), cat(&probs)?)?
                };
                if let Some(e) = &emission {
                    ctx.observe(&format!("y_{i}"), cat(&vindex(e, &[&xi])?)?, &s(1.0)?)?;
                }
                x = Some(xi);
                Ok(())
            })?;
            Ok(())
        };
        let got = loss_and_grads(
            &TraceEnumElbo::new(),
            0,
            |c| chain(c, true),
            |c| chain(c, false),
        )?;
        let want = [
            (
                "emission_probs",
                per_raw(&[[em[0], -em[0]], [em[1], -em[1]]], &p),
            ),
            ("transition_probs", per_raw(&[[tr, -tr], [tr, -tr]], &p)),
        ];
        for (name, w) in want {
            let what = format!("hmm_in_guide, {steps} steps: ∂/∂{name}");
            crate::common::assert_within_abs(&what, &got.grads[name], &w, 1e-5);
        }
    }
    Ok(())
}

/// `log Σ exp` of a few numbers.
fn lse(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// `log p(y_0..)` of the two-state chain `x_0 ~ a[x], x_t ~ a[x_{t−1}]`, `y_t ~ e[x_t]`,
/// started before `x_0` at state `x` (the forward algorithm, in f64).
fn forward(a: &[[f64; 2]; 2], e: &[[f64; 2]; 2], x: usize, ys: &[usize]) -> f64 {
    let mut alpha = [f64::NEG_INFINITY; 2];
    alpha[x] = 0.0;
    for &y in ys {
        let next: Vec<f64> = (0..2)
            .map(|k| lse(&[alpha[0] + a[0][k].ln(), alpha[1] + a[1][k].ln()]) + e[k][y].ln())
            .collect();
        alpha = [next[0], next[1]];
    }
    lse(&alpha)
}

/// The observations of `test_hmm_enumerate_model*` (Pyro's: fair coin flips; fixed here).
const HMM_YS: [usize; 30] = [
    0, 1, 1, 0, 1, 0, 0, 0, 1, 1, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 0, 1, 1,
];

/// The chain of `test_hmm_enumerate_model*`: from the state `x`, `steps` states enumerated
/// inside `markov`, each emitting a categorical observation.
fn hmm_chain(ctx: &mut Ctx, x: Tensor, steps: usize) -> vi_infer::Result<()> {
    let p = [[0.75, 0.25], [0.25, 0.75]];
    let trans = simplex(ctx, "transition_probs", &t2(&p)?)?;
    let emission = simplex(ctx, "emission_probs", &t2(&p)?)?;
    let mut x = x;
    ctx.markov(0..steps, |ctx, i| {
        x = ctx.sample_enum(&format!("x_{i}"), cat(&vindex(&trans, &[&x])?)?)?;
        let y = s(HMM_YS[i] as f64)?;
        ctx.observe(&format!("y_{i}"), cat(&vindex(&emission, &[&x])?)?, &y)?;
        Ok(())
    })?;
    Ok(())
}

/// `test_hmm_enumerate_model` (Pyro: the loss runs) and `test_hmm_enumerate_model_and_guide`
/// (the initial state enumerated in the guide, the chain in the model): the losses are the
/// forward algorithm's, `−log p(y)` and `−Σ_x q(x) [log p(x) + log p(y | x) − log q(x)]`.
#[test]
fn hmm_enumerate_model_and_guide() -> Res {
    let p = [[0.75, 0.25], [0.25, 0.75]];
    for steps in [2, 3, 4, 5, 10, 20, 30] {
        let ys = &HMM_YS[..steps];
        let got = loss_and_grads(
            &TraceEnumElbo::new(),
            0,
            |ctx| hmm_chain(ctx, s(0.0)?, steps),
            |_| Ok(()),
        )?;
        let want = -forward(&p, &p, 0, ys);
        crate::common::assert_close_tol(&[got.loss], &[want], 1e-10, &format!("{steps} steps"));
        let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let x = ctx.sample("x", cat(&t(&[0.5, 0.5])?)?)?;
            hmm_chain(ctx, x, steps)
        };
        let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let q = simplex(ctx, "init_probs", &t(&[0.75, 0.25])?)?;
            ctx.sample_enum("x", cat(&q)?)?;
            Ok(())
        };
        let got = loss_and_grads(&TraceEnumElbo::new(), 0, model, guide)?;
        let q = [0.75f64, 0.25];
        let want: f64 = -(0..2)
            .map(|x| q[x] * (0.5f64.ln() + forward(&p, &p, x, ys) - q[x].ln()))
            .sum::<f64>();
        let what = format!("model and guide, {steps} steps");
        crate::common::assert_close_tol(&[got.loss], &[want], 1e-10, &what);
    }
    Ok(())
}

/// `test_svi_step_smoke` (rows `None` and "parallel"): one SVI step (Adam, lr 0.001) of
/// Pyro's two Gaussian mixtures of data [0, 1, 9], unit-variance components at −1 and 1: one
/// site per point in a loop (`gmm_model`, Bernoulli assignments) and the vectorised one
/// (`gmm_batch_model`, one-hot assignments), their guides' assignments drawn or enumerated.
/// Pyro checks the step runs; with the guide enumerated the loss is also the exact
/// `Σ_i Σ_k q_k [log q_k − log p_k − log N(x_i; m_k, 1)]`.
#[test]
fn svi_step_smoke() -> Res {
    let data = [0.0, 1.0, 9.0];
    let mus = [-1.0, 1.0];
    let lnorm = |x: f64, m: f64| -0.5 * (x - m).powi(2) - 0.5 * (2.0 * std::f64::consts::PI).ln();
    for batch in [false, true] {
        for mark in [false, true] {
            let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
                let mus = t(&mus)?;
                if batch {
                    let p = ctx.param("p", &t(&[0.3])?, Constraint::Real)?;
                    let p = Tensor::cat(&[&p, &p.affine(-1.0, 1.0)?], 0)?;
                    let scale = ctx.param("scale", &t(&[1.0])?, Constraint::Real)?;
                    ctx.plate("data", data.len(), |ctx| {
                        let z = ctx.sample("z", vi_dist::OneHotCategorical::from_probs(&p)?)?;
                        let loc = z.broadcast_mul(&mus)?.sum(z.rank() - 1)?;
                        ctx.observe("x", Normal::new(&loc, &scale)?, &t(&data)?)
                    })?;
                } else {
                    let p = ctx.param("p", &s(0.3)?, Constraint::Real)?;
                    let scale = ctx.param("scale", &s(1.0)?, Constraint::Real)?;
                    for (i, x) in data.iter().enumerate() {
                        let z =
                            ctx.sample(&format!("z_{i}"), vi_dist::Bernoulli::from_probs(&p)?)?;
                        let d = Normal::new(&vindex(&mus, &[&z])?, &scale)?;
                        ctx.observe(&format!("x_{i}"), d, &s(*x)?)?;
                    }
                }
                Ok(())
            };
            let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
                if batch {
                    ctx.plate("data", data.len(), |ctx| {
                        let init = Tensor::full(0.6f64, (data.len(), 1), &Device::Cpu)?;
                        let probs = ctx.param("probs", &init, Constraint::Real)?;
                        let probs = Tensor::cat(&[&probs, &probs.affine(-1.0, 1.0)?], 1)?;
                        let d = vi_dist::OneHotCategorical::from_probs(&probs)?;
                        if mark {
                            ctx.sample_enum("z", d)
                        } else {
                            ctx.sample("z", d)
                        }
                    })?;
                } else {
                    for i in 0..data.len() {
                        let p = ctx.param(&format!("p_{i}"), &s(0.6)?, Constraint::Real)?;
                        let d = vi_dist::Bernoulli::from_probs(&p)?;
                        if mark {
                            ctx.sample_enum(&format!("z_{i}"), d)?;
                        } else {
                            ctx.sample(&format!("z_{i}"), d)?;
                        }
                    }
                }
                Ok(())
            };
            let mut svi = vi_infer::Svi::new(
                model,
                guide,
                crate::common::adam(0.001),
                TraceEnumElbo::new(),
            )
            .seed(0);
            let r = svi.step()?;
            assert!(
                r.loss.is_finite(),
                "batch {batch}, enumerated {mark}: {}",
                r.loss
            );
            if mark {
                // Component k's prior and guide probabilities: the single model's z = 1 has
                // p = 0.3, q = 0.6; the batch model's first class (at −1) has p = 0.3, q = 0.6.
                let (p, q): ([f64; 2], [f64; 2]) = if batch {
                    ([0.3, 0.7], [0.6, 0.4])
                } else {
                    ([0.7, 0.3], [0.4, 0.6])
                };
                let want: f64 = data
                    .iter()
                    .map(|&x| {
                        (0..2)
                            .map(|k| q[k] * (q[k].ln() - p[k].ln() - lnorm(x, mus[k])))
                            .sum::<f64>()
                    })
                    .sum();
                let what = format!("batch {batch}: loss");
                crate::common::assert_close_tol(&[r.loss], &[want], 1e-10, &what);
            }
        }
    }
    Ok(())
}

/// The model of `test_elbo_enumerate_plates_8`: `a` enumerated, then `b` over an outer axis of
/// 2 (the guide's), and `c` observed given both over an inner axis of 2 nested in it; each
/// axis a sequential plate (`ctx.plate_seq`, `seq`) or a vectorised one.
fn plates_8_model<'a>(outer_seq: bool, inner_seq: bool) -> Program<'a> {
    // data[j][i]: inner index j, outer index i.
    let data = [[0.0, 1.0], [0.0, 2.0]];
    Box::new(move |ctx: &mut Ctx| {
        ctx.config_enumerate(|ctx| {
            let pa = simplex(ctx, "model_probs_a", &t(&[0.45, 0.55])?)?;
            let pb = simplex(ctx, "model_probs_b", &t(&[0.6, 0.4])?)?;
            let c0 = Tensor::new(
                &[
                    [[0.4f64, 0.5, 0.1], [0.3, 0.5, 0.2]],
                    [[0.3, 0.4, 0.3], [0.4, 0.4, 0.2]],
                ],
                &Device::Cpu,
            )?;
            let pc = simplex(ctx, "model_probs_c", &c0)?;
            let a = ctx.sample("a", cat(&pa)?)?;
            match (outer_seq, inner_seq) {
                (true, true) => {
                    ctx.plate_seq("outer", 2, |ctx, i| {
                        let b = ctx.sample(&format!("b_{i}"), cat(&pb)?)?;
                        ctx.plate_seq("inner", 2, |ctx, j| {
                            let d = cat(&vindex(&pc, &[&a, &b])?)?;
                            ctx.observe(&format!("c_{i}_{j}"), d, &s(data[j][i])?)
                        })
                    })?;
                }
                (true, false) => {
                    ctx.plate_seq("outer", 2, |ctx, i| {
                        let b = ctx.sample(&format!("b_{i}"), cat(&pb)?)?;
                        let obs = t(&[data[0][i], data[1][i]])?;
                        ctx.plate("inner", 2, |ctx| {
                            let d = cat(&vindex(&pc, &[&a, &b])?)?;
                            ctx.observe(&format!("c_{i}"), d, &obs)
                        })
                    })?;
                }
                (false, true) => {
                    ctx.plate("outer", 2, |ctx| {
                        let b = ctx.sample("b", cat(&pb)?)?;
                        ctx.plate_seq("inner", 2, |ctx, j| {
                            let d = cat(&vindex(&pc, &[&a, &b])?)?;
                            ctx.observe(&format!("c_{j}"), d, &t(&data[j])?)
                        })
                    })?;
                }
                (false, false) => {
                    ctx.plate("outer", 2, |ctx| {
                        let b = ctx.sample("b", cat(&pb)?)?;
                        ctx.plate("inner", 2, |ctx| {
                            let d = cat(&vindex(&pc, &[&a, &b])?)?;
                            ctx.observe("c", d, &Tensor::new(&data, &Device::Cpu)?)
                        })
                    })?;
                }
            }
            Ok(())
        })
    })
}

/// The guide of `test_elbo_enumerate_plates_8`: `b` enumerated over the outer axis.
fn plates_8_guide<'a>(outer_seq: bool) -> Program<'a> {
    Box::new(move |ctx: &mut Ctx| {
        let q = simplex(ctx, "guide_probs_b", &t(&[0.8, 0.2])?)?;
        if outer_seq {
            ctx.plate_seq("outer", 2, |ctx, i| {
                ctx.sample_enum(&format!("b_{i}"), cat(&q)?)
            })?;
        } else {
            ctx.plate("outer", 2, |ctx| ctx.sample_enum("b", cat(&q)?))?;
        }
        Ok(())
    })
}

/// `test_elbo_enumerate_plates_8` (scales 1, Pyro's): with the outer axis sequential and the
/// inner one a plate, the loss and gradients equal those with both sequential; with the outer
/// axis a plate (the inner one either), `a` is enumerated in the model outside the plate in
/// which the guide enumerates `b`, the typed error naming `b` (Pyro: "Expected model
/// enumeration to be no more global than guide").
#[test]
fn elbo_enumerate_plates_8() -> Res {
    check_same(
        (
            TraceEnumElbo::new().max_plate_nesting(0),
            plates_8_model(true, true),
            plates_8_guide(true),
        ),
        (
            TraceEnumElbo::new().max_plate_nesting(1),
            plates_8_model(true, false),
            plates_8_guide(true),
        ),
        "plates_8 iplate-plate",
    )?;
    for (inner_seq, nesting) in [(true, 1), (false, 2)] {
        let mut model = plates_8_model(false, inner_seq);
        let mut guide = plates_8_guide(false);
        let elbo = TraceEnumElbo::new().max_plate_nesting(nesting);
        let what = format!(
            "plates_8 plate-{}",
            if inner_seq { "iplate" } else { "plate" }
        );
        let err = match loss_and_grads(&elbo, 0, |c| model(c), |c| guide(c)) {
            Ok(_) => panic!("{what}: model enumeration more global than the guide's must fail"),
            Err(e) => e.downcast::<InferError>().expect("an InferError"),
        };
        assert!(
            matches!(&*err, InferError::Enumeration { sites, .. } if sites == &["b"]),
            "{what}: {err}"
        );
        crate::common::assert_mentions(&err, &["no more global than guide enumeration", "outer"]);
    }
    Ok(())
}

/// `test_multi_dependence_enumeration` (Pyro's issue 2223): a mixture of `K = 5` components
/// whose means `mu` (`[K, 2]`, one event) are drawn per row of a plate of `N = 2` at dim −2;
/// per element of a plate of 3 observations at dim −1, the component `s` enumerated and two
/// sites, `x` (observed) and `y` (latent), both `Normal(mu[s], 0.1)`; the guide `AutoDelta` of
/// the model with `s` hidden. Pyro asserts the mixing weights get a gradient; here it is also
/// finite and not zero. Pyro's `x` is a draw of the model; fixed here.
#[test]
fn multi_dependence_enumeration() -> Res {
    const K: usize = 5;
    let (n, n_obs, d) = (2usize, 3usize, 2usize);
    let x = Tensor::new(
        &[
            [[0.3f64, -1.2], [1.1, 0.4], [0.3, -1.1]],
            [[-0.7, 0.9], [-0.6, 1.0], [1.5, -0.2]],
        ],
        &Device::Cpu,
    )?;
    let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate_dim("data_plate", n, -2, |ctx| {
            let pi0 = Tensor::full(1.0 / K as f64, K, &Device::Cpu)?;
            let pi = simplex(ctx, "pi", &pi0)?;
            let zeros = Tensor::zeros((K, d), candle_core::DType::F64, &Device::Cpu)?;
            let ones = zeros.ones_like()?;
            let mu = ctx.sample("mu", Normal::new(&zeros, &ones)?.to_event(2)?)?;
            // `mu[..., s, :]`: `mu` is `[N, 1, K, d]`, its batch dims indexed by position.
            let rows = Tensor::arange(0u32, n as u32, &Device::Cpu)?.reshape((n, 1))?;
            let col = Tensor::zeros(1, candle_core::DType::U32, &Device::Cpu)?;
            ctx.plate_dim("observations", n_obs, -1, |ctx| {
                let s = ctx.sample_enum("s", cat(&pi)?)?;
                let loc = vindex(&mu, &[&rows, &col, &s])?;
                let scale = loc.ones_like()?.affine(0.1, 0.0)?;
                ctx.sample("x", Normal::new(&loc, &scale)?.to_event(1)?)?;
                ctx.sample("y", Normal::new(&loc, &scale)?.to_event(1)?)
            })
        })?;
        Ok(())
    };
    let conditioned = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.condition([("x".to_string(), x.clone())], model)
    };
    let guide = vi_infer::autoguide::AutoDelta::new(conditioned.clone())
        .block(vi_infer::handlers::Block::hide(["s"]));
    let elbo = TraceEnumElbo::new().max_plate_nesting(2);
    let got = loss_and_grads(&elbo, 0, conditioned, guide.as_fn())?;
    assert!(got.loss.is_finite(), "loss {}", got.loss);
    let g = &got.grads["pi"];
    assert!(g.iter().all(|v| v.is_finite()), "∂/∂pi {g:?}");
    assert!(g.iter().any(|v| *v != 0.0), "∂/∂pi {g:?}");
    Ok(())
}
