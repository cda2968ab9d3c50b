//! The integration tests of `vi-infer`, one binary.

mod errors;
mod handlers;
mod plates;
mod posterior;
