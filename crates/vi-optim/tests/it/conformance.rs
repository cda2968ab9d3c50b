//! Every case of `reference/optim.json`: 25 steps of torch's `Adam`, `AdamW`, `SGD` and
//! Pyro's `ClippedAdam` on `sum(c (x − t)²) + 0.01 · sum(x⁴)`, each step's `x` compared with
//! the reference trajectory. `conformance_optim` runs float64 (from `$VI_REFERENCE_DIR` when
//! set) at the README's closed-form tolerance; `reference_trajectories_f32` runs the
//! repository's copy in float32.

use candle_core::{DType, Device};
use serde_json::Value;
use vi_test::{F32, F64_CLOSED, Report, Tol, compare_json};

use crate::common::{build, objective, problem};

fn run_case(
    case: &Value,
    device: &Device,
    dtype: DType,
    tol: Tol,
    fast_path: bool,
    report: &mut Report,
) {
    let kind = case["optimizer"].as_str().unwrap_or_default();
    let result = (|| -> Result<(), String> {
        let (x, c, t) = problem(case, dtype, device).map_err(|e| e.to_string())?;
        let mut opt = build(kind, &case["options"], vec![("x", x.clone())], fast_path)?;
        let trajectory = case["trajectory"].as_array().ok_or("no trajectory")?;
        for (i, expected) in trajectory.iter().enumerate() {
            let loss = objective(x.as_tensor(), &c, &t).map_err(|e| e.to_string())?;
            let grads = loss.backward().map_err(|e| e.to_string())?;
            opt.step(&grads)
                .map_err(|e| format!("step {}: {e}", i + 1))?;
            // Report the first diverging step only: later ones follow from it.
            compare_json(x.as_tensor(), expected, tol)
                .map_err(|e| format!("step {}: {e}", i + 1))?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        report.fail(e);
    }
}

/// Every case on every device (`vi_test::devices!`), one summary line per device.
fn run_all(json: &Value, dtype: DType, tol: Tol, fast_path: bool, name: &str) {
    for device in vi_test::devices!() {
        let mut report = Report::new();
        for case in json["cases"].as_array().into_iter().flatten() {
            report.case(case["id"].as_str().unwrap_or("?"));
            run_case(case, &device, dtype, tol, fast_path, &mut report);
        }
        report.finish(&vi_test::label(name, &device));
    }
}

#[test]
fn conformance_optim() {
    let json = vi_test::load_json("optim.json");
    run_all(&json, DType::F64, F64_CLOSED, true, "optim");
}

/// The composed (any-device) path on the same figures.
#[test]
fn conformance_optim_composed_path() {
    let json = vi_test::load_json("optim.json");
    run_all(
        &json,
        DType::F64,
        F64_CLOSED,
        false,
        "optim (composed path)",
    );
}

#[test]
fn reference_trajectories_f32() {
    let json = vi_test::load_json_from(&vi_test::repo_reference_dir(), "optim.json");
    run_all(&json, DType::F32, F32, true, "optim f32");
    run_all(&json, DType::F32, F32, false, "optim f32 (composed path)");
}
