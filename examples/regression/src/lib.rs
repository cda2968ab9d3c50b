//! Bayesian linear regression with stochastic variational inference, using `vi-infer` alone.
//!
//! The model, for `N` rows of `D = 3` features:
//!
//! ```text
//! w     ~ Normal(0, 1).to_event(1)        (D weights)
//! b     ~ Normal(0, 1)                    (bias)
//! sigma ~ HalfNormal(1)                   (noise scale)
//! y_i   ~ Normal(x_i · w + b, sigma)      for i in plate("data", N)
//! ```
//!
//! and a mean-field guide: `Normal(w_loc, w_scale).to_event(1)` for `w`,
//! `Normal(b_loc, b_scale)` for `b` and `LogNormal(sigma_loc, sigma_scale)` for `sigma`, the
//! scales constrained positive. [`fit`] runs [`TraceMeanFieldElbo`] (closed-form KL for `w`
//! and `b`, a Monte Carlo KL for `sigma`, whose LogNormal–HalfNormal pair has no closed form)
//! with `ClippedAdam`, and [`reference()`] computes what the fit should find: least squares and
//! the exact Gaussian posterior of `(w, b)` given `sigma`.
//!
//! ```
//! use regression::{Config, fit, reference, synthetic};
//!
//! let cfg = Config { n: 200, steps: 300, ..Config::default() };
//! let data = synthetic(&cfg)?;
//! let exact = reference(&data)?;
//! let fitted = fit(&data, &cfg)?;
//! // The posterior mean of the bias is near least squares' estimate.
//! assert!((fitted.posterior.b.mean - exact.ols[3].mean).abs() < 0.2);
//! // The KL of each latent site, from the last step's report.
//! let kl_w = fitted.report.site("w").unwrap().sum.to_scalar::<f64>()?;
//! assert!(kl_w > 0.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_infer::candle::{D, DType, Device, Tensor};
use vi_infer::dist::{Constraint, Distribution, HalfNormal, LogNormal, Normal};
use vi_infer::optim::{ClippedAdam, ClippedAdamOptions};
use vi_infer::{Ctx, InferError, Result, StepReport, Svi, TraceMeanFieldElbo};

/// The number of features.
pub const FEATURES: usize = 3;

/// The generating weights.
pub const TRUE_W: [f64; FEATURES] = [1.5, -2.0, 0.5];
/// The generating bias.
pub const TRUE_B: f64 = 0.8;
/// The generating noise scale.
pub const TRUE_SIGMA: f64 = 0.5;

/// The settings of one run: data size and seed, optimisation, device and dtype.
///
/// ```
/// let cfg = regression::Config::default();
/// assert_eq!((cfg.n, cfg.steps), (1000, 3000));
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    /// Rows of synthetic data.
    pub n: usize,
    /// SVI steps.
    pub steps: usize,
    /// The initial learning rate.
    pub lr: f64,
    /// The learning rate at the last step (decayed geometrically from `lr`).
    pub final_lr: f64,
    /// Particles per step (vectorised when more than one).
    pub particles: usize,
    /// Seed of the synthetic data.
    pub data_seed: u64,
    /// Seed of the guide's draws.
    pub svi_seed: u64,
    /// The dtype of every tensor.
    pub dtype: DType,
    /// The device of every tensor.
    pub device: Device,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            n: 1000,
            steps: 3000,
            lr: 0.05,
            final_lr: 5e-4,
            particles: 1,
            data_seed: 2024,
            svi_seed: 0,
            dtype: DType::F64,
            device: Device::Cpu,
        }
    }
}

/// Synthetic data, on the device and as host copies for the reference computations.
#[derive(Clone, Debug)]
pub struct Data {
    /// Features, `(n, FEATURES)`.
    pub x: Tensor,
    /// Responses, `(n,)`.
    pub y: Tensor,
    /// The features' rows on the host.
    pub x_host: Vec<[f64; FEATURES]>,
    /// The responses on the host.
    pub y_host: Vec<f64>,
}

