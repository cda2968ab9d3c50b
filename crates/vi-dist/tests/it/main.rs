//! The integration tests of vi-dist, one binary with a module per topic.

mod conformance;
mod transforms;
