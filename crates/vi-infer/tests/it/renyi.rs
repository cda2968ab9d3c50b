//! `RenyiElbo`: its bound against the same bound computed in plain f64 from the same draws
//! (alpha 0, 0.5 and 2; vectorised and sequential particles; a global latent, local latents in
//! a common plate, a subsampled common plate, nested plates), the importance-weighted bound
//! rising with `K` to the exact log evidence of a conjugate model, the pathwise gradient
//! against finite differences, the score-function gradient against enumeration, the per-site
//! terms, and its errors. Also Pyro's `tests/infer/test_multi_sample_elbos.py`
//! (`test_inner_outer`, `test_outer_inner`: the bound of a model with nested plates, large
//! `K`, from two independent evaluations and from the draws).

use std::cell::RefCell;
use std::rc::Rc;

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_dist::{Bernoulli, Constraint, Normal};
use vi_infer::{Ctx, Elbo, InferError, ParamStore, RenyiElbo, TermKind};
use vi_test::stats::mean_var;

use crate::common::{BoxedProgram, Res, host, normal_lp, s};

const SIGMA: f64 = 0.8;
const XS: [f64; 3] = [0.9, 1.6, 0.4];

/// `1/(1 − α) · (log Σ_k exp((1 − α) lw_k) − log K)`, in f64.
fn renyi(lw: &[f64], alpha: f64) -> f64 {
    let a: Vec<f64> = lw.iter().map(|l| (1.0 - alpha) * l).collect();
    let m = a.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + a.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
    (lse - (lw.len() as f64).ln()) / (1.0 - alpha)
}

/// Model A: a global latent and a plate of data. z ~ N(0, 1); x_i ~ N(z, σ); guide
/// z ~ N(m, s). The draws of z go to `seen` (for sequential particles).
fn global(
    dt: DType,
    m: f64,
    sd: f64,
    seen: Rc<RefCell<Vec<Vec<f64>>>>,
) -> (BoxedProgram<'static>, BoxedProgram<'static>) {
    let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let c = |v: f64| s(v).to_dtype(dt);
        let z = ctx.sample("z", Normal::new(&c(0.0)?, &c(1.0)?)?)?;
        let x = Tensor::new(&XS, &Device::Cpu)?.to_dtype(dt)?;
        ctx.plate("data", 3, |ctx| {
            ctx.observe("x", Normal::new(&z, &c(SIGMA)?)?, &x)
        })?;
        Ok(())
    };
    let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let loc = ctx.param("m", &s(m).to_dtype(dt)?, Constraint::Real)?;
        let ls = ctx.param("ls", &s(sd.ln()).to_dtype(dt)?, Constraint::Real)?;
        let z = ctx.sample("z", Normal::new(&loc, &ls.exp()?)?)?;
        seen.borrow_mut().push(host(&z));
        Ok(())
    };
    (Box::new(model), Box::new(guide))
}

/// The log-weight of model A at the draw `z` with guide N(m, sd).
fn global_lw(z: f64, m: f64, sd: f64) -> f64 {
    normal_lp(z, 0.0, 1.0) + XS.iter().map(|x| normal_lp(*x, z, SIGMA)).sum::<f64>()
        - normal_lp(z, m, sd)
}

#[test]
fn global_latent_bound_matches_plain_f64() -> Res {
    let (m, sd) = (1.0, 0.5);
    for alpha in [0.0, 0.5, 2.0] {
        for vectorize in [true, false] {
            for dt in [DType::F64, DType::F32] {
                let seen = Rc::new(RefCell::new(Vec::new()));
                let (mut model, mut guide) = global(dt, m, sd, seen.clone());
                let k = 6;
                let elbo = RenyiElbo::new(alpha)?
                    .num_particles(k)
                    .vectorize_particles(vectorize);
                let mut store = ParamStore::new(&Device::Cpu, dt);
                let mut rng = ChaCha8Rng::seed_from_u64(4);
                let out = elbo.compute(model.as_mut(), guide.as_mut(), &mut store, &mut rng)?;
                // The probing run (vectorised, to find the plate nesting) draws too: the
                // step's draws are the last `k`.
                let draws: Vec<f64> = seen.borrow().iter().flatten().copied().collect();
                let zs = &draws[draws.len() - k..];
                let lw: Vec<f64> = zs.iter().map(|z| global_lw(*z, m, sd)).collect();
                let want = renyi(&lw, alpha);
                let got = -host(&out.loss)[0];
                let tol = if dt == DType::F64 { 1e-12 } else { 2e-5 };
                assert!(
                    (got - want).abs() < tol * (1.0 + want.abs()),
                    "alpha {alpha}, vectorize {vectorize}, {dt:?}: {got} vs {want}"
                );
                // The per-site terms: TraceElbo's, averaged over the particles.
                let kl = out.sites.iter().find(|t| t.name == "z").unwrap();
                assert_eq!(kl.kind, TermKind::KlMonteCarlo);
                let want_kl = zs
                    .iter()
                    .map(|z| normal_lp(*z, m, sd) - normal_lp(*z, 0.0, 1.0))
                    .sum::<f64>()
                    / k as f64;
                assert!((kl.sum_f64()? - want_kl).abs() < tol * (1.0 + want_kl.abs()));
                let ll = out.sites.iter().find(|t| t.name == "x").unwrap();
                assert_eq!(ll.kind, TermKind::LogLikelihood);
            }
        }
    }
    Ok(())
}

