//! Regression tests for review findings: each failed before its fix.

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_dist::{
    Binomial, Constraint, DistError, Distribution, Expanded, Normal, Pareto, Poisson, Uniform,
    with_validation,
};
use vi_test::test_device;

use crate::common::{Res, vector};

/// `Independent` checks the event shape of a value (torch's `_validate_sample`): a value that
/// merely broadcasts against the event is a `ValueShape` error, not a silent broadcast sum.
fn independent_checks_value_event_shape(device: &Device, dtype: DType) -> Res {
    let loc = Tensor::zeros((2, 3), dtype, device)?;
    let d = Normal::new(&loc, &loc.ones_like()?)?.to_event(1)?;
    for bad in [vec![1usize], vec![2, 1], vec![1, 1]] {
        let v = Tensor::zeros(bad.as_slice(), dtype, device)?;
        let r = d.log_prob(&v);
        assert!(
            matches!(
                r,
                Err(DistError::ValueShape {
                    dist: "Independent",
                    ..
                })
            ),
            "value {bad:?}: {r:?}"
        );
    }
    // also when validation is off (shape checks always run)
    let v = Tensor::zeros(1, dtype, device)?;
    let r = with_validation(false, || d.log_prob(&v));
    assert!(matches!(r, Err(DistError::ValueShape { .. })), "{r:?}");
    // a value of the right event shape still works, with extra sample dims
    let v = Tensor::zeros((5, 1, 3), dtype, device)?;
    assert_eq!(d.log_prob(&v)?.dims(), &[5, 2]);
    Ok(())
}
test_device!(independent_checks_value_event_shape);

/// A value of another dtype or device than the distribution is a typed error naming the
/// distribution (not a bare candle dtype-mismatch error).
fn value_of_another_dtype_is_a_typed_error(device: &Device, dtype: DType) -> Res {
    let other = if dtype == DType::F32 {
        DType::F64
    } else {
        DType::F32
    };
    let loc = Tensor::zeros(3, dtype, device)?;
    let d = Normal::new(&loc, &loc.ones_like()?)?;
    let v = Tensor::zeros(3, other, device)?;
    let r = d.log_prob(&v);
    assert!(
        matches!(r, Err(DistError::ValueKind { dist: "Normal", .. })),
        "{r:?}"
    );
    let r = d.to_event(1)?.log_prob(&v);
    assert!(matches!(r, Err(DistError::ValueKind { .. })), "{r:?}");
    Ok(())
}
test_device!(value_of_another_dtype_is_a_typed_error);

/// A `total_count` too large to enumerate is a typed error in `entropy` and
/// `enumerate_support`, never an integer overflow.
#[test]
fn binomial_huge_count_is_an_error() -> Res {
    let n = Tensor::new(&[5e9f64], &Device::Cpu)?;
    let d = Binomial::from_probs(&n, &Tensor::new(&[0.5f64], &Device::Cpu)?)?;
    let r = d.entropy();
    assert!(matches!(r, Err(DistError::Invalid { .. })), "{r:?}");
    let r = d.enumerate_support(false);
    assert!(matches!(r, Err(DistError::Invalid { .. })), "{r:?}");
    Ok(())
}

/// `inf` is not an integer (torch's `value % 1 == 0` is false for it): integer supports and
/// parameters reject it.
fn infinity_is_not_an_integer(device: &Device, dtype: DType) -> Res {
    let d = Poisson::new(&vector(&[2.0], dtype, device))?;
    let r = d.log_prob(&vector(&[f64::INFINITY], dtype, device));
    assert!(matches!(r, Err(DistError::ValueSupport { .. })), "{r:?}");
    let r = Binomial::from_probs(
        &vector(&[f64::INFINITY], dtype, device),
        &vector(&[0.5], dtype, device),
    )
    .map_err(DistError::into_kind);
    assert!(
        matches!(
            r,
            Err(DistError::ParamSupport {
                param: "total_count",
                ..
            })
        ),
        "{r:?}"
    );
    assert!(!Constraint::NonNegativeInteger.all(&vector(&[f64::INFINITY], dtype, device))?);
    Ok(())
}
test_device!(infinity_is_not_an_integer);

/// `Expanded` of a family with tensor-valued support (Uniform) checks values against the
/// expanded bounds.
fn expanded_uniform_support(device: &Device, dtype: DType) -> Res {
    let d = Uniform::new(
        &vector(&[0.0], dtype, device),
        &vector(&[1.0], dtype, device),
    )?;
    let e = Expanded::new(Box::new(d), &[2, 3])?;
    let x = e.sample(&[4], &mut ChaCha8Rng::seed_from_u64(0))?;
    assert_eq!(x.dims(), &[4, 2, 3]);
    assert_eq!(e.log_prob(&x)?.dims(), &[4, 2, 3]);
    let r = e.log_prob(&Tensor::full(2.0, (2, 3), device)?.to_dtype(dtype)?);
    assert!(matches!(r, Err(DistError::ValueSupport { .. })), "{r:?}");
    Ok(())
}
test_device!(expanded_uniform_support);

