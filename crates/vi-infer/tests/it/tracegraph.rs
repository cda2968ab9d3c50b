//! `TraceGraphElbo`: its gradient against the exact gradient of enumerable discrete models
//! (within 4 standard errors, with and without baselines), its surrogate term by term, its
//! variance against `TraceElbo`'s (a chain of non-reparameterised latents; one site per data
//! point written as separate sites), the two ELBOs' agreement where a vectorised plate
//! separates the terms, and the baselines (decaying average, learned, neural, fixed; their
//! errors).
//!
//! The variance figures print with `cargo test -p vi-infer --test it -- tracegraph
//! --nocapture`.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::Module;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_dist::{Bernoulli, Categorical, Constraint, Distribution, Normal};
use vi_infer::{
    Baseline, Ctx, Elbo, InferError, ParamStore, SiteOptions, Svi, TraceElbo, TraceGraphElbo,
};
use vi_test::stats::mean_var;

use crate::common::{BoxedProgram, Res, adam, host, s};

/// The gradient of the surrogate of one `elbo.compute` w.r.t. the named parameters
/// (unconstrained), concatenated.
fn grads(
    elbo: &dyn Elbo,
    model: &mut BoxedProgram<'_>,
    guide: &mut BoxedProgram<'_>,
    store: &mut ParamStore,
    rng: &mut ChaCha8Rng,
    names: &[&str],
) -> vi_infer::Result<Vec<f64>> {
    let out = elbo.compute(model.as_mut(), guide.as_mut(), store, rng)?;
    let g = out.surrogate.backward()?;
    let mut all = Vec::new();
    for n in names {
        let v = store.unconstrained(n).expect("a parameter");
        all.extend(host(g.get(v.as_tensor()).expect("a gradient")));
    }
    Ok(all)
}

/// Mean and standard error of each component over `samples`.
fn mean_se(samples: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let n = samples.len() as f64;
    (0..samples[0].len())
        .map(|j| {
            let col: Vec<f64> = samples.iter().map(|s| s[j]).collect();
            let (m, v) = mean_var(&col);
            (m, (v / n).sqrt())
        })
        .unzip()
}

/// The total variance (the trace of the covariance) of the samples.
fn total_variance(samples: &[Vec<f64>]) -> f64 {
    (0..samples[0].len())
        .map(|j| {
            let col: Vec<f64> = samples.iter().map(|s| s[j]).collect();
            mean_var(&col).1
        })
        .sum()
}

/// Asserts each component of the mean of `samples` within 4 standard errors of `want`.
fn assert_unbiased(samples: &[Vec<f64>], want: &[f64], what: &str) {
    let (mean, se) = mean_se(samples);
    for j in 0..want.len() {
        let z = (mean[j] - want[j]).abs() / se[j];
        assert!(
            z < 4.0,
            "{what}[{j}]: {} ± {} vs exact {} ({z:.1} SE)",
            mean[j],
            se[j],
            want[j]
        );
    }
}

fn log_normal(x: f64, mu: f64) -> f64 {
    -0.5 * (x - mu).powi(2) - 0.5 * (2.0 * std::f64::consts::PI).ln()
}

// The chain z1 → z2 → x ----------------------------------------------------------------------

const X_CHAIN: f64 = 0.9;
/// Far from the guide's q(z1 = 1) ≈ 0.55: z1's terms are noisy, which only z1's score needs.
const P1: f64 = 0.05;
/// p(z2 = 1 | z1) = 0.3 + 0.5 z1.
const P2: [f64; 2] = [0.3, 0.8];
/// The guide's parameters: q(z1 = 1) = σ(a), q(z2 = 1 | z1) = σ(b + c z1).
const ABC: [f64; 3] = [0.2, -0.4, 0.7];

/// The chain's model and guide; the guide's sites take `options(name)`.
fn chain(
    dev: &Device,
    options: impl Fn(&str, &mut Ctx) -> vi_infer::Result<SiteOptions> + 'static,
) -> (BoxedProgram<'static>, BoxedProgram<'static>) {
    let d = dev.clone();
    let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let z1 = ctx.sample("z1", Bernoulli::from_probs(&Tensor::new(P1, &d)?)?)?;
        let p2 = ((&z1 * (P2[1] - P2[0]))? + P2[0])?;
        let z2 = ctx.sample("z2", Bernoulli::from_probs(&p2)?)?;
        let loc = ((&z2 * 2.0)? - 0.5)?;
        let x = Tensor::new(X_CHAIN, &d)?.broadcast_as(loc.shape())?;
        ctx.observe("x", Normal::new(&loc, &loc.ones_like()?)?, &x)?;
        Ok(())
    };
    let d = dev.clone();
    let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let a = ctx.param("a", &Tensor::new(ABC[0], &d)?, Constraint::Real)?;
        let b = ctx.param("b", &Tensor::new(ABC[1], &d)?, Constraint::Real)?;
        let c = ctx.param("c", &Tensor::new(ABC[2], &d)?, Constraint::Real)?;
        let o1 = options("z1", ctx)?;
        let z1 = ctx.sample_with("z1", Bernoulli::from_logits(&a)?, o1)?;
        let l2 = z1.broadcast_mul(&c)?.broadcast_add(&b)?;
        let o2 = options("z2", ctx)?;
        ctx.sample_with("z2", Bernoulli::from_logits(&l2)?, o2)?;
        Ok(())
    };
    (Box::new(model), Box::new(guide))
}

