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
//! and a guide ([`GuideKind`]): by default a mean-field guide written by hand,
//! `Normal(w_loc, w_scale).to_event(1)` for `w`, `Normal(b_loc, b_scale)` for `b` and
//! `LogNormal(sigma_loc, sigma_scale)` for `sigma`, the scales constrained positive; or the
//! automatic guides [`AutoNormal`] (the same family, built from the model) and
//! [`AutoMultivariateNormal`] (one correlated Normal over `w, b, log sigma`, which can match the
//! posterior's correlation of `w0` and `w2`). [`fit`] runs [`TraceMeanFieldElbo`] (closed-form
//! KL for `w` and `b`, a Monte Carlo KL for `sigma`, whose LogNormal–HalfNormal pair has no
//! closed form) with `ClippedAdam`, then draws the posterior predictive of a new point
//! [`X_NEW`] with [`Predictive`]; [`reference()`] computes what the fit should find: least
//! squares, the exact Gaussian posterior of `(w, b)` given `sigma`, and the exact predictive
//! interval at [`X_NEW`].
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
use vi_infer::autoguide::{AutoGuide, AutoMultivariateNormal, AutoNormal};
use vi_infer::candle::{D, DType, Device, Tensor};
use vi_infer::dist::{Constraint, Distribution, HalfNormal, LogNormal, Normal};
use vi_infer::optim::{ClippedAdam, ClippedAdamOptions};
use vi_infer::{Ctx, InferError, Predictive, Result, StepReport, Svi, TraceMeanFieldElbo};

/// The number of features.
pub const FEATURES: usize = 3;

/// The generating weights.
pub const TRUE_W: [f64; FEATURES] = [1.5, -2.0, 0.5];
/// The generating bias.
pub const TRUE_B: f64 = 0.8;
/// The generating noise scale.
pub const TRUE_SIGMA: f64 = 0.5;
/// The new point whose posterior predictive [`fit`] draws.
pub const X_NEW: [f64; FEATURES] = [1.0, -0.5, 0.8];
/// The standard normal's 95 % quantile: a 90 % interval is the mean ± this many sds.
pub const Z95: f64 = 1.644_853_626_951_472_2;

/// Which guide [`fit`] trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuideKind {
    /// The mean-field guide written by hand ([`Regression::guide`]).
    MeanField,
    /// [`AutoNormal`]: the same family, built from the model.
    AutoNormal,
    /// [`AutoMultivariateNormal`]: one correlated Normal over every latent (unconstrained).
    AutoMultivariateNormal,
}

