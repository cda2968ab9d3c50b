//! The plated sum-product contraction behind enumeration, as Pyro's `contract_tensor_tree`
//! (tensor variable elimination, Obermeyer et al. 2019): factors whose dims are named (a plate,
//! or an enumerated variable), variables summed out (log-sum-exp, or max for MAP) by variable
//! elimination in a cheap order, and plates multiplied out (a sum of logs) once nothing inside
//! them is left to sum. A variable is summed only inside the plates that hold all its
//! factors; factors of variables in two independent plates that meet in one tensor are an
//! error, as are enumerated variables used outside their plates.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use candle_core::{D, DType, Tensor};

use super::{MAX_RANK, rank_error};
use crate::error::{InferError, Result};
use crate::message::PlateFrame;
use crate::trace::Site;

/// What a dim of a packed factor stands for: a plate (by its index in [`Plates`]) or an
/// enumerated variable (by its id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Sym {
    Plate(usize),
    Var(usize),
}

/// A set of plates, as a bit set of their indices in [`Plates`].
pub(crate) type Ordinal = u64;

/// The plates met in one run, indexed.
#[derive(Debug, Default)]
pub(crate) struct Plates {
    frames: Vec<PlateFrame>,
}

impl Plates {
    /// The index of `frame` (added when new).
    fn index(&mut self, frame: &PlateFrame) -> Result<usize> {
        if let Some(i) = self.frames.iter().position(|f| f.name == frame.name) {
            return Ok(i);
        }
        if self.frames.len() == Ordinal::BITS as usize {
            return Err(InferError::Plate {
                plate: frame.name.clone(),
                msg: format!(
                    "enumeration handles at most {} plates in one run",
                    Ordinal::BITS
                ),
            });
        }
        self.frames.push(frame.clone());
        Ok(self.frames.len() - 1)
    }

    /// The index of the plate named `name`, if met.
    pub(crate) fn find(&self, name: &str) -> Option<usize> {
        self.frames.iter().position(|f| f.name == name)
    }

    /// The ordinal of a site's plates.
    pub(crate) fn ordinal(&mut self, plates: &[PlateFrame]) -> Result<Ordinal> {
        let mut o = 0;
        for p in plates {
            o |= 1 << self.index(p)?;
        }
        Ok(o)
    }

    /// The size of plate `i` (its subsample size).
    pub(crate) fn size(&self, i: usize) -> usize {
        self.frames[i].subsample_size
    }

    /// The frame of plate `i`.
    pub(crate) fn frame(&self, i: usize) -> &PlateFrame {
        &self.frames[i]
    }

    /// The names of the plates of `o`.
    pub(crate) fn names(&self, o: Ordinal) -> Vec<String> {
        (0..self.frames.len())
            .filter(|i| o & (1 << i) != 0)
            .map(|i| self.frames[i].name.clone())
            .collect()
    }
}

/// A tensor whose dims are named: `t.dims()[k]` is the size of `syms[k]`, `syms` sorted (so
/// that factors line up by reshaping alone).
#[derive(Clone, Debug)]
pub(crate) struct Factor {
    pub t: Tensor,
    pub syms: Vec<Sym>,
}

impl Factor {
    /// The variables the factor carries.
    pub(crate) fn vars(&self) -> impl Iterator<Item = usize> + '_ {
        self.syms.iter().filter_map(|s| match s {
            Sym::Var(v) => Some(*v),
            Sym::Plate(_) => None,
        })
    }

    fn position(&self, s: Sym) -> Option<usize> {
        self.syms.iter().position(|x| *x == s)
    }

    /// The tensor laid out against `target` (sorted, a superset of `syms`): size-1 dims where
    /// the factor has none.
    pub(crate) fn align(&self, target: &[Sym]) -> Result<Tensor> {
        if target.len() == self.syms.len() {
            return Ok(self.t.clone());
        }
        // Size-1 dims inserted as views (the tensor may be strided).
        let mut t = self.t.clone();
        let mut k = 0;
        for (i, s) in target.iter().enumerate() {
            if self.syms.get(k) == Some(s) {
                k += 1;
            } else {
                t = t.unsqueeze(i)?;
            }
        }
        Ok(t)
    }

    /// Multiplies plate `p` out: the sum over its dim (the product of its elements, in log
    /// space), or `size` times the factor when it is constant along it.
    fn plate_product(self, p: usize, size: usize) -> Result<Factor> {
        match self.position(Sym::Plate(p)) {
            Some(k) => {
                let mut syms = self.syms;
                syms.remove(k);
                Ok(Factor {
                    t: self.t.sum(k)?,
                    syms,
                })
            }
            None if size == 1 => Ok(self),
            None => Ok(Factor {
                t: (self.t * size as f64)?,
                syms: self.syms,
            }),
        }
    }
}

