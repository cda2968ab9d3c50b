//! `TraceEnumElbo` against the brute-force sum over every joint assignment of the discrete
//! sites, written with plain tensor ops on the same parameters: the loss and its gradient agree
//! to 1e-10 in f64 (tiny models, with and without plates, enumerated in the model, in the
//! guide, both, beside reparameterised sites and vectorised particles).

use candle_core::{DType, Device, Tensor};
use vi_dist::{Bernoulli, Categorical, Constraint, Normal};
use vi_infer::{Ctx, ElboOutput, ParamStore, TraceEnumElbo, vindex};

use super::{
    assert_grads, assignments, at, at2, grads_of, logsumexp, loss_and_grads, normal_lp, param,
};
use crate::common::Res;

const TOL: f64 = 1e-10;

fn f64s(v: &[f64]) -> vi_infer::Result<Tensor> {
    Ok(Tensor::new(v, &Device::Cpu)?)
}

fn f64s2(v: &[[f64; 3]; 2]) -> vi_infer::Result<Tensor> {
    Ok(Tensor::new(v, &Device::Cpu)?)
}

fn scalar(v: f64) -> vi_infer::Result<Tensor> {
    Ok(Tensor::new(v, &Device::Cpu)?)
}

/// Runs `elbo` on `model` and `guide`, then `brute` (the −ELBO as a tensor of the stored
/// parameters, given the ELBO's output for the draws) and compares losses and gradients.
fn check(
    elbo: TraceEnumElbo,
    model: impl FnMut(&mut Ctx) -> vi_infer::Result<()>,
    guide: impl FnMut(&mut Ctx) -> vi_infer::Result<()>,
    brute: impl Fn(&ParamStore, &ElboOutput) -> Res<Tensor>,
    what: &str,
) -> Res {
    let got = loss_and_grads(&elbo, 0, model, guide)?;
    let want = brute(&got.store, &got.out)?;
    let want_loss = want.to_scalar::<f64>()?;
    crate::common::assert_close_tol(&[got.loss], &[want_loss], TOL, &format!("{what}: loss"));
    let want_grads = grads_of(&want, &got.store)?;
    assert_grads(&got.grads, &want_grads, TOL, what);
    Ok(())
}

/// One site enumerated in the model: a two-component mixture, one point.
#[test]
fn one_site_in_the_model() -> Res {
    let model = |ctx: &mut Ctx| {
        let w = ctx.param("w", &f64s(&[0.3, 0.7])?, Constraint::Simplex)?;
        let locs = ctx.param("locs", &f64s(&[-1.0, 1.5])?, Constraint::Real)?;
        let z = ctx.sample_enum("z", Categorical::from_probs(&w)?)?;
        let loc = vindex(&locs, &[&z])?;
        ctx.observe("x", Normal::new(&loc, &scalar(0.8)?)?, &scalar(0.4)?)?;
        Ok(())
    };
    let brute = |store: &ParamStore, _: &ElboOutput| -> Res<Tensor> {
        let (w, locs) = (param(store, "w")?, param(store, "locs")?);
        let s = scalar(0.8)?;
        let terms = (0..2)
            .map(|k| Ok((at(&w, k)?.log()? + normal_lp(0.4, &at(&locs, k)?, &s)?)?))
            .collect::<Res<Vec<_>>>()?;
        Ok(logsumexp(&terms)?.neg()?)
    };
    check(
        TraceEnumElbo::new(),
        model,
        crate::common::empty,
        brute,
        "one site",
    )
}

