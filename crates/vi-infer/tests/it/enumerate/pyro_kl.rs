//! Ports of the closed-form cases of Pyro's `tests/infer/test_enum.py` (see `pyro.rs` for the
//! list): guide sites drawn or enumerated against model sites whose KL divergence is known, the
//! loss and the gradient of every parameter against the KL and its gradient, within Pyro's
//! `prec` (absolute). Pyro's `differentiable_loss` and `loss_and_grads` rows are one here (vi
//! computes the loss and the surrogate in one pass). Where a row draws its sites, Pyro's
//! particle count can leave the score-function gradient's standard error close to its
//! tolerance (a pass at one seed, not a check); those rows take enough particles for the
//! standard error to be at most a third of the tolerance ([`particles_for`], from the exact
//! standard deviation of one particle's gradient, [`score_sd`]), or a quarter where the count is
//! fixed, and say so.

use candle_core::{Device, Tensor};
use vi_dist::{Bernoulli, Categorical, Constraint, Distribution, Normal};
use vi_infer::{Ctx, ParamStore, TraceEnumElbo};

use super::{grads_of, loss_and_grads, param};
use crate::common::{Res, assert_within_abs};

fn s(v: f64) -> vi_infer::Result<Tensor> {
    Ok(Tensor::new(v, &Device::Cpu)?)
}

fn t(v: &[f64]) -> vi_infer::Result<Tensor> {
    Ok(Tensor::new(v, &Device::Cpu)?)
}

/// `ctx.sample`, or `ctx.sample_enum` when `mark` (Pyro's `infer={"enumerate": "parallel"}`
/// against `None`).
fn sample_marked(
    ctx: &mut Ctx,
    name: &str,
    d: impl Distribution,
    mark: bool,
) -> vi_infer::Result<Tensor> {
    if mark {
        ctx.sample_enum(name, d)
    } else {
        ctx.sample(name, d)
    }
}

/// `KL(Bernoulli(q) ‖ Bernoulli(p))`, differentiable in `q`.
fn kl_bern(q: &Tensor, p: f64) -> Res<Tensor> {
    let a = (q * q.log()?.affine(1.0, -p.ln())?)?;
    let r = q.affine(-1.0, 1.0)?;
    let b = (&r * r.log()?.affine(1.0, -(1.0 - p).ln())?)?;
    Ok((a + b)?)
}

/// Pyro's `p` for which `KL(Bernoulli(0.75) ‖ Bernoulli(p)) = 0.5`.
const P_HALF: f64 = 0.2693204236205713;

/// The standard deviation of one particle's score-function gradient in `q` of the −ELBO of
/// guide sites `Bernoulli(q)` against model sites `Bernoulli(p_i)` (`sites`: `(p_i, enumerated)`)
/// that share their plates, so that Dice weights every cost by every drawn site's score:
/// `g = (Σ_D s_i)(Σ_D c_i + Σ_E KL_j) + Σ_D s_i + Σ_E ∂KL_j` over the drawn sites `D` (score
/// `s_i`, cost `c_i = log q − log p_i`) and the enumerated ones `E`; exact, over the `2^|D|`
/// joint values.
fn score_sd(q: f64, sites: &[(f64, bool)]) -> f64 {
    let kl = |p: f64| q * (q / p).ln() + (1.0 - q) * ((1.0 - q) / (1.0 - p)).ln();
    let dkl = |p: f64| (q / p).ln() - ((1.0 - q) / (1.0 - p)).ln();
    let drawn: Vec<f64> = sites.iter().filter(|s| !s.1).map(|s| s.0).collect();
    let (k_e, dk_e): (f64, f64) = sites
        .iter()
        .filter(|s| s.1)
        .fold((0.0, 0.0), |(a, b), s| (a + kl(s.0), b + dkl(s.0)));
    let (mut m1, mut m2) = (0.0, 0.0);
    for bits in 0..1usize << drawn.len() {
        let (mut prob, mut c, mut score) = (1.0, 0.0, 0.0);
        for (i, &p) in drawn.iter().enumerate() {
            let x = (bits >> i) & 1 == 1;
            let (qx, px) = if x { (q, p) } else { (1.0 - q, 1.0 - p) };
            prob *= qx;
            c += qx.ln() - px.ln();
            score += if x { 1.0 / q } else { -1.0 / (1.0 - q) };
        }
        let g = score * (c + k_e) + score + dk_e;
        m1 += prob * g;
        m2 += prob * g * g;
    }
    (m2 - m1 * m1).max(0.0).sqrt()
}

/// The particles for a standard error of at most `prec / 3` given one particle's standard
/// deviation `sd`, and at least Pyro's `pyro`. Where `sd` has no closed form here
/// ("estimated"), it is the spread of a row's estimates over 32 seeds at 10 000 particles,
/// times `√10 000`, the largest over the rows of a test.
fn particles_for(sd: f64, prec: f64, pyro: usize) -> usize {
    pyro.max((3.0 * sd / prec).powi(2).ceil() as usize)
}

/// Runs `elbo` on `model` and `guide` (seed 0) and checks the loss and the gradient of every
/// parameter, each divided by `divide` (Pyro's division by the particles of a plate), against
/// `expected` (a tensor of the stored parameters, differentiated the same way) within `prec`.
fn check_kl(
    elbo: &TraceEnumElbo,
    model: impl FnMut(&mut Ctx) -> vi_infer::Result<()>,
    guide: impl FnMut(&mut Ctx) -> vi_infer::Result<()>,
    divide: f64,
    prec: f64,
    expected: impl Fn(&ParamStore) -> Res<Tensor>,
    what: &str,
) -> Res {
    let got = loss_and_grads(elbo, 0, model, guide)?;
    let want = expected(&got.store)?;
    let want_grads = grads_of(&want, &got.store)?;
    assert_within_abs(
        &format!("{what}: loss"),
        &[got.loss / divide],
        &[want.to_scalar::<f64>()?],
        prec,
    );
    assert!(!got.grads.is_empty(), "{what}: no parameter");
    for (name, g) in &got.grads {
        let g: Vec<f64> = g.iter().map(|v| v / divide).collect();
        assert_within_abs(&format!("{what}: ∂/∂{name}"), &g, &want_grads[name], prec);
    }
    Ok(())
}

