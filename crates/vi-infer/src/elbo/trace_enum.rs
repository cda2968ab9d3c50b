//! `TraceEnumElbo`: the ELBO with the enumerated discrete sites summed out exactly.

use std::collections::{BTreeSet, HashMap};

use candle_core::Tensor;
use rand::RngCore;

use super::particles::{Estimate, Particles, Run, particle_elbo, zero_loss};
use super::{Program, SiteTerm, TermKind};
use crate::checks;
use crate::ctx::Ctx;
use crate::enumerate::contract::{
    Contraction, Factor, Ordinal, Plates, Semiring, Sym, pack, total, unpack,
};
use crate::enumerate::vectorized::Chain;
use crate::enumerate::{EnumMessenger, apply_mask};
use crate::error::{InferError, Result};
use crate::message::SiteKind;
use crate::param_store::ParamStore;
use crate::trace::Site;

/// The ELBO with discrete sites summed out instead of sampled (Pyro's `TraceEnum_ELBO`): the
/// sites marked for enumeration ([`Ctx::sample_enum`], [`config_enumerate`](crate::config_enumerate))
/// take every value of their finite support along a dim of their own, left of the plates.
///
/// - **In the model** (marked there, not sampled by the guide): the factors that depend on
///   them are contracted, `log Σ_z Π p`, by variable elimination that respects plates (a
///   variable is summed inside the plates that hold all its factors, then those plates are
///   multiplied out; Pyro's `contract_tensor_tree`). Inside [`Ctx::markov`] a chain of `T`
///   steps of `K` values costs `O(T·K²)`.
/// - **In the guide** (marked there): every cost is weighted by the guide's probabilities of
///   the values it depends on, an exact expectation (Pyro's Dice with enumerated sites).
///
/// Sites neither enumerated nor reparameterised get Dice's score-function terms (each cost
/// weighted by the guide sites in its plates or outside them); reparameterised sites are
/// differentiated pathwise. `num_particles` and `vectorize_particles` apply to the sampled
/// sites. The model's factors that depend on a variable enumerated in the model must share
/// one scalar scale (as Pyro).
///
/// Each site's [`SiteTerm`]: a model site that depends on no model-enumerated variable has
/// its usual term (expected over the guide's enumerated values); each contracted group of
/// model sites gives one [`TermKind::Marginalized`] term named `a+b+…`, the log of its sum; a
/// guide site whose model density went into such a group has a `KlMonteCarlo` term holding
/// only `E[log q]`.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use vi_dist::{Categorical, Constraint, Normal};
/// use vi_infer::{Ctx, Elbo, ParamStore, TraceEnumElbo};
/// # use rand::SeedableRng;
/// let dev = Device::Cpu;
/// let data = Tensor::new(&[-1.2f64, 0.9, 1.1], &dev)?;
/// let mut model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
///     let weights = ctx.param("weights", &Tensor::new(&[0.5f64, 0.5], &dev)?, Constraint::Simplex)?;
///     let locs = Tensor::new(&[-1.0f64, 1.0], &dev)?;
///     ctx.plate("data", 3, |ctx| {
///         let z = ctx.sample_enum("z", Categorical::from_probs(&weights)?)?;
///         let loc = vi_infer::vindex(&locs, &[&z])?;
///         ctx.observe("x", Normal::new(&loc, &Tensor::new(0.5f64, &dev)?)?, &data)?;
///         Ok(())
///     })
/// };
/// let mut guide = |_: &mut Ctx| -> vi_infer::Result<()> { Ok(()) };
/// let mut store = ParamStore::new(&dev, DType::F64);
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let elbo = TraceEnumElbo::new().max_plate_nesting(1);
/// let out = elbo.compute(&mut model, &mut guide, &mut store, &mut rng)?;
/// // −Σ_n log Σ_k w_k N(x_n; μ_k, 0.5²)
/// let lp = |x: f64, m: f64| -0.5 * ((x - m) / 0.5f64).powi(2) - 0.5f64.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln();
/// let want: f64 = [-1.2, 0.9, 1.1].iter().map(|&x| -(0.5 * lp(x, -1.0).exp() + 0.5 * lp(x, 1.0).exp()).ln()).sum();
/// assert!((out.loss.to_scalar::<f64>()? - want).abs() < 1e-12);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct TraceEnumElbo {
    particles: Particles,
}

