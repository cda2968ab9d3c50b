//! Enumeration (issue 20): `TraceEnumElbo` against brute-force sums over every joint
//! assignment (loss and gradients, in f64), ports of Pyro's `tests/infer/test_enum.py`,
//! `markov` against the forward algorithm, `infer_discrete` against Viterbi and exact
//! posteriors, and the typed errors.

mod brute;
mod discrete;
mod errors;
mod hmm;
mod pyro;
mod pyro_kl;
mod vectorized;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_infer::{Ctx, Elbo, ElboOutput, ParamStore};

use crate::common::Res;

/// The loss of an ELBO and its gradient w.r.t. every parameter's unconstrained storage, by
/// name, from a fresh f64 store (the generator seeded with `seed`), with the store for more
/// computations on the same parameters.
pub(crate) struct LossGrads {
    pub loss: f64,
    pub grads: BTreeMap<String, Vec<f64>>,
    pub store: ParamStore,
    pub out: ElboOutput,
}

pub(crate) fn loss_and_grads(
    elbo: &dyn Elbo,
    seed: u64,
    mut model: impl FnMut(&mut Ctx) -> vi_infer::Result<()>,
    mut guide: impl FnMut(&mut Ctx) -> vi_infer::Result<()>,
) -> Res<LossGrads> {
    let mut store = ParamStore::new(&Device::Cpu, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let out = elbo.compute(&mut model, &mut guide, &mut store, &mut rng)?;
    let grads = grads_of(&out.surrogate, &store)?;
    let loss = out.loss.to_scalar::<f64>()?;
    Ok(LossGrads {
        loss,
        grads,
        store,
        out,
    })
}

/// The gradient of the scalar `t` w.r.t. every parameter of `store` (zeros where it does not
/// reach), by name.
pub(crate) fn grads_of(t: &Tensor, store: &ParamStore) -> Res<BTreeMap<String, Vec<f64>>> {
    let g = t.backward()?;
    let mut out = BTreeMap::new();
    for name in store.param_names() {
        let var = store.unconstrained(&name).expect("a stored parameter");
        let v = match g.get(var.as_tensor()) {
            Some(t) => crate::common::host(t),
            None => vec![0.0; var.as_tensor().elem_count()],
        };
        out.insert(name, v);
    }
    Ok(out)
}

/// Asserts two gradients (by name) agree within `tol · (1 + |b|)`.
pub(crate) fn assert_grads(
    a: &BTreeMap<String, Vec<f64>>,
    b: &BTreeMap<String, Vec<f64>>,
    tol: f64,
    what: &str,
) {
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{what}: parameter names"
    );
    for (name, ga) in a {
        crate::common::assert_close_tol(ga, &b[name], tol, &format!("{what}: ∂/∂{name}"));
    }
}

/// `log Σ exp` of scalar tensors (the brute-force sums), with the max taken out.
pub(crate) fn logsumexp(terms: &[Tensor]) -> Res<Tensor> {
    let stacked = Tensor::stack(terms, 0)?;
    let m = stacked.max(0)?.detach();
    Ok((stacked.broadcast_sub(&m)?.exp()?.sum(0)?.log()? + m)?)
}

/// Every joint assignment of variables with `sizes` values each, the last varying fastest.
pub(crate) fn assignments(sizes: &[usize]) -> Vec<Vec<usize>> {
    let mut out = vec![vec![]];
    for &k in sizes {
        out = out
            .into_iter()
            .flat_map(|a| {
                (0..k).map(move |v| {
                    let mut b = a.clone();
                    b.push(v);
                    b
                })
            })
            .collect();
    }
    out
}

/// Element `i` of a vector tensor, as a scalar tensor (differentiable).
pub(crate) fn at(t: &Tensor, i: usize) -> Res<Tensor> {
    Ok(t.narrow(0, i, 1)?.squeeze(0)?)
}

/// Element `(i, j)` of a matrix tensor, as a scalar tensor.
pub(crate) fn at2(t: &Tensor, i: usize, j: usize) -> Res<Tensor> {
    at(&at(t, i)?, j)
}

/// `log N(x; loc, scale)` for scalar tensors `loc`, `scale` and a number `x`.
pub(crate) fn normal_lp(x: f64, loc: &Tensor, scale: &Tensor) -> Res<Tensor> {
    let z = ((loc.neg()? + x)? / scale)?;
    let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
    Ok(((z.sqr()? * -0.5)? - scale.log()?)?.affine(1.0, -half_log_2pi)?)
}

/// The constrained value of a stored parameter (differentiable in its storage).
pub(crate) fn param(store: &ParamStore, name: &str) -> Res<Tensor> {
    Ok(store.get(name)?.expect("a stored parameter"))
}
