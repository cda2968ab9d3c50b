//! Differentiable ops that candle lacks.
//!
//! | op | CPU | other devices |
//! |---|---|---|
//! | `lgamma`, `digamma`, `trigamma`, `log1p`, `expm1` | host kernel (`CustomOp1`) with backward | composed candle ops ([`composed`]) |
//! | `softplus`, `sigmoid`, `normal_log_prob`, `normal_rsample`, `bernoulli_log_prob`, `kl_normal_normal` | fused vectorised kernel ([`fused`], f32/f64), one pass forward and backward | composed candle ops ([`composed`]) |
//! | `normal_log_prob_sum`, `bernoulli_log_prob_sum`, `kl_normal_normal_sum` (summed over trailing event dims) | fused kernel with the sum inside (f64 accumulation), one-pass backward from the summed gradient | composed candle ops, then `sum` |
//! | `xlogy`, `xlogy_torch_grad`, `xlog1py` | composed | composed |
//! | `diagonal` | composed | composed |
//! | `cholesky`, `solve_triangular`, `solve_triangular_transposed` | host kernel (`CustomOp1/2`) with backward | composed candle ops ([`composed`]) |
//! | `cholesky_solve`, `triangular_inverse`, `precision_to_scale_tril` | built on the two above | built on the two above |
//! | `triangular_logdet`, `tril`, `diag_embed`, `batch_matmul` | composed | composed |
//! | `standard_gamma_grad` | host kernel (`CustomOp2`), no backward | host round trip |
//! | `reparameterize_standard_gamma` | `CustomOp2`, backward = `standard_gamma_grad` | `x + (α − sg(α))·sg(g)` |

pub mod composed;
mod density;
mod elementwise;
pub mod fastmath;
pub mod fused;
mod linalg;
mod special;

pub use density::{
    bernoulli_log_prob, bernoulli_log_prob_sum, kl_normal_normal, kl_normal_normal_sum,
    normal_log_prob, normal_log_prob_sum, normal_rsample,
};
#[allow(unused_imports)]
pub(crate) use linalg::square_size;
pub use linalg::{diagonal, is_positive_definite};
pub use special::{digamma, expm1, lgamma, log1p, sigmoid, softplus, trigamma};
pub use special::{xlog1py, xlogy, xlogy_torch_grad};

pub use linalg::{
    batch_matmul, cholesky, cholesky_solve, diag_embed, precision_to_scale_tril, solve_triangular,
    solve_triangular_transposed, triangular_inverse, triangular_logdet, tril,
};
#[allow(unused_imports)]
pub(crate) use linalg::{flip_matrix, fold_leading, unfold_leading};
mod gamma_grad;
pub use gamma_grad::{reparameterize_standard_gamma, standard_gamma_grad};
