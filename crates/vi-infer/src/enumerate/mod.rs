//! Discrete latent sites summed out exactly instead of sampled, as Pyro's parallel enumeration:
//! the marks (`ctx.sample_enum`, `config_enumerate`), the handler that gives each enumerated
//! site its own dim left of the plates ([`EnumMessenger`]), `markov` (dims recycled along a
//! chain), the plated sum-product contraction behind
//! [`TraceEnumElbo`](crate::TraceEnumElbo), and [`InferDiscrete`] (Viterbi or posterior
//! draws of the enumerated sites).

pub(crate) mod contract;
mod discrete;
mod markov;
mod messenger;
pub(crate) mod vectorized;

pub(crate) use discrete::apply_mask;
pub use discrete::{InferDiscrete, Temperature};
pub use markov::MarkovMessenger;
pub use messenger::{ConfigEnumerate, EnumMessenger};

/// The most dims a tensor of an enumerated run may have: 8, candle's `MAX_DIMS`. candle-core
/// 0.11's CPU kernels walk strided operands (binary ops, `where_cond`) with `NdIter`, which
/// takes at most `candle_core::nditer::MAX_DIMS` = 8 dims (`candle-core/src/nditer.rs`; past
/// it a `debug_assert!` panics in debug builds, and release builds may index out of bounds or
/// compute on merged dims). Enumeration checks every rank it is about to create against it (an
/// enumerated value, a site's distribution, [`vindex`]'s result, a product in the contraction)
/// and stops with [`InferError::Enumeration`](crate::InferError::Enumeration) instead. The one
/// place the limit is written down in vi-infer.
pub(crate) const MAX_RANK: usize = candle_core::nditer::MAX_DIMS;

/// The error for a tensor of rank `rank` (above [`MAX_RANK`]) that enumeration would need at
/// `sites`: `what` says which tensor and where its dims come from; the message adds the limit
/// and what to do about it.
pub(crate) fn rank_error(sites: Vec<String>, rank: usize, what: &str) -> crate::InferError {
    crate::InferError::Enumeration {
        sites,
        msg: format!(
            "{what} would need a tensor of rank {rank}, but candle's CPU kernels support at most \
             {MAX_RANK} dims (enumeration, plate and event dims together): recycle enumeration \
             dims along chains with `markov`/`markov_history` (or `vectorized_markov`), \
             enumerate fewer variables in parallel (mark fewer sites with \
             `sample_enum`/`config_enumerate`: the others are drawn), or lower \
             `max_plate_nesting` to the plate dims the model uses"
        ),
    }
}

/// A site's inference settings and the bookkeeping enumeration adds to it (Pyro's
/// `msg["infer"]`): whether it is marked for enumeration, and once enumerated, the dim its
/// values lie along and what each enumeration dim of its log-density stands for.
///
/// ```
/// # use candle_core::{DType, Device, Tensor};
/// # use vi_dist::Bernoulli;
/// # use vi_infer::{Ctx, ParamStore};
/// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
/// # let mut ctx = Ctx::new(&mut store, &mut rng);
/// let p = Tensor::new(0.3f64, &dev)?;
/// let (_, tr) = ctx.trace(|ctx| ctx.sample_enum("z", Bernoulli::from_probs(&p)?))?;
/// let z = tr.get("z").unwrap();
/// // Marked; outside an enumerating ELBO it is drawn as any site.
/// assert!(z.infer.enumerate && z.infer.enum_dim.is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Infer {
    /// Marked for parallel enumeration (`ctx.sample_enum`, or [`config_enumerate`] on a
    /// latent site whose distribution has a finite support): Pyro's
    /// `infer={"enumerate": "parallel"}`. Only an enumerating handler
    /// ([`EnumMessenger`], which [`TraceEnumElbo`](crate::TraceEnumElbo) and
    /// [`InferDiscrete`] install) acts on it; elsewhere the site is drawn.
    pub enumerate: bool,
    /// The dim (negative, left of every plate) the site's values were enumerated along; `None`
    /// for a site that was not enumerated (drawn, observed, or replayed from a guide that drew
    /// it).
    pub enum_dim: Option<isize>,
    /// The enumeration dims the site's value and log-density may carry, each with the id (unique
    /// within one run of a model and its guide) of the enumerated variable it stands for: the
    /// site's own, and those of the enumerated sites it can depend on (Pyro's `_dim_to_id`).
    pub dim_ids: Vec<(isize, usize)>,
    /// Inside `markov`: each site visible from this one with the number of markov contexts that
    /// see it (Pyro's `_markov_scope`); `None` outside any.
    pub(crate) markov_scope: Option<Vec<(String, usize)>>,
    /// The number of markov contexts around the site (Pyro's `_markov_depth`).
    pub(crate) markov_depth: usize,
    /// Inside the vectorized steps of [`Ctx::vectorized_markov`](crate::Ctx::vectorized_markov):
    /// the plate of the steps and, for a state, the id of the variable that is its value at
    /// the step before (the same site's enumerated variable at the first step).
    pub(crate) chain: Option<(String, Option<usize>)>,
}

