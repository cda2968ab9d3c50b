//! The discrete families: seeded samplers against their moments and pmf, `enumerate_support`
//! summing to one, the two parameterisations agreeing, and typed errors for bad parameters,
//! values outside the support and shapes that do not fit.

use candle_core::{DType, Device, IndexOp, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_dist::{
    Bernoulli, DistError, Distribution, with_validation,
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
