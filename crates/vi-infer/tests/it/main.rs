//! The integration tests of `vi-infer`, one binary.

mod errors;
mod gradients;
mod guide;
mod handlers;
mod mean_field;
mod plates;
mod posterior;
mod report;
