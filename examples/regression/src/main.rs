//! Fits the Bayesian linear regression of the `regression` library and prints the posterior
//! next to the truth and the exact references, and each site's term of the last step.
//!
//! `cargo run --release -p regression [-- --steps N] [--particles N] [--seed S] [--f32]
//! [--guide mean-field|auto-normal|auto-mvn]`

use std::time::Instant;

use regression::{
    Config, GuideKind, Summary, TRUE_B, TRUE_SIGMA, TRUE_W, X_NEW, Z95, fit, reference, synthetic,
};
use vi_infer::TermKind;
use vi_infer::candle::DType;

fn parse_args() -> Result<Config, String> {
    let mut cfg = Config::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = args.next().ok_or(format!("{name} needs a value"))?;
            v.parse().map_err(|e| format!("{name} {v}: {e}"))
        };
        match flag.as_str() {
            "--steps" => cfg.steps = value("--steps")? as usize,
            "--particles" => cfg.particles = value("--particles")?.max(1) as usize,
            "--seed" => cfg.svi_seed = value("--seed")?,
            "--f32" => cfg.dtype = DType::F32,
            "--guide" => {
                let v = args.next().ok_or("--guide needs a value")?;
                cfg.guide = match v.as_str() {
                    "mean-field" => GuideKind::MeanField,
                    "auto-normal" => GuideKind::AutoNormal,
                    "auto-mvn" => GuideKind::AutoMultivariateNormal,
                    other => {
                        return Err(format!(
                            "--guide {other}: use mean-field, auto-normal or auto-mvn"
                        ));
                    }
                };
            }
            other => {
                return Err(format!(
                    "unknown argument {other}; use --steps N, --particles N, --seed S, --f32, \
                     --guide mean-field|auto-normal|auto-mvn"
                ));
            }
        }
    }
    Ok(cfg)
}

fn pm(s: &Summary) -> String {
    format!("{:>8.4} ± {:.4}", s.mean, s.sd)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = parse_args()?;
    let data = synthetic(&cfg)?;
    let exact = reference(&data)?;

    let start = Instant::now();
    let fitted = fit(&data, &cfg)?;
    let secs = start.elapsed().as_secs_f64();

    println!(
        "Bayesian linear regression: n = {}, {} features, guide {}, {} steps of \
         TraceMeanFieldElbo ({} particle{}) + ClippedAdam, {:?}",
        cfg.n,
        TRUE_W.len(),
        cfg.guide.name(),
        cfg.steps,
        cfg.particles,
        if cfg.particles == 1 { "" } else { "s" },
        cfg.dtype,
    );
    println!(
        "fit: {secs:.2} s ({:.2} ms/step); loss {:.1} (first step) -> {:.1} (mean of last 100)",
        1e3 * secs / cfg.steps.max(1) as f64,
        fitted.losses.first().copied().unwrap_or(f64::NAN),
        mean_tail(&fitted.losses, 100),
    );
    println!();
    println!(
        "{:<6} {:>7}  {:>18}  {:>18}  {:>18}  {:>9}",
        "site", "true", "SVI mean ± sd", "exact post. ± sd", "least sq. ± se", "MF-opt sd"
    );
    let post = &fitted.posterior;
    let rows = post.w.iter().chain([&post.b]).enumerate();
    for (i, s) in rows {
        let (name, truth) = if i < TRUE_W.len() {
            (format!("w[{i}]"), TRUE_W[i])
        } else {
            ("b".to_string(), TRUE_B)
        };
        println!(
            "{name:<6} {truth:>7.3}  {}  {}  {}  {:>9.4}",
            pm(s),
            pm(&exact.exact[i]),
            pm(&exact.ols[i]),
            exact.mean_field_sd[i],
        );
    }
    println!(
        "{:<6} {:>7.3}  {}  {:>18}  {:>8.4} (resid.)",
        "sigma",
        TRUE_SIGMA,
        pm(&post.sigma),
        "-",
        exact.sigma_hat,
    );
    println!(
        "(exact posterior: Gaussian given sigma = the residual sd; MF-opt sd: the sds of its \
         best mean-field approximation)"
    );
    println!();
    let (lo, hi) = fitted.predictive;
    let e = &exact.predictive;
    println!("posterior predictive of y at x = {X_NEW:?}, 90 % interval:");
    println!("  SVI (Predictive, 4000 draws) [{lo:.4}, {hi:.4}]");
    println!(
        "  exact                        [{:.4}, {:.4}]",
        e.mean - Z95 * e.sd,
        e.mean + Z95 * e.sd
    );

    println!();
    println!("last step's terms (report.site(name)):");
    let aux = format!("_{}_latent", "AutoMultivariateNormal");
    for name in ["w", "b", "sigma", "y", aux.as_str()] {
        let Some(term) = fitted.report.site(name) else {
            continue;
        };
        let value = term.sum.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let joint = cfg.guide == GuideKind::AutoMultivariateNormal;
        let what = match term.kind {
            TermKind::KlAnalytic if joint => {
                "log|Jacobian| - log p at the draw (a Delta of the joint latent)"
            }
            TermKind::KlAnalytic => "KL(q || p), closed form",
            TermKind::KlMonteCarlo => "KL(q || p), one-draw Monte Carlo estimate",
            TermKind::LogLikelihood => "log-likelihood",
            TermKind::Auxiliary => "log q of the joint latent (its -entropy)",
            TermKind::Marginalized => "log-likelihood, discrete latents summed out",
        };
        println!("  {name:<6} {value:>12.4}   {what}");
    }
    Ok(())
}

fn mean_tail(xs: &[f64], k: usize) -> f64 {
    let tail = &xs[xs.len().saturating_sub(k)..];
    tail.iter().sum::<f64>() / tail.len().max(1) as f64
}