/// `test_elbo_bern`: `z` in a plate of particles, both programs scaled (1 or 10); the loss and
/// gradient per particle are the KL's times the scale. Drawn, Pyro's 10 000 particles give a
/// standard error of 0.23 at scale 10 against its 0.22 ([`particles_for`]: 97 000 here).
#[test]
fn elbo_bern() -> Res {
    for scale in [1.0, 10.0] {
        for mark in [false, true] {
            let (n, prec) = if mark {
                (1, 0.001)
            } else {
                let sd = scale * score_sd(0.5, &[(0.25, false)]);
                (particles_for(sd, 0.22, 10_000), 0.22)
            };
            let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
                ctx.scale(scale, |ctx| {
                    ctx.plate("particles", n, |ctx| {
                        ctx.sample("z", Bernoulli::from_probs(&s(0.25)?)?)
                    })
                })?;
                Ok(())
            };
            let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
                ctx.scale(scale, |ctx| {
                    let q = ctx.param("q", &s(0.5)?, Constraint::Real)?;
                    ctx.plate("particles", n, |ctx| {
                        sample_marked(ctx, "z", Bernoulli::from_probs(&q)?, mark)
                    })
                })?;
                Ok(())
            };
            let kl = |st: &ParamStore| -> Res<Tensor> {
                Ok((kl_bern(&param(st, "q")?, 0.25)? * scale)?)
            };
            let what = format!("elbo_bern, scale {scale}, enumerated {mark}");
            check_kl(
                &TraceEnumElbo::new(),
                model,
                guide,
                n as f64,
                prec,
                kl,
                &what,
            )?;
        }
    }
    Ok(())
}

/// `test_elbo_bern_bern` (rows without `num_samples`): two global sites, drawn (180 000
/// vectorised particles, Pyro's) or enumerated.
#[test]
fn elbo_bern_bern() -> Res {
    for (m1, m2) in [(false, false), (false, true), (true, false), (true, true)] {
        let (n, prec) = if m1 && m2 {
            (1, 0.001)
        } else {
            let sd = score_sd(0.75, &[(0.2, m1), (0.4, m2)]);
            (particles_for(sd, 0.2, 2 * 300 * 300), 0.2)
        };
        let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
            ctx.sample("x1", Bernoulli::from_probs(&s(0.2)?)?)?;
            ctx.sample("x2", Bernoulli::from_probs(&s(0.4)?)?)?;
            Ok(())
        };
        let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let q = ctx.param("q", &s(0.75)?, Constraint::Real)?;
            sample_marked(ctx, "x1", Bernoulli::from_probs(&q)?, m1)?;
            sample_marked(ctx, "x2", Bernoulli::from_probs(&q)?, m2)?;
            Ok(())
        };
        let elbo = TraceEnumElbo::new()
            .num_particles(n)
            .vectorize_particles(true);
        let kl = |st: &ParamStore| -> Res<Tensor> {
            let q = param(st, "q")?;
            Ok((kl_bern(&q, 0.2)? + kl_bern(&q, 0.4)?)?)
        };
        let what = format!("elbo_bern_bern ({m1}, {m2})");
        check_kl(&elbo, model, guide, 1.0, prec, kl, &what)?;
    }
    Ok(())
}

/// `test_elbo_berns` (rows without `num_samples`): three global sites, each drawn or
/// enumerated. Drawn, Pyro's 10 000 particles give a standard error of up to 0.12 (all three
/// drawn) against its 0.1 ([`particles_for`]: up to 133 000 here).
#[test]
fn elbo_berns() -> Res {
    for marks in super::assignments(&[2, 2, 2]) {
        let marks: Vec<bool> = marks.iter().map(|&m| m == 1).collect();
        let all = marks.iter().all(|&m| m);
        let (n, prec) = if all {
            (1, 0.001)
        } else {
            let sites: Vec<(f64, bool)> = [0.1, 0.2, 0.3].into_iter().zip(marks.clone()).collect();
            (particles_for(score_sd(0.75, &sites), 0.1, 10_000), 0.1)
        };
        let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
            for (i, p) in [0.1, 0.2, 0.3].into_iter().enumerate() {
                ctx.sample(&format!("x{}", i + 1), Bernoulli::from_probs(&s(p)?)?)?;
            }
            Ok(())
        };
        let m = marks.clone();
        let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let q = ctx.param("q", &s(0.75)?, Constraint::Real)?;
            for (i, &mark) in m.iter().enumerate() {
                sample_marked(
                    ctx,
                    &format!("x{}", i + 1),
                    Bernoulli::from_probs(&q)?,
                    mark,
                )?;
            }
            Ok(())
        };
        let elbo = TraceEnumElbo::new()
            .num_particles(n)
            .vectorize_particles(true);
        let kl = |st: &ParamStore| -> Res<Tensor> {
            let q = param(st, "q")?;
            Ok(((kl_bern(&q, 0.1)? + kl_bern(&q, 0.2)?)? + kl_bern(&q, 0.3)?)?)
        };
        check_kl(
            &elbo,
            model,
            guide,
            1.0,
            prec,
            kl,
            &format!("elbo_berns {marks:?}"),
        )?;
    }
    Ok(())
}

