//! The integration tests of `vi-kl`, one binary.

mod conformance;
mod location_scale;
mod wrappers;