impl Default for TraceEnumElbo {
    fn default() -> Self {
        Self {
            particles: Particles {
                enumerate: true,
                ..Particles::default()
            },
        }
    }
}

particle_elbo!(TraceEnumElbo, estimate);

/// The particles of an enumerating ELBO: `num` runs, or one with a particle plate, the
/// enumeration dims left of every plate (the particle plate included).
pub(crate) fn runs(
    p: &Particles,
    model: &mut Program<'_>,
    guide: &mut Program<'_>,
    store: &mut ParamStore,
    rng: &mut dyn RngCore,
) -> Result<(Vec<Run>, usize)> {
    if p.num == 0 {
        return Err(InferError::Invalid(
            "num_particles must be at least 1".into(),
        ));
    }
    let nesting = p.nesting(model, guide, store)?;
    if !p.vectorize || p.num == 1 {
        let mut runs = Vec::with_capacity(p.num);
        for _ in 0..p.num {
            runs.push(run(model, guide, store, rng, None, nesting)?);
        }
        return Ok((runs, 1));
    }
    let dim = -(nesting as isize) - 1;
    let one = run(model, guide, store, rng, Some((p.num, dim)), nesting)?;
    Ok((vec![one], p.num))
}

/// One run with enumeration: the guide under an [`EnumMessenger`] whose dims start left of
/// the plates, then the model replaying the guide under the same allocator (its dims go
/// further left), and the checks of `particles::run`.
fn run(
    model: &mut Program<'_>,
    guide: &mut Program<'_>,
    store: &mut ParamStore,
    rng: &mut dyn RngCore,
    particles: Option<(usize, isize)>,
    nesting: usize,
) -> Result<Run> {
    let plates = match particles {
        Some((_, dim)) => dim.unsigned_abs(),
        None => nesting,
    };
    let first = -(plates as isize) - 1;
    let mut ctx = Ctx::new(store, rng);
    let in_particles = |ctx: &mut Ctx<'_>, f: &mut Program<'_>| -> Result<()> {
        match particles {
            Some((n, dim)) => ctx.plate_dim(super::PARTICLE_PLATE, n, dim, |ctx| f(ctx)),
            None => f(ctx),
        }
    };
    let (out, guide_trace) = ctx.trace_partial(|ctx| {
        ctx.with(EnumMessenger::new(first)?, |ctx| in_particles(ctx, guide))
    })?;
    let ((), allocator) = out.map_err(|e| e.in_program("guide", guide_trace.last_name()))?;
    let (out, model_trace) = ctx.trace_partial(|ctx| {
        ctx.with(allocator, |ctx| {
            ctx.replay_owned(guide_trace, |ctx| in_particles(ctx, model))
        })
    })?;
    let (((), guide_trace), _) = out.map_err(|e| e.in_program("model", model_trace.last_name()))?;
    let modules = ctx.modules().to_vec();
    checks::check_model_guide_match(&model_trace, &guide_trace, Some(plates))?;
    for s in model_trace.sites().chain(guide_trace.sites()) {
        checks::check_site_shape(s, Some(plates))?;
    }
    Ok(Run {
        guide: guide_trace,
        model: model_trace,
        modules,
    })
}

/// Which side a cost comes from.
#[derive(Clone, Debug)]
enum Side {
    /// A model site's `log p` (its index among the model's sample sites).
    Model(usize),
    /// A guide site's `−log q` (its index among the guide's sample sites).
    Guide(usize),
    /// A contracted group of model sites (their indices).
    Marginal(Vec<usize>),
}

/// A term of the ELBO before the expectation over the guide: a packed tensor in its plates.
struct Cost {
    side: Side,
    ordinal: Ordinal,
    f: Factor,
}

