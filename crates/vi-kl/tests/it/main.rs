//! The integration tests of `vi-kl`, one binary.

mod conformance;
mod wrappers;
mod location_scale;
