//! The integration tests of `vi-kl`, one binary.

mod bounded_discrete;
mod conformance;
mod wrappers;