/// Draws `y = X w + b + sigma ε` with [`TRUE_W`], [`TRUE_B`], [`TRUE_SIGMA`]: `x0, x1`
/// standard normal, `x2 = 0.6 x0 + 0.8 z` (correlated with `x0`, so the exact posterior
/// couples `w0` and `w2`, which a mean-field guide cannot express), `ε` standard normal.
/// Deterministic in `cfg.data_seed`, identical for every dtype and device.
///
/// ```
/// let data = regression::synthetic(&regression::Config { n: 10, ..Default::default() })?;
/// assert_eq!(data.x.dims(), &[10, 3]);
/// # Ok::<(), vi_infer::InferError>(())
/// ```
pub fn synthetic(cfg: &Config) -> Result<Data> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.data_seed);
    let eps = vi_infer::dist::standard_normal(
        &[cfg.n, FEATURES + 1],
        DType::F64,
        &Device::Cpu,
        &mut rng,
    )?
    .to_vec2::<f64>()?;
    let mut x_host = Vec::with_capacity(cfg.n);
    let mut y_host = Vec::with_capacity(cfg.n);
    for e in eps {
        let row = [e[0], e[1], 0.6 * e[0] + 0.8 * e[2]];
        let mean: f64 = row.iter().zip(TRUE_W).map(|(x, w)| x * w).sum::<f64>() + TRUE_B;
        x_host.push(row);
        y_host.push(mean + TRUE_SIGMA * e[3]);
    }
    let flat: Vec<f64> = x_host.iter().flatten().copied().collect();
    let x = Tensor::from_vec(flat, (cfg.n, FEATURES), &cfg.device)?.to_dtype(cfg.dtype)?;
    let y = Tensor::from_slice(&y_host, cfg.n, &cfg.device)?.to_dtype(cfg.dtype)?;
    Ok(Data {
        x,
        y,
        x_host,
        y_host,
    })
}

/// The model and the guide, over one data set.
#[derive(Clone, Debug)]
pub struct Regression {
    x: Tensor,
    y: Tensor,
    zeros: Tensor,
    ones: Tensor,
    zero: Tensor,
    one: Tensor,
}

impl Regression {
    /// The model and guide of `data` (the priors' tensors are built once, here).
    pub fn new(data: &Data) -> Result<Self> {
        let (dt, dev) = (data.x.dtype(), data.x.device());
        Ok(Self {
            x: data.x.clone(),
            y: data.y.clone(),
            zeros: Tensor::zeros(FEATURES, dt, dev)?,
            ones: Tensor::ones(FEATURES, dt, dev)?,
            zero: Tensor::zeros((), dt, dev)?,
            one: Tensor::ones((), dt, dev)?,
        })
    }

    /// The model: priors on `w`, `b`, `sigma`; `y_i ~ Normal(x_i · w + b, sigma)` in a plate
    /// of `n`. Written with broadcasting (`(x * w).sum(-1)`), so it also runs with
    /// vectorised particles, where `w` has a leading particle dim.
    pub fn model(&self, ctx: &mut Ctx<'_>) -> Result<()> {
        let w = ctx.sample("w", Normal::new(&self.zeros, &self.ones)?.to_event(1)?)?;
        let b = ctx.sample("b", Normal::new(&self.zero, &self.one)?)?;
        let sigma = ctx.sample("sigma", HalfNormal::new(&self.one)?)?;
        let mean = self
            .x
            .broadcast_mul(&w)?
            .sum(D::Minus1)?
            .broadcast_add(&b)?;
        ctx.plate("data", self.y.dim(0)?, |ctx| {
            ctx.observe("y", Normal::new(&mean, &sigma)?, &self.y)
        })?;
        Ok(())
    }