/// Model B: a latent per data point, every site in the data plate (common to all): the bound
/// is the sum over the points of each point's bound. With `sub = Some(b)` the plate of 6 is
/// subsampled to `b` points: each point's bound (from unscaled weights) is scaled by 6/b.
#[test]
fn local_latents_bound_matches_plain_f64() -> Res {
    const X6: [f64; 6] = [0.9, 1.6, 0.4, -0.3, 2.2, 1.0];
    const M6: [f64; 6] = [0.5, 1.0, 0.2, -0.1, 1.5, 0.6];
    let sd = 0.7;
    for sub in [None, Some(3)] {
        for alpha in [0.0, 0.5, 2.0] {
            let size = 6;
            let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
                let plate = match sub {
                    Some(b) => vi_infer::Plate::new("data", size).subsample_size(b),
                    None => vi_infer::Plate::new("data", size),
                };
                ctx.plate_with(plate, |ctx, idx| {
                    let x = Tensor::new(&X6, &Device::Cpu)?.index_select(idx, 0)?;
                    let z = ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
                    ctx.observe("x", Normal::new(&z, &s(SIGMA))?, &x)
                })?;
                Ok(())
            };
            let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
                let loc = ctx.param("m", &Tensor::new(&M6, &Device::Cpu)?, Constraint::Real)?;
                let plate = match sub {
                    Some(b) => vi_infer::Plate::new("data", size).subsample_size(b),
                    None => vi_infer::Plate::new("data", size),
                };
                ctx.plate_with(plate, |ctx, idx| {
                    ctx.sample("z", Normal::new(&loc.index_select(idx, 0)?, &s(sd))?)
                })?;
                Ok(())
            };
            let k = 5;
            let elbo = RenyiElbo::new(alpha)?
                .num_particles(k)
                .vectorize_particles(true)
                .max_plate_nesting(1);
            let out = crate::common::elbo_output(&elbo, &Device::Cpu, DType::F64, 8, model, guide)?;
            let z = out.guide_trace.get("z").unwrap().value.to_vec2::<f64>()?; // [K, b]
            let idx: Vec<usize> = match sub {
                Some(_) => out
                    .guide_trace
                    .get("data")
                    .unwrap()
                    .value
                    .to_vec1::<u32>()?
                    .into_iter()
                    .map(|i| i as usize)
                    .collect(),
                None => (0..size).collect(),
            };
            let scale = size as f64 / idx.len() as f64;
            let mut want = 0.0;
            for (j, &i) in idx.iter().enumerate() {
                let lw: Vec<f64> = (0..k)
                    .map(|p| {
                        let zp = z[p][j];
                        normal_lp(zp, 0.0, 1.0) + normal_lp(X6[i], zp, SIGMA)
                            - normal_lp(zp, M6[i], sd)
                    })
                    .collect();
                want += scale * renyi(&lw, alpha);
            }
            let got = -out.loss.to_scalar::<f64>()?;
            assert!(
                (got - want).abs() < 1e-12 * (1.0 + want.abs()),
                "alpha {alpha}, subsample {sub:?}: {got} vs {want}"
            );
        }
    }
    Ok(())
}

