//! `AutoDelta`: a point estimate (MAP) per latent site.

use std::rc::Rc;

use rand::RngCore;
use vi_dist::Delta;

use super::{AutoGuide, Core, Values, builder_methods, repeat_leading};
use crate::ctx::Ctx;
use crate::error::Result;
use crate::param_store::ParamStore;

/// A point mass per latent site (Pyro's `AutoDelta`): MAP inference. Each site's value is a
/// parameter `AutoDelta.{site}` kept in the site's support (stored unconstrained through
/// `biject_to(support)`), initialised by the [`Init`](super::Init) strategy; the guide samples
/// `Delta(value)` with the site's event dims. MAP is in the constrained space, as Pyro's: the
/// mode of the posterior density of the site itself. A model without latent sites gives an
/// empty guide (no site, no parameter), as Pyro's.
///
/// ```
/// use vi_infer::autoguide::{AutoDelta, AutoGuide};
/// use vi_infer::candle::{Device, Tensor};
/// use vi_infer::dist::Normal;
/// use vi_infer::optim::{Adam, AdamOptions};
/// use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
/// let dev = Device::Cpu;
/// let data = Tensor::new(&[1.2f64, 0.8, 1.1, 0.9], &dev)?;
/// let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
/// let model = |ctx: &mut Ctx| {
///     let mu = ctx.sample("mu", Normal::new(&zero, &one)?)?;
///     ctx.plate("data", 4, |ctx| ctx.observe("x", Normal::new(&mu, &one)?, &data))
/// };
/// let guide = AutoDelta::new(model);
/// let adam = Adam::empty(AdamOptions { lr: 0.05, ..Default::default() })?;
/// let mut svi = Svi::new(model, guide.as_fn(), adam, TraceMeanFieldElbo::new()).seed(0);
/// for _ in 0..400 {
///     svi.step()?;
/// }
/// // The posterior mode: 4 · 1.0 / 5.
/// let mode = guide.median(svi.store())?["mu"].to_scalar::<f64>()?;
/// assert!((mode - 0.8).abs() < 1e-3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct AutoDelta<'m> {
    core: Rc<Core<'m>>,
}

builder_methods!(AutoDelta);

impl<'m> AutoDelta<'m> {
    fn from_core(core: Core<'m>) -> Self {
        Self {
            core: Rc::new(core.empty_ok()),
        }
    }

    /// The parameter's name of a site: `{prefix}.{site}`.
    fn param_name(prefix: &str, site: &str) -> String {
        format!("{prefix}.{site}")
    }

    /// The point mass of a site, from the store (full size at subsampled plates).
    ///
    /// ```
    /// # use vi_infer::candle::{Device, Tensor};
    /// # use vi_infer::dist::{Distribution, Normal};
    /// # use vi_infer::Ctx;
    /// # let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);
    /// # let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
    /// let guide = vi_infer::autoguide::AutoDelta::new(model);
    /// let (mut store, mut rng) = vi_infer::doc_support::store_and_rng();
    /// Ctx::new(&mut store, &mut rng).trace(guide.as_fn())?;
    /// let d = guide.get_posterior(&store, "z")?;
    /// assert!(d.v().to_scalar::<f64>()?.abs() < 1.0); // the median of 15 draws of the prior
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_posterior(&self, store: &ParamStore, site: &str) -> Result<Delta> {
        let proto = self.core.built()?;
        let s = proto
            .sites
            .iter()
            .find(|s| s.name == site)
            .ok_or_else(|| no_site(self.core.kind(), site))?;
        let v = get(store, &Self::param_name(&proto.settings.prefix, site))?;
        Ok(Delta::new(&v, None, s.event_dim)?)
    }
}

/// The error for a site the guide does not cover.
pub(crate) fn no_site(kind: &str, site: &str) -> crate::InferError {
    crate::InferError::Invalid(format!("{kind} has no latent site `{site}`"))
}

/// A parameter from the store, or an error naming it.
pub(crate) fn get(store: &ParamStore, name: &str) -> Result<candle_core::Tensor> {
    store.get(name)?.ok_or_else(|| crate::InferError::Param {
        name: name.to_string(),
        msg: "is not in the store: train the guide with this store first".into(),
    })
}

impl AutoGuide for AutoDelta<'_> {
    fn call(&self, ctx: &mut Ctx<'_>) -> Result<()> {
        let proto = self.core.ensure(ctx)?;
        let step = self.core.step_plates(ctx, &proto)?;
        for site in &proto.sites {
            let init = &site.value;
            let v = ctx.param_with(
                &Self::param_name(&proto.settings.prefix, &site.name),
                || Ok(init.clone()),
                site.support.clone(),
            )?;
            site.in_plates(ctx, &step, |ctx, idx| {
                let v = site.select(&v, site.event_dim, idx)?;
                ctx.sample(&site.name, Delta::new(&v, None, site.event_dim)?)?;
                Ok(())
            })?;
        }
        Ok(())
    }

    fn median(&self, store: &ParamStore) -> Result<Values> {
        let proto = self.core.built()?;
        let mut out = Values::new();
        for s in &proto.sites {
            let name = Self::param_name(&proto.settings.prefix, &s.name);
            out.insert(s.name.clone(), get(store, &name)?);
        }
        Ok(out)
    }

    fn quantiles(&self, store: &ParamStore, qs: &[f64]) -> Result<Values> {
        super::normal_quantiles(qs, candle_core::DType::F64, &candle_core::Device::Cpu)?;
        let mut out = Values::new();
        for (name, v) in self.median(store)? {
            out.insert(name, repeat_leading(&v, qs.len())?);
        }
        Ok(out)
    }

    fn sample_posterior(
        &self,
        store: &ParamStore,
        n: usize,
        _rng: &mut dyn RngCore,
    ) -> Result<Values> {
        let mut out = Values::new();
        for (name, v) in self.median(store)? {
            out.insert(name, repeat_leading(&v, n)?);
        }
        Ok(out)
    }

    fn latent_sites(&self) -> Vec<String> {
        self.core
            .prototype()
            .map(|p| p.sites.iter().map(|s| s.name.clone()).collect())
            .unwrap_or_default()
    }
}