/// One run's −ELBO with the enumerated sites summed out, and each site's term.
fn estimate(run: &Run, store: &ParamStore) -> Result<Estimate> {
    let mut plates = Plates::default();
    let guide: Vec<&Site> = run
        .guide
        .sites()
        .filter(|s| s.kind == SiteKind::Sample)
        .collect();
    let model: Vec<&Site> = run
        .model
        .sites()
        .filter(|s| s.kind == SiteKind::Sample)
        .collect();
    let mut names = HashMap::new();
    let mut homes = HashMap::new();
    let mut kept = HashMap::new();
    let mut model_vars = BTreeSet::new();
    for g in &guide {
        if let Some(id) = g.infer.enum_id() {
            names.insert(id, g.name.clone());
            kept.insert(id, plates.ordinal(&g.plates)?);
        }
    }
    for m in &model {
        if let Some(id) = m.infer.enum_id()
            && !kept.contains_key(&id)
        {
            names.insert(id, m.name.clone());
            homes.insert(id, plates.ordinal(&m.plates)?);
            model_vars.insert(id);
        }
    }
    // The model's sites: costs, or factors to contract when they depend on a variable
    // enumerated in the model (masked, unscaled; the common scale goes on after).
    let mut costs: Vec<Cost> = Vec::new();
    let mut factors: Vec<(Ordinal, Factor)> = Vec::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    let mut scale: Option<(f64, usize)> = None;
    for (i, m) in model.iter().enumerate() {
        let ordinal = plates.ordinal(&m.plates)?;
        let raw = m.unscaled_log_prob()?;
        let f = pack(&raw, m, &mut plates)?;
        if f.vars().any(|v| model_vars.contains(&v)) {
            if m.scale_tensor.is_some() {
                return Err(InferError::Enumeration {
                    sites: vec![m.name.clone()],
                    msg: "it depends on a site enumerated in the model and has a tensor scale \
                          (`scale_by`): enumeration takes only a scalar scale"
                        .into(),
                });
            }
            match scale {
                None => scale = Some((m.scale, i)),
                Some((s, j)) if (s - m.scale).abs() > 1e-12 * s.abs().max(1.0) => {
                    return Err(InferError::Enumeration {
                        sites: vec![model[j].name.clone(), m.name.clone()],
                        msg: format!(
                            "they depend on sites enumerated in the model but have different \
                             scales ({s} and {}; subsampled plates or `scale`): the sum over \
                             the enumerated values needs one common scale",
                            m.scale
                        ),
                    });
                }
                Some(_) => {}
            }
            // The mask goes on the factors that depend on the enumerated sites, not on the
            // sites' own densities (which sum to one over their values, so a masked element
            // drops out), as Pyro.
            let own = m.infer.enum_id().is_some_and(|v| model_vars.contains(&v));
            let f = if m.mask.is_some() && !own {
                pack(&apply_mask(m, &raw)?, m, &mut plates)?
            } else {
                f
            };
            factors.push((ordinal, f));
            members.push(vec![i]);
        } else {
            let f = if m.mask.is_none() && m.scale == 1.0 && m.scale_tensor.is_none() {
                f
            } else {
                pack(&m.scale_and_mask(&raw)?, m, &mut plates)?
            };
            costs.push(Cost {
                side: Side::Model(i),
                ordinal,
                f,
            });
        }
    }
    // The guide's sites: costs −log q, and Dice factors (the log-probability of an enumerated
    // site, weighting what depends on it; `log q − stop_grad(log q)` for a site drawn without
    // rsample, whose gradient is the score function).
    let mut dice: Vec<(Ordinal, Factor)> = Vec::new();
    for (i, g) in guide.iter().enumerate() {
        let ordinal = plates.ordinal(&g.plates)?;
        let raw = g.unscaled_log_prob()?;
        let cost = pack(&g.scale_and_mask(&raw)?.neg()?, g, &mut plates)?;
        costs.push(Cost {
            side: Side::Guide(i),
            ordinal,
            f: cost,
        });
        if g.infer.enum_id().is_some() {
            dice.push((ordinal, pack(&raw, g, &mut plates)?));
        } else if g.dist.as_ref().is_some_and(|d| !d.has_rsample()) {
            let score = (&raw - raw.detach())?;
            dice.push((ordinal, pack(&score, g, &mut plates)?));
        }
    }
    let chains = chains(&model, &guide, &plates, &model_vars)?;
    let mut c = Contraction {
        semiring: Semiring::LogSum,
        plates: &plates,
        steps: None,
        kept,
        names,
        homes,
    };
    if !factors.is_empty() {
        if !chains.is_empty() {
            let names = |g: &[usize]| g.iter().map(|&i| model[i].name.clone()).collect();
            c.contract_chains(&mut factors, &mut members, &chains, &names)?;
        }
        let scale = scale.map_or(1.0, |(s, _)| s);
        for (ordinal, f, group) in c.contract_tree(factors, &model_vars)? {
            let f = if scale == 1.0 {
                f
            } else {
                Factor {
                    t: (f.t * scale)?,
                    syms: f.syms,
                }
            };
            costs.push(Cost {
                side: Side::Marginal({
                    let mut g: Vec<usize> = group
                        .iter()
                        .flat_map(|&k| members[k].iter().copied())
                        .collect();
                    g.sort_unstable();
                    g
                }),
                ordinal,
                f,
            });
        }
    }
    // The expectation of each cost under the guide.
    let mut elbo: Option<Tensor> = None;
    let mut expected: Vec<(Side, Factor, Tensor)> = Vec::with_capacity(costs.len());
    for cost in costs {
        let (e, t) = expectation(&mut c, &cost, &dice, &model, &guide)?;
        elbo = Some(match elbo {
            None => t.clone(),
            Some(acc) => (acc + &t)?,
        });
        expected.push((cost.side, e, t));
    }
    let loss = match elbo {
        Some(e) => e.neg()?,
        None => zero_loss(store)?,
    };
    let terms = site_terms(expected, &model, &guide, &plates)?;
    Ok(Estimate {
        surrogate: loss.clone(),
        loss,
        terms,
    })
}

