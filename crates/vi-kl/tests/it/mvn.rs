//! Multivariate normal pairs: MVN, LowRankMVN and `Independent(Normal, 1)`, both directions.

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_dist::{
    Delta, Distribution, Expanded, Independent, Laplace, LowRankMultivariateNormal,
    MultivariateNormal, Normal, ops,
};
use vi_kl::{KlError, kl_divergence};

use crate::common::{Res, host};

/// Standard normal draws of `shape`, seeded.
fn randn(shape: &[usize], seed: u64, dtype: DType, dev: &Device) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    vi_dist::standard_normal(shape, dtype, dev, &mut rng).unwrap()
}

/// Positive values `exp(0.3 z)`, seeded.
fn positive(shape: &[usize], seed: u64, dtype: DType, dev: &Device) -> Tensor {
    (randn(shape, seed, dtype, dev) * 0.3)
        .unwrap()
        .exp()
        .unwrap()
}

/// Well-conditioned lower Cholesky factors `batch + [n, n]`, seeded.
fn tril(batch: &[usize], n: usize, seed: u64, dtype: DType, dev: &Device) -> Tensor {
    let shape: Vec<usize> = batch.iter().copied().chain([n, n]).collect();
    let off = (ops::tril(&randn(&shape, seed, dtype, dev)).unwrap() * 0.4).unwrap();
    let off = off
        .broadcast_mul(&(1.0 - Tensor::eye(n, dtype, dev).unwrap()).unwrap())
        .unwrap();
    let mut diag_shape = batch.to_vec();
    diag_shape.push(n);
    let diag =
        ops::diag_embed(&(positive(&diag_shape, seed + 1, dtype, dev) + 0.3).unwrap()).unwrap();
    (off + diag).unwrap()
}

fn var(t: &Tensor) -> Var {
    Var::from_tensor(t).unwrap()
}

/// Asserts `|a − b| ≤ tol · max(1, |b|)` elementwise (same shapes).
fn assert_close(what: &str, a: &Tensor, b: &Tensor, tol: f64) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    for (i, (x, y)) in host(a).iter().zip(host(b)).enumerate() {
        assert!(
            (x - y).abs() <= tol * y.abs().max(1.0),
            "{what}[{i}]: {x} vs {y} (tol {tol})"
        );
    }
}

fn tol(dtype: DType) -> f64 {
    if dtype == DType::F64 { 1e-10 } else { 2e-4 }
}

/// The gradients of `kl.sum()` w.r.t. `vars`.
fn grads(kl: &Tensor, vars: &[&Var]) -> Vec<Tensor> {
    let g = kl.sum_all().unwrap().backward().unwrap();
    vars.iter()
        .map(|v| {
            g.get(v.as_tensor())
                .cloned()
                .unwrap_or_else(|| v.as_tensor().zeros_like().unwrap())
        })
        .collect()
}

/// The seed question: a mean-field guide `Normal(loc, scale).to_event(1)` (batch [4]) against
/// an MVN prior (batch []), d = 5, equals the guide written as a diagonal MVN, values and
/// gradients, in both directions.
#[test]
fn seed_question() -> Res {
    let (dev, dt, n) = (Device::Cpu, DType::F64, 5);
    let loc = var(&randn(&[4, n], 1, dt, &dev));
    let scale = var(&positive(&[4, n], 2, dt, &dev));
    let q_loc = var(&randn(&[n], 3, dt, &dev));
    let l = tril(&[], n, 4, dt, &dev);
    let q_cov = var(&ops::batch_matmul(&l, &l.t()?)?);
    let q_tril = var(&l);
    let guide = Normal::new(&loc, &scale)?.to_event(1)?;
    let diag = MultivariateNormal::from_diag_scale(&loc, &scale)?;
    // A prior given by its covariance: the full gradients must agree.
    let prior = MultivariateNormal::from_covariance(&q_loc, &q_cov)?;
    let params = [&loc, &scale, &q_loc, &q_cov];
    for (a, b) in [
        (
            kl_divergence(&guide, &prior)?,
            kl_divergence(&diag, &prior)?,
        ),
        (
            kl_divergence(&prior, &guide)?,
            kl_divergence(&prior, &diag)?,
        ),
    ] {
        assert_eq!(a.dims(), &[4]);
        assert_close("kl", &a, &b, 1e-10);
        for (i, (ga, gb)) in grads(&a, &params)
            .iter()
            .zip(grads(&b, &params))
            .enumerate()
        {
            assert_close(&format!("grad {i}"), ga, &gb, 1e-10);
        }
    }
    // A prior given by its Cholesky factor: the gradients agree on the factor's lower
    // triangle (its upper triangle gets torch's per-pair convention, see pairs/mvn.rs).
    let prior = MultivariateNormal::from_scale_tril(&q_loc, &q_tril)?;
    let lower = ops::tril(&Tensor::ones((n, n), dt, &dev)?)?;
    let params = [&loc, &scale, &q_loc, &q_tril];
    for (a, b) in [
        (
            kl_divergence(&guide, &prior)?,
            kl_divergence(&diag, &prior)?,
        ),
        (
            kl_divergence(&prior, &guide)?,
            kl_divergence(&prior, &diag)?,
        ),
    ] {
        assert_close("kl", &a, &b, 1e-10);
        let (ga, gb) = (grads(&a, &params), grads(&b, &params));
        for i in 0..3 {
            assert_close(&format!("grad {i}"), &ga[i], &gb[i], 1e-10);
        }
        assert_close(
            "grad scale_tril (lower)",
            &ga[3].broadcast_mul(&lower)?,
            &gb[3].broadcast_mul(&lower)?,
            1e-10,
        );
    }
    Ok(())
}