/// `test_elbo_categoricals` (the "parallel" rows without `num_samples`; "sequential" has no vi
/// counterpart): three categoricals enumerated in the guide, `max_plate_nesting` 0 and 1.
#[test]
fn elbo_categoricals() -> Res {
    let ps: [&[f64]; 3] = [&[0.6, 0.4], &[0.3, 0.3, 0.4], &[0.1, 0.2, 0.3, 0.4]];
    let qs: [&[f64]; 3] = [&[0.4, 0.6], &[0.4, 0.3, 0.3], &[0.4, 0.3, 0.2, 0.1]];
    for nesting in [0, 1] {
        let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
            for (i, p) in ps.iter().enumerate() {
                ctx.sample(&format!("x{}", i + 1), Categorical::from_probs(&t(p)?)?)?;
            }
            Ok(())
        };
        let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
            for (i, q) in qs.iter().enumerate() {
                let q = ctx.param(&format!("q{}", i + 1), &t(q)?, Constraint::Real)?;
                ctx.sample_enum(&format!("x{}", i + 1), Categorical::from_probs(&q)?)?;
            }
            Ok(())
        };
        // Σ KL(Categorical(q_i) ‖ Categorical(p_i)), q_i normalised as Categorical does.
        let kl = |st: &ParamStore| -> Res<Tensor> {
            let mut total = s(0.0)?;
            for (i, p) in ps.iter().enumerate() {
                let q = param(st, &format!("q{}", i + 1))?;
                let q = q.broadcast_div(&q.sum_all()?)?;
                let log_ratio = (q.log()? - t(p)?.log()?)?;
                total = (total + (q * log_ratio)?.sum_all()?)?;
            }
            Ok(total)
        };
        let elbo = TraceEnumElbo::new().max_plate_nesting(nesting);
        check_kl(
            &elbo,
            model,
            guide,
            1.0,
            0.001,
            kl,
            &format!("nesting {nesting}"),
        )?;
    }
    Ok(())
}

/// `test_elbo_normals`, the row with every site drawn (100 000 vectorised particles, Pyro's);
/// its rows that enumerate a Normal are Monte Carlo enumeration (`num_samples`), which vi
/// does not have.
#[test]
fn elbo_normals() -> Res {
    let locs = [0.25, 0.5, 1.0];
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        for (i, p) in locs.iter().enumerate() {
            ctx.sample(&format!("x{}", i + 1), Normal::new(&s(*p)?, &s(1.0)?)?)?;
        }
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let q = ctx.param("q", &s(0.0)?, Constraint::Real)?;
        for i in 0..3 {
            ctx.sample(&format!("x{}", i + 1), Normal::new(&q, &s(1.0)?)?)?;
        }
        Ok(())
    };
    // KL(N(q, 1) ‖ N(p, 1)) = (q − p)² / 2.
    let kl = |st: &ParamStore| -> Res<Tensor> {
        let q = param(st, "q")?;
        let mut total = s(0.0)?;
        for p in locs {
            total = (total + q.affine(1.0, -p)?.sqr()?.affine(0.5, 0.0)?)?;
        }
        Ok(total)
    };
    let elbo = TraceEnumElbo::new()
        .num_particles(100_000)
        .vectorize_particles(true);
    check_kl(&elbo, model, guide, 1.0, 0.1, kl, "elbo_normals")
}

/// `test_elbo_plate` (rows without `num_samples`): in a plate of particles, `y` and, in a
/// nested plate of 1 or 2, `z`; each drawn or enumerated; the loss `(1 + plate_dim) · 0.5`.
/// Drawn, Pyro's 10 000 particles give a standard error of 0.047 (plate of 2) against its
/// 0.1; 40 000 here (0.024).
#[test]
fn elbo_plate() -> Res {
    for plate_dim in [1, 2] {
        for (m1, m2) in [(false, false), (false, true), (true, false), (true, true)] {
            let n = if m1 && m2 { 1 } else { 40_000 };
            let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
                ctx.plate("particles", n, |ctx| {
                    ctx.sample("y", Bernoulli::from_probs(&s(P_HALF)?)?)?;
                    ctx.plate("plate", plate_dim, |ctx| {
                        ctx.sample("z", Bernoulli::from_probs(&s(P_HALF)?)?)
                    })
                })?;
                Ok(())
            };
            let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
                let q = ctx.param("q", &s(0.75)?, Constraint::Real)?;
                ctx.plate("particles", n, |ctx| {
                    sample_marked(ctx, "y", Bernoulli::from_probs(&q)?, m1)?;
                    ctx.plate("plate", plate_dim, |ctx| {
                        sample_marked(ctx, "z", Bernoulli::from_probs(&q)?, m2)
                    })
                })?;
                Ok(())
            };
            let kl = |st: &ParamStore| -> Res<Tensor> {
                Ok((kl_bern(&param(st, "q")?, P_HALF)? * (1 + plate_dim) as f64)?)
            };
            let what = format!("elbo_plate, plate_dim {plate_dim}, ({m1}, {m2})");
            check_kl(
                &TraceEnumElbo::new(),
                model,
                guide,
                n as f64,
                0.1,
                kl,
                &what,
            )?;
        }
    }
    Ok(())
}

/// `test_elbo_iplate`: as `elbo_plate` with a sequential plate (a loop of sites `y_i`)
/// instead of the nested one. Drawn, Pyro's 20 000 particles give a standard error of up to
/// 0.066 against its 0.1 (vi's Dice weights every cost of a particle by every drawn site's
/// score, sequential plates being a loop; [`particles_for`]: up to 78 000 here).
#[test]
fn elbo_iplate() -> Res {
    for plate_dim in [1, 2] {
        for (m1, m2) in [(false, false), (false, true), (true, false), (true, true)] {
            let n = if m1 && m2 {
                1
            } else {
                let sites: Vec<(f64, bool)> = std::iter::once((P_HALF, m1))
                    .chain(std::iter::repeat_n((P_HALF, m2), plate_dim))
                    .collect();
                particles_for(score_sd(0.75, &sites), 0.1, 20_000)
            };
            let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
                ctx.plate("particles", n, |ctx| {
                    ctx.sample("x", Bernoulli::from_probs(&s(P_HALF)?)?)?;
                    for i in 0..plate_dim {
                        ctx.sample(&format!("y_{i}"), Bernoulli::from_probs(&s(P_HALF)?)?)?;
                    }
                    Ok(())
                })
            };
            let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
                let q = ctx.param("q", &s(0.75)?, Constraint::Real)?;
                ctx.plate("particles", n, |ctx| {
                    sample_marked(ctx, "x", Bernoulli::from_probs(&q)?, m1)?;
                    for i in 0..plate_dim {
                        sample_marked(ctx, &format!("y_{i}"), Bernoulli::from_probs(&q)?, m2)?;
                    }
                    Ok(())
                })
            };
            let kl = |st: &ParamStore| -> Res<Tensor> {
                Ok((kl_bern(&param(st, "q")?, P_HALF)? * (1 + plate_dim) as f64)?)
            };
            let what = format!("elbo_iplate, plate_dim {plate_dim}, ({m1}, {m2})");
            check_kl(
                &TraceEnumElbo::new(),
                model,
                guide,
                n as f64,
                0.1,
                kl,
                &what,
            )?;
        }
    }
    Ok(())
}