/// The exact gradient of the chain's loss w.r.t. (a, b, c), by enumeration and autograd.
fn chain_exact() -> Res<Vec<f64>> {
    let dev = Device::Cpu;
    let v = Var::new(&ABC, &dev)?;
    let p = v.as_tensor();
    let (a, b, c) = (p.get(0)?, p.get(1)?, p.get(2)?);
    let sig = |t: &Tensor| candle_nn::ops::sigmoid(t);
    let mut elbo = Tensor::new(0.0f64, &dev)?;
    for z1 in [0.0, 1.0] {
        let q1 = if z1 == 1.0 {
            sig(&a)?
        } else {
            (1.0 - sig(&a)?)?
        };
        let l2 = ((&c * z1)? + &b)?;
        for z2 in [0.0, 1.0] {
            let q2 = if z2 == 1.0 {
                sig(&l2)?
            } else {
                (1.0 - sig(&l2)?)?
            };
            let p1 = if z1 == 1.0 { P1 } else { 1.0 - P1 };
            let p2z = P2[z1 as usize];
            let p2 = if z2 == 1.0 { p2z } else { 1.0 - p2z };
            let lp = p1.ln() + p2.ln() + log_normal(X_CHAIN, 2.0 * z2 - 0.5);
            let q = (&q1 * &q2)?;
            let term = (&q * (((q1.log()? + q2.log()?)? * -1.0)? + lp)?)?;
            elbo = (elbo + term)?;
        }
    }
    let g = (elbo * -1.0)?.backward()?;
    Ok(host(g.get(p).expect("a gradient")))
}

/// A guide site's options, by site name.
type Opt = fn(&str, &mut Ctx) -> vi_infer::Result<SiteOptions>;

fn no_options(_: &str, _: &mut Ctx) -> vi_infer::Result<SiteOptions> {
    Ok(SiteOptions::new())
}

fn decaying(_: &str, _: &mut Ctx) -> vi_infer::Result<SiteOptions> {
    Ok(SiteOptions::new().baseline(Baseline::decaying_average(0.9)?))
}

/// A learned baseline per site: a parameter `{site}_b` (fixed during the gradient test:
/// nothing steps it, so it is a constant there).
fn learned(name: &str, ctx: &mut Ctx) -> vi_infer::Result<SiteOptions> {
    let b = ctx.param(&format!("{name}_b"), &s(-2.5), Constraint::Real)?;
    Ok(SiteOptions::new().baseline(Baseline::learned(b)))
}

fn fixed(_: &str, _: &mut Ctx) -> vi_infer::Result<SiteOptions> {
    Ok(SiteOptions::new().baseline(Baseline::fixed(s(-3.0))))
}

