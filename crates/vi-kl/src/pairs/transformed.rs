//! `TransformedDistribution ‖ TransformedDistribution`: through the same bijection, the KL of
//! the bases (torch's `_kl_transformed_transformed`).

use std::sync::Arc;

use candle_core::Tensor;
use vi_dist::transforms::{Compose, Identity};
use vi_dist::{Transform, TransformedDistribution};

use crate::error::Result;
use crate::registry::KlRegistry;
use crate::util::no_closed_form;

pub(super) fn register(reg: &mut KlRegistry) {
    reg.insert(
        "KL of the bases when both chains are the same map (`Transform::same_as`, compositions \
         flattened); else no closed form",
        transformed_transformed,
    );
}

/// `t` as a flat list of its parts: compositions opened, identities dropped (neither changes
/// the map).
fn flatten<'a>(t: &'a dyn Transform, out: &mut Vec<&'a dyn Transform>) {
    let any: &dyn std::any::Any = t;
    if any.is::<Identity>() {
        return;
    }
    match any.downcast_ref::<Compose>() {
        Some(c) => c.parts().iter().for_each(|p| flatten(p.as_ref(), out)),
        None => out.push(t),
    }
}

/// Whether two chains are the same map, part by part.
fn same_chain(a: &[Arc<dyn Transform>], b: &[Arc<dyn Transform>]) -> bool {
    let (mut fa, mut fb) = (Vec::new(), Vec::new());
    a.iter().for_each(|t| flatten(t.as_ref(), &mut fa));
    b.iter().for_each(|t| flatten(t.as_ref(), &mut fb));
    fa.len() == fb.len() && fa.iter().zip(&fb).all(|(x, y)| x.same_as(*y))
}

/// KL(f(X) ‖ f(Y)) = KL(X ‖ Y) for a bijection `f` (every transform a
/// `TransformedDistribution` accepts is one-to-one): the density ratio at `f(x)` is the bases'
/// at `x`, the Jacobians cancelling. The bases are the distributions the chain reads (already
/// expanded and reinterpreted), so their KL has the batch shape of the pair; the event shapes
/// were checked equal before the rule ran. Different chains, or bases without a closed form,
/// are [`KlError::NoClosedForm`](crate::KlError::NoClosedForm) naming the pair.
fn transformed_transformed(
    p: &TransformedDistribution,
    q: &TransformedDistribution,
    reg: &KlRegistry,
) -> Result<Tensor> {
    if !same_chain(p.transforms(), q.transforms()) {
        return Err(no_closed_form(p, q));
    }
    match reg.kl(p.base(), q.base()) {
        Err(e) if e.is_no_closed_form() => Err(no_closed_form(p, q)),
        other => other,
    }
}
