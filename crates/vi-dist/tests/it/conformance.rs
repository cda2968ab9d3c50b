//! Every case of `reference/distributions.json` and `reference/special.json`: log_prob,
//! entropy, mean, variance, and the gradient of `log_prob(value).sum()` w.r.t. every
//! parameter. `cargo test -p vi-dist conformance` runs the f64 sets (from `$VI_REFERENCE_DIR`
//! when set); `reference_f32` runs the repository's copy in f32.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use serde_json::Value;
use vi_dist::{DistSpec, Distribution};
use vi_test::{F32, F64_CLOSED, F64_SPECIAL, Report, Tol, compare_json, tensor};

/// Families whose formulas involve lgamma/digamma/erf or a matrix factorisation: the
/// reference README's looser float64 tolerance applies.
const SPECIAL_FAMILIES: &[&str] = &[
    "Gamma",
    "Beta",
    "Dirichlet",
    "StudentT",
    "Poisson",
    "Binomial",
    "MultivariateNormal",
    "LowRankMultivariateNormal",
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

/// A built distribution and its parameters as `Var`s, by name.
type Built = (Box<dyn Distribution>, BTreeMap<String, Var>);

/// Build the case's distribution with every parameter a fresh `Var`.
fn build(dist: &Value, dtype: DType, device: &Device) -> Result<Built, String> {
    let family = dist["type"].as_str().unwrap_or_default();
    let mut spec =
        DistSpec::new(family).event_dims(dist["event_dims"].as_u64().unwrap_or(0) as usize);
    if let Some(form) = dist["form"].as_str() {
        spec = spec.form(form);
    }
    let mut vars = BTreeMap::new();
    for (name, v) in dist["params"].as_object().into_iter().flatten() {
        let t = tensor(v, dtype, device).map_err(|e| e.to_string())?;
        let var = Var::from_tensor(&t).map_err(|e| e.to_string())?;
        spec = spec.param(name, var.as_tensor().clone());
        vars.insert(name.clone(), var);
    }
    let d = spec.build().map_err(|e| format!("build: {e}"))?;
    Ok((d, vars))
}

fn dims(v: &Value) -> Vec<usize> {
    v.as_array()
        .map(|a| a.iter().map(|d| d.as_u64().unwrap_or(0) as usize).collect())
        .unwrap_or_default()
}

fn run_case(case: &Value, dtype: DType, device: &Device, report: &mut Report) {
    let family = case["dist"]["type"].as_str().unwrap_or_default();
    let tol = tol_for(family, dtype);
    let (d, vars) = match build(&case["dist"], dtype, device) {
        Ok(x) => x,
        Err(e) => return report.fail(e),
    };
    let shapes = (d.batch_shape().to_vec(), d.event_shape().to_vec());
    let want = (dims(&case["batch_shape"]), dims(&case["event_shape"]));
    if shapes != want {
        report.fail(format!(
            "shapes (batch, event) {shapes:?}, expected {want:?}"
        ));
    }
    let value = match tensor(&case["value"], dtype, device) {
        Ok(v) => v,
        Err(e) => return report.fail(format!("value: {e}")),
    };
    let lp = d.log_prob(&value);
    match &lp {
        Ok(lp) => report.check("log_prob", compare_json(lp, &case["log_prob"], tol)),
        Err(e) => report.fail(format!("log_prob: {e}")),
    }
    for (name, result) in [
        ("entropy", d.entropy()),
        ("mean", d.mean()),
        ("variance", d.variance()),
    ] {
        if case[name].is_null() {
            continue;
        }
        match result {
            Ok(t) => report.check(name, compare_json(&t, &case[name], tol)),
            Err(e) => report.fail(format!("{name}: {e}")),
        }
    }
    let Ok(lp) = lp else { return };
    let grads = match lp.sum_all().and_then(|s| s.backward()) {
        Ok(g) => g,
        Err(e) => return report.fail(format!("backward: {e}")),
    };
    for (name, expected) in case["grad_log_prob"].as_object().into_iter().flatten() {
        if NON_DIFF.contains(&name.as_str()) {
            continue;
        }
        let Some(var) = vars.get(name) else {
            report.fail(format!("grad {name}: no such parameter"));
            continue;
        };
        match grads.get(var.as_tensor()) {
            Some(g) => report.check(&format!("grad {name}"), compare_json(g, expected, tol)),
            None => report.fail(format!("grad {name}: no gradient reached the parameter")),
        }
    }
}

fn distributions(dir: &std::path::Path, dtype: DType, device: &Device) -> Report {
    let json = vi_test::load_json_from(dir, "distributions.json");
    let mut report = Report::new();
    for case in json["cases"].as_array().into_iter().flatten() {
        report.case(case["id"].as_str().unwrap_or("?"));
        run_case(case, dtype, device, &mut report);
    }
    report
}

/// lgamma and digamma values and derivatives; the standard-gamma sample gradient.
fn special(dir: &std::path::Path, dtype: DType, device: &Device) -> Report {
    let json = vi_test::load_json_from(dir, "special.json");
    let tol = if dtype == DType::F64 {
        F64_SPECIAL
    } else {
        F32
    };
    let mut report = Report::new();
    type Op = fn(&Tensor) -> vi_dist::Result<Tensor>;
    for (name, op) in [
        ("lgamma", vi_dist::ops::lgamma as Op),
        ("digamma", vi_dist::ops::digamma as Op),
    ] {
        report.case(name);
        let block = &json[name];
        let result = (|| -> Result<(), String> {
            let x =
                Var::from_tensor(&tensor(&block["x"], dtype, device).map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            let y = op(x.as_tensor()).map_err(|e| e.to_string())?;
            compare_json(&y, &block["value"], tol).map_err(|e| format!("value: {e}"))?;
            let g = y
                .sum_all()
                .and_then(|s| s.backward())
                .map_err(|e| e.to_string())?;
            let g = g.get(x.as_tensor()).ok_or("no gradient")?;
            compare_json(g, &block["grad"], tol).map_err(|e| format!("grad: {e}"))
        })();
        report.check(name, result);
    }
    // `standard_gamma_grad`: the reference's `alpha` and `sample` fields are swapped relative
    // to what its `dsample_dalpha` was computed at: stored value i is d x / d alpha at
    // alpha = sample[i], x = alpha[i] (checked against mpmath: within 1.7e-4 relative there,
    // off by up to 400x at the labelled arguments). The remaining 1.7e-4 is torch's own error
    // (its `_standard_gamma_grad` is an approximation with fitted coefficients), so compare
    // at the swapped arguments with rtol 5e-4; `gamma_grad_mpmath_f64` holds ours to 1e-8
    // against an exact truth.
    report.case("standard_gamma_grad");
    let block = &json["standard_gamma_grad"];
    let result = (|| -> Result<(), String> {
        let alpha = tensor(&block["sample"], dtype, device).map_err(|e| e.to_string())?;
        let x = tensor(&block["alpha"], dtype, device).map_err(|e| e.to_string())?;
        let g = vi_dist::ops::standard_gamma_grad(&alpha, &x).map_err(|e| e.to_string())?;
        let tol = Tol {
            rtol: 5e-4,
            atol: 1e-9,
        };
        compare_json(&g, &block["dsample_dalpha"], tol)
    })();
    report.check("standard_gamma_grad", result);
    report
}

/// `standard_gamma_grad` against exact values from mpmath (`reference/gamma_grad_mpmath.json`,
/// written by `reference/tools/gamma_grad_mpmath.py`): alpha from 1e-3 to 1e3, x from the
/// 1e-6 to the 1 - 1e-6 quantile. Returns the largest relative error over the points whose
/// x and gradient are normal numbers in `dtype` (in f32 the lower tails of small alpha are
/// not).
fn gamma_grad_mpmath(dtype: DType, device: &Device) -> Result<f64, String> {
    // This crate's own checkout (vi-test's `repo_reference_dir` is fixed when vi-test is
    // compiled, which may be another checkout sharing the target directory).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../reference");
    let json = vi_test::load_json_from(&dir, "gamma_grad_mpmath.json");
    let alpha = tensor(&json["alpha"], dtype, device).map_err(|e| e.to_string())?;
    let x = tensor(&json["x"], dtype, device).map_err(|e| e.to_string())?;
    let g = vi_dist::ops::standard_gamma_grad(&alpha, &x).map_err(|e| e.to_string())?;
    let g = vi_test::to_vec(&g).map_err(|e| e.to_string())?;
    let xs = vi_test::to_vec(&x).map_err(|e| e.to_string())?;
    let (_, want) = vi_test::shape_and_data(&json["dsample_dalpha"]);
    let tiny = if dtype == DType::F64 {
        f64::MIN_POSITIVE
    } else {
        f64::from(f32::MIN_POSITIVE)
    };
    let mut worst = 0f64;
    let mut used = 0;
    for ((g, w), x) in g.iter().zip(&want).zip(&xs) {
        if *x < tiny || *w < tiny {
            continue;
        }
        used += 1;
        worst = worst.max(((g - w) / w).abs());
    }
    if used < 50 {
        return Err(format!("only {used} points compared"));
    }
    Ok(worst)
}

#[test]
fn gamma_grad_mpmath_f64() {
    for device in vi_test::devices!() {
        let worst = gamma_grad_mpmath(DType::F64, &device).unwrap();
        println!("standard_gamma_grad vs mpmath, f64: max relative error {worst:e}");
        assert!(worst < 1e-8, "max relative error {worst:e}");
    }
}

#[test]
fn gamma_grad_mpmath_f32() {
    // The f64 truth at f32-rounded inputs: rounding alpha and x (relative 6e-8) moves the
    // gradient by a small multiple of that, far inside this tolerance.
    for device in vi_test::devices!() {
        let worst = gamma_grad_mpmath(DType::F32, &device).unwrap();
        println!("standard_gamma_grad vs mpmath, f32: max relative error {worst:e}");
        assert!(worst < 1e-4, "max relative error {worst:e}");
    }
}

#[test]
fn conformance_distributions_f64() {
    for device in vi_test::devices!() {
        distributions(&vi_test::reference_dir(), DType::F64, &device)
            .finish(&vi_test::label("distributions", &device));
    }
}

#[test]
fn conformance_special_f64() {
    for device in vi_test::devices!() {
        special(&vi_test::reference_dir(), DType::F64, &device)
            .finish(&vi_test::label("special", &device));
    }
}

#[test]
fn reference_distributions_f32() {
    for device in vi_test::devices!() {
        distributions(&vi_test::repo_reference_dir(), DType::F32, &device)
            .finish(&vi_test::label("distributions f32", &device));
    }
}

#[test]
fn reference_special_f32() {
    for device in vi_test::devices!() {
        special(&vi_test::repo_reference_dir(), DType::F32, &device)
            .finish(&vi_test::label("special f32", &device));
    }
}
