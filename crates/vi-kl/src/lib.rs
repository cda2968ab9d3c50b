//! Closed-form KL divergences between [`vi_dist`] distributions, as differentiable candle
//! ops, as torch's `kl_divergence` and Pyro's additions to it.
//!
//! [`kl_divergence(p, q)`](kl_divergence) returns KL(p ‖ q) with shape
//! `broadcast(p.batch_shape, q.batch_shape)`; gradients flow through it to the parameters of
//! both sides (a guide's, in an ELBO). The rules live in a [`KlRegistry`] keyed by the pair
//! of concrete types; users add their own with [`register_kl`] (process-wide) or
//! [`KlRegistry::register`]. A pair without a rule is [`KlError::NoClosedForm`], never a
//! number; [`kl_monte_carlo`] estimates any pair by sampling.
//!
//! ```
//! use candle_core::{DType, Device, Tensor, Var};
//! use vi_dist::{Distribution, Normal};
//! use vi_kl::kl_divergence;
//! let dev = Device::Cpu;
//! let loc = Var::zeros((4, 3), DType::F64, &dev)?;
//! let scale = Var::ones((4, 3), DType::F64, &dev)?;
//! let guide = Normal::new(&loc, &scale)?.to_event(1)?;
//! let prior = Normal::new(
//!     &Tensor::zeros(3, DType::F64, &dev)?,
//!     &Tensor::full(2.0f64, 3, &dev)?,
//! )?
//! .to_event(1)?;
//! let kl = kl_divergence(&guide, &prior)?; // one KL per batch element
//! assert_eq!(kl.dims(), &[4]);
//! let grads = kl.sum_all()?.backward()?;
//! assert!(grads.get(&scale).is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is covered
//!
//! - Every pair that torch or Pyro has in closed form among `vi-dist`'s families, including
//!   the cross-family pairs (Normal‖Gamma, Beta‖Uniform, …; `+inf` where the supports do not
//!   nest) — the table is `docs/kl.md` in the repository, generated from [`KlRegistry::pairs`].
//! - Wrappers: `Independent‖Independent` (peeling unequal reinterpreted counts),
//!   `Independent(Normal, 1)‖MultivariateNormal` **and** the reverse (Pyro has one
//!   direction), `Masked` and `Expanded` on either side, and point masses
//!   (`Delta‖q` = `log_density − log q(v)`, keeping the `log_density` Pyro drops).
//! - `TransformedDistribution ‖ TransformedDistribution` through the same chain of transforms
//!   (`Transform::same_as`, part by part): the KL of the bases, as torch's rule; another
//!   chain is [`KlError::NoClosedForm`].
//! - Broadcasting of the two batch shapes for every pair (torch's Bernoulli KL does not).
#![deny(missing_docs)]

mod error;
mod monte_carlo;
mod pairs;
mod registry;
mod util;
mod wrappers;

pub use error::{KlError, Result};
pub use monte_carlo::{MonteCarloKl, kl_monte_carlo, kl_monte_carlo_with_error};
pub use registry::{KlRegistry, PairInfo, global_registry, kl_divergence, register_kl};
pub use util::describe;
