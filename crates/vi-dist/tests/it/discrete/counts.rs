//! Bernoulli, Poisson, Binomial and Geometric.

use candle_core::{DType, Device, Tensor, Var};
use vi_dist::{Bernoulli, Binomial, DistError, Distribution, Geometric, Poisson, with_validation};

use super::*;

// ---------------------------------------------------------------- Bernoulli

fn bernoulli_sampler(device: &Device, dtype: DType) -> Res {
    let p = [0.3, 0.85];
    let d = Bernoulli::from_probs(&vector(&p, dtype, device))?;
    let var: Vec<f64> = p.iter().map(|p| p * (1.0 - p)).collect();
    check_sampler(
        &d,
        &p,
        &var,
        2,
        |j, k| if k == 1 { p[j] } else { 1.0 - p[j] },
        1,
    )
}
vi_test::test_device!(bernoulli_sampler);

fn bernoulli_enumerate_and_forms(device: &Device, dtype: DType) -> Res {
    let p = [0.1, 0.5, 0.97];
    let l: Vec<f64> = p.iter().map(|&p| logit(p)).collect();
    let a = Bernoulli::from_probs(&vector(&p, dtype, device))?;
    let b = Bernoulli::from_logits(&vector(&l, dtype, device))?;
    let support = a.enumerate_support(false)?;
    assert_eq!(support.dims(), &[2, 1]);
    assert_eq!(a.enumerate_support(true)?.dims(), &[2, 3]);
    check_normalised(&a, &support, dtype)?;
    check_normalised(&b, &b.enumerate_support(true)?, dtype)?;
    check_same(&a, &b, &vector(&[1.0, 0.0, 1.0], dtype, device), dtype)?;
    // integer values give the same log_prob as floats
    let ints = Tensor::new(&[1u8, 0, 1], &Device::Cpu)?.to_device(device)?;
    let floats = vector(&[1.0, 0.0, 1.0], dtype, device);
    assert_eq!(host(&a.log_prob(&ints)?), host(&a.log_prob(&floats)?));
    Ok(())
}
vi_test::test_device!(bernoulli_enumerate_and_forms);

fn bernoulli_errors(device: &Device, dtype: DType) -> Res {
    assert!(is_param_support(Bernoulli::from_probs(&vector(
        &[0.5, 1.5],
        dtype,
        device
    ))));
    assert!(is_param_support(Bernoulli::from_probs(&vector(
        &[-0.1],
        dtype,
        device
    ))));
    assert!(is_param_support(Bernoulli::from_logits(&vector(
        &[f64::NAN],
        dtype,
        device
    ))));
    let d = Bernoulli::from_logits(&vector(&[0.0, 1.0], dtype, device))?;
    assert!(is_value_support(d.log_prob(&vector(
        &[2.0, 0.0],
        dtype,
        device
    ))));
    assert!(is_value_support(d.log_prob(&vector(
        &[0.5, 0.0],
        dtype,
        device
    ))));
    assert!(is_value_shape(d.log_prob(&vector(
        &[1.0, 0.0, 1.0],
        dtype,
        device
    ))));
    assert!(matches!(
        d.rsample(&[1], &mut rng(0)).map_err(DistError::into_kind),
        Err(DistError::NoRsample { .. })
    ));
    assert!(!d.has_rsample());
    // validation off: no error for a value outside the support
    with_validation(false, || {
        d.log_prob(&vector(&[2.0, 0.0], dtype, device)).map(|_| ())
    })?;
    Ok(())
}
vi_test::test_device!(bernoulli_errors);

fn bernoulli_expand(device: &Device, dtype: DType) -> Res {
    let d = Bernoulli::from_logits(&vector(&[0.0, 1.0], dtype, device))?;
    check_expand(&d, &[3, 2], &vector(&[1.0, 0.0], dtype, device))
}
vi_test::test_device!(bernoulli_expand);

/// `ln Γ(x + 1)` for the pmfs below.
fn ln_factorial(k: usize) -> f64 {
    (1..=k).map(|i| (i as f64).ln()).sum()
}

