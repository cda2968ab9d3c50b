//! `vectorized_markov`: the chain written once for all steps after the first, contracted by
//! a parallel scan, against the same chain written with `markov` (and the forward algorithm):
//! losses and gradients to 1e-10 in f64, for even, odd and tiny lengths, one or two states
//! per step, inside a plate of sequences; and the typed errors for what it does not do.

use candle_core::{Device, Tensor};
use vi_dist::{Categorical, Constraint, Normal};
use vi_infer::{Ctx, InferDiscrete, InferError, TraceEnumElbo, vindex};

use super::{assert_grads, loss_and_grads};
use crate::common::{Res, assert_close_tol, assert_mentions};

fn t(v: &[f64]) -> vi_infer::Result<Tensor> {
    Ok(Tensor::new(v, &Device::Cpu)?)
}

/// The observations: `steps` points (a fixed sequence).
fn ys(steps: usize) -> Vec<f64> {
    (0..steps)
        .map(|i| 2.0 * ((i as f64) * 0.9).sin() + 0.3 * ((i as f64) * 2.3).cos())
        .collect()
}

/// The HMM's parameters: `trans` (3 states, simplex rows), `locs`, `scale`.
fn params(ctx: &mut Ctx) -> vi_infer::Result<[Tensor; 3]> {
    let trans = Tensor::new(
        &[[0.7f64, 0.2, 0.1], [0.15, 0.7, 0.15], [0.1, 0.3, 0.6]],
        &Device::Cpu,
    )?;
    Ok([
        ctx.param("trans", &trans, Constraint::Simplex)?,
        ctx.param("locs", &t(&[-2.0, 0.0, 2.0])?, Constraint::Real)?,
        ctx.param("scale", &t(&[0.8])?.squeeze(0)?, Constraint::Positive)?,
    ])
}

fn init() -> vi_infer::Result<Tensor> {
    t(&[0.5, 0.3, 0.2])
}

/// The HMM step by step with `markov`.
fn sequential(ys: Vec<f64>) -> impl FnMut(&mut Ctx) -> vi_infer::Result<()> {
    move |ctx: &mut Ctx| {
        let [trans, locs, scale] = params(ctx)?;
        let mut x: Option<Tensor> = None;
        ctx.markov(ys.iter().enumerate(), |ctx, (i, y)| {
            let probs = match &x {
                None => init()?,
                Some(prev) => vindex(&trans, &[prev])?,
            };
            let state = ctx.sample_enum(&format!("x_{i}"), Categorical::from_probs(&probs)?)?;
            let d = Normal::new(&vindex(&locs, &[&state])?, &scale)?;
            ctx.observe(&format!("y_{i}"), d, &t(&[*y])?.squeeze(0)?)?;
            x = Some(state);
            Ok(())
        })?;
        Ok(())
    }
}

/// The same HMM with `vectorized_markov`.
fn vectorized(ys: Vec<f64>) -> impl FnMut(&mut Ctx) -> vi_infer::Result<()> {
    move |ctx: &mut Ctx| {
        let [trans, locs, scale] = params(ctx)?;
        let y = t(&ys)?;
        ctx.vectorized_markov("time", ys.len(), |ctx, prev: Option<&Tensor>, steps| {
            let probs = match prev {
                None => init()?,
                Some(x) => vindex(&trans, &[x])?,
            };
            let x = ctx.sample_enum("x", Categorical::from_probs(&probs)?)?;
            let d = Normal::new(&vindex(&locs, &[&x])?, &scale)?;
            ctx.observe("y", d, &y.index_select(steps, 0)?)?;
            Ok(x)
        })?;
        Ok(())
    }
}

/// Losses and gradients of the two formulations agree, for lengths 1, 2, 3, 8, 37 and 50.
#[test]
fn vectorized_equals_sequential() -> Res {
    for steps in [1usize, 2, 3, 8, 37, 50] {
        let seq = loss_and_grads(
            &TraceEnumElbo::new().max_plate_nesting(0),
            0,
            sequential(ys(steps)),
            crate::common::empty,
        )?;
        let vec = loss_and_grads(
            &TraceEnumElbo::new().max_plate_nesting(1),
            0,
            vectorized(ys(steps)),
            crate::common::empty,
        )?;
        let what = format!("T = {steps}");
        assert_close_tol(&[vec.loss], &[seq.loss], 1e-10, &what);
        assert_grads(&vec.grads, &seq.grads, 1e-10, &what);
    }
    Ok(())
}

