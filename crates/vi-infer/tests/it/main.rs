//! The integration tests of `vi-infer`, one binary.

mod autoguide;
mod autoguide_pyro;
mod autoguide_subsample;
mod bookkeeping;
mod common;
mod conjugate;
mod data_parallel;
mod dp_scenario;
mod enumerate;
mod errors;
mod gradients;
mod guide;
mod handlers;
mod layers;
mod mean_field;
mod plates;
mod posterior;
mod predictive;
mod pyro_gradients;
mod reliability;
mod renyi;
mod report;
mod tracegraph;
mod valid_models;