/// The chains of `vectorized_markov` in the model: each vectorized plate with its states
/// (the variable at the first step, the variable of the steps after it). A state enumerated
/// in the guide there is not supported, nor a vectorized state enumerated only after the first
/// step.
fn chains(
    model: &[&Site],
    guide: &[&Site],
    plates: &Plates,
    model_vars: &BTreeSet<usize>,
) -> Result<Vec<Chain>> {
    if let Some(g) = guide
        .iter()
        .find(|g| g.infer.chain.is_some() && g.infer.enum_id().is_some())
    {
        return Err(InferError::Enumeration {
            sites: vec![g.name.clone()],
            msg: "enumerated in the guide inside `vectorized_markov`: only model enumeration is \
                  supported there (write the guide's chain with `ctx.markov`)"
                .into(),
        });
    }
    let mut chains: Vec<Chain> = Vec::new();
    for m in model {
        let Some((plate, prev)) = &m.infer.chain else {
            continue;
        };
        let Some(p) = plates.find(plate) else {
            continue;
        };
        let at = match chains.iter().position(|c| c.plate == p) {
            Some(i) => i,
            None => {
                chains.push(Chain {
                    plate: p,
                    pairs: Vec::new(),
                });
                chains.len() - 1
            }
        };
        let Some(curr) = m.infer.enum_id().filter(|v| model_vars.contains(v)) else {
            continue;
        };
        match prev {
            Some(prev) if model_vars.contains(prev) => chains[at].pairs.push((*prev, curr)),
            _ => {
                return Err(InferError::Enumeration {
                    sites: vec![m.name.clone()],
                    msg: format!(
                        "enumerated in the vectorized steps of `{plate}` but not (in the model) \
                         at the first step: enumerate the state at every step"
                    ),
                });
            }
        }
    }
    Ok(chains)
}

