//! Bad options, gradients and states give typed errors, never a panic, and leave the
//! parameters untouched.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use vi_optim::{
    Adam, AdamOptions, AdamW, AdamWOptions, ClippedAdam, ClippedAdamOptions, ExponentialLr,
    LrSchedule, LrTransform, OptimError, Optimizer, Scheduler, Sgd, SgdOptions, StateDict,
};

use crate::common::{
    assert_invalid_option, assert_same_state, build, configs, objective, run, synthetic, values,
};

#[test]
fn bad_options() {
    let adam = |o: AdamOptions| Adam::empty(o);
    let d = AdamOptions::default;
    assert_invalid_option(adam(AdamOptions { lr: -0.1, ..d() }), "lr");
    assert_invalid_option(
        adam(AdamOptions {
            lr: f64::NAN,
            ..d()
        }),
        "lr",
    );
    assert_invalid_option(
        adam(AdamOptions {
            betas: (1.0, 0.999),
            ..d()
        }),
        "betas.0",
    );
    assert_invalid_option(
        adam(AdamOptions {
            betas: (-0.1, 0.999),
            ..d()
        }),
        "betas.0",
    );
    assert_invalid_option(
        adam(AdamOptions {
            betas: (0.9, 1.0),
            ..d()
        }),
        "betas.1",
    );
    assert_invalid_option(adam(AdamOptions { eps: 0.0, ..d() }), "eps");
    assert_invalid_option(adam(AdamOptions { eps: -1e-8, ..d() }), "eps");
    assert_invalid_option(
        adam(AdamOptions {
            weight_decay: -1.0,
            ..d()
        }),
        "weight_decay",
    );
    assert_invalid_option(
        AdamW::empty(AdamWOptions {
            lr: -1.0,
            ..Default::default()
        }),
        "lr",
    );
    assert_invalid_option(
        AdamW::empty(AdamWOptions {
            betas: (0.9, 1.5),
            ..Default::default()
        }),
        "betas.1",
    );
    assert_invalid_option(
        AdamW::empty(AdamWOptions {
            eps: 0.0,
            ..Default::default()
        }),
        "eps",
    );
    assert_invalid_option(
        Sgd::empty(SgdOptions {
            lr: -1.0,
            ..Default::default()
        }),
        "lr",
    );
    assert_invalid_option(
        Sgd::empty(SgdOptions {
            momentum: -0.5,
            ..Default::default()
        }),
        "momentum",
    );
    let c = ClippedAdamOptions::default;
    assert_invalid_option(
        ClippedAdam::empty(ClippedAdamOptions { lr: -1.0, ..c() }),
        "lr",
    );
    assert_invalid_option(
        ClippedAdam::empty(ClippedAdamOptions {
            betas: (0.9, 1.0),
            ..c()
        }),
        "betas.1",
    );
    assert_invalid_option(
        ClippedAdam::empty(ClippedAdamOptions { eps: 0.0, ..c() }),
        "eps",
    );
    assert_invalid_option(
        ClippedAdam::empty(ClippedAdamOptions {
            clip_norm: 0.0,
            ..c()
        }),
        "clip_norm",
    );
    assert_invalid_option(
        ClippedAdam::empty(ClippedAdamOptions { lrd: 0.0, ..c() }),
        "lrd",
    );
    // The rest of what the options' docs promise: every value finite, weight decay ≥ 0
    // everywhere, ClippedAdam's clip_norm > 0 and lrd > 0.
    assert_invalid_option(
        adam(AdamOptions {
            lr: f64::INFINITY,
            ..d()
        }),
        "lr",
    );
    assert_invalid_option(
        adam(AdamOptions {
            betas: (0.9, f64::NAN),
            ..d()
        }),
        "betas.1",
    );
    assert_invalid_option(
        adam(AdamOptions {
            eps: f64::INFINITY,
            ..d()
        }),
        "eps",
    );
    let w = AdamWOptions::default;
    assert_invalid_option(
        AdamW::empty(AdamWOptions {
            weight_decay: -0.1,
            ..w()
        }),
        "weight_decay",
    );
    assert_invalid_option(
        AdamW::empty(AdamWOptions {
            weight_decay: f64::NAN,
            ..w()
        }),
        "weight_decay",
    );
    let s = SgdOptions::default;
    assert_invalid_option(
        Sgd::empty(SgdOptions {
            lr: f64::NAN,
            ..s()
        }),
        "lr",
    );
    assert_invalid_option(
        Sgd::empty(SgdOptions {
            momentum: f64::INFINITY,
            ..s()
        }),
        "momentum",
    );
    assert_invalid_option(
        Sgd::empty(SgdOptions {
            dampening: f64::NAN,
            ..s()
        }),
        "dampening",
    );
    assert_invalid_option(
        Sgd::empty(SgdOptions {
            weight_decay: -1.0,
            ..s()
        }),
        "weight_decay",
    );
    let clipped = |o: ClippedAdamOptions| ClippedAdam::empty(o);
    assert_invalid_option(
        clipped(ClippedAdamOptions {
            weight_decay: -1.0,
            ..c()
        }),
        "weight_decay",
    );
    assert_invalid_option(
        clipped(ClippedAdamOptions {
            clip_norm: -1.0,
            ..c()
        }),
        "clip_norm",
    );
    assert_invalid_option(
        clipped(ClippedAdamOptions {
            clip_norm: f64::NAN,
            ..c()
        }),
        "clip_norm",
    );
    assert_invalid_option(
        clipped(ClippedAdamOptions {
            lrd: f64::INFINITY,
            ..c()
        }),
        "lrd",
    );
    assert_invalid_option(clipped(ClippedAdamOptions { lrd: -0.5, ..c() }), "lrd");
    // Through candle-nn's constructor too.
    let x = Var::zeros(2, DType::F32, &Device::Cpu).unwrap();
    let r = <Adam as candle_nn::Optimizer>::new(vec![x], AdamOptions { lr: -1.0, ..d() });
    let e = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("`lr`"), "{e}");
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
    for (transform, expected) in [
        (LrTransform::constant(f64::NAN), f64::NAN),
        (LrTransform::constant(f64::INFINITY), f64::INFINITY),
        (LrTransform::constant(-1e-3), -1e-3),
        // The floor lifts a small rate (min_lr); it does not hide a negative one.
        (
            LrTransform {
                scale: -1.0,
                shift: 0.0,
                floor: 1e-4,
            },
            -1e-3,
        ),
        (
            LrTransform {
                scale: 1.0,
                shift: 0.0,
                floor: f64::INFINITY,
            },
            f64::INFINITY,
        ),
    ] {
        let mut opt = Sgd::new([("w", w.clone())], SgdOptions::default())?;
        opt.set_lr_transform(transform);
        let r = opt.step(&w.as_tensor().sum_all()?.backward()?);
        match &r {
            Err(OptimError::InvalidLearningRate {
                optimizer: "SGD",
                param,
                value,
                base,
                scheduler: None,
                lr_decay: false,
                ..
            }) => {
                assert_eq!(param, "w");
                assert_eq!(*base, 1e-3);
                assert!(
                    value == &expected || (value.is_nan() && expected.is_nan()),
                    "{transform:?}: {value}"
                );
            }
            other => panic!("{transform:?}: expected InvalidLearningRate, got {other:?}"),
        }
        assert_eq!(w.as_tensor().to_vec1::<f64>()?, [1.0, 2.0]);
        assert_eq!(opt.step_count("w"), Some(0));
    }
    Ok(())
}

