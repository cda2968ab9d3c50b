//! `candle_nn::Optimizer` for plain candle code, parity with candle-nn's own `AdamW`, and
//! the named-parameter API: lazily created state and per-parameter options, as Pyro's.

use candle_core::{DType, Device, Var};
use vi_optim::{Adam, AdamOptions, AdamW, AdamWOptions, Optimizer as _};

use crate::common::{assert_same_state, objective, synthetic, temp, tol, values};

/// One `backward_step` of some `candle_nn::Optimizer`.
type StepFn = Box<dyn FnMut(&candle_core::Tensor) -> candle_core::Result<()>>;

/// Our Adam and AdamW driven through `candle_nn::Optimizer` follow candle-nn's `AdamW` (same
/// formula up to rounding: candle-nn computes `√(v / (1 − β₂ᵗ))`, torch `√v / √(1 − β₂ᵗ)`).
#[test]
fn candle_nn_trait_matches_candle_nn_adamw() -> Result<(), Box<dyn std::error::Error>> {
    use candle_nn::Optimizer;
    for wd in [0.0, 0.01] {
        let params = candle_nn::ParamsAdamW {
            lr: 0.05,
            weight_decay: wd,
            ..Default::default()
        };
        let (x, c, t) = synthetic(DType::F64, &Device::Cpu)?;
        let mut theirs = candle_nn::AdamW::new(vec![x.clone()], params.clone())?;
        let (y, _, _) = synthetic(DType::F64, &Device::Cpu)?;
        let (betas, eps) = ((params.beta1, params.beta2), params.eps);
        let mut ours: StepFn = if wd == 0.0 {
            let mut o = <Adam as Optimizer>::new(
                vec![y.clone()],
                AdamOptions {
                    lr: 0.05,
                    betas,
                    eps,
                    ..Default::default()
                },
            )?;
            Box::new(move |loss| o.backward_step(loss))
        } else {
            let mut o = <AdamW as Optimizer>::new(
                vec![y.clone()],
                AdamWOptions {
                    lr: 0.05,
                    betas,
                    eps,
                    weight_decay: wd,
                    ..Default::default()
                },
            )?;
            Box::new(move |loss| o.backward_step(loss))
        };
        for _ in 0..30 {
            theirs.backward_step(&objective(x.as_tensor(), &c, &t)?)?;
            ours(&objective(y.as_tensor(), &c, &t)?)?;
        }
        vi_test::assert_all_close(&format!("wd {wd}"), &values(&y), &values(&x), tol(1e-10));
    }
    Ok(())
}

#[test]
fn candle_nn_learning_rate() -> Result<(), Box<dyn std::error::Error>> {
    use candle_nn::Optimizer;
    let x = Var::new(&[1.0f32], &Device::Cpu)?;
    let mut opt = <Adam as Optimizer>::new(
        vec![x],
        AdamOptions {
            lr: 0.1,
            ..Default::default()
        },
    )?;
    assert_eq!(Optimizer::learning_rate(&opt), 0.1);
    Optimizer::set_learning_rate(&mut opt, 0.02);
    assert_eq!(Optimizer::learning_rate(&opt), 0.02);
    assert_eq!(vi_optim::Optimizer::params(&opt)[0].0, "0");
    Ok(())
}

/// A parameter first seen after some steps gets fresh state: its trajectory is that of a
/// fresh optimizer on it alone, while the others keep theirs (Pyro's `PyroOptim`).
#[test]
fn late_parameters_get_fresh_state() -> Result<(), Box<dyn std::error::Error>> {
    let opts = AdamOptions {
        lr: 0.05,
        ..Default::default()
    };
    let (a, c, t) = synthetic(DType::F64, &Device::Cpu)?;
    let (b, _, _) = synthetic(DType::F64, &Device::Cpu)?;
    let (b_alone, _, _) = synthetic(DType::F64, &Device::Cpu)?;
    let mut opt = Adam::empty(opts.clone())?;
    for _ in 0..5 {
        let grads = objective(a.as_tensor(), &c, &t)?.backward()?;
        opt.step_params(&[("a", &a)], &grads)?;
    }
    let mut alone = Adam::new([("b", b_alone.clone())], opts.clone())?;
    for _ in 0..5 {
        let loss = (objective(a.as_tensor(), &c, &t)? + objective(b.as_tensor(), &c, &t)?)?;
        opt.step_params(&[("a", &a), ("b", &b)], &loss.backward()?)?;
        alone.step(&objective(b_alone.as_tensor(), &c, &t)?.backward()?)?;
    }
    assert_eq!(opt.step_count("a"), Some(10));
    assert_eq!(opt.step_count("b"), Some(5));
    assert_eq!(values(&b), values(&b_alone));
    Ok(())
}

