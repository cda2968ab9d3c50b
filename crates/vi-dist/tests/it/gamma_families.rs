//! Gamma, Beta, Dirichlet, StudentT: seeded sampler statistics, reparameterised gradients,
//! undefined moments, edge values and parameter errors. (Formulas against torch are in
//! `conformance`.)

use candle_core::{DType, Device, Tensor, Var};
use statrs::distribution::{self as sd, ContinuousCDF};
use statrs::function::gamma::gamma_lr;
use vi_dist::{Beta, Dirichlet, DistError, Distribution, Gamma, StudentT};
use vi_test::stats::{check_ks, check_moments, mean_var};

use crate::special_ops::inverse_gamma_cdf;

use crate::common::{Res, host, rng, t, vector};

const N: usize = 20_000;
const Z: f64 = 5.0;
const KS_ALPHA: f64 = 1e-3;

/// Column `j` of row-major draws with `width` columns.
fn column(xs: &[f64], width: usize, j: usize) -> Vec<f64> {
    xs.iter().skip(j).step_by(width).copied().collect()
}

// ---------- sampler statistics ----------

fn gamma_sampler(device: &Device, dtype: DType) -> Res {
    let conc = [0.3, 1.0, 2.5, 15.0];
    let rate = [1.0, 2.0, 0.5, 3.0];
    let d = Gamma::new(&vector(&conc, dtype, device), &vector(&rate, dtype, device))?;
    for (what, xs) in [
        ("rsample", d.rsample(&[N], &mut rng(1))?),
        ("sample", d.sample(&[N], &mut rng(2))?),
    ] {
        assert_eq!(xs.dims(), &[N, 4]);
        let xs = host(&xs);
        assert!(
            xs.iter().all(|x| *x > 0.0 && x.is_finite()),
            "{what}: outside (0, inf)"
        );
        for j in 0..4 {
            let col = column(&xs, 4, j);
            let (c, r) = (conc[j], rate[j]);
            check_moments(&col, c / r, c / (r * r), Z).map_err(|e| format!("{what} {j}: {e}"))?;
            let cdf = sd::Gamma::new(c, r)?;
            check_ks(&col, |x| cdf.cdf(x), KS_ALPHA).map_err(|e| format!("{what} {j}: {e}"))?;
        }
    }
    Ok(())
}
vi_test::test_device!(gamma_sampler);

fn beta_sampler(device: &Device, dtype: DType) -> Res {
    let a = [0.5, 2.0, 0.2, 7.0];
    let b = [0.5, 5.0, 3.0, 1.5];
    let d = Beta::new(&vector(&a, dtype, device), &vector(&b, dtype, device))?;
    for (what, xs) in [
        ("rsample", d.rsample(&[N], &mut rng(3))?),
        ("sample", d.sample(&[N], &mut rng(4))?),
    ] {
        assert_eq!(xs.dims(), &[N, 4]);
        let xs = host(&xs);
        assert!(
            xs.iter().all(|x| *x > 0.0 && *x < 1.0),
            "{what}: outside (0, 1)"
        );
        for j in 0..4 {
            let col = column(&xs, 4, j);
            let t = a[j] + b[j];
            let var = a[j] * b[j] / (t * t * (t + 1.0));
            check_moments(&col, a[j] / t, var, Z).map_err(|e| format!("{what} {j}: {e}"))?;
            let cdf = sd::Beta::new(a[j], b[j])?;
            check_ks(&col, |x| cdf.cdf(x), KS_ALPHA).map_err(|e| format!("{what} {j}: {e}"))?;
        }
    }
    Ok(())
}
vi_test::test_device!(beta_sampler);

fn student_t_sampler(device: &Device, dtype: DType) -> Res {
    // df > 4 so the sample variance has a finite variance.
    let df = [6.0, 10.0, 4.5];
    let loc = [0.0, -1.0, 3.0];
    let scale = [1.0, 2.0, 0.5];
    let d = StudentT::new(
        &vector(&df, dtype, device),
        &vector(&loc, dtype, device),
        &vector(&scale, dtype, device),
    )?;
    for (what, xs) in [
        ("rsample", d.rsample(&[N], &mut rng(5))?),
        ("sample", d.sample(&[N], &mut rng(6))?),
    ] {
        assert_eq!(xs.dims(), &[N, 3]);
        let xs = host(&xs);
        for j in 0..3 {
            let col = column(&xs, 3, j);
            let var = scale[j] * scale[j] * df[j] / (df[j] - 2.0);
            check_moments(&col, loc[j], var, Z).map_err(|e| format!("{what} {j}: {e}"))?;
            let cdf = sd::StudentsT::new(loc[j], scale[j], df[j])?;
            check_ks(&col, |x| cdf.cdf(x), KS_ALPHA).map_err(|e| format!("{what} {j}: {e}"))?;
        }
    }
    Ok(())
}
vi_test::test_device!(student_t_sampler);