/// `draws` gradients of `elbo`, each from `particles` vectorised particles.
fn sample_grads(
    elbo: &dyn Elbo,
    programs: (BoxedProgram<'_>, BoxedProgram<'_>),
    names: &[&str],
    draws: usize,
    seed: u64,
) -> Res<Vec<Vec<f64>>> {
    let (mut model, mut guide) = programs;
    let mut store = ParamStore::new(&Device::Cpu, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(draws);
    for _ in 0..draws {
        out.push(grads(
            elbo, &mut model, &mut guide, &mut store, &mut rng, names,
        )?);
    }
    Ok(out)
}

#[test]
fn chain_gradient_is_exact_in_expectation() -> Res {
    let want = chain_exact()?;
    let dev = Device::Cpu;
    let names = ["a", "b", "c"];
    let cases: [(&str, Box<dyn Elbo>, Opt); 5] = [
        (
            "TraceElbo",
            Box::new(vec_elbo(TraceElbo::new())),
            no_options,
        ),
        ("TraceGraphElbo", Box::new(vec_graph()), no_options),
        ("TraceGraphElbo decaying", Box::new(vec_graph()), decaying),
        ("TraceGraphElbo learned", Box::new(vec_graph()), learned),
        ("TraceGraphElbo fixed", Box::new(vec_graph()), fixed),
    ];
    for (k, (what, elbo, opt)) in cases.into_iter().enumerate() {
        let samples = sample_grads(elbo.as_ref(), chain(&dev, opt), &names, 300, 7 + k as u64)?;
        assert_unbiased(&samples, &want, what);
    }
    Ok(())
}

/// 100 vectorised particles (max_plate_nesting 0: the programs have no plate).
fn vec_elbo(e: TraceElbo) -> TraceElbo {
    e.num_particles(100)
        .vectorize_particles(true)
        .max_plate_nesting(0)
}

fn vec_graph() -> TraceGraphElbo {
    TraceGraphElbo::new()
        .num_particles(100)
        .vectorize_particles(true)
        .max_plate_nesting(0)
}

/// The surrogate's gradient from one draw, term by term: z1's score times every term, z2's
/// times the terms from z2 on (its own, and `x`), less each site's fixed baseline.
#[test]
fn chain_surrogate_term_by_term() -> Res {
    let dev = Device::Cpu;
    let (mut model, mut guide) = chain(&dev, fixed);
    let mut store = ParamStore::new(&dev, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..8 {
        let out =
            TraceGraphElbo::new().compute(model.as_mut(), guide.as_mut(), &mut store, &mut rng)?;
        let g = out.surrogate.backward()?;
        let z1 = out
            .guide_trace
            .get("z1")
            .unwrap()
            .value
            .to_scalar::<f64>()?;
        let z2 = out
            .guide_trace
            .get("z2")
            .unwrap()
            .value
            .to_scalar::<f64>()?;
        let [a, b, c] = ABC;
        let sig = |t: f64| 1.0 / (1.0 + (-t).exp());
        let (q1, q2) = (sig(a), sig(b + c * z1));
        let lq1 = if z1 == 1.0 { q1.ln() } else { (1.0 - q1).ln() };
        let lq2 = if z2 == 1.0 { q2.ln() } else { (1.0 - q2).ln() };
        let lp1 = if z1 == 1.0 { P1.ln() } else { (1.0 - P1).ln() };
        let p2 = P2[z1 as usize];
        let lp2 = if z2 == 1.0 { p2.ln() } else { (1.0 - p2).ln() };
        let lx = log_normal(X_CHAIN, 2.0 * z2 - 0.5);
        let cost1 = lp1 + lp2 + lx - lq1 - lq2 + 3.0;
        let cost2 = lp2 + lx - lq2 + 3.0;
        // d log Bernoulli(z; σ(l)) / dl = z − σ(l)
        let want = [
            -(z1 - q1) * cost1,
            -(z2 - q2) * cost2,
            -(z2 - q2) * z1 * cost2,
        ];
        let got: Vec<f64> = ["a", "b", "c"]
            .iter()
            .map(|n| {
                g.get(store.unconstrained(n).unwrap().as_tensor())
                    .unwrap()
                    .to_scalar::<f64>()
            })
            .collect::<Result<_, _>>()?;
        for j in 0..3 {
            assert!(
                (got[j] - want[j]).abs() < 1e-12 * (1.0 + want[j].abs()),
                "{got:?} vs {want:?}"
            );
        }
    }
    Ok(())
}

/// A categorical latent per data point in a vectorised plate: z_i ~ Cat(π),
/// x_i ~ N(μ[z_i], 1); the guide's logits per point.
#[test]
fn categorical_gradient_is_exact_in_expectation() -> Res {
    const PI: [f64; 3] = [0.2, 0.5, 0.3];
    const MU: [f64; 3] = [-1.0, 0.5, 2.0];
    const XS: [f64; 2] = [1.2, -0.3];
    const L0: [[f64; 3]; 2] = [[0.1, -0.2, 0.4], [0.3, 0.0, -0.5]];
    let dev = Device::Cpu;
    let programs = |opts: Opt| {
        let d = dev.clone();
        let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let mu = Tensor::new(&MU, &d)?;
            let pi = Tensor::new(&PI, &d)?;
            ctx.plate("data", 2, |ctx| {
                let z = ctx.sample("z", Categorical::from_probs(&pi)?)?;
                let loc = mu.index_select(&z.flatten_all()?.to_dtype(DType::U32)?, 0)?;
                let loc = loc.reshape(z.shape())?;
                let x = Tensor::new(&XS, &d)?.broadcast_as(loc.shape())?;
                ctx.observe("x", Normal::new(&loc, &loc.ones_like()?)?, &x)
            })?;
            Ok(())
        };
        let d = dev.clone();
        let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let l = ctx.param("logits", &Tensor::new(&L0, &d)?, Constraint::Real)?;
            let o = opts("z", ctx)?;
            ctx.plate("data", 2, |ctx| {
                ctx.sample_with("z", Categorical::from_logits(&l)?, o)
            })?;
            Ok(())
        };
        (
            Box::new(model) as BoxedProgram<'static>,
            Box::new(guide) as BoxedProgram<'static>,
        )
    };
    // Exact: Σ_i Σ_k q_ik (log π_k + log N(x_i; μ_k, 1) − log q_ik).
    let v = Var::new(&L0, &dev)?;
    let lq = candle_nn::ops::log_softmax(v.as_tensor(), 1)?;
    let q = lq.exp()?;
    let mut lp = vec![];
    for x in XS {
        for k in 0..3 {
            lp.push(PI[k].ln() + log_normal(x, MU[k]));
        }
    }
    let lp = Tensor::from_vec(lp, (2, 3), &dev)?;
    let elbo = (q * (lp - lq)?)?.sum_all()?;
    let want = host(
        (elbo * -1.0)?
            .backward()?
            .get(v.as_tensor())
            .expect("a gradient"),
    );
    let plate_elbo = |e: TraceGraphElbo| {
        e.num_particles(100)
            .vectorize_particles(true)
            .max_plate_nesting(1)
    };
    let cases: [(&str, Box<dyn Elbo>, Opt); 3] = [
        (
            "TraceElbo",
            Box::new(
                TraceElbo::new()
                    .num_particles(100)
                    .vectorize_particles(true)
                    .max_plate_nesting(1),
            ),
            no_options,
        ),
        (
            "TraceGraphElbo",
            Box::new(plate_elbo(TraceGraphElbo::new())),
            no_options,
        ),
        (
            "TraceGraphElbo decaying",
            Box::new(plate_elbo(TraceGraphElbo::new())),
            decaying,
        ),
    ];
    for (k, (what, elbo, opts)) in cases.into_iter().enumerate() {
        let samples = sample_grads(
            elbo.as_ref(),
            programs(opts),
            &["logits"],
            300,
            20 + k as u64,
        )?;
        assert_unbiased(&samples, &want, what);
    }
    Ok(())
}