/// The log evidence of model A: x ~ N(0, σ² I + 1 1ᵀ).
fn global_log_evidence() -> f64 {
    // det(σ² I + 1 1ᵀ) = σ^(2n) (1 + n/σ²); inverse by Sherman–Morrison.
    let n = XS.len() as f64;
    let s2 = SIGMA * SIGMA;
    let logdet = n * s2.ln() + (1.0 + n / s2).ln();
    let sum: f64 = XS.iter().sum();
    let sq: f64 = XS.iter().map(|x| x * x).sum();
    let quad = sq / s2 - sum * sum / (s2 * s2 * (1.0 + n / s2));
    -0.5 * (n * (2.0 * std::f64::consts::PI).ln() + logdet + quad)
}

/// IWAE (alpha 0) on model A with a guide off the posterior: the bound's expectation rises
/// with K and reaches the log evidence within Monte Carlo error.
#[test]
fn iwae_rises_with_k_to_the_log_evidence() -> Res {
    let n = XS.len() as f64;
    let prec = 1.0 + n / (SIGMA * SIGMA);
    let post_mean = XS.iter().sum::<f64>() / (SIGMA * SIGMA) / prec;
    let post_sd = prec.powf(-0.5);
    // Off the posterior: shifted by one posterior sd and 30% wider.
    let (m, sd) = (post_mean + post_sd, 1.3 * post_sd);
    let exact = global_log_evidence();
    let mut means = Vec::new();
    for (k, reps) in [(2usize, 400), (10, 400), (100, 200), (2000, 60)] {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let (mut model, mut guide) = global(DType::F64, m, sd, seen);
        let elbo = RenyiElbo::new(0.0)?
            .num_particles(k)
            .vectorize_particles(true)
            .max_plate_nesting(1);
        let mut store = ParamStore::new(&Device::Cpu, DType::F64);
        let mut rng = ChaCha8Rng::seed_from_u64(k as u64);
        let mut values = Vec::with_capacity(reps);
        for _ in 0..reps {
            let out = elbo.compute(model.as_mut(), guide.as_mut(), &mut store, &mut rng)?;
            values.push(-out.loss.to_scalar::<f64>()?);
        }
        let (mean, var) = mean_var(&values);
        means.push((k, mean, (var / reps as f64).sqrt()));
    }
    println!("log p(x) = {exact:.5}; IWAE bound by K (mean ± SE): {means:?}");
    for w in means.windows(2) {
        let ((k0, a, sa), (k1, b, sb)) = (w[0], w[1]);
        assert!(
            b - a > -3.0 * (sa * sa + sb * sb).sqrt(),
            "K {k0} → {k1}: {a} ± {sa} → {b} ± {sb}"
        );
        assert!(
            b < exact + 4.0 * sb,
            "K {k1}: {b} ± {sb} above log p(x) {exact}"
        );
    }
    let (_, first, s0) = means[0];
    let (_, last, sl) = means[means.len() - 1];
    assert!(last - first > 4.0 * (s0 * s0 + sl * sl).sqrt(), "{means:?}");
    // At K = 2000 the bound's bias (about Var(w)/(2K p(x)²)) is far below its standard error.
    assert!(
        (last - exact).abs() < 4.0 * sl + 1e-3,
        "{last} ± {sl} vs {exact}"
    );
    Ok(())
}

/// The surrogate's gradient w.r.t. (m, log s) is the gradient of the bound at the same
/// noise: central differences of the loss with the same seed (the draws move with the
/// parameters, z = m + s ε).
#[test]
fn pathwise_gradient_matches_finite_differences() -> Res {
    for alpha in [0.0, 0.5, 2.0] {
        let elbo = RenyiElbo::new(alpha)?
            .num_particles(4)
            .vectorize_particles(true)
            .max_plate_nesting(1);
        let loss_and_grad = |theta: &[f64]| -> Res<(f64, Vec<f64>)> {
            let seen = Rc::new(RefCell::new(Vec::new()));
            let (mut model, mut guide) = global(DType::F64, theta[0], theta[1].exp(), seen);
            let mut store = ParamStore::new(&Device::Cpu, DType::F64);
            let mut rng = ChaCha8Rng::seed_from_u64(12);
            let out = elbo.compute(model.as_mut(), guide.as_mut(), &mut store, &mut rng)?;
            let g = out.surrogate.backward()?;
            let get = |n: &str| {
                g.get(store.unconstrained(n).unwrap().as_tensor())
                    .unwrap()
                    .to_scalar::<f64>()
            };
            Ok((out.loss.to_scalar::<f64>()?, vec![get("m")?, get("ls")?]))
        };
        let theta = [0.7, (0.6f64).ln()];
        let (_, got) = loss_and_grad(&theta)?;
        let want = vi_test::finite_difference(&theta, 1e-5, |t| loss_and_grad(t).unwrap().0);
        for j in 0..2 {
            assert!(
                (got[j] - want[j]).abs() < 1e-6 * (1.0 + want[j].abs()),
                "alpha {alpha}: {got:?} vs {want:?}"
            );
        }
    }
    Ok(())
}