/// `test_non_mean_field_bern_bern_elbo_gradient`: `z` depends on `y` in both programs; the
/// guide (both sites) drawn or enumerated. The exact −ELBO: `KL(q1 ‖ 0.33) + q1 · KL(q2 + 0.1 ‖
/// 0.65) + (1 − q1) · KL(0.1 ‖ 0.1)` (Pyro checks the gradients; the loss too here). Drawn,
/// Pyro's 20 000 particles give a standard error of up to 0.018 against its 0.03; 200 000
/// here (0.006).
#[test]
fn non_mean_field_bern_bern_elbo_gradient() -> Res {
    for (pi1, pi2) in [(0.33, 0.55), (0.33, 0.27), (0.43, 0.55), (0.43, 0.27)] {
        for mark in [false, true] {
            let (n, prec) = if mark { (1, 0.001) } else { (200_000, 0.03) };
            let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
                ctx.plate("particles", n, |ctx| {
                    let y = ctx.sample("y", Bernoulli::from_probs(&s(0.33)?)?)?;
                    ctx.sample("z", Bernoulli::from_probs(&y.affine(0.55, 0.10)?)?)
                })?;
                Ok(())
            };
            let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
                let q1 = ctx.param("q1", &s(pi1)?, Constraint::Real)?;
                let q2 = ctx.param("q2", &s(pi2)?, Constraint::Real)?;
                ctx.plate("particles", n, |ctx| {
                    let y = sample_marked(ctx, "y", Bernoulli::from_probs(&q1)?, mark)?;
                    let p = y.broadcast_mul(&q2)?.affine(1.0, 0.10)?;
                    sample_marked(ctx, "z", Bernoulli::from_probs(&p)?, mark)
                })?;
                Ok(())
            };
            let kl = |st: &ParamStore| -> Res<Tensor> {
                let q1 = param(st, "q1")?;
                let q2 = param(st, "q2")?;
                // KL(q2 + 0.1 ‖ 0.65); KL(0.1 ‖ 0.1) = 0.
                let inner = kl_bern(&q2.affine(1.0, 0.10)?, 0.65)?;
                Ok((kl_bern(&q1, 0.33)? + (q1 * inner)?)?)
            };
            let what = format!("non_mean_field ({pi1}, {pi2}), enumerated {mark}");
            check_kl(
                &TraceEnumElbo::new(),
                model,
                guide,
                n as f64,
                prec,
                kl,
                &what,
            )?;
        }
    }
    Ok(())
}

/// `test_avoid_nan`: the guide's and the model's probabilities include 0 and 1, so some values
/// have log-probability −∞ on both sides (vi's Bernoulli is exact there, as Pyro's test-only
/// `UnsafeBernoulli`); drawn or enumerated, the loss is not NaN (Pyro's assertion).
#[test]
fn avoid_nan() -> Res {
    for mark in [false, true] {
        let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
            ctx.plate("batch", 3, |ctx| {
                ctx.sample("z", Bernoulli::from_probs(&t(&[0.0, 0.5, 1.0])?)?)
            })?;
            Ok(())
        };
        let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let p = ctx.param("p", &t(&[0.0, 0.5, 1.0])?, Constraint::Real)?;
            ctx.plate("batch", 3, |ctx| {
                sample_marked(ctx, "z", Bernoulli::from_probs(&p)?, mark)
            })?;
            Ok(())
        };
        let got = loss_and_grads(&TraceEnumElbo::new(), 0, model, guide)?;
        assert!(!got.loss.is_nan(), "enumerated {mark}: loss {}", got.loss);
    }
    Ok(())
}

/// The rows of a test whose guide sites are each drawn or enumerated (Pyro's `None` and
/// "parallel"; "sequential" has no vi counterpart): every `sites`-long pattern of marks.
fn mark_rows(sites: usize) -> Vec<Vec<bool>> {
    super::assignments(&vec![2; sites])
        .into_iter()
        .map(|r| r.into_iter().map(|m| m == 1).collect())
        .collect()
}