// Variance ------------------------------------------------------------------------------------

/// The variance of the chain's gradient: `TraceElbo` over `TraceGraphElbo`, per parameter
/// group; z2's parameters (b, c) gain, z1's (a) cannot (every term is downstream of z1).
#[test]
fn chain_variance_is_lower() -> Res {
    let dev = Device::Cpu;
    let draws = 400;
    let one = |e: Box<dyn Elbo>, opt: Opt, seed| {
        sample_grads(e.as_ref(), chain(&dev, opt), &["a", "b", "c"], draws, seed)
    };
    let per_particle = |e: TraceGraphElbo| {
        e.num_particles(10)
            .vectorize_particles(true)
            .max_plate_nesting(0)
    };
    let trace = one(
        Box::new(
            TraceElbo::new()
                .num_particles(10)
                .vectorize_particles(true)
                .max_plate_nesting(0),
        ),
        no_options,
        1,
    )?;
    let graph = one(Box::new(per_particle(TraceGraphElbo::new())), no_options, 2)?;
    let graph_avg = one(Box::new(per_particle(TraceGraphElbo::new())), decaying, 3)?;
    let var = |s: &[Vec<f64>], j: usize| mean_var(&s.iter().map(|g| g[j]).collect::<Vec<_>>()).1;
    let bc = |s: &[Vec<f64>]| var(s, 1) + var(s, 2);
    let ratio = bc(&trace) / bc(&graph);
    let ratio_avg = bc(&trace) / bc(&graph_avg);
    let ratio_a = var(&trace, 0) / var(&graph, 0);
    println!(
        "chain z1 → z2 → x: Var TraceElbo / Var TraceGraphElbo: z2's params {ratio:.2}, with a \
         decaying-average baseline {ratio_avg:.2}; z1's param {ratio_a:.2} (no baseline)"
    );
    assert!(ratio > 1.3, "ratio {ratio}");
    assert!(ratio_avg > ratio, "{ratio_avg} vs {ratio}");
    // z1's score multiplies the same terms in both: the ratio is 1 within its sampling error
    // (400 draws: the variance estimates are within ±15% or so).
    assert!((0.7..1.4).contains(&ratio_a), "ratio for a: {ratio_a}");
    Ok(())
}

