//! The Monte Carlo ELBO of one run and its score-function parts, shared by `TraceElbo` and
//! `TraceGraphElbo`: the loss and each site's term, and for every guide site without
//! `rsample` the cost its score multiplies, summed to the site's plates (Pyro's
//! `MultiFrameTensor.sum_to`). The two ELBOs differ only in which terms enter that cost
//! ([`Dependence`]).

use candle_core::Tensor;

use super::particles::{Run, accumulate, accumulate_signed, sum_all, zero_loss};
use super::{SiteTerm, TermKind};
use crate::error::{InferError, Result};
use crate::message::{PlateFrame, SequentialFrame, SiteKind};
use crate::param_store::ParamStore;
use crate::trace::Site;

/// Which cost terms a non-reparameterised guide site's score multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dependence {
    /// Every term of the run, summed to the site's plates (`TraceElbo`, Pyro's
    /// `Trace_ELBO`): only the plates separate terms.
    All,
    /// The terms that may depend on the site's draw, summed to its plates
    /// (`TraceGraphElbo`): the guide's sites from it on (a guide site can read only what
    /// was drawn before it), and the model's sites from the first one that sees a value
    /// among those (the model reads the guide's values as it replays them, in its own order),
    /// less those in other iterations of a sequential plate the site is in (Pyro's dense
    /// graph: no edge between sites whose sequential plate counters differ).
    Order,
}

/// One run's −ELBO, its site terms, and the score-function parts of its guide sites
/// without `rsample`.
pub(crate) struct ScoreRun<'r> {
    /// −ELBO: `−(Σ log p − Σ log q)`, the `log q` of a site without `rsample` detached
    /// (its gradient comes from its score term alone, as Pyro's score parts).
    pub loss: Tensor,
    /// Each model sample site's term, in the model's order, then the guide's auxiliary
    /// sites' `log q`.
    pub terms: Vec<SiteTerm>,
    /// For each guide site without `rsample`, in the guide's order.
    pub scored: Vec<Scored<'r>>,
}

/// A non-reparameterised guide site's score and the (detached) cost it multiplies, both at
/// `shape`.
pub(crate) struct Scored<'r> {
    /// The guide site.
    pub site: &'r Site,
    /// `log q(z)` of the draw, neither scaled nor masked (Pyro's `score_function`: the
    /// scale and mask weight the costs, not the score), at `shape`.
    pub score: Tensor,
    /// The cost: the `log p − log q` terms the site's draw may change, summed to its
    /// plates, detached, at `shape`.
    pub cost: Tensor,
    /// The shape both are broadcast to (the site's batch shape).
    pub shape: Vec<usize>,
}

/// The cost terms of one plate set: the model's `log p` and the guide's `−log q`, each
/// with the position of its site among its program's sample sites, and their sums from
/// each position to the end.
struct Group<'r> {
    plates: &'r [PlateFrame],
    sequential: &'r [SequentialFrame],
    model: Suffixes,
    guide: Suffixes,
}

/// A plate set's cost terms as they are collected: (position, detached term).
struct Building<'r> {
    plates: &'r [PlateFrame],
    sequential: &'r [SequentialFrame],
    model: Vec<(usize, Tensor)>,
    guide: Vec<(usize, Tensor)>,
}

impl<'r> Building<'r> {
    /// The index of the group of `plates`, added if new.
    fn index(groups: &mut Vec<Building<'r>>, site: &'r Site) -> usize {
        let (plates, sequential) = (site.plates.as_slice(), site.sequential.as_slice());
        if let Some(i) = groups
            .iter()
            .position(|g| same_plates(g.plates, plates) && g.sequential == sequential)
        {
            return i;
        }
        groups.push(Building {
            plates,
            sequential,
            model: Vec::new(),
            guide: Vec::new(),
        });
        groups.len() - 1
    }
}

/// Terms in program order and their suffix sums: `sums[i] = Σ_{j ≥ i} terms[j]`.
struct Suffixes {
    positions: Vec<usize>,
    sums: Vec<Tensor>,
}

