//! Wrapper rules (Independent, Masked, Expanded, point masses), dispatch errors and user
//! registration.

use candle_core::{DType, Device, Tensor, Var};
use vi_dist::{Delta, Distribution, Expanded, Exponential, Independent, Normal};
use vi_kl::{KlError, KlRegistry, kl_divergence};

use crate::common::{Res, close, host, tensor};

/// Two Normals with batch [2, 3].
fn normals(dtype: DType, dev: &Device) -> (Normal, Normal) {
    let p = Normal::new(
        &tensor(&[0.1, -0.3, 0.7, 1.2, 0.0, -2.0], &[2, 3], dtype, dev),
        &tensor(&[0.5, 1.0, 1.5, 0.8, 2.0, 0.3], &[2, 3], dtype, dev),
    )
    .unwrap();
    let q = Normal::new(
        &tensor(&[0.0, 0.4, -0.2, 1.0, 0.5, -1.0], &[2, 3], dtype, dev),
        &tensor(&[1.0, 0.7, 1.2, 1.1, 1.5, 0.6], &[2, 3], dtype, dev),
    )
    .unwrap();
    (p, q)
}

fn independent_sums_base(dev: &Device, dtype: DType) -> Res {
    let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
    let (p, q) = normals(dtype, dev);
    let base = host(&kl_divergence(&p, &q)?);
    let one = kl_divergence(&p.to_event(1)?, &q.to_event(1)?)?;
    assert_eq!(one.dims(), &[2]);
    let want: Vec<f64> = base.chunks(3).map(|c| c.iter().sum()).collect();
    assert!(
        close(&host(&one), &want, tol),
        "{:?} vs {want:?}",
        host(&one)
    );
    let two = kl_divergence(&p.to_event(2)?, &q.to_event(2)?)?;
    assert_eq!(two.dims(), &[] as &[usize]);
    assert!(close(&host(&two), &[base.iter().sum()], tol));
    // Nested to_event collapses; the KL is the same.
    let nested = kl_divergence(&p.to_event(1)?.to_event(1)?, &q.to_event(2)?)?;
    assert!(close(&host(&nested), &host(&two), tol));
    Ok(())
}
vi_test::test_device!(independent_sums_base);

fn independent_broadcasts(dev: &Device, dtype: DType) -> Res {
    // p batch [2] (event [3]) against q batch [] (event [3]).
    let (p, _) = normals(dtype, dev);
    let q = Normal::new(
        &tensor(&[0.0, 0.4, -0.2], &[3], dtype, dev),
        &tensor(&[1.0, 0.7, 1.2], &[3], dtype, dev),
    )?;
    let kl = kl_divergence(&p.to_event(1)?, &q.to_event(1)?)?;
    assert_eq!(kl.dims(), &[2]);
    let base = host(&kl_divergence(&p, &q)?);
    let want: Vec<f64> = base.chunks(3).map(|c| c.iter().sum()).collect();
    assert!(close(&host(&kl), &want, 1e-5));
    // The other way round too.
    let back = kl_divergence(&q.to_event(1)?, &p.to_event(1)?)?;
    assert_eq!(back.dims(), &[2]);
    Ok(())
}
vi_test::test_device!(independent_broadcasts);

fn masked_zeroes_kl(dev: &Device, dtype: DType) -> Res {
    let (p, q) = normals(dtype, dev);
    let full = host(&kl_divergence(&p, &q)?);
    let mask = Tensor::new(&[1u8, 0, 1], dev)?;
    let want: Vec<f64> = full
        .iter()
        .enumerate()
        .map(|(i, v)| if i % 3 == 1 { 0.0 } else { *v })
        .collect();
    let a = kl_divergence(&p.mask(&mask)?, &q)?;
    let b = kl_divergence(&p, &q.mask(&mask)?)?;
    let both = kl_divergence(&p.mask(&mask)?, &q.mask(&Tensor::new(&[1u8, 1, 0], dev)?)?)?;
    assert_eq!(a.dims(), &[2, 3]);
    assert!(close(&host(&a), &want, 1e-6));
    assert!(close(&host(&b), &want, 1e-6));
    let want_both: Vec<f64> = full
        .iter()
        .enumerate()
        .map(|(i, v)| if i % 3 == 0 { *v } else { 0.0 })
        .collect();
    assert!(close(&host(&both), &want_both, 1e-6));
    // Masked inside Independent: the masked elements drop out of the event sum.
    let ind = kl_divergence(&p.mask(&mask)?.to_event(1)?, &q.to_event(1)?)?;
    let want_ind: Vec<f64> = want.chunks(3).map(|c| c.iter().sum()).collect();
    assert!(close(&host(&ind), &want_ind, 1e-5));
    Ok(())
}
vi_test::test_device!(masked_zeroes_kl);