/// A discrete latent (no rsample): z ~ Bernoulli(0.3), x ~ N(2z, 1) at 0.4; guide
/// z ~ Bernoulli(σ(l)). The exact gradient of E[bound] over K draws, by enumerating the 2^K
/// draws; the estimator's mean within 4 standard errors of it.
#[test]
fn score_function_gradient_is_exact_in_expectation() -> Res {
    let l0 = 0.4;
    let dev = Device::Cpu;
    let lw_of = |z: f64, q: &Tensor| -> candle_core::Result<Tensor> {
        let lp = if z == 1.0 { 0.3f64.ln() } else { 0.7f64.ln() } + normal_lp(0.4, 2.0 * z, 1.0);
        let lq = if z == 1.0 {
            q.log()?
        } else {
            (1.0 - q)?.log()?
        };
        lq.neg()? + lp
    };
    for (k, alpha) in [(2usize, 0.0), (3, 0.0), (2, 0.5), (3, 2.0)] {
        // Exact: Σ over the draws z_1..z_K of Π q(z_k) · bound(z_1..z_K).
        let v = Var::new(l0, &dev)?;
        let q = candle_nn::ops::sigmoid(v.as_tensor())?;
        let mut total = Tensor::new(0.0f64, &dev)?;
        for bits in 0..(1u32 << k) {
            let zs: Vec<f64> = (0..k).map(|i| ((bits >> i) & 1) as f64).collect();
            let mut prob = Tensor::new(1.0f64, &dev)?;
            let mut lws = Vec::new();
            for &z in &zs {
                let pz = if z == 1.0 { q.clone() } else { (1.0 - &q)? };
                prob = (prob * pz)?;
                lws.push((lw_of(z, &q)? * (1.0 - alpha))?);
            }
            let lw = Tensor::stack(&lws, 0)?;
            let bound = ((lw.exp()?.sum_all()?.log()? - (k as f64).ln())? / (1.0 - alpha))?;
            total = (total + (prob * bound)?)?;
        }
        let want = (total * -1.0)?
            .backward()?
            .get(v.as_tensor())
            .unwrap()
            .to_scalar::<f64>()?;

        let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let z = ctx.sample("z", Bernoulli::from_probs(&s(0.3))?)?;
            let x = s(0.4).broadcast_as(z.shape())?;
            ctx.observe("x", Normal::new(&(&z * 2.0)?, &z.ones_like()?)?, &x)?;
            Ok(())
        };
        let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let l = ctx.param("l", &s(l0), Constraint::Real)?;
            ctx.sample("z", Bernoulli::from_logits(&l)?)?;
            Ok(())
        };
        let (mut model, mut guide): (BoxedProgram<'_>, BoxedProgram<'_>) =
            (Box::new(model), Box::new(guide));
        for vectorize in [true, false] {
            let elbo = RenyiElbo::new(alpha)?
                .num_particles(k)
                .vectorize_particles(vectorize)
                .max_plate_nesting(0);
            let mut store = ParamStore::new(&dev, DType::F64);
            let mut rng = ChaCha8Rng::seed_from_u64(30 + k as u64);
            let mut grads = Vec::new();
            for _ in 0..6000 {
                let out = elbo.compute(model.as_mut(), guide.as_mut(), &mut store, &mut rng)?;
                let g = out.surrogate.backward()?;
                grads.push(
                    g.get(store.unconstrained("l").unwrap().as_tensor())
                        .unwrap()
                        .to_scalar::<f64>()?,
                );
            }
            let (mean, var) = mean_var(&grads);
            let se = (var / grads.len() as f64).sqrt();
            assert!(
                (mean - want).abs() < 4.0 * se,
                "K {k}, alpha {alpha}, vectorize {vectorize}: {mean} ± {se} vs exact {want}"
            );
            // The gradient is not zero (as Pyro's would be for alpha = 0).
            assert!(want.abs() > 8.0 * se, "{want} vs SE {se}");
        }
    }
    Ok(())
}

