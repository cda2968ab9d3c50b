//! What the test modules share, on top of `vi-test`'s helpers: tensors from f64 data and
//! back, seeded generators, comparisons, the result type of a test body that uses `?`.

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_test::Tol;

/// The result of a test body that returns its errors with `?`.
pub(crate) type Res = Result<(), Box<dyn std::error::Error>>;

/// The elements of `t` as f64, flattened (a panic if `t` cannot be read back).
pub(crate) fn host(t: &Tensor) -> Vec<f64> {
    vi_test::to_vec(t).expect("a tensor read back as f64")
}

/// An f64 vector on the CPU.
pub(crate) fn t(v: &[f64]) -> Tensor {
    Tensor::new(v, &Device::Cpu).expect("an f64 vector")
}

/// The vector `v` in `dtype` on `device`.
pub(crate) fn vector(v: &[f64], dtype: DType, device: &Device) -> Tensor {
    tensor(v, &[v.len()], dtype, device)
}

/// `v` as a tensor of `shape` in `dtype` on `device` (built in f64 on the CPU, converted,
/// then moved).
pub(crate) fn tensor(v: &[f64], shape: &[usize], dtype: DType, device: &Device) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape, &Device::Cpu)
        .and_then(|x| x.to_dtype(dtype))
        .and_then(|x| x.to_device(device))
        .expect("a tensor from f64 data")
}

/// A seeded generator.
pub(crate) fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `|a − b| <= atol + rtol · |b|` ([`Tol::close`]: non-finite values must match exactly).
pub(crate) fn within(a: f64, b: f64, rtol: f64, atol: f64) -> bool {
    Tol { rtol, atol }.close(a, b)
}

/// `Ok` when `a` and `b` have the same length and agree within `tol · (1 + |b|)` element by
/// element; else the first element that does not.
pub(crate) fn close(a: &[f64], b: &[f64], tol: f64) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("lengths {} vs {}", a.len(), b.len()));
    }
    match a.iter().zip(b).position(|(x, y)| !within(*x, *y, tol, tol)) {
        Some(i) => Err(format!("element {i}: {} vs {}", a[i], b[i])),
        None => Ok(()),
    }
}

/// [`close`] for two tensors of the same shape.
pub(crate) fn close_tensors(a: &Tensor, b: &Tensor, tol: f64) -> Result<(), String> {
    if a.dims() != b.dims() {
        return Err(format!("shapes {:?} vs {:?}", a.dims(), b.dims()));
    }
    close(&host(a), &host(b), tol)
}
