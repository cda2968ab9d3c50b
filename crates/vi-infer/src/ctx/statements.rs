//! The statements of a model or guide: sample and observe sites, factors, parameters,
//! modules and deterministic sites.

use candle_core::Tensor;
use rand::{RngCore, SeedableRng};
use vi_dist::{Constraint, Distribution};

use super::Ctx;
use crate::error::{InferError, Result, at_site};
use crate::message::{Message, PlateFrame, SiteKind};
use crate::param_store::ParamStore;
use crate::site_options::SiteOptions;

impl Ctx<'_> {
    /// A latent random variable: `pyro.sample(name, dist)`. The value is drawn from `dist`
    /// (reparameterised when it has `rsample`) unless a handler supplies one (replay,
    /// condition, seed). Inside plates, `dist` is expanded to the plates' batch dims.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
    /// assert_eq!(z.dims(), &[3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sample(&mut self, name: &str, dist: impl Distribution) -> Result<Tensor> {
        self.sample_boxed(name, Box::new(dist))
    }

    /// [`sample`](Ctx::sample) for a boxed distribution.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let d: Box<dyn Distribution> = Box::new(Normal::new(&zero, &one)?);
    /// let z = ctx.sample_boxed("z", d)?;
    /// assert_eq!(z.dims(), &[3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sample_boxed(&mut self, name: &str, dist: Box<dyn Distribution>) -> Result<Tensor> {
        let mut msg = Message::new(name, SiteKind::Sample);
        msg.dist = Some(dist);
        self.apply_sample(msg)
    }

    /// Applies a latent sample site: drawn from the context's generator, or, in data-parallel
    /// mode inside a plate this rank took a share of, from a generator of this rank's own
    /// (seeded from the shared one, so every rank's shared stream stays in step), so that
    /// the ranks' local draws are independent.
    fn apply_sample(&mut self, msg: Message) -> Result<Tensor> {
        match (self.shard, self.sharded.is_empty()) {
            (Some((rank, world)), false) if world > 1 => {
                let sharded = self.sharded.clone();
                self.apply(msg, move |msg, store, rng| {
                    if msg.plates.iter().any(|p| sharded.contains(&p.name)) {
                        let mut own = rand_chacha::ChaCha8Rng::seed_from_u64(rng.next_u64());
                        own.set_stream(rank as u64 + 1);
                        draw(msg, store, &mut own)
                    } else {
                        draw(msg, store, rng)
                    }
                })
            }
            _ => self.apply(msg, draw),
        }
    }

    /// An auxiliary latent of a guide (Pyro's `pyro.sample(name, d, infer={"is_auxiliary":
    /// True})`): drawn as [`sample`](Ctx::sample) draws, but a site of the guide alone, which
    /// the model never samples. The ELBOs count its `log q` (the mean-field ELBO its negative
    /// entropy in closed form where it has one) under its own name, with
    /// [`TermKind::Auxiliary`](crate::TermKind::Auxiliary). The continuous autoguides draw
    /// their joint latent vector this way and give each model site a `Delta` of it.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let (_, tr) = ctx.trace(|ctx| ctx.sample_auxiliary("u", Box::new(Normal::new(&zero, &one)?)))?;
    /// assert!(tr.get("u").unwrap().is_auxiliary);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sample_auxiliary(&mut self, name: &str, dist: Box<dyn Distribution>) -> Result<Tensor> {
        let mut msg = Message::new(name, SiteKind::Sample);
        msg.dist = Some(dist);
        msg.is_auxiliary = true;
        self.apply(msg, draw)
    }

    /// [`sample`](Ctx::sample) with per-site options (Pyro's `pyro.sample(name, dist,
    /// infer={...})`), recorded on the site for the ELBO: e.g. the
    /// [`Baseline`](crate::Baseline) of a non-reparameterised guide site, which
    /// [`TraceGraphElbo`](crate::TraceGraphElbo) subtracts from its score-function cost.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Bernoulli, Distribution};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// use vi_infer::{Baseline, SiteOptions};
    /// let probs = Tensor::new(&[0.2f64, 0.5, 0.9], &dev)?;
    /// let opts = SiteOptions::new().baseline(Baseline::decaying_average(0.9)?);
    /// let (c, tr) = ctx.trace(|ctx| ctx.sample_with("c", Bernoulli::from_probs(&probs)?, opts))?;
    /// assert_eq!(c.dims(), &[3]);
    /// assert!(tr.get("c").unwrap().options.baseline.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sample_with(
        &mut self,
        name: &str,
        dist: impl Distribution,
        options: SiteOptions,
    ) -> Result<Tensor> {
        let mut msg = Message::new(name, SiteKind::Sample);
        msg.dist = Some(Box::new(dist));
        msg.options = options;
        self.apply_sample(msg)
    }

    /// An observed random variable: `pyro.sample(name, dist, obs=value)`. Its log-density
    /// enters the ELBO's likelihood term; a value outside `dist`'s support is a typed error
    /// (when validation is on).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let x = ctx.observe("x", Normal::new(&zero, &one)?, &one)?;
    /// assert_eq!(x.to_vec1::<f64>()?, vec![1.0; 3]);
    /// // A value outside the support is a typed error naming the site.
    /// let rate = vi_dist::Exponential::new(&one)?;
    /// let err = ctx.observe("y", rate, &(&zero - 1.0)?).unwrap_err();
    /// assert!(matches!(err, vi_infer::InferError::Observed { .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn observe(
        &mut self,
        name: &str,
        dist: impl Distribution,
        value: &Tensor,
    ) -> Result<Tensor> {
        self.observe_boxed(name, Box::new(dist), value)
    }

    /// [`observe`](Ctx::observe) for a boxed distribution.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let d: Box<dyn Distribution> = Box::new(Normal::new(&zero, &one)?);
    /// ctx.observe_boxed("x", d, &one)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn observe_boxed(
        &mut self,
        name: &str,
        dist: Box<dyn Distribution>,
        value: &Tensor,
    ) -> Result<Tensor> {
        let mut msg = Message::new(name, SiteKind::Sample);
        if vi_dist::validation_enabled() {
            dist.validate(value)
                .map_err(|source| at_site(name, &self.plates(), true, source))?;
        }
        msg.dist = Some(dist);
        msg.value = Some(value.clone());
        msg.is_observed = true;
        self.apply(msg, draw)
    }

    /// Adds `log_weight` to the log-density of the program (`pyro.factor`): an observed site
    /// of a [`Unit`](vi_dist::Unit) distribution, whose term in the ELBO is `log_weight`
    /// (summed, scaled and masked as any site; its shape is a batch shape, fit to the plates
    /// around it). A factor belongs in the model: in a guide it is an error at the step.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let w = Tensor::new(&[-0.5f64, 1.0, 2.0], &dev)?;
    /// let (_, tr) = ctx.trace(|ctx| ctx.plate("data", 3, |ctx| ctx.factor("penalty", &w)))?;
    /// assert_eq!(tr.get("penalty").unwrap().log_prob()?.to_vec1::<f64>()?, [-0.5, 1.0, 2.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn factor(&mut self, name: &str, log_weight: &Tensor) -> Result<Tensor> {
        let dist =
            vi_dist::Unit::new(log_weight).map_err(|e| at_site(name, &self.plates(), true, e))?;
        let mut msg = Message::new(name, SiteKind::Sample);
        msg.value = Some(log_weight.detach().zeros_like()?);
        msg.dist = Some(Box::new(dist));
        msg.is_observed = true;
        self.apply(msg, draw)
    }

    /// An observation with missing entries (Pyro's `obs_mask`): where `obs_mask` is set,
    /// `value` is observed (site `{name}_observed`, masked to those entries); elsewhere the
    /// entries are latent (site `{name}_unobserved`, masked to the others, which the guide
    /// must sample), and whatever `value` holds there (NaN, say) is never read. Returns the
    /// two combined, recorded as the deterministic site `name`. `obs_mask` is a boolean (u8)
    /// tensor of the batch shape (or broadcastable to it).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let x = Tensor::new(&[0.5f64, f64::NAN, 1.5], &dev)?;
    /// let seen = Tensor::new(&[1u8, 0, 1], &dev)?;
    /// let (v, tr) = ctx.trace(|ctx| ctx.observe_masked("x", Normal::new(&zero, &one)?, &x, &seen))?;
    /// let v = v.to_vec1::<f64>()?;
    /// assert_eq!((v[0], v[2]), (0.5, 1.5));
    /// assert!(v[1].is_finite()); // drawn by the `x_unobserved` site
    /// assert!(tr.get("x_observed").unwrap().is_observed && tr.get("x_unobserved").unwrap().is_latent());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn observe_masked(
        &mut self,
        name: &str,
        dist: impl Distribution,
        value: &Tensor,
        obs_mask: &Tensor,
    ) -> Result<Tensor> {
        let seen = if obs_mask.dtype() == candle_core::DType::U8 {
            obs_mask.clone()
        } else {
            obs_mask.ne(0.0)?
        };
        let unseen = seen.eq(0u8)?;
        // The mask covers the batch dims of the value, not its event dims.
        let event = dist.event_shape().len();
        let value_batch = &value.dims()[..value.rank().saturating_sub(event)];
        if value.rank() < event
            || seen.rank() > value_batch.len().max(dist.batch_shape().len())
            || vi_dist::broadcast_shapes(&[seen.dims(), value_batch, dist.batch_shape()]).is_none()
        {
            return Err(InferError::Invalid(format!(
                "site `{name}`: obs_mask of shape {:?} does not fit the batch shape of the value \
                 {:?} (event shape {:?}): it masks whole events",
                seen.dims(),
                value.dims(),
                dist.event_shape()
            )));
        }
        let at = |plates: &[PlateFrame], e| at_site(name, plates, true, e);
        let observed_dist = dist.mask(&seen).map_err(|e| at(&self.plates(), e))?;
        let latent_dist = dist.mask(&unseen).map_err(|e| at(&self.plates(), e))?;
        let observed = self.observe(&format!("{name}_observed"), observed_dist, value)?;
        let latent = self.sample(&format!("{name}_unobserved"), latent_dist)?;
        // The mask over the batch dims, widened by the event dims.
        let shape: Vec<usize> = seen
            .dims()
            .iter()
            .copied()
            .chain(std::iter::repeat_n(1, event))
            .collect();
        let out_shape =
            vi_dist::broadcast_shapes(&[observed.dims(), latent.dims()]).ok_or_else(|| {
                InferError::Invalid(format!(
                    "site `{name}`: observed value {:?} and latent draw {:?} do not broadcast",
                    observed.dims(),
                    latent.dims()
                ))
            })?;
        let keep = seen.reshape(shape)?.broadcast_as(out_shape.as_slice())?;
        let combined = keep.where_cond(
            &observed.broadcast_as(out_shape.as_slice())?,
            &latent.broadcast_as(out_shape.as_slice())?,
        )?;
        self.deterministic(name, &combined)
    }

    /// A learnable parameter: `pyro.param(name, init, constraint=...)`. Created from `init`
    /// the first time (stored unconstrained), read from the store afterwards; the returned
    /// tensor lies inside `constraint` and is differentiable in the stored `Var`.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let s = ctx.param("s", &one, Constraint::Positive)?;
    /// assert_eq!(s.to_vec1::<f64>()?, vec![1.0; 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn param(&mut self, name: &str, init: &Tensor, constraint: Constraint) -> Result<Tensor> {
        self.param_with(name, || Ok(init.clone()), constraint)
    }

    /// [`param`](Ctx::param) with a lazily built initial value (built only the first time).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let w = ctx.param_with("w", || Tensor::zeros((2, 3), DType::F64, &Device::Cpu), Constraint::Real)?;
    /// assert_eq!(w.dims(), &[2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn param_with(
        &mut self,
        name: &str,
        init: impl FnOnce() -> candle_core::Result<Tensor>,
        constraint: Constraint,
    ) -> Result<Tensor> {
        let msg = Message::new(name, SiteKind::Param);
        self.apply(msg, move |msg, store, _| {
            msg.value = Some(store.param(name, init, &constraint)?);
            Ok(())
        })
    }

    /// Marks the candle-nn module whose variables live in the store under `name` (built from
    /// `store.var_builder(name)`) as used by this run, so SVI steps its variables; returns
    /// the module, for chaining: `ctx.module("decoder", &decoder)?.forward(&z)?`.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// use candle_nn::Module;
    /// # use vi_infer::{Ctx, ParamStore};
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F32);
    /// let encoder = candle_nn::linear(4, 2, store.var_builder("encoder")?)?;
    /// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let x = Tensor::ones((1, 4), DType::F32, &dev)?;
    /// let h = ctx.module("encoder", &encoder)?.forward(&x)?;
    /// assert_eq!((h.dims(), ctx.modules()), (&[1, 2][..], &["encoder".to_string()][..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn module<'m, M>(&mut self, name: &str, module: &'m M) -> Result<&'m M> {
        if !self.store.has_module(name) {
            return Err(InferError::Param {
                name: name.to_string(),
                msg: "no module variables live under this prefix: build the module from \
                      `store.var_builder(name)`"
                    .into(),
            });
        }
        if !self.modules.iter().any(|m| m == name) {
            self.modules.push(name.to_string());
        }
        Ok(module)
    }

    /// Records `value` as a deterministic site (`pyro.deterministic`): in the trace, with no
    /// log-density.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let ((), tr) = ctx.trace(|ctx| {
    ///     ctx.deterministic("y", &one)?;
    ///     Ok(())
    /// })?;
    /// assert_eq!(tr.get("y").unwrap().kind, vi_infer::SiteKind::Deterministic);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn deterministic(&mut self, name: &str, value: &Tensor) -> Result<Tensor> {
        let mut msg = Message::new(name, SiteKind::Deterministic);
        msg.value = Some(value.clone());
        self.apply(msg, |_, _, _| Ok(()))
    }
}

