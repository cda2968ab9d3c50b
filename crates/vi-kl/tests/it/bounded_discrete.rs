//! Uniform/Pareto pairs and the discrete pairs: supports that do not nest (`+inf`, never NaN,
//! with finite gradients elsewhere), probabilities of exactly 0 and 1, extreme logits,
//! broadcasting of two batch shapes, accuracy where the textbook formula cancels, gradients
//! against finite differences, and the `Unsupported` errors.

use candle_core::{DType, Device, Tensor, Var};
use vi_dist::{
    Bernoulli, Beta, Binomial, Categorical, Distribution, Exponential, Gamma, Geometric, Gumbel,
    Normal, OneHotCategorical, Pareto, Poisson, Uniform,
};
use vi_kl::{KlError, kl_divergence};

use crate::common::{Res, host, tensor};

fn var(v: &[f64], shape: &[usize], device: &Device, dtype: DType) -> candle_core::Result<Var> {
    Var::from_tensor(&tensor(v, shape, dtype, device))
}

/// Relative tolerance of a value computed in `dtype` against an exact figure.
fn rtol(dtype: DType) -> f64 {
    if dtype == DType::F64 { 1e-12 } else { 1e-5 }
}

fn assert_close(actual: &[f64], expected: &[f64], rtol: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        if e.is_infinite() {
            assert_eq!(a, e, "{what}[{i}]: {a} vs {e}");
        } else {
            assert!(
                (a - e).abs() <= rtol * e.abs().max(1e-300),
                "{what}[{i}]: {a} vs {e} (rtol {rtol})"
            );
        }
    }
}

/// The gradient of `kl.sum()` w.r.t. each var, all finite (asserted), on the host.
fn finite_grads(kl: &Tensor, vars: &[&Var], what: &str) -> candle_core::Result<Vec<Vec<f64>>> {
    let grads = kl.sum_all()?.backward()?;
    vars.iter()
        .enumerate()
        .map(|(i, v)| {
            let g = match grads.get(v.as_tensor()) {
                Some(g) => host(g),
                None => vec![0.0; v.elem_count()],
            };
            assert!(
                g.iter().all(|x| x.is_finite()),
                "{what}: gradient of var {i} not finite: {g:?}"
            );
            Ok(g)
        })
        .collect()
}

// ------------------------------------------------------------------ bounded supports

fn uniform_uniform_not_nested(device: &Device, dtype: DType) -> Res {
    // [0,1] ⊂ [-1,2]; [0,2] ⊄ [0.5,3]; [-1,1] ⊂ [-2,2]; [0,1] ⊄ [0.2,0.8] (both ends).
    let pl = var(&[0.0, 0.0, -1.0, 0.0], &[4], device, dtype)?;
    let ph = var(&[1.0, 2.0, 1.0, 1.0], &[4], device, dtype)?;
    let ql = var(&[-1.0, 0.5, -2.0, 0.2], &[4], device, dtype)?;
    let qh = var(&[2.0, 3.0, 2.0, 0.8], &[4], device, dtype)?;
    let p = Uniform::new(&pl, &ph)?;
    let q = Uniform::new(&ql, &qh)?;
    let kl = kl_divergence(&p, &q)?;
    let inf = f64::INFINITY;
    assert_close(
        &host(&kl),
        &[3f64.ln(), inf, 2f64.ln(), inf],
        rtol(dtype),
        "U‖U",
    );
    let g = finite_grads(&kl, &[&pl, &ph, &ql, &qh], "U‖U")?;
    // d/d(p.low) ln(wq/wp) = 1/wp, d/d(p.high) = −1/wp, d/d(q.low) = −1/wq, d/d(q.high) = 1/wq;
    // 0 where the KL is infinite.
    assert_close(&g[0], &[1.0, 0.0, 0.5, 0.0], rtol(dtype), "d/d p.low");
    assert_close(&g[1], &[-1.0, 0.0, -0.5, 0.0], rtol(dtype), "d/d p.high");
    assert_close(
        &g[2],
        &[-1.0 / 3.0, 0.0, -0.25, 0.0],
        rtol(dtype),
        "d/d q.low",
    );
    assert_close(
        &g[3],
        &[1.0 / 3.0, 0.0, 0.25, 0.0],
        rtol(dtype),
        "d/d q.high",
    );
    Ok(())
}
vi_test::test_device!(uniform_uniform_not_nested);