fn dirichlet_sampler(device: &Device, dtype: DType) -> Res {
    let conc = [[0.5, 1.0, 2.5], [3.0, 3.0, 3.0]];
    let flat: Vec<f64> = conc.iter().flatten().copied().collect();
    let c = vector(&flat, dtype, device).reshape((2, 3))?;
    let d = Dirichlet::new(&c)?;
    assert_eq!((d.batch_shape(), d.event_shape()), (&[2][..], &[3][..]));
    for (what, xs) in [
        ("rsample", d.rsample(&[N], &mut rng(7))?),
        ("sample", d.sample(&[N], &mut rng(8))?),
    ] {
        assert_eq!(xs.dims(), &[N, 2, 3]);
        let sums = host(&xs.sum(2)?);
        let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
        assert!(
            sums.iter().all(|s| (s - 1.0).abs() < tol),
            "{what}: not on the simplex"
        );
        let xs = host(&xs);
        assert!(
            xs.iter().all(|x| *x > 0.0 && *x < 1.0),
            "{what}: outside (0, 1)"
        );
        for (b, row) in conc.iter().enumerate() {
            let a0: f64 = row.iter().sum();
            for (i, &ai) in row.iter().enumerate() {
                // Each coordinate is Beta(αᵢ, α₀ − αᵢ).
                let col = column(&xs, 6, 3 * b + i);
                let var = ai * (a0 - ai) / (a0 * a0 * (a0 + 1.0));
                check_moments(&col, ai / a0, var, Z)
                    .map_err(|e| format!("{what} [{b}, {i}]: {e}"))?;
                let cdf = sd::Beta::new(ai, a0 - ai)?;
                check_ks(&col, |x| cdf.cdf(x), KS_ALPHA)
                    .map_err(|e| format!("{what} [{b}, {i}]: {e}"))?;
            }
        }
    }
    Ok(())
}
vi_test::test_device!(dirichlet_sampler);

#[test]
fn samplers_are_seeded() -> Res {
    let d = Gamma::new(
        &Tensor::new(&[0.7f64, 3.0], &Device::Cpu)?,
        &Tensor::new(1.0f64, &Device::Cpu)?,
    )?;
    let a = host(&d.rsample(&[50], &mut rng(11))?);
    let b = host(&d.rsample(&[50], &mut rng(11))?);
    let c = host(&d.rsample(&[50], &mut rng(12))?);
    assert_eq!(a, b);
    assert_ne!(a, c);
    // The same seed gives the same draws in f32 (up to rounding).
    let d32 = Gamma::new(
        &Tensor::new(&[0.7f32, 3.0], &Device::Cpu)?,
        &Tensor::new(1.0f32, &Device::Cpu)?,
    )?;
    let a32 = host(&d32.rsample(&[50], &mut rng(11))?);
    for (x, y) in a.iter().zip(&a32) {
        assert!((x - y).abs() <= 1e-6 * x.abs().max(1e-30), "{x} vs {y}");
    }
    Ok(())
}

// ---------- reparameterised gradients ----------