impl Infer {
    /// The id of the enumerated variable dim `dim` stands for, if any.
    ///
    /// ```
    /// let mut infer = vi_infer::Infer::default();
    /// infer.dim_ids.push((-2, 7));
    /// assert_eq!((infer.id_at(-2), infer.id_at(-3)), (Some(7), None));
    /// ```
    pub fn id_at(&self, dim: isize) -> Option<usize> {
        self.dim_ids
            .iter()
            .find(|(d, _)| *d == dim)
            .map(|(_, i)| *i)
    }

    /// The id of the site's own enumerated variable (`None` when it was not enumerated).
    ///
    /// ```
    /// let infer = vi_infer::Infer::default();
    /// assert_eq!(infer.enum_id(), None);
    /// ```
    pub fn enum_id(&self) -> Option<usize> {
        self.enum_dim.and_then(|d| self.id_at(d))
    }
}

/// Marks every latent site of `program` whose distribution has a finite support for
/// parallel enumeration (Pyro's `@config_enumerate`): the program run under a
/// [`ConfigEnumerate`] handler. Sites marked already, observed sites and continuous sites are
/// left as they are.
///
/// ```
/// # use candle_core::{DType, Device, Tensor};
/// # use vi_dist::{Bernoulli, Normal};
/// # use vi_infer::{Ctx, ParamStore};
/// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
/// # let mut ctx = Ctx::new(&mut store, &mut rng);
/// let p = Tensor::new(0.3f64, &dev)?;
/// let mut model = vi_infer::config_enumerate(|ctx: &mut Ctx| {
///     ctx.sample("z", Bernoulli::from_probs(&p)?)?;
///     ctx.sample("w", Normal::new(&zero, &one)?)
/// });
/// let (_, tr) = ctx.trace(|ctx| model(ctx))?;
/// assert!(tr.get("z").unwrap().infer.enumerate);
/// assert!(!tr.get("w").unwrap().infer.enumerate);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn config_enumerate<T>(
    mut program: impl FnMut(&mut crate::Ctx<'_>) -> crate::Result<T>,
) -> impl FnMut(&mut crate::Ctx<'_>) -> crate::Result<T> {
    move |ctx| ctx.config_enumerate(|ctx| program(ctx))
}

