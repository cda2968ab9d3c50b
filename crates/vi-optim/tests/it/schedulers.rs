//! Schedulers against their closed-form learning-rate sequences, and the rates the wrapped
//! optimizer actually steps with.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use vi_optim::{
    Adam, AdamOptions, CosineAnnealingLr, ExponentialLr, LrSchedule, OptimError, Optimizer,
    PlateauMode, PlateauOptions, ReduceLrOnPlateau, Scheduler, Sgd, SgdOptions, StepLr,
    ThresholdMode,
};
use vi_test::{Tol, assert_all_close};

use crate::common::assert_invalid_option;

/// Learning rates against their closed forms: to f64 rounding.
const LR_TOL: Tol = Tol {
    rtol: 1e-14,
    atol: 1e-16,
};

/// The default learning rate at epochs 0..epochs of `schedule` over Adam with `base`.
fn sequence<S: LrSchedule>(schedule: S, base: f64, epochs: usize) -> Vec<f64> {
    let adam = Adam::empty(AdamOptions {
        lr: base,
        ..Default::default()
    })
    .unwrap();
    let mut opt = Scheduler::new(adam, schedule);
    let mut out = vec![opt.learning_rate()];
    for _ in 1..epochs {
        opt.advance().unwrap();
        out.push(opt.learning_rate());
    }
    out
}

#[test]
fn step_lr_closed_form() {
    let got = sequence(StepLr::new(3, 0.5).unwrap(), 0.1, 12);
    let expected: Vec<f64> = (0..12).map(|e| 0.1 * 0.5f64.powi(e / 3)).collect();
    assert_all_close("lr", &got, &expected, LR_TOL);
}

#[test]
fn exponential_lr_closed_form() {
    let got = sequence(ExponentialLr::new(0.9).unwrap(), 0.2, 30);
    let expected: Vec<f64> = (0..30).map(|e| 0.2 * 0.9f64.powi(e)).collect();
    assert_all_close("lr", &got, &expected, LR_TOL);
}

#[test]
fn cosine_annealing_closed_form() {
    let (base, eta_min, t_max) = (0.1, 0.01, 5);
    // Past t_max the closed form rises again (period 2·t_max), as torch's.
    let got = sequence(CosineAnnealingLr::new(t_max, eta_min).unwrap(), base, 13);
    let expected: Vec<f64> = (0..13)
        .map(|e| {
            let c = (std::f64::consts::PI * e as f64 / t_max as f64).cos();
            eta_min + (base - eta_min) * (1.0 + c) / 2.0
        })
        .collect();
    assert_all_close("lr", &got, &expected, LR_TOL);
    assert!((got[5] - eta_min).abs() < 1e-16);
}

/// torch's ReduceLROnPlateau on a hand-worked metric sequence: patience 1, factor 0.5,
/// cooldown 1, min_lr 0.02 (the last reduction is clipped, the one after skipped by eps).
#[test]
fn plateau_sequence() {
    let opts = PlateauOptions {
        factor: 0.5,
        patience: 1,
        threshold: 0.0,
        cooldown: 1,
        min_lr: 0.02,
        ..Default::default()
    };
    let adam = Adam::empty(AdamOptions {
        lr: 0.1,
        ..Default::default()
    })
    .unwrap();
    let mut opt = Scheduler::new(adam, ReduceLrOnPlateau::new(opts).unwrap());
    let metrics = [
        5.0, 4.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0,
    ];
    let mut got = vec![];
    for m in metrics {
        opt.advance_with(m).unwrap();
        got.push(opt.learning_rate());
    }
    let expected = [
        0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.02, 0.02, 0.02, 0.02,
    ];
    assert_all_close("lr", &got, &expected, LR_TOL);
    assert_eq!(opt.schedule().num_reductions(), 3);
    assert_eq!(opt.schedule().best(), 3.0);
}

