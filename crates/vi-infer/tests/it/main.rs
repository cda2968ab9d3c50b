//! The integration tests of `vi-infer`, one binary.

mod gradients;
mod posterior;
mod report;
