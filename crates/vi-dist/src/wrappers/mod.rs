//! Distributions built from another: `Independent` (to_event), `Expanded`, `Masked`,
//! `NoRsample`.

mod expanded;
mod independent;
mod masked;
mod no_rsample;

pub use expanded::Expanded;
pub use independent::Independent;
pub use masked::Masked;
pub use no_rsample::NoRsample;
