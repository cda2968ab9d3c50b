//! The in-place CPU path and the composed (any-device) path give the same trajectories.

use candle_core::{DType, Device, Var};

use crate::common::{build, configs, run, synthetic, values};

fn close(a: &[f64], b: &[f64], tol: f64) -> Result<(), String> {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if (x - y).abs() > tol * (1.0 + y.abs()) {
            return Err(format!("element {i}: {x:e} vs {y:e}"));
        }
    }
    Ok(())
}

#[test]
fn fast_and_composed_paths_agree() -> Result<(), Box<dyn std::error::Error>> {
    for dtype in [DType::F64, DType::F32] {
        let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
        for (kind, options) in configs() {
            let mut out = Vec::new();
            for fast in [true, false] {
                let (x, c, t) = synthetic(dtype, &Device::Cpu)?;
                let mut opt = build(kind, &options, vec![("x", x.clone())], fast)?;
                run(opt.as_mut(), &x, &c, &t, 40)?;
                out.push(values(&x));
            }
            close(&out[0], &out[1], tol).map_err(|e| format!("{kind} {options} {dtype:?}: {e}"))?;
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
        close(&values(&y), &values(&x), 1e-12).map_err(|e| format!("{kind} {options}: {e}"))?;
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
        let mut opt = build(
            "Adam",
            &serde_json::json!({"lr": 0.1}),
            vec![("x", x.clone())],
            fast,
        )?;
        opt.step(&grads)?;
        out.push(values(&x));
    }
    close(&out[0], &out[1], 1e-15)?;
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
        let mut opt = build(
            "Adam",
            &serde_json::json!({"lr": 0.1}),
            vec![("x", x.clone())],
            fast,
        )?;
        opt.step(&grads)?;
        out.push(values(&x));
    }
    close(&out[0], &out[2], 0.0)?;
    close(&out[1], &out[2], 1e-15)?;
    Ok(())
}
