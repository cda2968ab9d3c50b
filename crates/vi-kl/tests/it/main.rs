//! The integration tests of `vi-kl`, one binary.

mod conformance;
mod wrappers;
mod gamma_family;
