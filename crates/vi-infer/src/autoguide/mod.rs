//! Automatic guides, as Pyro's `pyro.infer.autoguide`: a guide built from the model itself.
//!
//! | guide | what it learns | parameters (in the store) |
//! |---|---|---|
//! | [`AutoDelta`] | a point (MAP) per latent site, in its support | `AutoDelta.{site}` |
//! | [`AutoNormal`] | a Normal per latent site in the unconstrained space, pushed through `biject_to(support)` (a plain Normal where the support is real) | `AutoNormal.locs.{site}`, `AutoNormal.scales.{site}` |
//! | [`AutoDiagonalNormal`] | one diagonal Normal over all latents, packed in one vector | `AutoDiagonalNormal.loc`, `.scale` |
//! | [`AutoMultivariateNormal`] | one full-covariance Normal over all latents | `AutoMultivariateNormal.loc`, `.scale_tril` |
//! | [`AutoLowRankMultivariateNormal`] | one low-rank-plus-diagonal Normal over all latents | `AutoLowRankMultivariateNormal.loc`, `.scale`, `.cov_factor` |
//! | [`AutoGuideList`] | parts: automatic guides over the sites each exposes, and guides by hand | those of its parts |
//!
//! **How one plugs into [`Svi`](crate::Svi).** An automatic guide needs the model: at its
//! first call it runs the model once (the *prototype*: in a context of its own, so no trace of
//! the step sees it, with every latent site set by the [`Init`] strategy) to learn each latent
//! site's support, shape and plates, and creates its parameters from that. So it takes a copy
//! of the model closure (`AutoNormal::new(model)`: a closure that borrows its data is `Copy`;
//! one that owns it is `Clone`, pass `model.clone()`) and hands `Svi` a closure of its own,
//! [`as_fn`](AutoNormal::as_fn). The guide value is a handle: clones share one state, and
//! the parameters live in the store the step uses, so after training the same handle reads the
//! posterior from `svi.store()`:
//!
//! ```
//! use vi_infer::autoguide::{AutoGuide, AutoNormal};
//! use vi_infer::candle::{Device, Tensor};
//! use vi_infer::dist::Normal;
//! use vi_infer::optim::{Adam, AdamOptions};
//! use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
//! let dev = Device::Cpu;
//! let data = Tensor::new(&[1.2f64, 0.8, 1.1, 0.9], &dev)?;
//! let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
//! let model = |ctx: &mut Ctx| {
//!     let mu = ctx.sample("mu", Normal::new(&zero, &one)?)?;
//!     ctx.plate("data", 4, |ctx| ctx.observe("x", Normal::new(&mu, &one)?, &data))
//! };
//! let guide = AutoNormal::new(model);
//! let adam = Adam::empty(AdamOptions { lr: 0.02, ..Default::default() })?;
//! let mut svi = Svi::new(model, guide.as_fn(), adam, TraceMeanFieldElbo::new()).seed(0);
//! for _ in 0..1000 {
//!     svi.step()?;
//! }
//! let median = guide.median(svi.store())?;
//! assert!((median["mu"].to_scalar::<f64>()? - 0.8).abs() < 0.15); // exact: N(0.8, 0.447)
//! assert!(svi.store().get("AutoNormal.locs.mu")?.is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Each site's support, shape and plates are the prototype's: a site whose support depends on
//! another latent (`Uniform(0, θ)` with `θ` latent) keeps the bounds the prototype saw, as in
//! Pyro; a value outside the model's support then fails the step (a support error with
//! validation on, a non-finite loss without), it does not pass silently.
//!
//! **Plates and subsampling.** A guide enters the plates the model's site is in, by name and
//! dim. A local latent inside a subsampled plate gets a parameter of the plate's full size,
//! and each step uses the rows of the indices the model uses in that step: before each step
//! the guide runs the model up to its subsampled plates (stopping there, on a generator of its
//! own, hidden from the step) to read the plate's current size, subsample size and, when the
//! model passes indices of its own (`Plate::subsample`), those indices, and enters the plate
//! with them. So the model and the guide see the same indices in one step, also when the model
//! passes its own index tensor (Pyro's autoguides draw fresh indices then: pyro#3468) and when
//! the subsample size changes from one step to the next (numpyro#1739). A model whose
//! subsampled plates are entered late pays for the part of it that runs before them, once per
//! step; a model without subsampled plates pays nothing. The joint guides
//! ([`AutoDiagonalNormal`] and kin) hold one vector over all latents and refuse a local latent
//! in a subsampled plate, as NumPyro's do.
//!
//! **A model without latent sites.** [`AutoDelta`] and [`AutoNormal`] (and an
//! [`AutoGuideList`] of such parts) give an empty guide there, as Pyro's: it samples nothing
//! and creates no parameter, `median`, `quantiles` and `sample_posterior` return empty maps,
//! and a step's loss is the model's negative log-likelihood (its subsampled plates draw their
//! own indices, and scale it as usual). The joint guides need at least one latent: such a
//! model is an error at their first call, as Pyro's `AutoContinuous`.
//!
//! **What a step reports.** The guide's sites carry the model's names: the step's report has
//! each latent site's KL term under its name, as for a guide written by hand. A joint guide
//! draws one auxiliary latent vector (`_AutoMultivariateNormal_latent`, …) and gives each
//! model site a `Delta` of its slice, with the log-Jacobian of the bijection as its log
//! density (Pyro's `AutoContinuous`); its report has each model site's term (that log density
//! less the prior's log density) and the auxiliary site's `log q`
//! ([`TermKind::Auxiliary`](crate::TermKind::Auxiliary); the mean-field ELBO takes its
//! expectation, the negative entropy, in closed form).