#[test]
fn masked_infinite_kl_is_zero_not_nan() -> Res {
    // A point mass at -1 against an Exponential: +inf, masked out to 0.
    let dev = Device::Cpu;
    let v = Var::new(&[-1.0f64, 2.0], &dev)?;
    let p = Delta::new(&v, None, 0)?;
    let q = Exponential::new(&Tensor::new(&[1.5f64, 1.5], &dev)?)?;
    let kl = host(&kl_divergence(&p, &q)?);
    assert_eq!(kl[0], f64::INFINITY);
    let masked = kl_divergence(&p.mask(&Tensor::new(&[0u8, 1], &dev)?)?, &q)?;
    let m = host(&masked);
    assert_eq!(m[0], 0.0);
    // -log q(2) = -(ln 1.5 - 1.5 * 2)
    assert!((m[1] - (3.0 - 1.5f64.ln())).abs() < 1e-12);
    Ok(())
}

fn expanded_broadcasts_bases(dev: &Device, dtype: DType) -> Res {
    let p = Normal::new(
        &tensor(&[0.3], &[1], dtype, dev),
        &tensor(&[0.9], &[1], dtype, dev),
    )?;
    let q = Normal::new(
        &tensor(&[0.0, 1.0, -1.0, 2.0], &[4], dtype, dev),
        &tensor(&[1.0, 0.5, 2.0, 1.5], &[4], dtype, dev),
    )?;
    let pe = Expanded::new(Box::new(p.clone()), &[4])?;
    let want = host(&kl_divergence(&p, &q)?);
    let got = kl_divergence(&pe, &q)?;
    assert_eq!(got.dims(), &[4]);
    assert!(close(&host(&got), &want, 1e-6));
    // Expanded on the q side, to a bigger batch: broadcast to [2, 4].
    let qe = Expanded::new(Box::new(q.clone()), &[2, 4])?;
    let got = kl_divergence(&p, &qe)?;
    assert_eq!(got.dims(), &[2, 4]);
    assert!(close(&host(&got)[4..], &want, 1e-6));
    // Expanded inside Independent.
    let got = kl_divergence(&pe.to_event(1)?, &q.to_event(1)?)?;
    assert!(close(&host(&got), &[want.iter().sum()], 1e-5));
    Ok(())
}
vi_test::test_device!(expanded_broadcasts_bases);

fn delta_keeps_log_density(dev: &Device, dtype: DType) -> Res {
    let (_, q) = normals(dtype, dev);
    let v = tensor(&[0.5, 0.1, -0.4, 0.9, 1.1, -1.2], &[2, 3], dtype, dev);
    let ld = tensor(&[0.25, -0.5], &[2, 1], dtype, dev);
    let p = Delta::new(&v, Some(&ld), 0)?;
    let lq = host(&q.log_prob(&v)?);
    let want: Vec<f64> = lq
        .iter()
        .enumerate()
        .map(|(i, l)| if i < 3 { 0.25 - l } else { -0.5 - l })
        .collect();
    let kl = kl_divergence(&p, &q)?;
    assert!(
        close(&host(&kl), &want, 1e-6),
        "{:?} vs {want:?}",
        host(&kl)
    );
    // As an event of 3: Delta(v, ld, 1) against Normal.to_event(1); log_density per event.
    let ld1 = tensor(&[0.25, -0.5], &[2], dtype, dev);
    let p1 = Delta::new(&v, Some(&ld1), 1)?;
    let kl1 = kl_divergence(&p1, &q.to_event(1)?)?;
    let want1 = [
        0.25 - lq[..3].iter().sum::<f64>(),
        -0.5 - lq[3..].iter().sum::<f64>(),
    ];
    assert!(close(&host(&kl1), &want1, 1e-6));
    // Independent of a Delta against an Independent: peeled, then summed.
    let p2 = Delta::new(&v, None, 0)?.to_event(1)?;
    let kl2 = kl_divergence(&p2, &q.to_event(1)?)?;
    let want2 = [-lq[..3].iter().sum::<f64>(), -lq[3..].iter().sum::<f64>()];
    assert!(close(&host(&kl2), &want2, 1e-6));
    Ok(())
}
vi_test::test_device!(delta_keeps_log_density);

