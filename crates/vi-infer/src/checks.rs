//! The checks an ELBO makes on the two traces of a run before it computes anything, as
//! Pyro's `check_site_shape` and `check_model_guide_match`: a program that does not fit is a
//! typed error, never a number.

use vi_dist::Distribution;

use crate::error::{InferError, Result};
use crate::message::{PlateFrame, SiteKind};
use crate::trace::{Site, Trace};

/// The batch shape of a sample site's log-density: the value's batch dims broadcast with the
/// distribution's batch shape.
pub(crate) fn site_batch_shape(site: &Site) -> Result<Vec<usize>> {
    let Some(dist) = &site.dist else {
        return Ok(Vec::new());
    };
    let shape_err =
        |source| crate::error::at_site(&site.name, &site.plates, site.is_observed, source);
    let dims = site.value.dims();
    let event = dist.event_shape().len();
    if dims.len() < event {
        return Err(shape_err(vi_dist::DistError::ValueShape {
            dist: dist.name(),
            value: dims.to_vec(),
            batch: dist.batch_shape().to_vec(),
            event: dist.event_shape().to_vec(),
        }));
    }
    vi_dist::broadcast_shapes(&[&dims[..dims.len() - event], dist.batch_shape()]).ok_or_else(|| {
        shape_err(vi_dist::DistError::ValueShape {
            dist: dist.name(),
            value: dims.to_vec(),
            batch: dist.batch_shape().to_vec(),
            event: dist.event_shape().to_vec(),
        })
    })
}

/// `name (dim d, size n)` for each plate.
fn plate_names(plates: &[PlateFrame]) -> Vec<String> {
    plates
        .iter()
        .map(|p| format!("`{}` (dim {}, size {})", p.name, p.dim, p.subsample_size))
        .collect()
}

/// `Normal batch [3] event []`, for messages.
fn describe_dist(d: &dyn Distribution) -> String {
    format!(
        "{} with batch shape {:?} and event shape {:?}",
        d.describe(),
        d.batch_shape(),
        d.event_shape()
    )
}

/// Pyro's `check_site_shape`: every dim of a sample site's log-density is 1 or the size of
/// the site's plate at that dim; dims left of `max_plate_nesting` (when known) are the ELBO's
/// own (particles) and not checked. A mask or tensor scale must not widen the shape. (Runs
/// at every step: nothing is allocated unless there is an error to build.)
pub(crate) fn check_site_shape(site: &Site, max_plate_nesting: Option<usize>) -> Result<()> {
    if site.kind != SiteKind::Sample {
        return Ok(());
    }
    let Some(dist) = &site.dist else {
        return Ok(());
    };
    if let Some(n) = max_plate_nesting
        && let Some(p) = site.plates.iter().find(|p| p.dim.unsigned_abs() > n)
    {
        return Err(InferError::Plate {
            plate: p.name.clone(),
            msg: format!(
                "at site `{}`, dim {} lies left of max_plate_nesting = {n}",
                site.name, p.dim
            ),
        });
    }
    let dims = site.value.dims();
    let batch = dist.batch_shape();
    let value_batch = &dims[..dims.len().saturating_sub(dist.event_shape().len())];
    let rank = value_batch.len().max(batch.len());
    // The size of the log-density at dim -k: the value's and the distribution's broadcast.
    let size_at = |k: usize| {
        let v = value_batch
            .len()
            .checked_sub(k)
            .map_or(1, |i| value_batch[i]);
        let b = batch.len().checked_sub(k).map_or(1, |i| batch[i]);
        if v == 1 { b } else { v }
    };
    let checked = max_plate_nesting.map_or(rank, |n| n.min(rank));
    for k in 1..=checked {
        let dim = -(k as isize);
        let size = size_at(k);
        let plate = site.plates.iter().find(|p| p.dim == dim);
        let ok = size == 1 || plate.is_some_and(|p| size == p.subsample_size);
        if !ok {
            let shape = site_batch_shape(site)?;
            return Err(InferError::SiteShape {
                site: site.name.clone(),
                what: describe_dist(dist.as_ref()),
                shape: shape.into(),
                dim,
                size,
                plate: plate.map(|p| Box::new((p.name.clone(), p.subsample_size))),
                plates: plate_names(&site.plates).into(),
            });
        }
    }
    // A mask or a tensor scale broadcasts against the log-density: it must fit in it.
    for (label, t) in [("the mask", &site.mask), ("the scale", &site.scale_tensor)] {
        let Some(t) = t else { continue };
        let fits = t.rank() <= rank
            && t.dims()
                .iter()
                .rev()
                .enumerate()
                .all(|(k, &m)| m == 1 || m == size_at(k + 1));
        if !fits {
            let shape = site_batch_shape(site)?;
            let widened = vi_dist::broadcast_shapes(&[t.dims(), &shape]);
            return Err(InferError::SiteShape {
                site: site.name.clone(),
                what: format!(
                    "{label} of shape {:?} with {}",
                    t.dims(),
                    describe_dist(dist.as_ref())
                ),
                shape: widened.unwrap_or_else(|| t.dims().to_vec()).into(),
                dim: -(t.rank() as isize),
                size: t.dims().first().copied().unwrap_or(1),
                plate: None,
                plates: plate_names(&site.plates).into(),
            });
        }
    }
    Ok(())
}