/// Mixed finite and infinite elements for every bounded pair whose KL depends on the
/// parameters: `+inf` exactly where the support does not nest, never NaN, and finite
/// gradients for every parameter.
fn bounded_infinite_elements(device: &Device, dtype: DType) -> Res {
    let inf = f64::INFINITY;
    let check = |name: &str, kl: &Tensor, vars: &[&Var], inf_at: &[bool]| -> Res {
        let v = host(kl);
        for (i, (x, &is_inf)) in v.iter().zip(inf_at).enumerate() {
            assert!(!x.is_nan(), "{name}[{i}] is NaN");
            assert_eq!(*x == inf, is_inf, "{name}[{i}] = {x}");
        }
        finite_grads(kl, vars, name)?;
        Ok(())
    };
    // Uniform lows: below 0, exactly 0, inside; highs: one above 1.
    let l = var(&[-0.5, 0.0, 0.2, 0.3], &[4], device, dtype)?;
    let h = var(&[0.5, 0.7, 0.9, 1.5], &[4], device, dtype)?;
    let u = Uniform::new(&l, &h)?;
    let (c1, c0) = (
        var(&[2.0, 0.5, 1.5, 3.0], &[4], device, dtype)?,
        var(&[1.5, 2.5, 0.7, 1.0], &[4], device, dtype)?,
    );
    let kl = kl_divergence(&u, &Beta::new(&c1, &c0)?)?;
    check(
        "U‖Beta",
        &kl,
        &[&l, &h, &c1, &c0],
        &[true, false, false, true],
    )?;

    let (l, h) = (
        var(&[-0.5, 0.0, 0.2, 1.5], &[4], device, dtype)?,
        var(&[0.5, 0.7, 0.9, 4.0], &[4], device, dtype)?,
    );
    let u = Uniform::new(&l, &h)?;
    let (k, r) = (
        var(&[2.0, 0.5, 1.5, 3.0], &[4], device, dtype)?,
        var(&[1.5, 2.5, 0.7, 1.0], &[4], device, dtype)?,
    );
    let kl = kl_divergence(&u, &Gamma::new(&k, &r)?)?;
    check(
        "U‖Gamma",
        &kl,
        &[&l, &h, &k, &r],
        &[true, false, false, false],
    )?;
    let kl = kl_divergence(&u, &Exponential::new(&r)?)?;
    check("U‖Exp", &kl, &[&l, &h, &r], &[true, false, false, false])?;
    let (s, a) = (
        var(&[0.1, 0.0001, 0.3, 1.0], &[4], device, dtype)?,
        var(&[2.0, 0.5, 1.5, 3.0], &[4], device, dtype)?,
    );
    let kl = kl_divergence(&u, &Pareto::new(&s, &a)?)?;
    check(
        "U‖Pareto",
        &kl,
        &[&l, &h, &s, &a],
        &[true, true, true, false],
    )?;

    // Pareto alphas at and around the moment thresholds 1 and 2.
    let (s, a) = (
        var(&[1.0, 2.0, 0.5, 1.5, 1.0], &[5], device, dtype)?,
        var(&[0.5, 1.0, 1.5, 2.0, 3.0], &[5], device, dtype)?,
    );
    let p = Pareto::new(&s, &a)?;
    let rate = var(&[1.0, 0.5, 2.0, 1.5, 0.7], &[5], device, dtype)?;
    let kl = kl_divergence(&p, &Exponential::new(&rate)?)?;
    check(
        "Pareto‖Exp",
        &kl,
        &[&s, &a, &rate],
        &[true, true, false, false, false],
    )?;
    let conc = var(&[2.0, 0.5, 1.5, 3.0, 1.0], &[5], device, dtype)?;
    let kl = kl_divergence(&p, &Gamma::new(&conc, &rate)?)?;
    check(
        "Pareto‖Gamma",
        &kl,
        &[&s, &a, &conc, &rate],
        &[true, true, false, false, false],
    )?;
    let (loc, sd) = (
        var(&[0.0, 1.0, -1.0, 2.0, 0.5], &[5], device, dtype)?,
        var(&[1.0, 0.5, 2.0, 1.5, 0.7], &[5], device, dtype)?,
    );
    let kl = kl_divergence(&p, &Normal::new(&loc, &sd)?)?;
    check(
        "Pareto‖Normal",
        &kl,
        &[&s, &a, &loc, &sd],
        &[true, true, true, true, false],
    )?;
    let (qs, qa) = (
        var(&[0.5, 2.5, 0.5, 1.0, 1.0], &[5], device, dtype)?,
        var(&[1.0, 2.0, 3.0, 0.5, 1.0], &[5], device, dtype)?,
    );
    let kl = kl_divergence(&p, &Pareto::new(&qs, &qa)?)?;
    check(
        "Pareto‖Pareto",
        &kl,
        &[&s, &a, &qs, &qa],
        &[false, true, false, false, false],
    )?;
    Ok(())
}
vi_test::test_device!(bounded_infinite_elements);

