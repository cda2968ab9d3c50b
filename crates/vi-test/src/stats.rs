//! Seeded statistical checks for samplers: moments against closed forms with tolerances from
//! the standard error, Kolmogorov–Smirnov for continuous families, chi-square for discrete.

/// Sample mean and unbiased variance.
pub fn mean_var(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, v)
}

/// Check the sample mean and variance against `mean` and `var` within `z` standard errors
/// (SE of the mean `√(var/n)`; SE of the variance from the sample's fourth central moment,
/// `√((m₄ − var²)/n)`). `Err` says which moment and by how many standard errors.
pub fn check_moments(xs: &[f64], mean: f64, var: f64, z: f64) -> Result<(), String> {
    let n = xs.len() as f64;
    let (m, v) = mean_var(xs);
    let se_m = (var / n).sqrt();
    if (m - mean).abs() > z * se_m {
        return Err(format!(
            "mean {m} vs {mean}: {:.1} standard errors (n = {n})",
            (m - mean).abs() / se_m
        ));
    }
    let m4 = xs.iter().map(|x| (x - m).powi(4)).sum::<f64>() / n;
    let se_v = ((m4 - v * v).max(0.0) / n).sqrt();
    if (v - var).abs() > z * se_v {
        return Err(format!(
            "variance {v} vs {var}: {:.1} standard errors (n = {n})",
            (v - var).abs() / se_v
        ));
    }
    Ok(())
}

/// The Kolmogorov–Smirnov statistic `sup |F_n(x) − F(x)|` of `xs` against `cdf`.
pub fn ks_statistic(xs: &[f64], cdf: impl Fn(f64) -> f64) -> f64 {
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    s.iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = cdf(x);
            (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
        })
        .fold(0.0, f64::max)
}

/// The asymptotic KS critical value at significance `alpha` for `n` samples:
/// `√(−ln(α/2) / (2n))`.
pub fn ks_critical(n: usize, alpha: f64) -> f64 {
    (-(alpha / 2.0).ln() / (2.0 * n as f64)).sqrt()
}

/// KS test at significance `alpha`; `Err` gives the statistic and the critical value.
pub fn check_ks(xs: &[f64], cdf: impl Fn(f64) -> f64, alpha: f64) -> Result<(), String> {
    let d = ks_statistic(xs, cdf);
    let c = ks_critical(xs.len(), alpha);
    if d > c {
        return Err(format!(
            "KS statistic {d} > critical {c} (n = {})",
            xs.len()
        ));
    }
    Ok(())
}

/// Pearson's chi-square test of integer draws against probabilities `pmf(k)` for
/// `k = 0..support`, pooling cells with expected count below 5 into their neighbour and the
/// tail beyond `support` into the last cell. Critical value by Wilson–Hilferty at
/// significance `alpha`. `Err` gives the statistic, the degrees of freedom and the critical value.
pub fn check_chi_square(
    xs: &[f64],
    support: usize,
    pmf: impl Fn(usize) -> f64,
    alpha: f64,
) -> Result<(), String> {
    let n = xs.len() as f64;
    let mut observed = vec![0.0f64; support + 1];
    for &x in xs {
        let k = (x.round().max(0.0) as usize).min(support);
        observed[k] += 1.0;
    }
    let mut expected: Vec<f64> = (0..support).map(|k| n * pmf(k)).collect();
    let head: f64 = expected.iter().sum();
    expected.push((n - head).max(0.0));
    // pool small cells left to right
    let (mut obs_p, mut exp_p) = (Vec::new(), Vec::new());
    let (mut o_acc, mut e_acc) = (0.0, 0.0);
    for (o, e) in observed.iter().zip(&expected) {
        o_acc += o;
        e_acc += e;
        if e_acc >= 5.0 {
            obs_p.push(o_acc);
            exp_p.push(e_acc);
            o_acc = 0.0;
            e_acc = 0.0;
        }
    }
    if let (Some(lo), Some(le)) = (obs_p.last_mut(), exp_p.last_mut()) {
        *lo += o_acc;
        *le += e_acc;
    }
    if exp_p.len() < 2 {
        return Ok(());
    }
    let stat: f64 = obs_p
        .iter()
        .zip(&exp_p)
        .map(|(o, e)| (o - e).powi(2) / e)
        .sum();
    let dof = (exp_p.len() - 1) as f64;
    let z = normal_quantile(1.0 - alpha);
    let h = 2.0 / (9.0 * dof);
    let critical = dof * (1.0 - h + z * h.sqrt()).powi(3);
    if stat > critical {
        return Err(format!(
            "chi-square {stat} > critical {critical} ({dof} degrees of freedom, n = {n})"
        ));
    }
    Ok(())
}

/// The standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let lo = 0.02425;
    if p < lo {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - lo {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}
