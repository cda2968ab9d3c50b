//! Saying which element broke a constraint, for error messages.

use candle_core::{DType, Tensor};

use super::Constraint;
use crate::error::Result;

/// The first element of `value` outside `constraint`, for an error message: its index and
/// what it is (`"NaN"`, `"inf"`, `"-inf"`, the number; for constraints on whole events, a
/// non-finite element with its full index, else the event's values when short). Reads `value`
/// back to the host: call it only once a check has failed. `None` if every element passes.
pub(crate) fn first_violation(
    constraint: &Constraint,
    value: &Tensor,
) -> Result<Option<(Vec<usize>, String)>> {
    if value.elem_count() == 0 {
        return Ok(None);
    }
    // An independent constraint fails where its base fails: look at the base, per element
    // when the base is elementwise.
    let base = match constraint {
        Constraint::Independent { base, .. } => base.as_ref(),
        other => other,
    };
    let ok = base.check(value)?;
    if ok.elem_count() == 0 {
        return Ok(None);
    }
    let ok_host = ok.flatten_all()?.to_dtype(DType::U8)?.to_vec1::<u8>()?;
    let Some(flat) = ok_host.iter().position(|&v| v == 0) else {
        return Ok(None);
    };
    let index = unravel(flat, ok.dims());
    // The check may have broadcast the value against tensor bounds: read the value at the
    // check's shape (plus the event dims).
    let event_dims: Vec<usize> =
        value.dims()[value.rank().saturating_sub(base.event_dim())..].to_vec();
    let full_shape: Vec<usize> = ok.dims().iter().chain(&event_dims).copied().collect();
    let value = value.broadcast_as(full_shape)?;
    let values = value
        .flatten_all()?
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?;
    let event_size: usize = event_dims.iter().product();
    let Some(event) = values.get(flat * event_size..(flat + 1) * event_size) else {
        return Ok(None);
    };
    if let [v] = event {
        return Ok(Some((index, describe(*v))));
    }
    // A constraint on whole events: point at a non-finite element if there is one.
    if let Some(j) = event.iter().position(|v| !v.is_finite()) {
        let mut full = index;
        full.extend(unravel(j, &event_dims));
        return Ok(Some((full, describe(event[j]))));
    }
    let found = if event_size <= 8 {
        let items: Vec<String> = event.iter().map(|&v| describe(v)).collect();
        format!("[{}]", items.join(", "))
    } else {
        format!("an event of shape {event_dims:?}")
    };
    Ok(Some((index, found)))
}

/// A number as an error message says it: `NaN`, `inf`, `-inf`, or its shortest decimal
/// (`-0.5`, `2.0`, `1e300`).
fn describe(v: f64) -> String {
    format!("{v:?}")
}

/// The multi-dimensional index of row-major position `flat` in `dims`.
fn unravel(mut flat: usize, dims: &[usize]) -> Vec<usize> {
    let mut index = vec![0; dims.len()];
    for (i, &d) in dims.iter().enumerate().rev() {
        if d > 0 {
            index[i] = flat % d;
            flat /= d;
        }
    }
    index
}
