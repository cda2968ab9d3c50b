//! What the test modules share: building the optimizers of `reference/optim.json` and
//! running its objective, reading parameters back, temporary files, and the check of an
//! invalid option. Comparisons of values use `vi_test`'s.

use candle_core::{DType, Device, Tensor, Var};
use serde_json::Value;
use vi_optim::{
    Adam, AdamOptions, AdamW, AdamWOptions, ClippedAdam, ClippedAdamOptions, OptimError, Optimizer,
    Sgd, SgdOptions, StateDict,
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
            let mut o =
                ClippedAdam::new(params, opts::<ClippedAdamOptions>(options)?).map_err(e)?;
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
pub fn problem(
    case: &Value,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<(Var, Tensor, Tensor)> {
    let x = Var::from_tensor(&vi_test::tensor(&case["x0"], dtype, device)?)?;
    let c = vi_test::tensor(&case["c"], dtype, device)?;
    let t = vi_test::tensor(&case["t"], dtype, device)?;
    Ok((x, c, t))
}

/// Option sets that reach every branch of every update rule (amsgrad, both forms of torch's
/// lerp, L2 and decoupled decay, momentum with and without dampening, Nesterov, clipping and
/// learning-rate decay).
pub fn configs() -> Vec<(&'static str, Value)> {
    use serde_json::json;
    vec![
        ("Adam", json!({"lr": 0.05})),
        (
            "Adam",
            json!({"lr": 0.05, "amsgrad": true, "weight_decay": 0.1}),
        ),
        (
            "Adam",
            json!({"lr": 0.02, "betas": [0.4, 0.5], "eps": 1e-6}),
        ),
        ("AdamW", json!({"lr": 0.05, "weight_decay": 0.05})),
        ("AdamW", json!({"lr": 0.05, "amsgrad": true})),
        ("SGD", json!({"lr": 0.01})),
        ("SGD", json!({"lr": 0.01, "momentum": 0.9})),
        (
            "SGD",
            json!({"lr": 0.01, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01}),
        ),
        (
            "SGD",
            json!({"lr": 0.01, "momentum": 0.9, "nesterov": true, "weight_decay": 0.01}),
        ),
        (
            "ClippedAdam",
            json!({"lr": 0.1, "clip_norm": 0.5, "lrd": 0.97, "weight_decay": 0.01}),
        ),
        ("ClippedAdam", json!({"lr": 0.05, "betas": [0.8, 0.99]})),
    ]
}

/// A deterministic problem of shape `[5, 7]` (no RNG needed): `(x, c, t)`.
pub fn synthetic(dtype: DType, device: &Device) -> candle_core::Result<(Var, Tensor, Tensor)> {
    let n = 35;
    let wave = |k: f64| {
        (0..n)
            .map(move |i| ((i as f64 + 1.0) * k).sin())
            .collect::<Vec<_>>()
    };
    let x0: Vec<f64> = wave(1.3).into_iter().map(|v| 2.0 * v).collect();
    let c: Vec<f64> = wave(0.7).into_iter().map(|v| 1.5 + v).collect();
    let t: Vec<f64> = wave(2.1).into_iter().map(|v| 3.0 * v).collect();
    let mk = |v: Vec<f64>| {
        Tensor::from_vec(v, (5, 7), &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(device)
    };
    Ok((Var::from_tensor(&mk(x0)?)?, mk(c)?, mk(t)?))
}

/// `steps` steps of `opt` on the objective at `(x, c, t)`.
pub fn run(
    opt: &mut dyn Optimizer,
    x: &Var,
    c: &Tensor,
    t: &Tensor,
    steps: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    for _ in 0..steps {
        let grads = objective(x.as_tensor(), c, t)?.backward()?;
        opt.step(&grads)?;
    }
    Ok(())
}

/// A parameter's values, bit for bit (as f64).
pub fn values(x: &Var) -> Vec<f64> {
    vi_test::to_vec(x.as_tensor()).unwrap_or_default()
}

/// Two states hold the same keys, with the same values bit for bit.
pub fn assert_same_state(a: &StateDict, b: &StateDict, what: &str) -> candle_core::Result<()> {
    assert_eq!(a.len(), b.len(), "{what}: number of entries");
    for ((ka, ta), (kb, tb)) in a.iter().zip(b.iter()) {
        assert_eq!(ka, kb, "{what}");
        let (va, vb) = (vi_test::to_vec(ta)?, vi_test::to_vec(tb)?);
        assert_eq!(va, vb, "{what}: state {ka} differs");
    }
    Ok(())
}

/// The tolerance `tol · (1 + |expected|)` for `vi_test::assert_all_close`.
pub fn tol(tol: f64) -> vi_test::Tol {
    vi_test::Tol {
        rtol: tol,
        atol: tol,
    }
}

/// A safetensors path in the temporary directory, unique to this test process.
pub fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "vi_optim_{}_{name}.safetensors",
        std::process::id()
    ))
}

/// `r` is an [`OptimError::InvalidOption`] for the option `expected`.
pub fn assert_invalid_option(r: Result<impl Sized, OptimError>, expected: &str) {
    match r {
        Err(OptimError::InvalidOption { option, .. }) => assert_eq!(option, expected),
        Err(e) => panic!("expected an invalid `{expected}`, got {e}"),
        Ok(_) => panic!("expected an invalid `{expected}`, got Ok"),
    }
}