/// The same distribution built by each constructor (`from_scale_tril`, `from_covariance`,
/// `from_precision`, and `from_diag_scale` for a diagonal one).
fn constructors(loc: &Tensor, l: &Tensor, diag: Option<&Tensor>) -> Vec<MultivariateNormal> {
    let base = MultivariateNormal::from_scale_tril(loc, l).unwrap();
    let mut v = vec![
        MultivariateNormal::from_covariance(loc, &base.covariance().unwrap()).unwrap(),
        MultivariateNormal::from_precision(loc, &base.precision().unwrap()).unwrap(),
    ];
    if let Some(s) = diag {
        v.push(MultivariateNormal::from_diag_scale(loc, s).unwrap());
    }
    v.insert(0, base);
    v
}

/// KL(p‖q) does not depend on which constructor built either side, and KL(p‖p) = 0; batch
/// shapes [2, 1] and [3] broadcast to [2, 3].
fn mvn_constructors_agree(dev: &Device, dt: DType) -> Res {
    let n = 4;
    let (lp, lq) = (tril(&[2, 1], n, 10, dt, dev), tril(&[3], n, 20, dt, dev));
    let (mp, mq) = (randn(&[2, 1, n], 30, dt, dev), randn(&[3, n], 40, dt, dev));
    let (ps, qs) = (constructors(&mp, &lp, None), constructors(&mq, &lq, None));
    let reference = kl_divergence(&ps[0], &qs[0])?;
    assert_eq!(reference.dims(), &[2, 3]);
    assert!(host(&reference).iter().all(|v| v.is_finite() && *v > 0.0));
    for p in &ps {
        for q in &qs {
            assert_close("kl", &kl_divergence(p, q)?, &reference, tol(dt));
        }
        let zero = kl_divergence(p, p)?;
        assert_close("kl(p‖p)", &zero, &zero.zeros_like()?, tol(dt));
    }
    // Diagonal distributions, all four constructors.
    let (sp, sq) = (
        positive(&[2, 1, n], 50, dt, dev),
        positive(&[3, n], 60, dt, dev),
    );
    let (dp, dq) = (ops::diag_embed(&sp)?, ops::diag_embed(&sq)?);
    let (ps, qs) = (
        constructors(&mp, &dp, Some(&sp)),
        constructors(&mq, &dq, Some(&sq)),
    );
    assert_eq!(ps.len(), 4);
    let reference = kl_divergence(&ps[0], &qs[0])?;
    for p in &ps {
        for q in &qs {
            assert_close("kl diag", &kl_divergence(p, q)?, &reference, tol(dt));
        }
        let zero = kl_divergence(p, p)?;
        assert_close("kl(p‖p) diag", &zero, &zero.zeros_like()?, tol(dt));
    }
    Ok(())
}
vi_test::test_device!(mvn_constructors_agree);

