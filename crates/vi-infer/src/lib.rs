//! Stochastic variational inference on [candle](candle_core), as Pyro's SVI: models and
//! guides written against a [`Ctx`], plates, effect handlers, a [`ParamStore`], traces,
//! ELBOs and the SVI loop.
//!
//! It re-exports the other crates of the workspace, so `vi-infer` is the one dependency a
//! user adds: [`dist`] (`vi-dist`), [`kl`] (`vi-kl`) and [`optim`] (`vi-optim`).
#![deny(missing_docs)]

mod checkpoint;
mod checks;
mod ctx;
#[doc(hidden)]
pub mod doc_support;
mod elbo;
mod error;
mod finite;
pub mod handlers;
pub mod layers;
mod message;
mod messenger;
mod param_store;
mod plate;
mod svi;
mod trace;
mod util;

pub use ctx::Ctx;
pub use elbo::{
    Elbo, ElboOutput, PARTICLE_PLATE, Program, SiteTerm, TermKind, TraceElbo, TraceMeanFieldElbo,
};
pub use error::{InferError, Result};
pub use message::{Message, PlateFrame, SiteKind, Subsample};
pub use messenger::Messenger;
pub use param_store::ParamStore;
pub use plate::Plate;
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
