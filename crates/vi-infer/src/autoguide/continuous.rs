//! The joint Normal guides (Pyro's `AutoContinuous`): one latent vector over every latent
//! site, in the unconstrained space, unpacked per site. A model without latent sites is an
//! error at the first call, as Pyro's (there is no vector to hold).

use std::ops::Range;
use std::rc::Rc;

use candle_core::{D, Tensor};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vi_dist::{
    Constraint, Delta, Distribution, LowRankMultivariateNormal, MultivariateNormal, Normal,
};

use super::init::site_error;
use super::{AutoGuide, Core, ProtoSite, Prototype, Values, builder_methods, constrain};
use crate::ctx::Ctx;
use crate::error::{InferError, Result};
use crate::param_store::ParamStore;

/// Which joint Normal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Diagonal,
    Full,
    LowRank,
}

/// Where each site lies in the latent vector: its name, its range, its unconstrained shape.
#[derive(Clone, Debug, PartialEq)]
pub struct LatentSlice {
    /// The model's site.
    pub site: String,
    /// Its elements in the latent vector.
    pub range: Range<usize>,
    /// The shape they unpack to (the site's unconstrained value).
    pub shape: Vec<usize>,
}

/// What the three joint guides share: the layout and the per-step work around the joint
/// distribution.
struct Joint<'a, 'm> {
    core: &'a Core<'m>,
    family: Family,
}

/// The latent layout of a prototype; a local site in a subsampled plate is an error (the
/// vector would need the plate's full size, and a step only its subsample).
fn layout(kind: &str, proto: &Prototype) -> Result<(Vec<LatentSlice>, usize)> {
    let mut out = Vec::with_capacity(proto.sites.len());
    let mut pos = 0;
    for s in &proto.sites {
        if let Some(p) = s.plates.iter().find(|p| p.subsample_size < p.size) {
            return Err(site_error(
                kind,
                &s.name,
                format!(
                    "it lies in the subsampled plate `{}`: a joint guide holds one vector over \
                     every latent and cannot follow a subsample; guide such local sites with \
                     AutoNormal or AutoDelta (an AutoGuideList with `.block(..)`)",
                    p.name
                ),
            ));
        }
        let n = s.unconstrained.elem_count();
        out.push(LatentSlice {
            site: s.name.clone(),
            range: pos..pos + n,
            shape: s.unconstrained.dims().to_vec(),
        });
        pos += n;
    }
    Ok((out, pos))
}

impl Joint<'_, '_> {
    fn names(&self, prefix: &str) -> [String; 3] {
        let second = match self.family {
            Family::Full => "scale_tril",
            _ => "scale",
        };
        [
            format!("{prefix}.loc"),
            format!("{prefix}.{second}"),
            format!("{prefix}.cov_factor"),
        ]
    }

