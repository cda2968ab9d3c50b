//! The handlers of enumeration: [`EnumMessenger`] (values along a dim of their own) and
//! [`ConfigEnumerate`] (the mark, for every discrete latent site).

use std::collections::HashMap;

use super::{MAX_RANK, rank_error};
use crate::error::{InferError, Result, at_site};
use crate::message::{Message, SiteKind};
use crate::messenger::Messenger;

/// Enumerates, in parallel, the latent sites marked for it (Pyro's `EnumMessenger`): a
/// marked site without a value gets every value of its distribution's finite support along a
/// dim of its own, left of `first_available_dim` (so left of every plate), and its values
/// broadcast against everything downstream. A site outside `markov` gets a dim no other site
/// uses; inside `markov`, a dim none of the sites it can see use, so that a chain recycles a
/// few dims. Every sample site records in its [`Infer`](crate::Infer) which enumerated
/// variable each dim of its log-density stands for.
///
/// [`TraceEnumElbo`](crate::TraceEnumElbo) and [`InferDiscrete`](crate::InferDiscrete) install
/// it; push one with [`Ctx::with`](crate::Ctx::with) to look at an enumerated trace.
///
/// ```
/// # use candle_core::{DType, Device, Tensor};
/// # use vi_dist::{Categorical, Normal};
/// # use vi_infer::{Ctx, ParamStore};
/// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
/// # let mut ctx = Ctx::new(&mut store, &mut rng);
/// use vi_infer::handlers::EnumMessenger;
/// let probs = Tensor::new(&[0.2f64, 0.5, 0.3], &dev)?;
/// let locs = Tensor::new(&[-1.0f64, 0.0, 1.0], &dev)?;
/// let x = Tensor::new(&[0.1f64, 0.7], &dev)?;
/// let ((), tr) = ctx.trace(|ctx| {
///     ctx.with(EnumMessenger::new(-2)?, |ctx| {
///         ctx.plate("data", 2, |ctx| {
///             let z = ctx.sample_enum("z", Categorical::from_probs(&probs)?)?;
///             assert_eq!(z.dims(), &[3, 1]); // the values 0, 1, 2 along dim -2
///             let loc = locs.index_select(&z.flatten_all()?.to_dtype(DType::U32)?, 0)?.reshape((3, 1))?;
///             ctx.observe("x", Normal::new(&loc, &Tensor::new(1.0f64, &dev)?)?, &x)?;
///             Ok(())
///         })
///     })?;
///     Ok(())
/// })?;
/// assert_eq!(tr.get("x").unwrap().log_prob()?.dims(), &[3, 2]);
/// assert_eq!(tr.get("z").unwrap().infer.enum_dim, Some(-2));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct EnumMessenger {
    /// The plate dims right of the enumeration dims (`-1 - first_available_dim`).
    plate_dims: usize,
    /// The next dim a site outside `markov` gets (dims are handed out leftwards).
    next_dim: isize,
    next_id: usize,
    /// The dims handed out outside `markov`, with their ids: every site sees them.
    global: Vec<(isize, usize)>,
    /// The dims handed out inside `markov` (a later site outside `markov` avoids them).
    local: Vec<isize>,
    /// Each site's markov depth when it was seen.
    markov_depths: HashMap<String, usize>,
    /// The enumeration dims each site's value carries, with their ids.
    value_dims: HashMap<String, Vec<(isize, usize)>>,
}

impl EnumMessenger {
    /// A handler whose first enumerated site goes to `first_available_dim` (negative: left of
    /// the plates, `-1 - max_plate_nesting`); the next ones go further left.
    ///
    /// ```
    /// use vi_infer::handlers::EnumMessenger;
    /// assert!(EnumMessenger::new(-2).is_ok());
    /// assert!(EnumMessenger::new(0).is_err());
    /// ```
    pub fn new(first_available_dim: isize) -> Result<Self> {
        if first_available_dim >= 0 {
            return Err(InferError::Invalid(format!(
                "the first enumeration dim must be negative (left of the plates), got \
                 {first_available_dim}"
            )));
        }
        Ok(Self {
            plate_dims: first_available_dim.unsigned_abs() - 1,
            next_dim: first_available_dim,
            next_id: 0,
            global: Vec::new(),
            local: Vec::new(),
            markov_depths: HashMap::new(),
            value_dims: HashMap::new(),
        })
    }

