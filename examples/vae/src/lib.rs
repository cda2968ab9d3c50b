//! The variational autoencoder of Pyro's VAE tutorial, trained with `vi-infer`'s SVI on
//! MNIST: the library behind `cargo run --release -p vae`.
#![deny(missing_docs)]

pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod distributed;
pub mod evaluate;
pub mod model;
pub mod objective;
pub mod outputs;
pub mod pictures;
pub mod plain;
pub mod train;
