//! `infer_discrete`: the enumerated sites of a model at their joint MAP (Viterbi) or drawn from
//! their joint posterior given everything else, as Pyro's `infer_discrete`.

use std::collections::{BTreeSet, HashMap};

use candle_core::{DType, Tensor};
use rand::{Rng, RngCore};

use super::contract::{Contraction, Factor, LAST, Plates, Semiring, Sym, pack, unpack};
use super::messenger::EnumMessenger;
use crate::ctx::Ctx;
use crate::error::{InferError, Result};
use crate::handlers::{Block, ReplayMessenger};
use crate::message::SiteKind;
use crate::trace::{Site, Trace};

/// What [`InferDiscrete`] does with the posterior of the enumerated sites.
///
/// ```
/// assert_ne!(vi_infer::Temperature::Map, vi_infer::Temperature::Sample);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Temperature {
    /// Their joint most probable values (Viterbi; Pyro's `temperature=0`).
    Map,
    /// A draw from their joint posterior (forward filtering, backward sampling; Pyro's
    /// `temperature=1`).
    Sample,
}

/// Pyro's `infer_discrete`: the model run once with its marked discrete sites enumerated, the
/// sum-product (or max-product) pass over their factors, a backward pass that fixes each
/// site given those fixed after it, and the model run again with those values
/// ([`Ctx::infer_discrete`]). Latent sites that are not enumerated keep the values of the first
/// run, so replay or condition them (from a trained guide, say) to fix them.
///
/// ```
/// # use candle_core::{DType, Device, Tensor};
/// # use vi_dist::{Categorical, Normal};
/// # use vi_infer::{Ctx, ParamStore};
/// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
/// # let mut ctx = Ctx::new(&mut store, &mut rng);
/// use vi_infer::InferDiscrete;
/// let locs = Tensor::new(&[-2.0f64, 2.0], &dev)?;
/// let x = Tensor::new(&[-1.9f64, 2.2, 1.7], &dev)?;
/// let model = |ctx: &mut Ctx| {
///     ctx.plate("data", 3, |ctx| {
///         let z = ctx.sample_enum("z", Categorical::from_probs(&Tensor::new(&[0.5f64, 0.5], &dev)?)?)?;
///         let loc = vi_infer::vindex(&locs, &[&z])?;
///         ctx.observe("x", Normal::new(&loc, &Tensor::new(1.0f64, &dev)?)?, &x)?;
///         Ok(z)
///     })
/// };
/// let z = ctx.infer_discrete(&InferDiscrete::map().max_plate_nesting(1), model)?;
/// assert_eq!(z.to_vec1::<f64>()?, [0.0, 1.0, 1.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct InferDiscrete {
    temperature: Temperature,
    max_plate_nesting: Option<usize>,
}

impl InferDiscrete {
    /// The joint MAP of the enumerated sites (Viterbi).
    ///
    /// ```
    /// let how = vi_infer::InferDiscrete::map();
    /// ```
    pub fn map() -> Self {
        Self::new(Temperature::Map)
    }

    /// A draw from the joint posterior of the enumerated sites.
    ///
    /// ```
    /// let how = vi_infer::InferDiscrete::sample();
    /// ```
    pub fn sample() -> Self {
        Self::new(Temperature::Sample)
    }

    /// At `temperature`.
    ///
    /// ```
    /// let how = vi_infer::InferDiscrete::new(vi_infer::Temperature::Sample);
    /// ```
    pub fn new(temperature: Temperature) -> Self {
        Self {
            temperature,
            max_plate_nesting: None,
        }
    }

    /// The number of plate dims the model uses (enumeration goes left of them); found by one
    /// probing run of the model (seeded, hidden) when not given.
    ///
    /// ```
    /// let how = vi_infer::InferDiscrete::map().max_plate_nesting(2);
    /// ```
    pub fn max_plate_nesting(mut self, n: usize) -> Self {
        self.max_plate_nesting = Some(n);
        self
    }
}