#[test]
fn delta_gradient_reaches_the_point() -> Res {
    // d/dv [-log N(v; mu, s)] = (v - mu) / s^2 (a MAP guide learns through this).
    let dev = Device::Cpu;
    let v = Var::new(&[0.5f64, -1.0], &dev)?;
    let p = Delta::new(&v, None, 0)?;
    let q = Normal::new(
        &Tensor::new(&[0.0f64, 1.0], &dev)?,
        &Tensor::new(&[2.0f64, 0.5], &dev)?,
    )?;
    let g = kl_divergence(&p, &q)?.sum_all()?.backward()?;
    let g = host(g.get(&v).unwrap());
    assert!(close(&g, &[0.5 / 4.0, -2.0 / 0.25], 1e-12), "{g:?}");
    Ok(())
}

#[test]
fn errors_name_both_sides_and_shapes() -> Res {
    let dev = Device::Cpu;
    let n = |len: usize| {
        Normal::new(
            &Tensor::zeros(len, DType::F64, &dev).unwrap(),
            &Tensor::ones(len, DType::F64, &dev).unwrap(),
        )
        .unwrap()
    };
    match kl_divergence(&n(2), &n(3)) {
        Err(KlError::BatchShape {
            p,
            q,
            p_shape,
            q_shape,
        }) => {
            assert_eq!((p.as_str(), q.as_str()), ("Normal", "Normal"));
            assert_eq!((p_shape, q_shape), (vec![2], vec![3]));
        }
        other => panic!("expected BatchShape, got {other:?}"),
    }
    match kl_divergence(&n(2).to_event(1)?, &n(3).to_event(1)?) {
        Err(e @ KlError::EventShape { .. }) => assert_eq!(
            e.to_string(),
            "KL(Independent(Normal, 1) ‖ Independent(Normal, 1)): event shapes [2] and [3] differ"
        ),
        other => panic!("expected EventShape, got {other:?}"),
    }
    let f32n = Normal::new(
        &Tensor::zeros(2, DType::F32, &dev)?,
        &Tensor::ones(2, DType::F32, &dev)?,
    )?;
    assert!(matches!(
        kl_divergence(&n(2), &f32n),
        Err(KlError::Kind { .. })
    ));
    // A pair of wrappers without a rule for the bases names the bases.
    let c = vi_dist::Cauchy::new(
        &Tensor::zeros(2, DType::F64, &dev)?,
        &Tensor::ones(2, DType::F64, &dev)?,
    )?;
    match kl_divergence(&n(2).to_event(1)?, &c.to_event(1)?) {
        Err(KlError::NoClosedForm { p, q }) => {
            assert_eq!((p.as_str(), q.as_str()), ("Normal", "Cauchy"))
        }
        other => panic!("expected NoClosedForm, got {other:?}"),
    }
    // Independent with different counts that cannot be peeled into a known pair.
    let i2 = Independent::new(Box::new(n(2)), 1)?;
    assert!(matches!(
        kl_divergence(&i2, &c.to_event(1)?),
        Err(KlError::NoClosedForm { .. })
    ));
    Ok(())
}

