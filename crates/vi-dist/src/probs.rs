//! What the discrete families share: the conversions between `probs` and `logits` (as torch's
//! `distributions.utils`), values given as integers, `enumerate_support` shapes, and the error
//! of a host sampler given an unusable parameter.

use candle_core::{D, DType, Tensor};

use crate::broadcast::broadcast_params;
use crate::constraint::Constraint;
use crate::distribution::validate_param;
use crate::error::{DistError, Result};
use crate::rng::to_host;

/// Which parameter a discrete family was built from; the other is computed when asked, as
/// torch's lazy `probs`/`logits` properties, so gradients reach the tensor the user gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Form {
    /// Built from log-odds (binary families) or unnormalised log-probabilities.
    Logits,
    /// Built from probabilities.
    Probs,
}

impl Form {
    /// torch's name of the parameter in this form (`"logits"` or `"probs"`).
    pub(crate) fn param_name(self) -> &'static str {
        match self {
            Form::Logits => "logits",
            Form::Probs => "probs",
        }
    }

    /// The support of a binary family's parameter in this form: logits real (not NaN),
    /// probabilities in `[0, 1]`.
    pub(crate) fn binary_support(self) -> Constraint {
        match self {
            Form::Logits => Constraint::Real,
            Form::Probs => Constraint::UnitInterval,
        }
    }

    /// The log-odds of a binary family (Bernoulli, Binomial, Geometric) whose parameter is
    /// `param` in this form: the parameter itself, or the log-odds of the clamped
    /// probabilities.
    pub(crate) fn binary_logits(self, param: &Tensor) -> Result<Tensor> {
        match self {
            Form::Logits => Ok(param.clone()),
            Form::Probs => binary_logits(param),
        }
    }

    /// The probabilities of a binary family whose parameter is `param` in this form: the
    /// parameter itself, or `sigmoid(logits)`.
    pub(crate) fn binary_probs(self, param: &Tensor) -> Result<Tensor> {
        match self {
            Form::Logits => crate::ops::sigmoid(param),
            Form::Probs => Ok(param.clone()),
        }
    }
}

/// Broadcast (alone) and check the one parameter of a binary family built in `form`: logits
/// real (not NaN), probabilities in `[0, 1]`. Returns the parameter and the batch shape.
pub(crate) fn binary_param(
    dist: &'static str,
    param: &Tensor,
    form: Form,
) -> Result<(Tensor, Vec<usize>)> {
    let name = form.param_name();
    let ([param], batch) = broadcast_params(dist, [(name, param, 0)])?;
    validate_param(dist, name, &param, &form.binary_support())?;
    Ok((param, batch))
}

/// `probs` clamped to `[eps, 1 − eps]`, as torch's `clamp_probs`, so their logarithms are
/// finite.
pub(crate) fn clamp_probs(probs: &Tensor) -> Result<Tensor> {
    let e = crate::finfo::eps(probs.dtype());
    Ok(probs.clamp(e, 1.0 - e)?)
}

/// Log-odds `ln p − ln(1 − p)` of clamped probabilities (torch's `probs_to_logits(p,
/// is_binary=True)`).
pub(crate) fn binary_logits(probs: &Tensor) -> Result<Tensor> {
    let p = clamp_probs(probs)?;
    Ok((p.log()? - crate::ops::log1p(&p.neg()?)?)?)
}