impl Ctx<'_> {
    /// Runs `model` with its marked discrete sites fixed as `how` says (see
    /// [`InferDiscrete`]): their joint MAP, or a draw from their joint posterior given the
    /// observations and the other latent sites. The two runs before the last one are hidden
    /// from the handlers outside; the last one is seen as any run (trace it to read the
    /// values).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Bernoulli, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// use vi_infer::InferDiscrete;
    /// let y = Tensor::new(2.5f64, &dev)?;
    /// let (_, tr) = ctx.trace(|ctx| {
    ///     ctx.infer_discrete(&InferDiscrete::map(), |ctx| {
    ///         let z = ctx.sample_enum("z", Bernoulli::from_probs(&Tensor::new(0.3f64, &dev)?)?)?;
    ///         ctx.observe("y", Normal::new(&(&z * 3.0)?, &Tensor::new(1.0f64, &dev)?)?, &y)
    ///     })
    /// })?;
    /// assert_eq!(tr.get("z").unwrap().value.to_scalar::<f64>()?, 1.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn infer_discrete<T>(
        &mut self,
        how: &InferDiscrete,
        mut model: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let nesting = match how.max_plate_nesting {
            Some(n) => n,
            None => self.block(Block::All, |ctx| {
                ctx.seed(0, |ctx| {
                    let (out, tr) = ctx.trace_partial(|ctx| model(ctx))?;
                    out.map_err(|e| e.in_program("model", tr.last_name()))?;
                    Ok(plate_depth(&tr))
                })
            })?,
        };
        let first = -(nesting as isize) - 1;
        let trace = self.block(Block::All, |ctx| {
            let (out, tr) =
                ctx.trace_partial(|ctx| ctx.with(EnumMessenger::new(first)?, |ctx| model(ctx)))?;
            out.map_err(|e| e.in_program("model", tr.last_name()))?;
            Ok(tr)
        })?;
        for s in trace.sites() {
            crate::checks::check_site_shape(s, Some(nesting))?;
        }
        let values = posterior(&trace, how.temperature, self.rng())?;
        Ok(self.with(ReplayMessenger::from_values(values), model)?.0)
    }
}

/// The deepest plate dim of a trace's sites.
fn plate_depth(tr: &Trace) -> usize {
    tr.sites()
        .flat_map(|s| s.plates.iter().map(|p| p.dim.unsigned_abs()))
        .max()
        .unwrap_or(0)
}

/// A site's log-density, masked but not scaled (as Pyro's `masked_log_prob`).
fn masked_log_prob(site: &Site) -> Result<Tensor> {
    apply_mask(site, &site.unscaled_log_prob()?)
}

/// `lp` with the site's mask applied (0 where clear), not scaled.
pub(crate) fn apply_mask(site: &Site, lp: &Tensor) -> Result<Tensor> {
    let Some(mask) = &site.mask else {
        return Ok(lp.clone());
    };
    let shape = vi_dist::broadcast_shapes(&[lp.dims(), mask.dims()]).ok_or_else(|| {
        InferError::Invalid(format!(
            "site `{}`: mask of shape {:?} does not broadcast with {:?}",
            site.name,
            mask.dims(),
            lp.dims()
        ))
    })?;
    let lp = lp.broadcast_as(shape.as_slice())?;
    Ok(mask
        .broadcast_as(shape.as_slice())?
        .where_cond(&lp, &lp.zeros_like()?)?)
}

/// The values of the latent sites for the second run: each enumerated site's MAP or posterior
/// draw, the others as the enumerated run drew them.
fn posterior(
    trace: &Trace,
    temperature: Temperature,
    rng: &mut dyn RngCore,
) -> Result<HashMap<String, Tensor>> {
    let mut plates = Plates::default();
    let mut terms = Vec::new();
    let mut sum = BTreeSet::new();
    let mut names = HashMap::new();
    let mut homes = HashMap::new();
    let samples: Vec<&Site> = trace
        .sites()
        .filter(|s| s.kind == SiteKind::Sample)
        .collect();
    if let Some(s) = samples
        .iter()
        .find(|s| s.infer.chain.is_some() && s.infer.enum_id().is_some())
    {
        return Err(InferError::Enumeration {
            sites: vec![s.name.clone()],
            msg: "infer_discrete does not decode the states of `vectorized_markov`: write the \
                  chain with `ctx.markov`"
                .into(),
        });
    }
    for s in &samples {
        let o = plates.ordinal(&s.plates)?;
        if let Some(id) = s.infer.enum_id() {
            sum.insert(id);
            names.insert(id, s.name.clone());
            homes.insert(id, o);
        }
    }
    for s in &samples {
        let f = pack(&masked_log_prob(s)?, s, &mut plates)?;
        if f.vars().any(|v| sum.contains(&v)) {
            terms.push((plates.ordinal(&s.plates)?, f));
        }
    }
    let semiring = match temperature {
        Temperature::Map => Semiring::Max,
        Temperature::Sample => Semiring::LogSum,
    };
    let mut c = Contraction {
        semiring,
        plates: &plates,
        steps: Some(Vec::new()),
        kept: HashMap::new(),
        names,
        homes,
    };
    c.contract_tree(terms, &sum)?;
    let steps = c.steps.take().unwrap_or_default();
    let mut assigned: HashMap<usize, Factor> = HashMap::new();
    for step in steps.iter().rev() {
        let mut f = step.factor.clone();
        let others: Vec<usize> = f.vars().filter(|&u| u != step.var).collect();
        for u in others {
            let Some(a) = assigned.get(&u) else {
                return Err(InferError::Invalid(format!(
                    "infer_discrete: the value of `{}` is needed before it is fixed",
                    c.names.get(&u).cloned().unwrap_or_default()
                )));
            };
            f = gather(&f, u, a)?;
        }
        assigned.insert(step.var, choose(f, step.var, temperature, rng)?);
    }
    let mut values = HashMap::new();
    for s in samples.iter().filter(|s| s.is_latent()) {
        let value = match s.infer.enum_id() {
            Some(id) => {
                let Some(a) = assigned.get(&id) else {
                    return Err(InferError::Invalid(format!(
                        "infer_discrete: enumerated site `{}` was never summed out",
                        s.name
                    )));
                };
                support_at(s, &unpack(a, &plates)?)?
            }
            None => {
                let dims = s.value.dims();
                let batch = &dims[..dims
                    .len()
                    .saturating_sub(s.dist.as_ref().map_or(0, |d| d.event_shape().len()))];
                let carries = s.infer.dim_ids.iter().any(|(d, _)| {
                    batch
                        .len()
                        .checked_sub(d.unsigned_abs())
                        .is_some_and(|i| batch[i] > 1)
                });
                if carries {
                    return Err(InferError::Enumeration {
                        sites: vec![s.name.clone()],
                        msg: "infer_discrete: this latent site is drawn from a distribution that \
                              depends on enumerated sites; condition it, or replay it from a \
                              guide"
                            .into(),
                    });
                }
                s.value.clone()
            }
        };
        values.insert(s.name.clone(), value);
    }
    Ok(values)
}

