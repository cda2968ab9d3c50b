//! A discrete hidden Markov model with Gaussian emissions (`K` states, `T` steps), written as
//! a vi-infer model: each state a Categorical site enumerated inside `ctx.markov`, each
//! observation a Normal site. `TraceEnumElbo` sums the states out exactly (the forward
//! algorithm, found by the contraction), so fitting the transition matrix and the emissions
//! by maximum likelihood is plain gradient descent on `−log p(y)`; `infer_discrete` decodes the
//! Viterbi path. Beside it: the same likelihood written directly in candle ([`plain`]), a
//! Viterbi decoder in plain Rust ([`viterbi`]), and the generator of the data ([`simulate`]).

pub mod bench;
pub mod plain;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vi_infer::candle::{DType, Device, Tensor};
use vi_infer::dist::{Categorical, Constraint, Normal};
use vi_infer::{Ctx, Result, vindex};

/// The parameters of an HMM: initial probabilities, transition matrix (row `i` the
/// distribution of the next state given state `i`), emission means and one emission scale.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// `p(x_0)`, `K` entries.
    pub init: Vec<f64>,
    /// `p(x_t = j | x_{t−1} = i)` at `[i][j]`.
    pub trans: Vec<Vec<f64>>,
    /// The emission mean of each state.
    pub locs: Vec<f64>,
    /// The emission scale (shared).
    pub scale: f64,
}

impl Params {
    /// The generating parameters of the example with `k` states: a sticky chain (0.8 on the
    /// diagonal, the rest spread unevenly), means `0, 2, 4, …`, scale 0.6.
    pub fn truth(k: usize) -> Self {
        let trans = (0..k)
            .map(|i| {
                if k == 1 {
                    return vec![1.0];
                }
                let off: Vec<f64> = (0..k)
                    .map(|j| {
                        if j == i {
                            0.0
                        } else {
                            1.0 + ((i + 2 * j) % 3) as f64
                        }
                    })
                    .collect();
                let total: f64 = off.iter().sum();
                (0..k)
                    .map(|j| if j == i { 0.8 } else { 0.2 * off[j] / total })
                    .collect()
            })
            .collect();
        Self {
            init: vec![1.0 / k as f64; k],
            trans,
            locs: (0..k).map(|j| 2.0 * j as f64).collect(),
            scale: 0.6,
        }
    }

    /// The number of states.
    pub fn k(&self) -> usize {
        self.init.len()
    }
}

/// A draw of `t` steps from `params`: the states and the observations.
pub fn simulate(params: &Params, t: usize, seed: u64) -> (Vec<usize>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let draw = |p: &[f64], rng: &mut ChaCha8Rng| {
        let u: f64 = rng.random();
        let mut acc = 0.0;
        for (j, pj) in p.iter().enumerate() {
            acc += pj;
            if u < acc {
                return j;
            }
        }
        p.len() - 1
    };
    let mut states = Vec::with_capacity(t);
    let mut ys = Vec::with_capacity(t);
    let mut x = draw(&params.init, &mut rng);
    for step in 0..t {
        if step > 0 {
            x = draw(&params.trans[x], &mut rng);
        }
        let z: f64 = rand_distr_normal(&mut rng);
        states.push(x);
        ys.push(params.locs[x] + params.scale * z);
    }
    (states, ys)
}

/// A standard normal draw (Box–Muller), to keep the example's dependencies to vi-infer and
/// rand.
fn rand_distr_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// The starting point of a fit: uniform rows with a little stickiness, means spread over the
/// data's range, the data's sd as scale (what a user would pick without knowing the truth).
pub fn initial(k: usize, ys: &[f64]) -> Params {
    let lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = ys.iter().sum::<f64>() / ys.len() as f64;
    let sd = (ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / ys.len() as f64).sqrt();
    let stay = if k == 1 { 1.0 } else { 0.5 };
    let trans = (0..k)
        .map(|i| {
            (0..k)
                .map(|j| {
                    if i == j {
                        stay
                    } else {
                        (1.0 - stay) / (k - 1) as f64
                    }
                })
                .collect()
        })
        .collect();
    Params {
        init: vec![1.0 / k as f64; k],
        trans,
        locs: (0..k)
            .map(|j| lo + (hi - lo) * (j as f64 + 0.5) / k as f64)
            .collect(),
        scale: sd / k as f64,
    }
}

/// The learnable parameters of the model (`trans` on the simplex row by row, `locs`, `scale`
/// positive), created from `init` the first time.
pub fn params(ctx: &mut Ctx, init: &Params, dev: &Device, dtype: DType) -> Result<[Tensor; 3]> {
    let k = init.k();
    let trans = ctx.param_with(
        "trans",
        || {
            let rows: Vec<f64> = init.trans.iter().flatten().copied().collect();
            Tensor::from_vec(rows, (k, k), dev)?.to_dtype(dtype)
        },
        Constraint::Simplex,
    )?;
    let locs = ctx.param_with(
        "locs",
        || Tensor::new(init.locs.as_slice(), dev)?.to_dtype(dtype),
        Constraint::Real,
    )?;
    let scale = ctx.param_with(
        "scale",
        || Tensor::new(init.scale, dev)?.to_dtype(dtype),
        Constraint::Positive,
    )?;
    Ok([trans, locs, scale])
}

