//! Bad options, gradients and states give typed errors, never a panic, and leave the
//! parameters untouched.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use vi_optim::{
    Adam, AdamOptions, AdamW, AdamWOptions, ClippedAdam, ClippedAdamOptions, OptimError, Optimizer,
    Sgd, SgdOptions, StateDict,
};

fn invalid(r: Result<impl Sized, OptimError>, expected: &str) {
    match r {
        Err(OptimError::InvalidOption { option, .. }) => assert_eq!(option, expected),
        Err(e) => panic!("expected an invalid `{expected}`, got {e}"),
        Ok(_) => panic!("expected an invalid `{expected}`, got Ok"),
    }
}

#[test]
fn bad_options() {
    let adam = |o: AdamOptions| Adam::empty(o);
    let d = AdamOptions::default;
    invalid(adam(AdamOptions { lr: -0.1, ..d() }), "lr");
    invalid(
        adam(AdamOptions {
            lr: f64::NAN,
            ..d()
        }),
        "lr",
    );
    invalid(
        adam(AdamOptions {
            betas: (1.0, 0.999),
            ..d()
        }),
        "betas.0",
    );
    invalid(
        adam(AdamOptions {
            betas: (-0.1, 0.999),
            ..d()
        }),
        "betas.0",
    );
    invalid(
        adam(AdamOptions {
            betas: (0.9, 1.0),
            ..d()
        }),
        "betas.1",
    );
    invalid(adam(AdamOptions { eps: 0.0, ..d() }), "eps");
    invalid(adam(AdamOptions { eps: -1e-8, ..d() }), "eps");
    invalid(
        adam(AdamOptions {
            weight_decay: -1.0,
            ..d()
        }),
        "weight_decay",
    );
    invalid(
        AdamW::empty(AdamWOptions {
            lr: -1.0,
            ..Default::default()
        }),
        "lr",
    );
    invalid(
        AdamW::empty(AdamWOptions {
            betas: (0.9, 1.5),
            ..Default::default()
        }),
        "betas.1",
    );
    invalid(
        AdamW::empty(AdamWOptions {
            eps: 0.0,
            ..Default::default()
        }),
        "eps",
    );
    invalid(
        Sgd::empty(SgdOptions {
            lr: -1.0,
            ..Default::default()
        }),
        "lr",
    );
    invalid(
        Sgd::empty(SgdOptions {
            momentum: -0.5,
            ..Default::default()
        }),
        "momentum",
    );
    let c = ClippedAdamOptions::default;
    invalid(
        ClippedAdam::empty(ClippedAdamOptions { lr: -1.0, ..c() }),
        "lr",
    );
    invalid(
        ClippedAdam::empty(ClippedAdamOptions {
            betas: (0.9, 1.0),
            ..c()
        }),
        "betas.1",
    );
    invalid(
        ClippedAdam::empty(ClippedAdamOptions { eps: 0.0, ..c() }),
        "eps",
    );
    invalid(
        ClippedAdam::empty(ClippedAdamOptions {
            clip_norm: 0.0,
            ..c()
        }),
        "clip_norm",
    );
    invalid(
        ClippedAdam::empty(ClippedAdamOptions { lrd: 0.0, ..c() }),
        "lrd",
    );
    // torch: Nesterov momentum requires a momentum and zero dampening.
    for o in [
        SgdOptions {
            nesterov: true,
            ..Default::default()
        },
        SgdOptions {
            nesterov: true,
            momentum: 0.9,
            dampening: 0.1,
            ..Default::default()
        },
    ] {
        assert!(matches!(
            Sgd::empty(o),
            Err(OptimError::IncompatibleOptions { .. })
        ));
    }
}

