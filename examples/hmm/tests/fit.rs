//! The HMM example, small: the enumerated loss (`markov` and `vectorized_markov`) equals the
//! forward algorithm written in candle (the timing comparison's other side), `infer_discrete` decodes the Viterbi path, and a short
//! fit moves the transition matrix towards the truth.

use hmm::{Params, initial, model, model_vectorized, plain, read_params, simulate, viterbi};
use rand::SeedableRng;
use vi_infer::candle::{DType, Device, Tensor};
use vi_infer::optim::{Adam, AdamOptions};
use vi_infer::{Ctx, Elbo, InferDiscrete, ParamStore, Svi, TraceEnumElbo};

type Res = Result<(), Box<dyn std::error::Error>>;

#[test]
fn enumerated_loss_is_the_forward_algorithm() -> Res {
    let truth = Params::truth(3);
    let (_, ys) = simulate(&truth, 40, 1);
    let start = initial(3, &ys);
    let y = Tensor::new(ys.as_slice(), &Device::Cpu)?;
    let mut store = ParamStore::new(&Device::Cpu, DType::F64);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let out = TraceEnumElbo::new().max_plate_nesting(0).compute(
        &mut |ctx: &mut Ctx| model(ctx, &y, &start).map(|_| ()),
        &mut |_: &mut Ctx| Ok(()),
        &mut store,
        &mut rng,
    )?;
    let rows: Vec<f64> = start.trans.iter().flatten().copied().collect();
    let want = plain::neg_log_likelihood(
        &Tensor::new(start.init.as_slice(), &Device::Cpu)?,
        &Tensor::from_vec(rows, (3, 3), &Device::Cpu)?,
        &Tensor::new(start.locs.as_slice(), &Device::Cpu)?,
        &Tensor::new(start.scale, &Device::Cpu)?,
        &y,
    )?
    .to_scalar::<f64>()?;
    let got = out.loss.to_scalar::<f64>()?;
    assert!((got - want).abs() <= 1e-10 * want.abs(), "{got} vs {want}");
    // The vectorized formulation: the same number.
    let mut store = ParamStore::new(&Device::Cpu, DType::F64);
    let out = TraceEnumElbo::new().max_plate_nesting(1).compute(
        &mut |ctx: &mut Ctx| model_vectorized(ctx, &y, &start),
        &mut |_: &mut Ctx| Ok(()),
        &mut store,
        &mut rng,
    )?;
    let got = out.loss.to_scalar::<f64>()?;
    assert!((got - want).abs() <= 1e-10 * want.abs(), "{got} vs {want}");
    Ok(())
}

#[test]
fn fit_and_decode() -> Res {
    let truth = Params::truth(2);
    let (states, ys) = simulate(&truth, 120, 3);
    let start = initial(2, &ys);
    let y = Tensor::new(ys.as_slice(), &Device::Cpu)?;
    let init = start.clone();
    let yy = y.clone();
    let adam = Adam::empty(AdamOptions {
        lr: 0.1,
        ..Default::default()
    })?;
    let mut svi = Svi::new(
        move |ctx: &mut Ctx| model(ctx, &yy, &init).map(|_| ()),
        |_: &mut Ctx| Ok(()),
        adam,
        TraceEnumElbo::new().max_plate_nesting(0),
    )
    .seed(0);
    let first = svi.step()?.loss;
    let mut last = first;
    for _ in 0..30 {
        last = svi.step()?.loss;
    }
    assert!(last < first, "the loss should fall: {first} -> {last}");
    let fitted = read_params(svi.store(), &start)?;
    // The stay probabilities move from 0.5 towards the true 0.8.
    for i in 0..2 {
        assert!(
            fitted.trans[i][i] > 0.6,
            "stay probability {i}: {}",
            fitted.trans[i][i]
        );
    }
    // Viterbi with the fitted parameters: infer_discrete against dynamic programming.
    let mut store = ParamStore::new(&Device::Cpu, DType::F64);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut ctx = Ctx::new(&mut store, &mut rng);
    let path = ctx.infer_discrete(&InferDiscrete::map().max_plate_nesting(0), |ctx| {
        model(ctx, &y, &fitted)
    })?;
    let decoded: Vec<usize> = path
        .iter()
        .map(|s| s.to_scalar::<f64>().map(|v| v as usize))
        .collect::<Result<_, _>>()?;
    assert_eq!(decoded, viterbi(&fitted, &ys));
    let right = decoded.iter().zip(&states).filter(|(a, b)| a == b).count();
    assert!(right > 108, "{right}/120 states decoded right");
    Ok(())
}