#[test]
fn gamma_rsample_grad_matches_inverse_cdf() -> Res {
    // One draw per batch element, so each parameter's gradient is d(sample)/d(parameter).
    let conc: Vec<f64> = [0.15, 0.6, 1.0, 2.5, 9.0, 40.0].repeat(3);
    let rate: Vec<f64> = [1.0, 2.0, 0.5].iter().flat_map(|r| [*r; 6]).collect();
    let c = Var::new(conc.as_slice(), &Device::Cpu)?;
    let r = Var::new(rate.as_slice(), &Device::Cpu)?;
    let d = Gamma::new(c.as_tensor(), r.as_tensor())?;
    let s = d.rsample(&[], &mut rng(21))?;
    let grads = s.sum_all()?.backward()?;
    let dc = host(
        grads
            .get(c.as_tensor())
            .ok_or("no gradient for concentration")?,
    );
    let dr = host(grads.get(r.as_tensor()).ok_or("no gradient for rate")?);
    let s = host(&s);
    let mut worst = 0f64;
    for i in 0..conc.len() {
        let (a, rt, x) = (conc[i], rate[i], s[i]);
        // The sample's CDF level, held fixed while α moves.
        let u = gamma_lr(a, x * rt);
        let h = 1e-5 * a;
        let fd = (inverse_gamma_cdf(a + h, u) - inverse_gamma_cdf(a - h, u)) / (2.0 * h) / rt;
        let rel = ((dc[i] - fd) / fd).abs();
        worst = worst.max(rel);
        assert!(
            rel < 1e-6,
            "alpha {a}, rate {rt}, x {x}: autograd {}, inverse-CDF FD {fd}",
            dc[i]
        );
        // x = g / rate: d x / d rate = −x / rate.
        assert!(
            (dr[i] + x / rt).abs() <= 1e-12 * (x / rt),
            "rate grad {} vs {}",
            dr[i],
            -x / rt
        );
    }
    println!("Gamma rsample d/d(concentration) vs inverse-CDF differences: max rel {worst:e}");
    Ok(())
}

/// The mean of per-sample values and its standard error.
fn mean_se(xs: &[f64]) -> (f64, f64) {
    let (m, v) = mean_var(xs);
    (m, (v / xs.len() as f64).sqrt())
}

#[test]
fn beta_and_dirichlet_rsample_grads_are_unbiased() -> Res {
    // E[d x / d α] = d E[x] / d α: for Beta, d/dα α/(α+β) = β/(α+β)², d/dβ = −α/(α+β)².
    let n = 20_000;
    let (a, b) = (1.7, 0.6);
    let va = Var::new(vec![a; n].as_slice(), &Device::Cpu)?;
    let vb = Var::new(vec![b; n].as_slice(), &Device::Cpu)?;
    let x = Beta::new(va.as_tensor(), vb.as_tensor())?.rsample(&[], &mut rng(31))?;
    let g = x.sum_all()?.backward()?;
    let t = a + b;
    for (name, var, want) in [("alpha", &va, b / (t * t)), ("beta", &vb, -a / (t * t))] {
        let (m, se) = mean_se(&host(g.get(var.as_tensor()).ok_or("no gradient")?));
        assert!(
            (m - want).abs() < Z * se,
            "Beta d x/d {name}: mean {m} ± {se}, expected {want}"
        );
    }
    // Dirichlet: d E[x_j] / d α_i = (δ_ij α₀ − α_j) / α₀².
    let conc = [0.8, 2.0, 3.5];
    let a0: f64 = conc.iter().sum();
    let c = Var::new(conc.repeat(n).as_slice(), &Device::Cpu)?;
    let c2 = c.as_tensor().reshape((n, 3))?;
    let x = Dirichlet::new(&c2)?.rsample(&[], &mut rng(32))?;
    // Differentiate the first coordinate.
    let g = x.narrow(1, 0, 1)?.sum_all()?.backward()?;
    let g = host(g.get(c.as_tensor()).ok_or("no gradient")?);
    for i in 0..3 {
        let want = (if i == 0 { a0 } else { 0.0 } - conc[0]) / (a0 * a0);
        let (m, se) = mean_se(&column(&g, 3, i));
        assert!(
            (m - want).abs() < Z * se,
            "Dirichlet d x0/d alpha{i}: mean {m} ± {se}, expected {want}"
        );
    }
    Ok(())
}

#[test]
fn student_t_rsample_grad_is_unbiased() -> Res {
    // E[d (x − μ)² / d ν] = d Var / d ν = −2σ² / (ν − 2)².
    let n = 20_000;
    let (df, loc, scale) = (9.0, 0.5, 1.5);
    let v = Var::new(vec![df; n].as_slice(), &Device::Cpu)?;
    let d = StudentT::new(
        v.as_tensor(),
        &Tensor::new(loc, &Device::Cpu)?,
        &Tensor::new(scale, &Device::Cpu)?,
    )?;
    let x = d.rsample(&[], &mut rng(41))?;
    let g = x.affine(1.0, -loc)?.sqr()?.sum_all()?.backward()?;
    let (m, se) = mean_se(&host(g.get(v.as_tensor()).ok_or("no gradient")?));
    let want = -2.0 * scale * scale / ((df - 2.0) * (df - 2.0));
    assert!(
        (m - want).abs() < Z * se,
        "StudentT: mean {m} ± {se}, expected {want}"
    );
    Ok(())
}