/// The default action for a sample site or a subsampled plate without a value: draw it.
pub(crate) fn draw(msg: &mut Message, _: &mut ParamStore, rng: &mut dyn RngCore) -> Result<()> {
    draw_with(msg, rng)
}

/// Data-parallel: draws the world's `n_world` indices of a subsampled plate exactly as one
/// process drawing `n_world` would (so the generator advances alike on every rank), and keeps
/// rank `rank`'s contiguous share of `msg`'s `subsample_size` of them.
pub(crate) fn draw_share(
    msg: &mut Message,
    rng: &mut dyn RngCore,
    n_world: usize,
    rank: usize,
) -> Result<()> {
    let Some(s) = &msg.subsample else {
        return Err(InferError::Invalid(format!(
            "site `{}` is not a subsampled plate",
            msg.name
        )));
    };
    let all: Vec<u32> = if n_world == s.size {
        (0..s.size as u32).collect()
    } else {
        rand::seq::index::sample(rng, s.size, n_world)
            .into_iter()
            .map(|i| i as u32)
            .collect()
    };
    let b = s.subsample_size;
    let mine = all[rank * b..(rank + 1) * b].to_vec();
    msg.value = Some(Tensor::from_vec(mine, b, &s.device)?);
    Ok(())
}

/// Draws a sample site's value from its distribution with `rng` (rsample when available), or
/// a subsampled plate's indices: `subsample_size` distinct indices in `0..size` as a u32
/// tensor (all of them, in order, when `subsample_size == size`).
fn draw_with(msg: &mut Message, rng: &mut dyn RngCore) -> Result<()> {
    if let Some(s) = &msg.subsample {
        let idx: Vec<u32> = if s.subsample_size == s.size {
            (0..s.size as u32).collect()
        } else {
            rand::seq::index::sample(rng, s.size, s.subsample_size)
                .into_iter()
                .map(|i| i as u32)
                .collect()
        };
        msg.value = Some(Tensor::from_vec(idx, s.subsample_size, &s.device)?);
        return Ok(());
    }
    let Some(dist) = &msg.dist else {
        return Err(InferError::Invalid(format!(
            "sample site `{}` has no distribution",
            msg.name
        )));
    };
    let value = if dist.has_rsample() {
        dist.rsample(&[], rng)
    } else {
        dist.sample(&[], rng)
    };
    msg.value = Some(value.map_err(|source| at_site(&msg.name, &msg.plates, false, source))?);
    Ok(())
}