/// Max mode with an absolute threshold: only rises of more than 0.5 count.
#[test]
fn plateau_max_abs() {
    let opts = PlateauOptions {
        mode: PlateauMode::Max,
        threshold_mode: ThresholdMode::Abs,
        threshold: 0.5,
        patience: 0,
        factor: 0.1,
        ..Default::default()
    };
    let adam = Adam::empty(AdamOptions {
        lr: 1.0,
        ..Default::default()
    })
    .unwrap();
    let mut opt = Scheduler::new(adam, ReduceLrOnPlateau::new(opts).unwrap());
    let mut got = vec![];
    for m in [1.0, 2.0, 2.4, 3.0, 2.0] {
        opt.advance_with(m).unwrap();
        got.push(opt.learning_rate());
    }
    assert_all_close(
        "lr",
        &got,
        &[1.0, 1.0, 0.1, 0.1, 0.010000000000000002],
        LR_TOL,
    );
}

#[test]
fn plateau_needs_a_metric() {
    let adam = Adam::empty(AdamOptions::default()).unwrap();
    let mut opt = Scheduler::new(
        adam,
        ReduceLrOnPlateau::new(PlateauOptions::default()).unwrap(),
    );
    assert!(matches!(
        opt.advance(),
        Err(OptimError::MissingMetric { .. })
    ));
}

/// `loss = sum(x)` has gradient 1, so plain SGD moves each element by exactly the rate it used.
fn moved_by(opt: &mut dyn Optimizer, params: &[(&str, &Var)]) -> Vec<f64> {
    let mut grads = GradStore::default();
    let before: Vec<f64> = params
        .iter()
        .map(|(_, v)| v.as_tensor().to_vec1::<f64>().unwrap()[0])
        .collect();
    for (_, v) in params {
        grads.insert(
            v.as_tensor(),
            Tensor::ones(1, DType::F64, &Device::Cpu).unwrap(),
        );
    }
    opt.step_params(params, &grads).unwrap();
    params
        .iter()
        .zip(before)
        .map(|((_, v), b)| b - v.as_tensor().to_vec1::<f64>().unwrap()[0])
        .collect()
}

/// Per-parameter rates are each scheduled from their own base, and a parameter first seen
/// late follows the current epoch's schedule from its base too (Pyro would start it at
/// epoch 0 with a fresh per-parameter scheduler).
#[test]
fn schedule_applies_per_parameter() {
    let a = Var::zeros(1, DType::F64, &Device::Cpu).unwrap();
    let b = Var::zeros(1, DType::F64, &Device::Cpu).unwrap();
    let late = Var::zeros(1, DType::F64, &Device::Cpu).unwrap();
    let sgd = Sgd::with_param_options(
        [("a", a.clone()), ("b", b.clone())],
        SgdOptions {
            lr: 1.0,
            ..Default::default()
        },
        |name, d| match name {
            "b" => SgdOptions {
                lr: 0.1,
                ..d.clone()
            },
            _ => d.clone(),
        },
    )
    .unwrap();
    let mut opt = Scheduler::new(sgd, ExponentialLr::new(0.5).unwrap());
    let d = moved_by(&mut opt, &[("a", &a), ("b", &b)]);
    assert_all_close("moved by", &d, &[1.0, 0.1], LR_TOL);
    opt.advance().unwrap();
    opt.advance().unwrap();
    let d = moved_by(&mut opt, &[("a", &a), ("b", &b), ("late", &late)]);
    assert_all_close("moved by", &d, &[0.25, 0.025, 0.25], LR_TOL);

    // Cosine annealing's floor is eta_min for every parameter.
    let sgd = Sgd::with_param_options(
        [("a", a.clone()), ("b", b.clone())],
        SgdOptions {
            lr: 1.0,
            ..Default::default()
        },
        |name, d| {
            if name == "b" {
                SgdOptions {
                    lr: 0.1,
                    ..d.clone()
                }
            } else {
                d.clone()
            }
        },
    )
    .unwrap();
    let mut opt = Scheduler::new(sgd, CosineAnnealingLr::new(2, 0.05).unwrap());
    opt.advance().unwrap();
    let d = moved_by(&mut opt, &[("a", &a), ("b", &b)]);
    assert_all_close(
        "moved by",
        &d,
        &[0.05 + 0.95 * 0.5, 0.05 + 0.05 * 0.5],
        LR_TOL,
    );
    opt.advance().unwrap();
    let d = moved_by(&mut opt, &[("a", &a), ("b", &b)]);
    assert_all_close("moved by", &d, &[0.05, 0.05], LR_TOL);
}

