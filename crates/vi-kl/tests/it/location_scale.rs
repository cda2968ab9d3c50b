//! The pairs whose `p` is Normal, Laplace, Gumbel, Cauchy, HalfNormal or LogNormal: `+inf`
//! (not NaN) where q's support does not cover the real line, broadcasting of two different
//! batch shapes (values and gradients), identities between pairs, extreme parameters, and
//! gradients against finite differences in f64.

use candle_core::{D, DType, Device, Tensor, Var};
use vi_dist::{
    Beta, Cauchy, Distribution, Exponential, Gamma, Gumbel, HalfNormal, Laplace, LogNormal, Normal,
    Pareto, Uniform,
};
use vi_kl::kl_divergence;

use crate::common::{Res, assert_within, host, tensor};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fam {
    Normal,
    Laplace,
    Gumbel,
    Cauchy,
    HalfNormal,
    LogNormal,
}

/// Every pair of these families with a finite closed form.
const CLOSED: &[(Fam, Fam)] = &[
    (Fam::Normal, Fam::Normal),
    (Fam::Normal, Fam::Gumbel),
    (Fam::Normal, Fam::Laplace),
    (Fam::Laplace, Fam::Laplace),
    (Fam::Laplace, Fam::Normal),
    (Fam::Gumbel, Fam::Gumbel),
    (Fam::Gumbel, Fam::Normal),
    (Fam::Cauchy, Fam::Cauchy),
    (Fam::HalfNormal, Fam::HalfNormal),
    (Fam::LogNormal, Fam::LogNormal),
];

/// A distribution of family `f` (HalfNormal ignores `loc`).
fn make(f: Fam, loc: &Tensor, scale: &Tensor) -> vi_dist::Result<Box<dyn Distribution>> {
    Ok(match f {
        Fam::Normal => Box::new(Normal::new(loc, scale)?),
        Fam::Laplace => Box::new(Laplace::new(loc, scale)?),
        Fam::Gumbel => Box::new(Gumbel::new(loc, scale)?),
        Fam::Cauchy => Box::new(Cauchy::new(loc, scale)?),
        Fam::HalfNormal => Box::new(HalfNormal::new(scale)?),
        Fam::LogNormal => Box::new(LogNormal::new(loc, scale)?),
    })
}

fn tol(dtype: DType) -> f64 {
    if dtype == DType::F64 { 1e-12 } else { 1e-5 }
}

/// The real-line `p` against a `q` on a half-line or an interval: `+inf` everywhere, of the
/// broadcast shape, and the backward pass runs without producing a NaN.
fn infinite_pairs_are_inf_not_nan(device: &Device, dtype: DType) -> Res {
    for (p_shape, q_shape) in [(vec![2, 3], vec![3]), (vec![2, 1], vec![3])] {
        let n: usize = p_shape.iter().product();
        let loc = Var::from_tensor(&tensor(&vec![0.3; n], &p_shape, dtype, device))?;
        let scale = Var::from_tensor(&tensor(&vec![1.2; n], &p_shape, dtype, device))?;
        let a = tensor(&[0.5, 1.0, 2.0], &q_shape, dtype, device);
        let b = tensor(&[1.5, 2.0, 3.0], &q_shape, dtype, device);
        let qs: Vec<Box<dyn Distribution>> = vec![
            Box::new(Beta::new(&a, &b)?),
            Box::new(Exponential::new(&a)?),
            Box::new(Gamma::new(&a, &b)?),
            Box::new(Pareto::new(&a, &b)?),
            Box::new(Uniform::new(&a, &b)?),
        ];
        for pf in [Fam::Normal, Fam::Laplace, Fam::Gumbel] {
            let p = make(pf, loc.as_tensor(), scale.as_tensor())?;
            for q in &qs {
                let what = format!("{pf:?}‖{} {p_shape:?} vs {q_shape:?}", q.name());
                let kl = kl_divergence(p.as_ref(), q.as_ref())?;
                assert_eq!(kl.dims(), &[2, 3], "{what}");
                assert_eq!(kl.dtype(), dtype, "{what}");
                assert!(
                    host(&kl).iter().all(|&v| v == f64::INFINITY),
                    "{what}: {kl}"
                );
                let grads = kl.sum_all()?.backward()?;
                for var in [&loc, &scale] {
                    if let Some(g) = grads.get(var.as_tensor()) {
                        assert!(host(g).iter().all(|v| v.is_finite()), "{what}: grad {g}");
                    }
                }
            }
        }
    }
    Ok(())
}
vi_test::test_device!(infinite_pairs_are_inf_not_nan);

