//! Differentiable ops that candle lacks.
//!
//! | op | CPU | other devices |
//! |---|---|---|
//! | `lgamma`, `digamma`, `trigamma`, `log1p`, `expm1`, `softplus`, `sigmoid` | host kernel (`CustomOp1`) with backward | composed candle ops ([`composed`]) |
//! | `diagonal` | composed | composed |

pub mod composed;
mod elementwise;
mod linalg;
mod special;

#[allow(unused_imports)]
pub(crate) use linalg::square_size;
pub use linalg::{diagonal, is_positive_definite};
pub use special::{digamma, expm1, lgamma, log1p, sigmoid, softplus, trigamma};
