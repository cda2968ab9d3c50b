//! Every case of `reference/transformed.json` (written by
//! `reference/tools/transformed_torch.py` with torch in float64): a base family pushed
//! through a chain of transforms, with torch's batch and event shapes, the shape of
//! `rsample`, `log_prob` of two draws, the gradient of its sum with respect to every
//! parameter of the base and of the transforms and to the value, and for some cases the
//! batch shape and `log_prob` after `expand`. Run in f64 at the README's tolerances and in
//! f32 (the same figures, the f32 tolerance) on every device.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Var};
use serde_json::Value;
use vi_dist::transforms::{Affine, Exp, Sigmoid, Softplus, StickBreaking};
use vi_dist::{
    Bound, Constraint, DistSpec, Distribution, Transform, TransformedDistribution, biject_to,
};
use vi_test::{F32, F64_CLOSED, F64_SPECIAL, Report, compare_json, number, tensor};

use crate::common::rng;

/// The directory holding `transformed.json`: `$VI_REFERENCE_DIR` when set, else this
/// checkout's `reference/`.
fn reference_dir() -> std::path::PathBuf {
    match std::env::var_os("VI_REFERENCE_DIR") {
        Some(dir) => dir.into(),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../reference"),
    }
}

fn dims(v: &Value) -> Vec<usize> {
    v.as_array()
        .map(|a| a.iter().map(|d| d.as_u64().unwrap_or(0) as usize).collect())
        .unwrap_or_default()
}

/// A transform's number or tensor parameter; a tensor becomes a variable recorded in `vars`
/// under `transform.K.NAME`.
fn bound(
    v: &Value,
    name: String,
    dtype: DType,
    device: &Device,
    vars: &mut BTreeMap<String, Var>,
) -> Result<Bound, String> {
    if v.is_object() {
        let t = tensor(v, dtype, device).map_err(|e| e.to_string())?;
        let var = Var::from_tensor(&t).map_err(|e| e.to_string())?;
        let b = Bound::Tensor(var.as_tensor().clone());
        vars.insert(name, var);
        Ok(b)
    } else {
        Ok(Bound::Scalar(number(v)))
    }
}

fn transform(
    spec: &Value,
    k: usize,
    dtype: DType,
    device: &Device,
    vars: &mut BTreeMap<String, Var>,
) -> Result<Box<dyn Transform>, String> {
    let float = |key: &str| number(&spec[key]);
    Ok(match spec["type"].as_str().unwrap_or_default() {
        "exp" => Box::new(Exp),
        "sigmoid" => Box::new(Sigmoid),
        "softplus" => Box::new(Softplus),
        "stick_breaking" => Box::new(StickBreaking),
        "affine" => {
            let loc = bound(
                &spec["loc"],
                format!("transform.{k}.loc"),
                dtype,
                device,
                vars,
            )?;
            let scale = bound(
                &spec["scale"],
                format!("transform.{k}.scale"),
                dtype,
                device,
                vars,
            )?;
            let event_dim = spec["event_dim"].as_u64().unwrap_or(0) as usize;
            Box::new(Affine::new(loc, scale).with_event_dim(event_dim))
        }
        "transform_to" => {
            let c = match spec["constraint"].as_str().unwrap_or_default() {
                "interval" => Constraint::interval(float("low"), float("high")),
                "greater_than" => Constraint::greater_than(float("lower_bound")),
                "positive" => Constraint::Positive,
                other => return Err(format!("no constraint `{other}`")),
            };
            biject_to(&c).map_err(|e| e.to_string())?
        }
        other => return Err(format!("no transform `{other}`")),
    })
}