/// Normal‖Cauchy is in the reference's `no_closed_form` list: an error, not a number.
#[test]
fn normal_cauchy_has_no_closed_form() -> Res {
    let x = tensor(&[0.0, 1.0], &[2], DType::F64, &Device::Cpu);
    let s = tensor(&[1.0, 2.0], &[2], DType::F64, &Device::Cpu);
    let err = kl_divergence(&Normal::new(&x, &s)?, &Cauchy::new(&x, &s)?).unwrap_err();
    assert!(err.is_no_closed_form(), "{err}");
    Ok(())
}

/// Parameters of `shape`, distinct per element, positive scales (for one side).
fn params(shape: &[usize], seed: f64) -> (Vec<f64>, Vec<f64>) {
    let n: usize = shape.iter().product();
    let loc = (0..n).map(|i| seed + 0.37 * i as f64 - 0.6).collect();
    let scale = (0..n).map(|i| 0.5 + seed.abs() + 0.29 * i as f64).collect();
    (loc, scale)
}

/// For every closed pair: p's batch shape against a different q batch shape gives the
/// broadcast shape, with the same values as the KL of explicitly expanded parameters, and
/// gradients equal to the expanded ones summed over the broadcast dims.
fn broadcast_matches_expanded_params(device: &Device, dtype: DType) -> Res {
    let cases: [(&[usize], &[usize]); 3] = [(&[2, 3], &[3]), (&[2, 1], &[3]), (&[3], &[2, 3])];
    for &(pf, qf) in CLOSED {
        for (p_shape, q_shape) in cases {
            let what = format!("{pf:?}‖{qf:?} {p_shape:?} vs {q_shape:?}");
            let (pl, ps) = params(p_shape, 0.2);
            let (ql, qs) = params(q_shape, -0.4);
            let vars = [
                Var::from_tensor(&tensor(&pl, p_shape, dtype, device))?,
                Var::from_tensor(&tensor(&ps, p_shape, dtype, device))?,
                Var::from_tensor(&tensor(&ql, q_shape, dtype, device))?,
                Var::from_tensor(&tensor(&qs, q_shape, dtype, device))?,
            ];
            let p = make(pf, vars[0].as_tensor(), vars[1].as_tensor())?;
            let q = make(qf, vars[2].as_tensor(), vars[3].as_tensor())?;
            let kl = kl_divergence(p.as_ref(), q.as_ref())?;
            assert_eq!(kl.dims(), &[2, 3], "{what}");
            let grads = kl.sum_all()?.backward()?;

            let full = [2usize, 3];
            let expanded = vars
                .iter()
                .map(|v| Var::from_tensor(&v.as_tensor().broadcast_as(&full[..])?.contiguous()?))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let pe = make(pf, expanded[0].as_tensor(), expanded[1].as_tensor())?;
            let qe = make(qf, expanded[2].as_tensor(), expanded[3].as_tensor())?;
            let kle = kl_divergence(pe.as_ref(), qe.as_ref())?;
            assert_within(&host(&kl), &host(&kle), tol(dtype), &what);
            let grads_e = kle.sum_all()?.backward()?;

            for (i, (var, exp)) in vars.iter().zip(&expanded).enumerate() {
                if pf == Fam::HalfNormal && i % 2 == 0 {
                    continue; // no loc
                }
                let g = grads.get(var.as_tensor()).ok_or("no gradient")?;
                let mut ge = grads_e.get(exp.as_tensor()).ok_or("no gradient")?.clone();
                // Sum the expanded gradient back to the parameter's own shape.
                let shape = var.as_tensor().dims().to_vec();
                while ge.rank() > shape.len() {
                    ge = ge.sum(0)?;
                }
                for (d, &n) in shape.iter().enumerate() {
                    if n == 1 {
                        ge = ge.sum_keepdim(d)?;
                    }
                }
                assert_eq!(g.dims(), shape.as_slice(), "{what}: grad {i} shape");
                assert_within(&host(g), &host(&ge), 10.0 * tol(dtype), &what);
            }
        }
    }
    Ok(())
}
vi_test::test_device!(broadcast_matches_expanded_params);