/// Σ exp(log_prob(k)) over `k = 0..upto` per batch element (a truncated normalisation check
/// for the families with infinite support).
fn truncated_mass(d: &dyn Distribution, upto: usize, device: &Device, dtype: DType) -> Res {
    let batch = d.batch_shape().len();
    let ks: Vec<f64> = (0..upto).map(|k| k as f64).collect();
    let shape: Vec<usize> = std::iter::once(upto).chain((0..batch).map(|_| 1)).collect();
    let k = vector(&ks, dtype, device).reshape(shape)?;
    let mass = d.log_prob(&k)?.to_dtype(DType::F64)?.exp()?.sum(0)?;
    let tol = if dtype == DType::F64 { 1e-10 } else { 1e-5 };
    for (i, m) in host(&mass).iter().enumerate() {
        assert!((m - 1.0).abs() < tol, "element {i}: mass {m}");
    }
    Ok(())
}

// ---------------------------------------------------------------- Poisson

fn poisson_sampler(device: &Device, dtype: DType) -> Res {
    // 0.7 and 4 take rand_distr's inversion method, 15 its rejection method
    let rate = [0.7, 4.0, 15.0];
    let d = Poisson::new(&vector(&rate, dtype, device))?;
    let pmf = |j: usize, k: usize| {
        let r: f64 = rate[j];
        (k as f64 * r.ln() - r - ln_factorial(k)).exp()
    };
    check_sampler(&d, &rate, &rate, 40, pmf, 5)?;
    // rate 0: always 0
    let z = Poisson::new(&vector(&[0.0], dtype, device))?;
    assert!(
        host(&z.sample(&[100], &mut rng(0))?)
            .iter()
            .all(|&x| x == 0.0)
    );
    Ok(())
}
vi_test::test_device!(poisson_sampler);

fn poisson_log_prob(device: &Device, dtype: DType) -> Res {
    let d = Poisson::new(&vector(&[0.3, 2.5], dtype, device))?;
    truncated_mass(&d, 60, device, dtype)?;
    let ints = Tensor::new(&[3i64, 0], &Device::Cpu)?.to_device(device)?;
    assert_eq!(
        host(&d.log_prob(&ints)?),
        host(&d.log_prob(&vector(&[3.0, 0.0], dtype, device))?)
    );
    assert!(matches!(d.entropy(), Err(DistError::Undefined { .. })));
    // rate 0: log p(0) = 0 with a finite gradient (torch's xlogy), log p(1) = −inf
    let rate = Var::from_tensor(&vector(&[0.0, 0.0], dtype, device))?;
    let z = Poisson::new(rate.as_tensor())?;
    let lp = z.log_prob(&vector(&[0.0, 1.0], dtype, device))?;
    assert_eq!(host(&lp), vec![0.0, f64::NEG_INFINITY]);
    let g = z
        .log_prob(&vector(&[0.0, 0.0], dtype, device))?
        .sum_all()?
        .backward()?;
    let g = g.get(rate.as_tensor()).ok_or("no gradient")?;
    assert_eq!(host(g), vec![-1.0, -1.0]);
    Ok(())
}
vi_test::test_device!(poisson_log_prob);

fn poisson_errors(device: &Device, dtype: DType) -> Res {
    assert!(is_param_support(Poisson::new(&vector(
        &[1.0, -0.5],
        dtype,
        device
    ))));
    assert!(is_param_support(Poisson::new(&vector(
        &[f64::NAN],
        dtype,
        device
    ))));
    let d = Poisson::new(&vector(&[1.0, 2.0], dtype, device))?;
    assert!(is_value_support(d.log_prob(&vector(
        &[1.5, 0.0],
        dtype,
        device
    ))));
    assert!(is_value_support(d.log_prob(&vector(
        &[-1.0, 0.0],
        dtype,
        device
    ))));
    assert!(is_value_shape(d.log_prob(&vector(
        &[1.0, 0.0, 1.0],
        dtype,
        device
    ))));
    assert!(matches!(
        d.rsample(&[1], &mut rng(0)).map_err(DistError::into_kind),
        Err(DistError::NoRsample { .. })
    ));
    check_expand(&d, &[3, 2], &vector(&[1.0, 0.0], dtype, device))
}
vi_test::test_device!(poisson_errors);

// ---------------------------------------------------------------- Binomial

fn binomial_pmf(n: usize, p: f64, k: usize) -> f64 {
    if k > n {
        return 0.0;
    }
    let ln_choose = ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k);
    (ln_choose + k as f64 * p.ln() + (n - k) as f64 * (1.0 - p).ln()).exp()
}

