//! `Predictive`: shapes for every site kind and source, the posterior predictive of conjugate
//! models against the analytic predictive (within 4 standard errors), and parallel against
//! loop draws for one seed.

use rand::SeedableRng;
use vi_infer::autoguide::{AutoGuide, AutoNormal};
use vi_infer::candle::{D, DType, Device, Tensor};
use vi_infer::dist::{Distribution, Gamma, HalfNormal, Normal, Poisson};
use vi_infer::{Ctx, InferError, ParamStore, Predictive, Svi, TraceMeanFieldElbo};

use crate::common::{Res, adam, assert_mentions, host, max_abs_diff};

/// A model with every site kind: a global scalar, a vector (`to_event`), a positive site, a
/// local site in a plate, a deterministic site, observations in the plate and a factor. It
/// broadcasts over a leading samples' dim.
struct Kinds {
    x: Tensor,
    y: Tensor,
    zero: Tensor,
    one: Tensor,
    zeros: Tensor,
    ones: Tensor,
}

impl Kinds {
    fn new() -> Res<Self> {
        let dev = Device::Cpu;
        Ok(Self {
            x: Tensor::new(
                &[
                    [0.5f64, -1.0],
                    [1.5, 0.2],
                    [-0.3, 0.8],
                    [1.0, 1.0],
                    [0.0, -0.5],
                ],
                &dev,
            )?,
            y: Tensor::new(&[0.9f64, 1.2, -0.1, 1.7, 0.3], &dev)?,
            zero: Tensor::new(0.0f64, &dev)?,
            one: Tensor::new(1.0f64, &dev)?,
            zeros: Tensor::zeros(2, DType::F64, &dev)?,
            ones: Tensor::ones(2, DType::F64, &dev)?,
        })
    }

    fn model(&self, ctx: &mut Ctx) -> vi_infer::Result<()> {
        let b = ctx.sample("b", Normal::new(&self.zero, &self.one)?)?;
        let w = ctx.sample("w", Normal::new(&self.zeros, &self.ones)?.to_event(1)?)?;
        let s = ctx.sample("s", HalfNormal::new(&self.one)?)?;
        let mean = self
            .x
            .broadcast_mul(&w)?
            .sum(D::Minus1)?
            .broadcast_add(&b)?;
        ctx.deterministic("mean", &mean)?;
        ctx.plate("data", 5, |ctx| {
            let u = ctx.sample("u", Normal::new(&self.zero, &(&self.one * 0.1)?)?)?;
            ctx.observe("y", Normal::new(&(mean + u)?, &s)?, &self.y)?;
            ctx.factor("penalty", &(w.sqr()?.sum(D::Minus1)? * -0.01)?)
        })?;
        Ok(())
    }
}

/// Shapes for every site kind, from the prior, a guide and given samples, in parallel and in
/// a loop: `[num_samples, …site shape]`; by default the prior predictive returns the latent
/// and deterministic sites, the posterior ones the observed sites too.
#[test]
fn shapes_for_every_site_kind_and_source() -> Res {
    let k = Kinds::new()?;
    let model = |ctx: &mut Ctx| k.model(ctx);
    let guide = AutoNormal::new(model);
    let mut svi = Svi::new(model, guide.as_fn(), adam(0.01), TraceMeanFieldElbo::new()).seed(0);
    for _ in 0..10 {
        svi.step()?;
    }
    let n = 6;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let samples = guide.sample_posterior(svi.store(), n, &mut rng)?;
    let want = [
        ("b", vec![]),
        ("w", vec![2]),
        ("s", vec![]),
        ("mean", vec![5]),
        ("u", vec![5]),
        ("y", vec![5]),
    ];
    for parallel in [false, true] {
        let store = svi.store_mut();
        let prior = Predictive::new(model)
            .num_samples(n)
            .parallel(parallel)
            .run(store)?;
        let post = Predictive::with_guide(model, guide.as_fn())
            .num_samples(n)
            .parallel(parallel)
            .run(store)?;
        let given = Predictive::with_samples(model, samples.clone())?
            .parallel(parallel)
            .run(store)?;
        for (name, draws) in [("prior", &prior), ("guide", &post), ("samples", &given)] {
            for (site, shape) in &want {
                if name == "prior" && *site == "y" {
                    assert!(
                        !draws.contains_key("y"),
                        "the prior predictive returns no observed site by default"
                    );
                    continue;
                }
                let mut full = vec![n];
                full.extend(shape);
                assert_eq!(
                    draws[*site].dims(),
                    full.as_slice(),
                    "{name} {site} (parallel {parallel})"
                );
            }
            assert!(!draws.contains_key("penalty") && !draws.contains_key("data"));
        }
        // Given samples are replayed as they are.
        assert!(max_abs_diff(&given["w"], &samples["w"]) == 0.0);
        // The prior predictive of the observations, when asked for.
        let y = Predictive::new(model)
            .num_samples(n)
            .parallel(parallel)
            .return_sites(&["y"])
            .run(store)?;
        assert_eq!(y["y"].dims(), &[n, 5]);
    }
    Ok(())
}

