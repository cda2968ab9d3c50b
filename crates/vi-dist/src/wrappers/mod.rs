//! Distributions built from another: `Independent` (to_event), `Expanded`, `Masked`.

mod expanded;
mod independent;
mod masked;

pub use expanded::Expanded;
pub use independent::Independent;
pub use masked::Masked;