/// KL(p ‖ p) = 0 for Normal‖Normal, with a zero gradient (p = q is the minimum), over a
/// wide range of parameters.
fn normal_normal_zero_at_equal(device: &Device, dtype: DType) -> Res {
    let loc = tensor(&[-1e3, -2.0, 0.0, 0.5, 7.0, 1e3], &[2, 3], dtype, device);
    let scale = tensor(&[1e-3, 0.1, 1.0, 2.5, 40.0, 1e3], &[2, 3], dtype, device);
    let vars = [&loc, &scale, &loc, &scale].map(|x| Var::from_tensor(x).unwrap());
    let p = Normal::new(vars[0].as_tensor(), vars[1].as_tensor())?;
    let q = Normal::new(vars[2].as_tensor(), vars[3].as_tensor())?;
    let kl = kl_divergence(&p, &q)?;
    assert_eq!(host(&kl), vec![0.0; 6], "{kl}");
    let grads = kl.sum_all()?.backward()?;
    for v in &vars {
        let g = host(grads.get(v.as_tensor()).ok_or("no gradient")?);
        assert!(g.iter().all(|x| x.abs() < 1e-9), "{g:?}");
    }
    Ok(())
}
vi_test::test_device!(normal_normal_zero_at_equal);

/// Every closed pair is zero at p = q where p and q are the same family.
fn same_family_zero_at_equal(device: &Device, dtype: DType) -> Res {
    let loc = tensor(&[-3.0, 0.0, 0.5, 8.0], &[4], dtype, device);
    let scale = tensor(&[0.01, 0.7, 1.0, 30.0], &[4], dtype, device);
    for &(pf, qf) in CLOSED.iter().filter(|(p, q)| p == q) {
        let p = make(pf, &loc, &scale)?;
        let kl = host(&kl_divergence(p.as_ref(), p.as_ref())?);
        assert_within(&kl, &[0.0; 4], 10.0 * tol(dtype), &format!("{pf:?}‖{qf:?}"));
    }
    Ok(())
}
vi_test::test_device!(same_family_zero_at_equal);

/// KL of two Cauchys is symmetric in p and q.
fn cauchy_cauchy_symmetric(device: &Device, dtype: DType) -> Res {
    let (pl, ps) = params(&[2, 3], 0.3);
    let (ql, qs) = params(&[3], -1.1);
    let p = Cauchy::new(
        &tensor(&pl, &[2, 3], dtype, device),
        &tensor(&ps, &[2, 3], dtype, device),
    )?;
    let q = Cauchy::new(
        &tensor(&ql, &[3], dtype, device),
        &tensor(&qs, &[3], dtype, device),
    )?;
    let pq = host(&kl_divergence(&p, &q)?);
    let qp = host(&kl_divergence(&q, &p)?);
    assert_within(&pq, &qp, tol(dtype), "Cauchy symmetry");
    assert!(pq.iter().all(|&v| v > 0.0), "{pq:?}");
    Ok(())
}
vi_test::test_device!(cauchy_cauchy_symmetric);

/// LogNormal‖LogNormal equals Normal‖Normal of the logs; HalfNormal‖HalfNormal equals
/// Normal‖Normal of the zero-mean Normals it folds.
fn transformed_pairs_match_normal(device: &Device, dtype: DType) -> Res {
    let (pl, ps) = params(&[2, 3], 0.3);
    let (ql, qs) = params(&[3], -0.9);
    let (pl, ps) = (
        tensor(&pl, &[2, 3], dtype, device),
        tensor(&ps, &[2, 3], dtype, device),
    );
    let (ql, qs) = (
        tensor(&ql, &[3], dtype, device),
        tensor(&qs, &[3], dtype, device),
    );
    let normal = host(&kl_divergence(
        &Normal::new(&pl, &ps)?,
        &Normal::new(&ql, &qs)?,
    )?);
    let lognormal = host(&kl_divergence(
        &LogNormal::new(&pl, &ps)?,
        &LogNormal::new(&ql, &qs)?,
    )?);
    assert_within(&lognormal, &normal, tol(dtype), "LogNormal");
    let (z6, z3) = (pl.zeros_like()?, ql.zeros_like()?);
    let centred = host(&kl_divergence(
        &Normal::new(&z6, &ps)?,
        &Normal::new(&z3, &qs)?,
    )?);
    let half = host(&kl_divergence(
        &HalfNormal::new(&ps)?,
        &HalfNormal::new(&qs)?,
    )?);
    assert_within(&half, &centred, tol(dtype), "HalfNormal");
    Ok(())
}
vi_test::test_device!(transformed_pairs_match_normal);

