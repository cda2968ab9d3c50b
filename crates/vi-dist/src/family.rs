//! What every family shares: the trait's accessor boilerplate and the `expand` of parameters.

use candle_core::Tensor;

use crate::broadcast::broadcasts_to;
use crate::error::{DistError, Result};

/// The accessors of [`Distribution`](crate::Distribution) that are the same for every family:
/// `name`, `batch_shape`, `event_shape`, `dtype`, `device`, `clone_box`, `as_any`.
///
/// `dist_common!("Normal", loc)` reads dtype/device from field `loc`, the batch shape from
/// field `batch`, and gives an empty event shape; add `, event` to read it from field `event`.
macro_rules! dist_common {
    ($name:literal, $param:ident) => {
        fn event_shape(&self) -> &[usize] {
            &[]
        }
        $crate::family::dist_common!(@common $name, $param);
    };
    ($name:literal, $param:ident, event) => {
        fn event_shape(&self) -> &[usize] {
            &self.event
        }
        $crate::family::dist_common!(@common $name, $param);
    };
    (@common $name:literal, $param:ident) => {
        fn name(&self) -> &'static str {
            $name
        }
        fn batch_shape(&self) -> &[usize] {
            &self.batch
        }
        fn dtype(&self) -> candle_core::DType {
            self.$param.dtype()
        }
        fn device(&self) -> &candle_core::Device {
            self.$param.device()
        }
        fn clone_box(&self) -> Box<dyn $crate::Distribution> {
            Box::new(self.clone())
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    };
}
pub(crate) use dist_common;

/// Broadcast a parameter (batch dims + `event_rank` trailing dims) to `batch + event`, for a
/// family's `expand`; an error names the distribution and both shapes.
pub(crate) fn expand_param(
    dist: &'static str,
    current_batch: &[usize],
    param: &Tensor,
    batch: &[usize],
    event_rank: usize,
) -> Result<Tensor> {
    if !broadcasts_to(current_batch, batch) {
        return Err(DistError::Expand {
            dist,
            from: current_batch.to_vec(),
            to: batch.to_vec(),
        });
    }
    let event = &param.dims()[param.rank() - event_rank..];
    let target: Vec<usize> = batch.iter().chain(event).copied().collect();
    Ok(param.broadcast_as(target)?)
}