/// The expectation of `cost` under the guide's enumerated and Dice factors in its plates or
/// outside them: the cost over its plates (variables summed out) and its total.
fn expectation(
    c: &mut Contraction<'_>,
    cost: &Cost,
    dice: &[(Ordinal, Factor)],
    model: &[&Site],
    guide: &[&Site],
) -> Result<(Factor, Tensor)> {
    let name = |side: &Side| match side {
        Side::Model(i) => vec![model[*i].name.clone()],
        Side::Guide(i) => vec![guide[*i].name.clone()],
        Side::Marginal(g) => g.iter().map(|&i| model[i].name.clone()).collect(),
    };
    for v in cost.f.vars() {
        let inside = c.kept.get(&v).is_some_and(|o| o & !cost.ordinal == 0);
        if !inside {
            let mut sites = name(&cost.side);
            sites.push(c.names.get(&v).cloned().unwrap_or_default());
            return Err(InferError::Enumeration {
                sites,
                msg: format!(
                    "the first depends on the last (enumerated in the guide) outside its plates \
                     ({}): a site that depends on a variable of a plate must be in that plate too",
                    c.plates
                        .names(c.kept.get(&v).copied().unwrap_or(0))
                        .join(", ")
                ),
            });
        }
    }
    let upstream: Vec<Factor> = dice
        .iter()
        .filter(|(o, _)| o & !cost.ordinal == 0)
        .map(|(_, f)| f.clone())
        .collect();
    if upstream.is_empty() {
        let t = total(&cost.f, cost.ordinal, c.plates)?;
        return Ok((cost.f.clone(), t));
    }
    // The guide's marginal over the cost's variables (plates are batch dims here).
    let keep: BTreeSet<Sym> = cost.f.syms.iter().copied().collect();
    let elim: BTreeSet<usize> = upstream
        .iter()
        .flat_map(|f| f.vars())
        .filter(|v| !keep.contains(&Sym::Var(*v)))
        .collect();
    let p = c.sumproduct(upstream, &elim)?;
    let joint = c.product(vec![
        p.clone(),
        Factor {
            t: cost.f.t.zeros_like()?,
            syms: cost.f.syms.clone(),
        },
    ])?;
    let syms = joint.syms.clone();
    let prob = p.align(&syms)?.exp()?;
    let value = cost.f.align(&syms)?;
    // A value the guide never takes adds nothing (even where its cost is infinite).
    let value = if p.vars().next().is_some() {
        let full = joint.t.dims().to_vec();
        let seen = prob.broadcast_as(full.as_slice())?.gt(0.0)?;
        let v = value.broadcast_as(full.as_slice())?;
        seen.where_cond(&v, &v.zeros_like()?)?
    } else {
        value
    };
    let mut t = prob.broadcast_mul(&value)?;
    let mut out = syms.clone();
    for k in (0..syms.len()).rev() {
        if matches!(syms[k], Sym::Var(_)) {
            t = t.sum(k)?;
            out.remove(k);
        }
    }
    let e = Factor { t, syms: out };
    let t = total(&e, cost.ordinal, c.plates)?;
    Ok((e, t))
}

/// Each site's term, in the model's order (see [`TraceEnumElbo`]).
fn site_terms(
    expected: Vec<(Side, Factor, Tensor)>,
    model: &[&Site],
    guide: &[&Site],
    plates: &Plates,
) -> Result<Vec<SiteTerm>> {
    let mut model_terms: HashMap<usize, (Tensor, Tensor)> = HashMap::new();
    let mut guide_terms: HashMap<&str, (Tensor, Tensor)> = HashMap::new();
    let mut marginal: Vec<(Vec<usize>, Tensor, Tensor)> = Vec::new();
    for (side, e, t) in expected {
        let value = unpack(&e, plates)?;
        match side {
            Side::Model(i) => {
                model_terms.insert(i, (value, t));
            }
            // E[log q]: the negated cost.
            Side::Guide(i) => {
                guide_terms.insert(guide[i].name.as_str(), (value.neg()?, t.neg()?));
            }
            Side::Marginal(g) => marginal.push((g, value, t)),
        }
    }
    let mut terms = Vec::new();
    for (i, m) in model.iter().enumerate() {
        if let Some((g, value, sum)) = marginal.iter().find(|(g, ..)| g.first() == Some(&i)) {
            let name = g
                .iter()
                .map(|&k| model[k].name.as_str())
                .collect::<Vec<_>>()
                .join("+");
            terms.push(SiteTerm {
                name,
                kind: TermKind::Marginalized,
                value: value.clone(),
                sum: sum.clone(),
            });
        }
        let q = guide_terms.remove(m.name.as_str());
        match (model_terms.remove(&i), q) {
            (Some((value, sum)), None) => terms.push(SiteTerm {
                name: m.name.clone(),
                kind: TermKind::LogLikelihood,
                value,
                sum,
            }),
            (Some((lp, lp_sum)), Some((lq, lq_sum))) => terms.push(SiteTerm {
                name: m.name.clone(),
                kind: TermKind::KlMonteCarlo,
                value: lq.broadcast_sub(&lp)?,
                sum: (lq_sum - lp_sum)?,
            }),
            (None, Some((lq, lq_sum))) => terms.push(SiteTerm {
                name: m.name.clone(),
                kind: TermKind::KlMonteCarlo,
                value: lq,
                sum: lq_sum,
            }),
            (None, None) => {}
        }
    }
    Ok(terms)
}
