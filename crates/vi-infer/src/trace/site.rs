//! `Site`: one site of a trace, and its log-density.

use std::sync::OnceLock;

use candle_core::Tensor;
use vi_dist::Distribution;

use crate::error::{InferError, Result, at_site};
use crate::message::{Message, PlateFrame, SiteKind};
use crate::site_options::SiteOptions;

/// One site of a trace: what `ctx.sample` / `observe` / `param` / `deterministic` recorded.
///
/// ```
/// # use candle_core::{DType, Device, Tensor};
/// # use vi_dist::{Constraint, Distribution, Normal};
/// # use vi_infer::{Ctx, ParamStore};
/// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
/// # let mut ctx = Ctx::new(&mut store, &mut rng);
/// let (_, tr) = ctx.trace(|ctx| {
///     let s = ctx.param("s", &one, Constraint::Positive)?;
///     let z = ctx.sample("z", Normal::new(&zero, &s)?)?;
///     ctx.observe("x", Normal::new(&z, &one)?, &one)
/// })?;
/// let z = tr.get("z").unwrap();
/// assert!(z.is_latent() && z.dist.is_some() && z.plates.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Site {
    /// The site's name.
    pub name: String,
    /// What kind of site.
    pub kind: SiteKind,
    /// The distribution (sample sites), expanded to the site's plates.
    pub dist: Option<Box<dyn Distribution>>,
    /// The value.
    pub value: Tensor,
    /// Whether the value is data.
    pub is_observed: bool,
    /// Whether this is an auxiliary guide site (a latent of the guide alone).
    pub is_auxiliary: bool,
    /// The plates the site lives in, outermost first.
    pub plates: Vec<PlateFrame>,
    /// The iterations of sequential plates it lives in ([`Ctx::plate_seq`](crate::Ctx::plate_seq)).
    pub sequential: Vec<crate::SequentialFrame>,
    /// The factor its log-density is multiplied by.
    pub scale: f64,
    /// A per-element factor on top of `scale` (`None`: none).
    pub scale_tensor: Option<Tensor>,
    /// Where its log-density counts (`None`: everywhere).
    pub mask: Option<Tensor>,
    /// Its enumeration mark and dims (see [`Infer`](crate::Infer)).
    pub infer: crate::enumerate::Infer,
    /// The options it was sampled with ([`Ctx::sample_with`](crate::Ctx::sample_with)).
    pub options: SiteOptions,
    log_prob: OnceLock<Tensor>,
}

impl Clone for Site {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            kind: self.kind,
            dist: self.dist.as_ref().map(|d| d.clone_box()),
            value: self.value.clone(),
            is_observed: self.is_observed,
            is_auxiliary: self.is_auxiliary,
            plates: self.plates.clone(),
            sequential: self.sequential.clone(),
            scale: self.scale,
            scale_tensor: self.scale_tensor.clone(),
            mask: self.mask.clone(),
            infer: self.infer.clone(),
            options: self.options.clone(),
            log_prob: self.log_prob.clone(),
        }
    }
}

impl Site {
    pub(super) fn from_message(msg: &Message) -> Option<Self> {
        Some(Self {
            name: msg.name.clone(),
            kind: msg.kind,
            dist: msg.dist.as_ref().map(|d| d.clone_box()),
            value: msg.value.clone()?,
            is_observed: msg.is_observed,
            is_auxiliary: msg.is_auxiliary,
            plates: msg.plates.clone(),
            sequential: msg.sequential.clone(),
            scale: msg.scale,
            scale_tensor: msg.scale_tensor.clone(),
            mask: msg.mask.clone(),
            infer: msg.infer.clone(),
            options: msg.options.clone(),
            log_prob: OnceLock::new(),
        })
    }

    /// [`from_message`](Site::from_message) taking the message: its name, distribution and
    /// plates move into the site instead of being copied.
    pub(super) fn from_owned(msg: Message) -> Option<Self> {
        Some(Self {
            value: msg.value?,
            name: msg.name,
            kind: msg.kind,
            dist: msg.dist,
            is_observed: msg.is_observed,
            is_auxiliary: msg.is_auxiliary,
            plates: msg.plates,
            sequential: msg.sequential,
            scale: msg.scale,
            scale_tensor: msg.scale_tensor,
            mask: msg.mask,
            infer: msg.infer,
            options: msg.options,
            log_prob: OnceLock::new(),
        })
    }