/// Per-parameter options are checked when the parameter is first seen, and the error names it.
#[test]
fn bad_per_parameter_options() -> Result<(), Box<dyn std::error::Error>> {
    let w = Var::zeros(2, DType::F32, &Device::Cpu)?;
    let make = || {
        Adam::with_param_options(
            Vec::<(String, Var)>::new(),
            AdamOptions::default(),
            |name, d| {
                if name == "bad" {
                    AdamOptions {
                        eps: 0.0,
                        ..d.clone()
                    }
                } else {
                    d.clone()
                }
            },
        )
    };
    let mut opt = make()?;
    opt.add_param("good", w.clone())?;
    let v = Var::zeros(2, DType::F32, &Device::Cpu)?;
    let err = opt.add_param("bad", v).unwrap_err();
    assert!(
        matches!(&err, OptimError::InvalidOption { param: Some(p), option: "eps", .. } if p == "bad"),
        "{err}"
    );
    assert!(err.to_string().contains("`bad`"), "{err}");
    let mut opt = make()?;
    let grads = w.as_tensor().sum_all()?.backward()?;
    assert!(matches!(
        opt.step_params(&[("bad", &w)], &grads),
        Err(OptimError::InvalidOption { .. })
    ));
    Ok(())
}

#[test]
fn gradient_shape_and_dtype_mismatch() -> Result<(), Box<dyn std::error::Error>> {
    let w = Var::new(&[1.0f32, 2.0, 3.0], &Device::Cpu)?;
    let v = Var::new(&[1.0f32], &Device::Cpu)?;
    let mut opt = Adam::new([("v", v.clone()), ("w", w.clone())], AdamOptions::default())?;
    let mut grads = GradStore::default();
    grads.insert(v.as_tensor(), Tensor::ones(1, DType::F32, &Device::Cpu)?);
    grads.insert(
        w.as_tensor(),
        Tensor::ones((3, 1), DType::F32, &Device::Cpu)?,
    );
    match opt.step(&grads) {
        Err(OptimError::GradShape {
            param,
            expected,
            found,
            ..
        }) => {
            assert_eq!(
                (param.as_str(), expected, found),
                ("w", vec![3], vec![3, 1])
            );
        }
        other => panic!("expected GradShape, got {other:?}"),
    }
    // Nothing moved, not even the parameter whose gradient was fine.
    assert_eq!(v.as_tensor().to_vec1::<f32>()?, [1.0]);
    assert_eq!(opt.step_count("v"), Some(0));

    grads.insert(w.as_tensor(), Tensor::ones(3, DType::F64, &Device::Cpu)?);
    assert!(matches!(
        opt.step(&grads),
        Err(OptimError::GradDType { .. })
    ));
    Ok(())
}

#[test]
fn duplicate_names() -> Result<(), Box<dyn std::error::Error>> {
    let w = Var::zeros(2, DType::F32, &Device::Cpu)?;
    let r = Adam::new([("w", w.clone()), ("w", w.clone())], AdamOptions::default());
    assert!(matches!(r, Err(OptimError::DuplicateParam { .. })));
    let mut opt = Adam::empty(AdamOptions::default())?;
    let grads = w.as_tensor().sum_all()?.backward()?;
    let r = opt.step_params(&[("w", &w), ("w", &w)], &grads);
    assert!(matches!(r, Err(OptimError::DuplicateParam { .. })));
    Ok(())
}

/// One Var under two names would be stepped twice per call, with two states.
#[test]
fn one_var_under_two_names() -> Result<(), Box<dyn std::error::Error>> {
    let w = Var::zeros(2, DType::F32, &Device::Cpu)?;
    let r = Adam::new([("a", w.clone()), ("b", w.clone())], AdamOptions::default());
    assert!(
        matches!(&r, Err(OptimError::SharedParam { param, other, .. }) if param == "b" && other == "a"),
        "{r:?}"
    );
    let mut opt = Adam::empty(AdamOptions::default())?;
    let grads = w.as_tensor().sum_all()?.backward()?;
    let r = opt.step_params(&[("a", &w), ("b", &w)], &grads);
    assert!(matches!(r, Err(OptimError::SharedParam { .. })), "{r:?}");
    assert_eq!(w.as_tensor().to_vec1::<f32>()?, [0.0, 0.0]);
    Ok(())
}

