//! Test support shared by the vi crates (not published): the reference figures in
//! `reference/` (or `$VI_REFERENCE_DIR`), the tolerances their README gives, a conformance
//! report that lists every failure, the devices to run on, and finite differences.

pub mod stats;

use std::fmt::Write as _;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

/// The directory of the reference JSON files: `$VI_REFERENCE_DIR` when set, else the copy in
/// the repository (`reference/` at the workspace root).
pub fn reference_dir() -> PathBuf {
    match std::env::var_os("VI_REFERENCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => repo_reference_dir(),
    }
}

/// The repository's own copy of the reference figures (ignores `$VI_REFERENCE_DIR`).
pub fn repo_reference_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../reference")
}

/// Parse `file` from `dir`.
pub fn load_json_from(dir: &std::path::Path, file: &str) -> Value {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read reference file {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("reference file {} is not JSON: {e}", path.display()))
}

/// Parse `file` from [`reference_dir`].
pub fn load_json(file: &str) -> Value {
    load_json_from(&reference_dir(), file)
}

/// A number of the reference encoding: a JSON number or `"inf"`, `"-inf"`, `"nan"`.
pub fn number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => match s.as_str() {
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            _ => f64::NAN,
        },
        _ => f64::NAN,
    }
}

/// The shape and row-major data of an encoded tensor `{"shape": [..], "data": [..]}`.
pub fn shape_and_data(v: &Value) -> (Vec<usize>, Vec<f64>) {
    let shape = v["shape"]
        .as_array()
        .map(|a| a.iter().map(|d| d.as_u64().unwrap_or(0) as usize).collect())
        .unwrap_or_default();
    let data = v["data"]
        .as_array()
        .map(|a| a.iter().map(number).collect())
        .unwrap_or_default();
    (shape, data)
}

/// An encoded tensor as a candle tensor of `dtype` on `device`.
pub fn tensor(v: &Value, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
    let (shape, data) = shape_and_data(v);
    Tensor::from_vec(data, shape, &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(device)
}

/// `|actual − expected| <= atol + rtol · |expected|`, non-finite values matched exactly.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
}

/// float64 closed forms.
pub const F64_CLOSED: Tol = Tol {
    rtol: 1e-9,
    atol: 1e-12,
};
/// float64 where a special function or an iterative method is involved.
pub const F64_SPECIAL: Tol = Tol {
    rtol: 1e-6,
    atol: 1e-9,
};
/// float32.
pub const F32: Tol = Tol {
    rtol: 1e-4,
    atol: 1e-4,
};

impl Tol {
    /// Whether one value is within tolerance.
    pub fn close(&self, actual: f64, expected: f64) -> bool {
        if !expected.is_finite() {
            return (expected.is_nan() && actual.is_nan()) || actual == expected;
        }
        (actual - expected).abs() <= self.atol + self.rtol * expected.abs()
    }
}

/// Fused CPU kernels against their composed candle twins: 1e-12 in f64, [`F32`] otherwise.
pub fn fused_tol(dtype: DType) -> Tol {
    match dtype {
        DType::F64 => Tol {
            rtol: 1e-12,
            atol: 1e-12,
        },
        _ => F32,
    }
}

/// Assert that two host vectors have the same length and agree element by element; a failure
/// names `what` and the first index that differs.
pub fn assert_all_close(what: &str, actual: &[f64], expected: &[f64], tol: Tol) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(tol.close(*a, *e), "{what}[{i}]: got {a}, expected {e}");
    }
}

/// Read a tensor back as f64.
pub fn to_vec(t: &Tensor) -> candle_core::Result<Vec<f64>> {
    t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()
}

/// Compare a tensor with expected shape and data; `Err` describes the first mismatch.
pub fn compare(actual: &Tensor, shape: &[usize], expected: &[f64], tol: Tol) -> Result<(), String> {
    if actual.dims() != shape {
        return Err(format!("shape {:?}, expected {:?}", actual.dims(), shape));
    }
    let got = to_vec(actual).map_err(|e| e.to_string())?;
    for (i, (&a, &e)) in got.iter().zip(expected).enumerate() {
        if !tol.close(a, e) {
            return Err(format!("element {i}: got {a:e}, expected {e:e}"));
        }
    }
    Ok(())
}

/// Compare a tensor with an encoded reference tensor.
pub fn compare_json(actual: &Tensor, expected: &Value, tol: Tol) -> Result<(), String> {
    let (shape, data) = shape_and_data(expected);
    compare(actual, &shape, &data, tol)
}