/// Hand-computed values: `Uniform(0, h)` against a Gamma (`E[ln x] = ln h − 1` at `l = 0`) and
/// Pareto‖Pareto.
fn bounded_hand_values(device: &Device, dtype: DType) -> Res {
    let u = Uniform::new(
        &tensor(&[0.0], &[1], dtype, device),
        &tensor(&[2.0], &[1], dtype, device),
    )?;
    let (k, b) = (1.5f64, 0.5f64);
    let g = Gamma::new(
        &tensor(&[k], &[1], dtype, device),
        &tensor(&[b], &[1], dtype, device),
    )?;
    // −ln 2 + ln Γ(1.5) − 1.5 ln 0.5 − 0.5 (ln 2 − 1) + 0.5·1, ln Γ(1.5) = ln(√π / 2).
    let lgamma_15 = (std::f64::consts::PI.sqrt() / 2.0).ln();
    let expected = -2f64.ln() + lgamma_15 - k * b.ln() - (k - 1.0) * (2f64.ln() - 1.0) + b;
    assert_close(
        &host(&kl_divergence(&u, &g)?),
        &[expected],
        rtol(dtype).max(1e-9),
        "U(0,2)‖Gamma",
    );
    // Uniform‖Beta (torch's figures have no finite case): U(0.2, 0.7) ‖ Beta(2, 3), with
    // B(2, 3) = 1/12, and U(0, 0.5) ‖ Beta(½, ½) = ln(2π) − 1 (B(½, ½) = π).
    let e_log =
        |l: f64, h: f64| (h * h.ln() - if l > 0.0 { l * l.ln() } else { 0.0 }) / (h - l) - 1.0;
    let first = -(0.5f64.ln()) + (1.0f64 / 12.0).ln() - e_log(0.2, 0.7) - 2.0 * e_log(0.3, 0.8);
    let u = Uniform::new(
        &tensor(&[0.2, 0.0], &[2], dtype, device),
        &tensor(&[0.7, 0.5], &[2], dtype, device),
    )?;
    let b = Beta::new(
        &tensor(&[2.0, 0.5], &[2], dtype, device),
        &tensor(&[3.0, 0.5], &[2], dtype, device),
    )?;
    assert_close(
        &host(&kl_divergence(&u, &b)?),
        &[first, (2.0 * std::f64::consts::PI).ln() - 1.0],
        rtol(dtype).max(1e-9),
        "U‖Beta",
    );
    let p = Pareto::new(
        &tensor(&[2.0], &[1], dtype, device),
        &tensor(&[3.0], &[1], dtype, device),
    )?;
    let q = Pareto::new(
        &tensor(&[1.0], &[1], dtype, device),
        &tensor(&[1.5], &[1], dtype, device),
    )?;
    let expected = (3.0f64 / 1.5).ln() + 1.5 * 2f64.ln() + 0.5 - 1.0;
    assert_close(
        &host(&kl_divergence(&p, &q)?),
        &[expected],
        rtol(dtype),
        "Pareto‖Pareto",
    );
    Ok(())
}
vi_test::test_device!(bounded_hand_values);

/// A narrow uniform: `(h ln h − l ln l)/(h − l)` would lose half the digits; the KL against a
/// Pareto and a Gamma stays accurate to 1e-12 (f64).
#[test]
fn narrow_uniform_accurate() -> Res {
    let dev = Device::Cpu;
    let l = 2.0f64;
    // The width as stored (2 + 1e-9 rounds).
    let w = (l + 1e-9) - l;
    let u = Uniform::new(
        &tensor(&[l], &[1], DType::F64, &dev),
        &tensor(&[l + w], &[1], DType::F64, &dev),
    )?;
    // E[ln x] = ln m − (w/m)²/24 − (w/m)⁴/160 − … with m the midpoint.
    let m = l + w / 2.0;
    let e_log = m.ln() - (w / m).powi(2) / 24.0;
    let (s, a) = (1.0f64, 2.0f64);
    let q = Pareto::new(
        &tensor(&[s], &[1], DType::F64, &dev),
        &tensor(&[a], &[1], DType::F64, &dev),
    )?;
    let expected = -w.ln() - a.ln() - a * s.ln() + (a + 1.0) * e_log;
    assert_close(
        &host(&kl_divergence(&u, &q)?),
        &[expected],
        1e-13,
        "U‖Pareto",
    );
    let (k, b) = (3.0f64, 2.0f64);
    let g = Gamma::new(
        &tensor(&[k], &[1], DType::F64, &dev),
        &tensor(&[b], &[1], DType::F64, &dev),
    )?;
    let lgamma_3 = 2f64.ln();
    let expected = -w.ln() + lgamma_3 - k * b.ln() - (k - 1.0) * e_log + b * m;
    assert_close(
        &host(&kl_divergence(&u, &g)?),
        &[expected],
        1e-13,
        "U‖Gamma",
    );
    Ok(())
}

/// Pairs that are `+inf` whatever the parameters, with the broadcast batch shape.
fn always_infinite(device: &Device, dtype: DType) -> Res {
    let a23 = tensor(&[1.0, 2.0, 3.0, 1.5, 2.5, 3.5], &[2, 3], dtype, device);
    let a3 = tensor(&[0.5, 1.5, 2.5], &[3], dtype, device);
    let half3 = tensor(&[0.2, 0.5, 0.7], &[3], dtype, device);
    let pareto = Pareto::new(&a23, &a23)?;
    let poisson = Poisson::new(&a23)?;
    let results = [
        kl_divergence(&pareto, &Beta::new(&a3, &a3)?)?,
        kl_divergence(&pareto, &Uniform::new(&a3, &(&a3 + 1.0)?)?)?,
        kl_divergence(&poisson, &Bernoulli::from_probs(&half3)?)?,
        kl_divergence(&poisson, &Binomial::from_probs(&a3.ones_like()?, &half3)?)?,
        kl_divergence(&Pareto::new(&a3, &a3)?, &Beta::new(&a23, &a23)?)?,
    ];
    for kl in results {
        assert_eq!(kl.dims(), &[2, 3]);
        assert!(host(&kl).iter().all(|x| *x == f64::INFINITY));
    }
    Ok(())
}
vi_test::test_device!(always_infinite);

// ------------------------------------------------------------------ exact 0 and 1

