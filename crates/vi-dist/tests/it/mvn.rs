//! MultivariateNormal and LowRankMultivariateNormal: the constructors agree, the special
//! cases equal the families they generalise, the samplers have the right mean and
//! covariance, broadcasting and expand, and typed errors for bad matrices and shapes.

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vi_dist::{
    DistError, Distribution, LowRankMultivariateNormal, MultivariateNormal, Normal, ops,
    with_validation,
};
use vi_test::stats::check_moments;

use crate::linalg::spd;

use crate::common::{Res, close_tensors, host};

fn uniform(rng: &mut ChaCha8Rng, shape: &[usize], lo: f64, hi: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// loc `[2, 3]`, an SPD covariance `[2, 3, 3]`, and values `[5, 2, 3]`.
fn setup() -> (Tensor, Tensor, Tensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let loc = uniform(&mut rng, &[2, 3], -1.0, 1.0);
    let cov = Tensor::from_vec(spd(&[2], 3, 12), (2, 3, 3), &Device::Cpu).unwrap();
    let x = uniform(&mut rng, &[5, 2, 3], -3.0, 3.0);
    (loc, cov, x)
}

#[test]
fn constructors_agree() -> Res {
    let (loc, cov, x) = setup();
    let l = ops::cholesky(&cov)?;
    let eye = Tensor::eye(3, DType::F64, &Device::Cpu)?.broadcast_as((2, 3, 3))?;
    let prec = ops::cholesky_solve(&l, &eye)?;
    let prec = ((&prec + prec.t()?)? * 0.5)?;
    let by_cov = MultivariateNormal::from_covariance(&loc, &cov)?;
    let by_tril = MultivariateNormal::from_scale_tril(&loc, &l)?;
    let by_prec = MultivariateNormal::from_precision(&loc, &prec)?;
    for d in [&by_tril, &by_prec] {
        close_tensors(&d.log_prob(&x)?, &by_cov.log_prob(&x)?, 1e-10)?;
        close_tensors(&d.entropy()?, &by_cov.entropy()?, 1e-10)?;
        close_tensors(&d.variance()?, &by_cov.variance()?, 1e-10)?;
        close_tensors(&d.scale_tril().clone(), by_cov.scale_tril(), 1e-10)?;
        close_tensors(&d.covariance()?, &cov, 1e-10)?;
        close_tensors(&d.precision()?, &prec, 1e-10)?;
    }
    assert_eq!(by_cov.log_prob(&x)?.dims(), &[5, 2]);
    // A diagonal covariance: the fourth constructor.
    let scale = Tensor::new(&[[0.5f64, 1.0, 2.0], [1.5, 0.7, 0.2]], &Device::Cpu)?;
    let var = ops::diag_embed(&scale.sqr()?)?;
    let by_diag = MultivariateNormal::from_diag_scale(&loc, &scale)?;
    for d in [
        MultivariateNormal::from_covariance(&loc, &var)?,
        MultivariateNormal::from_scale_tril(&loc, &ops::diag_embed(&scale)?)?,
        MultivariateNormal::from_precision(&loc, &ops::diag_embed(&scale.sqr()?.recip()?)?)?,
    ] {
        close_tensors(&d.log_prob(&x)?, &by_diag.log_prob(&x)?, 1e-10)?;
        close_tensors(&d.entropy()?, &by_diag.entropy()?, 1e-10)?;
        close_tensors(&d.covariance()?, &by_diag.covariance()?, 1e-10)?;
        close_tensors(&d.precision()?, &by_diag.precision()?, 1e-10)?;
    }
    Ok(())
}

/// `from_diag_scale` is `Normal(loc, scale).to_event(1)`, gradients included.
#[test]
fn diag_scale_equals_independent_normal() -> Res {
    let (loc, _, x) = setup();
    let scale = Var::from_tensor(&Tensor::new(
        &[[0.5f64, 1.0, 2.0], [1.5, 0.7, 0.2]],
        &Device::Cpu,
    )?)?;
    let mvn = MultivariateNormal::from_diag_scale(&loc, scale.as_tensor())?;
    let ind = Normal::new(&loc, scale.as_tensor())?.to_event(1)?;
    assert_eq!(
        (mvn.batch_shape(), mvn.event_shape()),
        (ind.batch_shape(), ind.event_shape())
    );
    let (a, b) = (mvn.log_prob(&x)?, ind.log_prob(&x)?);
    close_tensors(&a, &b, 1e-10)?;
    close_tensors(&mvn.entropy()?, &ind.entropy()?, 1e-10)?;
    close_tensors(&mvn.variance()?, &ind.variance()?, 1e-10)?;
    let ga = a.sum_all()?.backward()?;
    let gb = b.sum_all()?.backward()?;
    close_tensors(
        ga.get(scale.as_tensor()).ok_or("no grad")?,
        gb.get(scale.as_tensor()).ok_or("no grad")?,
        1e-10,
    )?;
    Ok(())
}

/// LowRankMVN(loc, W, D) equals MVN(loc, W Wᵀ + diag D) in value and in gradient w.r.t.
/// W and D.
#[test]
fn low_rank_equals_full_covariance() -> Res {
    let (loc, _, x) = setup();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    for rank in [1, 2, 4] {
        let w = Var::from_tensor(&uniform(&mut rng, &[2, 3, rank], -1.0, 1.0))?;
        let d = Var::from_tensor(&uniform(&mut rng, &[2, 3], 0.2, 2.0))?;
        let low = LowRankMultivariateNormal::new(&loc, w.as_tensor(), d.as_tensor())?;
        let wt = w.as_tensor();
        let cov = (wt.matmul(&wt.t()?)? + ops::diag_embed(d.as_tensor())?)?;
        let full = MultivariateNormal::from_covariance(&loc, &cov)?;
        close_tensors(&low.covariance()?, &cov, 1e-12)?;
        close_tensors(&low.scale_tril()?, full.scale_tril(), 1e-10)?;
        let (a, b) = (low.log_prob(&x)?, full.log_prob(&x)?);
        close_tensors(&a, &b, 1e-10)?;
        close_tensors(&low.entropy()?, &full.entropy()?, 1e-10)?;
        close_tensors(&low.variance()?, &full.variance()?, 1e-10)?;
        let ga = a.sum_all()?.backward()?;
        let gb = b.sum_all()?.backward()?;
        for v in [&w, &d] {
            let (p, q) = (ga.get(v.as_tensor()), gb.get(v.as_tensor()));
            close_tensors(p.ok_or("no grad")?, q.ok_or("no grad")?, 1e-9)?;
        }
    }
    Ok(())
}

/// Batch dims of loc and matrix broadcast; value batch dims broadcast against the batch;
/// `expand` keeps the distribution.
#[test]
fn broadcasting_and_expand() -> Res {
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let loc = uniform(&mut rng, &[4, 1, 3], -1.0, 1.0);
    let cov = Tensor::from_vec(spd(&[3], 3, 15), (3, 3, 3), &Device::Cpu)?;
    let d = MultivariateNormal::from_covariance(&loc, &cov)?;
    assert_eq!((d.batch_shape(), d.event_shape()), (&[4, 3][..], &[3][..]));
    assert_eq!(d.scale_tril().dims(), &[4, 3, 3, 3]);
    // A value with batch [2, 1, 1] broadcast against [4, 3]: log_prob [2, 4, 3].
    let x = uniform(&mut rng, &[2, 1, 1, 3], -2.0, 2.0);
    let lp = d.log_prob(&x)?;
    assert_eq!(lp.dims(), &[2, 4, 3]);
    // Element by element against a distribution with no batch.
    let lpv = host(&lp);
    for s in 0..2 {
        for i in 0..4 {
            for j in 0..3 {
                let one = MultivariateNormal::from_covariance(&loc.get(i)?.get(0)?, &cov.get(j)?)?;
                let want = one
                    .log_prob(&x.get(s)?.get(0)?.get(0)?)?
                    .to_scalar::<f64>()?;
                let got = lpv[(s * 4 + i) * 3 + j];
                assert!(
                    (got - want).abs() < 1e-12,
                    "[{s}, {i}, {j}]: {got} vs {want}"
                );
            }
        }
    }
    let e = d.expand(&[5, 4, 3])?;
    assert_eq!(e.batch_shape(), &[5, 4, 3]);
    close_tensors(
        &e.log_prob(&x.get(0)?)?.get(4)?,
        &d.log_prob(&x.get(0)?)?,
        1e-12,
    )?;
    let low = LowRankMultivariateNormal::new(
        &loc,
        &uniform(&mut rng, &[3, 3, 2], -1.0, 1.0),
        &uniform(&mut rng, &[3], 0.5, 1.0),
    )?;
    assert_eq!(low.batch_shape(), &[4, 3]);
    assert_eq!(low.log_prob(&x)?.dims(), &[2, 4, 3]);
    let le = low.expand(&[2, 4, 3])?;
    close_tensors(
        &le.log_prob(&x.get(1)?)?.get(1)?,
        &low.log_prob(&x.get(1)?)?,
        1e-12,
    )?;
    close_tensors(&le.entropy()?.get(1)?, &low.entropy()?, 1e-12)?;
    Ok(())
}

/// Sample mean and covariance along directions `eᵢ` and `eᵢ + eⱼ`: every entry of Σ.
fn check_mean_cov(samples: &Tensor, mean: &[f64], cov: &[f64], n: usize) -> Result<(), String> {
    let xs = host(samples);
    let rows: Vec<&[f64]> = xs.chunks(n).collect();
    for i in 0..n {
        for j in i..n {
            let u: Vec<f64> = (0..n)
                .map(|k| f64::from(u8::from(k == i || k == j)))
                .collect();
            let proj: Vec<f64> = rows
                .iter()
                .map(|r| r.iter().zip(&u).map(|(a, b)| a * b).sum())
                .collect();
            let m: f64 = (0..n).map(|k| u[k] * mean[k]).sum();
            let v: f64 = (0..n)
                .flat_map(|a| (0..n).map(move |b| (a, b)))
                .map(|(a, b)| u[a] * u[b] * cov[a * n + b])
                .sum();
            check_moments(&proj, m, v, 5.0).map_err(|e| format!("direction e{i} + e{j}: {e}"))?;
        }
    }
    Ok(())
}

fn mvn_sampler(device: &Device, dtype: DType) -> Res {
    let n = 3;
    let loc = Tensor::new(&[[1.0f64, -2.0, 0.5], [0.0, 3.0, -1.0]], &Device::Cpu)?;
    let cov = Tensor::from_vec(spd(&[2], n, 16), (2, n, n), &Device::Cpu)?;
    let put = |t: &Tensor| t.to_dtype(dtype).and_then(|t| t.to_device(device));
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let draws = 20_000;
    let w = uniform(&mut rng, &[2, n, 2], -1.0, 1.0);
    let dg = uniform(&mut rng, &[2, n], 0.2, 1.0);
    let low_cov = (w.matmul(&w.t()?)? + ops::diag_embed(&dg)?)?;
    let dists: Vec<(Box<dyn Distribution>, &Tensor)> = vec![
        (
            Box::new(MultivariateNormal::from_covariance(
                &put(&loc)?,
                &put(&cov)?,
            )?),
            &cov,
        ),
        (
            Box::new(MultivariateNormal::from_precision(
                &put(&loc)?,
                &put(&ops::cholesky_solve(
                    &ops::cholesky(&cov)?,
                    &Tensor::eye(n, DType::F64, &Device::Cpu)?.broadcast_as((2, n, n))?,
                )?)?,
            )?),
            &cov,
        ),
        (
            Box::new(LowRankMultivariateNormal::new(
                &put(&loc)?,
                &put(&w)?,
                &put(&dg)?,
            )?),
            &low_cov,
        ),
    ];
    for (d, cov) in dists {
        let x = d.rsample(&[draws], &mut rng)?;
        assert_eq!(x.dims(), &[draws, 2, n]);
        assert_eq!(x.dtype(), dtype);
        for b in 0..2 {
            let xb = x.narrow(1, b, 1)?.squeeze(1)?;
            check_mean_cov(&xb, &host(&loc.get(b)?), &host(&cov.get(b)?), n)
                .map_err(|e| format!("{} batch {b}: {e}", d.name()))?;
        }
        // The same seed gives the same draws.
        let again = d.sample(&[4], &mut ChaCha8Rng::seed_from_u64(1))?;
        let first = d.sample(&[4], &mut ChaCha8Rng::seed_from_u64(1))?;
        assert_eq!(host(&again), host(&first));
    }
    Ok(())
}
vi_test::test_device!(mvn_sampler);

/// log_prob on a device in f32 and f64 agrees with the f64 CPU value.
fn mvn_log_prob_device(device: &Device, dtype: DType) -> Res {
    let (loc, cov, x) = setup();
    let put = |t: &Tensor| t.to_dtype(dtype).and_then(|t| t.to_device(device));
    let want = MultivariateNormal::from_covariance(&loc, &cov)?.log_prob(&x)?;
    let got = MultivariateNormal::from_covariance(&put(&loc)?, &put(&cov)?)?.log_prob(&put(&x)?)?;
    assert_eq!(got.dtype(), dtype);
    let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
    close_tensors(
        &got.to_dtype(DType::F64)?.to_device(&Device::Cpu)?,
        &want,
        tol,
    )?;
    Ok(())
}
vi_test::test_device!(mvn_log_prob_device);

#[test]
fn bad_matrices_are_typed_errors() -> Res {
    let loc = Tensor::zeros((2, 2), DType::F64, &Device::Cpu)?;
    let indefinite = Tensor::new(
        &[[[2.0f64, 0.0], [0.0, 1.0]], [[1.0, 2.0], [2.0, 1.0]]],
        &Device::Cpu,
    )?;
    // Validation on: the parameter's constraint fails, named.
    for (r, param) in [
        (
            MultivariateNormal::from_covariance(&loc, &indefinite),
            "covariance_matrix",
        ),
        (
            MultivariateNormal::from_precision(&loc, &indefinite),
            "precision_matrix",
        ),
    ] {
        match r.map_err(DistError::into_kind) {
            Err(DistError::ParamSupport {
                dist: "MultivariateNormal",
                param: p,
                ..
            }) => assert_eq!(p, param),
            other => panic!("expected ParamSupport for {param}, got {other:?}"),
        }
    }
    // Validation off: the factorisation still fails, naming the parameter and batch element.
    with_validation(false, || {
        for (r, param) in [
            (
                MultivariateNormal::from_covariance(&loc, &indefinite),
                "covariance_matrix",
            ),
            (
                MultivariateNormal::from_precision(&loc, &indefinite),
                "precision_matrix",
            ),
        ] {
            match r.map_err(DistError::into_kind) {
                Err(DistError::Op {
                    op: "cholesky",
                    msg,
                }) => {
                    assert!(msg.contains(param) && msg.contains("[1]"), "{msg}")
                }
                other => panic!("expected a cholesky error for {param}, got {other:?}"),
            }
        }
    });
    // scale_tril must be lower triangular with a positive diagonal.
    let upper = Tensor::new(&[[1.0f64, 1.0], [0.0, 1.0]], &Device::Cpu)?;
    let neg_diag = Tensor::new(&[[-1.0f64, 0.0], [0.0, 1.0]], &Device::Cpu)?;
    for st in [&upper, &neg_diag] {
        assert!(matches!(
            MultivariateNormal::from_scale_tril(&loc, st).map_err(DistError::into_kind),
            Err(DistError::ParamSupport {
                param: "scale_tril",
                ..
            })
        ));
    }
    let neg = Tensor::new(&[1.0f64, -1.0], &Device::Cpu)?;
    assert!(matches!(
        MultivariateNormal::from_diag_scale(&loc, &neg).map_err(DistError::into_kind),
        Err(DistError::ParamSupport { param: "scale", .. })
    ));
    let w = Tensor::ones((2, 1), DType::F64, &Device::Cpu)?;
    assert!(matches!(
        LowRankMultivariateNormal::new(&loc, &w, &neg).map_err(DistError::into_kind),
        Err(DistError::ParamSupport {
            param: "cov_diag",
            ..
        })
    ));
    Ok(())
}

#[test]
fn bad_shapes_are_typed_errors() -> Res {
    let z = |s: &[usize]| Tensor::zeros(s, DType::F64, &Device::Cpu).unwrap();
    let eye3 = Tensor::eye(3, DType::F64, &Device::Cpu)?;
    let shape_err = |r: vi_dist::Result<MultivariateNormal>, param: &str| match r
        .map_err(DistError::into_kind)
    {
        Err(DistError::ParamShape {
            dist: "MultivariateNormal",
            param: p,
            ..
        }) => assert_eq!(p, param),
        other => panic!("expected ParamShape for {param}, got {other:?}"),
    };
    // loc of the wrong size, a non-square matrix, a scalar loc.
    shape_err(MultivariateNormal::from_covariance(&z(&[2]), &eye3), "loc");
    shape_err(
        MultivariateNormal::from_scale_tril(&z(&[3]), &z(&[3, 2])),
        "scale_tril",
    );
    shape_err(
        MultivariateNormal::from_precision(&z(&[3]), &z(&[3])),
        "precision_matrix",
    );
    shape_err(MultivariateNormal::from_covariance(&z(&[]), &eye3), "loc");
    shape_err(
        MultivariateNormal::from_diag_scale(&z(&[3]), &z(&[2])),
        "scale",
    );
    // Batch dims that do not broadcast.
    let cov = eye3.broadcast_as((4, 3, 3))?.contiguous()?;
    assert!(matches!(
        MultivariateNormal::from_covariance(&z(&[2, 3]), &cov).map_err(DistError::into_kind),
        Err(DistError::Broadcast { .. })
    ));
    // A value of the wrong event size.
    let d = MultivariateNormal::from_covariance(&z(&[3]), &eye3)?;
    assert!(matches!(
        d.log_prob(&z(&[5, 2])).map_err(DistError::into_kind),
        Err(DistError::ValueShape { .. })
    ));
    // Low rank: factor rows, diag size, and broadcasting.
    let low = |w: &[usize], dg: &[usize]| {
        LowRankMultivariateNormal::new(
            &z(&[3]),
            &z(w),
            &Tensor::ones(dg, DType::F64, &Device::Cpu).unwrap(),
        )
    };
    assert!(matches!(
        low(&[2, 1], &[3]).map_err(DistError::into_kind),
        Err(DistError::ParamShape {
            param: "cov_factor",
            ..
        })
    ));
    assert!(matches!(
        low(&[3], &[3]).map_err(DistError::into_kind),
        Err(DistError::ParamShape {
            param: "cov_factor",
            ..
        })
    ));
    assert!(matches!(
        low(&[3, 1], &[2]).map_err(DistError::into_kind),
        Err(DistError::ParamShape {
            param: "cov_diag",
            ..
        })
    ));
    assert!(matches!(
        low(&[2, 3, 1], &[4, 3]).map_err(DistError::into_kind),
        Err(DistError::Broadcast { .. })
    ));
    assert_eq!(low(&[2, 3, 1], &[1, 3])?.batch_shape(), &[2]);
    // Mixed dtypes.
    assert!(matches!(
        MultivariateNormal::from_covariance(&z(&[3]).to_dtype(DType::F32)?, &eye3)
            .map_err(DistError::into_kind),
        Err(DistError::ParamKind { .. })
    ));
    Ok(())
}

/// Gradients reach every parameter through rsample, and the covariance gradient of
/// log_prob is symmetric.
#[test]
fn gradients_reach_parameters() -> Res {
    let (loc, cov, x) = setup();
    let (lv, cv) = (Var::from_tensor(&loc)?, Var::from_tensor(&cov)?);
    let d = MultivariateNormal::from_covariance(lv.as_tensor(), cv.as_tensor())?;
    let g = d.log_prob(&x)?.sum_all()?.backward()?;
    let gc = g.get(cv.as_tensor()).ok_or("no grad")?;
    close_tensors(gc, &gc.t()?, 1e-12)?;
    let mut rng = ChaCha8Rng::seed_from_u64(18);
    let s = d.rsample(&[3], &mut rng)?;
    let g = s.sqr()?.sum_all()?.backward()?;
    assert!(g.get(lv.as_tensor()).is_some() && g.get(cv.as_tensor()).is_some());
    let gl = g.get(lv.as_tensor()).ok_or("no grad")?;
    // d/dloc Σ s² = 2 Σ_samples s.
    close_tensors(gl, &(s.sum(0)? * 2.0)?, 1e-12)?;
    Ok(())
}