/// Two sequences in a plate around the chain, two states per step (a factorial HMM: `x`
/// and `w`, the emission depending on both), against the same written with `markov` in a
/// loop over the sequences.
#[test]
fn batched_factorial_chain() -> Res {
    const T: usize = 9;
    let data: Vec<Vec<f64>> = vec![ys(T), ys(T).iter().map(|y| -0.5 * y + 0.4).collect()];
    let params = |ctx: &mut Ctx| -> vi_infer::Result<[Tensor; 3]> {
        Ok([
            ctx.param(
                "tx",
                &Tensor::new(&[[0.8f64, 0.2], [0.3, 0.7]], &Device::Cpu)?,
                Constraint::Simplex,
            )?,
            ctx.param(
                "tw",
                &Tensor::new(&[[0.6f64, 0.4], [0.1, 0.9]], &Device::Cpu)?,
                Constraint::Simplex,
            )?,
            ctx.param(
                "locs",
                &Tensor::new(&[[-1.5f64, 0.0], [0.5, 2.0]], &Device::Cpu)?,
                Constraint::Real,
            )?,
        ])
    };
    let uniform = || t(&[0.5, 0.5]);
    let d1 = data.clone();
    let seq = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let [tx, tw, locs] = params(ctx)?;
        for (s, ys) in d1.iter().enumerate() {
            let mut prev: Option<(Tensor, Tensor)> = None;
            ctx.markov(ys.iter().enumerate(), |ctx, (i, y)| {
                let (px, pw) = match &prev {
                    None => (uniform()?, uniform()?),
                    Some((x, w)) => (vindex(&tx, &[x])?, vindex(&tw, &[w])?),
                };
                let x = ctx.sample_enum(&format!("x_{s}_{i}"), Categorical::from_probs(&px)?)?;
                let w = ctx.sample_enum(&format!("w_{s}_{i}"), Categorical::from_probs(&pw)?)?;
                let d = Normal::new(&vindex(&locs, &[&x, &w])?, &t(&[1.0])?.squeeze(0)?)?;
                ctx.observe(&format!("y_{s}_{i}"), d, &t(&[*y])?.squeeze(0)?)?;
                prev = Some((x, w));
                Ok(())
            })?;
        }
        Ok(())
    };
    let rows: Vec<f64> = (0..T).flat_map(|i| [data[0][i], data[1][i]]).collect();
    let y = Tensor::from_vec(rows, (T, 2), &Device::Cpu)?; // [time, sequence]
    let vec = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let [tx, tw, locs] = params(ctx)?;
        ctx.plate_dim("sequences", 2, -1, |ctx| {
            ctx.vectorized_markov("time", T, |ctx, prev: Option<&(Tensor, Tensor)>, steps| {
                let (px, pw) = match prev {
                    None => (uniform()?, uniform()?),
                    Some((x, w)) => (vindex(&tx, &[x])?, vindex(&tw, &[w])?),
                };
                let x = ctx.sample_enum("x", Categorical::from_probs(&px)?)?;
                let w = ctx.sample_enum("w", Categorical::from_probs(&pw)?)?;
                let d = Normal::new(&vindex(&locs, &[&x, &w])?, &t(&[1.0])?.squeeze(0)?)?;
                ctx.observe("y", d, &y.index_select(steps, 0)?)?;
                Ok((x, w))
            })
        })?;
        Ok(())
    };
    let a = loss_and_grads(
        &TraceEnumElbo::new().max_plate_nesting(0),
        0,
        seq,
        crate::common::empty,
    )?;
    let b = loss_and_grads(
        &TraceEnumElbo::new().max_plate_nesting(2),
        0,
        vec,
        crate::common::empty,
    )?;
    assert_close_tol(&[b.loss], &[a.loss], 1e-10, "loss");
    assert_grads(&b.grads, &a.grads, 1e-10, "factorial");
    Ok(())
}

/// What it does not do is an error naming the site: a step depending on an enumerated
/// variable outside the chain, a state enumerated only after the first step, a state
/// enumerated in the guide, and `infer_discrete`.
#[test]
fn errors_name_the_sites() -> Res {
    let elbo = || TraceEnumElbo::new().max_plate_nesting(1);
    let err = |r: Res<super::LossGrads>| -> Box<InferError> {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.downcast::<InferError>().expect("an InferError"),
        }
    };
    // A global enumerated site read inside the vectorized steps.
    let e = err(loss_and_grads(
        &elbo(),
        0,
        |ctx: &mut Ctx| {
            let g = ctx.sample_enum("g", Categorical::from_probs(&t(&[0.5, 0.5])?)?)?;
            ctx.vectorized_markov("time", 4, |ctx, prev: Option<&Tensor>, _| {
                let probs = match prev {
                    None => t(&[0.5, 0.5])?,
                    Some(_) => vindex(
                        &Tensor::new(&[[0.9f64, 0.1], [0.3, 0.7]], &Device::Cpu)?,
                        &[&g],
                    )?,
                };
                ctx.sample_enum("x", Categorical::from_probs(&probs)?)
            })?;
            Ok(())
        },
        crate::common::empty,
    ));
    assert!(
        matches!(&*e, InferError::Enumeration { sites, .. } if sites.contains(&"g".to_string())),
        "{e}"
    );
    assert_mentions(&e, &["not a state of the chain", "`time`"]);
    // A state enumerated only in the vectorized steps.
    let e = err(loss_and_grads(
        &elbo(),
        0,
        |ctx: &mut Ctx| {
            ctx.vectorized_markov("time", 4, |ctx, prev: Option<&Tensor>, _| {
                let d = Categorical::from_probs(&t(&[0.5, 0.5])?)?;
                match prev {
                    None => ctx.sample("x", d),
                    Some(_) => ctx.sample_enum("x", d),
                }
            })?;
            Ok(())
        },
        |ctx: &mut Ctx| {
            ctx.sample("x[0]", Categorical::from_probs(&t(&[0.5, 0.5])?)?)?;
            Ok(())
        },
    ));
    assert_mentions(&e, &["x[1..4]", "at the first step"]);
    // infer_discrete.
    let e = crate::common::run(&Device::Cpu, candle_core::DType::F64, 0, |ctx| {
        ctx.infer_discrete(&InferDiscrete::map().max_plate_nesting(1), |ctx| {
            vectorized(ys(5))(ctx)
        })
    })
    .unwrap_err();
    assert_mentions(&e, &["infer_discrete", "vectorized_markov"]);
    Ok(())
}
