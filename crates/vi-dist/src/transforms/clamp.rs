//! The identity map, clamped into a support that rounding could leave.

use candle_core::Tensor;

use super::{Transform, downcast};
use crate::constraint::{Bound, Constraint};
use crate::error::Result;
use crate::finfo::{eps, tiny};

/// One side of a [`SupportClamp`]: the bound and whether it is excluded.
#[derive(Clone, Debug)]
pub(crate) struct Side {
    pub(crate) bound: Bound,
    pub(crate) strict: bool,
}

/// `y = x` in exact arithmetic; in finite precision `x` is clamped into `[low, high]` (or just
/// inside a strict bound), as torch's `clamp_probs` keeps a sigmoid inside (0, 1).
///
/// [`transform_to`](crate::transform_to) ends its chains with it: `b + eˣ` rounds to `b` for
/// very negative `x`, which `greater_than(b)` excludes. Above the clamp the gradient is 1; the
/// inverse is the identity and the log-determinant 0.
#[derive(Clone, Debug)]
pub(crate) struct SupportClamp {
    pub(crate) low: Option<Side>,
    pub(crate) high: Option<Side>,
}

/// The nearest value of `like`'s dtype at or inside the bound: `b` itself, or for a strict
/// bound `b ± (|b| eps + tiny)`, which is at least one spacing of the dtype away from `b`.
fn limit(side: &Side, up: bool, like: &Tensor) -> Result<Tensor> {
    let b = side.bound.to_tensor(like)?;
    if !side.strict {
        return Ok(b);
    }
    let dtype = like.dtype();
    let gap = b.abs()?.affine(eps(dtype), tiny(dtype))?;
    Ok(if up { (b + gap)? } else { (b - gap)? })
}

impl Transform for SupportClamp {
    fn name(&self) -> &'static str {
        "support_clamp"
    }

    fn domain(&self) -> Constraint {
        Constraint::Real
    }

    fn codomain(&self) -> Constraint {
        Constraint::Real
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut y = x.clone();
        if let Some(low) = &self.low {
            y = y.broadcast_maximum(&limit(low, true, x)?)?;
        }
        if let Some(high) = &self.high {
            y = y.broadcast_minimum(&limit(high, false, x)?)?;
        }
        Ok(y)
    }

    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        Ok(y.clone())
    }

    fn log_abs_det_jacobian(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        // zeros of the broadcast shape of x and y (y may carry the bounds' shape)
        Ok(y.zeros_like()?.broadcast_add(&x.zeros_like()?)?)
    }

    fn same_as(&self, other: &dyn Transform) -> bool {
        let same = |a: &Option<Side>, b: &Option<Side>| match (a, b) {
            (Some(a), Some(b)) => a.strict == b.strict && a.bound.same_as(&b.bound),
            (None, None) => true,
            _ => false,
        };
        downcast::<Self>(other)
            .is_some_and(|o| same(&self.low, &o.low) && same(&self.high, &o.high))
    }
}