fn bernoulli_probs_zero_one(device: &Device, dtype: DType) -> Res {
    let inf = f64::INFINITY;
    let pv = var(
        &[0.0, 1.0, 0.0, 1.0, 0.3, 0.3, 0.0, 1.0],
        &[8],
        device,
        dtype,
    )?;
    let qv = var(
        &[0.4, 0.4, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0],
        &[8],
        device,
        dtype,
    )?;
    let kl = kl_divergence(&Bernoulli::from_probs(&pv)?, &Bernoulli::from_probs(&qv)?)?;
    let expected = [-(0.6f64.ln()), -(0.4f64.ln()), 0.0, 0.0, inf, inf, inf, inf];
    let tol = if dtype == DType::F64 { 1e-12 } else { 1e-6 };
    let v = host(&kl);
    for (i, (a, e)) in v.iter().zip(expected).enumerate() {
        if e.is_infinite() {
            assert_eq!(*a, e, "[{i}]");
        } else {
            assert!((a - e).abs() <= tol * e.abs().max(1.0), "[{i}]: {a} vs {e}");
        }
    }
    let g = finite_grads(&kl, &[&pv, &qv], "Bern probs")?;
    // ∂/∂q of −ln(1 − q) at q = 0.4 is 1/0.6; of −ln q is −1/0.4.
    assert!((g[1][0] - 1.0 / 0.6).abs() < 1e-4, "{:?}", g[1]);
    assert!((g[1][1] + 1.0 / 0.4).abs() < 1e-4, "{:?}", g[1]);

    // Bernoulli‖Poisson: p = 0 against rate 0 is 0, p > 0 against rate 0 is +inf; p = 1
    // against rate 1 is λ − ln λ = 1.
    let pv = var(&[0.0, 0.3, 1.0, 0.0], &[4], device, dtype)?;
    let rate = var(&[0.0, 0.0, 1.0, 2.0], &[4], device, dtype)?;
    let kl = kl_divergence(&Bernoulli::from_probs(&pv)?, &Poisson::new(&rate)?)?;
    assert_close(
        &host(&kl),
        &[0.0, inf, 1.0, 2.0],
        rtol(dtype),
        "Bern‖Poisson",
    );
    finite_grads(&kl, &[&pv, &rate], "Bern‖Poisson")?;
    Ok(())
}
vi_test::test_device!(bernoulli_probs_zero_one);

fn binomial_geometric_categorical_exact(device: &Device, dtype: DType) -> Res {
    let inf = f64::INFINITY;
    let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
    // Binomial, equal counts: n·KL(Bern); counts above q's: +inf unless p = 0.
    let n = tensor(&[3.0, 3.0, 5.0, 5.0, 0.0], &[5], dtype, device);
    let m = tensor(&[3.0, 3.0, 2.0, 2.0, 0.0], &[5], dtype, device);
    let pv = var(&[0.0, 1.0, 0.0, 0.5, 0.5], &[5], device, dtype)?;
    let qv = var(&[0.25, 0.0, 0.25, 0.25, 0.0], &[5], device, dtype)?;
    let kl = kl_divergence(
        &Binomial::from_probs(&n, &pv)?,
        &Binomial::from_probs(&m, &qv)?,
    )?;
    let expected = [-3.0 * 0.75f64.ln(), inf, -2.0 * 0.75f64.ln(), inf, 0.0];
    assert_close(&host(&kl), &expected, tol, "Binomial");
    finite_grads(&kl, &[&pv, &qv], "Binomial")?;

    // Geometric: p = 1 is the point mass at 0 (KL = −ln q); q = 1 > p is +inf.
    let pv = var(&[1.0, 0.5, 1.0, 0.3], &[4], device, dtype)?;
    let qv = var(&[0.25, 1.0, 1.0, 0.6], &[4], device, dtype)?;
    let kl = kl_divergence(&Geometric::from_probs(&pv)?, &Geometric::from_probs(&qv)?)?;
    // ln(p/q) + ((1 − p)/p)·ln((1 − p)/(1 − q)) at (0.3, 0.6).
    let last = (0.3f64 / 0.6).ln() + (0.7 / 0.3) * (0.7f64 / 0.4).ln();
    assert_close(
        &host(&kl),
        &[-(0.25f64.ln()), inf, 0.0, last],
        tol,
        "Geometric",
    );
    finite_grads(&kl, &[&pv, &qv], "Geometric")?;

    // Categorical from probs with zeros: 0·ln 0 = 0; q = 0 < p gives +inf.
    let pv = var(
        &[0.5, 0.5, 0.0, 0.5, 0.0, 0.5, 0.0, 0.0, 1.0],
        &[3, 3],
        device,
        dtype,
    )?;
    let qv = var(
        &[0.25, 0.25, 0.5, 0.5, 0.5, 0.0, 0.0, 0.5, 0.5],
        &[3, 3],
        device,
        dtype,
    )?;
    let kl = kl_divergence(
        &Categorical::from_probs(&pv)?,
        &Categorical::from_probs(&qv)?,
    )?;
    assert_close(&host(&kl), &[2f64.ln(), inf, 2f64.ln()], tol, "Categorical");
    finite_grads(&kl, &[&pv, &qv], "Categorical")?;
    // The same through OneHotCategorical.
    let kl = kl_divergence(
        &OneHotCategorical::from_probs(pv.as_tensor())?,
        &OneHotCategorical::from_probs(qv.as_tensor())?,
    )?;
    assert_close(&host(&kl), &[2f64.ln(), inf, 2f64.ln()], tol, "OneHot");

    // Categorical from logits with a -inf logit: an impossible class.
    let lp = tensor(&[0.0, 0.0, f64::NEG_INFINITY], &[1, 3], dtype, device);
    let lq = tensor(&[0.0, f64::NEG_INFINITY, 0.0], &[1, 3], dtype, device);
    let (p, q) = (
        Categorical::from_logits(&lp)?,
        Categorical::from_logits(&lq)?,
    );
    assert_eq!(host(&kl_divergence(&p, &q)?), vec![inf]);
    assert_close(&host(&kl_divergence(&p, &p)?), &[0.0], tol, "Cat -inf self");

    // Poisson: rate 0 against μ is μ; against 0, 0; λ > 0 against 0, +inf.
    let rp = var(&[0.0, 0.0, 2.0], &[3], device, dtype)?;
    let rq = var(&[1.5, 0.0, 0.0], &[3], device, dtype)?;
    let kl = kl_divergence(&Poisson::new(&rp)?, &Poisson::new(&rq)?)?;
    assert_close(&host(&kl), &[1.5, 0.0, inf], tol, "Poisson");
    finite_grads(&kl, &[&rp, &rq], "Poisson")?;
    Ok(())
}
vi_test::test_device!(binomial_geometric_categorical_exact);

