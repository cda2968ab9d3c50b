//! `markov`: hidden Markov models enumerated in the model against the forward algorithm
//! written by hand in f64 (T = 50, K = 3), the dims a chain uses, a second-order chain
//! against brute force, and ports of Pyro's `test_elbo_hmm_in_model` and
//! `test_elbo_hmm_in_guide` (Pyro's golden gradients; Pyro's simplex parameters are softmax
//! logits, so the ports use logits).

use candle_core::{DType, Device, Tensor};
use vi_dist::{Categorical, Constraint, Normal};
use vi_infer::handlers::EnumMessenger;
use vi_infer::{Ctx, TraceEnumElbo, vindex};

use super::{assignments, at, at2, grads_of, logsumexp, loss_and_grads};
use crate::common::{Res, assert_close_tol};

const K: usize = 3;
const T: usize = 50;

fn init_probs() -> [f64; K] {
    [0.5, 0.3, 0.2]
}

fn trans() -> [[f64; K]; K] {
    [[0.8, 0.15, 0.05], [0.1, 0.7, 0.2], [0.25, 0.25, 0.5]]
}

const LOCS: [f64; K] = [-2.0, 0.0, 2.5];
const SCALE: f64 = 0.9;

/// A sequence drawn from the chain (a fixed linear congruential generator, so the test does
/// not depend on a sampler).
fn sequence(n: usize) -> Vec<f64> {
    let mut state = 12345u64;
    let mut uniform = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let draw = |p: &[f64], u: f64| {
        let mut acc = 0.0;
        for (k, pk) in p.iter().enumerate() {
            acc += pk;
            if u < acc {
                return k;
            }
        }
        p.len() - 1
    };
    let (pi, a) = (init_probs(), trans());
    let mut x = draw(&pi, uniform());
    let mut ys = Vec::with_capacity(n);
    for t in 0..n {
        if t > 0 {
            x = draw(&a[x], uniform());
        }
        // Box–Muller for the emission.
        let (u1, u2) = (uniform().max(1e-300), uniform());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        ys.push(LOCS[x] + SCALE * z);
    }
    ys
}

/// `log N(y; m, s)` in f64.
fn lnorm(y: f64, m: f64, s: f64) -> f64 {
    crate::common::normal_lp(y, m, s)
}

