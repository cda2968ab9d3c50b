//! The tutorial's result, as Pyro prints it (`compare/gmm_tutorial.py`: weights 0.375 and
//! 0.625, locations 0.499 and 10.98, scale 0.651, final loss 17.4433, the first two points
//! in one component), and the plain candle objective of the timing comparison equal to
//! `TraceEnumElbo`'s loss.

use gmm::{Init, TUTORIAL_DATA, fit, svi};
use vi_infer::candle::{DType, Device, Tensor};

type Res = Result<(), Box<dyn std::error::Error>>;

#[test]
fn reaches_pyros_tutorial_result() -> Res {
    let f = fit(&TUTORIAL_DATA, 2, 100, 200)?;
    // Components in ascending order of location (the labels are arbitrary).
    let (lo, hi) = if f.locs[0] < f.locs[1] {
        (0, 1)
    } else {
        (1, 0)
    };
    let close = |a: f64, b: f64, tol: f64, what: &str| {
        assert!((a - b).abs() <= tol, "{what}: {a} vs Pyro's {b}");
    };
    close(f.weights[lo], 0.375, 1e-3, "weight of the low component");
    close(f.weights[hi], 0.625, 1e-3, "weight of the high component");
    close(f.locs[lo], 0.498_874_04, 1e-3, "low location");
    close(f.locs[hi], 10.984_464, 1e-3, "high location");
    close(f.scale, 0.651_433_706, 1e-3, "scale");
    close(
        f.initial_loss,
        25.6656,
        1e-3,
        "initial loss (the best of 100)",
    );
    close(f.final_loss, 17.4433, 1e-3, "final loss");
    assert_eq!(f.assignment, [lo, lo, hi, hi, hi]);
    Ok(())
}

#[test]
fn plain_objective_is_the_enumerated_loss() -> Res {
    let xs = gmm::bench::data(40, 3, 7);
    let x = Tensor::new(xs.as_slice(), &Device::Cpu)?;
    let init = Init {
        locs: vec![0.3, 4.0, 11.0],
        scale: 1.7,
    };
    let mut s = svi(&x, 3, init.clone())?.seed(0);
    let loss = s.evaluate_loss()?.loss;
    let plain = gmm::plain::loss(
        &Tensor::zeros(3, DType::F64, &Device::Cpu)?,
        &Tensor::new(init.scale.ln(), &Device::Cpu)?,
        &Tensor::new(init.locs.as_slice(), &Device::Cpu)?,
        &x,
    )?
    .to_scalar::<f64>()?;
    assert!(
        (loss - plain).abs() <= 1e-10 * plain.abs(),
        "{loss} vs {plain}"
    );
    Ok(())
}