/// One non-reparameterised site per data point, written as separate sites (no vectorised
/// plate): z_i ~ Bernoulli(0.5), x_i ~ N(z_i, 1) for 100 points; the guide's
/// z_i ~ Bernoulli(σ(l_i)). With `sequential`, each point is an iteration of a sequential plate
/// (`ctx.plate_seq`, Pyro's `for i in pyro.plate(..)`) in the model and the guide.
fn separate_sites(
    n: usize,
    baseline: bool,
    sequential: bool,
) -> (BoxedProgram<'static>, BoxedProgram<'static>) {
    let xs: Vec<f64> = (0..n).map(|i| ((i * 37) % 11) as f64 / 5.0 - 1.0).collect();
    let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let half = s(0.5);
        let point = |ctx: &mut Ctx, i: usize| -> vi_infer::Result<()> {
            let z = ctx.sample(&format!("z{i}"), Bernoulli::from_probs(&half)?)?;
            let xt = s(xs[i]).broadcast_as(z.shape())?;
            ctx.observe(&format!("x{i}"), Normal::new(&z, &z.ones_like()?)?, &xt)?;
            Ok(())
        };
        if sequential {
            ctx.plate_seq("data", n, point)?;
        } else {
            for i in 0..n {
                point(ctx, i)?;
            }
        }
        Ok(())
    };
    let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let l = ctx.param(
            "l",
            &Tensor::zeros(n, DType::F64, &Device::Cpu)?,
            Constraint::Real,
        )?;
        let point = |ctx: &mut Ctx, i: usize| -> vi_infer::Result<Tensor> {
            let opts = if baseline {
                SiteOptions::new().baseline(Baseline::decaying_average(0.9)?)
            } else {
                SiteOptions::new()
            };
            ctx.sample_with(&format!("z{i}"), Bernoulli::from_logits(&l.get(i)?)?, opts)
        };
        if sequential {
            ctx.plate_seq("data", n, point)?;
        } else {
            for i in 0..n {
                point(ctx, i)?;
            }
        }
        Ok(())
    };
    (Box::new(model), Box::new(guide))
}

#[test]
fn separate_sites_variance_is_lower() -> Res {
    let n = 100;
    let draws = 150;
    let e = |graph: bool| -> Box<dyn Elbo> {
        if graph {
            Box::new(
                TraceGraphElbo::new()
                    .num_particles(4)
                    .vectorize_particles(true)
                    .max_plate_nesting(0),
            )
        } else {
            Box::new(
                TraceElbo::new()
                    .num_particles(4)
                    .vectorize_particles(true)
                    .max_plate_nesting(0),
            )
        }
    };
    let trace = sample_grads(
        e(false).as_ref(),
        separate_sites(n, false, false),
        &["l"],
        draws,
        1,
    )?;
    let trace_avg = sample_grads(
        e(false).as_ref(),
        separate_sites(n, true, false),
        &["l"],
        draws,
        2,
    )?;
    let graph = sample_grads(
        e(true).as_ref(),
        separate_sites(n, false, false),
        &["l"],
        draws,
        3,
    )?;
    let graph_avg = sample_grads(
        e(true).as_ref(),
        separate_sites(n, true, false),
        &["l"],
        draws,
        4,
    )?;
    let (vt, vta, vg, vga) = (
        total_variance(&trace),
        total_variance(&trace_avg),
        total_variance(&graph),
        total_variance(&graph_avg),
    );
    println!(
        "{n} separate sites: total gradient variance TraceElbo {vt:.1}, TraceGraphElbo {vg:.1} \
         (ratio {:.2}); with decaying-average baselines (TraceElbo ignores them: {vta:.1}) \
         TraceGraphElbo {vga:.2} (ratio to TraceElbo {:.0})",
        vt / vg,
        vt / vga
    );
    // The order separates z_i from the terms before it: about half of them on average.
    assert!(vt / vg > 1.4, "ratio {}", vt / vg);
    // TraceElbo reads no baseline: the same variance within sampling error.
    assert!((0.7..1.4).contains(&(vt / vta)), "{vt} vs {vta}");
    // A baseline takes out the costs' mean, the bulk of the variance.
    assert!(vt / vga > 10.0 * (vt / vg), "{vga} vs {vg}");
    Ok(())
}