    /// The joint distribution over the latent vector from its parameters, read through `read`
    /// (the step's `ctx.param`, or the store).
    fn posterior(
        &self,
        proto: &Prototype,
        dim: usize,
        mut read: impl FnMut(&str, &dyn Fn() -> Result<Tensor>, Constraint) -> Result<Tensor>,
    ) -> Result<Box<dyn Distribution>> {
        let s = &proto.settings;
        if !(s.init_scale.is_finite() && s.init_scale > 0.0) {
            return Err(InferError::Invalid(format!(
                "{}: init_scale must be positive and finite, got {}",
                self.core.kind(),
                s.init_scale
            )));
        }
        let [loc_name, second, factor] = self.names(&s.prefix);
        let init_loc = || -> Result<Tensor> {
            let parts: Vec<Tensor> = proto
                .sites
                .iter()
                .map(|s| s.unconstrained.flatten_all())
                .collect::<candle_core::Result<_>>()?;
            Ok(Tensor::cat(&parts, 0)?)
        };
        let loc = read(&loc_name, &init_loc, Constraint::Real)?;
        let (dt, dev) = (proto.dtype, &proto.device);
        Ok(match self.family {
            Family::Diagonal => {
                let init = || Ok((Tensor::ones(dim, dt, dev)? * s.init_scale)?);
                let scale = read(&second, &init, Constraint::Positive)?;
                Box::new(Normal::new(&loc, &scale)?.to_event(1)?)
            }
            Family::Full => {
                let init = || Ok((Tensor::eye(dim, dt, dev)? * s.init_scale)?);
                let tril = read(&second, &init, Constraint::LowerCholesky)?;
                Box::new(MultivariateNormal::from_scale_tril(&loc, &tril)?)
            }
            Family::LowRank => {
                let rank = match s.rank {
                    Some(0) => {
                        return Err(InferError::Invalid(format!(
                            "{}: rank must be at least 1",
                            self.core.kind()
                        )));
                    }
                    Some(r) => r,
                    None => ((dim as f64).sqrt().round() as usize).max(1),
                };
                let init = || Ok((Tensor::ones(dim, dt, dev)? * (0.5f64.sqrt() * s.init_scale))?);
                let scale = read(&second, &init, Constraint::Positive)?;
                let seed = s.seed;
                let init_factor = || -> Result<Tensor> {
                    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xfac7_0125);
                    let w = vi_dist::standard_normal(&[dim, rank], dt, dev, &mut rng)?;
                    Ok((w / (rank as f64).sqrt())?)
                };
                let w = read(&factor, &init_factor, Constraint::Real)?;
                let cov_factor = w.broadcast_mul(&scale.unsqueeze(1)?)?;
                Box::new(LowRankMultivariateNormal::new(
                    &loc,
                    &cov_factor,
                    &scale.sqr()?,
                )?)
            }
        })
    }

    /// The posterior from the store.
    fn stored(&self, store: &ParamStore, proto: &Prototype) -> Result<Box<dyn Distribution>> {
        let (_, dim) = layout(self.core.kind(), proto)?;
        self.posterior(proto, dim, |name, _, _| super::delta::get(store, name))
    }

    /// The marginal location and standard deviation of each element of the latent vector.
    fn loc_sd(&self, store: &ParamStore, proto: &Prototype) -> Result<(Tensor, Tensor)> {
        let q = self.stored(store, proto)?;
        Ok((q.mean()?, q.variance()?.sqrt()?))
    }

    /// One step of the guide.
    fn call(&self, ctx: &mut Ctx<'_>) -> Result<()> {
        let proto = self.core.ensure(ctx)?;
        let (slices, dim) = layout(self.core.kind(), &proto)?;
        let q = self.posterior(&proto, dim, |name, init, c| {
            ctx.param_with(name, || init().map_err(to_candle), c)
        })?;
        let aux = format!("_{}_latent", proto.settings.prefix);
        let u = ctx.sample_auxiliary(&aux, q)?;
        // The batch dims the latent has here (the particles', when vectorised).
        let batch = &u.dims()[..u.rank() - 1];
        let step = Default::default();
        for (site, slice) in proto.sites.iter().zip(&slices) {
            let part = u.narrow(D::Minus1, slice.range.start, slice.range.len())?;
            let unc = unpack_broadcast(&part, batch, &slice.shape, site)?;
            let value = constrain(site, &unc)?;
            let log_density = if site.real {
                None
            } else {
                let ladj = site.transform.log_abs_det_jacobian(&unc, &value)?;
                Some(sum_to_rank(&ladj.neg()?, value.rank() - site.event_dim)?)
            };
            site.in_plates(ctx, &step, |ctx, _| {
                ctx.sample(
                    &site.name,
                    Delta::new(&value, log_density.as_ref(), site.event_dim)?,
                )?;
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Each site's constrained value from a tensor `[prefix…, dim]` of latent vectors:
    /// `[prefix…] + site shape` per site.
    fn unpack(&self, proto: &Prototype, latent: &Tensor) -> Result<Values> {
        let (slices, _) = layout(self.core.kind(), proto)?;
        let prefix = &latent.dims()[..latent.rank() - 1];
        let mut out = Values::new();
        for (site, slice) in proto.sites.iter().zip(&slices) {
            let part = latent.narrow(D::Minus1, slice.range.start, slice.range.len())?;
            let shape: Vec<usize> = prefix.iter().chain(&slice.shape).copied().collect();
            let unc = part.contiguous()?.reshape(shape)?;
            out.insert(site.name.clone(), constrain(site, &unc)?);
        }
        Ok(out)
    }
}

/// A site's slice `[batch…, n]` of the latent vector as the site's unconstrained value in a
/// run: the site's shape broadcast with the batch dims (the particle dim lies left of the
/// site's plates, as Pyro's `_unpack_latent`).
fn unpack_broadcast(
    part: &Tensor,
    batch: &[usize],
    shape: &[usize],
    site: &ProtoSite,
) -> Result<Tensor> {
    if batch.is_empty() {
        return Ok(part.reshape(shape)?);
    }
    let padded: Vec<usize> = batch
        .iter()
        .copied()
        .chain(std::iter::repeat_n(1, site.unc_event_dim))
        .collect();
    let target = vi_dist::broadcast_shapes(&[shape, &padded]);
    match target {
        Some(t) if t.iter().product::<usize>() == part.elem_count() => {
            Ok(part.contiguous()?.reshape(t)?)
        }
        _ => Err(InferError::Invalid(format!(
            "site `{}`: the latent vector's batch dims {batch:?} do not fit the site's shape \
             {shape:?}",
            site.name
        ))),
    }
}

/// `t` summed over its rightmost dims down to `rank` dims.
fn sum_to_rank(t: &Tensor, rank: usize) -> Result<Tensor> {
    let mut t = t.clone();
    while t.rank() > rank {
        t = t.sum(D::Minus1)?;
    }
    Ok(t)
}

fn to_candle(e: InferError) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

/// The three public joint guides: the builder methods, `init_scale`, `get_posterior`,
/// `layout`, and the [`AutoGuide`] impl over [`Joint`].
macro_rules! joint_guide {
    ($guide:ident, $family:expr) => {
        builder_methods!($guide);

        impl<'m> $guide<'m> {
            fn from_core(core: Core<'m>) -> Self {
                Self {
                    core: Rc::new(core),
                }
            }

            fn joint(&self) -> Joint<'_, 'm> {
                Joint {
                    core: &self.core,
                    family: $family,
                }
            }

            #[doc = "The initial scale of the joint Normal in the unconstrained space (default 0.1,"]
            #[doc = "as Pyro's); positive and finite, else the first call is an error."]
            #[doc = ""]
            #[doc = "```"]
            #[doc = "# use vi_infer::candle::{Device, Tensor};"]
            #[doc = "# use vi_infer::dist::Normal;"]
            #[doc = "# use vi_infer::Ctx;"]
            #[doc = "# let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);"]
            #[doc = "# let model = |ctx: &mut Ctx| ctx.sample(\"z\", Normal::new(&zero, &one)?);"]
            #[doc = concat!("let guide = vi_infer::autoguide::", stringify!($guide), "::new(model).init_scale(0.05);")]
            #[doc = "# Ok::<(), Box<dyn std::error::Error>>(())"]
            #[doc = "```"]
            pub fn init_scale(self, scale: f64) -> Self {
                self.core.set(|s| s.init_scale = scale);
                self
            }

            #[doc = "The joint distribution of the latent vector (unconstrained), from the store:"]
            #[doc = "Pyro's `get_posterior`. [`layout`](Self::layout) says which elements are which"]
            #[doc = "site's."]
            #[doc = ""]
            #[doc = "```"]
            #[doc = "# use vi_infer::candle::{Device, Tensor};"]
            #[doc = "# use vi_infer::dist::{Distribution, Normal};"]
            #[doc = "# use vi_infer::Ctx;"]
            #[doc = "# let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);"]
            #[doc = "let model = |ctx: &mut Ctx| ctx.sample(\"z\", Normal::new(&zero, &one)?);"]
            #[doc = concat!("let guide = vi_infer::autoguide::", stringify!($guide), "::new(model);")]
            #[doc = "let (mut store, mut rng) = vi_infer::doc_support::store_and_rng();"]
            #[doc = "Ctx::new(&mut store, &mut rng).trace(guide.as_fn())?;"]
            #[doc = "let q = guide.get_posterior(&store)?;"]
            #[doc = "assert_eq!(q.event_shape(), &[1]);"]
            #[doc = "assert_eq!(guide.layout()?[0].range, 0..1);"]
            #[doc = "# Ok::<(), Box<dyn std::error::Error>>(())"]
            #[doc = "```"]
            pub fn get_posterior(&self, store: &ParamStore) -> Result<Box<dyn Distribution>> {
                let proto = self.core.built()?;
                self.joint().stored(store, &proto)
            }

            #[doc = "Where each site lies in the latent vector, in the model's order."]
            #[doc = ""]
            #[doc = "```"]
            #[doc = "# use vi_infer::candle::{Device, Tensor};"]
            #[doc = "# use vi_infer::dist::Normal;"]
            #[doc = "# use vi_infer::Ctx;"]
            #[doc = "# let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);"]
            #[doc = "# let model = |ctx: &mut Ctx| ctx.sample(\"z\", Normal::new(&zero, &one)?);"]
            #[doc = concat!("let guide = vi_infer::autoguide::", stringify!($guide), "::new(model);")]
            #[doc = "assert!(guide.layout().is_err()); // before the first call"]
            #[doc = "# Ok::<(), Box<dyn std::error::Error>>(())"]
            #[doc = "```"]
            pub fn layout(&self) -> Result<Vec<LatentSlice>> {
                let proto = self.core.built()?;
                Ok(layout(self.core.kind(), &proto)?.0)
            }
        }

        impl AutoGuide for $guide<'_> {
            fn call(&self, ctx: &mut Ctx<'_>) -> Result<()> {
                self.joint().call(ctx)
            }

            fn median(&self, store: &ParamStore) -> Result<Values> {
                let proto = self.core.built()?;
                let (loc, _) = self.joint().loc_sd(store, &proto)?;
                self.joint().unpack(&proto, &loc)
            }

            fn quantiles(&self, store: &ParamStore, qs: &[f64]) -> Result<Values> {
                let proto = self.core.built()?;
                let (loc, sd) = self.joint().loc_sd(store, &proto)?;
                let z = super::normal_quantiles(qs, proto.dtype, &proto.device)?.unsqueeze(1)?;
                let latent = loc.unsqueeze(0)?.broadcast_add(&z.broadcast_mul(&sd.unsqueeze(0)?)?)?;
                self.joint().unpack(&proto, &latent)
            }

            fn sample_posterior(
                &self,
                store: &ParamStore,
                n: usize,
                rng: &mut dyn RngCore,
            ) -> Result<Values> {
                let proto = self.core.built()?;
                let q = self.joint().stored(store, &proto)?;
                let latent = q.sample(&[n], rng)?;
                self.joint().unpack(&proto, &latent)
            }

            fn latent_sites(&self) -> Vec<String> {
                self.core
                    .prototype()
                    .map(|p| p.sites.iter().map(|s| s.name.clone()).collect())
                    .unwrap_or_default()
            }
        }
    };
}

/// One diagonal Normal over the vector of every latent site, unconstrained (Pyro's
/// `AutoDiagonalNormal`): parameters `AutoDiagonalNormal.loc` and `.scale`. The same family as
/// [`AutoNormal`](super::AutoNormal), packed in one vector.
///
/// ```
/// use vi_infer::autoguide::{AutoDiagonalNormal, AutoGuide};
/// # use vi_infer::candle::{Device, Tensor};
/// # use vi_infer::dist::{HalfNormal, Normal};
/// # use vi_infer::Ctx;
/// # let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);
/// let model = |ctx: &mut Ctx| {
///     ctx.sample("a", Normal::new(&zero, &one)?)?;
///     ctx.sample("s", HalfNormal::new(&one)?)
/// };
/// let guide = AutoDiagonalNormal::new(model);
/// let (mut store, mut rng) = vi_infer::doc_support::store_and_rng();
/// let (_, tr) = vi_infer::Ctx::new(&mut store, &mut rng).trace(guide.as_fn())?;
/// assert!(tr.get("_AutoDiagonalNormal_latent").unwrap().is_auxiliary);
/// assert_eq!(guide.median(&store)?.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct AutoDiagonalNormal<'m> {
    core: Rc<Core<'m>>,
}

joint_guide!(AutoDiagonalNormal, Family::Diagonal);

/// One full-covariance Normal over the vector of every latent site, unconstrained (Pyro's
/// `AutoMultivariateNormal`): parameters `AutoMultivariateNormal.loc` and `.scale_tril` (a
/// lower Cholesky factor, initialised at `init_scale` times the identity). It captures the
/// posterior's correlations, which the mean-field guides cannot.
///
/// ```
/// use vi_infer::autoguide::{AutoGuide, AutoMultivariateNormal};
/// # use vi_infer::candle::{Device, Tensor};
/// # use vi_infer::dist::{Distribution, Normal};
/// # use vi_infer::Ctx;
/// # let (zeros, ones) = (Tensor::zeros(3, vi_infer::candle::DType::F64, &Device::Cpu)?, Tensor::ones(3, vi_infer::candle::DType::F64, &Device::Cpu)?);
/// let model = |ctx: &mut Ctx| ctx.sample("w", Normal::new(&zeros, &ones)?.to_event(1)?);
/// let guide = AutoMultivariateNormal::new(model);
/// let (mut store, mut rng) = vi_infer::doc_support::store_and_rng();
/// vi_infer::Ctx::new(&mut store, &mut rng).trace(guide.as_fn())?;
/// assert_eq!(store.get("AutoMultivariateNormal.scale_tril")?.unwrap().dims(), &[3, 3]);
/// assert_eq!(guide.quantiles(&store, &[0.1, 0.9])?["w"].dims(), &[2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct AutoMultivariateNormal<'m> {
    core: Rc<Core<'m>>,
}