/// `table` indexed along its leading dims by the values of `indices` (tensors of any shapes
/// that broadcast together, of any dtype holding whole numbers, such as enumerated sites'
/// values): shape `broadcast(indices) + table.dims()[indices.len()..]`, differentiable in
/// `table`. What Pyro writes `Vindex(table)[a, b]`: with `a` an enumerated value of shape
/// `[K, 1, 1]`, the rows come out along the same enumeration dim.
///
/// A result of more than 8 dims (the indices' broadcast shape and the table's trailing dims:
/// more than candle's CPU kernels take) is [`InferError::Enumeration`](crate::InferError::Enumeration),
/// naming no site (the ELBO adds the program and its last site).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let locs = Tensor::new(&[[0.0f64, 0.5], [1.0, 1.5], [2.0, 2.5]], &Device::Cpu)?;
/// let z = Tensor::new(&[[2.0f64], [0.0]], &Device::Cpu)?; // shape [2, 1]
/// let rows = vi_infer::vindex(&locs, &[&z])?;
/// assert_eq!(rows.dims(), &[2, 1, 2]);
/// assert_eq!(rows.flatten_all()?.to_vec1::<f64>()?, [2.0, 2.5, 0.0, 0.5]);
/// // Two indices: one element per pair, broadcast.
/// let j = Tensor::new(&[1.0f64, 0.0], &Device::Cpu)?; // shape [2]
/// let picked = vi_infer::vindex(&locs, &[&z, &j])?;
/// assert_eq!(picked.dims(), &[2, 2]);
/// assert_eq!(picked.flatten_all()?.to_vec1::<f64>()?, [2.5, 2.0, 0.5, 0.0]);
/// # Ok::<(), vi_infer::InferError>(())
/// ```
pub fn vindex(
    table: &candle_core::Tensor,
    indices: &[&candle_core::Tensor],
) -> crate::Result<candle_core::Tensor> {
    use candle_core::DType;
    let k = indices.len();
    if k == 0 || table.rank() < k {
        return Err(crate::InferError::Invalid(format!(
            "vindex: {k} indices for a table of shape {:?} (one index per leading dim, at least \
             one)",
            table.dims()
        )));
    }
    let shapes: Vec<&[usize]> = indices.iter().map(|i| i.dims()).collect();
    let shape = vi_dist::broadcast_shapes(&shapes).ok_or_else(|| {
        crate::InferError::Invalid(format!("vindex: index shapes {shapes:?} do not broadcast"))
    })?;
    let lead = &table.dims()[..k];
    let rank = shape.len() + table.rank() - k;
    if rank > MAX_RANK {
        return Err(rank_error(
            Vec::new(),
            rank,
            &format!(
                "vindex: indices of shapes {shapes:?} (enumerated values, each along its \
                 enumeration dim) broadcast to {shape:?}, and with the table's trailing dims \
                 {:?} the result",
                &table.dims()[k..]
            ),
        ));
    }
    // The flat row index Σ_i index_i · stride_i, in u32.
    let mut flat: Option<candle_core::Tensor> = None;
    let mut stride = 1usize;
    for (i, index) in indices.iter().enumerate().rev() {
        let idx = index
            .to_dtype(DType::U32)?
            .broadcast_as(shape.as_slice())?
            .contiguous()?;
        if vi_dist::validation_enabled() && idx.elem_count() > 0 {
            let m = idx.flatten_all()?.max(0)?.to_scalar::<u32>()? as usize;
            if m >= lead[i] {
                return Err(crate::InferError::Invalid(format!(
                    "vindex: index {m} is out of range for dim {i} of size {} (table shape {:?})",
                    lead[i],
                    table.dims()
                )));
            }
        }
        let term = if stride == 1 {
            idx
        } else {
            idx.affine(stride as f64, 0.0)?
        };
        flat = Some(match flat {
            None => term,
            Some(f) => (f + term)?,
        });
        stride *= lead[i];
    }
    let Some(flat) = flat else {
        return Err(crate::InferError::Invalid("vindex: no index".into()));
    };
    let rest = &table.dims()[k..];
    let rows = table.reshape(
        std::iter::once(stride)
            .chain(rest.iter().copied())
            .collect::<Vec<_>>(),
    )?;
    let picked = rows.index_select(&flat.flatten_all()?, 0)?;
    let out: Vec<usize> = shape.iter().chain(rest).copied().collect();
    Ok(picked.reshape(out)?)
}