/// `test_elbo_plate_plate` (rows without `num_samples`): `w` global, `x` in a plate of 2 at
/// dim −1, `y` in a plate of 2 at dim −2, `z` in both, each drawn or enumerated; the loss
/// `9 · 0.5`. Drawn, Pyro's 100 000 vectorised particles give a gradient's standard error of
/// up to 0.042 against its 0.1 (one particle's standard deviation up to 13.4, estimated);
/// [`particles_for`]: 162 000 here.
#[test]
fn elbo_plate_plate() -> Res {
    let (outer, inner) = (2usize, 2usize);
    for marks in mark_rows(4) {
        let all = marks.iter().all(|&m| m);
        let n = if all {
            1
        } else {
            particles_for(13.4, 0.1, 100_000)
        };
        let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let d = || bern(P_HALF);
            ctx.sample("w", d()?)?;
            ctx.plate_dim("outer", outer, -1, |ctx| ctx.sample("x", d()?))?;
            ctx.plate_dim("inner", inner, -2, |ctx| ctx.sample("y", d()?))?;
            ctx.plate_dim("outer", outer, -1, |ctx| {
                ctx.plate_dim("inner", inner, -2, |ctx| ctx.sample("z", d()?))
            })?;
            Ok(())
        };
        let m = marks.clone();
        let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let q = ctx.param("q", &s(0.75)?, Constraint::Real)?;
            let d = || Bernoulli::from_probs(&q);
            sample_marked(ctx, "w", d()?, m[0])?;
            ctx.plate_dim("outer", outer, -1, |ctx| {
                sample_marked(ctx, "x", d()?, m[1])
            })?;
            ctx.plate_dim("inner", inner, -2, |ctx| {
                sample_marked(ctx, "y", d()?, m[2])
            })?;
            ctx.plate_dim("outer", outer, -1, |ctx| {
                ctx.plate_dim("inner", inner, -2, |ctx| {
                    sample_marked(ctx, "z", d()?, m[3])
                })
            })?;
            Ok(())
        };
        let elbo = TraceEnumElbo::new()
            .num_particles(n)
            .vectorize_particles(true);
        let kl = |st: &ParamStore| -> Res<Tensor> {
            let k = (1 + outer + inner + outer * inner) as f64;
            Ok((kl_bern(&param(st, "q")?, P_HALF)? * k)?)
        };
        let what = format!("elbo_plate_plate {marks:?}");
        check_kl(&elbo, model, guide, 1.0, 0.1, kl, &what)?;
    }
    Ok(())
}

/// `test_elbo_plate_iplate` (rows without `num_samples`): in a plate of particles, `x`; in a
/// nested plate of 3, `y` and, in a sequential plate of 2 (`ctx.plate_seq`), `z_i`, each drawn
/// or enumerated; the loss `(1 + 3 · 3) · 0.5`. Drawn, Pyro's 100 000 particles give a
/// gradient's standard error of up to 0.052 against its 0.1 (one particle's standard
/// deviation up to 16.4, estimated; `TraceEnumElbo` reads a sequential plate as a loop, see
/// `Ctx::plate_seq`); [`particles_for`]: 242 000 here.
#[test]
fn elbo_plate_iplate() -> Res {
    let (outer, inner) = (3usize, 2usize);
    for marks in mark_rows(3) {
        let all = marks.iter().all(|&m| m);
        let n = if all {
            1
        } else {
            particles_for(16.4, 0.1, 100_000)
        };
        let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let d = || bern(P_HALF);
            ctx.plate("particles", n, |ctx| {
                ctx.sample("x", d()?)?;
                ctx.plate("outer", outer, |ctx| {
                    ctx.sample("y", d()?)?;
                    ctx.plate_seq("inner", inner, |ctx, i| ctx.sample(&format!("z_{i}"), d()?))
                })
            })?;
            Ok(())
        };
        let m = marks.clone();
        let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let q = ctx.param("q", &s(0.75)?, Constraint::Real)?;
            let d = || Bernoulli::from_probs(&q);
            ctx.plate("particles", n, |ctx| {
                sample_marked(ctx, "x", d()?, m[0])?;
                ctx.plate("outer", outer, |ctx| {
                    sample_marked(ctx, "y", d()?, m[1])?;
                    ctx.plate_seq("inner", inner, |ctx, i| {
                        sample_marked(ctx, &format!("z_{i}"), d()?, m[2])
                    })
                })
            })?;
            Ok(())
        };
        let kl = |st: &ParamStore| -> Res<Tensor> {
            let k = (1 + outer * (1 + inner)) as f64;
            Ok((kl_bern(&param(st, "q")?, P_HALF)? * k)?)
        };
        let what = format!("elbo_plate_iplate {marks:?}");
        check_kl(
            &TraceEnumElbo::new(),
            model,
            guide,
            n as f64,
            0.1,
            kl,
            &what,
        )?;
    }
    Ok(())
}

/// `test_elbo_iplate_plate`: in a plate of particles, `x`; in a sequential plate of 2
/// (`ctx.plate_seq`), `y_i` and, in a plate of 2, `z_i`, each drawn or enumerated; the loss
/// `(1 + 2 · 3) · 0.5`. Drawn, Pyro's 50 000 particles give a gradient's standard error of up
/// to 0.092 against its 0.1 (one particle's standard deviation up to 20.5, estimated);
/// [`particles_for`]: 378 000 here.
#[test]
fn elbo_iplate_plate() -> Res {
    let (outer, inner) = (2usize, 2usize);
    for marks in mark_rows(3) {
        let all = marks.iter().all(|&m| m);
        let n = if all {
            1
        } else {
            particles_for(20.5, 0.1, 50_000)
        };
        let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let d = || bern(P_HALF);
            ctx.plate("particles", n, |ctx| {
                ctx.sample("x", d()?)?;
                ctx.plate_seq("outer", outer, |ctx, i| {
                    ctx.sample(&format!("y_{i}"), d()?)?;
                    ctx.plate("inner", inner, |ctx| ctx.sample(&format!("z_{i}"), d()?))
                })
            })?;
            Ok(())
        };
        let m = marks.clone();
        let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let q = ctx.param("q", &s(0.75)?, Constraint::Real)?;
            let d = || Bernoulli::from_probs(&q);
            ctx.plate("particles", n, |ctx| {
                sample_marked(ctx, "x", d()?, m[0])?;
                ctx.plate_seq("outer", outer, |ctx, i| {
                    sample_marked(ctx, &format!("y_{i}"), d()?, m[1])?;
                    ctx.plate("inner", inner, |ctx| {
                        sample_marked(ctx, &format!("z_{i}"), d()?, m[2])
                    })
                })
            })?;
            Ok(())
        };
        let kl = |st: &ParamStore| -> Res<Tensor> {
            let k = (1 + outer * (1 + inner)) as f64;
            Ok((kl_bern(&param(st, "q")?, P_HALF)? * k)?)
        };
        let what = format!("elbo_iplate_plate {marks:?}");
        check_kl(
            &TraceEnumElbo::new(),
            model,
            guide,
            n as f64,
            0.1,
            kl,
            &what,
        )?;
    }
    Ok(())
}