joint_guide!(AutoMultivariateNormal, Family::Full);

/// One low-rank-plus-diagonal Normal over the vector of every latent site, unconstrained
/// (Pyro's `AutoLowRankMultivariateNormal`): covariance `W Wᵀ + D` with `W = cov_factor ·
/// diag(scale)` and `D = diag(scale²)`; parameters `….loc`, `….scale` (initialised at
/// `√½ · init_scale`) and `….cov_factor` (`[dim, rank]`, drawn from `N(0, 1/rank)` with the
/// guide's seed). The rank is `round(√dim)` unless [`rank`](Self::rank) sets it.
///
/// ```
/// use vi_infer::autoguide::AutoLowRankMultivariateNormal;
/// # use vi_infer::candle::{Device, Tensor};
/// # use vi_infer::dist::{Distribution, Normal};
/// # use vi_infer::Ctx;
/// # let (zeros, ones) = (Tensor::zeros(4, vi_infer::candle::DType::F64, &Device::Cpu)?, Tensor::ones(4, vi_infer::candle::DType::F64, &Device::Cpu)?);
/// let model = |ctx: &mut Ctx| ctx.sample("w", Normal::new(&zeros, &ones)?.to_event(1)?);
/// let guide = AutoLowRankMultivariateNormal::new(model).rank(1);
/// let (mut store, mut rng) = vi_infer::doc_support::store_and_rng();
/// vi_infer::Ctx::new(&mut store, &mut rng).trace(guide.as_fn())?;
/// let w = store.get("AutoLowRankMultivariateNormal.cov_factor")?.unwrap();
/// assert_eq!(w.dims(), &[4, 1]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct AutoLowRankMultivariateNormal<'m> {
    core: Rc<Core<'m>>,
}

joint_guide!(AutoLowRankMultivariateNormal, Family::LowRank);

impl AutoLowRankMultivariateNormal<'_> {
    /// The rank of the low-rank part (at least 1; default `round(√dim)`).
    ///
    /// ```
    /// # use vi_infer::candle::{Device, Tensor};
    /// # use vi_infer::dist::Normal;
    /// # use vi_infer::Ctx;
    /// # let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);
    /// # let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
    /// let guide = vi_infer::autoguide::AutoLowRankMultivariateNormal::new(model).rank(2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rank(self, rank: usize) -> Self {
        self.core.set(|s| s.rank = Some(rank));
        self
    }
}
