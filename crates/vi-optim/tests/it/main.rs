//! The integration tests of vi-optim, one binary with a module per topic.

mod common;
mod conformance;
mod errors;
mod fidelity;
mod interop;
mod paths;
mod resume;
mod schedulers;
