//! `vectorized_markov`: the steps of a chain after the first written once, in a plate over
//! time, and their contraction by a parallel scan (Pyro's `vectorized_markov`, with
//! `sequential_sum_product` in its contraction).

use std::collections::HashMap;

use candle_core::{D, DType, Tensor};

use super::contract::{Contraction, Factor, Ordinal, Sym};
use crate::error::{InferError, Result};
use crate::message::{Message, SiteKind};
use crate::messenger::Messenger;

/// Renames the sites of one call of the body of `vectorized_markov` (`x` becomes `x[0]` at
/// the first step, `x[1..T]` in the plate of the others), records the variables enumerated at
/// the first step by site, and tells each site of the vectorized steps its plate and the
/// variable of the same site at the step before.
#[derive(Debug, Default)]
pub(crate) struct StepNames {
    suffix: String,
    /// In the vectorized steps: the plate.
    plate: Option<String>,
    /// The variables enumerated at the first step, by site name (without the suffix).
    pub(crate) firsts: HashMap<String, usize>,
}

impl StepNames {
    /// The first step.
    pub(crate) fn first() -> Self {
        Self {
            suffix: "[0]".into(),
            ..Self::default()
        }
    }

    /// The vectorized steps `1..size`, in `plate`, after a first step that enumerated
    /// `firsts`.
    pub(crate) fn rest(plate: &str, size: usize, firsts: HashMap<String, usize>) -> Self {
        Self {
            suffix: format!("[1..{size}]"),
            plate: Some(plate.to_string()),
            firsts,
        }
    }
}

impl Messenger for StepNames {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if !matches!(msg.kind, SiteKind::Sample | SiteKind::Deterministic) {
            return Ok(());
        }
        let base = std::mem::take(&mut msg.name);
        if let Some(plate) = &self.plate
            && msg.kind == SiteKind::Sample
        {
            msg.infer.chain = Some((plate.clone(), self.firsts.get(&base).copied()));
        }
        msg.name = format!("{base}{}", self.suffix);
        Ok(())
    }

    fn postprocess(&mut self, msg: &Message) -> Result<()> {
        if self.plate.is_none()
            && msg.kind == SiteKind::Sample
            && let Some(id) = msg.infer.enum_id()
            && let Some(base) = msg.name.strip_suffix(&self.suffix)
        {
            self.firsts.insert(base.to_string(), id);
        }
        Ok(())
    }
}

/// One chain: the plate of its vectorized steps and its states, each as (the variable at the
/// step before, the variable at the step).
#[derive(Debug, Default)]
pub(crate) struct Chain {
    pub plate: usize,
    pub pairs: Vec<(usize, usize)>,
}

/// `log Σ_j exp(a[.., i, j] + b[.., j, k])`: the product of two transition matrices in log
/// space, batched, as a matrix product of `exp(a − max_j a)` and `exp(b − max_j b)` (the
/// maxima of each row of `a` and each column of `b` taken out, detached, and added back; a
/// row or column that is `−∞` throughout stays `−∞`).
fn logmatmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let lowest = match a.dtype() {
        DType::F64 => f64::MIN,
        DType::F32 => f32::MIN as f64,
        _ => -65504.0,
    };
    let ma = a.max_keepdim(D::Minus1)?.detach().clamp(lowest, -lowest)?;
    let mb = b.max_keepdim(D::Minus2)?.detach().clamp(lowest, -lowest)?;
    let pa = a.broadcast_sub(&ma)?.exp()?.contiguous()?;
    let pb = b.broadcast_sub(&mb)?.exp()?.contiguous()?;
    Ok(pa
        .matmul(&pb)?
        .log()?
        .broadcast_add(&ma)?
        .broadcast_add(&mb)?)
}

/// The product over the time axis `ta` of a batch of log transition matrices
/// `[.., T, S, S]`, in time order, by pairs (a parallel scan: `log2 T` rounds of batched
/// products): `[.., S, S]`.
fn chain_product(mut f: Tensor, ta: usize) -> Result<Tensor> {
    loop {
        let t = f.dims()[ta];
        if t == 1 {
            return Ok(f.squeeze(ta)?);
        }
        let half = t / 2;
        let even = f.narrow(ta, 0, 2 * half)?.contiguous()?;
        let mut shape = even.dims().to_vec();
        shape[ta] = half;
        shape.insert(ta + 1, 2);
        let pairs = even.reshape(shape)?;
        let a = pairs.narrow(ta + 1, 0, 1)?.squeeze(ta + 1)?;
        let b = pairs.narrow(ta + 1, 1, 1)?.squeeze(ta + 1)?;
        let prod = logmatmul(&a, &b)?;
        f = if t % 2 == 1 {
            Tensor::cat(&[&prod, &f.narrow(ta, t - 1, 1)?], ta)?
        } else {
            prod
        };
    }
}