// ------------------------------------------------------------------ extreme logits

/// Logits of ±50, where the probabilities round to 0 and 1: finite, and accurate against
/// expansions done by hand (in f64 on the host).
fn extreme_logits(device: &Device, dtype: DType) -> Res {
    let e50 = (-50f64).exp();
    let lp = tensor(&[50.0, -50.0, 50.0, -50.0, 50.0], &[5], dtype, device);
    let lq = tensor(&[49.0, -49.0, -50.0, 50.0, 50.0], &[5], dtype, device);
    let kl = kl_divergence(&Bernoulli::from_logits(&lp)?, &Bernoulli::from_logits(&lq)?)?;
    // KL = softplus(l_q) − softplus(l_p) − σ(l_p)(l_q − l_p): (e − 2)e⁻⁵⁰ for 50 vs 49 (and
    // mirrored), 50 − 100·σ(−50) for 50 vs −50 (and mirrored), 0 for equal logits.
    let close = (std::f64::consts::E - 2.0) * e50;
    let far = 50.0 - 100.0 * e50 / (1.0 + e50);
    let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
    assert_close(&host(&kl), &[close, close, far, far, 0.0], tol, "Bernoulli");

    // Binomial with 10 trials: 10 times the same.
    let ten = tensor(&[10.0; 5], &[5], dtype, device);
    let kl = kl_divergence(
        &Binomial::from_logits(&ten, &lp)?,
        &Binomial::from_logits(&ten, &lq)?,
    )?;
    let expected: Vec<f64> = [close, close, far, far, 0.0]
        .iter()
        .map(|x| 10.0 * x)
        .collect();
    assert_close(&host(&kl), &expected, tol, "Binomial");

    // Geometric with p = σ(−50) against q = σ(−49): ln(p/q) + e⁵⁰·ln((1 − p)/(1 − q))
    // = −1 + (e − 1) + O(e⁻⁴⁹) = e − 2.
    let kl = kl_divergence(
        &Geometric::from_logits(&tensor(&[-50.0, 50.0], &[2], dtype, device))?,
        &Geometric::from_logits(&tensor(&[-49.0, 49.0], &[2], dtype, device))?,
    )?;
    // 50 vs 49: ln(p/q) = softplus(−49) − softplus(−50) ≈ (e − 1)e⁻⁵⁰, plus
    // e⁻⁵⁰·(softplus(49) − softplus(50)) ≈ −e⁻⁵⁰: (e − 2)e⁻⁵⁰.
    assert_close(
        &host(&kl),
        &[std::f64::consts::E - 2.0, close],
        tol.max(1e-10),
        "Geometric",
    );

    // Categorical [50, −50, 0] against [−50, 50, 0]: ≈ 100 (terms of e⁻⁵⁰ cancel to
    // O(e⁻¹⁰⁰)·100).
    let kl = kl_divergence(
        &Categorical::from_logits(&tensor(&[50.0, -50.0, 0.0], &[3], dtype, device))?,
        &Categorical::from_logits(&tensor(&[-50.0, 50.0, 0.0], &[3], dtype, device))?,
    )?;
    assert_close(&host(&kl), &[100.0], tol, "Categorical");

    // Logits of ±200: probabilities of exactly 0 and 1 in f32 (and in f64 for 1): still the
    // logits' finite KL, not +inf.
    let kl = kl_divergence(
        &Bernoulli::from_logits(&tensor(&[0.0, 0.0], &[2], dtype, device))?,
        &Bernoulli::from_logits(&tensor(&[200.0, -200.0], &[2], dtype, device))?,
    )?;
    // 0.5·ln(0.5/1) + 0.5·ln(0.5/σ(−200)) = −ln 2 + 100 (+ O(e⁻²⁰⁰)).
    let expected = 100.0 - 2f64.ln();
    assert_close(&host(&kl), &[expected, expected], tol, "Bernoulli ±200");

    // Gradients at extreme logits are finite.
    let lpv = var(&[50.0, -50.0, 30.0], &[3], device, dtype)?;
    let lqv = var(&[-50.0, 50.0, 31.0], &[3], device, dtype)?;
    let kl = kl_divergence(
        &Bernoulli::from_logits(lpv.as_tensor())?,
        &Bernoulli::from_logits(lqv.as_tensor())?,
    )?;
    finite_grads(&kl, &[&lpv, &lqv], "Bernoulli extreme")?;
    Ok(())
}
vi_test::test_device!(extreme_logits);