/// A learning rate set from outside (`set_learning_rate`, a learning-rate map, a loaded
/// state) is checked at the step like a configured one, before any parameter moves.
#[test]
fn bad_scheduled_learning_rate() -> Result<(), Box<dyn std::error::Error>> {
    let w = Var::new(&[1.0f64, 2.0], &Device::Cpu)?;
    for transform in [
        vi_optim::LrTransform::constant(f64::NAN),
        vi_optim::LrTransform::constant(f64::INFINITY),
        vi_optim::LrTransform {
            scale: -1.0,
            shift: 0.0,
            floor: -1.0,
        },
    ] {
        let mut opt = Sgd::new([("w", w.clone())], SgdOptions::default())?;
        opt.set_lr_transform(transform);
        let r = opt.step(&w.as_tensor().sum_all()?.backward()?);
        assert!(
            matches!(&r, Err(OptimError::InvalidOption { option: "lr", param: Some(p), .. }) if p == "w"),
            "{transform:?}: {r:?}"
        );
        assert_eq!(w.as_tensor().to_vec1::<f64>()?, [1.0, 2.0]);
        assert_eq!(opt.step_count("w"), Some(0));
    }
    Ok(())
}

#[test]
fn bad_state() -> Result<(), Box<dyn std::error::Error>> {
    let w = Var::new(&[1.0f64, 2.0], &Device::Cpu)?;
    let mut opt = Adam::new([("w", w.clone())], AdamOptions::default())?;
    opt.step(&w.as_tensor().sqr()?.sum_all()?.backward()?)?;
    let good = opt.state_dict()?;

    // A buffer of another shape than its parameter: caught at the next step, before any move.
    let mut wrong: StateDict = good
        .iter()
        .map(|(k, t)| (k.to_string(), t.clone()))
        .collect();
    for k in ["state.w.exp_avg", "state.w.exp_avg_sq"] {
        wrong.insert(k, Tensor::zeros(3, DType::F64, &Device::Cpu)?);
    }
    let mut fresh = Adam::new([("w", w.clone())], AdamOptions::default())?;
    fresh.load_state_dict(&wrong)?;
    let before = w.as_tensor().to_vec1::<f64>()?;
    let r = fresh.step(&w.as_tensor().sqr()?.sum_all()?.backward()?);
    assert!(matches!(r, Err(OptimError::State { .. })), "{r:?}");
    assert_eq!(w.as_tensor().to_vec1::<f64>()?, before);

    // Buffers of different shapes, a missing buffer, an unknown one, a missing step.
    let mut uneven = wrong.clone();
    uneven.insert(
        "state.w.exp_avg",
        Tensor::zeros(2, DType::F64, &Device::Cpu)?,
    );
    let mut missing = StateDict::new();
    missing.insert("state.w.step", Tensor::new(1i64, &Device::Cpu)?);
    missing.insert(
        "state.w.exp_avg",
        Tensor::zeros(2, DType::F64, &Device::Cpu)?,
    );
    let mut unknown: StateDict = good
        .iter()
        .map(|(k, t)| (k.to_string(), t.clone()))
        .collect();
    unknown.insert(
        "state.w.momentum_buffer",
        Tensor::zeros(2, DType::F64, &Device::Cpu)?,
    );
    let mut no_step = StateDict::new();
    no_step.insert(
        "state.w.exp_avg",
        Tensor::zeros(2, DType::F64, &Device::Cpu)?,
    );
    let mut bad_step = good.clone();
    bad_step.insert("state.w.step", Tensor::new(-1i64, &Device::Cpu)?);
    for (what, state) in [
        ("uneven", uneven),
        ("missing", missing),
        ("unknown", unknown),
        ("no step", no_step),
        ("negative step", bad_step),
    ] {
        let mut fresh = Adam::new([("w", w.clone())], AdamOptions::default())?;
        let r = fresh.load_state_dict(&state);
        assert!(matches!(r, Err(OptimError::State { .. })), "{what}: {r:?}");
        // The failed load left the optimizer as it was.
        assert_eq!(fresh.step_count("w"), Some(0), "{what}");
    }

    // An amsgrad optimizer cannot resume from a plain Adam state (no max_exp_avg_sq).
    let mut ams = Adam::new(
        [("w", w.clone())],
        AdamOptions {
            amsgrad: true,
            ..Default::default()
        },
    )?;
    assert!(matches!(
        ams.load_state_dict(&good),
        Err(OptimError::State { .. })
    ));
    Ok(())
}

#[test]
fn load_of_a_missing_file() {
    let mut opt = Adam::empty(AdamOptions::default()).unwrap();
    let r = opt.load(std::path::Path::new("/nonexistent/vi_optim.safetensors"));
    assert!(matches!(r, Err(OptimError::Candle(_))));
}