/// The forward algorithm by hand: `log p(y_1..T)` of the chain with initial probabilities
/// `pi`, transitions `a` and Gaussian emissions (`locs`, `scale`), with log-sum-exp per step.
fn forward(pi: &[f64], a: &[Vec<f64>], locs: &[f64], scale: f64, ys: &[f64]) -> f64 {
    let k = pi.len();
    let mut alpha: Vec<f64> = (0..k)
        .map(|j| pi[j].ln() + lnorm(ys[0], locs[j], scale))
        .collect();
    for &y in &ys[1..] {
        alpha = (0..k)
            .map(|j| {
                let terms: Vec<f64> = (0..k).map(|i| alpha[i] + a[i][j].ln()).collect();
                let m = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                m + terms.iter().map(|x| (x - m).exp()).sum::<f64>().ln() + lnorm(y, locs[j], scale)
            })
            .collect();
    }
    let m = alpha.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    m + alpha.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// The HMM as a vi model: `x_0 ~ pi`, `x_t ~ trans[x_{t−1}]`, `y_t ~ N(locs[x_t], scale)`,
/// every `x_t` enumerated inside `markov`; `locs` a parameter.
fn hmm(ys: Vec<f64>) -> impl FnMut(&mut Ctx) -> vi_infer::Result<()> {
    move |ctx: &mut Ctx| {
        let dev = Device::Cpu;
        let pi = Tensor::new(&init_probs(), &dev)?;
        let a = Tensor::new(&trans(), &dev)?;
        let locs = ctx.param("locs", &Tensor::new(&LOCS, &dev)?, Constraint::Real)?;
        let scale = Tensor::new(SCALE, &dev)?;
        let mut x: Option<Tensor> = None;
        ctx.markov(ys.iter().enumerate(), |ctx, (t, y)| {
            let probs = match &x {
                None => pi.clone(),
                Some(prev) => vindex(&a, &[prev])?,
            };
            let state = ctx.sample_enum(&format!("x_{t}"), Categorical::from_probs(&probs)?)?;
            let d = Normal::new(&vindex(&locs, &[&state])?, &scale)?;
            ctx.observe(&format!("y_{t}"), d, &Tensor::new(*y, &dev)?)?;
            x = Some(state);
            Ok(())
        })?;
        Ok(())
    }
}

/// The enumerated HMM's loss is `−log p(y)` of the forward algorithm (T = 50, K = 3), and its
/// gradient in the emission means is the forward algorithm's (central differences).
#[test]
fn hmm_equals_the_forward_algorithm() -> Res {
    let ys = sequence(T);
    let a: Vec<Vec<f64>> = trans().iter().map(|r| r.to_vec()).collect();
    let want = -forward(&init_probs(), &a, &LOCS, SCALE, &ys);
    let got = loss_and_grads(
        &TraceEnumElbo::new().max_plate_nesting(0),
        0,
        hmm(ys.clone()),
        crate::common::empty,
    )?;
    assert_close_tol(&[got.loss], &[want], 1e-10, "−log p(y)");
    let fd =
        vi_test::finite_difference(&LOCS, 1e-5, |l| -forward(&init_probs(), &a, l, SCALE, &ys));
    assert_close_tol(&got.grads["locs"], &fd, 1e-6, "∂/∂locs");
    Ok(())
}

/// A chain of 50 enumerated steps inside `markov` uses two dims (recycled), and its values
/// stay of rank 2; without `markov` each step takes a dim of its own.
#[test]
fn markov_recycles_dims() -> Res {
    let ys = sequence(T);
    let trace_of = |with_markov: bool| -> Res<vi_infer::Trace> {
        let mut model = hmm(ys.clone());
        Ok(crate::common::run(&Device::Cpu, DType::F64, 0, |ctx| {
            let ((), tr) = ctx.trace(|ctx| {
                ctx.with(EnumMessenger::new(-1)?, |ctx| {
                    if with_markov {
                        model(ctx)
                    } else {
                        // The same chain, each step a global site.
                        let pi = Tensor::new(&init_probs(), &Device::Cpu)?;
                        let a = Tensor::new(&trans(), &Device::Cpu)?;
                        let mut x = ctx.sample_enum("x_0", Categorical::from_probs(&pi)?)?;
                        for t in 1..6 {
                            let p = vindex(&a, &[&x])?;
                            x = ctx.sample_enum(&format!("x_{t}"), Categorical::from_probs(&p)?)?;
                        }
                        Ok(())
                    }
                })?;
                Ok(())
            })?;
            Ok(tr)
        })?)
    };
    let tr = trace_of(true)?;
    let mut dims: Vec<isize> = (0..T)
        .map(|t| tr.get(&format!("x_{t}")).unwrap().infer.enum_dim.unwrap())
        .collect();
    assert!(
        tr.sites().all(|s| s.value.rank() <= 2),
        "values of rank > 2 in a markov chain"
    );
    dims.sort();
    dims.dedup();
    assert_eq!(dims, [-2, -1]);
    let tr = trace_of(false)?;
    let dims: Vec<isize> = (0..6)
        .map(|t| tr.get(&format!("x_{t}")).unwrap().infer.enum_dim.unwrap())
        .collect();
    assert_eq!(dims, [-1, -2, -3, -4, -5, -6]);
    Ok(())
}

/// A second-order chain (`markov_history(2)`: `x_t` given `x_{t−1}` and `x_{t−2}`) against
/// the brute-force sum over its 2⁵ paths.
#[test]
fn second_order_chain_against_brute_force() -> Res {
    let ys = [0.3, -0.8, 1.2, 0.9, -0.1];
    let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let dev = Device::Cpu;
        let init = Tensor::new(&[[0.6f64, 0.4], [0.3, 0.7]], &dev)?;
        let t2 = ctx.param(
            "t2",
            &Tensor::new(
                &[[[0.9f64, 0.1], [0.4, 0.6]], [[0.2, 0.8], [0.5, 0.5]]],
                &dev,
            )?,
            Constraint::Simplex,
        )?;
        let locs = ctx.param(
            "locs",
            &Tensor::new(&[-1.0f64, 1.0], &dev)?,
            Constraint::Real,
        )?;
        let mut hist: Vec<Tensor> = Vec::new();
        ctx.markov_history(2, ys.iter().enumerate(), |ctx, (t, y)| {
            let probs = match hist.len() {
                0 => vindex(&init, &[&Tensor::new(0.0f64, &dev)?])?,
                1 => vindex(&init, &[&hist[0]])?,
                n => vindex(&t2, &[&hist[n - 2], &hist[n - 1]])?,
            };
            let x = ctx.sample_enum(&format!("x_{t}"), Categorical::from_probs(&probs)?)?;
            let d = Normal::new(&vindex(&locs, &[&x])?, &Tensor::new(1.0f64, &dev)?)?;
            ctx.observe(&format!("y_{t}"), d, &Tensor::new(*y, &dev)?)?;
            hist.push(x);
            Ok(())
        })?;
        Ok(())
    };
    let got = loss_and_grads(
        &TraceEnumElbo::new().max_plate_nesting(0),
        0,
        model,
        crate::common::empty,
    )?;
    let store = &got.store;
    let t2 = super::param(store, "t2")?;
    let locs = super::param(store, "locs")?;
    let init = Tensor::new(&[[0.6f64, 0.4], [0.3, 0.7]], &Device::Cpu)?;
    let one = Tensor::new(1.0f64, &Device::Cpu)?;
    let terms = assignments(&[2; 5])
        .iter()
        .map(|xs| {
            let mut lp = at2(&init, 0, xs[0])?.log()?;
            lp = (lp + at2(&init, xs[0], xs[1])?.log()?)?;
            for t in 2..5 {
                lp = (lp + at(&at2(&t2, xs[t - 2], xs[t - 1])?, xs[t])?.log()?)?;
            }
            for (t, y) in ys.iter().enumerate() {
                lp = (lp + super::normal_lp(*y, &at(&locs, xs[t])?, &one)?)?;
            }
            Ok(lp)
        })
        .collect::<Res<Vec<_>>>()?;
    let want = logsumexp(&terms)?.neg()?;
    assert_close_tol(&[got.loss], &[want.to_scalar::<f64>()?], 1e-10, "loss");
    super::assert_grads(&got.grads, &grads_of(&want, store)?, 1e-10, "second order");
    Ok(())
}