#[test]
fn errors() -> Res {
    for alpha in [1.0, f64::NAN, f64::INFINITY] {
        let e = RenyiElbo::new(alpha).unwrap_err();
        assert!(
            matches!(
                e,
                InferError::ElboSetting {
                    elbo: "RenyiElbo",
                    ..
                }
            ),
            "{e}"
        );
    }
    let e = RenyiElbo::new(1.0).unwrap_err();
    assert!(e.to_string().contains("TraceElbo"), "{e}");
    let seen = Rc::new(RefCell::new(Vec::new()));
    let (model, guide) = global(DType::F64, 0.0, 1.0, seen);
    let (mut model, mut guide) = (model, guide);
    for vectorize in [false, true] {
        let elbo = RenyiElbo::new(0.0)?
            .num_particles(1)
            .vectorize_particles(vectorize);
        let mut store = ParamStore::new(&Device::Cpu, DType::F64);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let e = elbo
            .compute(model.as_mut(), guide.as_mut(), &mut store, &mut rng)
            .unwrap_err();
        assert!(
            matches!(&e, InferError::ElboSetting { msg, .. } if msg.contains("at least 2")),
            "{e}"
        );
    }
    Ok(())
}

/// Pyro's `test_multi_sample_elbos.py`: `x` in an outer plate, `y` in an inner plate inside
/// it (`inner_outer`: outer at dim −1, inner at −2; `outer_inner`: the other way round). The
/// outer plate is common to both sites: one bound per outer element. Pyro checks that
/// `loss` and `loss_and_grads` agree, with 2 particles at one seed (one code path here) and
/// with 10 000 vectorised particles within 0.1 (two independent evaluations); here also the
/// bound from the draws in plain f64.
#[test]
fn pyro_multi_sample_nested_plates() -> Res {
    let data = [[0.3f64, -1.1, 0.8], [1.4, 0.2, -0.6]]; // [inner 2, outer 3] for inner_outer
    for outer_first in [false, true] {
        // inner_outer: outer (3) at dim −1, inner (2) at −2; outer_inner: outer (2) at −2,
        // inner (3) at −1, the same numbers as a [2, 3] array.
        let (outer_dim, inner_dim, outer_n, inner_n) = if outer_first {
            (-2isize, -1isize, 2usize, 3usize)
        } else {
            (-1, -2, 3, 2)
        };
        let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let y = Tensor::new(&data, &Device::Cpu)?;
            ctx.plate_dim("outer", outer_n, outer_dim, |ctx| {
                let x = ctx.sample("x", Normal::new(&s(0.0), &s(1.0))?)?;
                ctx.plate_dim("inner", inner_n, inner_dim, |ctx| {
                    ctx.observe("y", Normal::new(&x, &s(1.0))?, &y)
                })
            })?;
            Ok(())
        };
        let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
            ctx.plate_dim("outer", outer_n, outer_dim, |ctx| {
                ctx.sample("x", Normal::new(&s(1.0), &s(1.0))?)
            })?;
            Ok(())
        };
        let k = 10_000;
        let elbo = RenyiElbo::new(0.0)?
            .num_particles(k)
            .vectorize_particles(true)
            .max_plate_nesting(2);
        let a = crate::common::elbo_output(&elbo, &Device::Cpu, DType::F64, 1, model, guide)?;
        let b = crate::common::elbo_output(&elbo, &Device::Cpu, DType::F64, 2, model, guide)?;
        let (la, lb) = (a.loss.to_scalar::<f64>()?, b.loss.to_scalar::<f64>()?);
        assert!((la - lb).abs() < 0.1, "{la} vs {lb}");
        // From the draws: x is [K, 1, 3] (outer at −1) or [K, 2, 1] (outer at −2).
        let x = host(&a.guide_trace.get("x").unwrap().value);
        let mut want = 0.0;
        for o in 0..outer_n {
            let lw: Vec<f64> = (0..k)
                .map(|p| {
                    let xv = x[p * outer_n + o];
                    let ll: f64 = (0..inner_n)
                        .map(|i| {
                            let yv = if outer_first { data[o][i] } else { data[i][o] };
                            normal_lp(yv, xv, 1.0)
                        })
                        .sum();
                    normal_lp(xv, 0.0, 1.0) + ll - normal_lp(xv, 1.0, 1.0)
                })
                .collect();
            want += renyi(&lw, 0.0);
        }
        assert!((-la - want).abs() < 1e-9 * want.abs(), "{} vs {want}", -la);
    }
    Ok(())
}