/// `ln p` of clamped probabilities (torch's `probs_to_logits(p)` for categorical families).
/// `ln(p^k (1 − p)^m)` from probabilities (`k`, `m`, `p` of one shape), exact for every `p`
/// in `[0, 1]`: `xlogy(k, p) + xlog1py(m, −p)`, so `p` below the dtype's eps keeps its own
/// value (torch clamps `p` to `[eps, 1 − eps]` first: `Bernoulli(probs=1e-20).log_prob(1)` is
/// −36.04 there, not −46.05, and the gradient in `p` is 0). An outcome of probability 0 (`k >
/// 0` at `p = 0`, `m > 0` at `p = 1`) is `−∞` with gradient 0, torch's figure there.
pub(crate) fn binary_log_kernel(k: &Tensor, m: &Tensor, p: &Tensor) -> Result<Tensor> {
    let impossible = (k.ne(0.0)?.mul(&p.eq(0.0)?)? + m.ne(0.0)?.mul(&p.eq(1.0)?)?)?;
    let p = impossible.where_cond(&crate::broadcast::full_like(0.5, p)?, p)?;
    let lp = (crate::ops::xlogy(k, &p)? + crate::ops::xlog1py(m, &p.neg()?)?)?;
    Ok(impossible.where_cond(&crate::broadcast::full_like(f64::NEG_INFINITY, &lp)?, &lp)?)
}

/// `ln p`, elementwise, with `ln 0 = −∞` and gradient 0 there (torch's figure: it clamps `p`
/// to eps first, which makes a class of probability 0 score −36.04 in f64): the log
/// probabilities of a Categorical given by `probs`.
pub(crate) fn exact_log_probs(probs: &Tensor) -> Result<Tensor> {
    let zero = probs.eq(0.0)?;
    let safe = zero.where_cond(&crate::broadcast::full_like(1.0, probs)?, probs)?;
    let ln = safe.log()?;
    Ok(zero.where_cond(&crate::broadcast::full_like(f64::NEG_INFINITY, &ln)?, &ln)?)
}

pub(crate) fn categorical_logits(probs: &Tensor) -> Result<Tensor> {
    Ok(clamp_probs(probs)?.log()?)
}

/// `x − logsumexp(x)` over the last dim. The shift by the (detached) maximum keeps `exp`
/// finite and changes neither the value nor the gradient.
pub(crate) fn log_softmax(x: &Tensor) -> Result<Tensor> {
    if x.elem_count() == 0 {
        // An empty batch (candle cannot reduce it).
        return Ok(x.clone());
    }
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// A `log_prob` value in the family's float dtype: integer values (`u8`, `u32`, `i64`) and
/// floats of another precision are converted.
pub(crate) fn float_value(value: &Tensor, dtype: DType) -> Result<Tensor> {
    Ok(if value.dtype() == dtype {
        value.clone()
    } else {
        value.to_dtype(dtype)?
    })
}

/// Lay `values` (shape `[n] + event`) out for Pyro's `enumerate_support`: shape
/// `[n] + [1] * batch.len() + event`, broadcast to `[n] + batch + event` when `expand`.
pub(crate) fn enumerate_layout(values: Tensor, batch: &[usize], expand: bool) -> Result<Tensor> {
    let dims = values.dims().to_vec();
    let (n, event) = match dims.split_first() {
        Some((n, event)) => (*n, event.to_vec()),
        None => (1, Vec::new()),
    };
    let ones: Vec<usize> = std::iter::once(n)
        .chain(batch.iter().map(|_| 1))
        .chain(event.iter().copied())
        .collect();
    let values = values.reshape(ones)?;
    if !expand {
        return Ok(values);
    }
    let full: Vec<usize> = std::iter::once(n)
        .chain(batch.iter().copied())
        .chain(event)
        .collect();
    Ok(values.broadcast_as(full)?)
}

/// One host sampler per element of `param` (read back as f64), built by `new`; a value `new`
/// rejects is the [`bad_sampler_param`] error naming `dist` and `name`.
pub(crate) fn host_samplers<S, E>(
    dist: &'static str,
    name: &'static str,
    param: &Tensor,
    new: impl Fn(f64) -> std::result::Result<S, E>,
) -> Result<Vec<S>> {
    to_host(param)?
        .into_iter()
        .map(|p| new(p).map_err(|_| bad_sampler_param(dist, name, p)))
        .collect()
}

/// The error for a parameter a host sampler cannot use (only reachable with validation off).
pub(crate) fn bad_sampler_param(dist: &'static str, param: &'static str, value: f64) -> DistError {
    DistError::Invalid {
        dist,
        msg: format!("cannot sample with {param} = {value}"),
    }
}