/// Packs a site's batch-shaped tensor: size-1 dims dropped, the others named after the site's
/// plate at that dim or the enumerated variable its [`Infer`](crate::Infer) says it stands
/// for (a dim that is neither is an error naming the site), sorted.
pub(crate) fn pack(t: &Tensor, site: &Site, plates: &mut Plates) -> Result<Factor> {
    let rank = t.rank();
    let mut named: Vec<(Sym, usize)> = Vec::with_capacity(rank);
    for (k, &size) in t.dims().iter().enumerate() {
        if size == 1 {
            continue;
        }
        let dim = k as isize - rank as isize;
        let sym = if let Some(p) = site.plates.iter().find(|p| p.dim == dim) {
            Sym::Plate(plates.index(p)?)
        } else if let Some(id) = site.infer.id_at(dim) {
            Sym::Var(id)
        } else {
            return Err(InferError::Enumeration {
                sites: vec![site.name.clone()],
                msg: format!(
                    "its log-density has shape {:?}, whose dim {dim} (size {size}) is neither \
                     one of its plates nor the dim of an enumerated site it can see (enumeration \
                     dims lie left of max_plate_nesting; inside `markov`, only the sites of the \
                     window are visible)",
                    t.dims()
                ),
            });
        };
        named.push((sym, k));
    }
    let mut sorted = named.clone();
    sorted.sort_by_key(|(s, _)| *s);
    // Views only (squeeze, permute): the ops downstream read strided tensors.
    let mut out = t.clone();
    for k in (0..rank).rev() {
        if t.dims()[k] == 1 {
            out = out.squeeze(k)?;
        }
    }
    if sorted.iter().zip(&named).any(|(a, b)| a.0 != b.0) {
        let perm: Vec<usize> = sorted
            .iter()
            .map(|(s, _)| named.iter().position(|(x, _)| x == s).unwrap_or(0))
            .collect();
        out = out.permute(perm)?;
    }
    Ok(Factor {
        t: out,
        syms: sorted.into_iter().map(|(s, _)| s).collect(),
    })
}

/// The sorted union of the dims of `fs`.
fn union<'a>(fs: impl Iterator<Item = &'a Factor>) -> Vec<Sym> {
    let set: BTreeSet<Sym> = fs.flat_map(|f| f.syms.iter().copied()).collect();
    set.into_iter().collect()
}

/// The product of factors (their sum, in log space), over the union of their dims; unchecked
/// (see [`Contraction::product`]).
fn product(mut fs: Vec<Factor>) -> Result<Factor> {
    if fs.len() <= 1 {
        return fs
            .pop()
            .ok_or_else(|| InferError::Invalid("a product of no factors".into()));
    }
    let syms = union(fs.iter());
    let mut acc: Option<Tensor> = None;
    for f in &fs {
        let t = f.align(&syms)?;
        acc = Some(match acc {
            None => t,
            Some(a) => a.broadcast_add(&t)?,
        });
    }
    let t = acc.ok_or_else(|| InferError::Invalid("a product of no factors".into()))?;
    Ok(Factor { t, syms })
}

/// How variables are summed out: log-sum-exp (marginals), or max (MAP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Semiring {
    LogSum,
    Max,
}

/// `log Σ exp` of `t` over dim `k`, stable (the max, detached, taken out first; a slice that is
/// `−∞` throughout stays `−∞`).
pub(crate) fn logsumexp(t: &Tensor, k: usize) -> Result<Tensor> {
    let lowest = match t.dtype() {
        DType::F64 => f64::MIN,
        DType::F32 => f32::MIN as f64,
        _ => -65504.0,
    };
    let m = t.max_keepdim(k)?.detach().clamp(lowest, -lowest)?;
    let s = t.broadcast_sub(&m)?.exp()?.sum_keepdim(k)?.log()?;
    Ok((s + m)?.squeeze(k)?)
}

