//! Stochastic variational inference on [candle](candle_core), as Pyro's SVI: models and
//! guides written against a [`Ctx`], plates, effect handlers, a [`ParamStore`], traces,
//! ELBOs and the SVI loop.
//!
//! It re-exports the other crates of the workspace, so `vi-infer` is the one dependency a
//! user adds: [`dist`] (`vi-dist`), [`kl`] (`vi-kl`) and [`optim`] (`vi-optim`).
//!
//! ```
//! use vi_infer::candle::{Device, Tensor};
//! use vi_infer::dist::{Constraint, Normal};
//! use vi_infer::optim::{Adam, AdamOptions};
//! use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
//! let dev = Device::Cpu;
//! let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
//! let x = Tensor::new(&[1.2f64, 0.8, 1.1, 0.9], &dev)?;
//! let model = |ctx: &mut Ctx| {
//!     let mu = ctx.sample("mu", Normal::new(&zero, &one)?)?;
//!     ctx.plate("data", 4, |ctx| ctx.observe("x", Normal::new(&mu, &one)?, &x))
//! };
//! let guide = |ctx: &mut Ctx| {
//!     let loc = ctx.param("loc", &zero, Constraint::Real)?;
//!     let scale = ctx.param("scale", &one, Constraint::Positive)?;
//!     ctx.sample("mu", Normal::new(&loc, &scale)?)
//! };
//! let adam = Adam::empty(AdamOptions { lr: 0.02, ..Default::default() })?;
//! let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new()).seed(0);
//! let report = svi.step()?;
//! println!("loss {}, KL(mu) {}", report.loss, report.site("mu").unwrap().sum_f64()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Contents
//!
//! - **Programs**: [`Ctx`], what a model or guide receives: sample, observe, factor, param,
//!   module and deterministic statements; plates ([`Ctx::plate`], [`Ctx::plate_with`] with a
//!   [`Plate`]); scopes under one more handler ([`Ctx::trace`], [`Ctx::replay`],
//!   [`Ctx::condition`], [`Ctx::block`], [`Ctx::scale`], [`Ctx::mask`], [`Ctx::seed`], ...).
//! - **Effect handlers**: the [`Messenger`] trait, the [`Message`] it sees, and the
//!   [`handlers`] module (Pyro's `poutine`).
//! - **Traces**: [`Trace`] and its [`Site`]s, with `log_prob`, `format_shapes`.
//! - **Parameters**: [`ParamStore`] (constrained values over unconstrained storage, candle-nn
//!   modules, checkpoints that carry the constraints).
//! - **ELBOs**: the [`Elbo`] trait, [`TraceElbo`] (score-function terms where there is no
//!   rsample), [`TraceMeanFieldElbo`] (analytic KL per site), [`TraceGraphElbo`] (each
//!   score times only its downstream terms, less its [`Baseline`]) and [`RenyiElbo`] (the
//!   Rényi bound; IWAE at `alpha = 0`), each site's [`SiteTerm`]; per-site options
//!   ([`SiteOptions`], [`Ctx::sample_with`]).
//! - **Discrete latents**: sites marked for enumeration ([`Ctx::sample_enum`],
//!   [`config_enumerate`]) summed out exactly by [`TraceEnumElbo`] (in the model or weighted in
//!   the guide), chains with [`Ctx::markov`] (or written once, [`Ctx::vectorized_markov`]),
//!   [`vindex`] to index by enumerated values, and
//!   [`Ctx::infer_discrete`] ([`InferDiscrete`]: Viterbi or posterior draws).
//! - **SVI**: [`Svi`] and its [`StepReport`] (the loss and each site's KL or
//!   log-likelihood); checkpoints with `Svi::save` / `Svi::load`.
//! - **Layers**: [`layers::Linear`], candle-nn's `Linear` without the gradients nobody reads.
//! - **Errors**: [`InferError`], which names the site, its plates, the program and the
//!   shapes; [`Result`].
#![deny(missing_docs)]

pub mod autoguide;
mod checkpoint;
mod checks;
mod ctx;
#[doc(hidden)]
pub mod doc_support;
mod elbo;
mod enumerate;
mod error;
mod finite;
pub mod handlers;
pub mod layers;
mod message;
mod messenger;
pub mod parallel;
mod param_store;
mod plate;
mod predictive;
mod site_options;
mod svi;
mod trace;
mod util;

pub use ctx::Ctx;
pub use elbo::{
    Elbo, ElboOutput, PARTICLE_PLATE, Program, RenyiElbo, SiteTerm, TermKind, TraceElbo,
    TraceEnumElbo, TraceGraphElbo, TraceMeanFieldElbo,
};
pub use enumerate::{Infer, InferDiscrete, Temperature, config_enumerate, vindex};
pub use error::{InferError, Result};
pub use message::{Message, PlateFrame, SequentialFrame, SiteKind, Subsample};
pub use messenger::Messenger;
pub use param_store::ParamStore;
pub use plate::Plate;
pub use predictive::{PREDICTIVE_PLATE, Predictive};
pub use site_options::{Baseline, SiteOptions};
pub use svi::{StepReport, Svi};
pub use trace::{Site, Trace};

/// The tensor library underneath: `candle-core`.
pub use candle_core as candle;
/// candle's neural-network layers (`Linear`, `VarBuilder`, …): `candle-nn`.
pub use candle_nn as nn;
/// Distributions, constraints and transforms: the `vi-dist` crate.
pub use vi_dist as dist;
/// KL divergences: the `vi-kl` crate.
pub use vi_kl as kl;
/// Optimizers and schedulers: the `vi-optim` crate.
pub use vi_optim as optim;