/// `test_elbo_iplate_iplate`: in a plate of particles, `x`; in a sequential plate of 2, `y_i`
/// and, in a nested sequential plate of 2, `z_i_j`, each drawn or enumerated; the loss `(1 + 2 ·
/// 3) · 0.5`, the gradient within Pyro's 0.2. Drawn, Pyro's 150 000 particles give a
/// gradient's standard error of up to 0.076 against its 0.2 (one particle's standard deviation
/// up to 29.3, estimated); [`particles_for`]: 193 000 here.
#[test]
fn elbo_iplate_iplate() -> Res {
    let (outer, inner) = (2usize, 2usize);
    for marks in mark_rows(3) {
        let all = marks.iter().all(|&m| m);
        let n = if all {
            1
        } else {
            particles_for(29.3, 0.2, 150_000)
        };
        let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let d = || bern(P_HALF);
            ctx.plate("particles", n, |ctx| {
                ctx.sample("x", d()?)?;
                ctx.plate_seq("outer", outer, |ctx, i| {
                    ctx.sample(&format!("y_{i}"), d()?)?;
                    ctx.plate_seq("inner", inner, |ctx, j| {
                        ctx.sample(&format!("z_{i}_{j}"), d()?)
                    })
                })
            })?;
            Ok(())
        };
        let m = marks.clone();
        let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let q = ctx.param("q", &s(0.75)?, Constraint::Real)?;
            let d = || Bernoulli::from_probs(&q);
            ctx.plate("particles", n, |ctx| {
                sample_marked(ctx, "x", d()?, m[0])?;
                ctx.plate_seq("outer", outer, |ctx, i| {
                    sample_marked(ctx, &format!("y_{i}"), d()?, m[1])?;
                    ctx.plate_seq("inner", inner, |ctx, j| {
                        sample_marked(ctx, &format!("z_{i}_{j}"), d()?, m[2])
                    })
                })
            })?;
            Ok(())
        };
        let kl = |st: &ParamStore| -> Res<Tensor> {
            let k = (1 + outer * (1 + inner)) as f64;
            Ok((kl_bern(&param(st, "q")?, P_HALF)? * k)?)
        };
        let what = format!("elbo_iplate_iplate {marks:?}");
        let got = loss_and_grads(&TraceEnumElbo::new(), 0, model, guide)?;
        let want = kl(&got.store)?;
        let want_grads = grads_of(&want, &got.store)?;
        let nf = n as f64;
        assert_within_abs(
            &format!("{what}: loss"),
            &[got.loss / nf],
            &[want.to_scalar::<f64>()?],
            0.1,
        );
        let g: Vec<f64> = got.grads["q"].iter().map(|v| v / nf).collect();
        assert_within_abs(&format!("{what}: ∂/∂q"), &g, &want_grads["q"], 0.2);
    }
    Ok(())
}

/// `Bernoulli(p)` for a number `p`.
fn bern(p: f64) -> vi_infer::Result<Bernoulli> {
    Ok(Bernoulli::from_probs(&s(p)?)?)
}

/// `test_bernoulli_pyramid_elbo_gradient` (the "parallel" rows without `expand`): `a` global,
/// `b` in a plate of `N_b` depending on `a`, `c` in a nested plate of `N_c` depending on both;
/// the guide (mean field) enumerates all three. The exact −ELBO is the KL of `a` plus, per
/// element, the KLs of `b` and `c` averaged over their parents' guide values (Pyro checks the
/// gradients within 0.001; the loss too here).
#[test]
fn bernoulli_pyramid_elbo_gradient() -> Res {
    for pi_b in [0.51, 0.77] {
        for n_b in [3usize, 4] {
            for n_c in [5usize, 6] {
                let (pi_a, pi_c) = (0.33, 0.37);
                let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
                    let a = ctx.sample("a", bern(0.33)?)?;
                    ctx.plate("b_plate", n_b, |ctx| {
                        let b = ctx.sample("b", Bernoulli::from_probs(&a.affine(0.25, 0.50)?)?)?;
                        ctx.plate("c_plate", n_c, |ctx| {
                            let p = a.affine(0.15, 0.32)?.broadcast_add(&b.affine(0.20, 0.0)?)?;
                            ctx.sample("c", Bernoulli::from_probs(&p)?)
                        })
                    })?;
                    Ok(())
                };
                let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
                    let qa = ctx.param("qa", &s(pi_a)?, Constraint::Real)?;
                    let qb = ctx.param("qb", &s(pi_b)?, Constraint::Real)?;
                    let qc = ctx.param("qc", &s(pi_c)?, Constraint::Real)?;
                    ctx.sample_enum("a", Bernoulli::from_probs(&qa)?)?;
                    ctx.plate("b_plate", n_b, |ctx| {
                        ctx.sample_enum("b", Bernoulli::from_probs(&qb)?)?;
                        ctx.plate("c_plate", n_c, |ctx| {
                            ctx.sample_enum("c", Bernoulli::from_probs(&qc)?)
                        })
                    })?;
                    Ok(())
                };
                let kl = move |st: &ParamStore| -> Res<Tensor> {
                    let (qa, qb, qc) = (param(st, "qa")?, param(st, "qb")?, param(st, "qc")?);
                    let (ra, rb) = (qa.affine(-1.0, 1.0)?, qb.affine(-1.0, 1.0)?);
                    let (nb, nbc) = (n_b as f64, (n_b * n_c) as f64);
                    let mut total = kl_bern(&qa, 0.33)?;
                    total = (total + (&qa * kl_bern(&qb, 0.75)?)?.affine(nb, 0.0)?)?;
                    total = (total + (&ra * kl_bern(&qb, 0.50)?)?.affine(nb, 0.0)?)?;
                    for (wa, wb, p) in [
                        (&qa, &qb, 0.67),
                        (&ra, &qb, 0.52),
                        (&qa, &rb, 0.47),
                        (&ra, &rb, 0.32),
                    ] {
                        let w = (wa * wb)?;
                        total = (total + (w * kl_bern(&qc, p)?)?.affine(nbc, 0.0)?)?;
                    }
                    Ok(total)
                };
                let what = format!("pyramid, pi_b {pi_b}, N_b {n_b}, N_c {n_c}");
                let elbo = TraceEnumElbo::new().max_plate_nesting(2);
                check_kl(&elbo, model, guide, 1.0, 0.001, kl, &what)?;
            }
        }
    }
    Ok(())
}

