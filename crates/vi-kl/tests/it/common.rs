//! What the test modules share, on top of `vi-test`'s helpers: tensors from f64 data and
//! back, comparisons, the result type of a test body that uses `?`.

use candle_core::{DType, Device, Tensor};
use vi_test::Tol;

/// The result of a test body that returns its errors with `?`.
pub(crate) type Res = Result<(), Box<dyn std::error::Error>>;

/// The elements of `t` as f64, flattened (a panic if `t` cannot be read back).
pub(crate) fn host(t: &Tensor) -> Vec<f64> {
    vi_test::to_vec(t).expect("a tensor read back as f64")
}

/// `v` as a tensor of `shape` in `dtype` on `device` (built in f64 on the CPU, converted,
/// then moved).
pub(crate) fn tensor(v: &[f64], shape: &[usize], dtype: DType, device: &Device) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape, &Device::Cpu)
        .and_then(|x| x.to_dtype(dtype))
        .and_then(|x| x.to_device(device))
        .expect("a tensor from f64 data")
}

/// Whether `a` and `b` have the same length and agree within `tol · (1 + |b|)` element by
/// element (non-finite values must match exactly: [`Tol::close`]).
pub(crate) fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    let tol = Tol {
        rtol: tol,
        atol: tol,
    };
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| tol.close(*x, *y))
}

/// Assert [`close`], naming `what` and the first element that differs.
pub(crate) fn assert_within(got: &[f64], want: &[f64], tol: f64, what: &str) {
    vi_test::assert_all_close(
        what,
        got,
        want,
        Tol {
            rtol: tol,
            atol: tol,
        },
    );
}
