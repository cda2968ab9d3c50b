//! What enumeration cannot do is a typed error naming the sites (and plates) involved.

use candle_core::{DType, Device, Tensor};
use vi_dist::{Bernoulli, Categorical, Constraint, DistError, Normal};
use vi_infer::{Ctx, InferError, Plate, TraceEnumElbo, vindex};

use crate::common::{assert_mentions, elbo_error, empty};

fn s(v: f64) -> vi_infer::Result<Tensor> {
    Ok(Tensor::new(v, &Device::Cpu)?)
}

fn t(v: &[f64]) -> vi_infer::Result<Tensor> {
    Ok(Tensor::new(v, &Device::Cpu)?)
}

fn enum_error(
    elbo: TraceEnumElbo,
    model: impl FnMut(&mut Ctx) -> vi_infer::Result<()>,
) -> InferError {
    elbo_error(&elbo, &Device::Cpu, DType::F64, model, empty)
}

fn sites_of(e: &InferError) -> Vec<String> {
    match e.root() {
        InferError::Enumeration { sites, .. } => sites.clone(),
        other => panic!("expected an enumeration error, got {other}"),
    }
}

/// A continuous site marked for enumeration: the site and the distribution are named.
#[test]
fn continuous_site_is_not_enumerable() {
    let e = enum_error(TraceEnumElbo::new().max_plate_nesting(0), |ctx| {
        ctx.sample_enum("z", Normal::new(&s(0.0)?, &s(1.0)?)?)?;
        Ok(())
    });
    assert!(
        matches!(e.root(), InferError::Site { site, source, .. }
            if site == "z" && matches!(source.kind(), DistError::NotEnumerable { .. })),
        "{e}"
    );
    assert_mentions(&e, &["`z`", "Normal", "no finite support"]);
}

/// Sites enumerated in two independent plates meeting in a factor inside both (Pyro:
/// "Expected tree-structured plate nesting").
#[test]
fn independent_plates_meeting_in_one_factor() {
    let e = enum_error(TraceEnumElbo::new().max_plate_nesting(2), |ctx| {
        let p = s(0.4)?;
        let a = ctx.plate_dim("rows", 2, -2, |ctx| {
            ctx.sample_enum("a", Bernoulli::from_probs(&p)?)
        })?;
        let b = ctx.plate_dim("cols", 3, -1, |ctx| {
            ctx.sample_enum("b", Bernoulli::from_probs(&p)?)
        })?;
        ctx.plate_dim("rows", 2, -2, |ctx| {
            ctx.plate_dim("cols", 3, -1, |ctx| {
                let loc = a.broadcast_add(&b)?;
                ctx.observe(
                    "c",
                    Normal::new(&loc, &s(1.0)?)?,
                    &Tensor::zeros((2, 3), DType::F64, &Device::Cpu)?,
                )
            })
        })?;
        Ok(())
    });
    let mut sites = sites_of(&e);
    sites.sort();
    assert_eq!(sites, ["a", "b"]);
    assert_mentions(&e, &["`rows`", "`cols`", "tree-structured"]);
}

/// A site outside a plate that depends on a site enumerated inside it.
#[test]
fn enumerated_site_used_outside_its_plate() {
    let e = enum_error(TraceEnumElbo::new().max_plate_nesting(1), |ctx| {
        let z = ctx.plate("data", 3, |ctx| {
            ctx.sample_enum("z", Bernoulli::from_probs(&s(0.4)?)?)
        })?;
        ctx.observe("y", Normal::new(&z, &s(1.0)?)?, &s(0.5)?)?;
        Ok(())
    });
    assert_eq!(sites_of(&e), ["z"]);
    assert_mentions(&e, &["`data`", "outside"]);
}

/// Factors of one sum with different scales (a global enumerated site, data in a subsampled
/// plate), and a tensor scale.
#[test]
fn scales_must_agree() {
    let e = enum_error(TraceEnumElbo::new().max_plate_nesting(1), |ctx| {
        let z = ctx.sample_enum("z", Bernoulli::from_probs(&s(0.4)?)?)?;
        let data = t(&[0.1, 0.2, 0.3, 0.4])?;
        ctx.plate_with(Plate::new("data", 4).subsample_size(2), |ctx, idx| {
            ctx.observe("y", Normal::new(&z, &s(1.0)?)?, &data.index_select(idx, 0)?)
        })?;
        Ok(())
    });
    assert_eq!(sites_of(&e), ["z", "y"]);
    assert_mentions(&e, &["different scales", "1 and 2"]);
    let e = enum_error(TraceEnumElbo::new().max_plate_nesting(1), |ctx| {
        let z = ctx.sample_enum("z", Bernoulli::from_probs(&s(0.4)?)?)?;
        let w = t(&[1.0, 2.0])?;
        ctx.plate("data", 2, |ctx| {
            ctx.scale_by(&w, |ctx| {
                ctx.observe("y", Normal::new(&z, &s(1.0)?)?, &t(&[0.1, 0.2])?)
            })
        })?;
        Ok(())
    });
    assert_eq!(sites_of(&e), ["y"]);
    assert_mentions(&e, &["tensor scale"]);
}

