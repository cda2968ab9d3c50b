//! Batched, differentiable probability distributions on [candle](candle_core), as
//! `torch.distributions` and Pyro's `pyro.distributions`.
//!
//! Every family implements the object-safe [`Distribution`] trait: batch and event shapes,
//! `sample` / `rsample` from a seeded host RNG, `log_prob`, `entropy`, `mean`, `variance`,
//! `support`, `expand`, and the wrappers `to_event` and `mask`. Parameters are candle tensors,
//! so gradients flow from `log_prob` and `rsample` to whatever produced them.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use rand::SeedableRng;
//! use vi_dist::{Distribution, Normal};
//!
//! let loc = candle_core::Var::zeros(3, DType::F64, &Device::Cpu)?;
//! let scale = Tensor::ones(3, DType::F64, &Device::Cpu)?;
//! let d = Normal::new(loc.as_tensor(), &scale)?.to_event(1)?;
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let x = d.rsample(&[], &mut rng)?;
//! let grads = d.log_prob(&x)?.backward()?;
//! assert!(grads.get(loc.as_tensor()).is_some());
//! # Ok::<(), vi_dist::DistError>(())
//! ```
//!
//! # Contents
//!
//! - **The trait**: [`Distribution`]; [`validate_value`] and [`validate_param`] for
//!   implementations outside this crate.
//! - **Scalar continuous families**: [`Normal`], [`LogNormal`], [`HalfNormal`], [`Cauchy`],
//!   [`HalfCauchy`], [`Laplace`], [`StudentT`], [`Uniform`], [`Exponential`], [`Gamma`],
//!   [`Beta`], [`Gumbel`], [`Pareto`]; the point mass [`Delta`].
//! - **Vector families**: [`Dirichlet`], [`MultivariateNormal`] (named constructors
//!   `from_scale_tril`, `from_covariance`, `from_precision`, `from_diag_scale`),
//!   [`LowRankMultivariateNormal`].
//! - **Discrete families** (`from_logits` / `from_probs`): [`Bernoulli`], [`Categorical`],
//!   [`OneHotCategorical`], [`Binomial`], [`Geometric`]; and [`Poisson`].
//! - **Wrappers**: [`Independent`] (`to_event`), [`Expanded`], [`Masked`] (`mask`),
//!   [`NoRsample`] (`without_rsample`).
//! - **Transformed**: [`TransformedDistribution`] (a base pushed through a chain of
//!   [`Transform`]s, with the log-determinant in `log_prob`).
//! - **Factors**: [`Unit`] (the log-weight behind `ctx.factor`).
//! - **Supports and bijections**: [`Constraint`] (with [`Bound`]); [`transform_to`] /
//!   [`biject_to`] and the [`transforms`] module.
//! - **Ops candle lacks** (special functions, Cholesky, triangular solves, the implicit gamma
//!   gradient), with backward passes: the [`ops`] module, whose table says which run natively
//!   on which device.
//! - **Randomness**: [`standard_normal`], [`uniform_open01`], [`host_tensor`] and
//!   [`standard_gamma`]: draws from a seeded host RNG, moved to the device.
//! - **Validation**: [`set_validation`], [`with_validation`], [`validation_enabled`] (value
//!   checks, on by default; shape checks always run); [`assume_in_support`] (a value a
//!   bijection produced need not be read back).
//! - **Shapes**: [`broadcast_params`], [`broadcast_shapes`], [`broadcasts_to`],
//!   [`extended_shape`].
//! - **Distributions as data**: [`DistSpec`] (torch's class and parameter names).
//! - **Errors**: [`DistError`] (with [`BadValue`]) and [`Result`].
//!
//! The user guide, with the table of parameterisations, supports and rsample kinds, is
//! `docs/distributions.md` in the repository.
#![deny(missing_docs)]

mod bernoulli;
mod beta;
mod binomial;
mod broadcast;
mod categorical;
mod cauchy;
mod constraint;
mod delta;
mod dirichlet;
mod distribution;
mod error;
mod exponential;
mod family;
mod finfo;
mod gamma;
mod geometric;
mod gumbel;
mod halfcauchy;
mod halfnormal;
mod laplace;
mod lognormal;
mod lowrank_multivariate_normal;
mod multivariate_normal;
mod normal;
mod one_hot_categorical;
pub mod ops;
mod pareto;
mod poisson;
mod probs;
mod rng;
mod spec;
mod student_t;
mod transformed;
pub mod transforms;
mod uniform;
mod unit;
mod validation;
mod wrappers;

pub use bernoulli::Bernoulli;
pub use beta::Beta;
pub use binomial::Binomial;
pub use broadcast::{ParamSpec, broadcast_params, broadcast_shapes, broadcasts_to, extended_shape};
pub use categorical::Categorical;
pub use cauchy::Cauchy;
pub use constraint::{Bound, Constraint};
pub use delta::Delta;
pub use dirichlet::Dirichlet;
pub use distribution::{Distribution, validate_param, validate_value};
pub use error::{BadValue, DistError, Result};
pub use exponential::Exponential;
pub use gamma::{Gamma, standard_gamma};
pub use geometric::Geometric;
pub use gumbel::Gumbel;
pub use halfcauchy::HalfCauchy;
pub use halfnormal::HalfNormal;
pub use laplace::Laplace;
pub use lognormal::LogNormal;
pub use lowrank_multivariate_normal::LowRankMultivariateNormal;
pub use multivariate_normal::MultivariateNormal;
pub use normal::Normal;
pub use one_hot_categorical::OneHotCategorical;
pub use pareto::Pareto;
pub use poisson::Poisson;
pub use rng::{host_tensor, standard_normal, uniform_open01};
pub use spec::DistSpec;
pub use student_t::StudentT;
pub use transformed::TransformedDistribution;
pub use transforms::{Transform, biject_to, transform_to};
pub use uniform::Uniform;
pub use unit::Unit;
pub use validation::{assume_in_support, set_validation, validation_enabled, with_validation};
pub use wrappers::{Expanded, Independent, Masked, NoRsample};