/// The chain `a → b → c → y` (Bernoulli, Categorical of 3, Bernoulli), all enumerated in the
/// model, no plates: 12 joint assignments.
#[test]
fn three_sites_in_the_model() -> Res {
    let model = |ctx: &mut Ctx| {
        let p = ctx.param("p", &scalar(0.35)?, Constraint::UnitInterval)?;
        let t = ctx.param(
            "t",
            &f64s2(&[[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])?,
            Constraint::Simplex,
        )?;
        let q = ctx.param("q", &f64s(&[0.2, 0.5, 0.9])?, Constraint::UnitInterval)?;
        let mu = ctx.param("mu", &f64s(&[-1.0, 0.0, 2.0])?, Constraint::Real)?;
        let a = ctx.sample_enum("a", Bernoulli::from_probs(&p)?)?;
        let b = ctx.sample_enum("b", Categorical::from_probs(&vindex(&t, &[&a])?)?)?;
        let c = ctx.sample_enum("c", Bernoulli::from_probs(&vindex(&q, &[&b])?)?)?;
        let loc = vindex(&mu, &[&b])?.broadcast_add(&c)?;
        ctx.observe("y", Normal::new(&loc, &scalar(1.0)?)?, &scalar(0.7)?)?;
        Ok(())
    };
    let brute = |store: &ParamStore, _: &ElboOutput| -> Res<Tensor> {
        let (p, t) = (param(store, "p")?, param(store, "t")?);
        let (q, mu) = (param(store, "q")?, param(store, "mu")?);
        let bern = |p: &Tensor, v: usize| -> Res<Tensor> {
            Ok(if v == 1 {
                p.log()?
            } else {
                p.affine(-1.0, 1.0)?.log()?
            })
        };
        let one = scalar(1.0)?;
        let terms = assignments(&[2, 3, 2])
            .iter()
            .map(|v| {
                let (a, b, c) = (v[0], v[1], v[2]);
                let lp = (bern(&p, a)? + at2(&t, a, b)?.log()?)?;
                let lp = (lp + bern(&at(&q, b)?, c)?)?;
                let loc = at(&mu, b)?.affine(1.0, c as f64)?;
                Ok((lp + normal_lp(0.7, &loc, &one)?)?)
            })
            .collect::<Res<Vec<_>>>()?;
        Ok(logsumexp(&terms)?.neg()?)
    };
    check(
        TraceEnumElbo::new(),
        model,
        crate::common::empty,
        brute,
        "three sites",
    )
}

const YS: [f64; 3] = [0.3, -1.1, 2.4];

/// The parameters of the plated models: `p` (a's prior), `t` (b given a), `mu` (y's means).
fn plated_params(ctx: &mut Ctx) -> vi_infer::Result<(Tensor, Tensor, Tensor)> {
    let p = ctx.param("p", &scalar(0.35)?, Constraint::UnitInterval)?;
    let t = ctx.param(
        "t",
        &f64s2(&[[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])?,
        Constraint::Simplex,
    )?;
    let mu = ctx.param("mu", &f64s(&[-1.0, 0.5, 2.0])?, Constraint::Real)?;
    Ok((p, t, mu))
}

/// The plated model: a global `a`, in the plate `data` of 3 a `b_i` given `a` and `y_i`
/// given `b_i`; `a` enumerated in the model unless the guide samples it.
fn plated_model(ctx: &mut Ctx) -> vi_infer::Result<()> {
    let (p, t, mu) = plated_params(ctx)?;
    let a = ctx.sample_enum("a", Bernoulli::from_probs(&p)?)?;
    let probs = vindex(&t, &[&a])?;
    let y = f64s(&YS)?;
    ctx.plate("data", 3, |ctx| {
        let b = ctx.sample_enum("b", Categorical::from_probs(&probs)?)?;
        ctx.observe("y", Normal::new(&vindex(&mu, &[&b])?, &scalar(1.0)?)?, &y)?;
        Ok(())
    })
}

/// `log p(a) + Σ_i log p(b_i | a) + log N(y_i; mu_b_i, 1)` for one joint assignment.
fn plated_joint(store: &ParamStore, a: usize, bs: &[usize]) -> Res<Tensor> {
    let (p, t, mu) = (param(store, "p")?, param(store, "t")?, param(store, "mu")?);
    let mut lp = if a == 1 {
        p.log()?
    } else {
        p.affine(-1.0, 1.0)?.log()?
    };
    let one = scalar(1.0)?;
    for (i, &b) in bs.iter().enumerate() {
        lp = (lp + at2(&t, a, b)?.log()?)?;
        lp = (lp + normal_lp(YS[i], &at(&mu, b)?, &one)?)?;
    }
    Ok(lp)
}

/// A global site and a plated one, both enumerated in the model: 2 · 3³ assignments.
#[test]
fn plates_in_the_model() -> Res {
    let brute = |store: &ParamStore, _: &ElboOutput| -> Res<Tensor> {
        let terms = assignments(&[2, 3, 3, 3])
            .iter()
            .map(|v| plated_joint(store, v[0], &v[1..]))
            .collect::<Res<Vec<_>>>()?;
        Ok(logsumexp(&terms)?.neg()?)
    };
    check(
        TraceEnumElbo::new().max_plate_nesting(1),
        plated_model,
        crate::common::empty,
        brute,
        "plates, model",
    )?;
    // max_plate_nesting discovered by a probing run, and a wider one than needed.
    check(
        TraceEnumElbo::new(),
        plated_model,
        crate::common::empty,
        brute,
        "plates, probed nesting",
    )?;
    check(
        TraceEnumElbo::new().max_plate_nesting(3),
        plated_model,
        crate::common::empty,
        brute,
        "plates, nesting 3",
    )
}

/// The global site enumerated in the guide (its own Bernoulli), the plated one in the model:
/// `Σ_a q(a) [log Σ_b p(a, b, y) − log q(a)]`.
#[test]
fn guide_and_model_enumeration() -> Res {
    let guide = |ctx: &mut Ctx| {
        let pq = ctx.param("pq", &scalar(0.6)?, Constraint::UnitInterval)?;
        ctx.sample_enum("a", Bernoulli::from_probs(&pq)?)?;
        Ok(())
    };
    let brute = |store: &ParamStore, _: &ElboOutput| -> Res<Tensor> {
        let pq = param(store, "pq")?;
        let mut elbo: Option<Tensor> = None;
        for a in 0..2 {
            let q = if a == 1 {
                pq.clone()
            } else {
                pq.affine(-1.0, 1.0)?
            };
            let terms = assignments(&[3, 3, 3])
                .iter()
                .map(|bs| plated_joint(store, a, bs))
                .collect::<Res<Vec<_>>>()?;
            let inner = (logsumexp(&terms)? - q.log()?)?;
            let term = (q * inner)?;
            elbo = Some(match elbo {
                None => term,
                Some(e) => (e + term)?,
            });
        }
        Ok(elbo.expect("two terms").neg()?)
    };
    check(
        TraceEnumElbo::new().max_plate_nesting(1),
        plated_model,
        guide,
        brute,
        "guide a, model b",
    )
}

const XS: [f64; 3] = [-0.6, 1.9, 0.2];

/// A mixture whose assignments the guide enumerates, one categorical of its own per point:
/// `Σ_z Π_i q(z_i) Σ_i [log w_zi + log N(x_i; locs_zi, 1) − log q(z_i)]`, by brute force over
/// the 2³ joint assignments.
#[test]
fn plated_guide_enumeration() -> Res {
    let model = |ctx: &mut Ctx| {
        let w = ctx.param("w", &f64s(&[0.3, 0.7])?, Constraint::Simplex)?;
        let locs = ctx.param("locs", &f64s(&[-1.0, 1.5])?, Constraint::Real)?;
        let x = f64s(&XS)?;
        ctx.plate("data", 3, |ctx| {
            let z = ctx.sample("z", Categorical::from_probs(&w)?)?;
            ctx.observe("x", Normal::new(&vindex(&locs, &[&z])?, &scalar(1.0)?)?, &x)?;
            Ok(())
        })
    };
    let guide = |ctx: &mut Ctx| {
        let init = Tensor::new(&[[0.2f64, -0.3], [1.0, 0.1], [-0.5, 0.4]], &Device::Cpu)?;
        let phi = ctx.param("phi", &init, Constraint::Real)?;
        ctx.plate("data", 3, |ctx| {
            ctx.sample_enum("z", Categorical::from_logits(&phi)?)?;
            Ok(())
        })
    };
    let brute = |store: &ParamStore, _: &ElboOutput| -> Res<Tensor> {
        let (w, locs, phi) = (
            param(store, "w")?,
            param(store, "locs")?,
            param(store, "phi")?,
        );
        let log_q = candle_nn::ops::log_softmax(&phi, 1)?;
        let one = scalar(1.0)?;
        let mut elbo: Option<Tensor> = None;
        for zs in assignments(&[2, 2, 2]) {
            let mut lq = scalar(0.0)?;
            let mut inner = scalar(0.0)?;
            for (i, &z) in zs.iter().enumerate() {
                let q = at2(&log_q, i, z)?;
                lq = (lq + &q)?;
                let lp = (at(&w, z)?.log()? + normal_lp(XS[i], &at(&locs, z)?, &one)?)?;
                inner = (inner + (lp - q)?)?;
            }
            let term = (lq.exp()? * inner)?;
            elbo = Some(match elbo {
                None => term,
                Some(e) => (e + term)?,
            });
        }
        Ok(elbo.expect("eight terms").neg()?)
    };
    check(
        TraceEnumElbo::new().max_plate_nesting(1),
        model,
        guide,
        brute,
        "plated guide enumeration",
    )
}

/// A reparameterised global `m` (drawn by the guide) beside a mixture enumerated in the model:
/// at the draw, `log p(m) − log q(m) + Σ_i log Σ_z w_z N(x_i; m + locs_z, 1)`; with vectorised
/// particles, the mean over the particles' draws.
#[test]
fn reparameterised_sites_and_vectorised_particles() -> Res {
    let model = |ctx: &mut Ctx| {
        let w = ctx.param("w", &f64s(&[0.3, 0.7])?, Constraint::Simplex)?;
        let locs = ctx.param("locs", &f64s(&[-1.0, 1.5])?, Constraint::Real)?;
        let m = ctx.sample("m", Normal::new(&scalar(0.0)?, &scalar(2.0)?)?)?;
        let x = f64s(&XS)?;
        ctx.plate("data", 3, |ctx| {
            let z = ctx.sample_enum("z", Categorical::from_probs(&w)?)?;
            let loc = vindex(&locs, &[&z])?.broadcast_add(&m)?;
            ctx.observe("x", Normal::new(&loc, &scalar(1.0)?)?, &x)?;
            Ok(())
        })
    };
    let guide = |ctx: &mut Ctx| {
        let loc = ctx.param("m_loc", &scalar(0.4)?, Constraint::Real)?;
        let scale = ctx.param("m_scale", &scalar(0.5)?, Constraint::Positive)?;
        ctx.sample("m", Normal::new(&loc, &scale)?)?;
        Ok(())
    };
    let brute = |store: &ParamStore, out: &ElboOutput| -> Res<Tensor> {
        let (w, locs) = (param(store, "w")?, param(store, "locs")?);
        let (loc, scale) = (param(store, "m_loc")?, param(store, "m_scale")?);
        let draws = crate::common::host(&out.guide_trace.get("m").expect("m").value);
        let one = scalar(1.0)?;
        let mut total: Option<Tensor> = None;
        for &d in &draws {
            // The same draw as a function of the parameters: loc + scale · eps.
            let eps = (d - loc.to_scalar::<f64>()?) / scale.to_scalar::<f64>()?;
            let m = (&loc + (&scale * eps)?)?;
            let lp_m = (normal_lp(0.0, &m, &scalar(2.0)?)? - normal_lp(eps, &scalar(0.0)?, &one)?)?;
            let mut e = (lp_m + scale.log()?)?;
            for &x in &XS {
                let terms = (0..2)
                    .map(|k| {
                        let mean = (at(&locs, k)? + &m)?;
                        Ok((at(&w, k)?.log()? + normal_lp(x, &mean, &one)?)?)
                    })
                    .collect::<Res<Vec<_>>>()?;
                e = (e + logsumexp(&terms)?)?;
            }
            total = Some(match total {
                None => e,
                Some(t) => (t + e)?,
            });
        }
        let n = draws.len() as f64;
        Ok((total.expect("draws") / n)?.neg()?)
    };
    check(
        TraceEnumElbo::new().max_plate_nesting(1),
        model,
        guide,
        brute,
        "one particle",
    )?;
    check(
        TraceEnumElbo::new()
            .max_plate_nesting(1)
            .num_particles(4)
            .vectorize_particles(true),
        model,
        guide,
        brute,
        "four vectorised particles",
    )
}

/// The same chain in f32: the loss agrees with the f64 brute force to f32 precision.
#[test]
fn f32_agrees() -> Res {
    let model = |ctx: &mut Ctx| {
        let w = ctx.param(
            "w",
            &f64s(&[0.3, 0.7])?.to_dtype(DType::F32)?,
            Constraint::Simplex,
        )?;
        let locs = Tensor::new(&[-1.0f32, 1.5], &Device::Cpu)?;
        let x = Tensor::new(&[0.4f32, -0.9], &Device::Cpu)?;
        ctx.plate("data", 2, |ctx| {
            let z = ctx.sample_enum("z", Categorical::from_probs(&w)?)?;
            ctx.observe(
                "x",
                Normal::new(&vindex(&locs, &[&z])?, &Tensor::new(0.8f32, &Device::Cpu)?)?,
                &x,
            )?;
            Ok(())
        })
    };
    let mut store = ParamStore::new(&Device::Cpu, DType::F32);
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let mut model = model;
    let mut guide = crate::common::empty;
    let out = vi_infer::Elbo::compute(
        &TraceEnumElbo::new().max_plate_nesting(1),
        &mut model,
        &mut guide,
        &mut store,
        &mut rng,
    )?;
    let lp = |x: f64, m: f64| crate::common::normal_lp(x, m, 0.8);
    let want: f64 = [0.4, -0.9]
        .iter()
        .map(|&x| -(0.3 * lp(x, -1.0).exp() + 0.7 * lp(x, 1.5).exp()).ln())
        .sum();
    let got = out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    Ok(())
}

const YIJ: [[f64; 2]; 2] = [[0.4, 1.7], [-0.8, 2.9]];

/// Nested plates: a global `a`, in plate `i` (2) a `b_i` given `a`, in plate `j` (2) inside
/// it a `c_ij` given `b_i`, and `y_ij` given `b_i` and `c_ij`; everything enumerated in the
/// model: 2 · 3² · 2⁴ joint assignments.
#[test]
fn nested_plates_in_the_model() -> Res {
    let model = |ctx: &mut Ctx| {
        let (p, t, mu) = plated_params(ctx)?;
        let q = ctx.param("q", &f64s(&[0.2, 0.5, 0.9])?, Constraint::UnitInterval)?;
        let a = ctx.sample_enum("a", Bernoulli::from_probs(&p)?)?;
        let probs = vindex(&t, &[&a])?;
        let y = Tensor::new(&YIJ, &Device::Cpu)?;
        ctx.plate_dim("i", 2, -2, |ctx| {
            let b = ctx.sample_enum("b", Categorical::from_probs(&probs)?)?;
            ctx.plate_dim("j", 2, -1, |ctx| {
                let c = ctx.sample_enum("c", Bernoulli::from_probs(&vindex(&q, &[&b])?)?)?;
                let loc = vindex(&mu, &[&b])?.broadcast_add(&c)?;
                ctx.observe("y", Normal::new(&loc, &scalar(1.0)?)?, &y)?;
                Ok(())
            })
        })
    };
    let brute = |store: &ParamStore, _: &ElboOutput| -> Res<Tensor> {
        let (p, t, mu) = (param(store, "p")?, param(store, "t")?, param(store, "mu")?);
        let q = param(store, "q")?;
        let bern = |p: &Tensor, v: usize| -> Res<Tensor> {
            Ok(if v == 1 {
                p.log()?
            } else {
                p.affine(-1.0, 1.0)?.log()?
            })
        };
        let one = scalar(1.0)?;
        let terms = assignments(&[2, 3, 3, 2, 2, 2, 2])
            .iter()
            .map(|v| {
                let a = v[0];
                let mut lp = bern(&p, a)?;
                for i in 0..2 {
                    let b = v[1 + i];
                    lp = (lp + at2(&t, a, b)?.log()?)?;
                    for j in 0..2 {
                        let c = v[3 + 2 * i + j];
                        lp = (lp + bern(&at(&q, b)?, c)?)?;
                        let loc = at(&mu, b)?.affine(1.0, c as f64)?;
                        lp = (lp + normal_lp(YIJ[i][j], &loc, &one)?)?;
                    }
                }
                Ok(lp)
            })
            .collect::<Res<Vec<_>>>()?;
        Ok(logsumexp(&terms)?.neg()?)
    };
    check(
        TraceEnumElbo::new().max_plate_nesting(2),
        model,
        crate::common::empty,
        brute,
        "nested plates",
    )
}

/// A Bernoulli the guide draws (no rsample) beside a site it enumerates: the loss is the
/// brute-force expectation over the enumerated one at the draw, and the gradient of the
/// surrogate is Dice's: the pathwise part plus `∇ log q(draw) · (cost downstream)`.
#[test]
fn score_function_sites_beside_enumerated_ones() -> Res {
    let model = |ctx: &mut Ctx| {
        let p = ctx.param("p", &scalar(0.35)?, Constraint::UnitInterval)?;
        let w = ctx.param("w", &f64s(&[0.3, 0.7])?, Constraint::Simplex)?;
        let s = ctx.sample("s", Bernoulli::from_probs(&p)?)?;
        let z = ctx.sample("z", Categorical::from_probs(&w)?)?;
        let loc = z.broadcast_add(&s)?;
        ctx.observe("x", Normal::new(&loc, &scalar(1.0)?)?, &scalar(0.9)?)?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| {
        let ps = ctx.param("ps", &scalar(0.6)?, Constraint::UnitInterval)?;
        let phi = ctx.param("phi", &f64s(&[0.3, -0.2])?, Constraint::Real)?;
        ctx.sample("s", Bernoulli::from_probs(&ps)?)?;
        ctx.sample_enum("z", Categorical::from_logits(&phi)?)?;
        Ok(())
    };
    let brute = |store: &ParamStore, out: &ElboOutput| -> Res<Tensor> {
        let (p, w) = (param(store, "p")?, param(store, "w")?);
        let (ps, phi) = (param(store, "ps")?, param(store, "phi")?);
        let s = out
            .guide_trace
            .get("s")
            .expect("s")
            .value
            .to_scalar::<f64>()? as usize;
        let bern = |p: &Tensor, v: usize| -> Res<Tensor> {
            Ok(if v == 1 {
                p.log()?
            } else {
                p.affine(-1.0, 1.0)?.log()?
            })
        };
        let log_q = candle_nn::ops::log_softmax(&phi, 0)?;
        let one = scalar(1.0)?;
        let lq_s = bern(&ps, s)?;
        // Dice: the cost times exp(log q(s) − stop_grad(log q(s))) (1 in value).
        let dice = (&lq_s - lq_s.detach())?.exp()?;
        let mut elbo = ((bern(&p, s)? - &lq_s)? * &dice)?;
        for z in 0..2 {
            let q = at(&log_q, z)?;
            let loc = scalar((z + s) as f64)?;
            let cost = ((at(&w, z)?.log()? + normal_lp(0.9, &loc, &one)?)? - &q)?;
            elbo = (elbo + ((q.exp()? * cost)? * &dice)?)?;
        }
        Ok(elbo.neg()?)
    };
    check(TraceEnumElbo::new(), model, guide, brute, "dice")
}
