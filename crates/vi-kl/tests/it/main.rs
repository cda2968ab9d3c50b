//! The integration tests of `vi-kl`, one binary.

mod conformance;
mod mvn;
mod wrappers;
