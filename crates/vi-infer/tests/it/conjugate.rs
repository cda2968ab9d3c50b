//! Pyro's conjugate-model inference tests (`tests/infer/test_inference.py`, pyro-ppl/pyro at
//! ff6ae1c, 2024-10), ported: each model has an exact posterior in the guide's family; SVI
//! trains the guide from Pyro's starting point (offset from the answer) and the trained
//! parameters must land on the exact posterior within Pyro's own tolerance (`prec`), with
//! Pyro's data, priors and starting offsets. Reparameterised guides and, where Pyro runs
//! them, the same guides without `rsample` (Pyro's `fakes.Nonreparameterized*`, here
//! `.without_rsample()`), so that `TraceElbo` takes its score-function path.
//!
//! What changed, to run in seconds in a debug build where Pyro runs 3 000 – 25 000 steps at
//! learning rates 2e-4 – 1e-3:
//! - fewer steps (500 – 2 000) at Adam learning rate 1e-2 (5e-3 in one case), decaying
//!   geometrically over the run (to a tenth – a thousandth), with Pyro's betas;
//! - Pyro's long one-particle runs average the gradient noise over many steps; where a short
//!   run needs the same averaging, each step averages vectorised particles instead (each
//!   case says how many). The one-particle score-function runs land anywhere within ±0.1 of
//!   the answer on Bernoulli–Beta even at Pyro's own 10 000 steps (measured over seeds), so
//!   particles are what makes those cases hold by a margin rather than by a lucky seed;
//! - every case is seeded (seed 0). Each was also run on seeds 0–7 with its final schedule:
//!   all pass, the worst using 67% of Pyro's tolerance (Gamma and Beta cases) and 81% of the
//!   tightened Normal–Normal bound below.
//!
//! Where Pyro's tolerance already holds at the starting point (Normal–Normal: its offsets
//! 0.134 and −0.14 give squared errors 0.036 and 0.039 against `prec` 0.05), a tenth of
//! the starting error is required as well, so that the case can fail.
//!
//! `RenyiELBO` rows (`RenyiElbo`): every one of `NormalNormalTests`, `PoissonGammaTests`,
//! `BernoulliBetaTests` and `test_exponential_gamma`, and `test_sequential_plating_sum`,
//! `test_non_nested_plating_sum` (one step runs, as Pyro's). For a guide without `rsample`
//! vi's `RenyiElbo` follows the unbiased gradient of the bound (Pyro's is the weighted score
//! `alpha / (1 − alpha)`, zero for `alpha = 0`: Pyro's Normal–Normal row passes because its
//! start is within its tolerance); those rows here must also cut the starting error tenfold.
//! The `TraceGraph_ELBO` and `TraceEnum_ELBO` rows of `test_exponential_gamma` are
//! `TraceGraphElbo` and `TraceEnumElbo` (with nothing to enumerate, each is the
//! `Trace_ELBO` estimate through its own code path: the dependency-graph score function and
//! Dice's), each with and without `rsample`.
//!
//! Not ported, and why:
//! - no such objective in vi: `TraceTailAdaptive_ELBO` (`test_elbo_tail_adaptive`),
//!   `ReweightedWakeSleep` (every `test_rws_*` and the RWS rows of `test_exponential_gamma`),
//!   `Trace_MMD` (the `test_mmd_*` cases, `do_fit_prior_test`), `EnergyDistance`
//!   (`test_energy_distance_univariate`, `test_energy_distance_multivariate`);
//! - no rejection-sampler reparameterisation (`ShapeAugmentedGamma`): the "rsvi" rows of
//!   `test_exponential_gamma`;
//! - `test_reparam_stable`: vi has no Stable distribution and no `poutine.reparam`
//!   (`LatentStableReparam`). Its guide, `AutoDelta`, is in vi now; the model is not;
//! - the `Jit*` rows of `test_exponential_gamma`: no `torch.jit` (and Pyro marks them xfail,
//!   not run).
//!
//! `SafetyTests` (duplicate names, extra guide sites) are in `valid_models.rs`; the older
//! `LogNormalNormalTests` were removed from Pyro in 2018 and are not ported.

use candle_core::{Device, Tensor};
use vi_dist::{Bernoulli, Beta, Constraint, Distribution, Exponential, Gamma, Normal, Poisson};
use vi_infer::{
    Ctx, Elbo, RenyiElbo, Svi, TraceElbo, TraceEnumElbo, TraceGraphElbo, TraceMeanFieldElbo,
};
use vi_optim::{Adam, AdamOptions, ClippedAdam, ClippedAdamOptions};

use crate::common::{Res, assert_within_abs, host, normal_lp, s, t};

