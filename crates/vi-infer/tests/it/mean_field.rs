//! `TraceMeanFieldElbo`'s choice per site: analytic KL where the pair has a closed form and
//! the model and guide agree on plates, scale and mask; the Monte Carlo term otherwise.

use candle_core::{DType, Device, Tensor};
use vi_dist::{Cauchy, Constraint, Distribution, Normal};
use vi_infer::{Ctx, ElboOutput, TermKind, TraceMeanFieldElbo};

use crate::common::{Res, elbo_output, max_abs_diff, t};

/// `TraceMeanFieldElbo` of `model` and `guide` on the CPU in f64, the generator seeded with
/// `seed`.
fn mean_field(
    seed: u64,
    model: impl FnMut(&mut Ctx) -> vi_infer::Result<()>,
    guide: impl FnMut(&mut Ctx) -> vi_infer::Result<()>,
) -> vi_infer::Result<ElboOutput> {
    elbo_output(
        &TraceMeanFieldElbo::new(),
        &Device::Cpu,
        DType::F64,
        seed,
        model,
        guide,
    )
}

#[test]
fn no_closed_form_falls_back_to_monte_carlo() -> Res {
    // Guide Normal against a Cauchy prior: no closed form, so log q(z) − log p(z) at the draw.
    // (Batch dim 2 in a plate: a batch dim outside any plate is a SiteShape error.)
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("p", 2, |ctx| {
            ctx.sample("z", Cauchy::new(&t(&[0.0, 1.0]), &t(&[1.0, 2.0]))?)
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let loc = ctx.param("loc", &t(&[0.5, 0.5]), Constraint::Real)?;
        ctx.plate("p", 2, |ctx| {
            ctx.sample("z", Normal::new(&loc, &t(&[1.0, 1.0]))?)
        })?;
        Ok(())
    };
    let out = mean_field(0, model, guide)?;
    let term = &out.sites[0];
    assert_eq!(term.kind, TermKind::KlMonteCarlo);
    let z = &out.guide_trace.get("z").unwrap().value;
    let q = Normal::new(&t(&[0.5, 0.5]), &t(&[1.0, 1.0]))?;
    let p = Cauchy::new(&t(&[0.0, 1.0]), &t(&[1.0, 2.0]))?;
    let want = (q.log_prob(z)? - p.log_prob(z)?)?;
    assert!(max_abs_diff(&term.value, &want) < 1e-12);
    Ok(())
}

#[test]
fn disagreeing_scales_use_monte_carlo_with_each_sides_scale() -> Res {
    // The model scores z in a subsampled plate (scale 4); the guide samples the same z in
    // the same plate under `scale(0.5)` (scale 2). Pyro would scale the analytic KL by the
    // guide's scale alone; we take 2 log q(z) − 4 log p(z) at the draw.
    let data = t(&[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]);
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate_subsample("data", 8, 2, |ctx, idx| {
            let z = ctx.sample("z", Normal::new(&t(&[0.0, 0.0]), &t(&[1.0, 1.0]))?)?;
            ctx.observe(
                "x",
                Normal::new(&z, &t(&[1.0, 1.0]))?,
                &data.index_select(idx, 0)?,
            )
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate_subsample("data", 8, 2, |ctx, _| {
            ctx.scale(0.5, |ctx| {
                ctx.sample("z", Normal::new(&t(&[0.3, -0.3]), &t(&[0.5, 0.5]))?)
            })
        })?;
        Ok(())
    };
    let out = mean_field(1, model, guide)?;
    let term = out.sites.iter().find(|s| s.name == "z").unwrap();
    assert_eq!(term.kind, TermKind::KlMonteCarlo);
    let z = &out.guide_trace.get("z").unwrap().value;
    let q = Normal::new(&t(&[0.3, -0.3]), &t(&[0.5, 0.5]))?;
    let p = Normal::new(&t(&[0.0, 0.0]), &t(&[1.0, 1.0]))?;
    let want = ((q.log_prob(z)? * 2.0)? - (p.log_prob(z)? * 4.0)?)?;
    assert!(max_abs_diff(&term.value, &want) < 1e-12);
    Ok(())
}

#[test]
fn agreeing_sites_use_the_analytic_kl_scaled() -> Res {
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate_subsample("data", 8, 2, |ctx, _| {
            ctx.sample("z", Normal::new(&t(&[0.0]), &t(&[1.0]))?)
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate_subsample("data", 8, 2, |ctx, _| {
            ctx.sample("z", Normal::new(&t(&[0.3]), &t(&[0.5]))?)
        })?;
        Ok(())
    };
    let out = mean_field(1, model, guide)?;
    let term = &out.sites[0];
    assert_eq!(term.kind, TermKind::KlAnalytic);
    // KL(N(0.3, 0.5) ‖ N(0, 1)) = ln 2 + (0.25 + 0.09) / 2 − 1/2, times 8 / 2.
    let kl = 2f64.ln() + 0.34 / 2.0 - 0.5;
    assert_eq!(term.value.dims(), &[2]);
    for v in vi_test::to_vec(&term.value)? {
        assert!((v - 4.0 * kl).abs() < 1e-12);
    }
    Ok(())
}

#[test]
fn masked_guide_and_model_mask_the_kl() -> Res {
    let mask = Tensor::new(&[1u8, 0, 1], &Device::Cpu)?;
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("p", 3, |ctx| {
            ctx.mask(&mask, |ctx| {
                ctx.sample(
                    "z",
                    Normal::new(&t(&[0.0, 0.0, 0.0]), &t(&[1.0, 1.0, 1.0]))?,
                )
            })
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("p", 3, |ctx| {
            ctx.mask(&mask, |ctx| {
                ctx.sample(
                    "z",
                    Normal::new(&t(&[0.3, 0.3, 0.3]), &t(&[0.5, 0.5, 0.5]))?,
                )
            })
        })?;
        Ok(())
    };
    let out = mean_field(1, model, guide)?;
    let term = &out.sites[0];
    assert_eq!(term.kind, TermKind::KlAnalytic);
    let kl = 2f64.ln() + 0.34 / 2.0 - 0.5;
    let v = vi_test::to_vec(&term.value)?;
    assert!(
        (v[0] - kl).abs() < 1e-12 && v[1] == 0.0 && (v[2] - kl).abs() < 1e-12,
        "{v:?}"
    );
    Ok(())
}

/// `TransformedDistribution`s through the same chain on both sides: the closed form of the
/// bases (`vi-kl`'s rule); through different chains, or against another family: no closed
/// form, so the Monte Carlo term `log q(z) − log p(z)` with the Jacobians in both densities.
#[test]
fn transformed_sites_use_the_closed_form_only_through_the_same_chain() -> Res {
    use vi_dist::transforms::{Exp, Softplus};
    use vi_dist::{Gamma, Transform, TransformedDistribution};
    type Chain = fn() -> Box<dyn Transform>;
    let through = |loc: &[f64], scale: &[f64], chain: Chain| {
        TransformedDistribution::new(Box::new(Normal::new(&t(loc), &t(scale))?), vec![chain()])
    };
    let exp: Chain = || Box::new(Exp);
    let softplus: Chain = || Box::new(Softplus);
    let prior = |chain: Chain| through(&[0.0, 1.0], &[1.0, 2.0], chain);
    let posterior = || through(&[0.3, 0.5], &[0.5, 1.5], exp);
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("p", 2, |ctx| ctx.sample("z", posterior()?))?;
        Ok(())
    };
    // the same chain: KL(N(0.3, 0.5) ‖ N(0, 1)) and KL(N(0.5, 1.5) ‖ N(1, 2))
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("p", 2, |ctx| ctx.sample("z", prior(exp)?))?;
        Ok(())
    };
    let out = mean_field(2, model, guide)?;
    let term = &out.sites[0];
    assert_eq!(term.kind, TermKind::KlAnalytic);
    let kl = |sp: f64, sq: f64, d: f64| (sq / sp).ln() + (sp * sp + d * d) / (2.0 * sq * sq) - 0.5;
    let want = t(&[kl(0.5, 1.0, 0.3), kl(1.5, 2.0, -0.5)]);
    assert!(max_abs_diff(&term.value, &want) < 1e-12);
    // another chain, and another family with the same support: Monte Carlo at the draw
    let q = posterior()?;
    for (name, p) in [
        (
            "softplus",
            Box::new(prior(softplus)?) as Box<dyn Distribution>,
        ),
        (
            "gamma",
            Box::new(Gamma::new(&t(&[2.0, 3.0]), &t(&[1.0, 1.0]))?),
        ),
    ] {
        let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
            ctx.plate("p", 2, |ctx| ctx.sample_boxed("z", p.clone()))?;
            Ok(())
        };
        let out = mean_field(3, model, guide)?;
        let term = &out.sites[0];
        assert_eq!(term.kind, TermKind::KlMonteCarlo, "{name}");
        let z = &out.guide_trace.get("z").unwrap().value;
        let want = (q.log_prob(z)? - p.log_prob(z)?)?;
        assert!(max_abs_diff(&term.value, &want) < 1e-12, "{name}");
    }
    Ok(())
}
