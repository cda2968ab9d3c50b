//! The integration tests of `vi-kl`, one binary.

mod bounded_discrete;
mod common;
mod conformance;
mod docs_table;
mod fused_independent;
mod gamma_family;
mod location_scale;
mod monte_carlo;
mod mvn;
mod properties;
mod transformed;
mod wrappers;
