//! Small tensor helpers shared by the trace and the ELBOs.

use candle_core::Tensor;

use crate::error::Result;

/// The sum of every element of `t`: `t` itself when it is already a scalar (candle's
/// `sum_all` would add a copy, and a node to backpropagate through, for nothing).
pub(crate) fn sum_all(t: &Tensor) -> Result<Tensor> {
    if t.rank() == 0 {
        Ok(t.clone())
    } else {
        Ok(t.sum_all()?)
    }
}
