//! Exact posteriors: SVI with a mean-field guide recovers conjugate posteriors (mean and
//! standard deviation to 2% relative, fixed seed).

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vi_dist::{Bernoulli, Beta, Constraint, Distribution, Gamma, Normal, Poisson};
use vi_infer::{Ctx, Elbo, Svi, TraceMeanFieldElbo};
use vi_optim::{ClippedAdam, ClippedAdamOptions};

use crate::common::Res;

/// ClippedAdam whose learning rate decays from `lr` to `lr / 1000` over `steps`.
fn optimizer(lr: f64, steps: usize) -> ClippedAdam {
    ClippedAdam::empty(ClippedAdamOptions {
        lr,
        lrd: (1e-3f64).powf(1.0 / steps as f64),
        clip_norm: 10.0,
        ..Default::default()
    })
    .unwrap()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

fn check(what: &str, got: &[f64], want: &[f64], tol: f64) {
    for (g, w) in got.iter().zip(want) {
        assert!(
            rel(*g, *w) <= tol,
            "{what}: got {got:?}, exact {want:?} (relative error {:.4})",
            rel(*g, *w)
        );
    }
}

/// Normal–Normal with known noise: mu ~ N(0, 1) in R^3, x_i ~ N(mu, 0.5²), i < n.
/// Posterior: precision 1 + n / 0.25, mean (Σx / 0.25) / precision.
fn normal_normal_data(n: usize, dev: &Device) -> (Tensor, Vec<f64>, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let truth = [0.7, -1.2, 0.3];
    let mut x = Vec::with_capacity(n * 3);
    for _ in 0..n {
        for t in truth {
            let e: f64 = rand_distr::Distribution::sample(&rand_distr::StandardNormal, &mut rng);
            x.push(t + 0.5 * e);
        }
    }
    let precision = 1.0 + n as f64 / 0.25;
    let mean = (0..3)
        .map(|j| (0..n).map(|i| x[i * 3 + j]).sum::<f64>() / 0.25 / precision)
        .collect();
    let data = Tensor::from_vec(x, (n, 3), dev).unwrap();
    (data, mean, precision.powf(-0.5))
}

fn normal_normal_fit<E: Elbo>(subsample: Option<usize>, elbo: E, steps: usize) -> Res {
    let dev = Device::Cpu;
    let n = 200;
    let (data, mean, sd) = normal_normal_data(n, &dev);
    let zeros = Tensor::zeros(3, DType::F64, &dev)?;
    let ones = Tensor::ones(3, DType::F64, &dev)?;
    let half = (&ones * 0.5)?;
    let model = |ctx: &mut Ctx| {
        let mu = ctx.sample("mu", Normal::new(&zeros, &ones)?.to_event(1)?)?;
        match subsample {
            None => ctx.plate("data", n, |ctx| {
                ctx.observe("x", Normal::new(&mu, &half)?.to_event(1)?, &data)
            })?,
            Some(s) => ctx.plate_subsample("data", n, s, |ctx, idx| {
                let batch = data.index_select(idx, 0)?;
                ctx.observe("x", Normal::new(&mu, &half)?.to_event(1)?, &batch)
            })?,
        };
        Ok(())
    };
    let guide = |ctx: &mut Ctx| {
        let loc = ctx.param("loc", &zeros, Constraint::Real)?;
        let scale = ctx.param("scale", &(&ones * 0.3)?, Constraint::Positive)?;
        ctx.sample("mu", Normal::new(&loc, &scale)?.to_event(1)?)
    };
    let mut svi = Svi::new(model, guide, optimizer(0.05, steps), elbo).seed(1);
    for _ in 0..steps {
        svi.step()?;
    }
    let loc = svi.store().get("loc")?.unwrap().to_vec1::<f64>()?;
    let scale = svi.store().get("scale")?.unwrap().to_vec1::<f64>()?;
    check("posterior mean", &loc, &mean, 0.02);
    check("posterior sd", &scale, &[sd; 3], 0.02);
    Ok(())
}

#[test]
fn normal_normal_vector_latent() -> Res {
    normal_normal_fit(None, TraceMeanFieldElbo::new(), 3000)
}

#[test]
fn normal_normal_subsampled() -> Res {
    let elbo = TraceMeanFieldElbo::new()
        .num_particles(8)
        .vectorize_particles(true);
    normal_normal_fit(Some(50), elbo, 4000)
}

#[test]
fn beta_bernoulli() -> Res {
    let dev = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let n = 40;
    let x: Vec<f64> = (0..n)
        .map(|_| f64::from(u8::from(rng.random_bool(0.3))))
        .collect();
    let k: f64 = x.iter().sum();
    let (a, b) = (2.0 + k, 2.0 + n as f64 - k);
    let want_mean = a / (a + b);
    let want_sd = (a * b / ((a + b).powi(2) * (a + b + 1.0))).sqrt();
    let data = Tensor::from_vec(x, n, &dev)?;
    let two = Tensor::new(2.0f64, &dev)?;
    let model = |ctx: &mut Ctx| {
        let p = ctx.sample("p", Beta::new(&two, &two)?)?;
        ctx.plate("data", n, |ctx| {
            ctx.observe("x", Bernoulli::from_probs(&p)?, &data)
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| {
        let a = ctx.param("a", &Tensor::new(3.0f64, &dev)?, Constraint::Positive)?;
        let b = ctx.param("b", &Tensor::new(3.0f64, &dev)?, Constraint::Positive)?;
        ctx.sample("p", Beta::new(&a, &b)?)
    };
    let steps = 3000;
    let elbo = TraceMeanFieldElbo::new()
        .num_particles(32)
        .vectorize_particles(true);
    let mut svi = Svi::new(model, guide, optimizer(0.1, steps), elbo).seed(2);
    for _ in 0..steps {
        svi.step()?;
    }
    let a = svi.store().get("a")?.unwrap().to_scalar::<f64>()?;
    let b = svi.store().get("b")?.unwrap().to_scalar::<f64>()?;
    let q = Beta::new(&Tensor::new(a, &dev)?, &Tensor::new(b, &dev)?)?;
    let mean = q.mean()?.to_scalar::<f64>()?;
    let sd = q.variance()?.sqrt()?.to_scalar::<f64>()?;
    check("Beta posterior mean", &[mean], &[want_mean], 0.02);
    check("Beta posterior sd", &[sd], &[want_sd], 0.02);
    Ok(())
}

#[test]
fn gamma_poisson() -> Res {
    let dev = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let n = 30;
    let pois = rand_distr::Poisson::new(4.0).unwrap();
    let x: Vec<f64> = (0..n)
        .map(|_| rand_distr::Distribution::sample(&pois, &mut rng))
        .collect();
    let (a, b) = (3.0 + x.iter().sum::<f64>(), 1.0 + n as f64);
    let (want_mean, want_sd) = (a / b, a.sqrt() / b);
    let data = Tensor::from_vec(x, n, &dev)?;
    let model = |ctx: &mut Ctx| {
        let prior = Gamma::new(&Tensor::new(3.0f64, &dev)?, &Tensor::new(1.0f64, &dev)?)?;
        let rate = ctx.sample("rate", prior)?;
        ctx.plate("data", n, |ctx| {
            ctx.observe("x", Poisson::new(&rate)?, &data)
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| {
        let a = ctx.param("a", &Tensor::new(20.0f64, &dev)?, Constraint::Positive)?;
        let b = ctx.param("b", &Tensor::new(5.0f64, &dev)?, Constraint::Positive)?;
        ctx.sample("rate", Gamma::new(&a, &b)?)
    };
    let steps = 5000;
    let elbo = TraceMeanFieldElbo::new()
        .num_particles(32)
        .vectorize_particles(true);
    let mut svi = Svi::new(model, guide, optimizer(0.1, steps), elbo).seed(3);
    for _ in 0..steps {
        svi.step()?;
    }
    let a = svi.store().get("a")?.unwrap().to_scalar::<f64>()?;
    let b = svi.store().get("b")?.unwrap().to_scalar::<f64>()?;
    check("Gamma posterior mean", &[a / b], &[want_mean], 0.02);
    check("Gamma posterior sd", &[a.sqrt() / b], &[want_sd], 0.02);
    Ok(())
}