// ---------- moments, edges, shapes ----------

#[test]
fn student_t_undefined_moments_follow_torch() -> Res {
    let df = Var::new(&[0.5f64, 1.0, 1.5, 2.0, 3.0], &Device::Cpu)?;
    let d = StudentT::new(
        df.as_tensor(),
        &Tensor::new(2.0f64, &Device::Cpu)?,
        &Tensor::new(3.0f64, &Device::Cpu)?,
    )?;
    let mean = host(&d.mean()?);
    assert!(mean[0].is_nan() && mean[1].is_nan());
    assert_eq!(&mean[2..], &[2.0, 2.0, 2.0]);
    let var = d.variance()?;
    let vh = host(&var);
    assert!(vh[0].is_nan() && vh[1].is_nan());
    assert_eq!(&vh[2..4], &[f64::INFINITY, f64::INFINITY]);
    assert!((vh[4] - 27.0).abs() < 1e-12);
    // The gradient of the defined entry is finite and the others get none.
    let g = var.narrow(0, 4, 1)?.sum_all()?.backward()?;
    let g = host(g.get(df.as_tensor()).ok_or("no gradient")?);
    assert_eq!(&g[..4], &[0.0; 4]);
    assert!((g[4] + 18.0).abs() < 1e-12, "{g:?}"); // −2σ²/(ν−2)²
    Ok(())
}

#[test]
fn log_prob_edges_and_exact_values() -> Res {
    let dev = Device::Cpu;
    // Gamma(1, rate) at 0: ln(rate) (0 · ln 0 = 0), and at conc = 1 the concentration
    // gradient is the true ln(rate) + ln(x) − ψ(1).
    let c = Var::new(&[1.0f64], &dev)?;
    let d = Gamma::new(c.as_tensor(), &Tensor::new(&[2.0f64], &dev)?)?;
    let lp = host(&d.log_prob(&Tensor::new(&[0.0f64], &dev)?)?);
    assert!((lp[0] - 2f64.ln()).abs() < 1e-15);
    let lp = d.log_prob(&Tensor::new(&[0.5f64], &dev)?)?;
    let g = host(
        lp.sum_all()?
            .backward()?
            .get(c.as_tensor())
            .ok_or("no gradient")?,
    );
    let want = 2f64.ln() + 0.5f64.ln() + 0.577_215_664_901_532_9;
    assert!((g[0] - want).abs() < 1e-12, "{} vs {want}", g[0]);
    // Dirichlet with a zero coordinate where its concentration is 1.
    let d = Dirichlet::new(&Tensor::new(&[1.0f64, 2.0, 3.0], &dev)?)?;
    let lp = host(&d.log_prob(&Tensor::new(&[0.0f64, 0.5, 0.5], &dev)?)?);
    // Γ(6) / (Γ(1) Γ(2) Γ(3)) · 0.5 · 0.25 = 60 · 0.125
    assert!((lp[0] - 7.5f64.ln()).abs() < 1e-12, "{}", lp[0]);
    // Beta(1, 1) is uniform, including the end points.
    let d = Beta::new(&Tensor::new(1.0f64, &dev)?, &Tensor::new(1.0f64, &dev)?)?;
    let lp = host(&d.log_prob(&Tensor::new(&[0.0f64, 0.3, 1.0], &dev)?)?);
    assert_eq!(lp, vec![0.0, 0.0, 0.0]);
    Ok(())
}