/// The same sites in a sequential plate (`ctx.plate_seq`): each score multiplies only its own
/// point's terms, as Pyro's `TraceGraph_ELBO` with `for i in pyro.plate(..)`. The gradient is
/// the exact one in expectation (each coordinate within 4.5 standard errors of
/// `σ'(0) · ((x−1)² − x²) / 2 = (1 − 2x) / 8` at l = 0), and its variance is a small fraction
/// of `TraceElbo`'s (Pyro measured ≈ 8000 × on 100 such sites).
#[test]
fn sequential_plate_separates_iterations() -> Res {
    let n = 100;
    let draws = 150;
    let trace_elbo = TraceElbo::new()
        .num_particles(4)
        .vectorize_particles(true)
        .max_plate_nesting(0);
    let graph = TraceGraphElbo::new()
        .num_particles(4)
        .vectorize_particles(true)
        .max_plate_nesting(0);
    let t = sample_grads(
        &trace_elbo,
        separate_sites(n, false, true),
        &["l"],
        draws,
        5,
    )?;
    let g = sample_grads(&graph, separate_sites(n, false, true), &["l"], draws, 6)?;
    let ga = sample_grads(&graph, separate_sites(n, true, true), &["l"], draws, 7)?;
    let (vt, vg, vga) = (total_variance(&t), total_variance(&g), total_variance(&ga));
    println!(
        "{n} sites in a sequential plate: total gradient variance TraceElbo {vt:.1}, \
         TraceGraphElbo {vg:.2} (ratio {:.0}), with decaying-average baselines {vga:.3} \
         (ratio {:.0})",
        vt / vg,
        vt / vga
    );
    // Each score now sees one point's terms instead of all 100: far below the order rule's
    // ratio of about 3 (`separate_sites_variance_is_lower`).
    assert!(vt / vg > 30.0, "ratio {}", vt / vg);
    let xs: Vec<f64> = (0..n).map(|i| ((i * 37) % 11) as f64 / 5.0 - 1.0).collect();
    for (samples, what) in [(&g, "no baseline"), (&ga, "baseline")] {
        let mut worst: f64 = 0.0;
        for (i, x) in xs.iter().enumerate() {
            let col: Vec<f64> = samples.iter().map(|row| row[i]).collect();
            let (mean, var) = mean_var(&col);
            let se = (var / col.len() as f64).sqrt();
            let want = (1.0 - 2.0 * x) / 8.0;
            worst = worst.max((mean - want).abs() / se.max(1e-12));
        }
        assert!(
            worst < 4.5,
            "{what}: worst coordinate {worst} standard errors off"
        );
    }
    Ok(())
}

/// A sequential plate inside itself, or under a vectorised plate of the same name, is an error
/// naming the plate.
#[test]
fn sequential_plate_errors() -> Res {
    let mut store = ParamStore::new(&Device::Cpu, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut ctx = Ctx::new(&mut store, &mut rng);
    let e = ctx
        .plate_seq("data", 2, |ctx, i| {
            ctx.plate_seq("data", 2, |ctx, j| {
                ctx.sample(&format!("z{i}{j}"), Normal::new(&s(0.0), &s(1.0))?)
            })
        })
        .unwrap_err();
    assert!(e.to_string().contains("`data`"), "{e}");
    assert!(e.to_string().contains("nested in itself"), "{e}");
    let e = ctx
        .plate("data", 2, |ctx| ctx.plate_seq("data", 2, |_, _| Ok(())))
        .unwrap_err();
    assert!(e.to_string().contains("vectorised plate"), "{e}");
    Ok(())
}

// Agreement on a vectorised plate ---------------------------------------------------------------

/// Where a vectorised plate separates the terms (one latent and its observation per data
/// point), both ELBOs' surrogates give the same gradient from the same draws.
#[test]
fn vectorised_plate_agrees_with_trace_elbo() -> Res {
    let dev = Device::Cpu;
    let xs = Tensor::new(&[0.3f64, -1.2, 2.0, 0.7], &dev)?;
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("data", 4, |ctx| {
            let z = ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?.without_rsample())?;
            ctx.observe("x", Normal::new(&z, &s(1.0))?, &xs)
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let m = ctx.param(
            "m",
            &Tensor::new(&[0.1f64, 0.2, -0.3, 0.5], &dev)?,
            Constraint::Real,
        )?;
        let sd = ctx.param("sd", &s(0.8), Constraint::Positive)?;
        ctx.plate("data", 4, |ctx| {
            ctx.sample("z", Normal::new(&m, &sd)?.without_rsample())
        })?;
        Ok(())
    };
    for particles in [1, 3] {
        let (mut model, mut guide): (BoxedProgram<'_>, BoxedProgram<'_>) =
            (Box::new(model), Box::new(guide));
        let mut store = ParamStore::new(&dev, DType::F64);
        let a = grads(
            &TraceElbo::new()
                .num_particles(particles)
                .vectorize_particles(true),
            &mut model,
            &mut guide,
            &mut store,
            &mut ChaCha8Rng::seed_from_u64(5),
            &["m", "sd"],
        )?;
        let b = grads(
            &TraceGraphElbo::new()
                .num_particles(particles)
                .vectorize_particles(true),
            &mut model,
            &mut guide,
            &mut store,
            &mut ChaCha8Rng::seed_from_u64(5),
            &["m", "sd"],
        )?;
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-12 * (1.0 + x.abs()), "{a:?} vs {b:?}");
        }
    }
    Ok(())
}

