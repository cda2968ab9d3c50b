//! The integration tests of `vi-kl`, one binary.

mod conformance;
mod gamma_family;
mod wrappers;