/// Adam with Pyro's betas for the case, at `lr`, decaying to `lr * end` over `steps`
/// (`end = 1`: constant, torch's Adam exactly).
fn adam(lr: f64, betas: (f64, f64), end: f64, steps: usize) -> ClippedAdam {
    ClippedAdam::empty(ClippedAdamOptions {
        lr,
        betas,
        lrd: end.powf(1.0 / steps as f64),
        // Gradients never come near this: no clipping, as torch's Adam (which Pyro uses).
        clip_norm: 1e6,
        ..Default::default()
    })
    .unwrap()
}

/// Trains with `sched` and returns the store's values of `names` (constrained).
fn train<M, G, E>(
    model: M,
    guide: G,
    elbo: E,
    sched: Schedule,
    names: &[&str],
) -> Res<Vec<Vec<f64>>>
where
    M: FnMut(&mut Ctx<'_>) -> vi_infer::Result<()>,
    G: FnMut(&mut Ctx<'_>) -> vi_infer::Result<()>,
    E: Elbo,
{
    let mut svi = Svi::new(model, guide, sched.optimizer(), elbo).seed(0);
    for _ in 0..sched.steps {
        svi.step()?;
    }
    let mut out = Vec::new();
    for n in names {
        out.push(host(&svi.store().get(n)?.expect("trained param")));
    }
    Ok(out)
}

/// Pyro's `param_mse`: the sum of squared differences.
fn sq_err(got: &[f64], want: &[f64]) -> f64 {
    got.iter().zip(want).map(|(g, w)| (g - w).powi(2)).sum()
}

/// How a case trains: `steps` steps of Adam at `lr` decaying to `lr * end`.
#[derive(Clone, Copy)]
struct Schedule {
    steps: usize,
    lr: f64,
    end: f64,
    betas: (f64, f64),
}

impl Schedule {
    fn new(steps: usize, lr: f64, end: f64) -> Self {
        Self {
            steps,
            lr,
            end,
            betas: (0.9, 0.999),
        }
    }

    fn betas(self, betas: (f64, f64)) -> Self {
        Self { betas, ..self }
    }

    fn optimizer(&self) -> ClippedAdam {
        adam(self.lr, self.betas, self.end, self.steps)
    }
}

/// Pyro's Adam betas in the Gamma and Beta cases.
const BETAS: (f64, f64) = (0.97, 0.999);

/// `TraceElbo` with `n` particles drawn at once, in a plate outside the model's one plate
/// (`max_plate_nesting = 1`, as Pyro's vectorised cases).
fn vectorized(n: usize) -> TraceElbo {
    TraceElbo::new()
        .num_particles(n)
        .vectorize_particles(true)
        .max_plate_nesting(1)
}

// Normal–Normal ----------------------------------------------------------------------------

/// `NormalNormalTests`: a 2-vector mean with prior precision 0.1 (prior mean [0, 0.5]),
/// four 2-vector observations with known noise precision [6, 4], in a plate. The guide is
/// `Normal(loc_q, exp(log_sig_q)).to_event(1)`.
const NN_LOC0: [f64; 2] = [0.0, 0.5];
const NN_LAM0: [f64; 2] = [0.1, 0.1];
const NN_LAM: [f64; 2] = [6.0, 4.0];
const NN_DATA: [[f64; 2]; 4] = [[-0.1, 0.3], [0.0, 0.4], [0.2, 0.5], [0.1, 0.7]];

/// The exact posterior: precision lam0 + n lam, mean (Σx lam + loc0 lam0) / precision; as
/// (mean, log sd).
fn nn_posterior() -> (Vec<f64>, Vec<f64>) {
    let n = NN_DATA.len() as f64;
    let (mut loc, mut log_sig) = (Vec::new(), Vec::new());
    for j in 0..2 {
        let lam_n = NN_LAM0[j] + n * NN_LAM[j];
        let sum: f64 = NN_DATA.iter().map(|r| r[j]).sum();
        loc.push(sum * NN_LAM[j] / lam_n + NN_LOC0[j] * NN_LAM0[j] / lam_n);
        log_sig.push(-0.5 * lam_n.ln());
    }
    (loc, log_sig)
}

/// Trains the Normal–Normal guide and checks it: Pyro's check (squared errors within 0.05)
/// and a tenth of the starting squared errors (0.0036 for the mean, 0.0039 for the log sd).
fn normal_normal<E: Elbo>(reparameterized: bool, elbo: E, sched: Schedule) -> Res {
    let (loc_n, log_sig_n) = nn_posterior();
    let prior_sd: Vec<f64> = NN_LAM0.iter().map(|l| l.powf(-0.5)).collect();
    let noise_sd: Vec<f64> = NN_LAM.iter().map(|l| l.powf(-0.5)).collect();
    let (loc0, prior_sd, noise_sd) = (t(&NN_LOC0), t(&prior_sd), t(&noise_sd));
    let data = Tensor::new(&NN_DATA, &Device::Cpu)?;
    let model = |ctx: &mut Ctx| {
        let z = ctx.sample("loc_latent", Normal::new(&loc0, &prior_sd)?.to_event(1)?)?;
        ctx.plate("data", 4, |ctx| {
            ctx.observe("obs", Normal::new(&z, &noise_sd)?.to_event(1)?, &data)
        })?;
        Ok(())
    };
    let loc_init = (t(&loc_n) + 0.134)?;
    let log_sig_init = (t(&log_sig_n) - 0.14)?;
    let guide = |ctx: &mut Ctx| {
        let loc = ctx.param("loc_q", &loc_init, Constraint::Real)?;
        let sig = ctx
            .param("log_sig_q", &log_sig_init, Constraint::Real)?
            .exp()?;
        let q = Normal::new(&loc, &sig)?;
        if reparameterized {
            ctx.sample("loc_latent", q.to_event(1)?)?;
        } else {
            ctx.sample("loc_latent", q.without_rsample().to_event(1)?)?;
        }
        Ok(())
    };
    let got = train(model, guide, elbo, sched, &["loc_q", "log_sig_q"])?;
    let (loc_err, log_sig_err) = (sq_err(&got[0], &loc_n), sq_err(&got[1], &log_sig_n));
    let report = format!(
        "loc_q {:?} vs {loc_n:?} (squared error {loc_err:.5}), log_sig_q {:?} vs {log_sig_n:?} (squared error {log_sig_err:.5})",
        got[0], got[1]
    );
    assert!(
        loc_err <= 0.05 && log_sig_err <= 0.05,
        "Pyro's prec: {report}"
    );
    assert!(loc_err <= 0.0036 && log_sig_err <= 0.0039, "{report}");
    Ok(())
}

#[test]
fn normal_normal_elbo_reparameterized() -> Res {
    // Pyro: Trace_ELBO, 5000 steps at lr 1e-3.
    normal_normal(true, TraceElbo::new(), Schedule::new(500, 0.01, 0.1))
}

#[test]
fn normal_normal_elbo_analytic_kl() -> Res {
    // Pyro: TraceMeanField_ELBO, 3000 steps at lr 1e-3.
    normal_normal(
        true,
        TraceMeanFieldElbo::new(),
        Schedule::new(500, 0.01, 0.1),
    )
}

/// `RenyiElbo` of order `alpha` with `n` particles, vectorised or not (`max_plate_nesting`
/// 1 when vectorised, as Pyro's vectorised cases).
fn renyi(alpha: f64, n: usize, vectorize: bool) -> RenyiElbo {
    let e = RenyiElbo::new(alpha)
        .expect("alpha is not 1")
        .num_particles(n);
    if vectorize {
        e.vectorize_particles(true).max_plate_nesting(1)
    } else {
        e
    }
}

#[test]
fn normal_normal_renyi_reparameterized() -> Res {
    // Pyro: RenyiELBO(num_particles=3), sequential, 2500 steps at lr 1e-3. Here the same 3
    // particles, 2000 steps (the bound's gradient in the scale is weaker than the ELBO's:
    // 500 steps leave a third of the starting error).
    normal_normal(true, renyi(0.0, 3, false), Schedule::new(2000, 0.01, 0.05))
}

#[test]
fn normal_normal_renyi_nonreparameterized() -> Res {
    // Pyro: RenyiELBO(num_particles=3, vectorize_particles=True), 7500 steps at lr 1e-3 (its
    // gradient is zero here; its start passes its check). Here the same 3 particles, 2500
    // steps.
    normal_normal(false, renyi(0.0, 3, true), Schedule::new(2500, 0.01, 0.01))
}

#[test]
fn normal_normal_elbo_nonreparameterized() -> Res {
    // Pyro: Trace_ELBO with NonreparameterizedNormal, 15000 one-particle steps at lr 1e-3.
    // Here 64 vectorised particles, 1000 steps.
    normal_normal(false, vectorized(64), Schedule::new(1000, 0.01, 0.01))
}

// Poisson–Gamma ----------------------------------------------------------------------------

/// A Gamma guide or prior, without `rsample` unless `reparameterized`.
fn gamma(a: &Tensor, b: &Tensor, reparameterized: bool) -> vi_infer::Result<Box<dyn Distribution>> {
    let g = Gamma::new(a, b)?;
    Ok(if reparameterized {
        Box::new(g)
    } else {
        Box::new(g.without_rsample())
    })
}

/// `PoissonGammaTests`: rate ~ Gamma(1, 1), three Poisson counts [1, 2, 3] in a plate;
/// posterior Gamma(1 + 6, 1 + 3). The guide `Gamma(alpha_q, beta_q)` (positive params)
/// starts at (alpha_n + e^0.17, beta_n / e^0.143); Pyro's tolerances are 0.2 on alpha and
/// 0.15 on beta. Pyro's model samples the rate from the same (non-)reparameterised class as
/// the guide; so does this one.
fn poisson_gamma<E: Elbo>(reparameterized: bool, elbo: E, sched: Schedule) -> Res {
    let data = t(&[1.0, 2.0, 3.0]);
    let (alpha_n, beta_n) = (1.0 + 6.0, 1.0 + 3.0);
    let model = |ctx: &mut Ctx| {
        let rate = ctx.sample_boxed("lambda_latent", gamma(&s(1.0), &s(1.0), reparameterized)?)?;
        ctx.plate("data", 3, |ctx| {
            ctx.observe("obs", Poisson::new(&rate)?, &data)
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| {
        let a = ctx.param("alpha_q", &s(alpha_n + 0.17f64.exp()), Constraint::Positive)?;
        let b = ctx.param("beta_q", &s(beta_n / 0.143f64.exp()), Constraint::Positive)?;
        ctx.sample_boxed("lambda_latent", gamma(&a, &b, reparameterized)?)?;
        Ok(())
    };
    let got = train(model, guide, elbo, sched, &["alpha_q", "beta_q"])?;
    assert_within_abs("alpha_q", &got[0], &[alpha_n], 0.2);
    assert_within_abs("beta_q", &got[1], &[beta_n], 0.15);
    Ok(())
}

#[test]
fn poisson_gamma_elbo_reparameterized() -> Res {
    // Pyro: 10000 one-particle steps at lr 2e-4. Here 4 vectorised particles, 1000 steps.
    poisson_gamma(
        true,
        vectorized(4),
        Schedule::new(1000, 0.01, 0.01).betas(BETAS),
    )
}

#[test]
fn poisson_gamma_elbo_nonreparameterized() -> Res {
    // Pyro: NonreparameterizedGamma, 25000 one-particle steps at lr 2e-4. Here 64 vectorised
    // particles, 1500 steps.
    poisson_gamma(
        false,
        vectorized(64),
        Schedule::new(1500, 0.01, 0.01).betas(BETAS),
    )
}

#[test]
fn poisson_gamma_renyi_reparameterized() -> Res {
    // Pyro: RenyiELBO(num_particles=2), 5000 steps at lr 2e-4. Here the same 2 particles,
    // vectorised, 3000 steps.
    poisson_gamma(
        true,
        renyi(0.0, 2, true),
        Schedule::new(3000, 0.01, 0.01).betas(BETAS),
    )
}

#[test]
fn poisson_gamma_renyi_nonreparameterized() -> Res {
    // Pyro: RenyiELBO(alpha=0.2, num_particles=2), 12500 steps at lr 2e-4. Here 64
    // vectorised particles, 1500 steps.
    poisson_gamma(
        false,
        renyi(0.2, 64, true),
        Schedule::new(1500, 0.01, 0.01).betas(BETAS),
    )
}

// Exponential–Gamma ------------------------------------------------------------------------

/// `test_exponential_gamma`: rate ~ Gamma(1, 1), two Exponential observations [3, 2] in a
/// plate; posterior Gamma(1 + 2, 1 + 5). The guide starts at (alpha_n e^0.17, beta_n /
/// e^0.143); Pyro's tolerance is 0.2 with rsample, 0.25 without. Pyro's ELBO has
/// `max_plate_nesting = 1`, as `vectorized` does.
fn exponential_gamma<E: Elbo>(reparameterized: bool, elbo: E, sched: Schedule) -> Res {
    let data = t(&[3.0, 2.0]);
    let (alpha_n, beta_n) = (1.0 + 2.0, 1.0 + 5.0);
    let prec = if reparameterized { 0.2 } else { 0.25 };
    let model = |ctx: &mut Ctx| {
        let rate = ctx.sample_boxed("lambda_latent", gamma(&s(1.0), &s(1.0), reparameterized)?)?;
        ctx.plate("data", 2, |ctx| {
            ctx.observe("obs", Exponential::new(&rate)?, &data)
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| {
        let a = ctx.param("alpha_q", &s(alpha_n * 0.17f64.exp()), Constraint::Positive)?;
        let b = ctx.param("beta_q", &s(beta_n / 0.143f64.exp()), Constraint::Positive)?;
        ctx.sample_boxed("lambda_latent", gamma(&a, &b, reparameterized)?)?;
        Ok(())
    };
    let got = train(model, guide, elbo, sched, &["alpha_q", "beta_q"])?;
    assert_within_abs("alpha_q", &got[0], &[alpha_n], prec);
    assert_within_abs("beta_q", &got[1], &[beta_n], prec);
    Ok(())
}

#[test]
fn exponential_gamma_reparameterized() -> Res {
    // Pyro: 5000 one-particle steps at lr 3e-4. Here 4 vectorised particles, 1000 steps.
    exponential_gamma(
        true,
        vectorized(4),
        Schedule::new(1000, 0.01, 0.01).betas(BETAS),
    )
}

#[test]
fn exponential_gamma_nonreparameterized() -> Res {
    // Pyro: NonreparameterizedGamma, 10000 one-particle steps at lr 3e-4. Here 128 vectorised
    // particles, 2000 steps.
    exponential_gamma(
        false,
        vectorized(128),
        Schedule::new(2000, 0.01, 0.01).betas(BETAS),
    )
}

#[test]
fn exponential_gamma_renyi_reparameterized() -> Res {
    // Pyro: RenyiELBO(alpha=0.2, num_particles=3), 5000 steps at lr 3e-4. Here 8 vectorised
    // particles, 1000 steps.
    exponential_gamma(
        true,
        renyi(0.2, 8, true),
        Schedule::new(1000, 0.01, 0.01).betas(BETAS),
    )
}

#[test]
fn exponential_gamma_renyi_nonreparameterized() -> Res {
    // Pyro: RenyiELBO(alpha=0.2, num_particles=3), NonreparameterizedGamma, 10000 steps at lr
    // 3e-4. Here 128 vectorised particles, 2000 steps.
    exponential_gamma(
        false,
        renyi(0.2, 128, true),
        Schedule::new(2000, 0.01, 0.01).betas(BETAS),
    )
}

#[test]
fn exponential_gamma_tracegraph_reparameterized() -> Res {
    // Pyro: TraceGraph_ELBO, 5000 one-particle steps at lr 3e-4. Here 4 vectorised particles,
    // 1000 steps, as the TraceElbo row.
    exponential_gamma(
        true,
        TraceGraphElbo::new()
            .num_particles(4)
            .vectorize_particles(true)
            .max_plate_nesting(1),
        Schedule::new(1000, 0.01, 0.01).betas(BETAS),
    )
}

#[test]
fn exponential_gamma_tracegraph_nonreparameterized() -> Res {
    // Pyro: TraceGraph_ELBO, NonreparameterizedGamma, 10000 one-particle steps at lr 3e-4.
    // Here 128 vectorised particles, 2000 steps, as the TraceElbo row.
    exponential_gamma(
        false,
        TraceGraphElbo::new()
            .num_particles(128)
            .vectorize_particles(true)
            .max_plate_nesting(1),
        Schedule::new(2000, 0.01, 0.01).betas(BETAS),
    )
}

#[test]
fn exponential_gamma_traceenum_reparameterized() -> Res {
    // Pyro: TraceEnum_ELBO (nothing to enumerate: the Trace_ELBO estimate through its own
    // code path), 5000 one-particle steps at lr 3e-4. Here 4 vectorised particles, 1000
    // steps, as the TraceElbo row.
    exponential_gamma(
        true,
        TraceEnumElbo::new()
            .num_particles(4)
            .vectorize_particles(true)
            .max_plate_nesting(1),
        Schedule::new(1000, 0.01, 0.01).betas(BETAS),
    )
}

#[test]
fn exponential_gamma_traceenum_nonreparameterized() -> Res {
    // Pyro: TraceEnum_ELBO, NonreparameterizedGamma (its Dice score-function term), 10000
    // one-particle steps at lr 3e-4. Here 128 vectorised particles, 2000 steps, as the
    // TraceElbo row.
    exponential_gamma(
        false,
        TraceEnumElbo::new()
            .num_particles(128)
            .vectorize_particles(true)
            .max_plate_nesting(1),
        Schedule::new(2000, 0.01, 0.01).betas(BETAS),
    )
}

// Bernoulli–Beta ---------------------------------------------------------------------------

/// `BernoulliBetaTests`: p ~ Beta(1, 1), four coin flips [0, 1, 1, 1] in a plate; posterior
/// Beta(1 + 3, 1 + 1). The guide `Beta(exp(alpha_q_log), exp(beta_q_log))` starts at
/// (log alpha_n + 0.17, log beta_n − 0.143); Pyro's tolerance is 0.08 on each log.
fn bernoulli_beta<E: Elbo>(reparameterized: bool, elbo: E, sched: Schedule) -> Res {
    let data = t(&[0.0, 1.0, 1.0, 1.0]);
    let (log_alpha_n, log_beta_n) = (4.0f64.ln(), 2.0f64.ln());
    let beta = |a: &Tensor, b: &Tensor| -> vi_infer::Result<Box<dyn Distribution>> {
        let d = Beta::new(a, b)?;
        Ok(if reparameterized {
            Box::new(d)
        } else {
            Box::new(d.without_rsample())
        })
    };
    let model = |ctx: &mut Ctx| {
        let p = ctx.sample_boxed("p_latent", beta(&s(1.0), &s(1.0))?)?;
        ctx.plate("data", 4, |ctx| {
            ctx.observe("obs", Bernoulli::from_probs(&p)?, &data)
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| {
        let a = ctx.param("alpha_q_log", &s(log_alpha_n + 0.17), Constraint::Real)?;
        let b = ctx.param("beta_q_log", &s(log_beta_n - 0.143), Constraint::Real)?;
        ctx.sample_boxed("p_latent", beta(&a.exp()?, &b.exp()?)?)?;
        Ok(())
    };
    let got = train(model, guide, elbo, sched, &["alpha_q_log", "beta_q_log"])?;
    assert_within_abs("alpha_q_log", &got[0], &[log_alpha_n], 0.08);
    assert_within_abs("beta_q_log", &got[1], &[log_beta_n], 0.08);
    Ok(())
}

#[test]
fn bernoulli_beta_elbo_reparameterized() -> Res {
    // Pyro: 10000 one-particle steps at lr 1e-3. Here one particle, 2000 steps.
    bernoulli_beta(
        true,
        TraceElbo::new(),
        Schedule::new(2000, 0.01, 0.05).betas(BETAS),
    )
}

#[test]
fn bernoulli_beta_elbo_nonreparameterized() -> Res {
    // Pyro: NonreparameterizedBeta, 10000 one-particle steps at lr 1e-3. Here 4 particles one
    // after another (not vectorised, as Pyro's case), 1500 steps at lr 5e-3.
    let elbo = TraceElbo::new().num_particles(4);
    bernoulli_beta(false, elbo, Schedule::new(1500, 0.005, 0.02).betas(BETAS))
}

#[test]
fn bernoulli_beta_elbo_reparameterized_vectorized() -> Res {
    // Pyro: 2 vectorised particles (max_plate_nesting 1), 5000 steps at lr 1e-3: it guards
    // against a particle dim mixed up with the plate's. Here the same 2 particles, 1000 steps.
    bernoulli_beta(
        true,
        vectorized(2),
        Schedule::new(1000, 0.01, 0.1).betas(BETAS),
    )
}

#[test]
fn bernoulli_beta_elbo_nonreparameterized_vectorized() -> Res {
    // Pyro: NonreparameterizedBeta, 2 vectorised particles, 5000 steps at lr 1e-3. Here 16
    // vectorised particles, 1500 steps.
    bernoulli_beta(
        false,
        vectorized(16),
        Schedule::new(1500, 0.01, 0.01).betas(BETAS),
    )
}

#[test]
fn bernoulli_beta_renyi_reparameterized() -> Res {
    // Pyro: RenyiELBO(num_particles=2), 5000 steps at lr 1e-3. Here the same 2 particles
    // (sequential), 2000 steps.
    bernoulli_beta(
        true,
        renyi(0.0, 2, false),
        Schedule::new(2000, 0.01, 0.05).betas(BETAS),
    )
}

#[test]
fn bernoulli_beta_renyi_nonreparameterized() -> Res {
    // Pyro: RenyiELBO(alpha=0.2, num_particles=2), NonreparameterizedBeta, 5000 steps at lr
    // 1e-3. Here 16 vectorised particles, 1500 steps.
    bernoulli_beta(
        false,
        renyi(0.2, 16, true),
        Schedule::new(1500, 0.01, 0.01).betas(BETAS),
    )
}

#[test]
fn bernoulli_beta_renyi_reparameterized_vectorized() -> Res {
    // Pyro: 2 vectorised particles (max_plate_nesting 1), 5000 steps. Here the same, 1000
    // steps.
    bernoulli_beta(
        true,
        renyi(0.0, 2, true),
        Schedule::new(1000, 0.01, 0.1).betas(BETAS),
    )
}

#[test]
fn bernoulli_beta_renyi_nonreparameterized_vectorized() -> Res {
    // Pyro: alpha 0.2, 2 vectorised particles, NonreparameterizedBeta, 5000 steps. Here 16
    // vectorised particles, 1500 steps.
    bernoulli_beta(
        false,
        renyi(0.2, 16, true),
        Schedule::new(1500, 0.01, 0.01).betas(BETAS),
    )
}

/// `test_sequential_plating_sum` (Pyro issue 2361): a Bernoulli latent and ten observations
/// in a sequential plate (separate sites), IWAE with 30 vectorised particles: one step runs
/// with a finite loss.
#[test]
fn renyi_sequential_plating_sum() -> Res {
    let data: Vec<f64> = (0..10)
        .map(|i| {
            if i < 5 {
                0.1 * i as f64
            } else {
                1.0 + 0.1 * i as f64
            }
        })
        .collect();
    let model = |ctx: &mut Ctx| {
        let x = ctx.sample("x", Bernoulli::from_probs(&s(0.5))?)?;
        for (i, d) in data.iter().enumerate() {
            let obs = s(*d).broadcast_as(x.shape())?;
            ctx.observe(
                &format!("data_{i}"),
                Normal::new(&x, &(x.ones_like()? * 0.1)?)?,
                &obs,
            )?;
        }
        Ok(())
    };
    let guide = |ctx: &mut Ctx| {
        let p = ctx.param("p", &s(0.5), Constraint::UnitInterval)?;
        ctx.sample("x", Bernoulli::from_probs(&p)?)?;
        Ok(())
    };
    let mut svi = Svi::new(
        model,
        guide,
        adam(0.01, (0.9, 0.999), 1.0, 1),
        renyi(0.0, 30, true),
    )
    .seed(0);
    assert!(svi.step()?.loss.is_finite());
    Ok(())
}

/// `test_non_nested_plating_sum` (Pyro issue 2361): latents in one plate, data in two other
/// plates (no plate common to all sites), 30 vectorised particles: one step runs.
#[test]
fn renyi_non_nested_plating_sum() -> Res {
    let data = Tensor::new(
        &[
            [0.3f64, -0.2, 1.1],
            [0.5, 0.9, -1.0],
            [1.2, 0.1, 0.4],
            [-0.6, 0.8, 0.0],
            [0.2, 1.5, -0.3],
        ],
        &Device::Cpu,
    )?;
    let weights = Tensor::new(&[[0.4f64, -1.0, 0.7], [1.3, 0.2, -0.5]], &Device::Cpu)?;
    let model = |ctx: &mut Ctx| {
        let x = ctx.plate("x_plate", 2, |ctx| {
            ctx.sample("x", Normal::new(&s(1.0), &s(0.1))?)
        })?;
        // x: [P, 1, 2] (the particles at dim −3): x @ weights is [P, 1, 3].
        let loc = x.broadcast_matmul(&weights)?;
        ctx.plate_dim("data_plate_1", 3, -1, |ctx| {
            ctx.plate_dim("data_plate_2", 5, -2, |ctx| {
                ctx.observe("data", Normal::new(&loc, &s(0.1))?, &data)
            })
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| {
        let loc = ctx.param("x_loc", &s(0.5), Constraint::Real)?;
        ctx.plate("x_plate", 2, |ctx| {
            ctx.sample("x", Normal::new(&loc, &s(0.1))?)
        })?;
        Ok(())
    };
    let elbo = RenyiElbo::new(0.0)?
        .num_particles(30)
        .vectorize_particles(true)
        .max_plate_nesting(2);
    let mut svi = Svi::new(model, guide, adam(0.01, (0.9, 0.999), 1.0, 1), elbo).seed(0);
    assert!(svi.step()?.loss.is_finite());
    Ok(())
}

// Fixed parts ------------------------------------------------------------------------------

/// `TestFixedModelGuide`: a Poisson–Gamma model with learnable prior parameters
/// (`alpha_p_log`, `beta_p_log`) and a guide with its own (`alpha_q_log`, `beta_q_log`),
/// one observation [2] without a plate. Adam's per-parameter options set the learning rate
/// of the fixed side to 0 (Pyro's callable `optim_args`); after three steps the fixed side
/// is bit-for-bit unchanged and the free side has moved.
fn fixedness(model_fixed: bool, guide_fixed: bool) -> Res {
    let data = t(&[2.0]);
    let model = |ctx: &mut Ctx| {
        let a = ctx.param("alpha_p_log", &t(&[0.11]), Constraint::Real)?;
        let b = ctx.param("beta_p_log", &t(&[0.13]), Constraint::Real)?;
        let rate = ctx.sample("lambda_latent", Gamma::new(&a.exp()?, &b.exp()?)?)?;
        ctx.observe("obs", Poisson::new(&rate)?, &data)?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| {
        let a = ctx.param("alpha_q_log", &t(&[0.17]), Constraint::Real)?;
        let b = ctx.param("beta_q_log", &t(&[0.19]), Constraint::Real)?;
        ctx.sample("lambda_latent", Gamma::new(&a.exp()?, &b.exp()?)?)?;
        Ok(())
    };
    let adam = Adam::with_param_options(
        Vec::<(String, candle_core::Var)>::new(),
        AdamOptions {
            lr: 0.01,
            ..Default::default()
        },
        move |name, d| {
            let fixed =
                (model_fixed && name.contains("p_")) || (guide_fixed && name.contains("q_"));
            AdamOptions {
                lr: if fixed { 0.0 } else { d.lr },
                ..d.clone()
            }
        },
    )?;
    let mut svi = Svi::new(model, guide, adam, TraceElbo::new()).seed(0);
    for _ in 0..3 {
        svi.step()?;
    }
    let initial = [
        ("alpha_p_log", 0.11),
        ("beta_p_log", 0.13),
        ("alpha_q_log", 0.17),
        ("beta_q_log", 0.19),
    ];
    for (name, init) in initial {
        let now = host(&svi.store().get(name)?.unwrap())[0];
        let fixed = (model_fixed && name.contains("p_")) || (guide_fixed && name.contains("q_"));
        if fixed {
            assert_eq!(now, init, "{name} is fixed");
        } else {
            assert_ne!(now, init, "{name} is free");
        }
    }
    Ok(())
}

#[test]
fn fixed_model() -> Res {
    fixedness(true, false)
}

#[test]
fn fixed_guide() -> Res {
    fixedness(false, true)
}

#[test]
fn fixed_guide_and_model() -> Res {
    fixedness(true, true)
}

#[test]
fn guide_and_model_free() -> Res {
    // Pyro's case passes whatever happens (nothing is fixed, so nothing can be wrongly
    // changed); here every parameter must also have moved.
    fixedness(false, false)
}

// The score-function gradient, one draw ----------------------------------------------------

/// Pyro's `Trace_ELBO` surrogate for a guide site without `rsample` is `log p(x, z) + log
/// q(z) · stop(log r)`, with `log r = log p − log q` (its `score_parts` give such a site no
/// entropy term), so for one draw `z` the gradient of the loss in the guide's parameters is
/// `−log r(z) · ∇ log q(z)`. Checked on z ~ N(0, 1), x | z ~ N(z, 1) observed at 0.5, guide
/// N(loc, 1) without `rsample` at loc = 0.3, where `∇_loc log q(z) = z − loc`.
#[test]
fn score_function_gradient_of_one_draw_is_pyros() -> Res {
    use rand::SeedableRng;
    let mut model = |ctx: &mut Ctx| {
        let z = ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
        ctx.observe("x", Normal::new(&z, &s(1.0))?, &s(0.5))?;
        Ok(())
    };
    let mut guide = |ctx: &mut Ctx| {
        let loc = ctx.param("loc", &s(0.3), Constraint::Real)?;
        ctx.sample("z", Normal::new(&loc, &s(1.0))?.without_rsample())?;
        Ok(())
    };
    let mut store = vi_infer::ParamStore::new(&Device::Cpu, candle_core::DType::F64);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    for _ in 0..5 {
        let out = TraceElbo::new().compute(&mut model, &mut guide, &mut store, &mut rng)?;
        let z = out.guide_trace.get("z").unwrap().value.to_scalar::<f64>()?;
        let log_n = |x: f64, m: f64| normal_lp(x, m, 1.0);
        let log_r = log_n(z, 0.0) + log_n(0.5, z) - log_n(z, 0.3);
        let loss = out.loss.to_scalar::<f64>()?;
        assert!(
            (loss + log_r).abs() < 1e-12,
            "loss {loss} vs −log r {}",
            -log_r
        );
        let grads = out.surrogate.backward()?;
        let loc = store.unconstrained("loc").unwrap().as_tensor();
        let got = grads.get(loc).unwrap().to_scalar::<f64>()?;
        let pyro = -log_r * (z - 0.3);
        assert!(
            (got - pyro).abs() < 1e-12,
            "z = {z}: d loss / d loc is {got}; Pyro's surrogate gives −log r · (z − loc) = {pyro} (vi's differs by (z − loc) = {})",
            z - 0.3
        );
    }
    Ok(())
}
