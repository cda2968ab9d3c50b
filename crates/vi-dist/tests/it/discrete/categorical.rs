//! Categorical and OneHotCategorical.

use candle_core::{DType, Device, IndexOp, Tensor};
use vi_dist::{Categorical, DistError, Distribution, OneHotCategorical, with_validation};
use vi_test::stats::{check_chi_square, check_moments};

use super::*;

// ---------------------------------------------------------------- Categorical

const CAT_P: [[f64; 4]; 2] = [[0.1, 0.2, 0.3, 0.4], [0.7, 0.05, 0.15, 0.1]];

fn cat_probs(device: &Device, dtype: DType) -> candle_core::Result<Tensor> {
    vector(CAT_P.as_flattened(), dtype, device).reshape((2, 4))
}

fn cat_logits(device: &Device, dtype: DType) -> candle_core::Result<Tensor> {
    // unnormalised on purpose: a constant shift per row
    let l: Vec<f64> = CAT_P
        .iter()
        .enumerate()
        .flat_map(|(j, row)| row.iter().map(move |p| p.ln() + j as f64 - 0.5))
        .collect();
    vector(&l, dtype, device).reshape((2, 4))
}

fn categorical_sampler(device: &Device, dtype: DType) -> Res {
    let d = Categorical::from_probs(&cat_probs(device, dtype)?)?;
    let moments = |row: &[f64; 4]| {
        let m: f64 = row.iter().enumerate().map(|(k, p)| k as f64 * p).sum();
        let v: f64 = row
            .iter()
            .enumerate()
            .map(|(k, p)| (k as f64 - m).powi(2) * p)
            .sum();
        (m, v)
    };
    let (m0, v0) = moments(&CAT_P[0]);
    let (m1, v1) = moments(&CAT_P[1]);
    check_sampler(&d, &[m0, m1], &[v0, v1], 4, |j, k| CAT_P[j][k], 2)?;
    // the same seed gives the same draws from the logits form
    let e = Categorical::from_logits(&cat_logits(device, dtype)?)?;
    let (a, b) = (d.sample(&[50], &mut rng(3))?, e.sample(&[50], &mut rng(3))?);
    assert_eq!(host(&a), host(&b));
    Ok(())
}
vi_test::test_device!(categorical_sampler);

fn categorical_enumerate_and_forms(device: &Device, dtype: DType) -> Res {
    let a = Categorical::from_probs(&cat_probs(device, dtype)?)?;
    let b = Categorical::from_logits(&cat_logits(device, dtype)?)?;
    let support = a.enumerate_support(false)?;
    assert_eq!(support.dims(), &[4, 1]);
    assert_eq!(b.enumerate_support(true)?.dims(), &[4, 2]);
    check_normalised(&a, &support, dtype)?;
    check_normalised(&b, &b.enumerate_support(true)?, dtype)?;
    let values = vector(&[3.0, 0.0, 1.0, 2.0], dtype, device).reshape((2, 2))?;
    check_same(&a, &b, &values, dtype)?;
    assert!(host(&a.mean()?).iter().all(|m| m.is_nan()));
    // integer index tensors give the same log_prob as floats
    let want = host(&a.log_prob(&values)?);
    let idx = [3u32, 0, 1, 2];
    let as_u32 = Tensor::new(&idx, &Device::Cpu)?.reshape((2, 2))?;
    for ints in [
        as_u32.clone(),
        as_u32.to_dtype(DType::U8)?,
        as_u32.to_dtype(DType::I64)?,
    ] {
        assert_eq!(host(&a.log_prob(&ints.to_device(device)?)?), want);
    }
    // probs normalise: weights 2× give the same distribution
    let c = Categorical::from_probs(&(cat_probs(device, dtype)? * 2.0)?)?;
    check_same(&a, &c, &values, dtype)?;
    Ok(())
}
vi_test::test_device!(categorical_enumerate_and_forms);

