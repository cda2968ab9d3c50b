//! Ports of Pyro's `tests/infer/test_enum.py` (the peer's truth for enumeration semantics):
//! each compares an enumerated, plated model with a hand-written equivalent (a loop of sites
//! instead of a plate, or the sum done by hand), losses and gradients equal, as Pyro's
//! `_check_loss_and_grads`. Ported: `test_elbo_enumerate_1`, `_2`, `_3` (scale 1 and 10),
//! `test_elbo_enumerate_plate_1` to `_4` (single, batch, masked; scale 1 and 10),
//! `test_elbo_enumerate_plate_5` (the error), `_6` (parallel), `_7`,
//! `test_elbo_enumerate_plates_1` to `_5`.

use candle_core::{Device, Tensor};
use vi_dist::{Categorical, Constraint, Normal};
use vi_infer::{Ctx, InferError, TraceEnumElbo, vindex};

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
