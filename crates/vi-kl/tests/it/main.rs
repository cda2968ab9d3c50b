//! The integration tests of `vi-kl`, one binary.

mod conformance;
mod docs_table;
mod monte_carlo;
mod properties;
mod location_scale;
mod gamma_family;
mod mvn;
mod wrappers;
