//! N steps, save to safetensors, load into a fresh optimizer, M steps: the same parameters,
//! bit for bit, as N + M steps without the save, for every optimizer and path.

use candle_core::{DType, Device, Var};
use vi_optim::{
    Adam, AdamOptions, ExponentialLr, Optimizer, PlateauOptions, ReduceLrOnPlateau, Scheduler,
    StateDict,
};

use crate::common::{assert_same_state, build, configs, objective, run, synthetic, temp, values};

const N: usize = 7;
const M: usize = 6;

#[test]
fn resume_is_bit_exact() -> Result<(), Box<dyn std::error::Error>> {
    for dtype in [DType::F64, DType::F32] {
        for fast in [true, false] {
            for (i, (kind, options)) in configs().into_iter().enumerate() {
                let what = format!("{kind} {options} {dtype:?} fast={fast}");
                let (x, c, t) = synthetic(dtype, &Device::Cpu)?;
                let mut straight = build(kind, &options, vec![("x", x.clone())], fast)?;
                run(straight.as_mut(), &x, &c, &t, N + M)?;

                let (y, c, t) = synthetic(dtype, &Device::Cpu)?;
                let mut first = build(kind, &options, vec![("x", y.clone())], fast)?;
                run(first.as_mut(), &y, &c, &t, N)?;
                let path = temp(&format!("resume{i}_{dtype:?}_{fast}"));
                first.save(&path)?;
                drop(first);
                // A fresh parameter restored from the first run's values, as a param store would.
                let z = Var::from_tensor(&y.as_tensor().copy()?)?;
                let mut resumed = build(kind, &options, vec![("x", z.clone())], fast)?;
                resumed.load(&path)?;
                std::fs::remove_file(&path).ok();
                run(resumed.as_mut(), &z, &c, &t, M)?;

                assert_eq!(values(&z), values(&x), "{what}: parameters differ");
                assert_same_state(&straight.state_dict()?, &resumed.state_dict()?, &what)?;
            }
        }
    }
    Ok(())
}

/// A schedule's counters resume too (plateau: best, bad epochs, cooldown, reductions).
#[test]
fn resume_with_schedulers() -> Result<(), Box<dyn std::error::Error>> {
    let plateau = || {
        ReduceLrOnPlateau::new(PlateauOptions {
            patience: 1,
            factor: 0.5,
            cooldown: 1,
            threshold: 0.2,
            ..Default::default()
        })
    };
    let adam = |x: &Var| {
        Adam::new(
            [("x", x.clone())],
            AdamOptions {
                lr: 0.1,
                ..Default::default()
            },
        )
    };
    let epoch =
        |opt: &mut dyn Optimizer, x: &Var, c, t| -> Result<f64, Box<dyn std::error::Error>> {
            let loss = objective(x.as_tensor(), c, t)?;
            opt.step(&loss.backward()?)?;
            Ok(loss.to_scalar::<f64>()?)
        };
    let (x, c, t) = synthetic(DType::F64, &Device::Cpu)?;
    let mut straight = Scheduler::new(adam(&x)?, plateau()?);
    let mut lrs = Vec::new();
    for _ in 0..N + M {
        let loss = epoch(&mut straight, &x, &c, &t)?;
        straight.advance_with(loss)?;
        lrs.push(straight.learning_rate());
    }
    assert!(
        straight.schedule().num_reductions() > 0,
        "the plateau never triggered"
    );

    let (y, c, t) = synthetic(DType::F64, &Device::Cpu)?;
    let mut first = Scheduler::new(adam(&y)?, plateau()?);
    for _ in 0..N {
        let loss = epoch(&mut first, &y, &c, &t)?;
        first.advance_with(loss)?;
    }
    let path = temp("plateau");
    first.save(&path)?;
    let mut resumed = Scheduler::new(adam(&y)?, plateau()?);
    resumed.load(&path)?;
    std::fs::remove_file(&path).ok();
    let mut resumed_lrs = vec![];
    for _ in 0..M {
        let loss = epoch(&mut resumed, &y, &c, &t)?;
        resumed.advance_with(loss)?;
        resumed_lrs.push(resumed.learning_rate());
    }
    assert_eq!(values(&y), values(&x));
    assert_eq!(resumed_lrs, lrs[N..]);

    // The epoch counter of a plain schedule.
    let mut a = Scheduler::new(adam(&x)?, ExponentialLr::new(0.5)?);
    a.advance()?;
    a.advance()?;
    let mut b = Scheduler::new(adam(&x)?, ExponentialLr::new(0.5)?);
    b.load_state_dict(&a.state_dict()?)?;
    assert_eq!(b.learning_rate(), 0.025);
    b.advance()?;
    assert_eq!(b.learning_rate(), 0.0125);
    Ok(())
}

/// State loaded before a parameter is first seen waits for it.
#[test]
fn state_for_a_parameter_seen_later() -> Result<(), Box<dyn std::error::Error>> {
    let (x, c, t) = synthetic(DType::F32, &Device::Cpu)?;
    let mut a = Adam::new(
        [("x", x.clone())],
        AdamOptions {
            lr: 0.05,
            ..Default::default()
        },
    )?;
    run(&mut a, &x, &c, &t, 3)?;
    let state: StateDict = a.state_dict()?;
    let mut b = Adam::empty(AdamOptions {
        lr: 0.05,
        ..Default::default()
    })?;
    b.load_state_dict(&state)?;
    assert_eq!(b.step_count("x"), Some(3));
    let y = Var::from_tensor(&x.as_tensor().copy()?)?;
    let grads = objective(x.as_tensor(), &c, &t)?.backward()?;
    a.step(&grads)?;
    let grads = objective(y.as_tensor(), &c, &t)?.backward()?;
    b.step_params(&[("x", &y)], &grads)?;
    assert_eq!(values(&y), values(&x));
    Ok(())
}

/// A state that the schedule or the optimizer refuses leaves the scheduler as it was: neither
/// the optimizer's state nor the schedule's counters change on a failed load.
#[test]
fn failed_scheduler_load_changes_nothing() -> Result<(), Box<dyn std::error::Error>> {
    let x = Var::new(&[1.0f64, -1.0], &Device::Cpu)?;
    let make = || -> vi_optim::Result<Scheduler<Adam, ExponentialLr>> {
        let adam = Adam::new(
            [("x", x.clone())],
            AdamOptions {
                lr: 0.1,
                ..Default::default()
            },
        )?;
        Ok(Scheduler::new(adam, ExponentialLr::new(0.5)?))
    };
    let mut a = make()?;
    a.step(&x.as_tensor().sqr()?.sum_all()?.backward()?)?;
    a.advance()?;
    let good = a.state_dict()?;
    let without = |key: &str| -> StateDict {
        good.iter()
            .filter(|(k, _)| *k != key)
            .map(|(k, t)| (k.to_string(), t.clone()))
            .collect()
    };

    let mut b = make()?;
    assert!(b.load_state_dict(&without("scheduler.epoch")).is_err());
    assert_eq!(b.optimizer().step_count("x"), Some(0));
    assert_eq!(b.learning_rate(), 0.1);

    assert!(b.load_state_dict(&without("state.x.exp_avg")).is_err());
    assert_eq!(b.optimizer().step_count("x"), Some(0));
    assert_eq!(b.learning_rate(), 0.1);
    b.advance()?;
    assert_eq!(b.learning_rate(), 0.05);
    Ok(())
}
