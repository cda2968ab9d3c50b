//! The structural rules for the wrappers (`Masked`, `Expanded`, `Independent`‖`Independent`)
//! and point masses: they apply to any pair that has no registered rule, in any registry.

use std::any::{Any, TypeId};

use candle_core::Tensor;
use vi_dist::{Delta, Distribution, Expanded, Independent, Masked};

use crate::error::Result;
use crate::registry::KlRegistry;
use crate::util::{full_like, log_prob_in_support, no_closed_form, sum_rightmost};

/// Peels `n` reinterpreted dims off an `Independent`: its base when none are left.
fn peel(d: &Independent, n: usize) -> Result<Box<dyn Distribution>> {
    let left = d.reinterpreted_batch_ndims() - n;
    Ok(if left == 0 {
        d.base().clone_box()
    } else {
        Box::new(Independent::new(d.base().clone_box(), left)?)
    })
}

/// KL of two `Independent`s: the KL of what is left after removing the dims both
/// reinterpret, summed over those dims (Pyro's rule; torch's requires equal counts). With
/// equal counts, the bases' rule sums inside its own op where it has a summed variant
/// ([`KlRegistry::kl_summed`]).
fn independent_independent(p: &Independent, q: &Independent, reg: &KlRegistry) -> Result<Tensor> {
    let shared = p
        .reinterpreted_batch_ndims()
        .min(q.reinterpreted_batch_ndims());
    if p.reinterpreted_batch_ndims() == q.reinterpreted_batch_ndims()
        && let Some(kl) = reg.kl_summed(p.base(), q.base(), shared)?
    {
        return Ok(kl);
    }
    let (p_inner, q_inner) = (peel(p, shared)?, peel(q, shared)?);
    let kl = reg.kl(p_inner.as_ref(), q_inner.as_ref())?;
    sum_rightmost(&kl, shared)
}

/// The type of `d`, or of its base when `d` is `Expanded`.
fn unexpanded_type(d: &dyn Distribution) -> TypeId {
    match d.as_any().downcast_ref::<Expanded>() {
        Some(e) => Any::type_id(e.base().as_any()),
        None => Any::type_id(d.as_any()),
    }
}

/// `d` as its own family when it is an `Expanded` whose base has type `base`: the base's
/// `expand` to the wrapper's batch shape (the families of `vi-dist` broadcast their
/// parameters as views). `None` when `d` is not such an `Expanded`.
pub(crate) fn expanded_natively(
    d: &dyn Distribution,
    base: TypeId,
) -> Result<Option<Box<dyn Distribution>>> {
    match d.as_any().downcast_ref::<Expanded>() {
        Some(e) if Any::type_id(e.base().as_any()) == base => {
            Ok(Some(e.base().expand(e.batch_shape())?))
        }
        _ => Ok(None),
    }
}

/// [`KlRegistry::kl_summed`] for a pair without a rule of its own, where the `Expanded` rule
/// applies: the summed variant of the bases' rule, on the bases expanded natively (so the sum
/// counts every expanded copy). `None` where another structural rule applies, where the
/// bases' rule has no summed variant, or where a base does not expand to its own type.
pub(crate) fn expanded_summed(
    p: &dyn Distribution,
    q: &dyn Distribution,
    reg: &KlRegistry,
    dims: usize,
) -> Result<Option<Tensor>> {
    let (pt, qt) = (unexpanded_type(p), unexpanded_type(q));
    if !matches!(structural_rule(p, q), Some(Structural::Expanded)) || !reg.has_summed(pt, qt) {
        return Ok(None);
    }
    let (pe, qe) = (expanded_natively(p, pt)?, expanded_natively(q, qt)?);
    let (p, q) = (pe.as_deref().unwrap_or(p), qe.as_deref().unwrap_or(q));
    if (Any::type_id(p.as_any()), Any::type_id(q.as_any())) != (pt, qt) {
        return Ok(None);
    }
    reg.kl_summed(p, q, dims)
}

