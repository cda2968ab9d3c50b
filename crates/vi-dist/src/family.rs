//! What every family shares: the trait's accessor boilerplate and the `expand` of parameters.

use candle_core::Tensor;

use crate::broadcast::{broadcast_params, broadcasts_to};
use crate::constraint::Constraint;
use crate::distribution::validate_param;
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

/// `sample` as the detached reparameterised draw, and `has_rsample` true: for a family whose
/// draws are all reparameterised, `sample_by_rsample!();` beside its own `rsample`.
/// `sample_by_rsample!(draw)` gives `rsample` too, both from the family's
/// `fn draw(&self, sample_shape, rng, reparam: bool)`.
macro_rules! sample_by_rsample {
    () => {
        fn sample(
            &self,
            sample_shape: &[usize],
            rng: &mut dyn rand::RngCore,
        ) -> $crate::Result<candle_core::Tensor> {
            Ok(self.rsample(sample_shape, rng)?.detach())
        }
        fn has_rsample(&self) -> bool {
            true
        }
    };
    (draw) => {
        fn sample(
            &self,
            sample_shape: &[usize],
            rng: &mut dyn rand::RngCore,
        ) -> $crate::Result<candle_core::Tensor> {
            Ok(self.draw(sample_shape, rng, false)?.detach())
        }
        fn has_rsample(&self) -> bool {
            true
        }
        fn rsample(
            &self,
            sample_shape: &[usize],
            rng: &mut dyn rand::RngCore,
        ) -> $crate::Result<candle_core::Tensor> {
            self.draw(sample_shape, rng, true)
        }
    };
}
pub(crate) use sample_by_rsample;

/// The parameters of the location-scale family `dist`: `loc` (real) and `scale` (positive),
/// broadcast together and validated, with their batch shape (the body of its `new`).
pub(crate) fn loc_scale(
    dist: &'static str,
    loc: &Tensor,
    scale: &Tensor,
) -> Result<([Tensor; 2], Vec<usize>)> {
    let ([loc, scale], batch) = broadcast_params(dist, [("loc", loc, 0), ("scale", scale, 0)])?;
    validate_param(dist, "loc", &loc, &Constraint::Real)?;
    validate_param(dist, "scale", &scale, &Constraint::Positive)?;
    Ok(([loc, scale], batch))
}

/// [`DistError::Expand`] unless the batch shape `from` of `dist` broadcasts to `to` (torch's
/// `expand` rule: size-1 dims grow, new dims are added on the left).
pub(crate) fn check_expand(dist: &'static str, from: &[usize], to: &[usize]) -> Result<()> {
    if broadcasts_to(from, to) {
        return Ok(());
    }
    Err(DistError::Expand {
        dist,
        from: from.to_vec(),
        to: to.to_vec(),
    })
}

/// Broadcast a parameter (batch dims + `event_rank` trailing dims) to `batch + event`, for a
/// family's `expand`; an error names the distribution and both shapes.
pub(crate) fn expand_param(
    dist: &'static str,
    current_batch: &[usize],
    param: &Tensor,
    batch: &[usize],
    event_rank: usize,
) -> Result<Tensor> {
    check_expand(dist, current_batch, batch)?;
    let event = &param.dims()[param.rank() - event_rank..];
    let target: Vec<usize> = batch.iter().chain(event).copied().collect();
    Ok(param.broadcast_as(target)?)
}