impl Semiring {
    fn reduce(self, f: Factor, var: usize) -> Result<Factor> {
        let Some(k) = f.position(Sym::Var(var)) else {
            return Ok(f);
        };
        let t = match self {
            Semiring::LogSum => logsumexp(&f.t, k)?,
            Semiring::Max => f.t.max(k)?,
        };
        let mut syms = f.syms;
        syms.remove(k);
        Ok(Factor { t, syms })
    }
}

/// One variable eliminated: the product of the factors that held it, before the sum (what
/// backward sampling reads).
#[derive(Debug)]
pub(crate) struct Step {
    pub var: usize,
    pub factor: Factor,
}

/// The settings and the record of a contraction.
pub(crate) struct Contraction<'a> {
    pub semiring: Semiring,
    pub plates: &'a Plates,
    /// Each eliminated variable's factor, in order, when recording (for `infer_discrete`).
    pub steps: Option<Vec<Step>>,
    /// Variables not summed here (the guide's, enumerated in the guide) with the plates of
    /// their site: multiplying one of those plates out of a factor that holds one is an
    /// error.
    pub kept: HashMap<usize, Ordinal>,
    /// The site of each variable, for errors.
    pub names: HashMap<usize, String>,
    /// The plates of each variable's own site: a variable must be summed there.
    pub homes: HashMap<usize, Ordinal>,
}

