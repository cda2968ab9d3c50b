//! Differentiable ops that candle lacks.
//!
//! | op | CPU | other devices |
//! |---|---|---|
//! | `lgamma`, `digamma`, `trigamma`, `log1p`, `expm1`, `softplus`, `sigmoid` | host kernel (`CustomOp1`) with backward | composed candle ops ([`composed`]) |
//! | `diagonal` | composed | composed |
//! | `standard_gamma_grad` | host kernel (`CustomOp2`), no backward | host round trip |
//! | `reparameterize_standard_gamma` | `CustomOp2`, backward = `standard_gamma_grad` | `x + (α − sg(α))·sg(g)` |

pub mod composed;
mod elementwise;
mod linalg;
mod special;

pub use linalg::{diagonal, is_positive_definite};
#[allow(unused_imports)]
pub(crate) use linalg::square_size;
pub use special::{digamma, expm1, lgamma, log1p, sigmoid, softplus, trigamma};
mod gamma_grad;
pub use gamma_grad::{reparameterize_standard_gamma, standard_gamma_grad};