    /// The mean-field guide: independent Normal, Normal and LogNormal factors, their scales
    /// constrained positive. Locations start at 0, scales at 0.1.
    pub fn guide(&self, ctx: &mut Ctx<'_>) -> Result<()> {
        let small = |t: &Tensor| t * 0.1;
        let w_loc = ctx.param("w_loc", &self.zeros, Constraint::Real)?;
        let w_scale = ctx.param_with("w_scale", || small(&self.ones), Constraint::Positive)?;
        ctx.sample("w", Normal::new(&w_loc, &w_scale)?.to_event(1)?)?;
        let b_loc = ctx.param("b_loc", &self.zero, Constraint::Real)?;
        let b_scale = ctx.param_with("b_scale", || small(&self.one), Constraint::Positive)?;
        ctx.sample("b", Normal::new(&b_loc, &b_scale)?)?;
        let s_loc = ctx.param("sigma_loc", &self.zero, Constraint::Real)?;
        let s_scale = ctx.param_with("sigma_scale", || small(&self.one), Constraint::Positive)?;
        ctx.sample("sigma", LogNormal::new(&s_loc, &s_scale)?)?;
        Ok(())
    }
}

/// A posterior mean and standard deviation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// The mean.
    pub mean: f64,
    /// The standard deviation.
    pub sd: f64,
}

/// The fitted guide's marginals.
#[derive(Clone, Debug)]
pub struct Posterior {
    /// Each weight's mean and sd.
    pub w: Vec<Summary>,
    /// The bias's.
    pub b: Summary,
    /// The noise scale's (the LogNormal's mean and sd, not its `loc`/`scale`).
    pub sigma: Summary,
}

/// What [`fit`] returns.
#[derive(Debug)]
pub struct Fit {
    /// The fitted guide's marginals.
    pub posterior: Posterior,
    /// The loss (−ELBO) of every step.
    pub losses: Vec<f64>,
    /// The last step's report: per-site KL and log-likelihood terms, with the traces.
    pub report: StepReport,
}

fn summaries(d: &dyn Distribution) -> Result<Vec<Summary>> {
    let host = |t: Tensor| -> Result<Vec<f64>> {
        Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
    };
    let mean = host(d.mean()?)?;
    let sd = host(d.variance()?.sqrt()?)?;
    Ok(mean
        .into_iter()
        .zip(sd)
        .map(|(mean, sd)| Summary { mean, sd })
        .collect())
}

/// Runs `cfg.steps` SVI steps of [`Regression`] on `data` with [`TraceMeanFieldElbo`] and
/// `ClippedAdam` (learning rate decaying geometrically from `cfg.lr` to `cfg.final_lr`), and
/// summarises the fitted guide.
pub fn fit(data: &Data, cfg: &Config) -> Result<Fit> {
    let reg = Regression::new(data)?;
    let steps = cfg.steps.max(1);
    let optimizer = ClippedAdam::empty(ClippedAdamOptions {
        lr: cfg.lr,
        lrd: (cfg.final_lr / cfg.lr).powf(1.0 / steps as f64),
        ..Default::default()
    })?;
    let elbo = TraceMeanFieldElbo::new()
        .num_particles(cfg.particles)
        .vectorize_particles(cfg.particles > 1);
    let mut svi = Svi::new(
        |ctx: &mut Ctx<'_>| reg.model(ctx),
        |ctx: &mut Ctx<'_>| reg.guide(ctx),
        optimizer,
        elbo,
    )
    .seed(cfg.svi_seed);
    let mut losses = Vec::with_capacity(steps);
    let mut report = svi.step()?;
    losses.push(report.loss);
    for _ in 1..steps {
        report = svi.step()?;
        losses.push(report.loss);
    }
    let get = |name: &str| -> Result<Tensor> {
        svi.store()
            .get(name)?
            .ok_or_else(|| InferError::Invalid(format!("parameter `{name}` is not in the store")))
    };
    let w = summaries(&Normal::new(&get("w_loc")?, &get("w_scale")?)?)?;
    let b = summaries(&Normal::new(&get("b_loc")?, &get("b_scale")?)?)?;
    let sigma = summaries(&LogNormal::new(&get("sigma_loc")?, &get("sigma_scale")?)?)?;
    let (Some(&b), Some(&sigma)) = (b.first(), sigma.first()) else {
        return Err(InferError::Invalid("empty posterior summary".into()));
    };
    Ok(Fit {
        posterior: Posterior { w, b, sigma },
        losses,
        report,
    })
}