fn categorical_errors(device: &Device, dtype: DType) -> Res {
    let bad = vector(&[0.5, -0.1, 0.6], dtype, device);
    assert!(is_param_support(Categorical::from_probs(&bad)));
    let nan = vector(&[0.5, f64::NAN, 0.6], dtype, device);
    assert!(is_param_support(Categorical::from_logits(&nan)));
    assert!(is_param_support(Categorical::from_probs(&nan)));
    let scalar = Tensor::new(1.0, device)?.to_dtype(dtype)?;
    assert!(matches!(
        Categorical::from_logits(&scalar).map_err(DistError::into_kind),
        Err(DistError::ParamShape { .. })
    ));
    let empty = Tensor::zeros((2, 0), dtype, device)?;
    assert!(matches!(
        Categorical::from_probs(&empty).map_err(DistError::into_kind),
        Err(DistError::ParamShape { .. })
    ));
    let d = Categorical::from_probs(&cat_probs(device, dtype)?)?;
    assert!(is_value_support(d.log_prob(&vector(
        &[4.0, 0.0],
        dtype,
        device
    ))));
    assert!(is_value_support(d.log_prob(&vector(
        &[1.5, 0.0],
        dtype,
        device
    ))));
    assert!(is_value_shape(d.log_prob(&vector(
        &[1.0, 0.0, 1.0],
        dtype,
        device
    ))));
    // with validation off an index outside 0..k is still an error, never a panic
    with_validation(false, || -> Res {
        for v in [[4.0, 0.0], [-1.0, 0.0], [f64::NAN, 0.0], [1e10, 0.0]] {
            assert!(
                is_value_support(d.log_prob(&vector(&v, dtype, device))),
                "{v:?}"
            );
        }
        let big = Tensor::new(&[7u32, 1], &Device::Cpu)?.to_device(device)?;
        assert!(is_value_support(d.log_prob(&big)));
        assert!(is_value_shape(d.log_prob(&vector(
            &[1.0, 0.0, 1.0],
            dtype,
            device
        ))));
        Ok(())
    })?;
    assert!(matches!(
        d.rsample(&[1], &mut rng(0)).map_err(DistError::into_kind),
        Err(DistError::NoRsample { .. })
    ));
    check_expand(&d, &[3, 2], &vector(&[1.0, 0.0], dtype, device))
}
vi_test::test_device!(categorical_errors);

// ---------------------------------------------------------------- OneHotCategorical

fn one_hot_sampler(device: &Device, dtype: DType) -> Res {
    let d = OneHotCategorical::from_probs(&cat_probs(device, dtype)?)?;
    let x = d.sample(&[N], &mut rng(4))?;
    assert_eq!(x.dims(), &[N, 2, 4]);
    // every draw is one-hot
    assert!(host(&x.sum(2)?).iter().all(|&s| s == 1.0));
    for (j, row) in CAT_P.iter().enumerate() {
        for (k, &p) in row.iter().enumerate() {
            let xs = host(&x.i((.., j, k))?);
            check_moments(&xs, p, p * (1.0 - p), Z).map_err(|e| format!("({j}, {k}): {e}"))?;
        }
        let idx = host(&x.i((.., j))?.argmax(1)?.to_dtype(DType::F64)?);
        check_chi_square(&idx, 4, |k| row[k], ALPHA).map_err(|e| format!("row {j}: {e}"))?;
    }
    Ok(())
}
vi_test::test_device!(one_hot_sampler);

fn one_hot_enumerate_and_forms(device: &Device, dtype: DType) -> Res {
    let a = OneHotCategorical::from_probs(&cat_probs(device, dtype)?)?;
    let b = OneHotCategorical::from_logits(&cat_logits(device, dtype)?)?;
    assert_eq!(a.event_shape(), &[4]);
    let support = a.enumerate_support(false)?;
    assert_eq!(support.dims(), &[4, 1, 4]);
    assert_eq!(b.enumerate_support(true)?.dims(), &[4, 2, 4]);
    check_normalised(&a, &support, dtype)?;
    check_normalised(&b, &b.enumerate_support(true)?, dtype)?;
    let values = a.enumerate_support(true)?.i(1..3)?;
    check_same(&a, &b, &values, dtype)?;
    let ints = values.to_dtype(DType::U8)?;
    assert_eq!(host(&a.log_prob(&ints)?), host(&a.log_prob(&values)?));
    Ok(())
}
vi_test::test_device!(one_hot_enumerate_and_forms);

fn one_hot_errors(device: &Device, dtype: DType) -> Res {
    let bad = vector(&[0.5, -0.1, 0.6], dtype, device);
    assert!(is_param_support(OneHotCategorical::from_probs(&bad)));
    let nan = vector(&[0.5, f64::NAN, 0.6], dtype, device);
    assert!(is_param_support(OneHotCategorical::from_logits(&nan)));
    let d = OneHotCategorical::from_probs(&cat_probs(device, dtype)?)?;
    let two_hot = vector(&[0.0, 1.0, 1.0, 0.0], dtype, device);
    assert!(is_value_support(d.log_prob(&two_hot)));
    let wrong_event = vector(&[0.0, 1.0, 0.0], dtype, device);
    assert!(is_value_shape(d.log_prob(&wrong_event)));
    let wrong_batch = vector(&[0.0, 1.0, 0.0, 0.0], dtype, device).broadcast_as((3, 4))?;
    assert!(is_value_shape(d.log_prob(&wrong_batch)));
    check_expand(&d, &[3, 2], &vector(&[0.0, 1.0, 0.0, 0.0], dtype, device))
}
vi_test::test_device!(one_hot_errors);
