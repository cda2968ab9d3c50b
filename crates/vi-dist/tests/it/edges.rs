//! Every case of `reference/edges.json` (written by `reference/tools/edges_torch.py`): log
//! densities at the edges of supports and parameter ranges, with the gradients of
//! `log_prob(value).sum()` with respect to every parameter and (continuous families) the value,
//! and the log-determinants of the transforms far out on the real line. The figures are
//! torch's, except where torch is wrong at an edge: there they are mpmath's (the file lists
//! each such figure). `cases` run in f64 (from `$VI_REFERENCE_DIR` when set), `cases_f32` in
//! f32 (the same points rounded to f32, with their own figures).

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use serde_json::Value;
use vi_dist::DistSpec;
use vi_dist::transforms::{Exp, Sigmoid, Softplus, StickBreaking, Transform};
use vi_test::{F32, F64_CLOSED, F64_SPECIAL, Report, Tol, shape_and_data, tensor, to_vec};

/// Families whose formulas involve lgamma/digamma (the README's looser float64 tolerance).
const SPECIAL_FAMILIES: &[&str] = &[
    "Gamma",
    "Beta",
    "Dirichlet",
    "StudentT",
    "Poisson",
    "Binomial",
    "HalfNormal",
];

/// Parameters that are data, not differentiable inputs.
const NON_DIFF: &[&str] = &["total_count"];

fn tol_for(family: &str, dtype: DType) -> Tol {
    match dtype {
        DType::F64 if SPECIAL_FAMILIES.contains(&family) => F64_SPECIAL,
        DType::F64 => F64_CLOSED,
        _ => F32,
    }
}

/// The directory holding `edges.json`: `$VI_REFERENCE_DIR` when set, else this checkout's
/// `reference/` (not vi-test's, which is fixed when vi-test is compiled and may be another
/// checkout sharing the target directory).
fn reference_dir(follow_env: bool) -> std::path::PathBuf {
    match std::env::var_os("VI_REFERENCE_DIR") {
        Some(dir) if follow_env => dir.into(),
        _ => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../reference"),
    }
}