/// The posterior predictive of Normal–Normal (`μ ~ N(0, 1)`, `x_i ~ N(μ, 1)`, 4 points, so
/// `μ | x ~ N(0.8, 0.2)`), with the exact posterior as the guide: each new `x_i` has mean 0.8
/// and variance 1.2, two of them covariance 0.2: the sample moments within 4 standard errors,
/// parallel and loop.
#[test]
fn posterior_predictive_normal_normal_matches_analytic() -> Res {
    let dev = Device::Cpu;
    let data = Tensor::new(&[1.2f64, 0.8, 1.1, 0.9], &dev)?;
    let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    let model = |ctx: &mut Ctx| {
        let mu = ctx.sample("mu", Normal::new(&zero, &one)?)?;
        ctx.plate("data", 4, |ctx| {
            ctx.observe("x", Normal::new(&mu, &one)?, &data)
        })
    };
    let (loc, scale) = (
        Tensor::new(0.8f64, &dev)?,
        Tensor::new(0.2f64.sqrt(), &dev)?,
    );
    let guide = |ctx: &mut Ctx| ctx.sample("mu", Normal::new(&loc, &scale)?);
    for (parallel, n) in [(true, 40_000usize), (false, 4_000)] {
        let draws = Predictive::with_guide(model, guide)
            .num_samples(n)
            .parallel(parallel)
            .seed(5)
            .run(&mut ParamStore::default())?;
        let x = draws["x"].to_vec2::<f64>()?;
        let nf = n as f64;
        for i in 0..4 {
            let col: Vec<f64> = x.iter().map(|r| r[i]).collect();
            let m = col.iter().sum::<f64>() / nf;
            let v = col.iter().map(|c| (c - m).powi(2)).sum::<f64>() / (nf - 1.0);
            let (se_m, se_v) = ((1.2 / nf).sqrt(), 1.2 * (2.0 / (nf - 1.0)).sqrt());
            println!(
                "x[{i}] (parallel {parallel}): mean {m:.4} ± {se_m:.4} (0.8), var {v:.4} ± {se_v:.4} (1.2)"
            );
            assert!((m - 0.8).abs() < 4.0 * se_m, "mean {m}");
            assert!((v - 1.2).abs() < 4.0 * se_v, "variance {v}");
        }
        // cov(x_0, x_1) = var(μ) = 0.2; its standard error about sqrt((1.2² + 0.2²) / n).
        let (c0, c1): (Vec<f64>, Vec<f64>) = x.iter().map(|r| (r[0], r[1])).unzip();
        let (m0, m1) = (c0.iter().sum::<f64>() / nf, c1.iter().sum::<f64>() / nf);
        let cov = c0
            .iter()
            .zip(&c1)
            .map(|(a, b)| (a - m0) * (b - m1))
            .sum::<f64>()
            / (nf - 1.0);
        let se = ((1.2f64 * 1.2 + 0.04) / nf).sqrt();
        assert!((cov - 0.2).abs() < 4.0 * se, "cov {cov} ± {se}");
    }
    Ok(())
}