// Baselines -------------------------------------------------------------------------------------

/// One site, no parameters in the guide: q(z) = Bernoulli(0.3), p(z) = Bernoulli(0.6),
/// x ~ N(2z, 1) at 0.5. Its cost is log p(x, z) − log q(z); its mean is the ELBO.
fn one_site(
    dev: &Device,
    options: impl Fn(&mut Ctx) -> vi_infer::Result<SiteOptions> + 'static,
) -> (BoxedProgram<'static>, BoxedProgram<'static>) {
    let d = dev.clone();
    let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let z = ctx.sample("z", Bernoulli::from_probs(&Tensor::new(0.6, &d)?)?)?;
        let x = Tensor::new(0.5, &d)?.broadcast_as(z.shape())?;
        ctx.observe("x", Normal::new(&(&z * 2.0)?, &z.ones_like()?)?, &x)?;
        Ok(())
    };
    let d = dev.clone();
    let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let opts = options(ctx)?;
        ctx.sample_with("z", Bernoulli::from_probs(&Tensor::new(0.3, &d)?)?, opts)?;
        Ok(())
    };
    (Box::new(model), Box::new(guide))
}

/// The cost of the one-site model at `z`.
fn one_site_cost(z: f64) -> f64 {
    let lp = if z == 1.0 { 0.6f64.ln() } else { 0.4f64.ln() };
    let lq = if z == 1.0 { 0.3f64.ln() } else { 0.7f64.ln() };
    lp + log_normal(0.5, 2.0 * z) - lq
}

/// The exact ELBO of the one-site model: the mean cost.
fn one_site_elbo() -> f64 {
    0.3 * one_site_cost(1.0) + 0.7 * one_site_cost(0.0)
}

