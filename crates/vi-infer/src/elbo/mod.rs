//! Evidence lower bounds: what an SVI step differentiates.

mod mean_field;
mod particles;
mod renyi_elbo;
mod score;
mod trace_elbo;
mod trace_enum;
mod tracegraph_elbo;

use candle_core::Tensor;
use rand::RngCore;

pub use mean_field::TraceMeanFieldElbo;
pub use particles::PARTICLE_PLATE;
pub(crate) use particles::plate_nesting;
pub use renyi_elbo::RenyiElbo;
pub use trace_elbo::TraceElbo;
pub use trace_enum::TraceEnumElbo;
pub use tracegraph_elbo::TraceGraphElbo;

use crate::ctx::Ctx;
use crate::error::Result;
use crate::param_store::ParamStore;
use crate::trace::Trace;

/// A model or a guide as the ELBOs take it: run against a context, value discarded.
///
/// ```
/// let mut guide = |ctx: &mut vi_infer::Ctx| -> vi_infer::Result<()> { Ok(()) };
/// let _program: &mut vi_infer::Program<'_> = &mut guide;
/// ```
pub type Program<'p> = dyn FnMut(&mut Ctx<'_>) -> Result<()> + 'p;

/// How a site's term in the ELBO was computed.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use rand::SeedableRng;
/// use vi_dist::{Constraint, Normal};
/// use vi_infer::{Ctx, Elbo, ParamStore, TermKind, TraceMeanFieldElbo};
/// let dev = Device::Cpu;
/// let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
/// let mut model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
///     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
///     ctx.observe("x", Normal::new(&z, &one)?, &one)?;
///     Ok(())
/// };
/// let mut guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
///     let loc = ctx.param("loc", &zero, Constraint::Real)?;
///     ctx.sample("z", Normal::new(&loc, &one)?)?;
///     Ok(())
/// };
/// let mut store = ParamStore::new(&dev, DType::F64);
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let out = TraceMeanFieldElbo::new().compute(&mut model, &mut guide, &mut store, &mut rng)?;
/// let kinds: Vec<TermKind> = out.sites.iter().map(|t| t.kind).collect();
/// assert_eq!(kinds, [TermKind::KlAnalytic, TermKind::LogLikelihood]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TermKind {
    /// A latent site's KL(guide ‖ prior) in closed form (`vi-kl`).
    KlAnalytic,
    /// A latent site's KL estimated from the guide's draw: `log q(z) − log p(z)`.
    KlMonteCarlo,
    /// An observed site's log-likelihood `log p(x | z)`.
    LogLikelihood,
    /// A group of model sites with the variables enumerated in the model summed out:
    /// `log Σ_z Π p` ([`TraceEnumElbo`]).
    Marginalized,
    /// An auxiliary guide site's `log q(u)` at the draw (a site of the guide alone, as the
    /// joint latent vector of the continuous autoguides): in `TraceMeanFieldElbo` its
    /// expectation, the negative entropy, in closed form where the distribution has one. It
    /// adds to the loss as the KL terms do.
    Auxiliary,
}

/// One site's term of the ELBO (averaged over particles): for a latent site its KL, for an
/// observed site its log-likelihood, for an auxiliary guide site its `log q`, masked and
/// scaled by the site's plates. The loss is the sum of the KL and auxiliary terms less the
/// log-likelihoods.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use rand::SeedableRng;
/// use vi_dist::{Constraint, Normal};
/// use vi_infer::{Ctx, Elbo, ParamStore, TermKind, TraceMeanFieldElbo};
/// let dev = Device::Cpu;
/// let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
/// let mut model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
///     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
///     ctx.observe("x", Normal::new(&z, &one)?, &one)?;
///     Ok(())
/// };
/// let mut guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
///     let loc = ctx.param("loc", &zero, Constraint::Real)?;
///     ctx.sample("z", Normal::new(&loc, &one)?)?;
///     Ok(())
/// };
/// let mut store = ParamStore::new(&dev, DType::F64);
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let out = TraceMeanFieldElbo::new().compute(&mut model, &mut guide, &mut store, &mut rng)?;
/// let z = out.sites.iter().find(|t| t.name == "z").unwrap();
/// // KL(N(0, 1) ‖ N(0, 1)) = 0
/// assert_eq!(z.sum.to_scalar::<f64>()?, 0.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct SiteTerm {
    /// The site's name.
    pub name: String,
    /// How the term was computed.
    pub kind: TermKind,
    /// The term, batch-shaped (the site's plates; a leading particle dim with vectorised
    /// particles).
    pub value: Tensor,
    /// Its sum: a scalar tensor (read it with `to_scalar` — a host sync).
    pub sum: Tensor,
}