/// The HMM as a vi-infer model over the observations `ys` (a vector of `T`): `x_0` uniform,
/// `x_t ~ Categorical(trans[x_{t−1}])`, `y_t ~ Normal(locs[x_t], scale)`, each state enumerated
/// inside `markov` (so the chain uses two enumeration dims). Returns the states.
pub fn model(ctx: &mut Ctx, ys: &Tensor, init: &Params) -> Result<Vec<Tensor>> {
    let (dev, dtype) = (ys.device().clone(), ys.dtype());
    let [trans, locs, scale] = params(ctx, init, &dev, dtype)?;
    let first = Tensor::new(init.init.as_slice(), &dev)?.to_dtype(dtype)?;
    let steps = ys.dims()[0];
    let mut x: Option<Tensor> = None;
    ctx.markov(0..steps, |ctx, t| {
        let probs = match &x {
            None => first.clone(),
            Some(prev) => vindex(&trans, &[prev])?,
        };
        let state = ctx.sample_enum(&format!("x_{t}"), Categorical::from_probs(&probs)?)?;
        let emission = Normal::new(&vindex(&locs, &[&state])?, &scale)?;
        ctx.observe(
            &format!("y_{t}"),
            emission,
            &ys.narrow(0, t, 1)?.squeeze(0)?,
        )?;
        x = Some(state.clone());
        Ok(state)
    })
}

/// The same HMM with `ctx.vectorized_markov`: the first step, then the other `T − 1` at once
/// in a plate `time` (the chain contracted by a parallel scan). Needs `max_plate_nesting(1)`;
/// `infer_discrete` does not decode it (use [`model`]).
pub fn model_vectorized(ctx: &mut Ctx, ys: &Tensor, init: &Params) -> Result<()> {
    let (dev, dtype) = (ys.device().clone(), ys.dtype());
    let [trans, locs, scale] = params(ctx, init, &dev, dtype)?;
    let first = Tensor::new(init.init.as_slice(), &dev)?.to_dtype(dtype)?;
    ctx.vectorized_markov("time", ys.dims()[0], |ctx, prev: Option<&Tensor>, steps| {
        let probs = match prev {
            None => first.clone(),
            Some(x) => vindex(&trans, &[x])?,
        };
        let x = ctx.sample_enum("x", Categorical::from_probs(&probs)?)?;
        let emission = Normal::new(&vindex(&locs, &[&x])?, &scale)?;
        ctx.observe("y", emission, &ys.index_select(steps, 0)?)?;
        Ok(x)
    })?;
    Ok(())
}

/// The Viterbi path of `ys` under `params`, by dynamic programming in plain f64.
pub fn viterbi(params: &Params, ys: &[f64]) -> Vec<usize> {
    let k = params.k();
    let lnorm = |y: f64, m: f64| {
        let z = (y - m) / params.scale;
        -0.5 * z * z - params.scale.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
    };
    let mut score: Vec<f64> = (0..k)
        .map(|j| params.init[j].ln() + lnorm(ys[0], params.locs[j]))
        .collect();
    let mut back: Vec<Vec<usize>> = Vec::with_capacity(ys.len());
    for &y in &ys[1..] {
        let mut next = vec![0.0; k];
        let mut from = vec![0; k];
        for j in 0..k {
            let (i, s) = (0..k)
                .map(|i| (i, score[i] + params.trans[i][j].ln()))
                .fold((0, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
            next[j] = s + lnorm(y, params.locs[j]);
            from[j] = i;
        }
        score = next;
        back.push(from);
    }
    let mut j = (0..k).fold(0, |a, b| if score[b] > score[a] { b } else { a });
    let mut path = vec![j];
    for from in back.iter().rev() {
        j = from[j];
        path.push(j);
    }
    path.reverse();
    path
}

/// The fitted parameters read back from a store.
pub fn read_params(store: &vi_infer::ParamStore, init: &Params) -> Result<Params> {
    let get = |name: &str| -> Result<Vec<f64>> {
        let t = store.get(name)?.ok_or_else(|| {
            vi_infer::InferError::Invalid(format!("no parameter `{name}` in the store"))
        })?;
        Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
    };
    let k = init.k();
    let trans = get("trans")?;
    Ok(Params {
        init: init.init.clone(),
        trans: trans.chunks(k).map(|r| r.to_vec()).collect(),
        locs: get("locs")?,
        scale: get("scale")?[0],
    })
}
