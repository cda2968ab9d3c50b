//! Normal, Delta and the wrappers (Independent, Expanded, Masked): shapes, values against
//! closed forms, samplers, gradients, and typed errors.

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_dist::{
    Constraint, Delta, DistError, Distribution, Expanded, Independent, Normal, with_validation,
};
use vi_test::{stats, test_device};

use crate::common::{Res, host};

fn normal(loc: &[f64], scale: &[f64], device: &Device, dtype: DType) -> Normal {
    let l = Tensor::new(loc, device).unwrap().to_dtype(dtype).unwrap();
    let s = Tensor::new(scale, device).unwrap().to_dtype(dtype).unwrap();
    Normal::new(&l, &s).unwrap()
}

fn normal_sampler(device: &Device, dtype: DType) -> Res {
    let d = normal(&[1.5], &[0.7], device, dtype);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x = host(&d.sample(&[40_000], &mut rng)?);
    stats::check_moments(&x, 1.5, 0.49, 5.0)?;
    let n = statrs::distribution::Normal::new(1.5, 0.7)?;
    use statrs::distribution::ContinuousCDF;
    stats::check_ks(&x, |v| n.cdf(v), 1e-3)?;
    Ok(())
}
test_device!(normal_sampler);

fn same_seed_same_draws(device: &Device, dtype: DType) -> Res {
    let d = normal(&[0.0, 1.0], &[1.0, 2.0], device, dtype);
    let a = host(&d.sample(&[3], &mut ChaCha8Rng::seed_from_u64(7))?);
    let b = host(&d.sample(&[3], &mut ChaCha8Rng::seed_from_u64(7))?);
    let c = host(&d.sample(&[3], &mut ChaCha8Rng::seed_from_u64(8))?);
    assert_eq!(a, b);
    assert_ne!(a, c);
    // the same numbers on the CPU in f64, up to the dtype's rounding
    let cpu = normal(&[0.0, 1.0], &[1.0, 2.0], &Device::Cpu, DType::F64);
    let r = host(&cpu.sample(&[3], &mut ChaCha8Rng::seed_from_u64(7))?);
    for (x, y) in a.iter().zip(&r) {
        assert!((x - y).abs() < 1e-5 * y.abs().max(1.0), "{x} vs {y}");
    }
    Ok(())
}
test_device!(same_seed_same_draws);

fn normal_rsample_gradient(device: &Device, dtype: DType) -> Res {
    // d(loc + scale·ε)/d loc = 1, d/d scale = ε = (x − loc)/scale
    let loc = Var::from_tensor(&Tensor::new(&[0.3f64, -1.0], device)?.to_dtype(dtype)?)?;
    let scale = Var::from_tensor(&Tensor::new(&[2.0f64, 0.5], device)?.to_dtype(dtype)?)?;
    let d = Normal::new(loc.as_tensor(), scale.as_tensor())?;
    let x = d.rsample(&[4], &mut ChaCha8Rng::seed_from_u64(3))?;
    let g = x.sum_all()?.backward()?;
    let gl = host(g.get(loc.as_tensor()).ok_or("no loc grad")?);
    let gs = host(g.get(scale.as_tensor()).ok_or("no scale grad")?);
    let xs = host(&x);
    let eps: Vec<f64> = (0..2)
        .map(|j| {
            (0..4)
                .map(|i| (xs[i * 2 + j] - [0.3, -1.0][j]) / [2.0, 0.5][j])
                .sum()
        })
        .collect();
    let tol = if dtype == DType::F64 { 1e-12 } else { 1e-4 };
    for j in 0..2 {
        assert!((gl[j] - 4.0).abs() < tol);
        assert!(
            (gs[j] - eps[j]).abs() < tol * 10.0,
            "{} vs {}",
            gs[j],
            eps[j]
        );
    }
    Ok(())
}
test_device!(normal_rsample_gradient);

fn independent_sums_event(device: &Device, dtype: DType) -> Res {
    let base = normal(&[0.0, 1.0, 2.0], &[1.0, 2.0, 3.0], device, dtype);
    let x = Tensor::new(&[[0.5f64, 0.5, 0.5], [1.0, 2.0, 3.0]], device)?.to_dtype(dtype)?;
    let lp = host(&base.log_prob(&x)?);
    let ind = base.to_event(1)?;
    assert_eq!(ind.batch_shape(), &[] as &[usize]);
    assert_eq!(ind.event_shape(), &[3]);
    let li = host(&ind.log_prob(&x)?);
    assert_eq!(li.len(), 2);
    let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
    assert!((li[0] - lp[..3].iter().sum::<f64>()).abs() < tol);
    assert!((li[1] - lp[3..].iter().sum::<f64>()).abs() < tol);
    let he = host(&ind.entropy()?)[0];
    let hb: f64 = host(&base.entropy()?).iter().sum();
    assert!((he - hb).abs() < tol);
    // nested to_event collapses
    let b2 = normal(&[0.0; 6], &[1.0; 6], device, dtype).expand(&[2, 6])?;
    let nested = b2.to_event(1)?.to_event(1)?;
    let inner = nested.base();
    assert_eq!(inner.name(), "Normal");
    assert_eq!(nested.reinterpreted_batch_ndims(), 2);
    assert_eq!(nested.event_shape(), &[2, 6]);
    // too many dims
    assert!(matches!(
        base.to_event(2).map_err(DistError::into_kind),
        Err(DistError::ToEvent { n: 2, .. })
    ));
    Ok(())
}
test_device!(independent_sums_event);

