//! The integration tests of `vi-infer`, one binary.

mod posterior;
mod handlers;
mod plates;
mod errors;
