//! `infer_discrete`: the MAP (temperature 0) against a Viterbi decoder written by hand and
//! against the brute-force argmax; posterior draws (temperature 1) against the exact
//! posterior by a chi-square test.

use candle_core::{DType, Device, Tensor};
use vi_dist::{Bernoulli, Categorical, Normal};
use vi_infer::{Ctx, InferDiscrete, vindex};

use crate::common::{Res, host, run};

const K: usize = 3;

/// An HMM with Gaussian emissions, each state enumerated inside `markov`; returns the states.
fn hmm(ctx: &mut Ctx, ys: &[f64]) -> vi_infer::Result<Vec<Tensor>> {
    let dev = Device::Cpu;
    let pi = Tensor::new(&[0.5f64, 0.3, 0.2], &dev)?;
    let a = Tensor::new(
        &[[0.8f64, 0.15, 0.05], [0.1, 0.7, 0.2], [0.25, 0.25, 0.5]],
        &dev,
    )?;
    let locs = Tensor::new(&[-2.0f64, 0.0, 2.5], &dev)?;
    let scale = Tensor::new(1.3f64, &dev)?;
    let mut x: Option<Tensor> = None;
    ctx.markov(ys.iter().enumerate(), |ctx, (t, y)| {
        let probs = match &x {
            None => pi.clone(),
            Some(prev) => vindex(&a, &[prev])?,
        };
        let state = ctx.sample_enum(&format!("x_{t}"), Categorical::from_probs(&probs)?)?;
        let d = Normal::new(&vindex(&locs, &[&state])?, &scale)?;
        ctx.observe(&format!("y_{t}"), d, &Tensor::new(*y, &dev)?)?;
        x = Some(state.clone());
        Ok(state)
    })
}

/// Viterbi by hand, in f64.
fn viterbi(ys: &[f64]) -> Vec<usize> {
    let pi = [0.5f64, 0.3, 0.2];
    let a = [[0.8f64, 0.15, 0.05], [0.1, 0.7, 0.2], [0.25, 0.25, 0.5]];
    let locs = [-2.0, 0.0, 2.5];
    let e = |y: f64, k: usize| crate::common::normal_lp(y, locs[k], 1.3);
    let mut score: Vec<f64> = (0..K).map(|k| pi[k].ln() + e(ys[0], k)).collect();
    let mut back: Vec<[usize; K]> = Vec::new();
    for &y in &ys[1..] {
        let mut next = [0.0; K];
        let mut from = [0usize; K];
        for j in 0..K {
            let (i, s) = (0..K)
                .map(|i| (i, score[i] + a[i][j].ln()))
                .max_by(|x, y| x.1.total_cmp(&y.1))
                .unwrap();
            next[j] = s + e(y, j);
            from[j] = i;
        }
        score = next.to_vec();
        back.push(from);
    }
    let mut k = (0..K)
        .max_by(|x, y| score[*x].total_cmp(&score[*y]))
        .unwrap();
    let mut path = vec![k];
    for from in back.iter().rev() {
        k = from[k];
        path.push(k);
    }
    path.reverse();
    path
}

/// Temperature 0 on a 50-step HMM is the Viterbi path.
#[test]
fn map_of_an_hmm_is_the_viterbi_path() -> Res {
    let ys: Vec<f64> = (0..50)
        .map(|t| 2.5 * ((t as f64) * 0.37).sin() + 0.4 * ((t as f64) * 1.7).cos())
        .collect();
    let states = run(&Device::Cpu, DType::F64, 0, |ctx| {
        ctx.infer_discrete(&InferDiscrete::map().max_plate_nesting(0), |ctx| {
            hmm(ctx, &ys)
        })
    })?;
    let got: Vec<usize> = states
        .iter()
        .map(|s| s.to_scalar::<f64>().map(|v| v as usize))
        .collect::<candle_core::Result<_>>()?;
    assert_eq!(got, viterbi(&ys));
    // The same with max_plate_nesting found by a probing run.
    let again = run(&Device::Cpu, DType::F64, 1, |ctx| {
        ctx.infer_discrete(&InferDiscrete::map(), |ctx| hmm(ctx, &ys))
    })?;
    let again: Vec<usize> = again
        .iter()
        .map(|s| s.to_scalar::<f64>().map(|v| v as usize))
        .collect::<candle_core::Result<_>>()?;
    assert_eq!(again, got);
    Ok(())
}

