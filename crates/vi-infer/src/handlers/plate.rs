//! `plate`: a batch dim of conditionally independent elements.

use crate::error::{InferError, Result, at_site};
use crate::message::{Message, PlateFrame, SiteKind};
use crate::messenger::Messenger;

/// The handler behind [`Ctx::plate`](crate::Ctx::plate): adds its frame to every sample
/// site inside, expands the site's distribution to the plate's batch dim (a size-1 or
/// missing dim broadcasts; another size is [`InferError::PlateSize`]), and scales the
/// log-density by `size / subsample_size`. A value given to the site (observed data, a
/// condition, a replayed draw) must fit the plate's dim too.
///
/// ```
/// # use candle_core::{DType, Device, Tensor};
/// # use vi_dist::{Constraint, Distribution, Normal};
/// # use vi_infer::{Ctx, ParamStore};
/// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
/// # let mut ctx = Ctx::new(&mut store, &mut rng);
/// use vi_infer::PlateFrame;
/// use vi_infer::handlers::PlateMessenger;
/// let frame = PlateFrame { name: "data".into(), dim: -1, size: 4, subsample_size: 4 };
/// let (z, _) = ctx.with(PlateMessenger::new(frame), |ctx| {
///     ctx.sample("z", Normal::new(&zero, &one)?.to_event(1)?)
/// })?;
/// assert_eq!(z.dims(), &[4, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct PlateMessenger {
    frame: PlateFrame,
}

impl PlateMessenger {
    /// The handler for `frame`.
    ///
    /// ```
    /// let frame = vi_infer::PlateFrame { name: "data".into(), dim: -1, size: 8, subsample_size: 2 };
    /// let _p = vi_infer::handlers::PlateMessenger::new(frame);
    /// ```
    pub fn new(frame: PlateFrame) -> Self {
        Self { frame }
    }
}

impl Messenger for PlateMessenger {
    fn plate(&self) -> Option<&PlateFrame> {
        Some(&self.frame)
    }

    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if msg.kind != SiteKind::Sample {
            return Ok(());
        }
        // Inner plates process first: keep the list outermost first.
        msg.plates.insert(0, self.frame.clone());
        msg.scale *= self.frame.scale();
        let Some(dist) = &msg.dist else {
            return Ok(());
        };
        let f = &self.frame;
        let batch = dist.batch_shape();
        let pos_from_right = f.dim.unsigned_abs();
        let rank = batch.len().max(pos_from_right);
        let mut target: Vec<usize> = std::iter::repeat_n(1, rank - batch.len())
            .chain(batch.iter().copied())
            .collect();
        let i = rank - pos_from_right;
        match target[i] {
            s if s == f.subsample_size => return Ok(()),
            1 => target[i] = f.subsample_size,
            _ => {
                return Err(InferError::PlateSize {
                    site: msg.name.clone(),
                    plate: f.name.clone(),
                    size: f.subsample_size,
                    dim: f.dim,
                    dist: dist.describe(),
                    batch: batch.into(),
                });
            }
        }
        let expanded = dist
            .expand(&target)
            .map_err(|source| at_site(&msg.name, &msg.plates, msg.is_observed, source))?;
        msg.dist = Some(expanded);
        Ok(())
    }

    fn postprocess(&mut self, msg: &Message) -> Result<()> {
        let (SiteKind::Sample, Some(dist), Some(value)) = (msg.kind, &msg.dist, &msg.value) else {
            return Ok(());
        };
        let f = &self.frame;
        let dims = value.dims();
        let Some(batch) = dims.len().checked_sub(dist.event_shape().len()) else {
            return Ok(());
        };
        let batch = &dims[..batch];
        if let Some(i) = batch.len().checked_sub(f.dim.unsigned_abs())
            && batch[i] != f.subsample_size
            && batch[i] != 1
        {
            let what = if msg.is_observed {
                "the observed value"
            } else {
                "the value"
            };
            return Err(InferError::PlateSize {
                site: msg.name.clone(),
                plate: f.name.clone(),
                size: f.subsample_size,
                dim: f.dim,
                dist: what.into(),
                batch: batch.into(),
            });
        }
        Ok(())
    }
}