/// `f` at `u = a` (an index tensor over plates): `u` gathered out.
fn gather(f: &Factor, u: usize, a: &Factor) -> Result<Factor> {
    let Some(k) = f.syms.iter().position(|s| *s == Sym::Var(u)) else {
        return Ok(f.clone());
    };
    let mut others = f.syms.clone();
    others.remove(k);
    if a.syms.iter().any(|s| !others.contains(s)) {
        return Err(InferError::Invalid(
            "infer_discrete: a value fixed over plates a later factor lacks".into(),
        ));
    }
    let mut shape = f.t.dims().to_vec();
    shape[k] = 1;
    let idx = a.align(&others)?.unsqueeze(k)?;
    let idx = idx.broadcast_as(shape)?.contiguous()?;
    let t = f.t.contiguous()?.gather(&idx, k)?.squeeze(k)?;
    Ok(Factor { t, syms: others })
}

/// The value of `var` in `f` (which holds only it and plates): the argmax, or a draw from the
/// normalised `exp(f)`, as u32 indices over the plates.
fn choose(
    f: Factor,
    var: usize,
    temperature: Temperature,
    rng: &mut dyn RngCore,
) -> Result<Factor> {
    let Some(k) = f.syms.iter().position(|s| *s == Sym::Var(var)) else {
        return Err(InferError::Invalid(
            "infer_discrete: a factor without its variable".into(),
        ));
    };
    let mut syms = f.syms.clone();
    syms.remove(k);
    let n = f.t.rank();
    let t = if k + 1 == n {
        f.t.clone()
    } else {
        let mut perm: Vec<usize> = (0..n).filter(|&i| i != k).collect();
        perm.push(k);
        f.t.permute(perm)?.contiguous()?
    };
    let idx = match temperature {
        Temperature::Map => t.argmax(LAST)?,
        Temperature::Sample => {
            let shape: Vec<usize> = t.dims()[..n - 1].to_vec();
            let size = t.dims()[n - 1];
            let rows = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
            let mut out = Vec::with_capacity(rows.len() / size.max(1));
            for row in rows.chunks(size.max(1)) {
                let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = row.iter().map(|x| (x - m).exp()).collect();
                let total: f64 = w.iter().sum();
                let mut u = rng.random::<f64>() * total;
                let mut pick = w.len() - 1;
                for (i, wi) in w.iter().enumerate() {
                    if u < *wi {
                        pick = i;
                        break;
                    }
                    u -= wi;
                }
                out.push(pick as u32);
            }
            Tensor::from_vec(out, shape, t.device())?
        }
    };
    Ok(Factor { t: idx, syms })
}

/// The enumerated site's support values at `idx` (u32, plate-shaped): `idx`'s shape plus the
/// event shape.
fn support_at(site: &Site, idx: &Tensor) -> Result<Tensor> {
    let Some(dist) = &site.dist else {
        return Err(InferError::Invalid(format!(
            "site `{}` has no distribution",
            site.name
        )));
    };
    let support = dist
        .enumerate_support(false)
        .map_err(|e| crate::error::at_site(&site.name, &site.plates, false, e))?;
    let n = support.dims().first().copied().unwrap_or(1);
    let event = dist.event_shape();
    let per: usize = event.iter().product();
    let flat = support.reshape((n, per))?;
    let picked = flat.index_select(&idx.flatten_all()?, 0)?;
    let shape: Vec<usize> = idx.dims().iter().chain(event).copied().collect();
    Ok(picked.reshape(shape)?)
}