impl SiteTerm {
    /// [`sum`](SiteTerm::sum) read back as `f64`, whatever the dtype (a host sync).
    ///
    /// ```
    /// # use candle_core::Tensor;
    /// # use vi_infer::{SiteTerm, TermKind};
    /// let v = Tensor::new(&[0.5f32, 0.25], &candle_core::Device::Cpu)?;
    /// let term = SiteTerm { name: "z".into(), kind: TermKind::KlAnalytic, sum: v.sum_all()?, value: v };
    /// assert_eq!(term.sum_f64()?, 0.75);
    /// # Ok::<(), vi_infer::InferError>(())
    /// ```
    pub fn sum_f64(&self) -> Result<f64> {
        Ok(self
            .sum
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?)
    }
}

/// What an ELBO computes for one step.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use rand::SeedableRng;
/// use vi_dist::{Constraint, Normal};
/// use vi_infer::{Ctx, Elbo, ParamStore, TermKind, TraceMeanFieldElbo};
/// let dev = Device::Cpu;
/// let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
/// let mut model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
///     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
///     ctx.observe("x", Normal::new(&z, &one)?, &one)?;
///     Ok(())
/// };
/// let mut guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
///     let loc = ctx.param("loc", &zero, Constraint::Real)?;
///     ctx.sample("z", Normal::new(&loc, &one)?)?;
///     Ok(())
/// };
/// let mut store = ParamStore::new(&dev, DType::F64);
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let out = TraceMeanFieldElbo::new().compute(&mut model, &mut guide, &mut store, &mut rng)?;
/// assert!(out.guide_trace.contains("z") && out.model_trace.contains("x"));
/// assert_eq!(out.sites.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ElboOutput {
    /// The loss, −ELBO, averaged over particles: a scalar tensor.
    pub loss: Tensor,
    /// The surrogate whose gradient is the ELBO's gradient estimate (equal to `loss` when
    /// every latent site is reparameterised).
    pub surrogate: Tensor,
    /// Each sample site's term, in the model's order (then the guide's auxiliary sites).
    pub sites: Vec<SiteTerm>,
    /// The model's trace (of the last particle).
    pub model_trace: Trace,
    /// The guide's trace (of the last particle).
    pub guide_trace: Trace,
    /// The module prefixes the model and guide marked with `ctx.module`.
    pub modules: Vec<String>,
}

/// An evidence lower bound: runs the guide, replays the model against it, and returns the
/// loss, its surrogate and each site's term.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use rand::SeedableRng;
/// use vi_dist::{Constraint, Normal};
/// use vi_infer::{Ctx, Elbo, ParamStore, TermKind, TraceMeanFieldElbo};
/// let dev = Device::Cpu;
/// let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
/// let mut model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
///     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
///     ctx.observe("x", Normal::new(&z, &one)?, &one)?;
///     Ok(())
/// };
/// let mut guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
///     let loc = ctx.param("loc", &zero, Constraint::Real)?;
///     ctx.sample("z", Normal::new(&loc, &one)?)?;
///     Ok(())
/// };
/// let mut store = ParamStore::new(&dev, DType::F64);
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let out = TraceMeanFieldElbo::new().compute(&mut model, &mut guide, &mut store, &mut rng)?;
/// assert_eq!(out.loss.dims(), &[] as &[usize]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Elbo {
    /// One estimate of the loss (over the configured particles).
    fn compute(
        &self,
        model: &mut Program<'_>,
        guide: &mut Program<'_>,
        store: &mut ParamStore,
        rng: &mut dyn RngCore,
    ) -> Result<ElboOutput>;
}