fn binomial_sampler(device: &Device, dtype: DType) -> Res {
    // n·p below and above rand_distr's switch from inversion to BTPE
    let (n, p) = ([10.0, 25.0, 60.0], [0.3, 0.9, 0.5]);
    let d = Binomial::from_probs(&vector(&n, dtype, device), &vector(&p, dtype, device))?;
    let mean: Vec<f64> = n.iter().zip(&p).map(|(n, p)| n * p).collect();
    let var: Vec<f64> = n.iter().zip(&p).map(|(n, p)| n * p * (1.0 - p)).collect();
    let pmf = |j: usize, k: usize| binomial_pmf(n[j] as usize, p[j], k);
    check_sampler(&d, &mean, &var, 61, pmf, 6)
}
vi_test::test_device!(binomial_sampler);

fn binomial_enumerate_and_forms(device: &Device, dtype: DType) -> Res {
    let p = [0.05, 0.5, 0.8];
    let l: Vec<f64> = p.iter().map(|&p| logit(p)).collect();
    let n = vector(&[6.0, 6.0, 6.0], dtype, device);
    let a = Binomial::from_probs(&n, &vector(&p, dtype, device))?;
    let b = Binomial::from_logits(&n, &vector(&l, dtype, device))?;
    let support = a.enumerate_support(false)?;
    assert_eq!(support.dims(), &[7, 1]);
    assert_eq!(a.enumerate_support(true)?.dims(), &[7, 3]);
    check_normalised(&a, &support, dtype)?;
    check_normalised(&b, &b.enumerate_support(true)?, dtype)?;
    check_same(&a, &b, &vector(&[0.0, 3.0, 6.0], dtype, device), dtype)?;
    // the entropy is −Σ p ln p over the support
    let lp = host(&a.log_prob(&support)?.to_dtype(DType::F64)?);
    let h = host(&a.entropy()?);
    for j in 0..3 {
        let want: f64 = (0..7).map(|k| -lp[k * 3 + j].exp() * lp[k * 3 + j]).sum();
        assert!(
            (h[j] - want).abs() < 1e-5 * (1.0 + want.abs()),
            "{j}: {} vs {want}",
            h[j]
        );
    }
    let ints = Tensor::new(&[0u32, 3, 6], &Device::Cpu)?.to_device(device)?;
    assert_eq!(
        host(&a.log_prob(&ints)?),
        host(&a.log_prob(&vector(&[0.0, 3.0, 6.0], dtype, device))?)
    );
    Ok(())
}
vi_test::test_device!(binomial_enumerate_and_forms);

fn binomial_mixed_counts(device: &Device, dtype: DType) -> Res {
    // different counts in one batch: the entropy of each element is its own, with a finite
    // gradient; enumerate_support refuses, as torch
    let logits = Var::from_tensor(&vector(&[0.3, -1.2], dtype, device))?;
    let counts = Var::from_tensor(&vector(&[3.0, 9.0], dtype, device))?;
    let d = Binomial::from_logits(counts.as_tensor(), logits.as_tensor())?;
    assert!(matches!(
        d.enumerate_support(false).map_err(DistError::into_kind),
        Err(DistError::Invalid { .. })
    ));
    let h = d.entropy()?;
    for (j, n) in [3.0, 9.0].into_iter().enumerate() {
        let one = Binomial::from_logits(
            &vector(&[n], dtype, device),
            &logits.as_tensor().narrow(0, j, 1)?,
        )?;
        let (got, want) = (host(&h)[j], host(&one.entropy()?)[0]);
        assert!(
            (got - want).abs() < 1e-6 * (1.0 + want.abs()),
            "{j}: {got} vs {want}"
        );
    }
    let grads = h.sum_all()?.backward()?;
    let g = host(grads.get(logits.as_tensor()).ok_or("no gradient")?);
    assert!(g.iter().all(|x| x.is_finite()), "{g:?}");
    // total_count is data: no gradient reaches it
    let lp = d.log_prob(&vector(&[1.0, 2.0], dtype, device))?;
    assert!(lp.sum_all()?.backward()?.get(counts.as_tensor()).is_none());
    Ok(())
}
vi_test::test_device!(binomial_mixed_counts);

