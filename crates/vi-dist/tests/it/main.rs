//! The integration tests of vi-dist, one binary with a module per topic.

mod conformance;
mod special_ops;
mod gamma_families;
