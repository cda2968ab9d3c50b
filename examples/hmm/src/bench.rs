//! One SVI step of the HMM (`markov` + `TraceEnumElbo`, Adam; and with `vectorized_markov`)
//! against the same step written directly in candle ([`crate::plain`], the forward recursion by hand), alternated step by
//! step on the same data from the same parameters.

use std::time::Instant;

use vi_infer::candle::{DType, Device, Tensor, Var};
use vi_infer::optim::{Adam, AdamOptions, Optimizer};
use vi_infer::{Ctx, Svi, TraceEnumElbo};

use crate::{Params, initial, model, model_vectorized, simulate};

/// Median milliseconds per step of each side, and their ratio.
pub struct Report {
    /// K, T.
    pub k: usize,
    pub t: usize,
    /// vi's step (median ms), the chain written with `markov`.
    pub svi_ms: f64,
    /// vi's step with `vectorized_markov` (median ms).
    pub vectorized_ms: f64,
    /// The plain candle step (median ms).
    pub plain_ms: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HMM K = {}, T = {}: vi markov + TraceEnumElbo {:.2} ms/step, vi vectorized_markov {:.2} ms/step, plain candle {:.2} ms/step; ratios to plain {:.2}, {:.2}",
            self.k,
            self.t,
            self.svi_ms,
            self.vectorized_ms,
            self.plain_ms,
            self.svi_ms / self.plain_ms,
            self.vectorized_ms / self.plain_ms
        )
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Times `steps` steps of each side, alternating (after two warm-up steps each), f32 on the
/// CPU.
pub fn run(k: usize, t: usize, steps: usize, seed: u64) -> vi_infer::Result<Report> {
    let truth = Params::truth(k);
    let (_, ys) = simulate(&truth, t, seed);
    let start = initial(k, &ys);
    let dev = Device::Cpu;
    let dtype = DType::F32;
    let y = Tensor::new(ys.as_slice(), &dev)?.to_dtype(dtype)?;
    let opts = AdamOptions {
        lr: 0.05,
        ..Default::default()
    };
    let init = start.clone();
    let yy = y.clone();
    let mut svi = Svi::new(
        move |ctx: &mut Ctx| model(ctx, &yy, &init).map(|_| ()),
        |_: &mut Ctx| Ok(()),
        Adam::empty(opts.clone())?,
        TraceEnumElbo::new().max_plate_nesting(0),
    )
    .seed(seed);
    let init = start.clone();
    let yy = y.clone();
    let mut vectorized = Svi::new(
        move |ctx: &mut Ctx| model_vectorized(ctx, &yy, &init),
        |_: &mut Ctx| Ok(()),
        Adam::empty(opts.clone())?,
        TraceEnumElbo::new().max_plate_nesting(1),
    )
    .seed(seed);
    // The plain side: the same parameters, as free Vars in the same unconstrained spaces
    // (softmax rows for the transitions, log scale).
    let rows: Vec<f32> = start
        .trans
        .iter()
        .flatten()
        .map(|p| p.ln() as f32)
        .collect();
    let trans_logits = Var::from_tensor(&Tensor::from_vec(rows, (k, k), &dev)?)?;
    let locs = Var::from_tensor(&Tensor::new(start.locs.as_slice(), &dev)?.to_dtype(dtype)?)?;
    let log_scale = Var::from_tensor(&Tensor::new(start.scale.ln(), &dev)?.to_dtype(dtype)?)?;
    let first = Tensor::new(start.init.as_slice(), &dev)?.to_dtype(dtype)?;
    let vars = vec![
        ("trans".to_string(), trans_logits.clone()),
        ("locs".to_string(), locs.clone()),
        ("scale".to_string(), log_scale.clone()),
    ];
    let mut adam = Adam::new(vars, opts)?;
    let mut plain_step = || -> vi_infer::Result<()> {
        let trans =
            vi_infer::nn::ops::softmax(trans_logits.as_tensor(), vi_infer::candle::D::Minus1)?;
        let loss = crate::plain::neg_log_likelihood(
            &first,
            &trans,
            locs.as_tensor(),
            &log_scale.as_tensor().exp()?,
            &y,
        )?;
        let grads = loss.backward()?;
        adam.step(&grads)?;
        Ok(())
    };
    for _ in 0..2 {
        svi.step()?;
        vectorized.step()?;
        plain_step()?;
    }
    let mut a = Vec::with_capacity(steps);
    let mut v = Vec::with_capacity(steps);
    let mut b = Vec::with_capacity(steps);
    for _ in 0..steps {
        let c = Instant::now();
        svi.step()?;
        a.push(c.elapsed().as_secs_f64() * 1e3);
        let c = Instant::now();
        vectorized.step()?;
        v.push(c.elapsed().as_secs_f64() * 1e3);
        let c = Instant::now();
        plain_step()?;
        b.push(c.elapsed().as_secs_f64() * 1e3);
    }
    Ok(Report {
        k,
        t,
        svi_ms: median(a),
        vectorized_ms: median(v),
        plain_ms: median(b),
    })
}