#[test]
fn local_registry_registration() -> Res {
    let dev = Device::Cpu;
    let x = Tensor::new(&[0.5f64], &dev)?;
    let p = Normal::new(&x, &x)?;
    let mut reg = KlRegistry::empty();
    assert!(reg.kl(&p, &p).unwrap_err().is_no_closed_form());
    assert!(!reg.has_rule(&p, &p));
    let old = reg.register(|p: &Normal, _: &Normal, _: &KlRegistry| Ok(p.loc().ones_like()?));
    assert!(old.is_none());
    assert!(reg.contains::<Normal, Normal>());
    assert_eq!(host(&reg.kl(&p, &p)?), vec![1.0]);
    // Replacing returns the old rule's entry.
    let old = reg.register(|p: &Normal, _: &Normal, _: &KlRegistry| Ok(p.loc().zeros_like()?));
    assert_eq!(old.map(|i| (i.p, i.q)), Some(("Normal", "Normal")));
    assert_eq!(host(&reg.kl(&p, &p)?), vec![0.0]);
    // Wrapper rules apply in an empty registry too, deferring to the registered pair.
    assert_eq!(host(&reg.kl(&p.to_event(1)?, &p.to_event(1)?)?), vec![0.0]);
    // The default registry is untouched.
    assert_eq!(host(&kl_divergence(&p, &p)?), vec![0.0]);
    Ok(())
}

#[test]
fn rule_with_a_wrong_shape_is_a_typed_error() -> Res {
    let dev = Device::Cpu;
    let p = Normal::new(
        &Tensor::zeros(3, DType::F64, &dev)?,
        &Tensor::ones(3, DType::F64, &dev)?,
    )?;
    let mut reg = KlRegistry::empty();
    reg.register(|_: &Normal, _: &Normal, _: &KlRegistry| {
        Ok(Tensor::zeros(5, DType::F64, &Device::Cpu)?)
    });
    match reg.kl(&p, &p) {
        Err(KlError::RuleShape {
            found, expected, ..
        }) => {
            assert_eq!((found, expected), (vec![5], vec![3]))
        }
        other => panic!("expected RuleShape, got {other:?}"),
    }
    Ok(())
}

#[test]
fn unequal_reinterpreted_counts_are_peeled() -> Res {
    // Independent(MVN [batch 2, event 3], 1) against Independent(Normal [2, 3], 2): both have
    // event [2, 3]; one shared dim is peeled, leaving MVN ‖ Independent(Normal, 1), summed.
    let dev = Device::Cpu;
    let loc = Tensor::new(&[[0.1f64, -0.2, 0.3], [0.5, 0.0, -0.4]], &dev)?;
    let tril = Tensor::new(
        &[[1.0f64, 0.0, 0.0], [0.3, 0.8, 0.0], [-0.2, 0.1, 1.2]],
        &dev,
    )?;
    let mvn = vi_dist::MultivariateNormal::from_scale_tril(&loc, &tril)?;
    let q_loc = Tensor::new(&[[0.0f64, 0.2, -0.1], [0.3, 0.1, 0.0]], &dev)?;
    let q_scale = Tensor::new(&[[1.1f64, 0.9, 1.3], [0.7, 1.0, 1.2]], &dev)?;
    let normal = Normal::new(&q_loc, &q_scale)?;
    let p = mvn.to_event(1)?;
    let q = normal.to_event(2)?;
    assert_eq!(
        (p.event_shape(), q.event_shape()),
        (&[2, 3][..], &[2, 3][..])
    );
    let kl = kl_divergence(&p, &q)?;
    assert_eq!(kl.dims(), &[] as &[usize]);
    // The same as MVN ‖ MVN with q's diagonal covariance, summed over the batch of 2.
    let q_mvn = vi_dist::MultivariateNormal::from_diag_scale(&q_loc, &q_scale)?;
    let want: f64 = host(&kl_divergence(&mvn, &q_mvn)?).iter().sum();
    assert!((kl.to_scalar::<f64>()? - want).abs() < 1e-12);
    // And the other way round.
    let back = kl_divergence(&q, &p)?;
    let want: f64 = host(&kl_divergence(&q_mvn, &mvn)?).iter().sum();
    assert!((back.to_scalar::<f64>()? - want).abs() < 1e-12);
    Ok(())
}