/// The textbook formula on the host for one pair of 2-d MVNs (a value not computed by the
/// code under test).
#[test]
fn mvn_mvn_by_hand() -> Res {
    let dev = Device::Cpu;
    let p = MultivariateNormal::from_covariance(
        &Tensor::new(&[1.0f64, -1.0], &dev)?,
        &Tensor::new(&[[2.0f64, 0.5], [0.5, 1.0]], &dev)?,
    )?;
    let q = MultivariateNormal::from_covariance(
        &Tensor::new(&[0.0f64, 0.5], &dev)?,
        &Tensor::new(&[[1.0f64, -0.3], [-0.3, 3.0]], &dev)?,
    )?;
    // Σq⁻¹ = [[3, 0.3], [0.3, 1]] / 2.91
    let det_q = 3.0 - 0.09;
    let inv = [[3.0 / det_q, 0.3 / det_q], [0.3 / det_q, 1.0 / det_q]];
    let trace = inv[0][0] * 2.0 + 2.0 * inv[0][1] * 0.5 + inv[1][1] * 1.0;
    let d = [-1.0, 1.5];
    let maha = inv[0][0] * d[0] * d[0] + 2.0 * inv[0][1] * d[0] * d[1] + inv[1][1] * d[1] * d[1];
    let expected = 0.5 * (trace + maha - 2.0 + (det_q / 1.75f64).ln());
    let kl = kl_divergence(&p, &q)?.to_scalar::<f64>()?;
    assert!((kl - expected).abs() < 1e-12, "{kl} vs {expected}");
    Ok(())
}

/// A low-rank MVN as the dense MVN with covariance `W Wᵀ + diag(D)`.
fn dense(d: &LowRankMultivariateNormal) -> MultivariateNormal {
    MultivariateNormal::from_covariance(d.loc(), &d.covariance().unwrap()).unwrap()
}

/// Every pair with a low-rank side equals the same pair with that side dense, values and
/// gradients w.r.t. `loc`, `W` and `D` (the dense path differentiates through `W Wᵀ + D`).
fn lowrank_matches_dense(dev: &Device, dt: DType) -> Res {
    let (n, r) = (5, 2);
    let lr = |batch: &[usize], seed: u64| {
        let shape = |tail: &[usize]| -> Vec<usize> { batch.iter().chain(tail).copied().collect() };
        (
            var(&randn(&shape(&[n]), seed, dt, dev)),
            var(&(randn(&shape(&[n, r]), seed + 1, dt, dev) * 0.7).unwrap()),
            var(&positive(&shape(&[n]), seed + 2, dt, dev)),
        )
    };
    let (pl, pw, pd) = lr(&[2, 1], 100);
    let (ql, qw, qd) = lr(&[3], 200);
    let p = LowRankMultivariateNormal::new(&pl, &pw, &pd)?;
    let q = LowRankMultivariateNormal::new(&ql, &qw, &qd)?;
    let lp = var(&tril(&[2, 1], n, 300, dt, dev));
    let lq = var(&tril(&[3], n, 400, dt, dev));
    let mp = MultivariateNormal::from_scale_tril(&pl, &lp)?;
    let mq = MultivariateNormal::from_scale_tril(&ql, &lq)?;
    let sp = var(&positive(&[2, 1, n], 500, dt, dev));
    let sq = var(&positive(&[3, n], 600, dt, dev));
    let np = Normal::new(&pl, &sp)?.to_event(1)?;
    let nq = Normal::new(&ql, &sq)?.to_event(1)?;
    let (dp, dq) = (dense(&p), dense(&q));
    let vars = [&pl, &pw, &pd, &ql, &qw, &qd, &lp, &lq, &sp, &sq];
    // (p, q) with a low-rank side, and the same pair with that side dense.
    type Pair<'a> = [&'a dyn Distribution; 4];
    let pairs: Vec<Pair> = vec![
        [&p, &q, &dp, &dq],
        [&p, &mq, &dp, &mq],
        [&mp, &q, &mp, &dq],
        [&np, &q, &np, &dq],
        [&p, &nq, &dp, &nq],
    ];
    for (i, [a_p, a_q, b_p, b_q]) in pairs.into_iter().enumerate() {
        let a = kl_divergence(a_p, a_q)?;
        let b = kl_divergence(b_p, b_q)?;
        assert_eq!(a.dims(), &[2, 3]);
        assert_close(&format!("pair {i} kl"), &a, &b, tol(dt));
        // The scale_tril gradients differ in the (zero) upper triangle by convention:
        // compare the lower triangle.
        let lower = ops::tril(&Tensor::ones((n, n), dt, dev)?)?;
        for (j, (ga, gb)) in grads(&a, &vars).iter().zip(grads(&b, &vars)).enumerate() {
            let (ga, gb) = if j == 6 || j == 7 {
                (ga.broadcast_mul(&lower)?, gb.broadcast_mul(&lower)?)
            } else {
                (ga.clone(), gb)
            };
            assert_close(&format!("pair {i} grad {j}"), &ga, &gb, 10.0 * tol(dt));
        }
    }
    Ok(())
}
vi_test::test_device!(lowrank_matches_dense);