/// Close Poisson rates: `λ ln(λ/μ) − λ + μ` cancels to `λ(ε − ln(1 + ε))` for `μ = λ(1 + ε)`;
/// the rule keeps the relative error near 1e-9 where the plain formula loses four digits.
#[test]
fn poisson_close_rates_accurate() -> Res {
    let dev = Device::Cpu;
    let (lam, eps) = (5.0f64, 1e-6f64);
    let mu = lam * (1.0 + eps);
    let kl = kl_divergence(
        &Poisson::new(&tensor(&[lam], &[1], DType::F64, &dev))?,
        &Poisson::new(&tensor(&[mu], &[1], DType::F64, &dev))?,
    )?;
    // ε from μ as stored, then the series ε²/2 − ε³/3 + ε⁴/4.
    let e = mu / lam - 1.0;
    let expected = lam * (e * e / 2.0 - e.powi(3) / 3.0 + e.powi(4) / 4.0);
    assert_close(&host(&kl), &[expected], 1e-8, "Poisson close");
    Ok(())
}

// ------------------------------------------------------------------ broadcasting

/// KL with batch shapes `[2, 3]` and `[3]` (both ways) equals the KL with `q` (or `p`)
/// expanded by hand.
fn broadcast_two_batch_shapes(device: &Device, dtype: DType) -> Res {
    let a23 = tensor(&[0.3, -1.2, 2.0, 0.7, 0.1, -0.4], &[2, 3], dtype, device);
    let a3 = tensor(&[1.1, -0.5, 0.2], &[3], dtype, device);
    let expand =
        |x: &Tensor| -> candle_core::Result<Tensor> { x.broadcast_as(vec![2, 3])?.contiguous() };
    type Build = Box<dyn Fn(&Tensor) -> Box<dyn Distribution>>;
    // Each family built from one parameter tensor (others derived from it).
    let families: Vec<(&str, Build, Build)> = vec![
        (
            "Bernoulli",
            Box::new(|x| Box::new(Bernoulli::from_logits(x).unwrap())),
            Box::new(|x| Box::new(Bernoulli::from_logits(x).unwrap())),
        ),
        (
            "Bernoulli‖Poisson",
            Box::new(|x| Box::new(Bernoulli::from_logits(x).unwrap())),
            Box::new(|x| Box::new(Poisson::new(&(x.exp().unwrap() + 0.5).unwrap()).unwrap())),
        ),
        (
            "Geometric",
            Box::new(|x| Box::new(Geometric::from_logits(x).unwrap())),
            Box::new(|x| Box::new(Geometric::from_logits(x).unwrap())),
        ),
        (
            "Binomial",
            Box::new(|x| Box::new(Binomial::from_logits(&x.ones_like().unwrap(), x).unwrap())),
            Box::new(|x| Box::new(Binomial::from_logits(&x.ones_like().unwrap(), x).unwrap())),
        ),
        (
            "Poisson",
            Box::new(|x| Box::new(Poisson::new(&(x.exp().unwrap() + 0.5).unwrap()).unwrap())),
            Box::new(|x| Box::new(Poisson::new(&(x.exp().unwrap() + 0.1).unwrap()).unwrap())),
        ),
        (
            "Uniform‖Normal",
            Box::new(|x| Box::new(Uniform::new(x, &(x + 1.0).unwrap()).unwrap())),
            Box::new(|x| Box::new(Normal::new(x, &(x.exp().unwrap() + 0.5).unwrap()).unwrap())),
        ),
        (
            "Uniform‖Gumbel",
            Box::new(|x| Box::new(Uniform::new(x, &(x + 1.0).unwrap()).unwrap())),
            Box::new(|x| Box::new(Gumbel::new(x, &(x.exp().unwrap() + 0.5).unwrap()).unwrap())),
        ),
        (
            "Uniform‖Uniform",
            Box::new(|x| Box::new(Uniform::new(x, &(x + 1.0).unwrap()).unwrap())),
            Box::new(|x| Box::new(Uniform::new(&(x - 1.0).unwrap(), &(x + 1.5).unwrap()).unwrap())),
        ),
        (
            "Pareto‖Pareto",
            Box::new(|x| {
                Box::new(
                    Pareto::new(
                        &(x.exp().unwrap() + 1.0).unwrap(),
                        &(x.exp().unwrap() + 0.5).unwrap(),
                    )
                    .unwrap(),
                )
            }),
            Box::new(|x| {
                Box::new(
                    Pareto::new(
                        &(x.exp().unwrap() + 0.5).unwrap(),
                        &(x.exp().unwrap() + 1.0).unwrap(),
                    )
                    .unwrap(),
                )
            }),
        ),
        (
            "Pareto‖Normal",
            Box::new(|x| {
                Box::new(
                    Pareto::new(
                        &(x.exp().unwrap() + 1.0).unwrap(),
                        &(x.exp().unwrap() + 2.5).unwrap(),
                    )
                    .unwrap(),
                )
            }),
            Box::new(|x| Box::new(Normal::new(x, &(x.exp().unwrap() + 0.5).unwrap()).unwrap())),
        ),
    ];
    for (name, build_p, build_q) in &families {
        for (big_p, pa, qa) in [(true, &a23, &a3), (false, &a3, &a23)] {
            let (p, q) = (build_p(pa), build_q(qa));
            let kl = kl_divergence(p.as_ref(), q.as_ref())?;
            assert_eq!(kl.dims(), &[2, 3], "{name}");
            let (pe, qe) = if big_p {
                (build_p(pa), build_q(&expand(qa)?))
            } else {
                (build_p(&expand(pa)?), build_q(qa))
            };
            let by_hand = kl_divergence(pe.as_ref(), qe.as_ref())?;
            assert_close(&host(&kl), &host(&by_hand), 1e-6, name);
        }
    }
    // Categorical: logits [2, 3, 4] against [3, 4], both ways.
    let l234 = tensor(
        &(0..24)
            .map(|i| ((i * 7 % 11) as f64) * 0.3 - 1.0)
            .collect::<Vec<_>>(),
        &[2, 3, 4],
        dtype,
        device,
    );
    let l34 = tensor(
        &(0..12)
            .map(|i| ((i * 5 % 7) as f64) * 0.4 - 1.2)
            .collect::<Vec<_>>(),
        &[3, 4],
        dtype,
        device,
    );
    let big = Categorical::from_logits(&l234)?;
    let small = Categorical::from_logits(&l34)?;
    let small_expanded = Categorical::from_logits(&l34.broadcast_as(vec![2, 3, 4])?.contiguous()?)?;
    let kl = kl_divergence(&big, &small)?;
    assert_eq!(kl.dims(), &[2, 3]);
    assert_close(
        &host(&kl),
        &host(&kl_divergence(&big, &small_expanded)?),
        1e-6,
        "Categorical",
    );
    let kl = kl_divergence(&small, &big)?;
    assert_eq!(kl.dims(), &[2, 3]);
    assert_close(
        &host(&kl),
        &host(&kl_divergence(&small_expanded, &big)?),
        1e-6,
        "Categorical reversed",
    );
    Ok(())
}
vi_test::test_device!(broadcast_two_batch_shapes);

