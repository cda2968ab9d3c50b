//! Details of torch's and Pyro's updates that the reference trajectories do not pin.

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use vi_optim::{Adam, AdamOptions, ClippedAdam, ClippedAdamOptions, Optimizer};

/// torch's `lerp` computes `1 − weight` in the tensor's precision: with `β₁ ≤ 0.5` (the
/// `weight ≥ 0.5` branch) an f32 `exp_avg` is `g − (g − m)·(1 − w)` with `w` rounded to f32
/// first, `1 − w` exact in f32. (Three elements take torch's scalar loop; its vectorised
/// loop over longer tensors uses the same coefficient with a fused multiply-add.)
#[test]
fn adam_lerp_in_f32_as_torch() -> Result<(), Box<dyn std::error::Error>> {
    let beta1 = 0.4f64;
    let w = (1.0 - beta1) as f32;
    let one_minus_w = 1.0f32 - w;
    assert_ne!(
        one_minus_w, beta1 as f32,
        "this β₁ does not tell the two roundings apart"
    );
    let grads = [[0.3f32, -1.7, 2.9], [1.1, 0.7, -0.2]];
    for fast in [true, false] {
        let x = Var::new(&[0.5f32, 0.25, -1.0], &Device::Cpu)?;
        let mut opt = Adam::new(
            [("x", x.clone())],
            AdamOptions {
                lr: 0.01,
                betas: (beta1, 0.9),
                ..Default::default()
            },
        )?;
        opt.set_cpu_fast_path(fast);
        let mut m = [0.0f32; 3];
        for g in grads {
            let mut store = GradStore::default();
            store.insert(x.as_tensor(), Tensor::new(&g, &Device::Cpu)?);
            opt.step(&store)?;
            for (m, g) in m.iter_mut().zip(g) {
                *m = g - (g - *m) * one_minus_w;
            }
        }
        let state = opt.state_dict()?;
        let got = state.get("state.x.exp_avg").ok_or("no exp_avg")?;
        assert_eq!(got.to_vec1::<f32>()?, m, "fast path {fast}");
    }
    Ok(())
}

/// Pyro's `ClippedAdam.step` multiplies the learning rate by `lrd` before looking at the
/// gradients, so every call that lists a parameter decays its rate, gradient or not, while
/// its step count (the bias correction) advances only with a gradient.
#[test]
fn clipped_adam_decays_on_calls_without_gradient() -> Result<(), Box<dyn std::error::Error>> {
    for held in [false, true] {
        let a = Var::new(&[0.0f64], &Device::Cpu)?;
        let b = Var::new(&[0.0f64], &Device::Cpu)?;
        let opts = ClippedAdamOptions {
            lr: 0.1,
            lrd: 0.5,
            ..Default::default()
        };
        let mut opt = ClippedAdam::empty(opts)?;
        if held {
            opt.add_param("a", a.clone())?;
            opt.add_param("b", b.clone())?;
        }
        let call = |opt: &mut ClippedAdam, loss: Tensor| -> candle_core::Result<()> {
            let grads = loss.backward()?;
            if held {
                opt.step(&grads)?;
            } else {
                opt.step_params(&[("a", &a), ("b", &b)], &grads)?;
            }
            Ok(())
        };
        for _ in 0..2 {
            call(&mut opt, a.as_tensor().sum_all()?)?;
        }
        assert_eq!(opt.step_count("b"), Some(0));
        call(
            &mut opt,
            (a.as_tensor().sum_all()? + b.as_tensor().sum_all()?)?,
        )?;
        assert_eq!(
            (opt.step_count("a"), opt.step_count("b")),
            (Some(3), Some(1))
        );
        // b's first step (Adam's first step moves by its rate, up to eps) at the third call.
        let moved = -b.as_tensor().to_vec1::<f64>()?[0];
        assert!(
            (moved - 0.1 * 0.5f64.powi(3)).abs() < 1e-8,
            "held {held}: {moved}"
        );
    }
    Ok(())
}

/// The lr-decay count of a parameter seen but not yet stepped is saved and restored.
#[test]
fn clipped_adam_decay_count_resumes() -> Result<(), Box<dyn std::error::Error>> {
    let opts = ClippedAdamOptions {
        lr: 0.1,
        lrd: 0.9,
        ..Default::default()
    };
    let run = |opt: &mut ClippedAdam, a: &Var, b: &Var, calls: std::ops::Range<usize>| {
        for k in calls {
            let loss = if k < 3 {
                a.as_tensor().sqr()?.sum_all()?
            } else {
                (a.as_tensor().sqr()?.sum_all()? + b.as_tensor().sqr()?.sum_all()?)?
            };
            opt.step_params(&[("a", a), ("b", b)], &loss.backward()?)?;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    let (a, b) = (
        Var::new(&[1.0f64], &Device::Cpu)?,
        Var::new(&[2.0f64], &Device::Cpu)?,
    );
    let mut straight = ClippedAdam::empty(opts.clone())?;
    run(&mut straight, &a, &b, 0..6)?;
    let (c, d) = (
        Var::new(&[1.0f64], &Device::Cpu)?,
        Var::new(&[2.0f64], &Device::Cpu)?,
    );
    let mut first = ClippedAdam::empty(opts.clone())?;
    run(&mut first, &c, &d, 0..2)?;
    let state = first.state_dict()?;
    assert_eq!(
        state
            .get("state.b.lr_decays")
            .map(|t| t.to_scalar::<i64>())
            .transpose()?,
        Some(2)
    );
    // Without the count the state cannot resume exactly: a typed error.
    let partial: vi_optim::StateDict = state
        .iter()
        .filter(|(k, _)| !k.ends_with(".lr_decays"))
        .map(|(k, t)| (k.to_string(), t.clone()))
        .collect();
    let r = ClippedAdam::empty(opts.clone())?.load_state_dict(&partial);
    assert!(
        matches!(r, Err(vi_optim::OptimError::State { .. })),
        "{r:?}"
    );
    let mut resumed = ClippedAdam::empty(opts)?;
    resumed.load_state_dict(&state)?;
    run(&mut resumed, &c, &d, 2..6)?;
    assert_eq!(
        c.as_tensor().to_vec1::<f64>()?,
        a.as_tensor().to_vec1::<f64>()?
    );
    assert_eq!(
        d.as_tensor().to_vec1::<f64>()?,
        b.as_tensor().to_vec1::<f64>()?
    );
    Ok(())
}