fn run_case(case: &Value, dtype: DType, device: &Device, report: &mut Report) {
    let tol = match dtype {
        DType::F64 if case["special"].as_bool() == Some(true) => F64_SPECIAL,
        DType::F64 => F64_CLOSED,
        _ => F32,
    };
    let base = &case["base"];
    let mut spec = DistSpec::new(base["type"].as_str().unwrap_or_default());
    let mut vars = BTreeMap::new();
    for (name, v) in base["params"].as_object().into_iter().flatten() {
        let var = match tensor(v, dtype, device).and_then(|t| Var::from_tensor(&t)) {
            Ok(var) => var,
            Err(e) => return report.fail(format!("param {name}: {e}")),
        };
        spec = spec.param(name, var.as_tensor().clone());
        vars.insert(name.clone(), var);
    }
    spec = spec.event_dims(base["event_dims"].as_u64().unwrap_or(0) as usize);
    let mut chain = Vec::new();
    for (k, t) in case["transforms"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        match transform(t, k, dtype, device, &mut vars) {
            Ok(t) => chain.push(t),
            Err(e) => return report.fail(format!("transform {k}: {e}")),
        }
    }
    let d = match spec
        .build()
        .and_then(|b| TransformedDistribution::new(b, chain))
    {
        Ok(d) => d,
        Err(e) => return report.fail(format!("build: {e}")),
    };
    let simplex = matches!(d.support(), Constraint::Simplex);
    let shapes = (d.batch_shape().to_vec(), d.event_shape().to_vec());
    let want = (dims(&case["batch_shape"]), dims(&case["event_shape"]));
    if shapes != want {
        report.fail(format!("(batch, event) {shapes:?}, torch {want:?}"));
    }
    let draw = d.rsample(&dims(&case["sample_shape"]), &mut rng(5));
    match draw {
        Ok(x) if x.dims() == dims(&case["rsample_shape"]).as_slice() => {}
        Ok(x) => report.fail(format!(
            "rsample shape {:?}, torch {:?}",
            x.dims(),
            dims(&case["rsample_shape"])
        )),
        Err(e) => report.fail(format!("rsample: {e}")),
    }
    let value = match tensor(&case["value"], dtype, device).and_then(|t| Var::from_tensor(&t)) {
        Ok(v) => v,
        Err(e) => return report.fail(format!("value: {e}")),
    };
    let lp = match d.log_prob(value.as_tensor()) {
        Ok(lp) => lp,
        Err(e) => return report.fail(format!("log_prob: {e}")),
    };
    report.check("log_prob", compare_json(&lp, &case["log_prob"], tol));
    let grads = match lp.sum_all().and_then(|s| s.backward()) {
        Ok(g) => g,
        Err(e) => return report.fail(format!("backward: {e}")),
    };
    for (name, expected) in case["grad_log_prob"].as_object().into_iter().flatten() {
        let t = if name == "value" {
            value.as_tensor()
        } else {
            match vars.get(name) {
                Some(v) => v.as_tensor(),
                None => {
                    report.fail(format!("grad {name}: no such parameter"));
                    continue;
                }
            }
        };
        let g = grads
            .get(t)
            .cloned()
            .unwrap_or_else(|| t.zeros_like().expect("zeros"));
        if name == "value" && simplex {
            // On the simplex only the gradient along it is defined: torch's inverse reads the
            // first k − 1 coordinates, ours all k (it divides by the mass after each one), so
            // the two extend the density off the simplex differently and their gradients
            // differ by a multiple of (1, …, 1). Compare the parts along the simplex.
            let along = |g: &candle_core::Tensor| -> candle_core::Result<candle_core::Tensor> {
                g.broadcast_sub(&g.mean_keepdim(candle_core::D::Minus1)?)
            };
            let result = tensor(expected, dtype, device)
                .and_then(|e| Ok((along(&g)?, along(&e)?)))
                .map_err(|e| e.to_string())
                .and_then(|(a, b)| {
                    vi_test::compare(
                        &a,
                        b.dims(),
                        &vi_test::to_vec(&b).map_err(|e| e.to_string())?,
                        tol,
                    )
                });
            report.check("grad value along the simplex", result);
            continue;
        }
        report.check(&format!("grad {name}"), compare_json(&g, expected, tol));
    }
    if let Some(shape) = case.get("expand") {
        let e = match d.expand(&dims(shape)) {
            Ok(e) => e,
            Err(e) => return report.fail(format!("expand: {e}")),
        };
        if e.batch_shape() != dims(&case["expanded_batch_shape"]).as_slice() {
            report.fail(format!("expanded batch shape {:?}", e.batch_shape()));
        }
        let lp = tensor(&case["expanded_value"], dtype, device)
            .map_err(vi_dist::DistError::from)
            .and_then(|v| e.log_prob(&v))
            .map_err(|e| e.to_string())
            .and_then(|lp| compare_json(&lp, &case["expanded_log_prob"], tol));
        report.check("expanded log_prob", lp);
    }
}

#[test]
fn torch_reference() {
    let doc = vi_test::load_json_from(&reference_dir(), "transformed.json");
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 16, "{} cases", cases.len());
    for device in vi_test::devices!() {
        for dtype in [DType::F64, DType::F32] {
            let mut report = Report::new();
            for case in cases {
                report.case(case["name"].as_str().unwrap_or("?"));
                run_case(case, dtype, &device, &mut report);
            }
            report.finish(&vi_test::label(&format!("transformed {dtype:?}"), &device));
        }
    }
}

/// A quick check that the figures are what the README says: finite, and one value per draw
/// and batch element.
#[test]
fn reference_is_well_formed() {
    let doc = vi_test::load_json_from(&reference_dir(), "transformed.json");
    for case in doc["cases"].as_array().expect("cases") {
        let (shape, data) = vi_test::shape_and_data(&case["log_prob"]);
        let mut want = vec![2];
        want.extend(dims(&case["batch_shape"]));
        assert_eq!(shape, want, "{}", case["name"]);
        assert!(data.iter().all(|v| v.is_finite()), "{}", case["name"]);
    }
}
