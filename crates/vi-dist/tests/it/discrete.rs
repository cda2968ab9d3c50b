//! The discrete families: seeded samplers against their moments and pmf, `enumerate_support`
//! summing to one, the two parameterisations agreeing, and typed errors for bad parameters,
//! values outside the support and shapes that do not fit.

use candle_core::{DType, Device, IndexOp, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_dist::{
    Bernoulli, Categorical, DistError, Distribution, OneHotCategorical, with_validation,
};
use vi_test::stats::{check_chi_square, check_moments};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const N: usize = 40_000;
const Z: f64 = 5.0;
const ALPHA: f64 = 1e-3;

fn t(data: &[f64], device: &Device, dtype: DType) -> candle_core::Result<Tensor> {
    Tensor::new(data, &Device::Cpu)?.to_dtype(dtype)?.to_device(device)
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn host(x: &Tensor) -> candle_core::Result<Vec<f64>> {
    vi_test::to_vec(x)
}

/// Column `j` of draws of shape `[n, b]` (batch of `b` scalar distributions).
fn column(x: &Tensor, j: usize) -> candle_core::Result<Vec<f64>> {
    host(&x.i((.., j))?)
}

/// Check draws of a scalar-event distribution of batch `[b]`: moments against `mean`/`var` and
/// a chi-square test against `pmf(j, k)` on `0..support`.
fn check_sampler(
    d: &dyn Distribution,
    mean: &[f64],
    var: &[f64],
    support: usize,
    pmf: impl Fn(usize, usize) -> f64,
    seed: u64,
) -> TestResult {
    let x = d.sample(&[N], &mut rng(seed))?;
    assert_eq!(x.dims(), &[N, mean.len()]);
    assert_eq!(x.dtype(), d.dtype());
    for j in 0..mean.len() {
        let xs = column(&x, j)?;
        check_moments(&xs, mean[j], var[j], Z).map_err(|e| format!("column {j}: {e}"))?;
        check_chi_square(&xs, support, |k| pmf(j, k), ALPHA)
            .map_err(|e| format!("column {j}: {e}"))?;
    }
    Ok(())
}

/// `log Σ_x exp(log_prob(x))` over the enumerated support (dim 0) is 0 for every batch element.
fn check_normalised(d: &dyn Distribution, support: &Tensor, dtype: DType) -> TestResult {
    let lp = d.log_prob(support)?.to_dtype(DType::F64)?;
    let total = lp.exp()?.sum(0)?.log()?;
    let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
    for (i, v) in host(&total)?.iter().enumerate() {
        assert!(v.abs() < tol, "element {i}: log Σ p = {v}");
    }
    Ok(())
}

/// Every quantity of two distributions that should be the same one.
fn check_same(a: &dyn Distribution, b: &dyn Distribution, values: &Tensor, dtype: DType) -> TestResult {
    let tol = if dtype == DType::F64 { 1e-9 } else { 1e-4 };
    let close = |x: Tensor, y: Tensor, what: &str| -> TestResult {
        let (x, y) = (host(&x)?, host(&y)?);
        assert_eq!(x.len(), y.len(), "{what}");
        for (i, (p, q)) in x.iter().zip(&y).enumerate() {
            let ok = (p.is_nan() && q.is_nan()) || (p - q).abs() <= tol * (1.0 + q.abs());
            assert!(ok, "{what} element {i}: {p} vs {q}");
        }
        Ok(())
    };
    close(a.log_prob(values)?, b.log_prob(values)?, "log_prob")?;
    close(a.entropy()?, b.entropy()?, "entropy")?;
    close(a.mean()?, b.mean()?, "mean")?;
    close(a.variance()?, b.variance()?, "variance")?;
    Ok(())
}

fn is_param_support<T: std::fmt::Debug>(r: vi_dist::Result<T>) -> bool {
    matches!(r, Err(DistError::ParamSupport { .. }))
}

fn is_value_support<T: std::fmt::Debug>(r: vi_dist::Result<T>) -> bool {
    matches!(r, Err(DistError::ValueSupport { .. }))
}

fn is_value_shape<T: std::fmt::Debug>(r: vi_dist::Result<T>) -> bool {
    matches!(r, Err(DistError::ValueShape { .. }))
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

// ---------------------------------------------------------------- Bernoulli

fn bernoulli_sampler(device: &Device, dtype: DType) -> TestResult {
    let p = [0.3, 0.85];
    let d = Bernoulli::from_probs(&t(&p, device, dtype)?)?;
    let var: Vec<f64> = p.iter().map(|p| p * (1.0 - p)).collect();
    check_sampler(&d, &p, &var, 2, |j, k| if k == 1 { p[j] } else { 1.0 - p[j] }, 1)
}
vi_test::test_device!(bernoulli_sampler);

fn bernoulli_enumerate_and_forms(device: &Device, dtype: DType) -> TestResult {
    let p = [0.1, 0.5, 0.97];
    let l: Vec<f64> = p.iter().map(|&p| logit(p)).collect();
    let a = Bernoulli::from_probs(&t(&p, device, dtype)?)?;
    let b = Bernoulli::from_logits(&t(&l, device, dtype)?)?;
    let support = a.enumerate_support(false)?;
    assert_eq!(support.dims(), &[2, 1]);
    assert_eq!(a.enumerate_support(true)?.dims(), &[2, 3]);
    check_normalised(&a, &support, dtype)?;
    check_normalised(&b, &b.enumerate_support(true)?, dtype)?;
    check_same(&a, &b, &t(&[1.0, 0.0, 1.0], device, dtype)?, dtype)?;
    // integer values give the same log_prob as floats
    let ints = Tensor::new(&[1u8, 0, 1], &Device::Cpu)?.to_device(device)?;
    let floats = t(&[1.0, 0.0, 1.0], device, dtype)?;
    assert_eq!(host(&a.log_prob(&ints)?)?, host(&a.log_prob(&floats)?)?);
    Ok(())
}
vi_test::test_device!(bernoulli_enumerate_and_forms);

fn bernoulli_errors(device: &Device, dtype: DType) -> TestResult {
    assert!(is_param_support(Bernoulli::from_probs(&t(&[0.5, 1.5], device, dtype)?)));
    assert!(is_param_support(Bernoulli::from_probs(&t(&[-0.1], device, dtype)?)));
    assert!(is_param_support(Bernoulli::from_logits(&t(&[f64::NAN], device, dtype)?)));
    let d = Bernoulli::from_logits(&t(&[0.0, 1.0], device, dtype)?)?;
    assert!(is_value_support(d.log_prob(&t(&[2.0, 0.0], device, dtype)?)));
    assert!(is_value_support(d.log_prob(&t(&[0.5, 0.0], device, dtype)?)));
    assert!(is_value_shape(d.log_prob(&t(&[1.0, 0.0, 1.0], device, dtype)?)));
    assert!(matches!(
        d.rsample(&[1], &mut rng(0)),
        Err(DistError::NoRsample { .. })
    ));
    assert!(!d.has_rsample());
    // validation off: no error for a value outside the support
    with_validation(false, || d.log_prob(&t(&[2.0, 0.0], device, dtype)?).map(|_| ()))?;
    Ok(())
}
vi_test::test_device!(bernoulli_errors);

/// Check that `d.expand(batch)` has that batch shape and a `log_prob` of that shape.
fn check_expand(d: &dyn Distribution, batch: &[usize], value: &Tensor) -> TestResult {
    let e = d.expand(batch)?;
    assert_eq!(e.batch_shape(), batch);
    assert_eq!(e.event_shape(), d.event_shape());
    assert_eq!(e.log_prob(value)?.dims(), batch);
    assert!(matches!(d.expand(&[7]), Err(DistError::Expand { .. })));
    Ok(())
}

fn bernoulli_expand(device: &Device, dtype: DType) -> TestResult {
    let d = Bernoulli::from_logits(&t(&[0.0, 1.0], device, dtype)?)?;
    check_expand(&d, &[3, 2], &t(&[1.0, 0.0], device, dtype)?)
}
vi_test::test_device!(bernoulli_expand);

// ---------------------------------------------------------------- Categorical

const CAT_P: [[f64; 4]; 2] = [[0.1, 0.2, 0.3, 0.4], [0.7, 0.05, 0.15, 0.1]];

fn cat_probs(device: &Device, dtype: DType) -> candle_core::Result<Tensor> {
    t(CAT_P.as_flattened(), device, dtype)?.reshape((2, 4))
}

fn cat_logits(device: &Device, dtype: DType) -> candle_core::Result<Tensor> {
    // unnormalised on purpose: a constant shift per row
    let l: Vec<f64> = CAT_P
        .iter()
        .enumerate()
        .flat_map(|(j, row)| row.iter().map(move |p| p.ln() + j as f64 - 0.5))
        .collect();
    t(&l, device, dtype)?.reshape((2, 4))
}

fn categorical_sampler(device: &Device, dtype: DType) -> TestResult {
    let d = Categorical::from_probs(&cat_probs(device, dtype)?)?;
    let moments = |row: &[f64; 4]| {
        let m: f64 = row.iter().enumerate().map(|(k, p)| k as f64 * p).sum();
        let v: f64 = row.iter().enumerate().map(|(k, p)| (k as f64 - m).powi(2) * p).sum();
        (m, v)
    };
    let (m0, v0) = moments(&CAT_P[0]);
    let (m1, v1) = moments(&CAT_P[1]);
    check_sampler(&d, &[m0, m1], &[v0, v1], 4, |j, k| CAT_P[j][k], 2)?;
    // the same seed gives the same draws from the logits form
    let e = Categorical::from_logits(&cat_logits(device, dtype)?)?;
    let (a, b) = (d.sample(&[50], &mut rng(3))?, e.sample(&[50], &mut rng(3))?);
    assert_eq!(host(&a)?, host(&b)?);
    Ok(())
}
vi_test::test_device!(categorical_sampler);

fn categorical_enumerate_and_forms(device: &Device, dtype: DType) -> TestResult {
    let a = Categorical::from_probs(&cat_probs(device, dtype)?)?;
    let b = Categorical::from_logits(&cat_logits(device, dtype)?)?;
    let support = a.enumerate_support(false)?;
    assert_eq!(support.dims(), &[4, 1]);
    assert_eq!(b.enumerate_support(true)?.dims(), &[4, 2]);
    check_normalised(&a, &support, dtype)?;
    check_normalised(&b, &b.enumerate_support(true)?, dtype)?;
    let values = t(&[3.0, 0.0, 1.0, 2.0], device, dtype)?.reshape((2, 2))?;
    check_same(&a, &b, &values, dtype)?;
    assert!(host(&a.mean()?)?.iter().all(|m| m.is_nan()));
    // integer index tensors give the same log_prob as floats
    let want = host(&a.log_prob(&values)?)?;
    let idx = [3u32, 0, 1, 2];
    let as_u32 = Tensor::new(&idx, &Device::Cpu)?.reshape((2, 2))?;
    for ints in [
        as_u32.clone(),
        as_u32.to_dtype(DType::U8)?,
        as_u32.to_dtype(DType::I64)?,
    ] {
        assert_eq!(host(&a.log_prob(&ints.to_device(device)?)?)?, want);
    }
    // probs normalise: weights 2× give the same distribution
    let c = Categorical::from_probs(&(cat_probs(device, dtype)? * 2.0)?)?;
    check_same(&a, &c, &values, dtype)?;
    Ok(())
}
vi_test::test_device!(categorical_enumerate_and_forms);

fn categorical_errors(device: &Device, dtype: DType) -> TestResult {
    let bad = t(&[0.5, -0.1, 0.6], device, dtype)?;
    assert!(is_param_support(Categorical::from_probs(&bad)));
    let nan = t(&[0.5, f64::NAN, 0.6], device, dtype)?;
    assert!(is_param_support(Categorical::from_logits(&nan)));
    assert!(is_param_support(Categorical::from_probs(&nan)));
    let scalar = Tensor::new(1.0, device)?.to_dtype(dtype)?;
    assert!(matches!(
        Categorical::from_logits(&scalar),
        Err(DistError::ParamShape { .. })
    ));
    let empty = Tensor::zeros((2, 0), dtype, device)?;
    assert!(matches!(
        Categorical::from_probs(&empty),
        Err(DistError::ParamShape { .. })
    ));
    let d = Categorical::from_probs(&cat_probs(device, dtype)?)?;
    assert!(is_value_support(d.log_prob(&t(&[4.0, 0.0], device, dtype)?)));
    assert!(is_value_support(d.log_prob(&t(&[1.5, 0.0], device, dtype)?)));
    assert!(is_value_shape(d.log_prob(&t(&[1.0, 0.0, 1.0], device, dtype)?)));
    // with validation off an index outside 0..k is still an error, never a panic
    with_validation(false, || -> TestResult {
        for v in [[4.0, 0.0], [-1.0, 0.0], [f64::NAN, 0.0], [1e10, 0.0]] {
            assert!(is_value_support(d.log_prob(&t(&v, device, dtype)?)), "{v:?}");
        }
        let big = Tensor::new(&[7u32, 1], &Device::Cpu)?.to_device(device)?;
        assert!(is_value_support(d.log_prob(&big)));
        assert!(is_value_shape(d.log_prob(&t(&[1.0, 0.0, 1.0], device, dtype)?)));
        Ok(())
    })?;
    assert!(matches!(d.rsample(&[1], &mut rng(0)), Err(DistError::NoRsample { .. })));
    check_expand(&d, &[3, 2], &t(&[1.0, 0.0], device, dtype)?)
}
vi_test::test_device!(categorical_errors);

// ---------------------------------------------------------------- OneHotCategorical

fn one_hot_sampler(device: &Device, dtype: DType) -> TestResult {
    let d = OneHotCategorical::from_probs(&cat_probs(device, dtype)?)?;
    let x = d.sample(&[N], &mut rng(4))?;
    assert_eq!(x.dims(), &[N, 2, 4]);
    // every draw is one-hot
    assert!(host(&x.sum(2)?)?.iter().all(|&s| s == 1.0));
    for j in 0..2 {
        for k in 0..4 {
            let p = CAT_P[j][k];
            let xs = host(&x.i((.., j, k))?)?;
            check_moments(&xs, p, p * (1.0 - p), Z).map_err(|e| format!("({j}, {k}): {e}"))?;
        }
        let idx = host(&x.i((.., j))?.argmax(1)?.to_dtype(DType::F64)?)?;
        check_chi_square(&idx, 4, |k| CAT_P[j][k], ALPHA).map_err(|e| format!("row {j}: {e}"))?;
    }
    Ok(())
}
vi_test::test_device!(one_hot_sampler);

fn one_hot_enumerate_and_forms(device: &Device, dtype: DType) -> TestResult {
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
    assert_eq!(host(&a.log_prob(&ints)?)?, host(&a.log_prob(&values)?)?);
    Ok(())
}
vi_test::test_device!(one_hot_enumerate_and_forms);

fn one_hot_errors(device: &Device, dtype: DType) -> TestResult {
    let bad = t(&[0.5, -0.1, 0.6], device, dtype)?;
    assert!(is_param_support(OneHotCategorical::from_probs(&bad)));
    let nan = t(&[0.5, f64::NAN, 0.6], device, dtype)?;
    assert!(is_param_support(OneHotCategorical::from_logits(&nan)));
    let d = OneHotCategorical::from_probs(&cat_probs(device, dtype)?)?;
    let two_hot = t(&[0.0, 1.0, 1.0, 0.0], device, dtype)?;
    assert!(is_value_support(d.log_prob(&two_hot)));
    let wrong_event = t(&[0.0, 1.0, 0.0], device, dtype)?;
    assert!(is_value_shape(d.log_prob(&wrong_event)));
    let wrong_batch = t(&[0.0, 1.0, 0.0, 0.0], device, dtype)?.broadcast_as((3, 4))?;
    assert!(is_value_shape(d.log_prob(&wrong_batch)));
    check_expand(&d, &[3, 2], &t(&[0.0, 1.0, 0.0, 0.0], device, dtype)?)
}
vi_test::test_device!(one_hot_errors);
