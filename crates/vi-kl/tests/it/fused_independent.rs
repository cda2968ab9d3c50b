//! `Independent(Normal, k) ‖ Independent(Normal, k)`: the KL summed over the event dims inside
//! one fused op on the CPU, against the bases' KL summed with candle's `sum` (values and
//! gradients of every tracked parameter, random shapes, broadcast and expanded parameters, the
//! VAE's guide and prior), and the cases that keep the general path.

use candle_core::{D, DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vi_dist::{Distribution, Expanded, Normal};
use vi_kl::{KlRegistry, kl_divergence};
use vi_test::{assert_all_close as assert_close, fused_tol as tol};

use crate::common::{Res, host};

/// A tracked leaf of shape `shape` with entries from `draw`.
fn leaf(rng: &mut ChaCha8Rng, shape: &[usize], scale: bool, dtype: DType) -> Var {
    let n: usize = shape.iter().product();
    let data: Vec<f64> = (0..n)
        .map(|_| {
            if scale {
                rng.random_range(0.3..3.0)
            } else {
                rng.random_range(-2.0..2.0)
            }
        })
        .collect();
    let t = Tensor::from_vec(data, shape, &Device::Cpu).unwrap();
    Var::from_tensor(&t.to_dtype(dtype).unwrap()).unwrap()
}

/// `shape` with some of its first `free` dims set to 1 (and maybe the first dropped): a
/// parameter that broadcasts to it.
fn broadcastable(rng: &mut ChaCha8Rng, shape: &[usize], free: usize) -> Vec<usize> {
    let drop = rng.random_range(0..=free.min(1));
    shape
        .iter()
        .enumerate()
        .skip(drop)
        .map(|(i, &d)| {
            if i < free && rng.random_bool(0.3) {
                1
            } else {
                d
            }
        })
        .collect()
}

/// KL and the gradients of `Σ w · KL` for every leaf.
fn kl_and_grads(kl: Tensor, w: &Tensor, leaves: &[&Var]) -> (Vec<f64>, Vec<usize>, Vec<Vec<f64>>) {
    let grads = kl
        .broadcast_mul(w)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g = leaves
        .iter()
        .map(|v| host(grads.get(v.as_tensor()).expect("gradient")))
        .collect();
    (host(&kl), kl.dims().to_vec(), g)
}

fn sum_last(t: Tensor, k: usize) -> Tensor {
    (0..k).fold(t, |t, _| t.sum(D::Minus1).unwrap())
}

fn matches_bases_summed(dtype: DType, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for round in 0..40 {
        let k = 1 + round % 2;
        let rank = rng.random_range(k..=3);
        let shape: Vec<usize> = (0..rank).map(|_| rng.random_range(1..=5)).collect();
        // p's loc has the whole shape, so the joint batch is `shape`; p's scale and q's scale
        // broadcast anywhere, q's loc in the batch dims only (the event shapes must agree)
        let sp = broadcastable(&mut rng, &shape, rank);
        let lq = broadcastable(&mut rng, &shape, rank - k);
        let sq = broadcastable(&mut rng, &lq, lq.len());
        let (mp, ssp) = (
            leaf(&mut rng, &shape, false, dtype),
            leaf(&mut rng, &sp, true, dtype),
        );
        let (mq, ssq) = (
            leaf(&mut rng, &lq, false, dtype),
            leaf(&mut rng, &sq, true, dtype),
        );
        // the prior side untracked every other round (the VAE's constant prior)
        let track_q = round % 4 < 2;
        let q_params = |v: &Var| {
            if track_q {
                v.as_tensor().clone()
            } else {
                v.as_tensor().detach()
            }
        };
        let p = Normal::new(mp.as_tensor(), ssp.as_tensor()).unwrap();
        let q = Normal::new(&q_params(&mq), &q_params(&ssq)).unwrap();
        let n: usize = shape[..rank - k].iter().product();
        let wd: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let w = Tensor::from_vec(wd, &shape[..rank - k], &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let mut leaves = vec![&mp, &ssp];
        if track_q {
            leaves.extend([&mq, &ssq]);
        }
        let what = format!("{dtype:?} round {round} shape {shape:?} {sp:?} {lq:?} {sq:?} k {k}");
        let fused = kl_divergence(
            &p.clone().to_event(k).unwrap(),
            &q.clone().to_event(k).unwrap(),
        )
        .unwrap();
        let composed = sum_last(kl_divergence(&p, &q).unwrap(), k);
        let (fv, fs, fg) = kl_and_grads(fused, &w, &leaves);
        let (cv, cs, cg) = kl_and_grads(composed, &w, &leaves);
        assert_eq!(fs, cs, "{what}: shapes");
        assert_close(&what, &fv, &cv, tol(dtype));
        for (i, (a, b)) in fg.iter().zip(&cg).enumerate() {
            assert_close(&format!("{what} ∂{i}"), a, b, tol(dtype));
        }
    }
}

#[test]
fn independent_normal_kl_matches_bases_summed_f64() {
    matches_bases_summed(DType::F64, 41);
}

#[test]
fn independent_normal_kl_matches_bases_summed_f32() {
    matches_bases_summed(DType::F32, 42);
}

/// The VAE's pair: guide `Normal(loc[256, 50], scale[256, 50]).to_event(1)` against the prior
/// `Normal(0[50], 1[50]).to_event(1)`, as built and expanded to the plate's batch [256] (what
/// a plate does to a site), and against an `Expanded` Normal prior; values and guide
/// gradients as the bases' KL summed.
#[test]
fn vae_guide_against_prior() -> Res {
    let cpu = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(43);
    for dtype in [DType::F64, DType::F32] {
        let loc = leaf(&mut rng, &[256, 50], false, dtype);
        let scale = leaf(&mut rng, &[256, 50], true, dtype);
        let guide = Normal::new(loc.as_tensor(), scale.as_tensor())?;
        let prior = Normal::new(
            &Tensor::zeros(50, dtype, &cpu)?,
            &Tensor::ones(50, dtype, &cpu)?,
        )?;
        let want = sum_last(kl_divergence(&guide, &prior)?, 1);
        let w = Tensor::ones(256, dtype, &cpu)?;
        let (wv, _, wg) = kl_and_grads(want, &w, &[&loc, &scale]);
        let priors: Vec<Box<dyn Distribution>> = vec![
            prior.clone().to_event(1)?.clone_box(),
            prior.clone().to_event(1)?.expand(&[256])?,
            Expanded::new(prior.clone_box(), &[256, 50])?
                .to_event(1)?
                .clone_box(),
            Expanded::new(prior.clone_box(), &[50])?
                .to_event(1)?
                .clone_box(),
        ];
        for (i, pr) in priors.iter().enumerate() {
            let kl = kl_divergence(&guide.clone().to_event(1)?, pr.as_ref())?;
            assert_eq!(kl.dims(), &[256], "prior {i}");
            let (v, _, g) = kl_and_grads(kl, &w, &[&loc, &scale]);
            assert_close(&format!("prior {i} {dtype:?}"), &v, &wv, tol(dtype));
            for (a, b) in g.iter().zip(&wg) {
                assert_close(&format!("prior {i} {dtype:?} grad"), a, b, tol(dtype));
            }
        }
    }
    Ok(())
}

/// An `Expanded` Normal whose expansion reaches into the event dims: each copy counts in the
/// sum (the parameters are broadcast to the expanded shape before the op sums).
#[test]
fn expanded_event_copies_count() -> Res {
    let cpu = Device::Cpu;
    let p = Normal::new(
        &Tensor::new(&[1.0f64], &cpu)?,
        &Tensor::new(&[1.0f64], &cpu)?,
    )?;
    let q = Normal::new(
        &Tensor::new(&[0.0f64], &cpu)?,
        &Tensor::new(&[1.0f64], &cpu)?,
    )?;
    let pe = Expanded::new(p.clone_box(), &[4])?.to_event(1)?;
    let qe = Expanded::new(q.clone_box(), &[4])?.to_event(1)?;
    let kl = kl_divergence(&pe, &qe)?;
    assert_eq!(kl.dims(), &[] as &[usize]);
    assert!((kl.to_scalar::<f64>()? - 4.0 * 0.5).abs() < 1e-15);
    Ok(())
}

/// In f32 the fused sum accumulates in f64: a KL summed over 200 704 terms (two event dims)
/// matches the f64 sum of the same f32 terms to an f32 rounding, which candle's f32 `sum`
/// of the composed terms does not reach here; so this also shows the pair takes the fused op.
#[test]
fn f32_sum_accumulates_in_f64() -> Res {
    let mut rng = ChaCha8Rng::seed_from_u64(47);
    let (mp, sp) = (
        leaf(&mut rng, &[256, 784], false, DType::F32),
        leaf(&mut rng, &[256, 784], true, DType::F32),
    );
    let (mq, sq) = (
        leaf(&mut rng, &[784], false, DType::F32),
        leaf(&mut rng, &[784], true, DType::F32),
    );
    let p = Normal::new(mp.as_tensor(), sp.as_tensor())?;
    let q = Normal::new(mq.as_tensor(), sq.as_tensor())?.expand(&[256, 784])?;
    let q = q
        .as_any()
        .downcast_ref::<Normal>()
        .ok_or("a Normal")?
        .clone();
    let each = kl_divergence(&p, &q)?;
    let exact: f64 = host(&each).iter().sum();
    let total = kl_divergence(&p.to_event(2)?, &q.to_event(2)?)?.to_scalar::<f32>()?;
    assert!(
        (f64::from(total) - exact).abs() <= exact.abs() * 1e-7,
        "{total} vs {exact}"
    );
    Ok(())
}

/// A user's Normal‖Normal rule still decides the KL inside `Independent`s (the fused sum is
/// only taken for this crate's own rule); unequal reinterpreted counts and other families keep
/// the general path.
#[test]
fn user_rules_and_other_pairs_keep_the_general_path() -> Res {
    let cpu = Device::Cpu;
    let t = Tensor::ones((2, 3), DType::F64, &cpu)?;
    let p = Normal::new(&t, &t)?;
    let q = Normal::new(&t.zeros_like()?, &t)?;
    let mut reg = KlRegistry::default();
    reg.register(|p: &Normal, _: &Normal, _: &KlRegistry| Ok((p.loc().ones_like()? * 7.0)?));
    let kl = reg.kl(&p.clone().to_event(1)?, &q.clone().to_event(1)?)?;
    assert_eq!(host(&kl), vec![21.0, 21.0]);
    // an Expanded side goes to the user's rule for the bases too
    let pe = Expanded::new(p.clone_box(), &[2, 3])?.to_event(1)?;
    let kl = reg.kl(&pe, &q.clone().to_event(1)?)?;
    assert_eq!(host(&kl), vec![21.0, 21.0]);
    // the default registry: 0.5 per element
    let kl = kl_divergence(&p.clone().to_event(1)?, &q.clone().to_event(1)?)?;
    assert_eq!(host(&kl), vec![1.5, 1.5]);
    // unequal counts: the outer dim is peeled, then Independent(Normal,1)‖Normal has no rule
    assert!(kl_divergence(&p.clone().to_event(2)?, &q.clone().to_event(1)?).is_err());
    Ok(())
}