fn binomial_errors(device: &Device, dtype: DType) -> Res {
    let half = vector(&[0.5, 0.5], dtype, device);
    assert!(is_param_support(Binomial::from_probs(
        &vector(&[3.0, -1.0], dtype, device),
        &half
    )));
    assert!(is_param_support(Binomial::from_probs(
        &vector(&[3.0, 2.5], dtype, device),
        &half
    )));
    let n = vector(&[3.0, 4.0], dtype, device);
    assert!(is_param_support(Binomial::from_probs(
        &n,
        &vector(&[0.5, 1.2], dtype, device)
    )));
    assert!(is_param_support(Binomial::from_logits(
        &n,
        &vector(&[0.5, f64::NAN], dtype, device)
    )));
    assert!(matches!(
        Binomial::from_logits(&n, &vector(&[0.0, 0.0, 0.0], dtype, device))
            .map_err(DistError::into_kind),
        Err(DistError::Broadcast { .. })
    ));
    let d = Binomial::from_probs(&n, &half)?;
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
    assert!(is_value_support(d.log_prob(&vector(
        &[-1.0, 0.0],
        dtype,
        device
    ))));
    assert!(is_value_shape(d.log_prob(&vector(
        &[1.0, 0.0, 1.0],
        dtype,
        device
    ))));
    assert!(matches!(
        d.rsample(&[1], &mut rng(0)).map_err(DistError::into_kind),
        Err(DistError::NoRsample { .. })
    ));
    check_expand(&d, &[3, 2], &vector(&[1.0, 0.0], dtype, device))
}
vi_test::test_device!(binomial_errors);

// ---------------------------------------------------------------- Geometric

fn geometric_sampler(device: &Device, dtype: DType) -> Res {
    // rand_distr samples p < 2/3 and p >= 2/3 differently
    let p = [0.2, 0.8];
    let d = Geometric::from_probs(&vector(&p, dtype, device))?;
    let mean: Vec<f64> = p.iter().map(|p| 1.0 / p - 1.0).collect();
    let var: Vec<f64> = p.iter().map(|p| (1.0 / p - 1.0) / p).collect();
    let pmf = |j: usize, k: usize| (1.0 - p[j]).powi(k as i32) * p[j];
    check_sampler(&d, &mean, &var, 60, pmf, 7)
}
vi_test::test_device!(geometric_sampler);

fn geometric_log_prob_and_forms(device: &Device, dtype: DType) -> Res {
    let p = [0.3, 0.6, 0.95];
    let l: Vec<f64> = p.iter().map(|&p| logit(p)).collect();
    let a = Geometric::from_probs(&vector(&p, dtype, device))?;
    let b = Geometric::from_logits(&vector(&l, dtype, device))?;
    truncated_mass(&a, 120, device, dtype)?;
    truncated_mass(&b, 120, device, dtype)?;
    check_same(&a, &b, &vector(&[0.0, 4.0, 1.0], dtype, device), dtype)?;
    let ints = Tensor::new(&[0u8, 4, 1], &Device::Cpu)?.to_device(device)?;
    assert_eq!(
        host(&a.log_prob(&ints)?),
        host(&a.log_prob(&vector(&[0.0, 4.0, 1.0], dtype, device))?)
    );
    // p = 1: all mass on 0
    let one = Geometric::from_probs(&vector(&[1.0], dtype, device))?;
    let lp = host(&one.log_prob(&vector(&[0.0, 1.0], dtype, device).reshape((2, 1))?)?);
    assert_eq!(lp, vec![0.0, f64::NEG_INFINITY]);
    Ok(())
}
vi_test::test_device!(geometric_log_prob_and_forms);

fn geometric_errors(device: &Device, dtype: DType) -> Res {
    assert!(is_param_support(Geometric::from_probs(&vector(
        &[0.5, 0.0],
        dtype,
        device
    ))));
    assert!(is_param_support(Geometric::from_probs(&vector(
        &[0.5, 1.5],
        dtype,
        device
    ))));
    assert!(is_param_support(Geometric::from_logits(&vector(
        &[f64::NAN],
        dtype,
        device
    ))));
    let d = Geometric::from_probs(&vector(&[0.5, 0.2], dtype, device))?;
    assert!(is_value_support(d.log_prob(&vector(
        &[0.5, 0.0],
        dtype,
        device
    ))));
    assert!(is_value_support(d.log_prob(&vector(
        &[-1.0, 0.0],
        dtype,
        device
    ))));
    assert!(is_value_shape(d.log_prob(&vector(
        &[1.0, 0.0, 1.0],
        dtype,
        device
    ))));
    assert!(matches!(
        d.rsample(&[1], &mut rng(0)).map_err(DistError::into_kind),
        Err(DistError::NoRsample { .. })
    ));
    check_expand(&d, &[3, 2], &vector(&[1.0, 0.0], dtype, device))
}
vi_test::test_device!(geometric_errors);