/// Gamma–Poisson: with the exact posterior `Gamma(a, b)` of the rate as the guide, a new count
/// is negative binomial: mean `a / b`, variance `a / b + a / b²`; the sample moments within
/// 4 standard errors (a discrete observed site, released and drawn).
#[test]
fn posterior_predictive_gamma_poisson_matches_analytic() -> Res {
    let dev = Device::Cpu;
    let counts = Tensor::new(&[3.0f64, 5.0, 4.0, 6.0], &dev)?;
    let (two, one) = (Tensor::new(2.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    let model = |ctx: &mut Ctx| {
        let rate = ctx.sample("rate", Gamma::new(&two, &one)?)?;
        ctx.plate("data", 4, |ctx| {
            ctx.observe("n", Poisson::new(&rate)?, &counts)
        })
    };
    let (a, b) = (20.0f64, 5.0f64);
    let (qa, qb) = (Tensor::new(a, &dev)?, Tensor::new(b, &dev)?);
    let guide = |ctx: &mut Ctx| ctx.sample("rate", Gamma::new(&qa, &qb)?);
    let n = 40_000;
    let draws = Predictive::with_guide(model, guide)
        .num_samples(n)
        .parallel(true)
        .seed(2)
        .run(&mut ParamStore::default())?;
    let x = host(&draws["n"].narrow(1, 0, 1)?);
    let nf = n as f64;
    let m = x.iter().sum::<f64>() / nf;
    let v = x.iter().map(|c| (c - m).powi(2)).sum::<f64>() / (nf - 1.0);
    let (em, ev) = (a / b, a / b + a / (b * b));
    // The variance's standard error from the negative binomial's fourth central moment,
    // bounded above by 3 var² + var (its excess kurtosis is below 1 + 6 / r here).
    let se_v = ((3.0 * ev * ev + ev - ev * ev * (nf - 3.0) / (nf - 1.0)) / nf).sqrt();
    println!("counts: mean {m:.4} ({em}), var {v:.4} ({ev}) ± {se_v:.4}");
    assert!((m - em).abs() < 4.0 * (ev / nf).sqrt());
    assert!((v - ev).abs() < 4.0 * se_v);
    assert!(x.iter().all(|c| c.fract() == 0.0 && *c >= 0.0));
    Ok(())
}

/// Parallel and loop give the same draws for one seed: every site drawn from a generator of
/// its own, in the order of the samples (a regression model with a trained `AutoNormal`).
#[test]
fn parallel_equals_loop_for_one_seed() -> Res {
    let k = Kinds::new()?;
    let model = |ctx: &mut Ctx| k.model(ctx);
    let guide = AutoNormal::new(model);
    let mut svi = Svi::new(model, guide.as_fn(), adam(0.01), TraceMeanFieldElbo::new()).seed(0);
    for _ in 0..10 {
        svi.step()?;
    }
    let store = svi.store_mut();
    for source in ["prior", "guide"] {
        let make = || match source {
            "prior" => Predictive::new(model),
            _ => Predictive::with_guide(model, guide.as_fn()),
        };
        let a = make()
            .num_samples(50)
            .seed(9)
            .return_sites(&["b", "w", "s", "u", "y", "mean"])
            .run(store)?;
        let b = make()
            .num_samples(50)
            .seed(9)
            .return_sites(&["b", "w", "s", "u", "y", "mean"])
            .parallel(true)
            .run(store)?;
        let c = make()
            .num_samples(50)
            .seed(10)
            .return_sites(&["b"])
            .run(store)?;
        for site in ["b", "w", "s", "u", "y", "mean"] {
            assert_eq!(a[site].dims(), b[site].dims(), "{source} {site}");
            let d = max_abs_diff(&a[site], &b[site]);
            assert!(
                d < 1e-12,
                "{source} {site}: loop and parallel differ by {d}"
            );
        }
        assert!(
            max_abs_diff(&a["b"], &c["b"]) > 0.1,
            "another seed, other draws"
        );
    }
    Ok(())
}

/// Errors: posterior samples of different lengths, a `num_samples` other than theirs, a return
/// site the model does not have, zero samples.
#[test]
fn predictive_errors() -> Res {
    let (zero, one) = (
        Tensor::new(0.0f64, &Device::Cpu)?,
        Tensor::new(1.0f64, &Device::Cpu)?,
    );
    let model = |ctx: &mut Ctx| {
        let a = ctx.sample("a", Normal::new(&zero, &one)?)?;
        ctx.sample("b", Normal::new(&a, &one)?)
    };
    let samples = [
        ("a".to_string(), Tensor::zeros(3, DType::F64, &Device::Cpu)?),
        ("b".to_string(), Tensor::zeros(4, DType::F64, &Device::Cpu)?),
    ]
    .into_iter()
    .collect();
    let e = Predictive::with_samples(model, samples).unwrap_err();
    assert_mentions(&e, &["disagree", "`b`"]);
    let samples = [("a".to_string(), Tensor::zeros(3, DType::F64, &Device::Cpu)?)]
        .into_iter()
        .collect();
    let e = Predictive::with_samples(model, samples)?
        .num_samples(5)
        .run(&mut ParamStore::default())
        .unwrap_err();
    assert_mentions(&e, &["num_samples is 5", "`a`", "3 rows"]);
    let e = Predictive::new(model)
        .return_sites(&["nope"])
        .run(&mut ParamStore::default())
        .unwrap_err();
    assert!(matches!(e, InferError::Invalid(_)));
    assert_mentions(&e, &["`nope`"]);
    let e = Predictive::new(model)
        .num_samples(0)
        .run(&mut ParamStore::default())
        .unwrap_err();
    assert_mentions(&e, &["at least 1"]);
    Ok(())
}