/// Every element of `actual` against `expected`, each mismatch named with its index and the
/// inputs of its row (`row_of(i)`).
fn compare(
    actual: &Tensor,
    expected: &Value,
    tol: Tol,
    row_of: &dyn Fn(usize) -> String,
) -> Result<(), String> {
    let (shape, want) = shape_and_data(expected);
    if actual.dims() != shape.as_slice() {
        return Err(format!("shape {:?}, expected {shape:?}", actual.dims()));
    }
    let got = to_vec(actual).map_err(|e| e.to_string())?;
    let bad: Vec<String> = got
        .iter()
        .zip(&want)
        .enumerate()
        .filter(|(_, (a, e))| !tol.close(**a, **e))
        .map(|(i, (a, e))| format!("[{i}] ({}) got {a:e}, expected {e:e}", row_of(i)))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

fn run_case(case: &Value, dtype: DType, device: &Device, report: &mut Report) {
    let dist = &case["dist"];
    let family = dist["type"].as_str().unwrap_or_default();
    let tol = tol_for(family, dtype);
    let mut spec = DistSpec::new(family);
    if let Some(form) = dist["form"].as_str() {
        spec = spec.form(form);
    }
    let mut vars = BTreeMap::new();
    let mut inputs: Vec<(String, Vec<f64>, usize)> = Vec::new();
    for (name, v) in dist["params"].as_object().into_iter().flatten() {
        let t = match tensor(v, dtype, device) {
            Ok(t) => t,
            Err(e) => return report.fail(format!("param {name}: {e}")),
        };
        let width = t.dims().get(1).copied().unwrap_or(1);
        inputs.push((name.clone(), shape_and_data(v).1, width));
        if NON_DIFF.contains(&name.as_str()) {
            spec = spec.param(name, t);
        } else {
            let var = Var::from_tensor(&t).expect("var");
            spec = spec.param(name, var.as_tensor().clone());
            vars.insert(name.clone(), var);
        }
    }
    let value = match tensor(&case["value"], dtype, device) {
        Ok(v) => Var::from_tensor(&v).expect("var"),
        Err(e) => return report.fail(format!("value: {e}")),
    };
    let value_width = value.dims().get(1).copied().unwrap_or(1);
    inputs.push((
        "value".to_string(),
        shape_and_data(&case["value"]).1,
        value_width,
    ));
    // The inputs of row i, for failure messages.
    let row_of = |i: usize| -> String {
        inputs
            .iter()
            .map(|(name, data, w)| {
                let row = &data[i * w..(i + 1) * w];
                if *w == 1 {
                    format!("{name} {:e}", row[0])
                } else {
                    format!("{name} {row:?}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let d = match spec.build() {
        Ok(d) => d,
        Err(e) => return report.fail(format!("build: {e}")),
    };
    let continuous = case.get("grad_value").is_some();
    let v = if continuous {
        value.as_tensor().clone()
    } else {
        value.as_tensor().detach()
    };
    let lp = match d.log_prob(&v) {
        Ok(lp) => lp,
        Err(e) => return report.fail(format!("log_prob: {e}")),
    };
    report.check("log_prob", compare(&lp, &case["log_prob"], tol, &row_of));
    let grads = match lp.sum_all().and_then(|s| s.backward()) {
        Ok(g) => g,
        Err(e) => return report.fail(format!("backward: {e}")),
    };
    // A parameter the log density does not depend on there gets no gradient: zeros.
    let grad_or_zero = |t: &Tensor| -> Tensor {
        grads
            .get(t)
            .cloned()
            .unwrap_or_else(|| t.zeros_like().expect("zeros"))
    };
    for (name, expected) in case["grad_log_prob"].as_object().into_iter().flatten() {
        let Some(var) = vars.get(name) else {
            report.fail(format!("grad {name}: no such parameter"));
            continue;
        };
        let width = var.dims().get(1).copied().unwrap_or(1);
        let per_row = |i: usize| row_of(i / width);
        report.check(
            &format!("grad {name}"),
            compare(&grad_or_zero(var.as_tensor()), expected, tol, &per_row),
        );
    }
    if continuous {
        let per_row = |i: usize| row_of(i / value_width);
        report.check(
            "grad value",
            compare(
                &grad_or_zero(value.as_tensor()),
                &case["grad_value"],
                tol,
                &per_row,
            ),
        );
    }
}

fn run_transform(case: &Value, dtype: DType, device: &Device, report: &mut Report) {
    let t: Box<dyn Transform> = match case["transform"].as_str().unwrap_or_default() {
        "exp" => Box::new(Exp),
        "sigmoid" => Box::new(Sigmoid),
        "softplus" => Box::new(Softplus),
        "stick_breaking" => Box::new(StickBreaking),
        other => return report.fail(format!("no transform `{other}`")),
    };
    let tol = if dtype == DType::F64 { F64_CLOSED } else { F32 };
    let x = Var::from_tensor(&tensor(&case["x"], dtype, device).expect("x")).expect("var");
    let (_, xs) = shape_and_data(&case["x"]);
    let width = x.dims().get(1).copied().unwrap_or(1);
    let row_of = |i: usize| format!("x {:?}", &xs[i * width..(i + 1) * width]);
    let per_elem = |i: usize| row_of(i / width);
    let result = (|| -> vi_dist::Result<()> {
        let y = t.forward(x.as_tensor())?;
        // y rounds below the smallest normal number where it underflows: ours is clamped to
        // it (so it stays in the open support), torch's is 0: both pass at this tolerance.
        let y_width = y.dims().get(1).copied().unwrap_or(1);
        let per_y = |i: usize| row_of(i / y_width);
        report.check("y", compare(&y, &case["y"], tol, &per_y));
        let ladj = t.log_abs_det_jacobian(x.as_tensor(), &y)?;
        report.check(
            "log_abs_det_jacobian",
            compare(&ladj, &case["log_abs_det_jacobian"], tol, &row_of),
        );
        let grads = ladj.sum_all()?.backward()?;
        match grads.get(x.as_tensor()) {
            Some(g) => report.check("grad x", compare(g, &case["grad_x"], tol, &per_elem)),
            None => report.fail("grad x: no gradient reached x"),
        }
        Ok(())
    })();
    if let Err(e) = result {
        report.fail(e.to_string());
    }
}

fn edges(dir: &std::path::Path, key: &str, dtype: DType, device: &Device) -> Report {
    let json = vi_test::load_json_from(dir, "edges.json");
    let mut report = Report::new();
    for case in json[key].as_array().into_iter().flatten() {
        report.case(case["id"].as_str().unwrap_or("?"));
        run_case(case, dtype, device, &mut report);
    }
    // The transforms' points are far out on the real line, where f32 overflows: f64 only.
    if dtype == DType::F64 {
        for case in json["transforms"].as_array().into_iter().flatten() {
            report.case(case["id"].as_str().unwrap_or("?"));
            run_transform(case, dtype, device, &mut report);
        }
    }
    report
}

#[test]
fn edges_f64() {
    for device in vi_test::devices!() {
        edges(&reference_dir(true), "cases", DType::F64, &device)
            .finish(&vi_test::label("edges", &device));
    }
}

#[test]
fn edges_f32() {
    for device in vi_test::devices!() {
        edges(&reference_dir(false), "cases_f32", DType::F32, &device)
            .finish(&vi_test::label("edges f32", &device));
    }
}