fn expanded_wrapper(device: &Device, dtype: DType) -> Res {
    let base = normal(&[0.0, 10.0], &[1.0, 1.0], device, dtype).expand(&[1, 2])?;
    let e = Expanded::new(base.clone(), &[3, 4, 2])?;
    assert_eq!(e.batch_shape(), &[3, 4, 2]);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let x = e.sample(&[5], &mut rng)?;
    assert_eq!(x.dims(), &[5, 3, 4, 2]);
    // each expanded copy is its own draw, and the last dim keeps its own location
    let xs = host(&x);
    let col0: Vec<f64> = xs.iter().step_by(2).copied().collect();
    let col1: Vec<f64> = xs.iter().skip(1).step_by(2).copied().collect();
    assert!(col0.iter().all(|v| v.abs() < 6.0));
    assert!(col1.iter().all(|v| (v - 10.0).abs() < 6.0));
    let distinct = col0.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(distinct, col0.len() - 1);
    assert_eq!(e.log_prob(&x)?.dims(), &[5, 3, 4, 2]);
    assert_eq!(e.entropy()?.dims(), &[3, 4, 2]);
    assert!(matches!(
        Expanded::new(base, &[3, 4, 5]).map_err(DistError::into_kind),
        Err(DistError::Expand { .. })
    ));
    Ok(())
}
test_device!(expanded_wrapper);

fn masked_wrapper(device: &Device, dtype: DType) -> Res {
    let base = normal(&[0.0, 0.0, 0.0], &[1.0, 1.0, 1.0], device, dtype);
    let m = base.mask(&Tensor::new(&[1u8, 0, 1], device)?)?;
    let x = Tensor::new(&[[1.0f64, 2.0, 3.0]], device)?.to_dtype(dtype)?;
    let lp = host(&m.log_prob(&x)?);
    let lb = host(&base.log_prob(&x)?);
    assert_eq!(lp[1], 0.0);
    assert_eq!(lp[0], lb[0]);
    assert_eq!(lp[2], lb[2]);
    // the mask broadcasts the batch shape
    let m2 = base.mask(&Tensor::new(&[[1u8], [0]], device)?)?;
    assert_eq!(m2.batch_shape(), &[2, 3]);
    assert!(matches!(
        base.mask(&Tensor::new(&[1u8, 0], device)?)
            .map_err(DistError::into_kind),
        Err(DistError::MaskShape { .. })
    ));
    Ok(())
}
test_device!(masked_wrapper);

fn delta_distribution(device: &Device, dtype: DType) -> Res {
    let v = Var::from_tensor(&Tensor::new(&[[1.0f64, 2.0], [3.0, 4.0]], device)?.to_dtype(dtype)?)?;
    let ld = Tensor::new(&[0.5f64, -1.0], device)?.to_dtype(dtype)?;
    let d = Delta::new(v.as_tensor(), Some(&ld), 1)?;
    assert_eq!((d.batch_shape(), d.event_shape()), (&[2][..], &[2][..]));
    let lp = host(&d.log_prob(v.as_tensor())?);
    assert_eq!(lp, vec![0.5, -1.0]);
    let off = Tensor::new(&[[1.0f64, 2.5], [3.0, 4.0]], device)?.to_dtype(dtype)?;
    let lp = host(&d.log_prob(&off)?);
    assert_eq!(lp[0], f64::NEG_INFINITY);
    assert_eq!(lp[1], -1.0);
    // rsample is v itself: gradient 1 per draw
    let x = d.rsample(&[3], &mut ChaCha8Rng::seed_from_u64(0))?;
    assert_eq!(x.dims(), &[3, 2, 2]);
    let g = x.sum_all()?.backward()?;
    assert_eq!(host(g.get(v.as_tensor()).ok_or("no grad")?), vec![3.0; 4]);
    assert_eq!(host(&d.entropy()?), vec![-0.5, 1.0]);
    Ok(())
}
test_device!(delta_distribution);

#[test]
fn normal_typed_errors() {
    let dev = Device::Cpu;
    let loc = Tensor::new(&[0.0f64, 1.0], &dev).unwrap();
    let bad = Tensor::new(&[1.0f64, -1.0], &dev).unwrap();
    let e = Normal::new(&loc, &bad).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            DistError::ParamSupport {
                dist: "Normal",
                param: "scale",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("scale"));
    // switched off: no check
    assert!(with_validation(false, || Normal::new(&loc, &bad)).is_ok());
    let nan = Tensor::new(&[f64::NAN, 1.0], &dev).unwrap();
    assert!(matches!(
        Normal::new(&nan, &loc.ones_like().unwrap()).map_err(DistError::into_kind),
        Err(DistError::ParamSupport { param: "loc", .. })
    ));
    let three = Tensor::new(&[1.0f64, 1.0, 1.0], &dev).unwrap();
    let e = Normal::new(&loc, &three).unwrap_err();
    assert!(matches!(e.kind(), DistError::Broadcast { .. }), "{e}");
    assert!(e.to_string().contains("[2]") && e.to_string().contains("[3]"));
    let f32s = Tensor::new(&[1.0f32, 1.0], &dev).unwrap();
    assert!(matches!(
        Normal::new(&loc, &f32s).map_err(DistError::into_kind),
        Err(DistError::ParamKind { .. })
    ));
    // a value whose shape does not broadcast with the batch
    let d = Normal::new(&loc, &loc.ones_like().unwrap()).unwrap();
    assert!(matches!(
        d.log_prob(&three),
        Err(DistError::ValueShape { .. })
    ));
    // rsample-less family error comes from the trait default
    let ind = d.to_event(1).unwrap();
    assert!(ind.has_rsample());
    assert!(matches!(ind.support(), Constraint::Independent { .. }));
    let _: &Independent = &ind;
}