/// Issue 16, item 5: a negative rate set from outside was clamped to 0 by the map's floor and
/// training froze without a word. It is refused at the step, for every optimizer and both
/// update paths; the parameters and the whole state stay as they were, and training goes on
/// from there, bit for bit as if the refused step had not been tried, once the rate is right.
#[test]
fn negative_learning_rate_is_refused_not_clamped() -> Result<(), Box<dyn std::error::Error>> {
    for (kind, options) in configs() {
        for fast in [true, false] {
            let what = format!("{kind} {options} fast={fast}");
            let (x, c, t) = synthetic(DType::F64, &Device::Cpu)?;
            let (y, _, _) = synthetic(DType::F64, &Device::Cpu)?;
            let mut opt = build(kind, &options, vec![("x", x.clone())], fast)?;
            let mut straight = build(kind, &options, vec![("x", y.clone())], fast)?;
            run(opt.as_mut(), &x, &c, &t, 3)?;
            run(straight.as_mut(), &y, &c, &t, 3)?;
            let (before, state) = (values(&x), opt.state_dict()?);

            opt.set_learning_rate(-0.1);
            let grads = objective(x.as_tensor(), &c, &t)?.backward()?;
            match opt.step(&grads) {
                Err(OptimError::InvalidLearningRate {
                    optimizer,
                    param,
                    value,
                    scheduler: None,
                    ..
                }) => assert_eq!((optimizer, param.as_str(), value), (kind, "x", -0.1)),
                other => panic!("{what}: expected InvalidLearningRate, got {other:?}"),
            }
            assert_eq!(values(&x), before, "{what}: the parameter moved");
            // Back to the map it had, the state is the one before the refused step.
            opt.set_lr_transform(LrTransform::IDENTITY);
            assert_same_state(&opt.state_dict()?, &state, &what)?;
            run(opt.as_mut(), &x, &c, &t, 2)?;
            run(straight.as_mut(), &y, &c, &t, 2)?;
            assert_eq!(values(&x), values(&y), "{what}");
        }
    }
    Ok(())
}

