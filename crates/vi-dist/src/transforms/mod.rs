//! Bijective transforms and the map from a constraint to a transform onto it, as
//! `torch.distributions.transforms` and `torch.distributions.constraint_registry`.
//!
//! | transform | domain → codomain | file |
//! |---|---|---|
//! | [`Identity`] | real → real | `elementwise.rs` |
//! | [`Exp`] | real → positive | `elementwise.rs` |
//! | [`Sigmoid`] | real → unit interval | `elementwise.rs` |
//! | [`Softplus`] | real → positive | `elementwise.rs` |
//! | [`Affine`] | real → real, `loc + scale · x` | `affine.rs` |
//! | [`Compose`] | a chain of transforms | `compose.rs` |
//! | [`IndependentTransform`] | a transform with more dims per event | `independent.rs` |
//! | [`StickBreaking`] | real^(k−1) → simplex^k | `stick_breaking.rs` |
//! | [`LowerCholesky`] | square matrix → lower Cholesky factor | `cholesky.rs` |
//! | [`PositiveDefinite`] | square matrix → positive-definite matrix | `cholesky.rs` |
//!
//! [`transform_to`] (and its alias [`biject_to`]) pick the transform for a [`Constraint`]
//! (`registry.rs`); its chains end with a private clamp that keeps rounding inside the support
//! (`clamp.rs`).

mod affine;
mod cholesky;
mod clamp;
mod compose;
mod elementwise;
mod independent;
mod registry;
mod stick_breaking;

use std::any::Any;
use std::fmt::Debug;

use candle_core::Tensor;

use crate::constraint::Constraint;
use crate::error::{DistError, Result};

pub use affine::Affine;
pub use cholesky::{LowerCholesky, PositiveDefinite};
pub use compose::Compose;
pub(crate) use compose::chain_event_dims;
pub use elementwise::{Exp, Identity, Sigmoid, Softplus};
pub use independent::IndependentTransform;
pub use registry::{biject_to, transform_to};
pub use stick_breaking::StickBreaking;

/// A differentiable bijection `y = f(x)` from [`domain`](Transform::domain) onto
/// [`codomain`](Transform::codomain), as `torch.distributions.transforms.Transform`.
///
/// The trait is object safe: [`transform_to`] returns `Box<dyn Transform>`. Every method works
/// on batches: the last [`event_dim`](Transform::event_dim) dims of `x` form one event, the
/// dims before it are batch dims, and
/// [`log_abs_det_jacobian`](Transform::log_abs_det_jacobian) has one value per batch element
/// (the log-determinant summed over the event, as torch sums over `domain.event_dim`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Constraint, Transform, transform_to};
/// let t: Box<dyn Transform> = transform_to(&Constraint::Positive)?;
/// let x = Tensor::new(&[-1.0f64, 0.0, 2.0], &Device::Cpu)?;
/// let y = t.forward(&x)?;
/// assert!(t.codomain().all(&y)?);
/// let back = t.inverse(&y)?.to_vec1::<f64>()?;
/// assert!((back[2] - 2.0).abs() < 1e-12);
/// assert_eq!(t.log_abs_det_jacobian(&x, &y)?.dims(), &[3]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub trait Transform: Any + Debug + Send + Sync {
    /// A short name, as torch's class name in snake case (`"exp"`, `"stick_breaking"`).
    fn name(&self) -> &'static str;

    /// The set the input lives in (its `event_dim` is [`Transform::event_dim`]).
    fn domain(&self) -> Constraint;

    /// The set the output lives in.
    fn codomain(&self) -> Constraint;

    /// How many trailing dims of the input form one event (torch's `domain.event_dim`).
    fn event_dim(&self) -> usize {
        self.domain().event_dim()
    }

    /// How many trailing dims of the output form one event (torch's `codomain.event_dim`).
    fn codomain_event_dim(&self) -> usize {
        self.codomain().event_dim()
    }

    /// `y = f(x)`, differentiable in `x` (and in the transform's tensor parameters).
    fn forward(&self, x: &Tensor) -> Result<Tensor>;

    /// `x = f⁻¹(y)`.
    fn inverse(&self, y: &Tensor) -> Result<Tensor>;

    /// `log |det ∂f(x)/∂x|` per event: shape `x.shape[..rank − event_dim]` (broadcast with the
    /// transform's parameters). `y` must be `forward(x)`; transforms that can compute the
    /// value more stably from `x` alone ignore it.
    fn log_abs_det_jacobian(&self, x: &Tensor, y: &Tensor) -> Result<Tensor>;

    /// The shape of `forward(x)` for an input of `shape` (the same unless the transform changes
    /// the event shape, as [`StickBreaking`] does).
    fn forward_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        Ok(shape.to_vec())
    }

    /// The shape of `inverse(y)` for an output of `shape`.
    fn inverse_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        Ok(shape.to_vec())
    }

    /// Whether `other` is the same map: the same type with the same parameters (numbers bit
    /// for bit, tensors the same tensor or the same shape and values, read back to compare),
    /// as torch's `Transform.__eq__`. The default is torch's too: only the same object.
    /// [`TransformedDistribution`](crate::TransformedDistribution)'s KL rule compares chains
    /// with it; a `false` for equal maps only costs a closed form, never a wrong number.
    ///
    /// ```
    /// use vi_dist::Transform;
    /// use vi_dist::transforms::{Affine, Exp};
    /// assert!(Exp.same_as(&Exp));
    /// assert!(Affine::new(1.0, 2.0).same_as(&Affine::new(1.0, 2.0)));
    /// assert!(!Affine::new(1.0, 2.0).same_as(&Affine::new(1.0, 3.0)));
    /// assert!(!Exp.same_as(&Affine::new(0.0, 1.0)));
    /// ```
    fn same_as(&self, other: &dyn Transform) -> bool {
        std::ptr::addr_eq(self as *const Self, other as *const dyn Transform)
    }

    /// Whether `forward` is one-to-one on every input of the domain's shape (true unless a
    /// transform overrides it). [`LowerCholesky`] and [`PositiveDefinite`] are not: they
    /// drop the strict upper triangle of a square matrix, so they are bijections only
    /// between lower-triangular matrices and their image. A
    /// [`TransformedDistribution`](crate::TransformedDistribution) refuses such a transform:
    /// the density of its image is not the base density at the inverse with the
    /// log-determinant subtracted.
    ///
    /// ```
    /// use vi_dist::Transform;
    /// use vi_dist::transforms::{Exp, LowerCholesky};
    /// assert!(Exp.injective() && !LowerCholesky.injective());
    /// ```
    fn injective(&self) -> bool {
        true
    }
}

/// Whether `other` has the concrete type `T` (for [`Transform::same_as`] of transforms
/// without parameters).
pub(crate) fn is<T: Transform>(other: &dyn Transform) -> bool {
    (other as &dyn Any).is::<T>()
}

/// `other` as the concrete type `T`, if it is one.
pub(crate) fn downcast<T: Transform>(other: &dyn Transform) -> Option<&T> {
    (other as &dyn Any).downcast_ref::<T>()
}

/// Error unless `x` has at least `event_dim` dims.
pub(crate) fn check_rank(transform: &'static str, x: &Tensor, event_dim: usize) -> Result<()> {
    if x.rank() < event_dim {
        return Err(DistError::Transform {
            transform,
            msg: format!(
                "input of shape {:?} has fewer than the {event_dim} event dims the transform needs",
                x.dims()
            ),
        });
    }
    Ok(())
}
