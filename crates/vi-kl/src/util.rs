//! Small tensor helpers shared by the rules.

use candle_core::{D, DType, Device, Tensor};
use vi_dist::Distribution;

use crate::error::{KlError, Result};

/// A human-readable name of `d` with its wrappers, e.g. `Independent(Normal, 1)`: what the
/// errors print. The same as [`Distribution::describe`], kept here for existing callers.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use vi_dist::{Distribution, Normal};
/// let t = Tensor::ones((2, 3), DType::F32, &Device::Cpu)?;
/// let d = Normal::new(&t, &t)?.to_event(1)?;
/// assert_eq!(vi_kl::describe(&d), "Independent(Normal, 1)");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn describe(d: &dyn Distribution) -> String {
    d.describe()
}

/// [`KlError::NoClosedForm`] for the pair.
pub(crate) fn no_closed_form(p: &dyn Distribution, q: &dyn Distribution) -> KlError {
    KlError::NoClosedForm {
        p: describe(p),
        q: describe(q),
    }
}

/// `value` in the dtype and on the device of `like`, broadcast to `shape` (a view of one
/// element).
pub(crate) fn full(value: f64, shape: &[usize], like: &Tensor) -> Result<Tensor> {
    Ok(Tensor::new(value, like.device())?
        .to_dtype(like.dtype())?
        .broadcast_as(shape)?)
}

/// `value` with the shape, dtype and device of `like`.
pub(crate) fn full_like(value: f64, like: &Tensor) -> Result<Tensor> {
    full(value, like.dims(), like)
}

/// `+inf` where `cond` (u8, broadcastable to `t`) is set, `t` elsewhere. Gradients reach `t`
/// only where `cond` is clear (multiplied by 0 elsewhere), so `t` must be finite everywhere
/// for the gradients to stay finite.
pub(crate) fn inf_where(cond: &Tensor, t: &Tensor) -> Result<Tensor> {
    let cond = cond.broadcast_as(t.shape())?;
    Ok(cond.where_cond(&full_like(f64::INFINITY, t)?, t)?)
}

/// `t` with `value` where `cond` (u8) is set; `cond` and `t` are broadcast to their joint
/// shape. Gradients reach `t` only where `cond` is clear.
pub(crate) fn fill_where(cond: &Tensor, value: f64, t: &Tensor) -> Result<Tensor> {
    let shape = vi_dist::broadcast_shapes(&[cond.dims(), t.dims()]).ok_or_else(|| {
        KlError::Invalid(format!(
            "internal: shapes {:?} and {:?} do not broadcast",
            cond.dims(),
            t.dims()
        ))
    })?;
    let t = t.broadcast_as(shape.as_slice())?;
    let cond = cond.broadcast_as(shape.as_slice())?;
    Ok(cond.where_cond(&full_like(value, &t)?, &t)?)
}

/// `+inf` with the joint batch shape of `p` and `q`, in `p`'s dtype and device (a view of one
/// element): the KL of a pair whose supports never nest (no gradient: a constant).
pub(crate) fn infinite(p: &dyn Distribution, q: &dyn Distribution) -> Result<Tensor> {
    Ok(Tensor::new(f64::INFINITY, p.device())?
        .to_dtype(p.dtype())?
        .broadcast_as(joint_batch(p, q)?)?)
}

/// Sum the last `n` dims of `t` (torch's `_sum_rightmost`).
pub(crate) fn sum_rightmost(t: &Tensor, n: usize) -> Result<Tensor> {
    let mut t = t.clone();
    for _ in 0..n.min(t.rank()) {
        t = t.sum(D::Minus1)?;
    }
    Ok(t)
}

/// The broadcast batch shape of `p` and `q`, or the typed error naming both.
pub(crate) fn joint_batch(p: &dyn Distribution, q: &dyn Distribution) -> Result<Vec<usize>> {
    vi_dist::broadcast_shapes(&[p.batch_shape(), q.batch_shape()]).ok_or_else(|| {
        KlError::BatchShape {
            p: describe(p),
            q: describe(q),
            p_shape: p.batch_shape().to_vec(),
            q_shape: q.batch_shape().to_vec(),
        }
    })
}

fn kind(dtype: DType, device: &Device) -> String {
    let device = match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(_) => "cuda".to_string(),
        Device::Metal(_) => "metal".to_string(),
    };
    format!("{dtype:?} on {device}")
}

/// Checks that `p` and `q` can be compared: same dtype, same device, same event shape, batch
/// shapes that broadcast. Returns the broadcast batch shape.
pub(crate) fn check_pair(p: &dyn Distribution, q: &dyn Distribution) -> Result<Vec<usize>> {
    if p.dtype() != q.dtype() || !p.device().same_device(q.device()) {
        return Err(KlError::Kind {
            p: describe(p),
            q: describe(q),
            p_kind: kind(p.dtype(), p.device()),
            q_kind: kind(q.dtype(), q.device()),
        });
    }
    if p.event_shape() != q.event_shape() {
        return Err(KlError::EventShape {
            p: describe(p),
            q: describe(q),
            p_shape: p.event_shape().to_vec(),
            q_shape: q.event_shape().to_vec(),
        });
    }
    joint_batch(p, q)
}

/// `q.log_prob(x)` with `-inf` wherever `x` lies outside `q`'s support, instead of a
/// validation error (or, with validation off, a number from a formula used outside its
/// domain). Used by the `Delta` rule and the Monte Carlo estimate.
pub(crate) fn log_prob_in_support(q: &dyn Distribution, x: &Tensor) -> Result<Tensor> {
    let lp = vi_dist::with_validation(false, || q.log_prob(x))?;
    let inside = q.support().check(x)?;
    // `check` reduces the support's own event dims; reduce the rest of q's event dims.
    let extra = q
        .event_shape()
        .len()
        .saturating_sub(q.support().event_dim());
    let mut inside = inside;
    for _ in 0..extra.min(inside.rank()) {
        inside = inside.min(D::Minus1)?;
    }
    let inside = inside.broadcast_as(lp.shape())?;
    Ok(inside.where_cond(&lp, &full_like(f64::NEG_INFINITY, &lp)?)?)
}