#[test]
fn shapes_broadcast_and_expand() -> Res {
    let dev = Device::Cpu;
    let d = Gamma::new(
        &Tensor::new(&[[1.0f64], [2.0]], &dev)?,
        &Tensor::new(&[1.0f64, 2.0, 3.0], &dev)?,
    )?;
    assert_eq!(d.batch_shape(), &[2, 3]);
    let x = d.rsample(&[4], &mut rng(51))?;
    assert_eq!(x.dims(), &[4, 2, 3]);
    assert_eq!(d.log_prob(&x)?.dims(), &[4, 2, 3]);
    let e = d.expand(&[5, 2, 3])?;
    assert_eq!(e.batch_shape(), &[5, 2, 3]);
    assert_eq!(e.entropy()?.dims(), &[5, 2, 3]);
    let d = Dirichlet::new(&Tensor::ones((2, 4), DType::F64, &dev)?)?;
    let x = d.rsample(&[3], &mut rng(52))?;
    assert_eq!(x.dims(), &[3, 2, 4]);
    assert_eq!(d.log_prob(&x)?.dims(), &[3, 2]);
    assert_eq!(
        d.expand(&[6, 2])?.sample(&[], &mut rng(53))?.dims(),
        &[6, 2, 4]
    );
    assert_eq!(d.mean()?.dims(), &[2, 4]);
    let b = Beta::new(
        &Tensor::new(&[0.5f64, 2.0], &dev)?,
        &Tensor::new(1.0f64, &dev)?,
    )?;
    assert_eq!(b.rsample(&[7], &mut rng(54))?.dims(), &[7, 2]);
    let t = StudentT::new(
        &Tensor::new(3.0f64, &dev)?,
        &Tensor::zeros(3, DType::F64, &dev)?,
        &Tensor::new(1.0f64, &dev)?,
    )?;
    assert_eq!(t.rsample(&[2], &mut rng(55))?.dims(), &[2, 3]);
    Ok(())
}

// ---------- parameter errors ----------

fn is_support(r: vi_dist::Result<impl std::fmt::Debug>, param: &str) -> bool {
    matches!(r.map_err(DistError::into_kind), Err(DistError::ParamSupport { param: p, .. }) if p == param)
}

#[test]
fn invalid_parameters_are_typed_errors() {
    let ok = t(&[1.0, 2.0]);
    for bad in [t(&[1.0, -0.5]), t(&[f64::NAN, 1.0]), t(&[0.0, 1.0])] {
        assert!(is_support(Gamma::new(&bad, &ok), "concentration"));
        assert!(is_support(Gamma::new(&ok, &bad), "rate"));
        assert!(is_support(Beta::new(&bad, &ok), "concentration1"));
        assert!(is_support(Beta::new(&ok, &bad), "concentration0"));
        assert!(is_support(Dirichlet::new(&bad), "concentration"));
        assert!(is_support(StudentT::new(&bad, &ok, &ok), "df"));
        assert!(is_support(StudentT::new(&ok, &ok, &bad), "scale"));
        // Validation off: constructed without a check.
        vi_dist::with_validation(false, || {
            assert!(Gamma::new(&bad, &ok).is_ok());
            assert!(Dirichlet::new(&bad).is_ok());
        });
    }
    assert!(is_support(
        StudentT::new(&ok, &t(&[f64::NAN, 0.0]), &ok),
        "loc"
    ));
    // Mismatched batch shapes.
    let three = t(&[1.0, 2.0, 3.0]);
    assert!(matches!(
        Gamma::new(&ok, &three).map_err(DistError::into_kind),
        Err(DistError::Broadcast { .. })
    ));
    assert!(matches!(
        Beta::new(&three, &ok).map_err(DistError::into_kind),
        Err(DistError::Broadcast { .. })
    ));
    assert!(matches!(
        StudentT::new(&ok, &three, &ok).map_err(DistError::into_kind),
        Err(DistError::Broadcast { .. })
    ));
    // Dirichlet needs at least one dim.
    let scalar = Tensor::new(1.0f64, &Device::Cpu).unwrap();
    assert!(matches!(
        Dirichlet::new(&scalar).map_err(DistError::into_kind),
        Err(DistError::ParamShape { .. })
    ));
    // Values outside the support (validation on).
    let d = Beta::new(&ok, &ok).unwrap();
    assert!(matches!(
        d.log_prob(&t(&[0.5, 1.5])),
        Err(DistError::ValueSupport { .. })
    ));
    let d = Gamma::new(&ok, &ok).unwrap();
    assert!(matches!(
        d.log_prob(&t(&[-1.0, 1.0])),
        Err(DistError::ValueSupport { .. })
    ));
    let d = Dirichlet::new(&three).unwrap();
    assert!(matches!(
        d.log_prob(&t(&[0.5, 0.6, 0.1])),
        Err(DistError::ValueSupport { .. })
    ));
    assert!(matches!(
        d.log_prob(&t(&[0.5, 0.5])),
        Err(DistError::ValueShape { .. })
    ));
}