    /// Whether this is a latent sample site.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let (_, tr) = ctx.trace(|ctx| {
    ///     let s = ctx.param("s", &one, Constraint::Positive)?;
    ///     let z = ctx.sample("z", Normal::new(&zero, &s)?)?;
    ///     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// })?;
    /// assert!(tr.get("z").unwrap().is_latent());
    /// assert!(!tr.get("x").unwrap().is_latent());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_latent(&self) -> bool {
        self.kind == SiteKind::Sample && !self.is_observed
    }

    /// Whether this is an observed sample site.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let (_, tr) = ctx.trace(|ctx| {
    ///     let s = ctx.param("s", &one, Constraint::Positive)?;
    ///     let z = ctx.sample("z", Normal::new(&zero, &s)?)?;
    ///     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// })?;
    /// assert!(tr.get("x").unwrap().is_observed_sample());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_observed_sample(&self) -> bool {
        self.kind == SiteKind::Sample && self.is_observed
    }

    /// The distribution's `log_prob` of the value, unscaled and unmasked (batch-shaped).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let (_, tr) = ctx.trace(|ctx| ctx.scale(2.0, |ctx| ctx.sample("z", Normal::new(&zero, &one)?)))?;
    /// let z = tr.get("z").unwrap();
    /// let scaled = (z.unscaled_log_prob()? * 2.0)?;
    /// assert_eq!(scaled.to_vec1::<f64>()?, z.log_prob()?.to_vec1::<f64>()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unscaled_log_prob(&self) -> Result<Tensor> {
        let Some(dist) = &self.dist else {
            return Err(InferError::Invalid(format!(
                "site `{}` has no distribution",
                self.name
            )));
        };
        // A value `ctx.observe` already checked is not read back again: the support check
        // remembers the tensors it passed (`vi_dist::assume_in_support`).
        // An enumerated site's value is its whole support: a family may read the density of
        // every value off its parameters at once (no broadcast copy, no gather).
        if let Some(dim) = self.infer.enum_dim
            && let Some(lp) = dist.log_prob_enumerated(&self.value, dim)
        {
            return lp.map_err(|source| at_site(&self.name, &self.plates, false, source));
        }
        let lp = dist.log_prob(&self.value);
        lp.map_err(|source| at_site(&self.name, &self.plates, self.is_observed, source))
    }

    /// Applies the site's mask (0 where clear) and scale to a batch-shaped term (a log-density
    /// or a KL).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let m = Tensor::new(&[1u8, 0, 1], &dev)?;
    /// let (_, tr) = ctx.trace(|ctx| ctx.mask(&m, |ctx| ctx.sample("z", Normal::new(&zero, &one)?)))?;
    /// let t = tr.get("z").unwrap().scale_and_mask(&one)?;
    /// assert_eq!(t.to_vec1::<f64>()?, vec![1.0, 0.0, 1.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn scale_and_mask(&self, t: &Tensor) -> Result<Tensor> {
        let mut t = t.clone();
        if let Some(mask) = &self.mask {
            let shape = vi_dist::broadcast_shapes(&[t.dims(), mask.dims()]).ok_or_else(|| {
                InferError::Invalid(format!(
                    "site `{}`: mask of shape {:?} does not broadcast with {:?}",
                    self.name,
                    mask.dims(),
                    t.dims()
                ))
            })?;
            let tb = t.broadcast_as(shape.as_slice())?;
            let zeros = tb.zeros_like()?;
            t = mask
                .broadcast_as(shape.as_slice())?
                .where_cond(&tb, &zeros)?;
        }
        if self.scale != 1.0 {
            t = (t * self.scale)?;
        }
        if let Some(s) = &self.scale_tensor {
            t = t.broadcast_mul(&s.to_dtype(t.dtype())?)?;
        }
        Ok(t)
    }

    /// The site's log-density: `log_prob(value)`, masked and scaled (Pyro's
    /// `site["log_prob"]`), computed once and cached.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let (_, tr) = ctx.trace(|ctx| {
    ///     let s = ctx.param("s", &one, Constraint::Positive)?;
    ///     let z = ctx.sample("z", Normal::new(&zero, &s)?)?;
    ///     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// })?;
    /// let lp = tr.get("x").unwrap().log_prob()?;
    /// assert_eq!(lp.dims(), &[3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn log_prob(&self) -> Result<&Tensor> {
        if let Some(lp) = self.log_prob.get() {
            return Ok(lp);
        }
        let lp = self.scale_and_mask(&self.unscaled_log_prob()?)?;
        let _ = self.log_prob.set(lp);
        self.log_prob
            .get()
            .ok_or_else(|| InferError::Invalid("log_prob cache".into()))
    }

    /// The sum of [`log_prob`](Site::log_prob): a scalar tensor.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let (_, tr) = ctx.trace(|ctx| {
    ///     let s = ctx.param("s", &one, Constraint::Positive)?;
    ///     let z = ctx.sample("z", Normal::new(&zero, &s)?)?;
    ///     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// })?;
    /// let total = tr.get("x").unwrap().log_prob_sum()?;
    /// assert_eq!(total.dims(), &[] as &[usize]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn log_prob_sum(&self) -> Result<Tensor> {
        crate::util::sum_all(self.log_prob()?)
    }
}