#[test]
fn decaying_average_follows_its_recursion() -> Res {
    let dev = Device::Cpu;
    let beta = 0.8;
    let (mut model, mut guide) = one_site(&dev, move |_| {
        Ok(SiteOptions::new().baseline(Baseline::decaying_average(beta)?))
    });
    let elbo = TraceGraphElbo::new();
    let mut store = ParamStore::new(&dev, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut avg = 0.0;
    for _ in 0..20 {
        let out = elbo.compute(model.as_mut(), guide.as_mut(), &mut store, &mut rng)?;
        let z = out.guide_trace.get("z").unwrap().value.to_scalar::<f64>()?;
        avg = beta * avg + (1.0 - beta) * one_site_cost(z);
        let got = elbo.baseline_average("z").unwrap().to_scalar::<f64>()?;
        assert!((got - avg).abs() < 1e-12, "{got} vs {avg}");
    }
    elbo.reset_baselines();
    assert!(elbo.baseline_average("z").is_none());
    Ok(())
}

/// A learned baseline's gradient is that of its loss `(cost − b)²`: `2 (b − cost)`.
#[test]
fn learned_baseline_gradient_is_its_squared_loss() -> Res {
    let dev = Device::Cpu;
    let (mut model, mut guide) = one_site(&dev, |ctx| {
        let b = ctx.param("b", &s(-1.0), Constraint::Real)?;
        Ok(SiteOptions::new().baseline(Baseline::learned(b)))
    });
    let mut store = ParamStore::new(&dev, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for _ in 0..6 {
        let out =
            TraceGraphElbo::new().compute(model.as_mut(), guide.as_mut(), &mut store, &mut rng)?;
        let z = out.guide_trace.get("z").unwrap().value.to_scalar::<f64>()?;
        let g = out.surrogate.backward()?;
        let got = g
            .get(store.unconstrained("b").unwrap().as_tensor())
            .unwrap()
            .to_scalar::<f64>()?;
        let want = 2.0 * (-1.0 - one_site_cost(z));
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        // The baseline's loss is in the surrogate, not in the loss.
        let loss = out.loss.to_scalar::<f64>()?;
        assert!((loss + one_site_cost(z)).abs() < 1e-12);
    }
    Ok(())
}

/// A neural baseline (a module marked in the guide, on a detached input) trained by SVI
/// learns the mean cost: the exact ELBO.
#[test]
fn neural_baseline_learns_the_mean_cost() -> Res {
    let dev = Device::Cpu;
    let store = ParamStore::new(&dev, DType::F64);
    let net = candle_nn::linear(1, 1, store.var_builder("baseline")?)?;
    let input = Tensor::ones((1, 1), DType::F64, &dev)?;
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let z = ctx.sample("z", Bernoulli::from_probs(&s(0.6))?)?;
        ctx.observe("x", Normal::new(&(&z * 2.0)?, &s(1.0))?, &s(0.5))?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let b = Baseline::neural(ctx.module("baseline", &net)?, &input)?;
        let b = match b {
            Baseline::Learned(t) => Baseline::learned(t.reshape(())?),
            other => other,
        };
        ctx.sample_with(
            "z",
            Bernoulli::from_probs(&s(0.3))?,
            SiteOptions::new().baseline(b),
        )?;
        Ok(())
    };
    let mut svi = Svi::new(model, guide, adam(0.05), TraceGraphElbo::new())
        .with_store(store)
        .seed(0);
    for _ in 0..1500 {
        svi.step()?;
    }
    let b = net.forward(&input)?.flatten_all()?.to_vec1::<f64>()?[0];
    let want = one_site_elbo();
    // The costs take two values, 1.0 apart; Adam at lr 0.05 jitters around their mean.
    assert!((b - want).abs() < 0.1, "baseline {b}, mean cost {want}");
    Ok(())
}

#[test]
fn baseline_errors() -> Res {
    let dev = Device::Cpu;
    // A baseline of shape [2] for a site of batch shape [3].
    let model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("data", 3, |ctx| {
            ctx.sample("z", Bernoulli::from_probs(&s(0.5))?)
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let b = Baseline::fixed(Tensor::new(&[1.0f64, 2.0], &Device::Cpu)?);
        ctx.plate("data", 3, |ctx| {
            ctx.sample_with(
                "z",
                Bernoulli::from_probs(&s(0.5))?,
                SiteOptions::new().baseline(b),
            )
        })?;
        Ok(())
    };
    let e = crate::common::elbo_error(&TraceGraphElbo::new(), &dev, DType::F64, model, guide);
    assert!(
        matches!(e.root(), InferError::Baseline { site, msg } if site == "z" && msg.contains("[2]") && msg.contains("[3]")),
        "{e}"
    );
    // A decaying average's beta outside [0, 1): at the constructor, and at the ELBO for a
    // variant built by hand.
    assert!(matches!(
        Baseline::decaying_average(1.5),
        Err(InferError::Invalid(_))
    ));
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let b = Baseline::DecayingAverage { beta: -0.1 };
        ctx.plate("data", 3, |ctx| {
            ctx.sample_with(
                "z",
                Bernoulli::from_probs(&s(0.5))?,
                SiteOptions::new().baseline(b),
            )
        })?;
        Ok(())
    };
    let e = crate::common::elbo_error(&TraceGraphElbo::new(), &dev, DType::F64, model, guide);
    assert!(
        matches!(e.root(), InferError::Baseline { site, .. } if site == "z"),
        "{e}"
    );
    Ok(())
}

/// f32 runs too, and gives f64's figures within f32's precision from the same draws.
#[test]
fn f32_agrees_with_f64() -> Res {
    let dev = Device::Cpu;
    let mut got = vec![];
    for dt in [DType::F32, DType::F64] {
        let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let p = Tensor::new(0.4f64, &Device::Cpu)?.to_dtype(dt)?;
            let z1 = ctx.sample("z1", Bernoulli::from_probs(&p)?)?;
            let z2 = ctx.sample("z2", Bernoulli::from_probs(&((&z1 * 0.5)? + 0.3)?)?)?;
            let one = z2.ones_like()?;
            ctx.observe("x", Normal::new(&z2, &one)?, &(&one * 0.9)?)?;
            Ok(())
        };
        let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
            let a = ctx.param(
                "a",
                &Tensor::new(0.2f64, &Device::Cpu)?.to_dtype(dt)?,
                Constraint::Real,
            )?;
            let opts = SiteOptions::new().baseline(Baseline::decaying_average(0.5)?);
            let z1 = ctx.sample_with("z1", Bernoulli::from_logits(&a)?, opts.clone())?;
            ctx.sample_with("z2", Bernoulli::from_logits(&(&z1 - 0.5)?)?, opts)?;
            Ok(())
        };
        let (mut m, mut g): (BoxedProgram<'_>, BoxedProgram<'_>) =
            (Box::new(model), Box::new(guide));
        let mut store = ParamStore::new(&dev, dt);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut all = vec![];
        let elbo = TraceGraphElbo::new();
        for _ in 0..5 {
            all.extend(grads(&elbo, &mut m, &mut g, &mut store, &mut rng, &["a"])?);
        }
        got.push(all);
    }
    for (a, b) in got[0].iter().zip(&got[1]) {
        assert!((a - b).abs() < 1e-5 * (1.0 + b.abs()), "{got:?}");
    }
    Ok(())
}