/// Pyro's `check_model_guide_match`, stricter: every guide sample site is a latent site of
/// the model with the same event shape and a batch shape that agrees (dims of size 1
/// broadcast; dims left of `max_plate_nesting` are not compared), every model latent site is
/// in the guide, and every plate of the guide is a plate of the model. Auxiliary guide sites
/// ([`Ctx::sample_auxiliary`](crate::Ctx::sample_auxiliary)) are the guide's own, and a model
/// site of the same name is an error.
pub(crate) fn check_model_guide_match(
    model: &Trace,
    guide: &Trace,
    max_plate_nesting: Option<usize>,
) -> Result<()> {
    // An auxiliary site is the guide's own: the model never samples it.
    for g in guide
        .sites()
        .filter(|s| s.kind == SiteKind::Sample && !s.is_auxiliary)
    {
        let Some(m) = model.get(&g.name).filter(|m| m.is_latent()) else {
            return Err(InferError::GuideSiteNotInModel {
                site: g.name.clone(),
            });
        };
        let (Some(md), Some(gd)) = (&m.dist, &g.dist) else {
            continue;
        };
        if md.event_shape() != gd.event_shape() {
            return Err(InferError::EventShape {
                site: g.name.clone(),
                model_dist: md.describe(),
                guide_dist: gd.describe(),
                model: md.event_shape().into(),
                guide: gd.event_shape().into(),
            });
        }
        let (mb, gb) = (md.batch_shape(), gd.batch_shape());
        if mb == gb {
            continue;
        }
        let compared = max_plate_nesting.unwrap_or(usize::MAX);
        let rank = mb.len().max(gb.len()).min(compared);
        for k in 1..=rank {
            let size = |b: &[usize]| b.len().checked_sub(k).map_or(1, |i| b[i]);
            if size(mb) != size(gb) {
                let full = |d: &dyn Distribution| {
                    d.batch_shape()
                        .iter()
                        .chain(d.event_shape())
                        .copied()
                        .collect::<Box<[usize]>>()
                };
                return Err(InferError::BatchShape {
                    site: g.name.clone(),
                    model_dist: md.describe(),
                    guide_dist: gd.describe(),
                    model: full(md.as_ref()),
                    guide: full(gd.as_ref()),
                    dim: -(k as isize),
                });
            }
        }
    }
    // A site enumerated in the model is summed out there: the guide does not sample it.
    for m in model
        .sites()
        .filter(|s| s.is_latent() && s.infer.enum_dim.is_none())
    {
        if guide.get(&m.name).is_some_and(|g| g.is_auxiliary) {
            return Err(InferError::Invalid(format!(
                "site `{}` is an auxiliary site of the guide and a latent site of the model: \
                 rename one",
                m.name
            )));
        }
        if !guide.contains(&m.name) {
            return Err(InferError::LatentNotInGuide {
                site: m.name.clone(),
            });
        }
    }
    // Every plate of the guide is one of the model's (one allocation, for the model's
    // plate names).
    let mut model_plates: Vec<&str> = Vec::new();
    for_each_plate(model, |p, _| {
        if !model_plates.contains(&p) {
            model_plates.push(p);
        }
    });
    let mut missing = None;
    for_each_plate(guide, |p, site| {
        if missing.is_none() && !model_plates.contains(&p) {
            missing = Some((p, site));
        }
    });
    if let Some((plate, site)) = missing {
        return Err(InferError::GuidePlateNotInModel {
            plate: plate.to_string(),
            site: site.map(str::to_string),
        });
    }
    Ok(())
}

/// Calls `f` with each plate a trace's sites live in (and each subsampled plate it drew, and
/// each plate entered with no site in it: `None`), with the site, as often as they occur.
fn for_each_plate<'t>(trace: &'t Trace, mut f: impl FnMut(&'t str, Option<&'t str>)) {
    for s in trace.sites() {
        for p in &s.plates {
            f(&p.name, Some(&s.name));
        }
        if s.kind == SiteKind::Subsample {
            f(&s.name, Some(&s.name));
        }
    }
    for p in trace.plates_entered() {
        f(p, None);
    }
}
