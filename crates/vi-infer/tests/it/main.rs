//! The integration tests of `vi-infer`, one binary.

mod gradients;
mod mean_field;
mod posterior;
mod report;