/// The tiny model of the posterior tests: in plate `data` (size `n`, every element the same
/// data), `a ~ Bernoulli(0.3)`, `b | a ~ Categorical(T[a])`, `y ~ N(mu[b] + a, 1)` observed at
/// 0.6. Returns `(a, b)`.
fn tiny(ctx: &mut Ctx, n: usize) -> vi_infer::Result<(Tensor, Tensor)> {
    let dev = Device::Cpu;
    let t = Tensor::new(&[[0.5f64, 0.3, 0.2], [0.1, 0.2, 0.7]], &dev)?;
    let mu = Tensor::new(&[-1.0f64, 0.5, 1.5], &dev)?;
    ctx.plate("data", n, |ctx| {
        let a = ctx.sample_enum("a", Bernoulli::from_probs(&Tensor::new(0.3f64, &dev)?)?)?;
        let b = ctx.sample_enum("b", Categorical::from_probs(&vindex(&t, &[&a])?)?)?;
        let loc = vindex(&mu, &[&b])?.broadcast_add(&a)?;
        ctx.observe(
            "y",
            Normal::new(&loc, &Tensor::new(1.0f64, &dev)?)?,
            &Tensor::new(0.6f64, &dev)?,
        )?;
        Ok((a, b))
    })
}

/// The exact posterior of `tiny` over `(a, b)`, index `3a + b`.
fn tiny_posterior() -> Vec<f64> {
    let t = [[0.5f64, 0.3, 0.2], [0.1, 0.2, 0.7]];
    let mu = [-1.0, 0.5, 1.5];
    let mut w: Vec<f64> = (0..6)
        .map(|i| {
            let (a, b) = (i / 3, i % 3);
            let pa = if a == 1 { 0.3 } else { 0.7 };
            (pa * t[a][b]).ln() + crate::common::normal_lp(0.6, mu[b] + a as f64, 1.0)
        })
        .map(f64::exp)
        .collect();
    let z: f64 = w.iter().sum();
    w.iter_mut().for_each(|x| *x /= z);
    w
}

/// Temperature 0: the joint argmax of the brute-force posterior, in every plate element.
#[test]
fn map_is_the_joint_argmax() -> Res {
    let (a, b) = run(&Device::Cpu, DType::F64, 0, |ctx| {
        ctx.infer_discrete(&InferDiscrete::map().max_plate_nesting(1), |ctx| {
            tiny(ctx, 4)
        })
    })?;
    let post = tiny_posterior();
    let best = (0..6).max_by(|x, y| post[*x].total_cmp(&post[*y])).unwrap();
    assert_eq!(host(&a), vec![(best / 3) as f64; 4]);
    assert_eq!(host(&b), vec![(best % 3) as f64; 4]);
    Ok(())
}

/// Temperature 1: 4000 joint draws (a plate of 1000 independent copies, four runs) follow the
/// exact posterior (chi-square, α = 1e-3).
#[test]
fn samples_follow_the_posterior() -> Res {
    let mut draws = Vec::new();
    for seed in 0..4 {
        let (a, b) = run(&Device::Cpu, DType::F64, seed, |ctx| {
            ctx.infer_discrete(&InferDiscrete::sample().max_plate_nesting(1), |ctx| {
                tiny(ctx, 1000)
            })
        })?;
        let (a, b) = (host(&a), host(&b));
        draws.extend(a.iter().zip(&b).map(|(a, b)| 3.0 * a + b));
    }
    let post = tiny_posterior();
    vi_test::stats::check_chi_square(&draws, 6, |k| post[k], 1e-3)?;
    Ok(())
}

/// The final run is seen by the handlers outside (a trace records the inferred values), the
/// ones before it are not (no site twice).
#[test]
fn only_the_final_run_is_recorded() -> Res {
    run(&Device::Cpu, DType::F64, 0, |ctx| {
        let ((a, _), tr) = ctx.trace(|ctx| {
            ctx.infer_discrete(&InferDiscrete::map().max_plate_nesting(1), |ctx| {
                tiny(ctx, 2)
            })
        })?;
        assert_eq!(tr.names().collect::<Vec<_>>(), ["a", "b", "y"]);
        assert_eq!(
            tr.get("a").unwrap().value.to_vec1::<f64>()?,
            a.to_vec1::<f64>()?
        );
        assert!(tr.get("a").unwrap().infer.enum_dim.is_none());
        Ok(())
    })?;
    Ok(())
}
