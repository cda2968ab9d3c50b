//! The integration tests of vi-dist, one binary with a module per topic.

mod common;
mod conformance;
mod continuous;
mod core;
mod discrete;
mod edges;
mod errors;
mod fused;
mod gamma_families;
mod linalg;
mod mvn;
mod regressions;
mod shapes;
mod special_ops;
mod transformed;
mod transformed_torch;
mod transforms;