impl Suffixes {
    /// Turns the terms (in order, with their positions) into their suffix sums: one
    /// addition per term.
    fn from_terms(terms: Vec<(usize, Tensor)>) -> Result<Self> {
        let positions = terms.iter().map(|(p, _)| *p).collect();
        let mut sums: Vec<Tensor> = Vec::with_capacity(terms.len());
        for (_, t) in terms.into_iter().rev() {
            let s = match sums.last() {
                Some(next) => t.broadcast_add(next)?,
                None => t,
            };
            sums.push(s);
        }
        sums.reverse();
        Ok(Self { positions, sums })
    }

    /// The sum of the terms at positions `from` and later (`None`: no such term).
    fn from(&self, from: usize) -> Option<&Tensor> {
        let i = self.positions.partition_point(|&p| p < from);
        self.sums.get(i)
    }
}

/// Whether two plate lists are the same plates (by name and dim).
fn same_plates(a: &[PlateFrame], b: &[PlateFrame]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.name == y.name && x.dim == y.dim)
}

/// The score function of a guide site: its `log q(z)` without the site's scale and mask
/// (the cached log-density itself when it has neither).
pub(crate) fn score_function(site: &Site) -> Result<Tensor> {
    if site.scale == 1.0 && site.mask.is_none() && site.scale_tensor.is_none() {
        Ok(site.log_prob()?.clone())
    } else {
        site.unscaled_log_prob()
    }
}

/// Whether the site is a sample site whose distribution has no `rsample`.
pub(crate) fn is_non_reparam(site: &Site) -> bool {
    site.kind == SiteKind::Sample && site.dist.as_ref().is_some_and(|d| !d.has_rsample())
}