/// A categorical with softmax-logits parameter `name` initialised at `log(init)` (Pyro's
/// simplex parameters).
fn logits(ctx: &mut Ctx, name: &str, init: &[[f64; 2]]) -> vi_infer::Result<Tensor> {
    let rows: Vec<f64> = init.iter().flatten().map(|p| p.ln()).collect();
    let t = Tensor::from_vec(rows, (init.len(), 2), &Device::Cpu)?;
    ctx.param(name, &t, Constraint::Real)
}

/// Pyro's `test_elbo_hmm_in_model` (parallel, expand = False; T = 2, 3, 10, 20): the HMM
/// enumerated in the model against a mean-field guide enumerated step by step; Pyro's exact
/// unconstrained gradients.
#[test]
fn pyro_elbo_hmm_in_model() -> Res {
    for steps in [2usize, 3, 10, 20] {
        let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let dev = Device::Cpu;
            let trans = logits(ctx, "transition_probs", &[[0.9, 0.1], [0.1, 0.9]])?;
            let locs = ctx.param(
                "obs_locs",
                &Tensor::new(&[-1.0f64, 1.0], &dev)?,
                Constraint::Real,
            )?;
            let scale = ctx.param(
                "obs_scale",
                &Tensor::new(1.0f64, &dev)?,
                Constraint::Positive,
            )?;
            let init = Tensor::new(&[0.5f64, 0.5], &dev)?;
            let mut x: Option<Tensor> = None;
            ctx.markov(0..steps, |ctx, i| {
                let d = match &x {
                    None => Categorical::from_probs(&init)?,
                    Some(prev) => Categorical::from_logits(&vindex(&trans, &[prev])?)?,
                };
                let state = ctx.sample(&format!("x_{i}"), d)?;
                let obs = Normal::new(&vindex(&locs, &[&state])?, &scale)?;
                ctx.observe(&format!("y_{i}"), obs, &Tensor::new(1.0f64, &dev)?)?;
                x = Some(state);
                Ok(())
            })?;
            Ok(())
        };
        let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let init = vec![[0.5, 0.5]; steps];
            let mf = logits(ctx, "mean_field_probs", &init)?;
            ctx.config_enumerate(|ctx| {
                ctx.markov(0..steps, |ctx, i| {
                    let row = mf.narrow(0, i, 1)?.squeeze(0)?;
                    ctx.sample(&format!("x_{i}"), Categorical::from_logits(&row)?)
                })
            })?;
            Ok(())
        };
        let got = loss_and_grads(&TraceEnumElbo::new(), 0, model, guide)?;
        let n = steps as f64;
        let want = [
            (
                "transition_probs",
                vec![
                    0.2 * (n - 1.0),
                    -0.2 * (n - 1.0),
                    -0.2 * (n - 1.0),
                    0.2 * (n - 1.0),
                ],
            ),
            ("obs_locs", vec![-n, 0.0]),
            ("obs_scale", vec![-n]),
            ("mean_field_probs", [0.5, -0.5].repeat(steps)),
        ];
        for (name, g) in want {
            assert_close_tol(
                &got.grads[name],
                &g,
                1e-10,
                &format!("T = {steps}: ∂/∂{name}"),
            );
        }
    }
    Ok(())
}

