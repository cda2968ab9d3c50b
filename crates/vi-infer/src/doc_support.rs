//! The set-up the examples in this crate's documentation share (hidden from the docs).

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::param_store::ParamStore;

/// An f64 store on the CPU and a generator seeded with 0.
pub fn store_and_rng() -> (ParamStore, ChaCha8Rng) {
    (
        ParamStore::new(&Device::Cpu, DType::F64),
        ChaCha8Rng::seed_from_u64(0),
    )
}

/// [`store_and_rng`], the CPU, and f64 zeros and ones of shape `[3]`.
pub fn setup() -> (ParamStore, ChaCha8Rng, Device, Tensor, Tensor) {
    let (store, rng) = store_and_rng();
    let dev = Device::Cpu;
    let zero = Tensor::zeros(3, DType::F64, &dev).expect("zeros on the CPU");
    let one = Tensor::ones(3, DType::F64, &dev).expect("ones on the CPU");
    (store, rng, dev, zero, one)
}