impl Contraction<'_> {
    fn name(&self, v: usize) -> String {
        self.names
            .get(&v)
            .cloned()
            .unwrap_or_else(|| format!("#{v}"))
    }

    fn size_of(&self, fs: &[Option<Factor>], slots: &[usize], var: usize) -> f64 {
        let mut seen: Vec<Sym> = Vec::new();
        let mut cost = 1.0f64;
        for &i in slots {
            if let Some(f) = &fs[i] {
                for (s, &n) in f.syms.iter().zip(f.t.dims()) {
                    if !seen.contains(s) {
                        seen.push(*s);
                        cost *= n as f64;
                    }
                }
            }
        }
        let _ = var;
        cost
    }

    /// Sums the variables `elim` out of the product of `fs` by variable elimination, the
    /// cheapest variable first (the smallest product of the factors that hold it), and returns
    /// the product of what is left. Plates are batch dims here, never summed.
    pub(crate) fn sumproduct(&mut self, fs: Vec<Factor>, elim: &BTreeSet<usize>) -> Result<Factor> {
        let mut slots: Vec<Option<Factor>> = fs.into_iter().map(Some).collect();
        let mut holders: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, f) in slots.iter().enumerate() {
            if let Some(f) = f {
                for v in f.vars().filter(|v| elim.contains(v)) {
                    holders.entry(v).or_default().push(i);
                }
            }
        }
        let mut cost: HashMap<usize, u64> = HashMap::new();
        let mut heap = BinaryHeap::new();
        for (&v, hs) in &holders {
            let c = self.size_of(&slots, hs, v).to_bits();
            cost.insert(v, c);
            heap.push(Reverse((c, v)));
        }
        while let Some(Reverse((c, v))) = heap.pop() {
            if cost.get(&v) != Some(&c) {
                continue;
            }
            cost.remove(&v);
            let hs = holders.remove(&v).unwrap_or_default();
            let mut parts = Vec::with_capacity(hs.len());
            for &i in &hs {
                if let Some(f) = slots[i].take() {
                    parts.push(f);
                }
            }
            let combined = self.product(parts)?;
            if let Some(steps) = &mut self.steps {
                steps.push(Step {
                    var: v,
                    factor: combined.clone(),
                });
            }
            let reduced = self.semiring.reduce(combined, v)?;
            let new = slots.len();
            let neighbours: Vec<usize> = reduced.vars().filter(|u| cost.contains_key(u)).collect();
            slots.push(Some(reduced));
            for u in neighbours {
                let hs = holders.entry(u).or_default();
                hs.retain(|i| slots[*i].is_some());
                hs.push(new);
                let hs = hs.clone();
                let c = self.size_of(&slots, &hs, u).to_bits();
                cost.insert(u, c);
                heap.push(Reverse((c, u)));
            }
        }
        self.product(slots.into_iter().flatten().collect())
    }

    /// The product of factors (their sum, in log space), over the union of their dims, or an
    /// error naming the sites of the variables when that union has more dims than candle's
    /// CPU kernels take ([`MAX_RANK`]): with `markov` recycling dims, the number of distinct
    /// variables is unbounded, so a product in the elimination can be wider than any site.
    pub(crate) fn product(&self, fs: Vec<Factor>) -> Result<Factor> {
        let syms = union(fs.iter());
        self.check_rank(
            &syms,
            "summing out the enumerated variables multiplies factors into one",
        )?;
        product(fs)
    }

    /// `Ok` when a packed tensor over `syms` (one dim each) fits candle's CPU kernels.
    pub(crate) fn check_rank(&self, syms: &[Sym], doing: &str) -> Result<()> {
        if syms.len() <= MAX_RANK {
            return Ok(());
        }
        let mut sites = Vec::new();
        let mut plates = Vec::new();
        for s in syms {
            match s {
                Sym::Var(v) => sites.push(self.name(*v)),
                Sym::Plate(p) => plates.push(self.plates.frame(*p).name.clone()),
            }
        }
        let what = format!(
            "{doing} over {} enumerated variable(s) (these sites) and {} \
             plate(s) ({}), one dim each: it",
            sites.len(),
            plates.len(),
            if plates.is_empty() {
                "none".into()
            } else {
                quoted(&plates)
            }
        );
        Err(rank_error(sites, syms.len(), &what))
    }

    /// [`plate_product`](Self::plate_product) for the vectorized chains.
    pub(crate) fn plate_product_of(&self, f: Factor, frames: Ordinal) -> Result<Factor> {
        self.plate_product(f, frames)
    }

    /// Multiplies the plates of `frames` out of `f` (checking that no variable kept for
    /// later lives in them).
    fn plate_product(&self, mut f: Factor, frames: Ordinal) -> Result<Factor> {
        for p in (0..Ordinal::BITS as usize).filter(|p| frames & (1 << p) != 0) {
            for v in f.vars() {
                if self.kept.get(&v).is_some_and(|o| o & (1 << p) != 0) {
                    return Err(InferError::Enumeration {
                        sites: vec![self.name(v)],
                        msg: format!(
                            "a factor that depends on it is multiplied over plate `{}`, which \
                             holds it, to be summed over a variable enumerated in the model \
                             outside that plate: model enumeration must be no more global than \
                             guide enumeration (enumerate that site in the guide, or this one \
                             in the model)",
                            self.plates.frame(p).name
                        ),
                    });
                }
            }
            f = f.plate_product(p, self.plates.size(p))?;
        }
        Ok(f)
    }

    /// Contracts `terms` (each with the plates it lives in) over the variables `sum`: one
    /// factor per connected component, in the plates all its variables share, with the
    /// indices of the terms it holds. (Pyro's `contract_tensor_tree`.)
    pub(crate) fn contract_tree(
        &mut self,
        terms: Vec<(Ordinal, Factor)>,
        sum: &BTreeSet<usize>,
    ) -> Result<Vec<(Ordinal, Factor, Vec<usize>)>> {
        let factors: Vec<&Factor> = terms.iter().map(|(_, f)| f).collect();
        let groups = components(&factors, sum);
        let mut slots: Vec<Option<(Ordinal, Factor)>> = terms.into_iter().map(Some).collect();
        let mut out = Vec::with_capacity(groups.len());
        for (members, vars) in groups {
            let part: Vec<(Ordinal, Factor)> =
                members.iter().filter_map(|&i| slots[i].take()).collect();
            let (o, f) = self.contract_component(part, &vars)?;
            out.push((o, f, members));
        }
        Ok(out)
    }

    /// One connected component down to one factor (Pyro's `_contract_component`): the terms
    /// of the most nested plates first, their variables summed, the plates no variable left
    /// needs multiplied out, and the result passed to the plates of the variables it still
    /// holds.
    fn contract_component(
        &mut self,
        terms: Vec<(Ordinal, Factor)>,
        vars: &BTreeSet<usize>,
    ) -> Result<(Ordinal, Factor)> {
        let mut home: BTreeMap<usize, Ordinal> = BTreeMap::new();
        let mut min = Ordinal::MAX;
        for (o, f) in &terms {
            min &= o;
            for v in f.vars().filter(|v| vars.contains(v)) {
                *home.entry(v).or_insert(*o) &= o;
            }
        }
        for (&v, &o) in &home {
            if let Some(&own) = self.homes.get(&v)
                && own != o
            {
                let outside: Vec<String> = self.plates.names(own & !o);
                return Err(InferError::Enumeration {
                    sites: vec![self.name(v)],
                    msg: format!(
                        "it is enumerated inside plate(s) {} but a site outside them depends \
                         on it: a site that depends on a variable of a plate must be in that \
                         plate too",
                        quoted(&outside)
                    ),
                });
            }
        }
        let mut dims_tree: BTreeMap<Ordinal, BTreeSet<usize>> = BTreeMap::new();
        for (&v, &o) in &home {
            dims_tree.entry(o).or_default().insert(v);
        }
        let mut tree: BTreeMap<Ordinal, Vec<Factor>> = BTreeMap::new();
        for (o, f) in terms {
            tree.entry(o).or_default().push(f);
        }
        while dims_tree.values().any(|d| !d.is_empty()) {
            let Some(leaf) = tree.keys().copied().max_by_key(|o| (o.count_ones(), *o)) else {
                break;
            };
            let leaf_terms = tree.remove(&leaf).unwrap_or_default();
            let leaf_vars = dims_tree.remove(&leaf).unwrap_or_default();
            let refs: Vec<&Factor> = leaf_terms.iter().collect();
            let groups = components(&refs, &leaf_vars);
            let mut slots: Vec<Option<Factor>> = leaf_terms.into_iter().map(Some).collect();
            for (members, part_vars) in groups {
                let part: Vec<Factor> = members.iter().filter_map(|&i| slots[i].take()).collect();
                let f = self.sumproduct(part, &part_vars)?;
                let parent = if leaf == min {
                    leaf
                } else {
                    let pending: Vec<usize> = f.vars().filter(|v| vars.contains(v)).collect();
                    let mut parent: Ordinal = 0;
                    let mut found = false;
                    for (o, d) in &dims_tree {
                        if pending.iter().any(|v| d.contains(v)) {
                            parent |= o;
                            found = true;
                        }
                    }
                    if !found {
                        parent = min;
                    }
                    if parent == leaf {
                        let names: Vec<String> = pending.iter().map(|&v| self.name(v)).collect();
                        return Err(InferError::Enumeration {
                            sites: names,
                            msg: format!(
                                "these enumerated sites live in different plates among {} and \
                                 meet in one factor inside all of them: summing them out would \
                                 need every element of one plate at once (sum-product over \
                                 plates needs tree-structured plate nesting; make one of the \
                                 plates a Python-style loop of sites, or draw one site in the \
                                 guide)",
                                quoted(&self.plates.names(leaf))
                            ),
                        });
                    }
                    let f = self.plate_product(f, leaf & !parent)?;
                    tree.entry(parent).or_default().push(f);
                    continue;
                };
                tree.entry(parent).or_default().push(f);
            }
        }
        let Some((o, fs)) = tree.pop_first() else {
            return Err(InferError::Invalid("an empty enumeration component".into()));
        };
        if let Some((other, _)) = tree.pop_first() {
            return Err(InferError::Invalid(format!(
                "enumeration left factors in plates {:?} and {:?}",
                self.plates.names(o),
                self.plates.names(other)
            )));
        }
        Ok((o, self.product(fs)?))
    }
}