// ------------------------------------------------------------------ gradients

/// The autograd gradient of `Σ KL(Cat(p) ‖ Cat(q))` w.r.t. both logits against central finite
/// differences, in f64.
#[test]
fn categorical_gradient_finite_difference() -> Res {
    let dev = Device::Cpu;
    let lp0 = [0.3, -1.2, 2.0, 0.7, 0.1, -0.4, 1.5, -2.0];
    let lq0 = [-0.5, 0.8, 0.2, 1.1, 2.2, -0.3, 0.0, 0.9];
    let kl_of = |lp: &[f64], lq: &[f64]| -> f64 {
        let p = Categorical::from_logits(&tensor(lp, &[2, 4], DType::F64, &dev)).unwrap();
        let q = Categorical::from_logits(&tensor(lq, &[2, 4], DType::F64, &dev)).unwrap();
        kl_divergence(&p, &q)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let lp = var(&lp0, &[2, 4], &dev, DType::F64)?;
    let lq = var(&lq0, &[2, 4], &dev, DType::F64)?;
    let kl = kl_divergence(
        &Categorical::from_logits(lp.as_tensor())?,
        &Categorical::from_logits(lq.as_tensor())?,
    )?;
    let g = finite_grads(&kl, &[&lp, &lq], "Categorical")?;
    let fd_p = vi_test::finite_difference(&lp0, 1e-6, |x| kl_of(x, &lq0));
    let fd_q = vi_test::finite_difference(&lq0, 1e-6, |x| kl_of(&lp0, x));
    for (a, e) in g[0].iter().zip(&fd_p).chain(g[1].iter().zip(&fd_q)) {
        assert!(
            (a - e).abs() < 1e-7,
            "autograd {a} vs finite difference {e}"
        );
    }
    Ok(())
}

/// Autograd against central finite differences (f64) for every parameter of a pair, at
/// parameters where the KL is finite: `build` makes `(p, q)` from the parameter tensors.
fn check_gradients(
    name: &str,
    params: &[&[f64]],
    build: impl Fn(&[Tensor]) -> (Box<dyn Distribution>, Box<dyn Distribution>),
) -> Res {
    let dev = Device::Cpu;
    let kl_sum = |vals: &[Vec<f64>]| -> f64 {
        let ts: Vec<Tensor> = vals
            .iter()
            .map(|v| tensor(v, &[v.len()], DType::F64, &dev))
            .collect();
        let (p, q) = build(&ts);
        kl_divergence(p.as_ref(), q.as_ref())
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let vals: Vec<Vec<f64>> = params.iter().map(|v| v.to_vec()).collect();
    let vars: Vec<Var> = vals
        .iter()
        .map(|v| var(v, &[v.len()], &dev, DType::F64))
        .collect::<candle_core::Result<_>>()?;
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let (p, q) = build(&ts);
    let kl = kl_divergence(p.as_ref(), q.as_ref())?;
    assert!(host(&kl).iter().all(|x| x.is_finite()), "{name}: {kl}");
    let grads = finite_grads(&kl, &vars.iter().collect::<Vec<_>>(), name)?;
    for (i, g) in grads.iter().enumerate() {
        let fd = vi_test::finite_difference(&vals[i], 1e-6, |x| {
            let mut v = vals.clone();
            v[i] = x.to_vec();
            kl_sum(&v)
        });
        for (a, e) in g.iter().zip(&fd) {
            assert!(
                (a - e).abs() < 1e-6 * e.abs().max(1.0),
                "{name}, parameter {i}: autograd {a} vs finite difference {e}"
            );
        }
    }
    Ok(())
}

type Pair = (Box<dyn Distribution>, Box<dyn Distribution>);

/// The gradients of the pairs whose reference cases all contain an infinite element (torch's
/// figures then give no gradient), at finite parameters.
#[test]
fn bounded_gradients_finite_difference() -> Res {
    let l: &[f64] = &[0.2, 0.01, 0.4];
    let h: &[f64] = &[0.7, 0.5, 0.99];
    let a: &[f64] = &[2.0, 0.5, 1.5];
    let b: &[f64] = &[3.0, 0.7, 2.5];
    let uniform = |x: &[Tensor]| Box::new(Uniform::new(&x[0], &x[1]).unwrap());
    check_gradients("U‖Beta", &[l, h, a, b], |x| -> Pair {
        (uniform(x), Box::new(Beta::new(&x[2], &x[3]).unwrap()))
    })?;
    check_gradients("U‖Exp", &[l, h, a], |x| -> Pair {
        (uniform(x), Box::new(Exponential::new(&x[2]).unwrap()))
    })?;
    check_gradients("U‖Gamma", &[l, h, a, b], |x| -> Pair {
        (uniform(x), Box::new(Gamma::new(&x[2], &x[3]).unwrap()))
    })?;
    let (pl, ph): (&[f64], &[f64]) = (&[1.2, 2.0, 3.5], &[1.7, 2.01, 9.0]);
    check_gradients("U‖Pareto", &[pl, ph, &[1.0, 0.5, 3.0], b], |x| -> Pair {
        (uniform(x), Box::new(Pareto::new(&x[2], &x[3]).unwrap()))
    })?;
    check_gradients(
        "U‖U",
        &[l, h, &[0.1, -1.0, 0.3], &[0.8, 2.0, 1.0]],
        |x| -> Pair { (uniform(x), Box::new(Uniform::new(&x[2], &x[3]).unwrap())) },
    )?;
    let pareto = |s: &Tensor, a: &Tensor| Box::new(Pareto::new(s, a).unwrap());
    check_gradients(
        "Pareto‖Pareto",
        &[
            &[1.5, 2.0, 0.7],
            &[3.0, 0.5, 1.2],
            &[1.0, 1.9, 0.1],
            &[2.5, 0.7, 4.0],
        ],
        |x| -> Pair { (pareto(&x[0], &x[1]), pareto(&x[2], &x[3])) },
    )?;
    Ok(())
}

// ------------------------------------------------------------------ errors

fn unsupported_parameters(device: &Device, dtype: DType) -> Res {
    let p = Categorical::from_logits(&tensor(&[0.0; 6], &[2, 3], dtype, device))?;
    let q = Categorical::from_logits(&tensor(&[0.0; 8], &[2, 4], dtype, device))?;
    match kl_divergence(&p, &q) {
        Err(KlError::Unsupported { p, q, msg }) => {
            assert_eq!((p.as_str(), q.as_str()), ("Categorical", "Categorical"));
            assert!(msg.contains('3') && msg.contains('4'), "{msg}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    // OneHotCategorical: the class count is the event shape.
    let p = OneHotCategorical::from_logits(&tensor(&[0.0; 6], &[2, 3], dtype, device))?;
    let q = OneHotCategorical::from_logits(&tensor(&[0.0; 8], &[2, 4], dtype, device))?;
    assert!(matches!(
        kl_divergence(&p, &q),
        Err(KlError::EventShape { .. })
    ));
    // Binomial with p's total count below q's anywhere: no closed form.
    let probs = tensor(&[0.5, 0.5], &[2], dtype, device);
    let p = Binomial::from_probs(&tensor(&[3.0, 2.0], &[2], dtype, device), &probs)?;
    let q = Binomial::from_probs(&tensor(&[3.0, 3.0], &[2], dtype, device), &probs)?;
    match kl_divergence(&p, &q) {
        Err(e @ KlError::Unsupported { .. }) => {
            assert!(e.to_string().contains("total_count"), "{e}")
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    // The other way round is +inf where the counts differ.
    let kl = kl_divergence(&q, &p)?;
    let v = host(&kl);
    assert!(v[0].abs() < 1e-6 && v[1] == f64::INFINITY, "{v:?}");
    Ok(())
}
vi_test::test_device!(unsupported_parameters);