/// Scale ratios from 1e-3 to 1e3 and locations ±20 apart: finite, non-negative KLs with
/// finite gradients for every closed pair.
fn extreme_parameters_stay_finite(device: &Device, dtype: DType) -> Res {
    let pl = [-20.0, 0.0, 5.0, 20.0, 0.0, -3.0];
    let ps = [1e-3, 1e3, 0.05, 2.0, 1.0, 1e-2];
    let ql = [0.0, 0.0, -5.0, 0.0, 20.0, -3.0];
    for &(pf, qf) in CLOSED {
        let what = format!("{pf:?}‖{qf:?}");
        // Against a Gumbel q the KL grows like exp((σp/βq)²/2) (Normal p) or Γ(1 + βp/βq)
        // (Gumbel p): at a scale ratio of 1e3 it exceeds every float, so cap the ratio at 10.
        let big = if qf == Fam::Gumbel { 1e2 } else { 1.0 };
        let qs = [1.0, big, 30.0, 50.0, 1e2, 1e-3];
        let vars = [&pl, &ps, &ql, &qs]
            .map(|v| Var::from_tensor(&tensor(v, &[6], dtype, device)).unwrap());
        let p = make(pf, vars[0].as_tensor(), vars[1].as_tensor())?;
        let q = make(qf, vars[2].as_tensor(), vars[3].as_tensor())?;
        let kl = kl_divergence(p.as_ref(), q.as_ref())?;
        let v = host(&kl);
        assert!(
            v.iter().all(|x| x.is_finite() && *x >= -1e-6),
            "{what}: {v:?}"
        );
        let grads = kl.sum_all()?.backward()?;
        for var in &vars {
            if let Some(g) = grads.get(var.as_tensor()) {
                let g = host(g);
                assert!(g.iter().all(|x| x.is_finite()), "{what}: grad {g:?}");
            }
        }
    }
    Ok(())
}
vi_test::test_device!(extreme_parameters_stay_finite);

/// Laplace‖Laplace at equal locations: the kink of |μp − μq| has a zero derivative of the
/// KL, so the location gradients are exactly 0 (not ±1/bq).
#[test]
fn laplace_laplace_equal_locations_gradient_is_zero() -> Res {
    let dev = Device::Cpu;
    let loc_p = Var::new(&[0.5f64, -1.0], &dev)?;
    let loc_q = Var::new(&[0.5f64, -1.0], &dev)?;
    let p = Laplace::new(loc_p.as_tensor(), &Tensor::new(&[1.0f64, 0.3], &dev)?)?;
    let q = Laplace::new(loc_q.as_tensor(), &Tensor::new(&[2.0f64, 0.7], &dev)?)?;
    let grads = kl_divergence(&p, &q)?.sum_all()?.backward()?;
    for v in [&loc_p, &loc_q] {
        let g = host(grads.get(v.as_tensor()).ok_or("no gradient")?);
        assert_eq!(g, vec![0.0, 0.0]);
    }
    Ok(())
}

/// The autograd gradient of `Σ KL` w.r.t. (p.loc, p.scale, q.loc, q.scale), batch 3,
/// against central finite differences in f64.
fn check_gradient(pf: Fam, qf: Fam, x: &[f64; 12]) -> Res {
    let dev = Device::Cpu;
    let kl_sum = |x: &[f64]| -> f64 {
        let ts: Vec<Tensor> = x.chunks(3).map(|c| Tensor::new(c, &dev).unwrap()).collect();
        let p = make(pf, &ts[0], &ts[1]).unwrap();
        let q = make(qf, &ts[2], &ts[3]).unwrap();
        let kl = kl_divergence(p.as_ref(), q.as_ref()).unwrap();
        kl.sum_all().unwrap().to_scalar::<f64>().unwrap()
    };
    let numeric = vi_test::finite_difference(x, 1e-6, kl_sum);
    let vars = x
        .chunks(3)
        .map(|c| Var::new(c, &dev))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let p = make(pf, vars[0].as_tensor(), vars[1].as_tensor())?;
    let q = make(qf, vars[2].as_tensor(), vars[3].as_tensor())?;
    let grads = kl_divergence(p.as_ref(), q.as_ref())?
        .sum_all()?
        .backward()?;
    let mut analytic = Vec::new();
    for v in &vars {
        match grads.get(v.as_tensor()) {
            Some(g) => analytic.extend(host(g)),
            None => analytic.extend([0.0; 3]), // HalfNormal's unused loc
        }
    }
    for (i, (a, n)) in analytic.iter().zip(&numeric).enumerate() {
        assert!(
            (a - n).abs() <= 1e-6 * (1.0 + n.abs()),
            "{pf:?}‖{qf:?} d/dx[{i}]: autograd {a}, finite difference {n}"
        );
    }
    Ok(())
}