#[test]
fn bad_schedule_options() {
    assert_invalid_option(StepLr::new(0, 0.5), "step_size");
    assert_invalid_option(StepLr::new(2, -0.5), "gamma");
    assert_invalid_option(ExponentialLr::new(f64::NAN), "gamma");
    assert_invalid_option(ExponentialLr::new(f64::INFINITY), "gamma");
    assert_invalid_option(CosineAnnealingLr::new(0, 0.0), "T_max");
    assert_invalid_option(CosineAnnealingLr::new(10, -1.0), "eta_min");
    let plateau = |o: PlateauOptions| ReduceLrOnPlateau::new(o);
    let d = PlateauOptions::default;
    assert_invalid_option(plateau(PlateauOptions { factor: 1.0, ..d() }), "factor");
    assert_invalid_option(
        plateau(PlateauOptions {
            factor: -0.1,
            ..d()
        }),
        "factor",
    );
    assert_invalid_option(
        plateau(PlateauOptions {
            threshold: -1e-4,
            ..d()
        }),
        "threshold",
    );
    assert_invalid_option(
        plateau(PlateauOptions {
            min_lr: -1.0,
            ..d()
        }),
        "min_lr",
    );
    assert_invalid_option(
        plateau(PlateauOptions {
            min_lr: f64::NAN,
            ..d()
        }),
        "min_lr",
    );
    assert_invalid_option(plateau(PlateauOptions { eps: -1e-8, ..d() }), "eps");
}

/// torch reduces each parameter group's rate on its own: once the default rate sits at
/// `min_lr`, a parameter with a larger rate keeps being reduced down to `min_lr` too.
#[test]
fn plateau_reduces_larger_rates_past_the_default_floor() {
    let (a, big) = (
        Var::zeros(1, DType::F64, &Device::Cpu).unwrap(),
        Var::zeros(1, DType::F64, &Device::Cpu).unwrap(),
    );
    let sgd = Sgd::with_param_options(
        [("a", a.clone()), ("big", big.clone())],
        SgdOptions {
            lr: 1e-3,
            ..Default::default()
        },
        |name, d| match name {
            "big" => SgdOptions {
                lr: 1e-1,
                ..d.clone()
            },
            _ => d.clone(),
        },
    )
    .unwrap();
    let plateau = ReduceLrOnPlateau::new(PlateauOptions {
        factor: 0.1,
        patience: 0,
        min_lr: 1e-4,
        ..Default::default()
    })
    .unwrap();
    let mut opt = Scheduler::new(sgd, plateau);
    let (mut got_a, mut got_big) = (vec![], vec![]);
    for _ in 0..6 {
        let d = moved_by(&mut opt, &[("a", &a), ("big", &big)]);
        got_a.push(d[0]);
        got_big.push(d[1]);
        opt.advance_with(1.0).unwrap();
    }
    assert_all_close(
        "moved by",
        &got_a,
        &[1e-3, 1e-3, 1e-4, 1e-4, 1e-4, 1e-4],
        LR_TOL,
    );
    assert_all_close(
        "moved by",
        &got_big,
        &[1e-1, 1e-1, 1e-2, 1e-3, 1e-4, 1e-4],
        LR_TOL,
    );
}