/// Pareto's mean (alpha ≤ 1) and variance (alpha ≤ 2) are `inf`, with finite gradients (0 for
/// alpha, whose clamped branch is unselected), as StudentT's variance: no `0 · ∞ = NaN`.
fn pareto_undefined_moments_have_finite_gradients(device: &Device, dtype: DType) -> Res {
    let alpha = Var::from_tensor(&vector(&[0.5, 1.0, 2.0, 3.0], dtype, device))?;
    let scale = Var::from_tensor(&vector(&[1.0, 1.0, 1.0, 2.0], dtype, device))?;
    let d = Pareto::new(scale.as_tensor(), alpha.as_tensor())?;
    for (what, m, finite_from) in [("mean", d.mean()?, 2), ("variance", d.variance()?, 3)] {
        let vals = vi_test::to_vec(&m)?;
        assert!(
            vals[..finite_from].iter().all(|v| *v == f64::INFINITY),
            "{what} {vals:?}"
        );
        assert!(
            vals[finite_from..].iter().all(|v| v.is_finite()),
            "{what} {vals:?}"
        );
        let g = m.sum_all()?.backward()?;
        let ga = vi_test::to_vec(g.get(alpha.as_tensor()).ok_or("no alpha gradient")?)?;
        assert!(
            ga.iter().all(|v| v.is_finite()),
            "{what}: d/d alpha = {ga:?}"
        );
        assert!(
            ga[..finite_from].iter().all(|v| *v == 0.0),
            "{what}: {ga:?}"
        );
    }
    // alpha = 3, scale = 2: mean 3, variance 4·3 / (4·1) = 3; d mean/d alpha = −scale/(α−1)²
    let g = d.mean()?.sum_all()?.backward()?;
    let ga = vi_test::to_vec(g.get(alpha.as_tensor()).ok_or("no alpha gradient")?)?;
    assert!((ga[3] + 0.5).abs() < 1e-6, "{ga:?}");
    Ok(())
}
test_device!(pareto_undefined_moments_have_finite_gradients);

/// Masked-out values do not matter, as NumPyro's `MaskedDistribution`: they are replaced by a
/// point of the support before `log_prob`, so missing data given as NaN (or any placeholder
/// outside the support) neither fails validation nor turns the gradients into NaN.
fn masked_out_values_do_not_matter(device: &Device, dtype: DType) -> Res {
    let loc = Var::from_tensor(&vector(&[0.5, 1.0, -1.0], dtype, device))?;
    let scale = vector(&[1.0, 2.0, 1.0], dtype, device);
    let mask = Tensor::new(&[1u8, 0, 1], device)?;
    let y = vector(&[1.0, f64::NAN, 2.0], dtype, device);
    for validate in [true, false] {
        let d = Normal::new(loc.as_tensor(), &scale)?.mask(&mask)?;
        let lp = with_validation(validate, || d.log_prob(&y))?;
        let v = vi_test::to_vec(&lp)?;
        assert_eq!(v[1], 0.0, "{v:?}");
        assert!(v.iter().all(|x| x.is_finite()), "{v:?}");
        let g = lp.sum_all()?.backward()?;
        let g = vi_test::to_vec(g.get(loc.as_tensor()).ok_or("no gradient")?)?;
        // d/d loc of −(y − loc)²/2: y − loc where kept, 0 where masked out
        assert_eq!(g[1], 0.0, "{g:?}");
        assert!(
            (g[0] - 0.5).abs() < 1e-6 && (g[2] - 3.0).abs() < 1e-6,
            "{g:?}"
        );
    }
    // a value outside a bounded support, masked out, with a sample dim and an event dim
    let conc = vector(&[2.0, 3.0], dtype, device);
    let d =
        vi_dist::Gamma::new(&conc, &conc.ones_like()?)?.mask(&Tensor::new(&[0u8, 1], device)?)?;
    let lp = d.log_prob(&vector(&[-1.0, 1.0, -5.0, 2.0], dtype, device).reshape((2, 2))?)?;
    let v = vi_test::to_vec(&lp)?;
    assert_eq!((v[0], v[2]), (0.0, 0.0), "{v:?}");
    let ind = Normal::new(loc.as_tensor(), &scale)?
        .to_event(1)?
        .mask(&Tensor::new(&[1u8, 0], device)?)?;
    let y2 = vector(
        &[1.0, 1.0, 1.0, f64::NAN, f64::NAN, f64::NAN],
        dtype,
        device,
    )
    .reshape((2, 3))?;
    let v = vi_test::to_vec(&ind.log_prob(&y2)?)?;
    assert!(v[0].is_finite() && v[1] == 0.0, "{v:?}");
    Ok(())
}
test_device!(masked_out_values_do_not_matter);