/// `test_bernoulli_non_tree_elbo_gradient` (the "parallel" rows without `expand`): `a → b`,
/// `a, b → c`, `b, c → d` in the model (not a tree), a mean-field guide enumerating all four;
/// the exact −ELBO sums each site's KL over its parents' guide values (Pyro checks the
/// gradients within 0.0001; the loss too here).
#[test]
fn bernoulli_non_tree_elbo_gradient() -> Res {
    let (pi_a, pi_b, pi_c, pi_d, d_offset) = (0.33, 0.51, 0.37, 0.29, 0.32);
    for b_factor in [0.03, 0.04] {
        for c_factor in [0.04, 0.06] {
            let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
                let a = ctx.sample("a", bern(0.33)?)?;
                let b = ctx.sample("b", Bernoulli::from_probs(&a.affine(0.25, 0.50)?)?)?;
                let pc = a.affine(0.25, 0.50)?.broadcast_add(&b.affine(0.10, 0.0)?)?;
                let c = ctx.sample("c", Bernoulli::from_probs(&pc)?)?;
                let pd = b
                    .affine(b_factor, d_offset)?
                    .broadcast_add(&c.affine(c_factor, 0.0)?)?;
                ctx.sample("d", Bernoulli::from_probs(&pd)?)?;
                Ok(())
            };
            let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
                for (name, init) in [("a", pi_a), ("b", pi_b), ("c", pi_c), ("d", pi_d)] {
                    let q = ctx.param(&format!("q{name}"), &s(init)?, Constraint::Real)?;
                    ctx.sample_enum(name, Bernoulli::from_probs(&q)?)?;
                }
                Ok(())
            };
            let kl = move |st: &ParamStore| -> Res<Tensor> {
                let q = |n: &str| param(st, &format!("q{n}"));
                let (qa, qb, qc, qd) = (q("a")?, q("b")?, q("c")?, q("d")?);
                let (ra, rb, rc) = (
                    qa.affine(-1.0, 1.0)?,
                    qb.affine(-1.0, 1.0)?,
                    qc.affine(-1.0, 1.0)?,
                );
                let mut total = kl_bern(&qa, 0.33)?;
                total = (total + (&qa * kl_bern(&qb, 0.75)?)?)?;
                total = (total + (&ra * kl_bern(&qb, 0.50)?)?)?;
                for (w1, w2, p) in [
                    (&qa, &qb, 0.85),
                    (&ra, &qb, 0.60),
                    (&qa, &rb, 0.75),
                    (&ra, &rb, 0.50),
                ] {
                    total = (total + ((w1 * w2)? * kl_bern(&qc, p)?)?)?;
                }
                for (w1, w2, p) in [
                    (&qb, &qc, b_factor + c_factor + d_offset),
                    (&rb, &qc, c_factor + d_offset),
                    (&qb, &rc, b_factor + d_offset),
                    (&rb, &rc, d_offset),
                ] {
                    total = (total + ((w1 * w2)? * kl_bern(&qd, p)?)?)?;
                }
                Ok(total)
            };
            let what = format!("non_tree, b_factor {b_factor}, c_factor {c_factor}");
            let elbo = TraceEnumElbo::new().max_plate_nesting(2);
            check_kl(&elbo, model, guide, 1.0, 0.0001, kl, &what)?;
        }
    }
    Ok(())
}

/// Runs `elbo` on `model` and `guide` (seed `seed`) and returns every parameter's gradient
/// divided by `divide` (Pyro's division by the particles of a plate).
fn grads_per(
    elbo: &TraceEnumElbo,
    seed: u64,
    model: impl FnMut(&mut Ctx) -> vi_infer::Result<()>,
    guide: impl FnMut(&mut Ctx) -> vi_infer::Result<()>,
    divide: f64,
) -> Res<std::collections::BTreeMap<String, Vec<f64>>> {
    let got = loss_and_grads(elbo, seed, model, guide)?;
    Ok(got
        .grads
        .into_iter()
        .map(|(k, g)| (k, g.into_iter().map(|v| v / divide).collect()))
        .collect())
}