/// The run's −ELBO and site terms, and, where the guide has sites without `rsample`, their
/// scores and costs under `dependence`.
pub(crate) fn score_run<'r>(
    run: &'r Run,
    store: &ParamStore,
    dependence: Dependence,
) -> Result<ScoreRun<'r>> {
    let needs_score = run.guide.sites().any(is_non_reparam);
    let mut groups: Vec<Building<'r>> = Vec::new();
    let mut terms = Vec::new();
    let mut elbo: Option<Tensor> = None;
    // The model's sample sites' positions by name (latent sites: the guide's values).
    let mut model_pos: Vec<(&'r str, usize)> = Vec::new();
    for (pos, m) in run
        .model
        .sites()
        .filter(|s| s.kind == SiteKind::Sample)
        .enumerate()
    {
        let lp = m.log_prob()?;
        if needs_score {
            let g = Building::index(&mut groups, m);
            groups[g].model.push((pos, lp.detach()));
            model_pos.push((m.name.as_str(), pos));
        }
        let lp_sum = sum_all(lp)?;
        elbo = accumulate(elbo, lp_sum.clone())?;
        let (kind, value, sum) = if m.is_observed {
            (TermKind::LogLikelihood, lp.clone(), lp_sum)
        } else {
            let Some(g) = run.guide.get(&m.name) else {
                return Err(InferError::LatentNotInGuide {
                    site: m.name.clone(),
                });
            };
            let value = g.log_prob()?.broadcast_sub(lp)?;
            let sum = sum_all(&value)?;
            (TermKind::KlMonteCarlo, value, sum)
        };
        terms.push(SiteTerm {
            name: m.name.clone(),
            kind,
            value,
            sum,
        });
    }
    let guide_sites: Vec<&'r Site> = run
        .guide
        .sites()
        .filter(|s| s.kind == SiteKind::Sample)
        .collect();
    for (pos, g) in guide_sites.iter().enumerate() {
        let lq = g.log_prob()?;
        if needs_score {
            let k = Building::index(&mut groups, g);
            groups[k].guide.push((pos, lq.detach().neg()?));
        }
        // A site without rsample takes its gradient from the score term alone (as Pyro's
        // score parts: no entropy term); ∇ log q itself has expectation 0 and would only
        // add variance.
        let lq_sum = sum_all(lq)?;
        let lq_sum = if is_non_reparam(g) {
            lq_sum.detach()
        } else {
            lq_sum
        };
        elbo = accumulate_signed(elbo, &lq_sum, true)?;
        if g.is_auxiliary {
            terms.push(SiteTerm {
                name: g.name.clone(),
                kind: TermKind::Auxiliary,
                value: lq.clone(),
                sum: lq_sum,
            });
        }
    }
    let loss = match elbo {
        Some(e) => e.neg()?,
        None => zero_loss(store)?.neg()?,
    };
    if !needs_score {
        return Ok(ScoreRun {
            loss,
            terms,
            scored: Vec::new(),
        });
    }
    let groups: Vec<Group<'r>> = groups
        .into_iter()
        .map(|b| {
            Ok(Group {
                plates: b.plates,
                sequential: b.sequential,
                model: Suffixes::from_terms(b.model)?,
                guide: Suffixes::from_terms(b.guide)?,
            })
        })
        .collect::<Result<_>>()?;
    // For `Order`: from guide position p on, the earliest model position of those sites.
    let mut model_from = vec![usize::MAX; guide_sites.len() + 1];
    for (p, g) in guide_sites.iter().enumerate().rev() {
        let here = model_pos
            .iter()
            .find(|(n, _)| *n == g.name)
            .map_or(usize::MAX, |&(_, i)| i);
        model_from[p] = here.min(model_from[p + 1]);
    }
    let mut scored = Vec::new();
    for (p, g) in guide_sites.iter().enumerate() {
        if !is_non_reparam(g) {
            continue;
        }
        let (m_from, g_from) = match dependence {
            Dependence::All => (0, 0),
            Dependence::Order => (model_from[p], p),
        };
        let mut cost: Option<Tensor> = None;
        for group in &groups {
            // Another iteration of a sequential plate the site is in: independent of it.
            if dependence == Dependence::Order
                && SequentialFrame::independent(group.sequential, &g.sequential)
            {
                continue;
            }
            let part = match (group.model.from(m_from), group.guide.from(g_from)) {
                (Some(a), Some(b)) => a.broadcast_add(b)?,
                (Some(a), None) => a.clone(),
                (None, Some(b)) => b.clone(),
                (None, None) => continue,
            };
            let part = sum_to_plates(&part, group.plates, &g.plates)?;
            cost = Some(match cost {
                Some(c) => c.broadcast_add(&part)?,
                None => part,
            });
        }
        // The site's own −log q is always there: the cost is never empty.
        let Some(cost) = cost else { continue };
        let score = score_function(g)?;
        let cost = squeeze_leading(cost, score.rank())?;
        let shape = vi_dist::broadcast_shapes(&[score.dims(), cost.dims()]).ok_or_else(|| {
            InferError::Invalid(format!(
                "site `{}`: score term shapes {:?} and {:?} do not broadcast",
                g.name,
                score.dims(),
                cost.dims()
            ))
        })?;
        scored.push(Scored {
            site: g,
            score: score.broadcast_as(shape.as_slice())?,
            cost: cost.broadcast_as(shape.as_slice())?,
            shape,
        });
    }
    Ok(ScoreRun {
        loss,
        terms,
        scored,
    })
}

/// Drops leading size-1 dims of `t` down to `rank` (what summing to fewer plates leaves).
fn squeeze_leading(mut t: Tensor, rank: usize) -> Result<Tensor> {
    while t.rank() > rank && t.dims()[0] == 1 {
        t = t.squeeze(0)?;
    }
    Ok(t)
}

/// Sums `t` (batch-shaped, with `t_plates`) over every dim that is not one of `keep`'s plates
/// (keeping dims, so the result broadcasts against a tensor of `keep`'s plates): Pyro's
/// `MultiFrameTensor.sum_to`, the Rao–Blackwellisation of the score-function term.
pub(crate) fn sum_to_plates(
    t: &Tensor,
    t_plates: &[PlateFrame],
    keep: &[PlateFrame],
) -> Result<Tensor> {
    let rank = t.rank();
    let mut out = t.clone();
    for i in 0..rank {
        let dim = i as isize - rank as isize;
        let shared = t_plates
            .iter()
            .any(|p| p.dim == dim && keep.iter().any(|k| k.name == p.name));
        if !shared && out.dims()[i] != 1 {
            out = out.sum_keepdim(i)?;
        }
    }
    Ok(out)
}