/// Integer values of the discrete families (counts, indices, 0/1 outcomes: what torch and
/// Pyro take as integer tensors) pass validation and score as the same values in the
/// distribution's float dtype; an integer outside the support is still a support error, and a
/// continuous family still refuses an integer value.
fn integer_values_of_discrete_families(device: &Device, dtype: DType) -> Res {
    let close = |a: &Tensor, b: &Tensor| -> Res {
        let (a, b) = (
            a.to_dtype(DType::F64)?.to_vec1::<f64>()?,
            b.to_dtype(DType::F64)?.to_vec1::<f64>()?,
        );
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-6, "{a:?} against {b:?}");
        }
        Ok(())
    };
    vi_dist::with_validation(true, || -> Res {
        let logits =
            Tensor::new(&[[0.1f64, -0.4, 0.9], [1.2, 0.0, -2.0]], device)?.to_dtype(dtype)?;
        let cat = vi_dist::Categorical::from_logits(&logits)?;
        let float = cat.log_prob(&Tensor::new(&[0f64, 2.0], device)?.to_dtype(dtype)?)?;
        for ints in [
            Tensor::new(&[0u32, 2], device)?,
            Tensor::new(&[0i64, 2], device)?,
            Tensor::new(&[0u8, 2], device)?,
        ] {
            cat.validate(&ints)?;
            close(&cat.log_prob(&ints)?, &float)?;
        }
        let r = cat.log_prob(&Tensor::new(&[0u32, 3], device)?);
        assert!(
            matches!(
                r.as_ref().map_err(|e| e.kind()),
                Err(DistError::ValueSupport { .. })
            ),
            "{r:?}"
        );

        let probs = Tensor::new(&[0.3f64, 0.8], device)?.to_dtype(dtype)?;
        let bern = vi_dist::Bernoulli::from_probs(&probs)?;
        let float = bern.log_prob(&Tensor::new(&[1f64, 0.0], device)?.to_dtype(dtype)?)?;
        close(&bern.log_prob(&Tensor::new(&[1u8, 0], device)?)?, &float)?;
        // Through `to_event` and `Masked`, the wrappers' own checks.
        let event = bern.clone().to_event(1)?;
        let f = event.log_prob(&Tensor::new(&[1f64, 0.0], device)?.to_dtype(dtype)?)?;
        let i = event.log_prob(&Tensor::new(&[1i64, 0], device)?)?;
        assert!(
            (f.to_dtype(DType::F64)?.to_scalar::<f64>()?
                - i.to_dtype(DType::F64)?.to_scalar::<f64>()?)
            .abs()
                < 1e-6
        );
        let mask = Tensor::new(&[1u8, 0], device)?;
        let masked = vi_dist::Masked::new(Box::new(bern.clone()), &mask)?;
        masked.validate(&Tensor::new(&[1u32, 7], device)?)?;
        close(
            &masked.log_prob(&Tensor::new(&[1u32, 7], device)?)?,
            &masked.log_prob(&Tensor::new(&[1f64, 0.0], device)?.to_dtype(dtype)?)?,
        )?;
        let r = bern.log_prob(&Tensor::new(&[2u8, 0], device)?);
        assert!(
            matches!(
                r.as_ref().map_err(|e| e.kind()),
                Err(DistError::ValueSupport { .. })
            ),
            "{r:?}"
        );

        let rate = Tensor::new(&[2.5f64], device)?.to_dtype(dtype)?;
        let pois = vi_dist::Poisson::new(&rate)?;
        close(
            &pois.log_prob(&Tensor::new(&[3i64], device)?)?,
            &pois.log_prob(&Tensor::new(&[3f64], device)?.to_dtype(dtype)?)?,
        )?;

        let loc = Tensor::zeros(2, dtype, device)?;
        let normal = Normal::new(&loc, &loc.ones_like()?)?;
        let r = normal.log_prob(&Tensor::new(&[1u32, 0], device)?);
        assert!(
            matches!(
                r.as_ref().map_err(|e| e.kind()),
                Err(DistError::ValueKind { dist: "Normal", .. })
            ),
            "{r:?}"
        );
        Ok(())
    })
}
test_device!(integer_values_of_discrete_families);
