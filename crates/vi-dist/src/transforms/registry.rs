//! From a constraint to a bijection onto it, as `torch.distributions.constraint_registry`.

use super::clamp::{Side, SupportClamp};
use super::{
    Affine, Compose, Exp, Identity, IndependentTransform, LowerCholesky, PositiveDefinite, Sigmoid,
    StickBreaking, Transform,
};
use crate::constraint::{Bound, Constraint};
use crate::error::{DistError, Result};

/// A bijection from unconstrained space onto `constraint`, as
/// `torch.distributions.transform_to`: optimise in the unconstrained space, read values through
/// [`Transform::forward`], initialise with [`Transform::inverse`].
///
/// | constraint | transform |
/// |---|---|
/// | `real` | [`Identity`] |
/// | `positive`, `nonnegative` | [`Exp`] |
/// | `unit_interval` | [`Sigmoid`] |
/// | `interval(a, b)`, `half_open_interval(a, b)` | [`Sigmoid`] then [`Affine`]`(a, b − a)` |
/// | `greater_than(b)`, `greater_than_eq(b)` | [`Exp`] then [`Affine`]`(b, 1)` |
/// | `less_than(b)` | [`Exp`] then [`Affine`]`(b, −1)` |
/// | `simplex` | [`StickBreaking`] |
/// | `lower_cholesky` | [`LowerCholesky`] |
/// | `positive_definite` | [`PositiveDefinite`] |
/// | `independent(c, n)` | [`IndependentTransform`]`(transform_to(c), n)` |
///
/// Bounds may be numbers or tensors. The composed transforms report `constraint` itself as
/// their codomain, and end with a clamp that is the identity in exact arithmetic but keeps
/// rounding inside the support (`b + eˣ` rounds to `b` for very negative `x` in f32, which
/// `greater_than(b)` excludes; the clamp moves it one spacing above `b`, as torch's
/// `clamp_probs` keeps a sigmoid inside (0, 1)). Discrete constraints (boolean, integers, one-hot) have no such bijection:
/// they give [`DistError::Transform`] naming the constraint.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Constraint, transform_to};
/// let c = Constraint::interval(-1.0, 3.0);
/// let t = transform_to(&c)?;
/// let y = t.forward(&Tensor::new(&[-50.0f32, 0.0, 50.0], &Device::Cpu)?)?;
/// assert!(c.all(&y)?);
/// assert_eq!(y.to_vec1::<f32>()?[1], 1.0);
/// assert!(transform_to(&Constraint::Boolean).is_err());
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn transform_to(constraint: &Constraint) -> Result<Box<dyn Transform>> {
    let c = constraint;
    Ok(match c {
        Constraint::Real => Box::new(Identity),
        Constraint::Positive | Constraint::NonNegative => Box::new(Exp),
        Constraint::UnitInterval => Box::new(Sigmoid),
        Constraint::Interval { low, high } | Constraint::HalfOpenInterval { low, high } => {
            let width = bound_sub(high, low)?;
            let half_open = matches!(c, Constraint::HalfOpenInterval { .. });
            let clamp = SupportClamp {
                low: Some(side(low, false)),
                high: Some(side(high, half_open)),
            };
            chain(Sigmoid, Affine::new(low.clone(), width), clamp, c)
        }
        Constraint::GreaterThan(b) | Constraint::GreaterThanEq(b) => {
            let strict = matches!(c, Constraint::GreaterThan(_));
            let clamp = SupportClamp {
                low: Some(side(b, strict)),
                high: None,
            };
            chain(Exp, Affine::new(b.clone(), 1.0), clamp, c)
        }
        Constraint::LessThan(b) => {
            let clamp = SupportClamp {
                low: None,
                high: Some(side(b, true)),
            };
            chain(Exp, Affine::new(b.clone(), -1.0), clamp, c)
        }
        Constraint::Simplex => Box::new(StickBreaking),
        Constraint::LowerCholesky => Box::new(LowerCholesky),
        Constraint::PositiveDefinite => Box::new(PositiveDefinite),
        Constraint::Independent { base, event_dims } => {
            Box::new(IndependentTransform::new(transform_to(base)?, *event_dims))
        }
        other => {
            let msg = if other.is_discrete() {
                format!("the discrete constraint {other} has no bijection from the reals")
            } else {
                format!("no transform is registered for the constraint {other}")
            };
            return Err(DistError::Transform {
                transform: "transform_to",
                msg,
            });
        }
    })
}

/// The same as [`transform_to`]: every transform here is a bijection.
///
/// torch keeps two registries because its `transform_to(simplex)` is the softmax (not
/// injective) and `biject_to(positive_definite)` is unregistered; here `simplex` always maps
/// through [`StickBreaking`] and both registries agree, so this is an alias kept for Pyro
/// users.
///
/// ```
/// use vi_dist::{Constraint, biject_to};
/// assert_eq!(biject_to(&Constraint::Simplex)?.name(), "stick_breaking");
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn biject_to(constraint: &Constraint) -> Result<Box<dyn Transform>> {
    transform_to(constraint)
}

/// `first`, then `affine`, then the clamp that keeps rounding inside `codomain`.
fn chain(
    first: impl Transform,
    affine: Affine,
    clamp: SupportClamp,
    codomain: &Constraint,
) -> Box<dyn Transform> {
    Box::new(
        Compose::new(vec![Box::new(first), Box::new(affine), Box::new(clamp)])
            .with_codomain(codomain.clone()),
    )
}

fn side(bound: &Bound, strict: bool) -> Side {
    Side {
        bound: bound.clone(),
        strict,
    }
}

/// `high − low` for numbers or tensors.
fn bound_sub(high: &Bound, low: &Bound) -> Result<Bound> {
    Ok(match (high, low) {
        (Bound::Scalar(h), Bound::Scalar(l)) => Bound::Scalar(h - l),
        (Bound::Tensor(h), Bound::Scalar(l)) => Bound::Tensor(h.affine(1.0, -l)?),
        (Bound::Scalar(h), Bound::Tensor(l)) => Bound::Tensor(l.affine(-1.0, *h)?),
        (Bound::Tensor(h), Bound::Tensor(l)) => {
            Bound::Tensor(h.broadcast_sub(&l.to_dtype(h.dtype())?)?)
        }
    })
}
