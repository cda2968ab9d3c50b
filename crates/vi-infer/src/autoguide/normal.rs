//! `AutoNormal`: a Normal per latent site in the unconstrained space.

use std::cell::OnceCell;
use std::rc::Rc;

use candle_core::Tensor;
use rand::RngCore;
use vi_dist::{Distribution, Normal};

use super::delta::{get, no_site};
use super::{AutoGuide, Core, ProtoSite, Prototype, Values, builder_methods, constrain};
use crate::ctx::Ctx;
use crate::error::Result;
use crate::param_store::ParamStore;

/// A Normal per latent site in the unconstrained space, pushed onto the site's support
/// through `biject_to(support)` (Pyro's `AutoNormal`): the mean-field guide a user would
/// write. Where the support is the reals the guide samples a plain
/// `Normal(loc, scale).to_event(..)`, so `TraceMeanFieldElbo` keeps its closed-form KL there;
/// elsewhere a [`TransformedDistribution`](vi_dist::TransformedDistribution) of it (a
/// log-normal for a positive site, a logit-normal on the unit interval, …), whose KL is the
/// Monte Carlo term.
///
/// Parameters: `AutoNormal.locs.{site}` (initialised at the image of the [`Init`](super::Init)
/// value) and `AutoNormal.scales.{site}` (positive, initialised at
/// [`init_scale`](AutoNormal::init_scale), 0.1), each of the site's unconstrained shape, at the
/// full size of a subsampled plate.
///
/// Pyro's `AutoNormal` starts at `init_to_feasible`; this one, as every guide here, at the
/// prior's median ([`Init::median`](super::Init::median)), as Pyro's other automatic guides.
///
/// A model without latent sites gives an empty guide (no site, no parameter), as Pyro's.
///
/// ```
/// use vi_infer::autoguide::{AutoGuide, AutoNormal};
/// use vi_infer::candle::{Device, Tensor};
/// use vi_infer::dist::{Gamma, Poisson};
/// use vi_infer::optim::{Adam, AdamOptions};
/// use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
/// let dev = Device::Cpu;
/// let counts = Tensor::new(&[3.0f64, 5.0, 4.0, 6.0], &dev)?;
/// let (two, one) = (Tensor::new(2.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
/// let model = |ctx: &mut Ctx| {
///     let rate = ctx.sample("rate", Gamma::new(&two, &one)?)?; // a positive site
///     ctx.plate("data", 4, |ctx| ctx.observe("n", Poisson::new(&rate)?, &counts))
/// };
/// let guide = AutoNormal::new(model);
/// let adam = Adam::empty(AdamOptions { lr: 0.05, ..Default::default() })?;
/// let mut svi = Svi::new(model, guide.as_fn(), adam, TraceMeanFieldElbo::new()).seed(0);
/// for _ in 0..600 {
///     svi.step()?;
/// }
/// // The exact posterior is Gamma(2 + 18, 1 + 4): median 3.93.
/// let median = guide.median(svi.store())?["rate"].to_scalar::<f64>()?;
/// assert!((median - 3.93).abs() < 0.3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct AutoNormal<'m> {
    core: Rc<Core<'m>>,
    /// Each site's parameter names, made once.
    names: Rc<OnceCell<Vec<(String, String)>>>,
}

builder_methods!(AutoNormal);

impl<'m> AutoNormal<'m> {
    fn from_core(core: Core<'m>) -> Self {
        Self {
            core: Rc::new(core.empty_ok()),
            names: Rc::new(OnceCell::new()),
        }
    }

    /// The initial scale of every site's Normal in the unconstrained space (default 0.1, as
    /// Pyro's); positive and finite, else the first call is an error.
    ///
    /// ```
    /// # use vi_infer::candle::{Device, Tensor};
    /// # use vi_infer::dist::Normal;
    /// # use vi_infer::Ctx;
    /// # let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);
    /// # let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
    /// let guide = vi_infer::autoguide::AutoNormal::new(model).init_scale(0.05);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn init_scale(self, scale: f64) -> Self {
        self.core.set(|s| s.init_scale = scale);
        self
    }

    /// `(loc, scale)` parameter names per site.
    fn names(&self, proto: &Prototype) -> &[(String, String)] {
        self.names.get_or_init(|| {
            let p = &proto.settings.prefix;
            proto
                .sites
                .iter()
                .map(|s| {
                    (
                        format!("{p}.locs.{}", s.name),
                        format!("{p}.scales.{}", s.name),
                    )
                })
                .collect()
        })
    }

    /// The stored `(loc, scale)` of a site (full size).
    fn loc_scale(
        &self,
        store: &ParamStore,
        proto: &Prototype,
        i: usize,
    ) -> Result<(Tensor, Tensor)> {
        let (l, s) = &self.names(proto)[i];
        Ok((get(store, l)?, get(store, s)?))
    }

    /// The guide's distribution of a site, from the store (full size at subsampled plates):
    /// `Normal(loc, scale)` with the site's unconstrained event dims, pushed onto its support.
    ///
    /// ```
    /// # use vi_infer::candle::{Device, Tensor};
    /// # use vi_infer::dist::{Distribution, HalfNormal};
    /// # use vi_infer::Ctx;
    /// # let one = Tensor::new(1.0f64, &Device::Cpu)?;
    /// let model = |ctx: &mut Ctx| ctx.sample("s", HalfNormal::new(&one)?);
    /// let guide = vi_infer::autoguide::AutoNormal::new(model);
    /// let (mut store, mut rng) = vi_infer::doc_support::store_and_rng();
    /// Ctx::new(&mut store, &mut rng).trace(guide.as_fn())?;
    /// let q = guide.get_posterior(&store, "s")?;
    /// assert_eq!(q.support().to_string(), "positive");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_posterior(&self, store: &ParamStore, site: &str) -> Result<Box<dyn Distribution>> {
        let proto = self.core.built()?;
        let i = proto
            .sites
            .iter()
            .position(|s| s.name == site)
            .ok_or_else(|| no_site(self.core.kind(), site))?;
        let (loc, scale) = self.loc_scale(store, &proto, i)?;
        site_dist(&proto.sites[i], &loc, &scale)
    }
}