/// `` `a`, `b` ``.
fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The connected components of `fs` linked by the variables of `vars` they share: each as the
/// indices of its factors (in order) and its variables (Pyro's `_partition_terms`).
fn components(fs: &[&Factor], vars: &BTreeSet<usize>) -> Vec<(Vec<usize>, BTreeSet<usize>)> {
    let n = fs.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    let mut first: HashMap<usize, usize> = HashMap::new();
    for (i, f) in fs.iter().enumerate() {
        for v in f.vars().filter(|v| vars.contains(v)) {
            match first.get(&v) {
                Some(&j) => {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    if a != b {
                        parent[a.max(b)] = a.min(b);
                    }
                }
                None => {
                    first.insert(v, i);
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, (Vec<usize>, BTreeSet<usize>)> = BTreeMap::new();
    for (i, f) in fs.iter().enumerate() {
        let r = find(&mut parent, i);
        let g = groups.entry(r).or_default();
        g.0.push(i);
        g.1.extend(f.vars().filter(|v| vars.contains(v)));
    }
    groups.into_values().collect()
}

/// The sum of a factor over every dim, counting each plate of `ordinal` it is constant along
/// (absent from its dims) `size` times.
pub(crate) fn total(f: &Factor, ordinal: Ordinal, plates: &Plates) -> Result<Tensor> {
    let mut t = crate::util::sum_all(&f.t)?;
    let mut times = 1.0;
    for p in (0..Ordinal::BITS as usize).filter(|p| ordinal & (1 << p) != 0) {
        if !f.syms.contains(&Sym::Plate(p)) {
            times *= plates.size(p) as f64;
        }
    }
    if times != 1.0 {
        t = (t * times)?;
    }
    Ok(t)
}

/// A factor over plates only, unpacked to a batch-shaped tensor: each plate's size at its dim,
/// 1 elsewhere (rank: the leftmost plate dim it has).
pub(crate) fn unpack(f: &Factor, plates: &Plates) -> Result<Tensor> {
    let mut at: Vec<(isize, usize)> = Vec::new();
    for (s, &n) in f.syms.iter().zip(f.t.dims()) {
        match s {
            Sym::Plate(p) => at.push((plates.frame(*p).dim, n)),
            Sym::Var(_) => {
                return Err(InferError::Invalid(
                    "unpacking a factor that still holds an enumerated variable".into(),
                ));
            }
        }
    }
    let rank = at.iter().map(|(d, _)| d.unsigned_abs()).max().unwrap_or(0);
    let mut shape = vec![1usize; rank];
    let mut order: Vec<(usize, usize)> = Vec::with_capacity(at.len());
    for (k, (d, n)) in at.iter().enumerate() {
        let i = rank - d.unsigned_abs();
        shape[i] = *n;
        order.push((i, k));
    }
    order.sort();
    let perm: Vec<usize> = order.iter().map(|(_, k)| *k).collect();
    let t = if perm.iter().enumerate().all(|(i, k)| i == *k) {
        f.t.clone()
    } else {
        f.t.permute(perm)?.contiguous()?
    };
    Ok(t.reshape(shape)?)
}

/// The index of the last dim, for `argmax`/`gather` on a factor moved there.
pub(crate) const LAST: D = D::Minus1;

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// Nine one-variable factors multiplied into one would be a tensor of 9 dims, past
    /// candle's CPU kernels: a typed error naming the nine sites, where eight multiply.
    #[test]
    fn a_product_wider_than_candle_takes_is_an_error() -> Result<()> {
        let plates = Plates::default();
        let c = Contraction {
            semiring: Semiring::LogSum,
            plates: &plates,
            steps: None,
            kept: HashMap::new(),
            names: (0..9).map(|v| (v, format!("z_{v}"))).collect(),
            homes: HashMap::new(),
        };
        let fs = (0..9)
            .map(|v| {
                Ok(Factor {
                    t: Tensor::zeros(2, DType::F64, &Device::Cpu)?,
                    syms: vec![Sym::Var(v)],
                })
            })
            .collect::<Result<Vec<_>>>()?;
        match c.product(fs.clone()) {
            Err(InferError::Enumeration { sites, msg }) => {
                assert_eq!(sites.len(), 9);
                assert!(
                    msg.contains("rank 9") && msg.contains("at most 8 dims"),
                    "{msg}"
                );
            }
            other => panic!("expected an enumeration error, got {other:?}"),
        }
        assert_eq!(c.product(fs[..8].to_vec())?.t.rank(), 8);
        Ok(())
    }
}