/// A parameter without a gradient is skipped: it does not move and its step count stays.
#[test]
fn parameters_without_gradient_are_skipped() -> Result<(), Box<dyn std::error::Error>> {
    let a = Var::new(&[1.0f64], &Device::Cpu)?;
    let b = Var::new(&[1.0f64], &Device::Cpu)?;
    let mut opt = Adam::new([("a", a.clone()), ("b", b.clone())], AdamOptions::default())?;
    opt.step(&a.as_tensor().sqr()?.sum_all()?.backward()?)?;
    assert_eq!(
        (opt.step_count("a"), opt.step_count("b")),
        (Some(1), Some(0))
    );
    assert_eq!(b.as_tensor().to_vec1::<f64>()?, [1.0]);
    Ok(())
}

/// Per-parameter options (Pyro's callable `optim_args`) are chosen once per name.
#[test]
fn per_parameter_options() -> Result<(), Box<dyn std::error::Error>> {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let mut opt = Adam::with_param_options(
        Vec::<(String, Var)>::new(),
        AdamOptions::default(),
        move |name, d| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if name.starts_with("decoder.") {
                AdamOptions {
                    lr: 0.5,
                    amsgrad: true,
                    ..d.clone()
                }
            } else {
                d.clone()
            }
        },
    )?;
    let enc = Var::new(&[1.0f64], &Device::Cpu)?;
    let dec = Var::new(&[1.0f64], &Device::Cpu)?;
    for _ in 0..3 {
        // A constant gradient: each Adam step moves by its learning rate (up to eps).
        let loss = (enc.as_tensor().sum_all()? + dec.as_tensor().sum_all()?)?;
        opt.step_params(
            &[("encoder.w", &enc), ("decoder.w", &dec)],
            &loss.backward()?,
        )?;
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(opt.param_options("decoder.w").map(|o| o.lr), Some(0.5));
    assert_eq!(opt.param_options("encoder.w").map(|o| o.lr), Some(1e-3));
    assert!((1.0 - dec.as_tensor().to_vec1::<f64>()?[0] - 1.5).abs() < 1e-6);
    assert!((1.0 - enc.as_tensor().to_vec1::<f64>()?[0] - 3e-3).abs() < 1e-9);
    let state = opt.state_dict()?;
    assert!(state.get("state.decoder.w.max_exp_avg_sq").is_some());
    assert!(state.get("state.encoder.w.max_exp_avg_sq").is_none());
    Ok(())
}

/// Optimizers and schedulers can move to (and be shared with) other threads.
#[test]
fn optimizers_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Adam>();
    check::<AdamW>();
    check::<vi_optim::Sgd>();
    check::<vi_optim::ClippedAdam>();
    check::<vi_optim::Scheduler<Adam, vi_optim::ReduceLrOnPlateau>>();
}

/// One SVI-like step of a growing param store: parameters appear when first used
/// (`entry().or_insert_with`, as `ctx.param(name, init)`), and the optimizer gets exactly the
/// parameters the step touched, one of which (`aux`) the loss does not depend on.
fn store_step(
    store: &mut std::collections::BTreeMap<String, Var>,
    opt: &mut dyn vi_optim::Optimizer,
    k: usize,
    dtype: DType,
) -> Result<(), Box<dyn std::error::Error>> {
    let (enc, c, t) = synthetic(dtype, &Device::Cpu)?;
    let mut touched = vec!["enc.w", "aux"];
    if k >= 2 && k % 3 != 1 {
        touched.push("dec.w");
    }
    for name in &touched {
        if !store.contains_key(*name) {
            let init = match *name {
                "aux" => Var::zeros(3, dtype, &Device::Cpu)?,
                "dec.w" => Var::from_tensor(&(enc.as_tensor() * 0.5)?)?,
                _ => enc.clone(),
            };
            store.insert(name.to_string(), init);
        }
    }
    let params: Vec<(&str, &Var)> = touched.iter().map(|n| (*n, &store[*n])).collect();
    let mut loss = objective(store["enc.w"].as_tensor(), &c, &t)?;
    if touched.contains(&"dec.w") {
        loss = (loss + objective(store["dec.w"].as_tensor(), &t, &c)?)?;
    }
    opt.step_params(&params, &loss.backward()?)?;
    Ok(())
}

