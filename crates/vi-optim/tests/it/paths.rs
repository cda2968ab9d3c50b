//! The in-place CPU path and the composed (any-device) path give the same trajectories.

use candle_core::{DType, Device, Var};
use vi_test::assert_all_close;

use crate::common::{build, configs, run, synthetic, tol, values};

/// The parameter after one Adam step (lr 0.1) on `grads`, on the fast path or not.
fn one_adam_step(
    x: &Var,
    grads: &candle_core::backprop::GradStore,
    fast: bool,
) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let params = vec![("x", x.clone())];
    let mut opt = build("Adam", &serde_json::json!({"lr": 0.1}), params, fast)?;
    opt.step(grads)?;
    Ok(values(x))
}

#[test]
fn fast_and_composed_paths_agree() -> Result<(), Box<dyn std::error::Error>> {
    for dtype in [DType::F64, DType::F32] {
        let tol = tol(if dtype == DType::F64 { 1e-12 } else { 1e-5 });
        for (kind, options) in configs() {
            let mut out = Vec::new();
            for fast in [true, false] {
                let (x, c, t) = synthetic(dtype, &Device::Cpu)?;
                let mut opt = build(kind, &options, vec![("x", x.clone())], fast)?;
                run(opt.as_mut(), &x, &c, &t, 40)?;
                out.push(values(&x));
            }
            assert_all_close(
                &format!("{kind} {options} {dtype:?}"),
                &out[0],
                &out[1],
                tol,
            );
        }
    }
    Ok(())
}

/// Switching paths mid-run (a parameter moved between devices, say) carries the state over.
#[test]
fn switching_paths_keeps_the_state() -> Result<(), Box<dyn std::error::Error>> {
    for (kind, options) in configs() {
        let (x, c, t) = synthetic(DType::F64, &Device::Cpu)?;
        let mut straight = build(kind, &options, vec![("x", x.clone())], true)?;
        run(straight.as_mut(), &x, &c, &t, 30)?;

        let (y, c, t) = synthetic(DType::F64, &Device::Cpu)?;
        let mut a = build(kind, &options, vec![("x", y.clone())], true)?;
        run(a.as_mut(), &y, &c, &t, 10)?;
        let mut b = build(kind, &options, vec![("x", y.clone())], false)?;
        b.load_state_dict(&a.state_dict()?)?;
        run(b.as_mut(), &y, &c, &t, 10)?;
        a.load_state_dict(&b.state_dict()?)?;
        run(a.as_mut(), &y, &c, &t, 10)?;
        assert_all_close(
            &format!("{kind} {options}"),
            &values(&y),
            &values(&x),
            tol(1e-12),
        );
    }
    Ok(())
}

/// A non-contiguous gradient (here a transposed one) takes the fast path after a copy.
#[test]
fn non_contiguous_gradient() -> Result<(), Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for fast in [true, false] {
        let x = Var::new(&[[1.0f64, 2.0, 3.0], [4.0, 5.0, 6.0]], &Device::Cpu)?;
        let g =
            candle_core::Tensor::new(&[[1.0f64, -1.0], [0.5, 2.0], [-3.0, 0.25]], &Device::Cpu)?
                .t()?;
        assert!(!g.is_contiguous());
        let mut grads = candle_core::backprop::GradStore::default();
        grads.insert(x.as_tensor(), g);
        out.push(one_adam_step(&x, &grads, fast)?);
    }
    assert_all_close("non-contiguous", &out[0], &out[1], tol(1e-15));
    Ok(())
}

/// A gradient that shares its parameter's storage (a GradStore built by hand) is read as it
/// was before the step on both paths, and a failure can no longer strand a half-done step.
#[test]
fn gradient_aliasing_its_parameter() -> Result<(), Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for (fast, aliased) in [(true, true), (false, true), (true, false)] {
        let x = Var::new(&[[1.0f64, -2.0], [0.5, 3.0]], &Device::Cpu)?;
        let mut grads = candle_core::backprop::GradStore::default();
        let g = if aliased {
            x.as_tensor().clone()
        } else {
            x.as_tensor().copy()?
        };
        grads.insert(x.as_tensor(), g);
        out.push(one_adam_step(&x, &grads, fast)?);
    }
    assert_all_close("aliased, fast path", &out[0], &out[2], tol(0.0));
    assert_all_close("aliased, composed path", &out[1], &out[2], tol(1e-15));
    Ok(())
}

/// A parameter large enough for the fast path to split it into shares on rayon's pool: the
/// same trajectory bit for bit in a pool of one thread (one pass) and of three (three unequal
/// shares, 100,003 not being a multiple of 64), and the composed path's within rounding.
#[test]
fn large_parameter_shares_equal_one_pass() -> Result<(), Box<dyn std::error::Error>> {
    let n = 100_003;
    let wave = |k: f64| (0..n).map(move |i| ((i as f64 + 1.0) * k).sin());
    let x0: Vec<f64> = wave(1.3).map(|v| 2.0 * v).collect();
    let c = candle_core::Tensor::from_iter(wave(0.7).map(|v| 1.5 + v), &Device::Cpu)?;
    let t = candle_core::Tensor::from_iter(wave(2.1).map(|v| 3.0 * v), &Device::Cpu)?;
    for (kind, options) in configs() {
        let mut out = Vec::new();
        for (threads, fast) in [(1, true), (3, true), (3, false)] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?;
            let trajectory = || -> Result<Vec<f64>, String> {
                let x = Var::new(x0.as_slice(), &Device::Cpu).map_err(|e| e.to_string())?;
                let mut opt = build(kind, &options, vec![("x", x.clone())], fast)?;
                run(opt.as_mut(), &x, &c, &t, 12).map_err(|e| e.to_string())?;
                Ok(values(&x))
            };
            out.push(pool.install(trajectory)?);
        }
        assert_ne!(out[0], x0, "{kind} {options}: the steps moved nothing");
        let what = format!("{kind} {options}");
        assert_all_close(&format!("{what}, 3 shares"), &out[1], &out[0], tol(0.0));
        assert_all_close(&format!("{what}, composed"), &out[2], &out[0], tol(1e-12));
    }
    Ok(())
}
