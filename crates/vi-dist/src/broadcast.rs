//! Broadcasting and shape helpers: candle broadcasts only when asked, torch.distributions
//! always does.

use candle_core::{D, DType, Device, Tensor};

use crate::error::{DistError, Result, kind_of};

/// The torch/numpy broadcast of several shapes, or `None` when they do not broadcast.
///
/// ```
/// use vi_dist::broadcast_shapes;
/// assert_eq!(broadcast_shapes(&[&[2, 1], &[3]]), Some(vec![2, 3]));
/// assert_eq!(broadcast_shapes(&[&[2], &[3]]), None);
/// ```
pub fn broadcast_shapes(shapes: &[&[usize]]) -> Option<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for shape in shapes {
        let offset = rank - shape.len();
        for (i, &d) in shape.iter().enumerate() {
            let o = &mut out[offset + i];
            if *o == d || d == 1 {
                continue;
            }
            if *o == 1 {
                *o = d;
            } else {
                return None;
            }
        }
    }
    Some(out)
}

/// Whether `from` broadcasts to exactly `to` (torch's `expand` rule).
///
/// ```
/// use vi_dist::broadcasts_to;
/// assert!(broadcasts_to(&[3, 1], &[2, 3, 4]));
/// assert!(!broadcasts_to(&[3], &[3, 2]));
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn broadcasts_to(from: &[usize], to: &[usize]) -> bool {
    if from.len() > to.len() {
        return false;
    }
    let offset = to.len() - from.len();
    from.iter()
        .enumerate()
        .all(|(i, &d)| d == 1 || d == to[offset + i])
}

/// A parameter handed to [`broadcast_params`]: its name, tensor and event rank (0 for scalar
/// parameters, 1 for a vector such as MVN's `loc`, 2 for a matrix such as `scale_tril`).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// let loc = Tensor::zeros((4, 2), DType::F64, &Device::Cpu)?;
/// let spec: vi_dist::ParamSpec = ("loc", &loc, 1);
/// let ([loc], batch) = vi_dist::broadcast_params("MultivariateNormal", [spec])?;
/// assert_eq!((batch, loc.dims()), (vec![4], &[4, 2][..]));
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub type ParamSpec<'a> = (&'static str, &'a Tensor, usize);

/// Broadcast the batch dims of parameters against each other, as torch's `broadcast_all`.
///
/// Each parameter keeps its trailing `event rank` dims; the leading dims are broadcast to the
/// common batch shape with `broadcast_as` (a view, no copy; gradients sum back). Checks that
/// every parameter has the dtype and device of the first, is floating point, and has at least
/// its event rank. Returns the broadcast tensors, in order, and the batch shape.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let loc = Tensor::zeros((2, 1), candle_core::DType::F64, &Device::Cpu)?;
/// let scale = Tensor::ones(3, candle_core::DType::F64, &Device::Cpu)?;
/// let ([loc, scale], batch) =
///     vi_dist::broadcast_params("Normal", [("loc", &loc, 0), ("scale", &scale, 0)])?;
/// assert_eq!(batch, vec![2, 3]);
/// assert_eq!(scale.dims(), &[2, 3]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn broadcast_params<const N: usize>(
    dist: &'static str,
    params: [ParamSpec<'_>; N],
) -> Result<([Tensor; N], Vec<usize>)> {
    let Some(&(_, first, _)) = params.first() else {
        return Err(DistError::Invalid {
            dist,
            msg: "no parameters given".to_string(),
        });
    };
    let (dtype, device) = (first.dtype(), first.device());
    let mut batch_shapes = Vec::with_capacity(N);
    for &(name, t, event_rank) in &params {
        check_kind(dist, name, t, dtype, device)?;
        if t.rank() < event_rank {
            return Err(DistError::ParamShape {
                dist,
                param: name,
                expected: format!("at least {event_rank} dims"),
                found: t.dims().to_vec(),
            });
        }
        batch_shapes.push(&t.dims()[..t.rank() - event_rank]);
    }
    let batch = broadcast_shapes(&batch_shapes).ok_or_else(|| DistError::Broadcast {
        dist,
        shapes: describe(&params),
    })?;
    let mut out = Vec::with_capacity(N);
    for &(_, t, event_rank) in &params {
        let event = &t.dims()[t.rank() - event_rank..];
        let target: Vec<usize> = batch.iter().chain(event).copied().collect();
        out.push(if t.dims() == target.as_slice() {
            t.clone()
        } else {
            t.broadcast_as(target)?
        });
    }
    let out = <[Tensor; N]>::try_from(out).map_err(|_| DistError::Invalid {
        dist,
        msg: "parameter count changed while broadcasting".to_string(),
    })?;
    Ok((out, batch))
}