impl Contraction<'_> {
    /// Replaces the factors in each chain's plate by the product over its steps: one factor
    /// over (the states at the first step's variables, the states at the last step), the
    /// plate gone. Every factor in the plate must depend on the chain's states alone.
    /// `members` follows the factors (which terms each holds).
    pub(crate) fn contract_chains(
        &mut self,
        factors: &mut Vec<(Ordinal, Factor)>,
        members: &mut Vec<Vec<usize>>,
        chains: &[Chain],
        names: &dyn Fn(&[usize]) -> Vec<String>,
    ) -> Result<()> {
        // The size of every variable, from the factors that hold it.
        let mut sizes: HashMap<Sym, usize> = HashMap::new();
        for (_, f) in factors.iter() {
            for (s, &n) in f.syms.iter().zip(f.t.dims()) {
                sizes.insert(*s, n);
            }
        }
        for chain in chains {
            let tau: Ordinal = 1 << chain.plate;
            let plate_name = self.plates.frame(chain.plate).name.clone();
            let in_plate: Vec<usize> = (0..factors.len())
                .filter(|&i| factors[i].0 & tau != 0)
                .collect();
            if in_plate.is_empty() {
                continue;
            }
            let state = |v: usize| chain.pairs.iter().any(|(p, c)| *p == v || *c == v);
            let Some(&(_, first_curr)) = chain.pairs.first() else {
                let sites = names(&members[in_plate[0]]);
                return Err(InferError::Enumeration {
                    sites,
                    msg: format!(
                        "it depends on a variable enumerated in the model inside the vectorized \
                         markov plate `{plate_name}`, whose state is not enumerated at the first \
                         step: enumerate each state at the first step too"
                    ),
                });
            };
            let base = self.homes.get(&first_curr).copied().unwrap_or(tau);
            let mut parts = Vec::with_capacity(in_plate.len());
            let mut held = Vec::new();
            for &i in &in_plate {
                let (o, f) = &factors[i];
                if let Some(v) = f.vars().find(|v| !state(*v)) {
                    let mut sites = names(&members[i]);
                    sites.push(self.names.get(&v).cloned().unwrap_or_default());
                    return Err(InferError::Enumeration {
                        sites,
                        msg: format!(
                            "inside the vectorized markov plate `{plate_name}` the first depends \
                             on the last, which is not a state of the chain: the steps may \
                             depend only on the states (write the chain with `ctx.markov` \
                             instead)"
                        ),
                    });
                }
                if o & base != base {
                    return Err(InferError::Enumeration {
                        sites: names(&members[i]),
                        msg: format!(
                            "it lies in the vectorized markov plate `{plate_name}` but outside \
                             plates its states are in"
                        ),
                    });
                }
                parts.push(self.plate_product_of(f.clone(), o & !base)?);
                held.extend(members[i].iter().copied());
            }
            let f = self.product(parts)?;
            // The layout [batch plates.., T, prevs.., currs..], each dim at its full size.
            let batch: Vec<Sym> = (0..Ordinal::BITS as usize)
                .filter(|p| base & !tau & (1 << p) != 0)
                .map(Sym::Plate)
                .collect();
            let prevs: Vec<Sym> = chain.pairs.iter().map(|(p, _)| Sym::Var(*p)).collect();
            let currs: Vec<Sym> = chain.pairs.iter().map(|(_, c)| Sym::Var(*c)).collect();
            let layout: Vec<Sym> = batch
                .iter()
                .copied()
                .chain([Sym::Plate(chain.plate)])
                .chain(prevs.iter().copied())
                .chain(currs.iter().copied())
                .collect();
            let mut sorted = layout.clone();
            sorted.sort();
            self.check_rank(
                &sorted,
                "the product over the steps of a vectorized markov chain lays out one factor",
            )?;
            let size = |s: &Sym| -> Result<usize> {
                match s {
                    Sym::Plate(p) => Ok(self.plates.size(*p)),
                    Sym::Var(_) => sizes
                        .get(s)
                        .copied()
                        .ok_or_else(|| InferError::Invalid("a chain state of unknown size".into())),
                }
            };
            let full: Vec<usize> = sorted.iter().map(size).collect::<Result<_>>()?;
            let t = f.align(&sorted)?.broadcast_as(full.as_slice())?;
            let perm: Vec<usize> = layout
                .iter()
                .map(|s| sorted.iter().position(|x| x == s).unwrap_or(0))
                .collect();
            let t = t.permute(perm)?.contiguous()?;
            let nb = batch.len();
            let state_size =
                |ss: &[Sym]| -> Result<usize> { ss.iter().map(size).product::<Result<usize>>() };
            let (p, c) = (state_size(&prevs)?, state_size(&currs)?);
            if p != c {
                return Err(InferError::Enumeration {
                    sites: held.iter().flat_map(|&i| names(&[i])).collect(),
                    msg: format!(
                        "the states of the vectorized markov plate `{plate_name}` have {p} joint \
                         values at the first step and {c} after it"
                    ),
                });
            }
            let mut shape: Vec<usize> = t.dims()[..=nb].to_vec();
            shape.extend([p, c]);
            let g = chain_product(t.reshape(shape)?, nb)?;
            // Back to one dim per variable, sorted.
            let mut out_layout: Vec<Sym> = batch.clone();
            out_layout.extend(prevs.iter().copied());
            out_layout.extend(currs.iter().copied());
            let out_shape: Vec<usize> = out_layout.iter().map(size).collect::<Result<_>>()?;
            let g = g.reshape(out_shape)?;
            let mut out_sorted = out_layout.clone();
            out_sorted.sort();
            let perm: Vec<usize> = out_sorted
                .iter()
                .map(|s| out_layout.iter().position(|x| x == s).unwrap_or(0))
                .collect();
            let g = g.permute(perm)?;
            let ordinal = base & !tau;
            for (_, curr) in &chain.pairs {
                self.homes.insert(*curr, ordinal);
            }
            for &i in in_plate.iter().rev() {
                factors.remove(i);
                members.remove(i);
            }
            factors.push((
                ordinal,
                Factor {
                    t: g,
                    syms: out_sorted,
                },
            ));
            held.sort_unstable();
            members.push(held);
        }
        Ok(())
    }
}
