//! Building the optimizers of `reference/optim.json` and running its objective.

use candle_core::{DType, Device, Tensor, Var};
use serde_json::Value;
use vi_optim::{
    Adam, AdamOptions, AdamW, AdamWOptions, ClippedAdam, ClippedAdamOptions, Optimizer, Sgd,
    SgdOptions,
};

/// The optimizer a reference case names, with its options (torch's/Pyro's keyword names
/// deserialise directly into ours), over the named parameters.
pub fn build(
    kind: &str,
    options: &Value,
    params: Vec<(&str, Var)>,
    fast_path: bool,
) -> Result<Box<dyn Optimizer>, String> {
    fn opts<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, String> {
        serde_json::from_value(v.clone()).map_err(|e| format!("options: {e}"))
    }
    let e = |e: vi_optim::OptimError| e.to_string();
    Ok(match kind {
        "Adam" => {
            let mut o = Adam::new(params, opts::<AdamOptions>(options)?).map_err(e)?;
            o.set_cpu_fast_path(fast_path);
            Box::new(o)
        }
        "AdamW" => {
            let mut o = AdamW::new(params, opts::<AdamWOptions>(options)?).map_err(e)?;
            o.set_cpu_fast_path(fast_path);
            Box::new(o)
        }
        "SGD" => {
            let mut o = Sgd::new(params, opts::<SgdOptions>(options)?).map_err(e)?;
            o.set_cpu_fast_path(fast_path);
            Box::new(o)
        }
        "ClippedAdam" => {
            let mut o = ClippedAdam::new(params, opts::<ClippedAdamOptions>(options)?).map_err(e)?;
            o.set_cpu_fast_path(fast_path);
            Box::new(o)
        }
        other => return Err(format!("unknown optimizer {other}")),
    })
}

/// `sum(c (x − t)²) + 0.01 · sum(x⁴)`, the objective of every reference case.
pub fn objective(x: &Tensor, c: &Tensor, t: &Tensor) -> candle_core::Result<Tensor> {
    let quad = (c * (x - t)?.sqr()?)?.sum_all()?;
    let quartic = (x.sqr()?.sqr()?.sum_all()? * 0.01)?;
    quad + quartic
}

/// One reference case's problem in `dtype`: `(x, c, t)` with `x` a fresh Var at `x0`.
pub fn problem(case: &Value, dtype: DType, device: &Device) -> candle_core::Result<(Var, Tensor, Tensor)> {
    let x = Var::from_tensor(&vi_test::tensor(&case["x0"], dtype, device)?)?;
    let c = vi_test::tensor(&case["c"], dtype, device)?;
    let t = vi_test::tensor(&case["t"], dtype, device)?;
    Ok((x, c, t))
}

/// Every case of the repository's `optim.json`.
pub fn cases() -> Vec<Value> {
    let json = vi_test::load_json_from(&vi_test::repo_reference_dir(), "optim.json");
    json["cases"].as_array().cloned().unwrap_or_default()
}