/// Check that a parameter is a float tensor with the given dtype and device.
pub(crate) fn check_kind(
    dist: &'static str,
    param: &'static str,
    t: &Tensor,
    dtype: DType,
    device: &Device,
) -> Result<()> {
    let float = matches!(
        t.dtype(),
        DType::F32 | DType::F64 | DType::F16 | DType::BF16
    );
    if !float || t.dtype() != dtype || !t.device().same_device(device) {
        return Err(DistError::ParamKind {
            dist,
            param,
            expected: if float {
                kind_of(dtype, device)
            } else {
                "a floating-point tensor".to_string()
            },
            found: kind_of(t.dtype(), t.device()),
        });
    }
    Ok(())
}

fn describe(params: &[ParamSpec<'_>]) -> String {
    params
        .iter()
        .map(|(n, t, _)| format!("{n} {:?}", t.dims()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `value` in the dtype and on the device of `like`, broadcast to `shape`: a view of one
/// element, whatever the shape (torch's `nan`/`inf` moments, `where` branches).
pub(crate) fn full(value: f64, shape: &[usize], like: &Tensor) -> Result<Tensor> {
    Ok(Tensor::new(value, like.device())?
        .to_dtype(like.dtype())?
        .broadcast_as(shape)?)
}

/// `value` with the shape, dtype and device of `like` (a broadcast view, see [`full`]).
pub(crate) fn full_like(value: f64, like: &Tensor) -> Result<Tensor> {
    full(value, like.dims(), like)
}

/// An elementwise `f` of `t`, computed once per distinct element when `t` is a broadcast view
/// (a parameter expanded to a plate): dims of stride 0 are narrowed to size 1 before `f` and
/// broadcast back after, so `log(scale)` of a `[50]` scale expanded to `[256, 50]` costs 50
/// logs. The same values (and gradients) as `f(t)`.
pub(crate) fn map_compact(
    t: &Tensor,
    f: impl FnOnce(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<Tensor> {
    let mut compact = t.clone();
    for (i, (&size, &stride)) in t.dims().iter().zip(t.stride()).enumerate() {
        if stride == 0 && size > 1 {
            compact = compact.narrow(i, 0, 1)?;
        }
    }
    if compact.elem_count() == t.elem_count() {
        return Ok(f(t)?);
    }
    Ok(f(&compact)?.broadcast_as(t.dims())?)
}

/// Sum the last `n` dims of `t` (torch's `_sum_rightmost`), stopping at rank 0: event sums of
/// `Independent`, `Delta` and the transforms' log-determinants.
pub(crate) fn sum_rightmost(t: &Tensor, n: usize) -> Result<Tensor> {
    let mut t = t.clone();
    for _ in 0..n.min(t.rank()) {
        t = t.sum(D::Minus1)?;
    }
    Ok(t)
}

/// `sample_shape + batch_shape + event_shape`, the shape of a draw.
///
/// ```
/// assert_eq!(vi_dist::extended_shape(&[5], &[2, 3], &[4]), vec![5, 2, 3, 4]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn extended_shape(sample_shape: &[usize], batch: &[usize], event: &[usize]) -> Vec<usize> {
    sample_shape
        .iter()
        .chain(batch)
        .chain(event)
        .copied()
        .collect()
}