/// Inside `markov` (history 1) a site whose distribution reaches two steps back: the dim it
/// would read was recycled for its own values, an error naming it (not a diagonal read
/// silently).
#[test]
fn markov_window_too_short() {
    let e = enum_error(TraceEnumElbo::new().max_plate_nesting(0), |ctx| {
        let a = Tensor::new(&[[0.9f64, 0.1], [0.2, 0.8]], &Device::Cpu)?;
        let mut xs: Vec<Tensor> = Vec::new();
        ctx.markov(0..5, |ctx, i| {
            let probs = match xs.len() {
                0 => t(&[0.5, 0.5])?,
                n => vindex(&a, &[&xs[n.saturating_sub(2)]])?,
            };
            let x = ctx.sample_enum(&format!("x_{i}"), Categorical::from_probs(&probs)?)?;
            xs.push(x);
            Ok(())
        })?;
        Ok(())
    });
    assert_eq!(sites_of(&e), ["x_2"]);
    assert_mentions(&e, &["markov_history", "varies along dim"]);
}

/// `max_plate_nesting` smaller than the model's plates: the plate's dim collides with the
/// enumeration dims, an error naming the plate and the site.
#[test]
fn max_plate_nesting_too_small() {
    let e = enum_error(TraceEnumElbo::new().max_plate_nesting(1), |ctx| {
        let z = ctx.sample_enum("z", Bernoulli::from_probs(&s(0.4)?)?)?;
        ctx.plate_dim("rows", 2, -2, |ctx| {
            ctx.observe(
                "y",
                Normal::new(&z, &s(1.0)?)?,
                &t(&[0.1, 0.2])?.reshape((2, 1))?,
            )
        })?;
        Ok(())
    });
    assert!(
        matches!(e.root(), InferError::Plate { plate, .. } if plate == "rows"),
        "{e}"
    );
    assert_mentions(&e, &["`y`", "max_plate_nesting = 1"]);
}

/// `n` independent enumerated Bernoulli sites `z_i` (no plates) and `y ~ Normal(Σ z_i, 1)`
/// observed: the `i`-th site takes enumeration dim `-(i + 1)`, `y`'s log-density carries all
/// `n` dims.
fn many_sites(n: usize) -> impl FnMut(&mut Ctx) -> vi_infer::Result<()> {
    move |ctx: &mut Ctx| {
        let mut sum = s(0.0)?;
        for (i, &p0) in PS.iter().enumerate().take(n) {
            let p = ctx.param(&format!("p_{i}"), &s(p0)?, Constraint::UnitInterval)?;
            let z = ctx.sample_enum(&format!("z_{i}"), Bernoulli::from_probs(&p)?)?;
            sum = sum.broadcast_add(&z)?;
        }
        ctx.observe("y", Normal::new(&sum, &s(1.0)?)?, &s(Y)?)?;
        Ok(())
    }
}

const PS: [f64; 9] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
const Y: f64 = 2.5;

/// candle's CPU kernels take at most 8 dims: the 9th enumerated site (dim -9) is a typed error
/// naming it, with the dims in use and what to do, not a panic inside candle. With 7 (and 8,
/// the limit) sites the model runs, and the loss is the brute-force −log p(y) over every joint
/// assignment.
#[test]
fn more_enumeration_dims_than_candle_takes() {
    let e = enum_error(TraceEnumElbo::new().max_plate_nesting(0), many_sites(9));
    assert_eq!(sites_of(&e), ["z_8"]);
    assert_mentions(
        &e,
        &[
            "dim -9",
            "9 enumeration dim(s) in use",
            "0 plate dim(s) of `max_plate_nesting`",
            "rank 9",
            "at most 8 dims",
            "`markov`",
        ],
    );
    for n in [7, 8] {
        // The loss and its gradient (the backward pass goes through the same ranks).
        let elbo = TraceEnumElbo::new().max_plate_nesting(0);
        let got = super::loss_and_grads(&elbo, 0, many_sites(n), empty)
            .unwrap_or_else(|e| panic!("{n} sites: {e}"));
        assert_eq!(got.grads.len(), n);
        let terms: Vec<f64> = super::assignments(&vec![2; n])
            .iter()
            .map(|z| {
                let prior: f64 = z
                    .iter()
                    .zip(PS)
                    .map(|(&v, p)| if v == 1 { p.ln() } else { (1.0 - p).ln() })
                    .sum();
                let loc: f64 = z.iter().map(|&v| v as f64).sum();
                let lik = -0.5 * (Y - loc).powi(2) - 0.5 * (2.0 * std::f64::consts::PI).ln();
                prior + lik
            })
            .collect();
        let m = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let want = -(m + terms.iter().map(|t| (t - m).exp()).sum::<f64>().ln());
        crate::common::assert_close_tol(&[got.loss], &[want], 1e-10, &format!("{n} sites: loss"));
    }
}