mod builder;
mod continuous;
mod delta;
mod init;
mod list;
mod normal;
mod prototype;
mod quantile;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use rand::RngCore;

pub use continuous::{
    AutoDiagonalNormal, AutoLowRankMultivariateNormal, AutoMultivariateNormal, LatentSlice,
};
pub use delta::AutoDelta;
pub use init::Init;
pub use list::AutoGuideList;
pub use normal::AutoNormal;

pub(crate) use builder::builder_methods;
pub(crate) use prototype::{Core, ProtoSite, Prototype};

use crate::ctx::Ctx;
use crate::error::{InferError, Result};
use crate::param_store::ParamStore;

/// Values per latent site, by name: what [`AutoGuide::median`], [`AutoGuide::quantiles`] and
/// [`AutoGuide::sample_posterior`] return (constrained values, in each site's support).
pub type Values = BTreeMap<String, Tensor>;

/// What every automatic guide offers (object safe, so an [`AutoGuideList`] holds any of them).
/// The values are constrained (in each site's support), and a local site inside a subsampled
/// plate has the plate's full size.
///
/// ```
/// use vi_infer::autoguide::{AutoDelta, AutoGuide};
/// # use vi_infer::candle::{Device, Tensor};
/// # use vi_infer::dist::Normal;
/// # use vi_infer::Ctx;
/// # let dev = Device::Cpu;
/// # let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
/// let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
/// let guides: Vec<Box<dyn AutoGuide>> = vec![Box::new(AutoDelta::new(model))];
/// assert!(guides[0].latent_sites().is_empty()); // known after the first call
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait AutoGuide {
    /// Runs the guide (building its prototype and parameters at the first call).
    fn call(&self, ctx: &mut Ctx<'_>) -> Result<()>;

    /// The posterior median of each latent site.
    fn median(&self, store: &ParamStore) -> Result<Values>;

    /// The posterior quantiles `qs` (each in (0, 1)) of each latent site, marginally: a tensor
    /// `[qs.len(), …site shape]` per site.
    fn quantiles(&self, store: &ParamStore, qs: &[f64]) -> Result<Values>;

    /// `n` draws from the guide: a tensor `[n, …site shape]` per site.
    fn sample_posterior(
        &self,
        store: &ParamStore,
        n: usize,
        rng: &mut dyn RngCore,
    ) -> Result<Values>;

    /// The latent sites the guide covers, in the model's order (empty before its first call).
    fn latent_sites(&self) -> Vec<String>;
}

impl<G: AutoGuide + ?Sized> AutoGuide for Box<G> {
    fn call(&self, ctx: &mut Ctx<'_>) -> Result<()> {
        (**self).call(ctx)
    }

    fn median(&self, store: &ParamStore) -> Result<Values> {
        (**self).median(store)
    }

    fn quantiles(&self, store: &ParamStore, qs: &[f64]) -> Result<Values> {
        (**self).quantiles(store, qs)
    }

    fn sample_posterior(
        &self,
        store: &ParamStore,
        n: usize,
        rng: &mut dyn RngCore,
    ) -> Result<Values> {
        (**self).sample_posterior(store, n, rng)
    }

    fn latent_sites(&self) -> Vec<String> {
        (**self).latent_sites()
    }
}

/// The closure an automatic guide gives `Svi`: it runs the guide and discards its value.
pub(crate) fn guide_fn<'g, G: AutoGuide + 'g>(
    guide: G,
) -> impl FnMut(&mut Ctx<'_>) -> Result<()> + 'g {
    move |ctx: &mut Ctx<'_>| guide.call(ctx)
}

/// The full-size constrained values of every site from one flat function of each: `f` gives a
/// site's unconstrained tensor (shape `prefix + unconstrained shape`), pushed through its
/// bijection.
pub(crate) fn constrain(site: &ProtoSite, unconstrained: &Tensor) -> Result<Tensor> {
    if site.real {
        Ok(unconstrained.clone())
    } else {
        Ok(site.transform.forward(unconstrained)?)
    }
}

/// A tensor `[k] + shape` of `k` copies of `t` (a point mass's draws or quantiles).
pub(crate) fn repeat_leading(t: &Tensor, k: usize) -> Result<Tensor> {
    let mut shape = vec![k];
    shape.extend_from_slice(t.dims());
    Ok(t.unsqueeze(0)?.broadcast_as(shape)?.contiguous()?)
}

/// The standard normal quantiles of `qs` as a tensor `[qs.len()]` in `dtype` on `device`;
/// each `q` in (0, 1), else an error.
pub(crate) fn normal_quantiles(qs: &[f64], dtype: DType, device: &Device) -> Result<Tensor> {
    let mut z = Vec::with_capacity(qs.len());
    for &q in qs {
        if !(q > 0.0 && q < 1.0) {
            return Err(InferError::Invalid(format!(
                "quantile {q} is not in (0, 1)"
            )));
        }
        z.push(quantile::standard_normal_quantile(q));
    }
    Ok(Tensor::from_vec(z, qs.len(), &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(device)?)
}
