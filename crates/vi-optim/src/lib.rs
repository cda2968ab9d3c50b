//! Adam and its family for candle [`Var`](candle_core::Var)s, with torch/Pyro trajectory
//! parity: [`Adam`] (with amsgrad), [`AdamW`], [`Sgd`] (momentum, dampening, Nesterov) and
//! Pyro's [`ClippedAdam`]; learning-rate [`Scheduler`]s ([`StepLr`], [`ExponentialLr`],
//! [`CosineAnnealingLr`], [`ReduceLrOnPlateau`]); state dicts saved as safetensors so training
//! resumes bit for bit.
//!
//! Every optimizer implements the object-safe [`Optimizer`] trait over *named* parameters:
//! state is created lazily per name (a parameter first seen later gets its own, as in Pyro's
//! `PyroOptim`), options may be chosen per name (Pyro's callable `optim_args`), and
//! `candle_nn::Optimizer` is implemented too, for plain candle code. Contiguous f32/f64 CPU
//! parameters are updated in place by one fused loop; other devices and dtypes by composed
//! candle ops.
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use vi_optim::{ClippedAdam, ClippedAdamOptions, ExponentialLr, Optimizer, Scheduler};
//!
//! let w = Var::new(&[0.0f32, 0.0], &Device::Cpu)?;
//! let target = Tensor::new(&[1.0f32, -2.0], &Device::Cpu)?;
//! let opts = ClippedAdamOptions { lr: 0.05, lrd: 0.999, ..Default::default() };
//! let mut opt = Scheduler::new(ClippedAdam::new([("w", w.clone())], opts)?, ExponentialLr::new(0.99)?);
//! for _epoch in 0..300 {
//!     let loss = (w.as_tensor() - &target)?.sqr()?.sum_all()?;
//!     opt.step(&loss.backward()?)?;
//!     opt.advance()?;
//! }
//! let w = w.as_tensor().to_vec1::<f32>()?;
//! assert!((w[0] - 1.0).abs() < 0.05 && (w[1] + 2.0).abs() < 0.05);
//! # Ok::<(), vi_optim::OptimError>(())
//! ```
#![deny(missing_docs)]

mod adam;
mod adamw;
mod clipped_adam;
mod engine;
mod error;
mod inplace;
mod lr_transform;
mod optimizer;
mod optimizer_type;
mod rule;
mod scheduler;
mod sgd;
mod state;

pub use adam::{Adam, AdamOptions};
pub use adamw::{AdamW, AdamWOptions};
pub use clipped_adam::{ClippedAdam, ClippedAdamOptions};
pub use error::{OptimError, Result};
pub use lr_transform::LrTransform;
pub use optimizer::Optimizer;
pub use scheduler::{
    CosineAnnealingLr, ExponentialLr, LrSchedule, PlateauMode, PlateauOptions, ReduceLrOnPlateau,
    Scheduler, StepLr, ThresholdMode,
};
pub use sgd::{Sgd, SgdOptions};
pub use state::StateDict;