const X: [f64; 12] = [
    0.3, -1.2, 2.0, // p.loc
    0.8, 1.7, 0.4, // p.scale
    -0.5, 0.9, 1.1, // q.loc
    1.3, 0.6, 2.2, // q.scale
];

#[test]
fn normal_normal_gradient_matches_finite_difference() -> Res {
    check_gradient(Fam::Normal, Fam::Normal, &X)
}

#[test]
fn gumbel_gumbel_gradient_matches_finite_difference() -> Res {
    check_gradient(Fam::Gumbel, Fam::Gumbel, &X)
}

#[test]
fn laplace_laplace_gradient_matches_finite_difference() -> Res {
    check_gradient(Fam::Laplace, Fam::Laplace, &X)
}

#[test]
fn every_closed_pair_gradient_matches_finite_difference() -> Res {
    for &(pf, qf) in CLOSED {
        check_gradient(pf, qf, &X)?;
    }
    Ok(())
}

/// A few values worked out by hand (f64): Cauchy‖Cauchy with equal scales, Laplace‖Laplace
/// with equal locations, Normal‖Laplace with equal locations.
#[test]
fn hand_computed_values() -> Res {
    let dev = Device::Cpu;
    let s = |v: f64| Tensor::new(&[v], &dev);
    // Cauchy(0, 1) ‖ Cauchy(2, 1): ln((4 + 4) / 4) = ln 2.
    let kl = kl_divergence(
        &Cauchy::new(&s(0.0)?, &s(1.0)?)?,
        &Cauchy::new(&s(2.0)?, &s(1.0)?)?,
    )?;
    assert_within(&host(&kl), &[2f64.ln()], 1e-15, "Cauchy");
    // Laplace(0, 1) ‖ Laplace(0, 2): ln 2 − 1 + 1/2.
    let kl = kl_divergence(
        &Laplace::new(&s(0.0)?, &s(1.0)?)?,
        &Laplace::new(&s(0.0)?, &s(2.0)?)?,
    )?;
    assert_within(&host(&kl), &[2f64.ln() - 0.5], 1e-15, "Laplace");
    // N(0, 1) ‖ Laplace(0, 1): ½ ln(2/π) − ½ + √(2/π).
    let c = 2.0 / std::f64::consts::PI;
    let kl = kl_divergence(
        &Normal::new(&s(0.0)?, &s(1.0)?)?,
        &Laplace::new(&s(0.0)?, &s(1.0)?)?,
    )?;
    assert_within(
        &host(&kl),
        &[0.5 * c.ln() - 0.5 + c.sqrt()],
        1e-15,
        "Normal‖Laplace",
    );
    Ok(())
}

/// Batch dims with an event dim: `Independent` of these pairs sums the closed form.
fn independent_sums_the_closed_form(device: &Device, dtype: DType) -> Res {
    let (pl, ps) = params(&[2, 3], 0.1);
    let (ql, qs) = params(&[2, 3], -0.3);
    for &(pf, qf) in CLOSED {
        let p = make(
            pf,
            &tensor(&pl, &[2, 3], dtype, device),
            &tensor(&ps, &[2, 3], dtype, device),
        )?;
        let q = make(
            qf,
            &tensor(&ql, &[2, 3], dtype, device),
            &tensor(&qs, &[2, 3], dtype, device),
        )?;
        let per = kl_divergence(p.as_ref(), q.as_ref())?.sum(D::Minus1)?;
        let summed = kl_divergence(&p.to_event(1)?, &q.to_event(1)?)?;
        assert_eq!(summed.dims(), &[2]);
        assert_within(
            &host(&summed),
            &host(&per),
            10.0 * tol(dtype),
            &format!("{pf:?}‖{qf:?}"),
        );
    }
    Ok(())
}
vi_test::test_device!(independent_sums_the_closed_form);