    /// A dim and a fresh id for an enumerated site: a new dim outside `markov` (`visible`
    /// `None`), else the rightmost dim from the next free one that no visible site uses.
    fn allocate(&mut self, visible: Option<&[(isize, usize)]>) -> (isize, usize) {
        let id = self.next_id;
        self.next_id += 1;
        let mut dim = self.next_dim;
        match visible {
            None => {
                while self.local.contains(&dim) {
                    dim -= 1;
                }
                self.next_dim = dim - 1;
                self.global.push((dim, id));
            }
            Some(visible) => {
                while visible.iter().any(|(d, _)| *d == dim) {
                    dim -= 1;
                }
                if !self.local.contains(&dim) {
                    self.local.push(dim);
                }
            }
        }
        (dim, id)
    }
}

impl EnumMessenger {
    /// Stops a site whose distribution or value already has more than [`MAX_RANK`] dims
    /// (built from enumerated values upstream) before its log-density is computed.
    fn check_rank(&self, msg: &Message) -> Result<()> {
        let Some(dist) = &msg.dist else {
            return Ok(());
        };
        let (batch, event) = (dist.batch_shape(), dist.event_shape());
        let value = msg.value.as_ref().map(|v| v.dims());
        let rank = (batch.len() + event.len()).max(value.map_or(0, <[usize]>::len));
        if rank <= MAX_RANK {
            return Ok(());
        }
        let enumerated = self.global.len() + self.local.len();
        Err(rank_error(
            vec![msg.name.clone()],
            rank,
            &format!(
                "its distribution (batch shape {batch:?}, event shape {event:?}){} with {} \
                 enumeration dim(s) handed out so far left of the {} plate dim(s) of \
                 `max_plate_nesting` (its plates: {})",
                value.map_or(String::new(), |v| format!(" and its value (shape {v:?})")),
                enumerated,
                self.plate_dims,
                plate_names(msg)
            ),
        ))
    }
}