/// Collects the outcome of every case of a conformance run, so one failure does not hide the
/// others; [`Report::finish`] prints every failure and the summary line.
#[derive(Default)]
pub struct Report {
    cases: Vec<(String, Vec<String>)>,
}

impl Report {
    /// A new, empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Start a case.
    pub fn case(&mut self, id: &str) {
        self.cases.push((id.to_string(), Vec::new()));
    }

    /// Record a failure of the current case.
    pub fn fail(&mut self, what: impl Into<String>) {
        if let Some((_, f)) = self.cases.last_mut() {
            f.push(what.into());
        }
    }

    /// Record the result of a check of the current case.
    pub fn check(&mut self, quantity: &str, result: Result<(), String>) {
        if let Err(e) = result {
            self.fail(format!("{quantity}: {e}"));
        }
    }

    /// `(passed, total)`.
    pub fn counts(&self) -> (usize, usize) {
        let passed = self.cases.iter().filter(|(_, f)| f.is_empty()).count();
        (passed, self.cases.len())
    }

    /// Print each failing case with its failures and the line
    /// `conformance NAME: P of N cases passed`; panic unless every case passed.
    pub fn finish(&self, name: &str) {
        let mut out = String::new();
        for (id, failures) in &self.cases {
            for f in failures {
                let _ = writeln!(out, "FAIL {id}: {f}");
            }
        }
        let (p, n) = self.counts();
        let _ = writeln!(out, "conformance {name}: {p} of {n} cases passed");
        // Written to the process's stdout directly, not through `print!`, so the test harness
        // does not capture it: the summary line shows in every run, passing or not.
        {
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(out.as_bytes());
            let _ = stdout.flush();
        }
        assert!(n > 0, "conformance {name}: no cases were run");
        assert_eq!(p, n, "conformance {name}: {} cases failed", n - p);
    }
}

/// The devices a test runs on, as a `Vec<Device>`: the CPU always, and CUDA device 0 when the
/// calling crate is built with its `cuda` feature and a GPU is present. A macro, so the
/// `cfg(feature = "cuda")` is the caller's.
#[macro_export]
macro_rules! devices {
    () => {{
        #[allow(unused_mut)]
        let mut devices = vec![candle_core::Device::Cpu];
        #[cfg(feature = "cuda")]
        if let Ok(d) = candle_core::Device::new_cuda(0) {
            devices.push(d);
        }
        devices
    }};
}

/// A conformance label with the device appended when it is not the CPU
/// (`"distributions"`, `"distributions on cuda"`).
pub fn label(name: &str, device: &Device) -> String {
    if device.is_cpu() {
        name.to_string()
    } else {
        format!("{name} on {:?}", device.location())
    }
}

/// Run a test body `fn name(device: &Device, dtype: DType) -> Result<(), E>` on every device
/// (CPU always, CUDA when built with `cuda`) in f32 and f64, as candle's `test_device!`:
/// `test_device!(name);` defines `#[test]`s `name::cpu_f64`, `name::cpu_f32`, `name::cuda_f64`…
#[macro_export]
macro_rules! test_device {
    ($name:ident) => {
        mod $name {
            #[test]
            fn cpu_f64() {
                super::$name(&candle_core::Device::Cpu, candle_core::DType::F64).unwrap();
            }
            #[test]
            fn cpu_f32() {
                super::$name(&candle_core::Device::Cpu, candle_core::DType::F32).unwrap();
            }
            #[cfg(feature = "cuda")]
            #[test]
            fn cuda_f64() {
                if let Ok(d) = candle_core::Device::new_cuda(0) {
                    super::$name(&d, candle_core::DType::F64).unwrap();
                }
            }
            #[cfg(feature = "cuda")]
            #[test]
            fn cuda_f32() {
                if let Ok(d) = candle_core::Device::new_cuda(0) {
                    super::$name(&d, candle_core::DType::F32).unwrap();
                }
            }
        }
    };
}

/// Central finite-difference gradient of a scalar function of `x` (f64 on the CPU), with step
/// `h` relative to `max(1, |x_i|)`.
pub fn finite_difference(x: &[f64], h: f64, mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut xs = x.to_vec();
    (0..x.len())
        .map(|i| {
            let step = h * x[i].abs().max(1.0);
            xs[i] = x[i] + step;
            let up = f(&xs);
            xs[i] = x[i] - step;
            let down = f(&xs);
            xs[i] = x[i];
            (up - down) / (2.0 * step)
        })
        .collect()
}
