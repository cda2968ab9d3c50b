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
    report
}

#[test]
fn conformance_distributions_f64() {
    distributions(&vi_test::reference_dir(), DType::F64, &Device::Cpu).finish("distributions");
}

#[test]
fn conformance_special_f64() {
    special(&vi_test::reference_dir(), DType::F64, &Device::Cpu).finish("special");
}

#[test]
fn reference_distributions_f32() {
    distributions(&vi_test::repo_reference_dir(), DType::F32, &Device::Cpu)
        .finish("distributions f32");
}

#[test]
fn reference_special_f32() {
    special(&vi_test::repo_reference_dir(), DType::F32, &Device::Cpu).finish("special f32");
}