/// The value of a point mass: `Delta`, or an `Independent` of one.
fn point_mass_value(d: &dyn Distribution) -> Option<&Tensor> {
    let any = d.as_any();
    if let Some(delta) = any.downcast_ref::<Delta>() {
        return Some(delta.v());
    }
    any.downcast_ref::<Independent>()
        .and_then(|i| point_mass_value(i.base()))
}

/// A structural rule: how a pair without a registered rule is reduced.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Structural {
    Masked,
    Expanded,
    Independent,
    PointMass,
}

/// The structural rule for `(p, q)`, tried in order when no pair is registered; `None` when
/// none applies.
pub(crate) fn structural_rule(p: &dyn Distribution, q: &dyn Distribution) -> Option<Structural> {
    let is = |d: &dyn Distribution, f: fn(&dyn std::any::Any) -> bool| f(d.as_any());
    if is(p, |a| a.is::<Masked>()) || is(q, |a| a.is::<Masked>()) {
        Some(Structural::Masked)
    } else if is(p, |a| a.is::<Expanded>()) || is(q, |a| a.is::<Expanded>()) {
        Some(Structural::Expanded)
    } else if is(p, |a| a.is::<Independent>()) && is(q, |a| a.is::<Independent>()) {
        Some(Structural::Independent)
    } else if point_mass_value(p).is_some() {
        Some(Structural::PointMass)
    } else {
        None
    }
}

/// Applies a structural rule (shapes already checked by the caller).
pub(crate) fn apply(
    rule: Structural,
    p: &dyn Distribution,
    q: &dyn Distribution,
    reg: &KlRegistry,
) -> Result<Tensor> {
    match rule {
        Structural::Masked => {
            let (pm, qm) = (
                p.as_any().downcast_ref::<Masked>(),
                q.as_any().downcast_ref::<Masked>(),
            );
            let p_base = pm.map_or(p, |m| m.base());
            let q_base = qm.map_or(q, |m| m.base());
            let mut kl = reg.kl(p_base, q_base)?;
            // Zero where either mask is clear (a `where`: an infinite KL there gives 0, not
            // NaN).
            for m in [pm, qm].into_iter().flatten() {
                let shape = vi_dist::broadcast_shapes(&[kl.dims(), m.mask_tensor().dims()])
                    .unwrap_or_else(|| kl.dims().to_vec());
                let kl_b = kl.broadcast_as(shape.as_slice())?;
                let mask = m.mask_tensor().broadcast_as(shape.as_slice())?;
                kl = mask.where_cond(&kl_b, &full_like(0.0, &kl_b)?)?;
            }
            Ok(kl)
        }
        Structural::Expanded => {
            // The bases' KL broadcasts to the expanded batch shape (the caller broadcasts).
            let p_base = p
                .as_any()
                .downcast_ref::<Expanded>()
                .map_or(p, |e| e.base());
            let q_base = q
                .as_any()
                .downcast_ref::<Expanded>()
                .map_or(q, |e| e.base());
            reg.kl(p_base, q_base)
        }
        Structural::Independent => {
            match (
                p.as_any().downcast_ref::<Independent>(),
                q.as_any().downcast_ref::<Independent>(),
            ) {
                (Some(p), Some(q)) => independent_independent(p, q, reg),
                _ => Err(no_closed_form(p, q)),
            }
        }
        Structural::PointMass => {
            let v = point_mass_value(p).ok_or_else(|| no_closed_form(p, q))?;
            // log p(v) is the point mass's log_density (summed over reinterpreted dims).
            let lp = vi_dist::with_validation(false, || p.log_prob(v))?;
            let lq = log_prob_in_support(q, v)?;
            Ok(lp.broadcast_sub(&lq)?)
        }
    }
}

/// For a registered rule that covers only some inner shapes of its pair (e.g.
/// `Independent ‖ MultivariateNormal` when the base is not a `Normal`): the structural rule
/// for `(p, q)` if one applies (a point mass, say), else [`KlError::NoClosedForm`].
pub(crate) fn fallback(
    p: &dyn Distribution,
    q: &dyn Distribution,
    reg: &KlRegistry,
) -> Result<Tensor> {
    match structural_rule(p, q) {
        Some(rule) => apply(rule, p, q, reg),
        None => Err(no_closed_form(p, q)),
    }
}
