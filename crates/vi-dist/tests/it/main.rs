//! The integration tests of vi-dist, one binary with a module per topic.

mod conformance;
mod continuous;
mod core;
mod discrete;
mod linalg;
mod mvn;
mod shapes;
mod transforms;
