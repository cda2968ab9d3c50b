//! The structural rules for the wrappers (`Masked`, `Expanded`, `Independent`‖`Independent`)
//! and point masses: they apply to any pair that has no registered rule, in any registry.

use candle_core::Tensor;
use vi_dist::{Delta, Distribution, Expanded, Independent, Masked, Normal};

use crate::error::{KlError, Result};
use crate::registry::KlRegistry;
use crate::util::{describe, full_like, log_prob_in_support, sum_rightmost};

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
/// reinterpret, summed over those dims (Pyro's rule; torch's requires equal counts).
fn independent_independent(p: &Independent, q: &Independent, reg: &KlRegistry) -> Result<Tensor> {
    let shared = p
        .reinterpreted_batch_ndims()
        .min(q.reinterpreted_batch_ndims());
    if p.reinterpreted_batch_ndims() == q.reinterpreted_batch_ndims()
        && let Some(kl) = normal_normal_summed(p.base(), q.base(), reg, shared)?
    {
        return Ok(kl);
    }
    let (p_inner, q_inner) = (peel(p, shared)?, peel(q, shared)?);
    let kl = reg.kl(p_inner.as_ref(), q_inner.as_ref())?;
    sum_rightmost(&kl, shared)
}

/// The `loc` and `scale` of a `Normal`, or of an `Expanded` one (broadcast to its batch
/// shape, as views).
fn normal_params(d: &dyn Distribution) -> Result<Option<(Tensor, Tensor)>> {
    let any = d.as_any();
    if let Some(n) = any.downcast_ref::<Normal>() {
        return Ok(Some((n.loc().clone(), n.scale().clone())));
    }
    if let Some(e) = any.downcast_ref::<Expanded>()
        && let Some(n) = e.base().as_any().downcast_ref::<Normal>()
    {
        let b = e.batch_shape();
        return Ok(Some((n.loc().broadcast_as(b)?, n.scale().broadcast_as(b)?)));
    }
    Ok(None)
}

/// `KL(p ‖ q)` summed over the trailing `dims` dims in one fused op
/// (`vi_dist::ops::kl_normal_normal_sum`), when `p` and `q` are Normals (or `Expanded`
/// Normals) that `reg` would hand to this crate's Normal‖Normal rule: the bases of two
/// `Independent`s with the same reinterpreted count. `None` for anything else (a user's rule
/// for the pair, other families), which goes the general way: the bases' KL, then `sum`.
fn normal_normal_summed(
    p: &dyn Distribution,
    q: &dyn Distribution,
    reg: &KlRegistry,
    dims: usize,
) -> Result<Option<Tensor>> {
    let (Some((loc_p, scale_p)), Some((loc_q, scale_q))) = (normal_params(p)?, normal_params(q)?)
    else {
        return Ok(None);
    };
    use std::any::{Any, TypeId};
    let normal = TypeId::of::<Normal>();
    let exact = reg.builtin_rule(Any::type_id(p.as_any()), Any::type_id(q.as_any()));
    // Two Normals: their rule must be ours. An `Expanded` side: no rule of its own for the
    // pair (the structural rule takes the bases), and ours for the bases.
    let ours = match exact {
        Some(builtin) => builtin,
        None => reg.builtin_rule(normal, normal) == Some(true),
    };
    if !ours {
        return Ok(None);
    }
    Ok(Some(vi_dist::ops::kl_normal_normal_sum(
        &loc_p, &scale_p, &loc_q, &scale_q, dims,
    )?))
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
                _ => Err(KlError::NoClosedForm {
                    p: describe(p),
                    q: describe(q),
                }),
            }
        }
        Structural::PointMass => {
            let v = point_mass_value(p).ok_or_else(|| KlError::NoClosedForm {
                p: describe(p),
                q: describe(q),
            })?;
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
        None => Err(KlError::NoClosedForm {
            p: describe(p),
            q: describe(q),
        }),
    }
}