/// A batched `p` against an unbatched `q` (the folded path) equals the same `q` expanded to
/// `p`'s batch (the broadcast path), for every rule with a matrix solve or product on `q`.
fn unbatched_q_matches_expanded(dev: &Device, dt: DType) -> Res {
    let (n, r) = (4, 2);
    let lp = tril(&[3, 2], n, 1, dt, dev);
    let mp = randn(&[3, 2, n], 2, dt, dev);
    let p = MultivariateNormal::from_scale_tril(&mp, &lp)?;
    let pn = Normal::new(&mp, &positive(&[3, 2, n], 3, dt, dev))?.to_event(1)?;
    let plr = LowRankMultivariateNormal::new(
        &mp,
        &randn(&[3, 2, n, r], 4, dt, dev),
        &positive(&[3, 2, n], 5, dt, dev),
    )?;
    let q =
        MultivariateNormal::from_scale_tril(&randn(&[n], 6, dt, dev), &tril(&[], n, 7, dt, dev))?;
    let qlr = LowRankMultivariateNormal::new(
        &randn(&[n], 8, dt, dev),
        &randn(&[n, r], 9, dt, dev),
        &positive(&[n], 10, dt, dev),
    )?;
    let (qe, qlre) = (q.expand(&[3, 2])?, qlr.expand(&[3, 2])?);
    let ps: [&dyn Distribution; 3] = [&p, &pn, &plr];
    for p in ps {
        for (q, qe) in [
            (&q as &dyn Distribution, qe.as_ref()),
            (&qlr, qlre.as_ref()),
        ] {
            let (a, b) = (kl_divergence(p, q)?, kl_divergence(p, qe)?);
            assert_eq!(a.dims(), &[3, 2]);
            assert_close(
                &format!("{} ‖ {}", vi_kl::describe(p), q.name()),
                &a,
                &b,
                tol(dt),
            );
        }
    }
    Ok(())
}
vi_test::test_device!(unbatched_q_matches_expanded);

/// Gradients of MVN‖MVN w.r.t. lower `scale_tril` entries of both sides (and of the
/// precision path of `Independent(Normal, 1) ‖ MVN`) against central finite differences.
#[test]
fn mvn_finite_difference() -> Res {
    let (dev, dt, n) = (Device::Cpu, DType::F64, 3);
    let lp = tril(&[], n, 1, dt, &dev);
    let lq = tril(&[], n, 2, dt, &dev);
    let (mp, mq) = (randn(&[n], 3, dt, &dev), randn(&[n], 4, dt, &dev));
    let scale = positive(&[n], 5, dt, &dev);
    let lower: Vec<usize> = (0..n)
        .flat_map(|i| (0..=i).map(move |j| i * n + j))
        .collect();
    // KL as a function of the lower entries of one factor.
    let kl_of = |which: usize, x: &[f64]| -> f64 {
        let mut full = vec![0.0; n * n];
        for (&k, &v) in lower.iter().zip(x) {
            full[k] = v;
        }
        let l = Tensor::from_vec(full, (n, n), &dev).unwrap();
        let (a, b) = if which == 0 { (&l, &lq) } else { (&lp, &l) };
        let p = MultivariateNormal::from_scale_tril(&mp, a).unwrap();
        let q = MultivariateNormal::from_scale_tril(&mq, b).unwrap();
        let kl = if which == 2 {
            let pn = Normal::new(&mp, &scale).unwrap().to_event(1).unwrap();
            kl_divergence(&pn, &q)
        } else {
            kl_divergence(&p, &q)
        };
        kl.unwrap().to_scalar::<f64>().unwrap()
    };
    for which in 0..3 {
        let start = if which == 0 { &lp } else { &lq };
        let v = var(start);
        let (a, b) = if which == 0 {
            (v.as_tensor(), &lq)
        } else {
            (&lp, v.as_tensor())
        };
        let p = MultivariateNormal::from_scale_tril(&mp, a)?;
        let q = MultivariateNormal::from_scale_tril(&mq, b)?;
        let kl = if which == 2 {
            kl_divergence(&Normal::new(&mp, &scale)?.to_event(1)?, &q)?
        } else {
            kl_divergence(&p, &q)?
        };
        let g = host(&grads(&kl, &[&v])[0]);
        let x0: Vec<f64> = lower.iter().map(|&k| host(start)[k]).collect();
        let fd = vi_test::finite_difference(&x0, 1e-6, |x| kl_of(which, x));
        for (&k, fd) in lower.iter().zip(fd) {
            assert!(
                (g[k] - fd).abs() < 1e-6 * fd.abs().max(1.0),
                "case {which}, entry {k}: autograd {} vs finite difference {fd}",
                g[k]
            );
        }
    }
    Ok(())
}