/// Pyro's `test_elbo_hmm_in_guide` (parallel, expand = False; T = 2, 3, 10, 20): the chain
/// enumerated in the guide (inside `markov`), the model scoring it; Pyro's golden gradients.
#[test]
fn pyro_elbo_hmm_in_guide() -> Res {
    let golden = [
        (2usize, 0.1029949, [0.75, 0.25]),
        (3, 0.25748726, [1.125, 0.375]),
        (10, 1.64832076, [3.75, 1.25]),
        (20, 3.70781687, [7.5, 2.5]),
    ];
    for (steps, tg, eg) in golden {
        let chain = move |ctx: &mut Ctx, emit: bool| -> vi_infer::Result<()> {
            let dev = Device::Cpu;
            let trans = logits(ctx, "transition_probs", &[[0.75, 0.25], [0.25, 0.75]])?;
            let emission = if emit {
                Some(logits(
                    ctx,
                    "emission_probs",
                    &[[0.75, 0.25], [0.25, 0.75]],
                )?)
            } else {
                None
            };
            let init = Tensor::new(&[0.5f64, 0.5], &dev)?;
            let mut x: Option<Tensor> = None;
            ctx.markov(0..steps, |ctx, i| {
                let d = match &x {
                    None => Categorical::from_probs(&init)?,
                    Some(prev) => Categorical::from_logits(&vindex(&trans, &[prev])?)?,
                };
                let state = ctx.sample(&format!("x_{i}"), d)?;
                if let Some(e) = &emission {
                    let obs = Categorical::from_logits(&vindex(e, &[&state])?)?;
                    ctx.observe(&format!("y_{i}"), obs, &Tensor::new(1.0f64, &dev)?)?;
                }
                x = Some(state);
                Ok(())
            })?;
            Ok(())
        };
        let model = move |ctx: &mut Ctx| chain(ctx, true);
        let guide = move |ctx: &mut Ctx| ctx.config_enumerate(|ctx| chain(ctx, false));
        let got = loss_and_grads(&TraceEnumElbo::new(), 0, model, guide)?;
        let what = format!("T = {steps}");
        // Pyro's tolerance for these golden values (printed to 8 digits).
        assert_close_tol(
            &got.grads["transition_probs"],
            &[tg, -tg, tg, -tg],
            1e-6,
            &what,
        );
        assert_close_tol(
            &got.grads["emission_probs"],
            &[eg[0], -eg[0], eg[1], -eg[1]],
            1e-10,
            &what,
        );
    }
    Ok(())
}