/// A param store's flow (vi-infer's): a growing set of named Vars, each step stepping only
/// the parameters it touched; parameters and optimizer state saved in one safetensors file,
/// loaded into fresh Vars and a fresh optimizer; then the same parameters and state, bit for
/// bit, as without the save.
fn store_flow<O: vi_optim::Optimizer>(
    what: &str,
    make: impl Fn() -> vi_optim::Result<O>,
    end_of_step: impl Fn(&mut O) -> vi_optim::Result<()>,
) -> Result<(), Box<dyn std::error::Error>> {
    use std::collections::BTreeMap;
    use vi_optim::StateDict;
    let (n, m) = (4, 5);
    for dtype in [DType::F32, DType::F64] {
        let mut store = BTreeMap::new();
        let mut straight = make()?;
        for k in 0..n + m {
            store_step(&mut store, &mut straight, k, dtype)?;
            end_of_step(&mut straight)?;
        }

        let mut first_store = BTreeMap::new();
        let mut first = make()?;
        for k in 0..n {
            store_step(&mut first_store, &mut first, k, dtype)?;
            end_of_step(&mut first)?;
        }
        let mut file = StateDict::new();
        for (name, var) in &first_store {
            file.insert(format!("param.{name}"), var.as_tensor().copy()?);
        }
        file.extend(first.state_dict()?.prefixed("optim."));
        let path = temp(&format!("store_{what}_{dtype:?}"));
        file.save(&path)?;
        drop((first, first_store));

        let file = StateDict::load(&path)?;
        std::fs::remove_file(&path).ok();
        let mut resumed_store = BTreeMap::new();
        for (name, t) in file.strip_prefix("param.").iter() {
            resumed_store.insert(name.to_string(), Var::from_tensor(t)?);
        }
        let mut resumed = make()?;
        resumed.load_state_dict(&file.strip_prefix("optim."))?;
        for k in n..n + m {
            store_step(&mut resumed_store, &mut resumed, k, dtype)?;
            end_of_step(&mut resumed)?;
        }

        let names: Vec<&String> = store.keys().collect();
        assert_eq!(names, resumed_store.keys().collect::<Vec<_>>(), "{what}");
        for (name, var) in &store {
            assert_eq!(
                values(var),
                values(&resumed_store[name]),
                "{what} {dtype:?}: {name} differs"
            );
        }
        let (a, b) = (straight.state_dict()?, resumed.state_dict()?);
        assert_same_state(&a, &b, &format!("{what} {dtype:?}"))?;
    }
    Ok(())
}

#[test]
fn param_store_flow_resumes_bit_exact() -> Result<(), Box<dyn std::error::Error>> {
    use vi_optim::{ClippedAdam, ClippedAdamOptions, ExponentialLr, Scheduler};
    store_flow(
        "clipped_adam",
        || {
            ClippedAdam::with_param_options(
                Vec::<(String, Var)>::new(),
                ClippedAdamOptions {
                    lr: 0.05,
                    lrd: 0.99,
                    clip_norm: 0.5,
                    ..Default::default()
                },
                |name, d| {
                    if name.starts_with("dec.") {
                        ClippedAdamOptions {
                            lr: 0.02,
                            ..d.clone()
                        }
                    } else {
                        d.clone()
                    }
                },
            )
        },
        |_| Ok(()),
    )?;
    store_flow(
        "adam_amsgrad_exponential",
        || {
            let adam = Adam::empty(AdamOptions {
                lr: 0.05,
                amsgrad: true,
                ..Default::default()
            })?;
            Ok(Scheduler::new(adam, ExponentialLr::new(0.9)?))
        },
        |opt| opt.advance(),
    )?;
    Ok(())
}