/// `Independent(Delta, 1) ‖ MVN` is a point mass: `log_density − MVN.log_prob(v)`; the
/// diagonal rules defer to the wrapper rules for it.
fn point_mass_mvn(dev: &Device, dt: DType) -> Res {
    let n = 3;
    let v = randn(&[4, n], 1, dt, dev);
    let log_density = randn(&[4, n], 2, dt, dev);
    let p = Delta::new(&v, Some(&log_density), 0)?.to_event(1)?;
    let q =
        MultivariateNormal::from_scale_tril(&randn(&[n], 3, dt, dev), &tril(&[], n, 4, dt, dev))?;
    let kl = kl_divergence(&p, &q)?;
    let expected = log_density.sum(1)?.sub(&q.log_prob(&v)?)?;
    assert_close("Delta ‖ MVN", &kl, &expected, tol(dt));
    let qlr = LowRankMultivariateNormal::new(
        &randn(&[n], 5, dt, dev),
        &randn(&[n, 1], 6, dt, dev),
        &positive(&[n], 7, dt, dev),
    )?;
    let expected = log_density.sum(1)?.sub(&qlr.log_prob(&v)?)?;
    assert_close(
        "Delta ‖ LowRankMVN",
        &kl_divergence(&p, &qlr)?,
        &expected,
        tol(dt),
    );
    Ok(())
}
vi_test::test_device!(point_mass_mvn);

/// `Independent(Expanded(Normal), 1)` is a diagonal normal too; an Independent of another
/// family has no closed form against an MVN, in either direction.
fn other_independents(dev: &Device, dt: DType) -> Res {
    let n = 3;
    let q =
        MultivariateNormal::from_scale_tril(&randn(&[n], 1, dt, dev), &tril(&[], n, 2, dt, dev))?;
    let base = Normal::new(&randn(&[n], 3, dt, dev), &positive(&[n], 4, dt, dev))?;
    let expanded = Independent::new(Box::new(Expanded::new(Box::new(base.clone()), &[2, n])?), 1)?;
    let plain = Normal::new(
        &base.loc().broadcast_as((2, n))?,
        &base.scale().broadcast_as((2, n))?,
    )?
    .to_event(1)?;
    assert_close(
        "Expanded ‖ MVN",
        &kl_divergence(&expanded, &q)?,
        &kl_divergence(&plain, &q)?,
        tol(dt),
    );
    assert_close(
        "MVN ‖ Expanded",
        &kl_divergence(&q, &expanded)?,
        &kl_divergence(&q, &plain)?,
        tol(dt),
    );
    let laplace =
        Laplace::new(&randn(&[n], 5, dt, dev), &positive(&[n], 6, dt, dev))?.to_event(1)?;
    for err in [kl_divergence(&laplace, &q), kl_divergence(&q, &laplace)] {
        assert!(matches!(err, Err(KlError::NoClosedForm { .. })), "{err:?}");
    }
    Ok(())
}
vi_test::test_device!(other_independents);

/// Far-apart, badly scaled sides give large finite KLs with finite gradients, in f32 too.
fn extreme_parameters(dev: &Device, dt: DType) -> Res {
    let n = 4;
    let loc = var(&(randn(&[n], 1, dt, dev) * 100.0)?);
    let scale = var(&(positive(&[n], 2, dt, dev) * 1e-3)?);
    let l = var(&(tril(&[], n, 3, dt, dev) * 30.0)?);
    let q_loc = randn(&[n], 4, dt, dev);
    let guide = Normal::new(&loc, &scale)?.to_event(1)?;
    let prior = MultivariateNormal::from_scale_tril(&q_loc, &l)?;
    for kl in [
        kl_divergence(&guide, &prior)?,
        kl_divergence(&prior, &guide)?,
    ] {
        let value = kl.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        assert!(value.is_finite() && value > 0.0, "{value}");
        for g in grads(&kl, &[&loc, &scale, &l]) {
            assert!(host(&g).iter().all(|v| v.is_finite()));
        }
    }
    Ok(())
}
vi_test::test_device!(extreme_parameters);