/// `test_non_mean_field_bern_normal_elbo_gradient` (rows without `num_samples`): in a plate
/// of particles, `y ~ Bernoulli(q3)` and `z ~ Normal(0.55 y + q3, 1)` in the
/// model (`q3` a model parameter), `y ~ Bernoulli(q1)` drawn or enumerated and `z ~ Normal(q2
/// y + 0.1, 1)` drawn in the guide; the gradients per particle against those of the exact
/// −ELBO `KL(q1 ‖ q3) + q1 · KL(N(q2 + 0.1) ‖ N(q3 + 0.55)) + (1 − q1) · KL(N(0.1) ‖ N(q3))`,
/// within Pyro's 0.04 (drawn) or 0.02 (enumerated). Pyro checks no loss (`z` is drawn). Pyro's
/// 10 000 particles give a standard error of up to 0.032 drawn and 0.008 enumerated (one
/// particle's standard deviation up to 3.23 and 0.79, estimated); [`particles_for`]: 58 700 and
/// 14 000 here.
#[test]
fn non_mean_field_bern_normal_elbo_gradient() -> Res {
    for pi1 in [0.33, 0.44] {
        for pi2 in [0.55, 0.39] {
            for pi3 in [0.22, 0.29] {
                for mark in [false, true] {
                    let n = if mark {
                        particles_for(0.79, 0.02, 10_000)
                    } else {
                        particles_for(3.23, 0.04, 10_000)
                    };
                    let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
                        ctx.plate("particles", n, |ctx| {
                            let q3 = ctx.param("q3", &s(pi3)?, Constraint::Real)?;
                            let y = ctx.sample("y", Bernoulli::from_probs(&q3)?)?;
                            let loc = y.affine(0.55, 0.0)?.broadcast_add(&q3)?;
                            ctx.sample("z", Normal::new(&loc, &s(1.0)?)?)
                        })?;
                        Ok(())
                    };
                    let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
                        let q1 = ctx.param("q1", &s(pi1)?, Constraint::Real)?;
                        let q2 = ctx.param("q2", &s(pi2)?, Constraint::Real)?;
                        ctx.plate("particles", n, |ctx| {
                            let y = sample_marked(ctx, "y", Bernoulli::from_probs(&q1)?, mark)?;
                            let loc = y.broadcast_mul(&q2)?.affine(1.0, 0.10)?;
                            ctx.sample("z", Normal::new(&loc, &s(1.0)?)?)
                        })?;
                        Ok(())
                    };
                    let got = loss_and_grads(&TraceEnumElbo::new(), 0, model, guide)?;
                    let (q1, q2, q3) = (
                        param(&got.store, "q1")?,
                        param(&got.store, "q2")?,
                        param(&got.store, "q3")?,
                    );
                    // KL(N(m1, 1) ‖ N(m2, 1)) = (m1 − m2)² / 2.
                    let kl_n = |m1: &Tensor, m2: &Tensor| -> Res<Tensor> {
                        Ok((m1 - m2)?.sqr()?.affine(0.5, 0.0)?)
                    };
                    let kl_q = {
                        // KL(Bernoulli(q1) ‖ Bernoulli(q3)), both parameters live.
                        let r1 = q1.affine(-1.0, 1.0)?;
                        let r3 = q3.affine(-1.0, 1.0)?;
                        ((&q1 * (q1.log()? - q3.log()?)?)? + (&r1 * (r1.log()? - r3.log()?)?)?)?
                    };
                    let a = (&q1 * kl_n(&q2.affine(1.0, 0.10)?, &q3.affine(1.0, 0.55)?)?)?;
                    let b = (q1.affine(-1.0, 1.0)? * kl_n(&s(0.10)?, &q3)?)?;
                    let want = ((kl_q + a)? + b)?;
                    let want_grads = grads_of(&want, &got.store)?;
                    let prec = if mark { 0.02 } else { 0.04 };
                    for (name, g) in &got.grads {
                        let g: Vec<f64> = g.iter().map(|v| v / n as f64).collect();
                        let what = format!(
                            "bern_normal ({pi1}, {pi2}, {pi3}), enumerated {mark}: ∂/∂{name}"
                        );
                        assert_within_abs(&what, &g, &want_grads[name], prec);
                    }
                }
            }
        }
    }
    Ok(())
}

/// `test_non_mean_field_normal_bern_elbo_gradient`: in a plate of particles, `z ~ Normal(q3,
/// 1)` and `y ~ Bernoulli(q4 · σ(z))` in the model, `z ~ Normal(q2, 1)` drawn and `y ~
/// Bernoulli(q1 · σ(z))` in the guide; the gradients per particle with `y` enumerated against
/// those with `y` drawn, within Pyro's 0.03. Pyro's 20 000 and 30 000 particles give the
/// difference a standard error of up to 0.013 (one particle's standard deviations, squared and
/// summed, up to 3.5, estimated as in [`particles_for`]); 1.7 times as many here (34 000 and
/// 51 000), for at most 0.01.
#[test]
fn non_mean_field_normal_bern_elbo_gradient() -> Res {
    for pi1 in [0.33, 0.41] {
        for pi2 in [0.44, 0.17] {
            for pi3 in [0.22, 0.29] {
                let run = |mark: bool, n: usize| {
                    let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
                        ctx.plate("particles", n, |ctx| {
                            let q3 = ctx.param("q3", &s(pi3)?, Constraint::Real)?;
                            let q4 = ctx.param("q4", &s(0.5 * (pi1 + pi2))?, Constraint::Real)?;
                            let z = ctx.sample("z", Normal::new(&q3, &s(1.0)?)?)?;
                            let p = sigmoid(&z)?.broadcast_mul(&q4)?;
                            ctx.sample("y", Bernoulli::from_probs(&p)?)
                        })?;
                        Ok(())
                    };
                    let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
                        let q1 = ctx.param("q1", &s(pi1)?, Constraint::Real)?;
                        let q2 = ctx.param("q2", &s(pi2)?, Constraint::Real)?;
                        ctx.plate("particles", n, |ctx| {
                            let z = ctx.sample("z", Normal::new(&q2, &s(1.0)?)?)?;
                            let p = sigmoid(&z)?.broadcast_mul(&q1)?;
                            sample_marked(ctx, "y", Bernoulli::from_probs(&p)?, mark)
                        })?;
                        Ok(())
                    };
                    grads_per(&TraceEnumElbo::new(), 0, model, guide, n as f64)
                };
                let drawn = run(false, 51_000)?;
                let enumerated = run(true, 34_000)?;
                for (name, g) in &enumerated {
                    let what = format!("normal_bern ({pi1}, {pi2}, {pi3}): ∂/∂{name}");
                    assert_within_abs(&what, g, &drawn[name], 0.03);
                }
            }
        }
    }
    Ok(())
}

/// `σ(x) = 1 / (1 + e^{−x})`, differentiable.
fn sigmoid(x: &Tensor) -> vi_infer::Result<Tensor> {
    Ok(x.neg()?.exp()?.affine(1.0, 1.0)?.recip()?)
}