/// `Normal(loc, scale)` with the site's unconstrained event dims, pushed onto its support (a
/// plain Normal where the support is real).
fn site_dist(site: &ProtoSite, loc: &Tensor, scale: &Tensor) -> Result<Box<dyn Distribution>> {
    let normal = Normal::new(loc, scale)?;
    let base: Box<dyn Distribution> = if site.unc_event_dim == 0 {
        Box::new(normal)
    } else {
        Box::new(normal.to_event(site.unc_event_dim)?)
    };
    if site.real {
        return Ok(base);
    }
    pushed(base, site)
}

/// `base` pushed through the site's bijection onto its support.
fn pushed(base: Box<dyn Distribution>, site: &ProtoSite) -> Result<Box<dyn Distribution>> {
    Ok(Box::new(vi_dist::TransformedDistribution::with_shared(
        base,
        vec![site.transform.clone()],
    )?))
}

impl AutoGuide for AutoNormal<'_> {
    fn call(&self, ctx: &mut Ctx<'_>) -> Result<()> {
        let proto = self.core.ensure(ctx)?;
        let init_scale = proto.settings.init_scale;
        if !(init_scale.is_finite() && init_scale > 0.0) {
            return Err(crate::InferError::Invalid(format!(
                "{}: init_scale must be positive and finite, got {init_scale}",
                self.core.kind()
            )));
        }
        let step = self.core.step_plates(ctx, &proto)?;
        let names = self.names(&proto);
        for (site, (loc_name, scale_name)) in proto.sites.iter().zip(names) {
            let init = &site.unconstrained;
            let loc = ctx.param_with(loc_name, || Ok(init.clone()), vi_dist::Constraint::Real)?;
            let scale = ctx.param_with(
                scale_name,
                || init.ones_like()? * init_scale,
                vi_dist::Constraint::Positive,
            )?;
            site.in_plates(ctx, &step, |ctx, idx| {
                let ued = site.unc_event_dim;
                let (loc, scale) = (site.select(&loc, ued, idx)?, site.select(&scale, ued, idx)?);
                ctx.sample_boxed(&site.name, site_dist(site, &loc, &scale)?)?;
                Ok(())
            })?;
        }
        Ok(())
    }

    fn median(&self, store: &ParamStore) -> Result<Values> {
        let proto = self.core.built()?;
        let mut out = Values::new();
        for (i, s) in proto.sites.iter().enumerate() {
            let (loc, _) = self.loc_scale(store, &proto, i)?;
            out.insert(s.name.clone(), constrain(s, &loc)?);
        }
        Ok(out)
    }

    fn quantiles(&self, store: &ParamStore, qs: &[f64]) -> Result<Values> {
        let proto = self.core.built()?;
        let z = super::normal_quantiles(qs, proto.dtype, &proto.device)?;
        let mut out = Values::new();
        for (i, s) in proto.sites.iter().enumerate() {
            let (loc, scale) = self.loc_scale(store, &proto, i)?;
            let mut shape = vec![qs.len()];
            shape.extend(std::iter::repeat_n(1, loc.rank()));
            let u = loc
                .unsqueeze(0)?
                .broadcast_add(&z.reshape(shape)?.broadcast_mul(&scale.unsqueeze(0)?)?)?;
            out.insert(s.name.clone(), constrain(s, &u)?);
        }
        Ok(out)
    }

    fn sample_posterior(
        &self,
        store: &ParamStore,
        n: usize,
        rng: &mut dyn RngCore,
    ) -> Result<Values> {
        let proto = self.core.built()?;
        let mut out = Values::new();
        for (i, s) in proto.sites.iter().enumerate() {
            let (loc, scale) = self.loc_scale(store, &proto, i)?;
            let u = Normal::new(&loc, &scale)?.sample(&[n], rng)?;
            out.insert(s.name.clone(), constrain(s, &u)?.detach());
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