/// What the fit should find, computed exactly on the host.
#[derive(Clone, Debug)]
pub struct Reference {
    /// Least squares: estimates of `w0, w1, w2, b` with their standard errors.
    pub ols: Vec<Summary>,
    /// The residual standard deviation `sqrt(RSS / (n − 4))`.
    pub sigma_hat: f64,
    /// The exact posterior of `w0, w1, w2, b` under the model's `N(0, 1)` priors, given
    /// `sigma = sigma_hat`: Gaussian with precision `Λ = I + ZᵀZ / σ̂²` (`Z = [X, 1]`); means
    /// and marginal sds.
    pub exact: Vec<Summary>,
    /// The sds the best mean-field Gaussian of that posterior has: `1 / sqrt(Λ_ii)` (smaller
    /// than the marginal sds where the features are correlated).
    pub mean_field_sd: Vec<f64>,
}

const P: usize = FEATURES + 1;

/// The inverse of a symmetric positive-definite matrix, by Gauss–Jordan elimination.
fn invert(mut a: [[f64; P]; P]) -> Result<[[f64; P]; P]> {
    let mut inv = [[0.0; P]; P];
    for (i, row) in inv.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for c in 0..P {
        let pivot = a[c][c];
        if pivot.abs() < 1e-12 {
            return Err(InferError::Invalid(
                "the design matrix is singular: no least-squares reference".into(),
            ));
        }
        for k in 0..P {
            a[c][k] /= pivot;
            inv[c][k] /= pivot;
        }
        for r in (0..P).filter(|&r| r != c) {
            let f = a[r][c];
            for k in 0..P {
                a[r][k] -= f * a[c][k];
                inv[r][k] -= f * inv[c][k];
            }
        }
    }
    Ok(inv)
}

fn mat_vec(a: &[[f64; P]; P], v: &[f64; P]) -> [f64; P] {
    std::array::from_fn(|i| (0..P).map(|k| a[i][k] * v[k]).sum())
}

/// Least squares and the exact conditional posterior of the coefficients (see
/// [`Reference`]). Errors when the design matrix is singular (`n < 4`, collinear features).
///
/// ```
/// let data = regression::synthetic(&regression::Config::default())?;
/// let r = regression::reference(&data)?;
/// assert!((r.ols[3].mean - regression::TRUE_B).abs() < 4.0 * r.ols[3].sd);
/// # Ok::<(), vi_infer::InferError>(())
/// ```
pub fn reference(data: &Data) -> Result<Reference> {
    let n = data.y_host.len();
    let mut ztz = [[0.0; P]; P];
    let mut zty = [0.0; P];
    for (x, y) in data.x_host.iter().zip(&data.y_host) {
        let z: [f64; P] = std::array::from_fn(|i| if i < FEATURES { x[i] } else { 1.0 });
        for i in 0..P {
            zty[i] += z[i] * y;
            for j in 0..P {
                ztz[i][j] += z[i] * z[j];
            }
        }
    }
    if n <= P {
        return Err(InferError::Invalid(format!(
            "{n} rows: least squares needs more than {P}"
        )));
    }
    let ztz_inv = invert(ztz)?;
    let beta = mat_vec(&ztz_inv, &zty);
    let rss: f64 = data
        .x_host
        .iter()
        .zip(&data.y_host)
        .map(|(x, y)| {
            let fit: f64 = (0..FEATURES).map(|i| x[i] * beta[i]).sum::<f64>() + beta[FEATURES];
            (y - fit).powi(2)
        })
        .sum();
    let s2 = rss / (n - P) as f64;
    let ols = (0..P)
        .map(|i| Summary {
            mean: beta[i],
            sd: (s2 * ztz_inv[i][i]).sqrt(),
        })
        .collect();
    let mut precision = ztz.map(|row| row.map(|v| v / s2));
    for (i, row) in precision.iter_mut().enumerate() {
        row[i] += 1.0;
    }
    let cov = invert(precision)?;
    let mean = mat_vec(&cov, &zty.map(|v| v / s2));
    Ok(Reference {
        ols,
        sigma_hat: s2.sqrt(),
        exact: (0..P)
            .map(|i| Summary {
                mean: mean[i],
                sd: cov[i][i].sqrt(),
            })
            .collect(),
        mean_field_sd: (0..P).map(|i| precision[i][i].powf(-0.5)).collect(),
    })
}