/// `` `a` (dim -1, size 3), .. `` or `none`, for errors.
fn plate_names(msg: &Message) -> String {
    if msg.plates.is_empty() {
        return "none".into();
    }
    msg.plates
        .iter()
        .map(|p| format!("`{}` (dim {}, size {})", p.name, p.dim, p.subsample_size))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Adds `(dim, id)` pairs from `more` whose dim `into` does not name yet.
fn merge(into: &mut Vec<(isize, usize)>, more: &[(isize, usize)]) {
    for &(d, i) in more {
        if !into.iter().any(|(x, _)| *x == d) {
            into.push((d, i));
        }
    }
}

impl Messenger for EnumMessenger {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if msg.kind != SiteKind::Sample || msg.dist.is_none() {
            return Ok(());
        }
        // The dims this site can see: every global one, and inside markov those of the sites
        // in its window whose markov context is still open.
        let mut visible = self.global.clone();
        if let Some(scope) = &msg.infer.markov_scope {
            for (name, depth) in scope {
                if self.markov_depths.get(name) == Some(depth)
                    && let Some(dims) = self.value_dims.get(name)
                {
                    merge(&mut visible, dims);
                }
            }
            self.markov_depths
                .insert(msg.name.clone(), msg.infer.markov_depth);
        }
        let enumerate = msg.infer.enumerate && !msg.is_observed && msg.value.is_none();
        self.check_rank(msg)?;
        if enumerate && let Some(dist) = &msg.dist {
            let at = |e| at_site(&msg.name, &msg.plates, false, e);
            let support = dist.enumerate_support(false).map_err(at)?;
            let scoped = msg.infer.markov_scope.is_some();
            let (dim, id) = self.allocate(scoped.then_some(visible.as_slice()));
            let n = support.dims().first().copied().unwrap_or(1);
            let event = dist.event_shape();
            let rank = dim.unsigned_abs().max(dist.batch_shape().len()) + event.len();
            if rank > MAX_RANK {
                let k = dim.unsigned_abs() - self.plate_dims;
                return Err(rank_error(
                    vec![msg.name.clone()],
                    rank,
                    &format!(
                        "enumerating its {} values (event shape {event:?}) along dim {dim} \
                         ({k} enumeration dim(s) in use left of the {} plate dim(s) of \
                         `max_plate_nesting`; its plates: {}; its distribution's batch shape \
                         {:?})",
                        n,
                        self.plate_dims,
                        plate_names(msg),
                        dist.batch_shape()
                    ),
                ));
            }
            // The distribution must not vary along the dim its values take: it would read
            // another variable's values there (one outside the markov window, whose dim was
            // recycled) element by element against its own.
            let batch = dist.batch_shape();
            if let Some(i) = batch.len().checked_sub(dim.unsigned_abs())
                && batch[i] > 1
            {
                return Err(InferError::Enumeration {
                    sites: vec![msg.name.clone()],
                    msg: format!(
                        "its distribution (batch shape {batch:?}) varies along dim {dim}, the \
                         dim its enumerated values get: it depends on a site it cannot see \
                         (outside its `markov` window, whose dim was recycled); widen the \
                         window with `markov_history`"
                    ),
                });
            }
            let shape: Vec<usize> = std::iter::once(n)
                .chain(std::iter::repeat_n(1, dim.unsigned_abs() - 1))
                .chain(dist.event_shape().iter().copied())
                .collect();
            msg.value = Some(support.reshape(shape)?);
            msg.infer.enum_dim = Some(dim);
            msg.infer.dim_ids.retain(|(d, _)| *d != dim);
            msg.infer.dim_ids.insert(0, (dim, id));
        }
        merge(&mut msg.infer.dim_ids, &visible);
        Ok(())
    }

    fn postprocess(&mut self, msg: &Message) -> Result<()> {
        let (SiteKind::Sample, Some(dist), Some(value)) = (msg.kind, &msg.dist, &msg.value) else {
            return Ok(());
        };
        let dims = value.dims();
        let batch = &dims[..dims.len().saturating_sub(dist.event_shape().len())];
        let carried = msg
            .infer
            .dim_ids
            .iter()
            .filter(|(d, _)| {
                batch
                    .len()
                    .checked_sub(d.unsigned_abs())
                    .is_some_and(|i| batch[i] > 1)
            })
            .copied()
            .collect();
        self.value_dims.insert(msg.name.clone(), carried);
        Ok(())
    }
}

/// Marks each latent site whose distribution has a finite support for parallel enumeration
/// (Pyro's `config_enumerate`); what [`Ctx::config_enumerate`](crate::Ctx::config_enumerate)
/// and [`config_enumerate`](crate::config_enumerate) push.
///
/// ```
/// # use candle_core::{DType, Device, Tensor};
/// # use vi_dist::Bernoulli;
/// # use vi_infer::{Ctx, ParamStore};
/// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
/// # let mut ctx = Ctx::new(&mut store, &mut rng);
/// use vi_infer::handlers::ConfigEnumerate;
/// let p = Tensor::new(0.5f64, &dev)?;
/// let ((), tr) = ctx.trace(|ctx| {
///     ctx.with(ConfigEnumerate, |ctx| ctx.sample("z", Bernoulli::from_probs(&p)?))?;
///     Ok(())
/// })?;
/// assert!(tr.get("z").unwrap().infer.enumerate);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ConfigEnumerate;

impl Messenger for ConfigEnumerate {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if msg.is_latent() && msg.dist.as_ref().is_some_and(|d| d.has_enumerate_support()) {
            msg.infer.enumerate = true;
        }
        Ok(())
    }
}