/// A schedule that takes the rate below zero (a user's linear decay, torch's `LambdaLR`,
/// configured past its end) or to infinity (an `ExponentialLr` with `gamma > 1` overflows) is
/// refused at the step, and the error names the schedule; a rate set over the schedule
/// names none.
#[test]
fn scheduled_rate_below_zero_names_the_schedule() -> Result<(), Box<dyn std::error::Error>> {
    /// `lr(e) = base · (1 − e / epochs)`, which goes below zero after `epochs` epochs.
    struct LinearDecay {
        epochs: f64,
        epoch: u64,
    }
    impl LrSchedule for LinearDecay {
        fn name(&self) -> &'static str {
            "LinearDecay"
        }
        fn transform(&self) -> LrTransform {
            LrTransform::scaled(1.0 - self.epoch as f64 / self.epochs)
        }
        fn advance(&mut self, _: Option<f64>, _: f64) -> vi_optim::Result<()> {
            self.epoch += 1;
            Ok(())
        }
        fn state_dict(&self) -> vi_optim::Result<StateDict> {
            Ok(StateDict::new())
        }
        fn load_state_dict(&mut self, _: &StateDict) -> vi_optim::Result<()> {
            Ok(())
        }
    }

    let w = Var::new(&[1.0f64, -2.0], &Device::Cpu)?;
    let grads = w.as_tensor().sum_all()?.backward()?;
    let adam = Adam::new(
        [("w", w.clone())],
        AdamOptions {
            lr: 0.1,
            ..Default::default()
        },
    )?;
    let mut opt = Scheduler::new(
        adam,
        LinearDecay {
            epochs: 4.0,
            epoch: 0,
        },
    );
    for _ in 0..5 {
        opt.step(&grads)?;
        opt.advance()?;
    }
    let (before, state) = (values(&w), opt.state_dict()?);
    let err = opt.step(&grads).unwrap_err();
    match &err {
        OptimError::InvalidLearningRate {
            optimizer: "Adam",
            param,
            value,
            scheduler: Some("LinearDecay"),
            ..
        } => {
            assert_eq!(param, "w");
            assert!((value + 0.025).abs() < 1e-15, "{value}");
        }
        other => panic!("expected InvalidLearningRate, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "Adam: parameter `w` would step with learning rate -0.025, set by the scheduler \
         LinearDecay: expected a finite rate ≥ 0 (the configured lr 0.1 through the map \
         lr ↦ max(-0.25 · lr + 0, 0)); no parameter was updated"
    );
    assert_eq!(values(&w), before);
    assert_same_state(&opt.state_dict()?, &state, "LinearDecay")?;
    assert_eq!(opt.optimizer().step_count("w"), Some(5));

    opt.set_learning_rate(-1.0);
    assert!(matches!(
        opt.step(&grads),
        Err(OptimError::InvalidLearningRate {
            scheduler: None,
            ..
        })
    ));

    let sgd = Sgd::new([("w", w.clone())], SgdOptions::default())?;
    let mut opt = Scheduler::new(sgd, ExponentialLr::new(1e200)?);
    for _ in 0..2 {
        opt.step(&grads)?; // rates 1e-3, then 1e197: huge, but finite
        opt.advance()?;
    }
    let before = values(&w);
    assert!(before.iter().all(|v| v.is_finite()));
    match opt.step(&grads) {
        Err(OptimError::InvalidLearningRate {
            value,
            scheduler: Some("ExponentialLR"),
            ..
        }) => assert_eq!(value, f64::INFINITY),
        other => panic!("expected InvalidLearningRate, got {other:?}"),
    }
    assert_eq!(values(&w), before);
    Ok(())
}

/// ClippedAdam's rate `lr · lrdⁿ` is checked after the decay: an `lrd > 1` that overflows it
/// is refused before a parameter becomes infinite, and the refused call is not counted for
/// any parameter it lists.
#[test]
fn clipped_adam_decayed_rate_overflow_is_refused() -> Result<(), Box<dyn std::error::Error>> {
    for fast in [true, false] {
        let a = Var::new(&[1.0f64, -1.0], &Device::Cpu)?;
        let b = Var::new(&[2.0f64], &Device::Cpu)?;
        let mut opt = ClippedAdam::empty(ClippedAdamOptions {
            lr: 1e-3,
            lrd: 1e200,
            ..Default::default()
        })?;
        opt.set_cpu_fast_path(fast);
        // `b` has no gradient: its calls are counted (Pyro's decay), its steps not.
        let grads = a.as_tensor().sum_all()?.backward()?;
        let params = [("a", &a), ("b", &b)];
        opt.step_params(&params, &grads)?; // lr · lrd = 1e197: huge, but finite
        let (before, state) = (values(&a), opt.state_dict()?);
        assert!(before.iter().all(|v| v.is_finite()));
        match opt.step_params(&params, &grads) {
            Err(OptimError::InvalidLearningRate {
                optimizer: "ClippedAdam",
                param,
                value,
                lr_decay: true,
                ..
            }) => {
                assert_eq!(param, "a");
                assert_eq!(value, f64::INFINITY);
            }
            other => panic!("fast={fast}: expected InvalidLearningRate, got {other:?}"),
        }
        assert_eq!(values(&a), before, "fast={fast}");
        assert_same_state(&opt.state_dict()?, &state, "ClippedAdam")?;
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