impl GuideKind {
    /// Its name on the command line: `mean-field`, `auto-normal`, `auto-mvn`.
    pub fn name(self) -> &'static str {
        match self {
            GuideKind::MeanField => "mean-field",
            GuideKind::AutoNormal => "auto-normal",
            GuideKind::AutoMultivariateNormal => "auto-mvn",
        }
    }
}

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
    /// The guide.
    pub guide: GuideKind,
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
            guide: GuideKind::MeanField,
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
        Self::from_tensors(&data.x, &data.y)
    }

    /// The model and guide of features `x` `(n, FEATURES)` and responses `y` `(n,)`.
    pub fn from_tensors(x: &Tensor, y: &Tensor) -> Result<Self> {
        let (dt, dev) = (x.dtype(), x.device());
        Ok(Self {
            x: x.clone(),
            y: y.clone(),
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
    /// The posterior predictive of `y` at [`X_NEW`]: its 5 % and 95 % quantiles, from 4000
    /// draws of [`Predictive`] (parallel).
    pub predictive: (f64, f64),
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
/// `ClippedAdam` (learning rate decaying geometrically from `cfg.lr` to `cfg.final_lr`) and
/// the guide `cfg.guide`, summarises the fitted guide, and draws the posterior predictive at
/// [`X_NEW`].
pub fn fit(data: &Data, cfg: &Config) -> Result<Fit> {
    let reg = Regression::new(data)?;
    let model = |ctx: &mut Ctx<'_>| reg.model(ctx);
    match cfg.guide {
        GuideKind::MeanField => {
            let Trained {
                mut svi,
                losses,
                report,
            } = train(cfg, model, |ctx: &mut Ctx<'_>| reg.guide(ctx))?;
            let get = |name: &str| -> Result<Tensor> {
                svi.store().get(name)?.ok_or_else(|| {
                    InferError::Invalid(format!("parameter `{name}` is not in the store"))
                })
            };
            let w = summaries(&Normal::new(&get("w_loc")?, &get("w_scale")?)?)?;
            let b = summaries(&Normal::new(&get("b_loc")?, &get("b_scale")?)?)?;
            let sigma = summaries(&LogNormal::new(&get("sigma_loc")?, &get("sigma_scale")?)?)?;
            let (Some(&b), Some(&sigma)) = (b.first(), sigma.first()) else {
                return Err(InferError::Invalid("empty posterior summary".into()));
            };
            let predictive =
                predictive_interval(data, |ctx: &mut Ctx<'_>| reg.guide(ctx), svi.store_mut())?;
            Ok(Fit {
                posterior: Posterior { w, b, sigma },
                predictive,
                losses,
                report,
            })
        }
        GuideKind::AutoNormal => {
            let guide = AutoNormal::new(model);
            fit_auto(data, cfg, model, &guide, guide.as_fn())
        }
        GuideKind::AutoMultivariateNormal => {
            let guide = AutoMultivariateNormal::new(model);
            fit_auto(data, cfg, model, &guide, guide.as_fn())
        }
    }
}

/// An SVI run: the `Svi` (with its store), the losses and the last report.
struct Trained<M, G> {
    svi: Svi<M, G, ClippedAdam, TraceMeanFieldElbo>,
    losses: Vec<f64>,
    report: StepReport,
}

/// The SVI run of `cfg`.
fn train<M, G>(cfg: &Config, model: M, guide: G) -> Result<Trained<M, G>>
where
    M: FnMut(&mut Ctx<'_>) -> Result<()>,
    G: FnMut(&mut Ctx<'_>) -> Result<()>,
{
    let steps = cfg.steps.max(1);
    let optimizer = ClippedAdam::empty(ClippedAdamOptions {
        lr: cfg.lr,
        lrd: (cfg.final_lr / cfg.lr).powf(1.0 / steps as f64),
        ..Default::default()
    })?;
    let elbo = TraceMeanFieldElbo::new()
        .num_particles(cfg.particles)
        .vectorize_particles(cfg.particles > 1);
    let mut svi = Svi::new(model, guide, optimizer, elbo).seed(cfg.svi_seed);
    let mut losses = Vec::with_capacity(steps);
    let mut report = svi.step()?;
    losses.push(report.loss);
    for _ in 1..steps {
        report = svi.step()?;
        losses.push(report.loss);
    }
    Ok(Trained {
        svi,
        losses,
        report,
    })
}

/// Fits an automatic guide and summarises it from 20 000 draws of `sample_posterior`.
fn fit_auto(
    data: &Data,
    cfg: &Config,
    model: impl FnMut(&mut Ctx<'_>) -> Result<()>,
    guide: &dyn AutoGuide,
    guide_fn: impl FnMut(&mut Ctx<'_>) -> Result<()>,
) -> Result<Fit> {
    let Trained {
        mut svi,
        losses,
        report,
    } = train(cfg, model, guide_fn)?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.svi_seed ^ 0x5a5a);
    let draws = guide.sample_posterior(svi.store(), 20_000, &mut rng)?;
    let moments = |name: &str| -> Result<Vec<Summary>> {
        let t = draws
            .get(name)
            .ok_or_else(|| InferError::Invalid(format!("no draws of `{name}`")))?
            .to_dtype(DType::F64)?;
        let n = t.dims()[0];
        let t = t.reshape((n, ()))?;
        let mean = t.mean(0)?;
        let sd = t
            .broadcast_sub(&mean)?
            .sqr()?
            .sum(0)?
            .affine(1.0 / (n - 1) as f64, 0.0)?
            .sqrt()?;
        Ok(mean
            .to_vec1::<f64>()?
            .into_iter()
            .zip(sd.to_vec1::<f64>()?)
            .map(|(mean, sd)| Summary { mean, sd })
            .collect())
    };
    let w = moments("w")?;
    let (Some(&b), Some(&sigma)) = (moments("b")?.first(), moments("sigma")?.first()) else {
        return Err(InferError::Invalid("empty posterior summary".into()));
    };
    let predictive =
        predictive_interval(data, |ctx: &mut Ctx<'_>| guide.call(ctx), svi.store_mut())?;
    Ok(Fit {
        posterior: Posterior { w, b, sigma },
        predictive,
        losses,
        report,
    })
}

/// The 5 % and 95 % quantiles of 4000 posterior predictive draws of `y` at [`X_NEW`]: the
/// model over that one point (its `y` released by [`Predictive`]), the guide's draws replayed
/// into it.
fn predictive_interval(
    data: &Data,
    guide: impl FnMut(&mut Ctx<'_>) -> Result<()>,
    store: &mut vi_infer::ParamStore,
) -> Result<(f64, f64)> {
    let (dt, dev) = (data.x.dtype(), data.x.device());
    let x = Tensor::new(&[X_NEW], dev)?.to_dtype(dt)?;
    let y = Tensor::zeros(1, dt, dev)?; // a placeholder: released and drawn
    let new = Regression::from_tensors(&x, &y)?;
    let n = 4000;
    let draws = Predictive::with_guide(|ctx: &mut Ctx<'_>| new.model(ctx), guide)
        .num_samples(n)
        .return_sites(&["y"])
        .parallel(true)
        .seed(1)
        .run(store)?;
    let mut ys = draws["y"]
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    ys.sort_by(f64::total_cmp);
    let at = |q: f64| ys[((q * n as f64) as usize).min(n - 1)];
    Ok((at(0.05), at(0.95)))
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
    /// The exact posterior predictive of `y` at [`X_NEW`] (given `sigma = σ̂`): Gaussian,
    /// mean `zᵀμ` and sd `sqrt(zᵀΣz + σ̂²)` with `z = [X_NEW, 1]`.
    pub predictive: Summary,
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
        predictive: {
            let z: [f64; P] = std::array::from_fn(|i| if i < FEATURES { X_NEW[i] } else { 1.0 });
            let m: f64 = (0..P).map(|i| z[i] * mean[i]).sum();
            let v: f64 = (0..P)
                .map(|i| (0..P).map(|j| z[i] * cov[i][j] * z[j]).sum::<f64>())
                .sum();
            Summary {
                mean: m,
                sd: (v + s2).sqrt(),
            }
        },
    })
}
