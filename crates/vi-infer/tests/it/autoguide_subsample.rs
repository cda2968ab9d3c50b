//! Subsampling with automatic guides: Pyro's open bug pyro#3468 (the model's own index
//! tensor) and NumPyro's numpyro#1739 (a subsample size that changes between steps), each a
//! test that fails if the model's and the guide's indices differ; a guide by hand whose
//! indices differ from the model's own; the joint guides' refusal of subsampled local sites.

use std::cell::{Cell, RefCell};

use vi_infer::autoguide::{AutoDelta, AutoGuide, AutoMultivariateNormal, AutoNormal};
use vi_infer::candle::{DType, Device, Tensor};
use vi_infer::dist::Normal;
use vi_infer::{Ctx, InferError, Plate, Svi, TraceElbo, TraceMeanFieldElbo};

use crate::common::{Res, adam, assert_mentions, host, max_abs_diff, run};

/// The data of the subsampling tests: 10 rows, a local latent per row.
pub(crate) fn local_data() -> Res<Tensor> {
    Ok(Tensor::new(
        &[0.3f64, -1.2, 2.5, 0.7, -0.4, 1.9, -2.2, 0.1, 1.4, -0.8],
        &Device::Cpu,
    )?)
}

/// Pyro's open bug pyro#3468: the model passes its own index tensor to a subsampled plate, a
/// different one each step, and the automatic guide must use the same indices (Pyro's draws
/// fresh ones, so the local latents it guides belong to other rows than the model's data).
/// Each step checks that the guide's and the model's subsample sites hold the model's
/// indices, and that the guide's local site is the rows of its full-size parameter at them;
/// `AutoDelta` and `AutoNormal` alike.
#[test]
fn subsample_model_indices_pyro_3468() -> Res {
    let data = local_data()?;
    let (zero, one) = (
        Tensor::new(0.0f64, &Device::Cpu)?,
        Tensor::new(1.0f64, &Device::Cpu)?,
    );
    let batches: Vec<Vec<u32>> = vec![vec![7, 2, 5], vec![0, 9, 4], vec![3, 3, 8], vec![1, 6, 2]];
    let current = RefCell::new(Tensor::new(batches[0].as_slice(), &Device::Cpu)?);
    let seen = RefCell::new(Vec::<Vec<u32>>::new());
    let model = |ctx: &mut Ctx| {
        let idx = current.borrow().clone();
        let mu = ctx.sample("mu", Normal::new(&zero, &one)?)?;
        ctx.plate_with(Plate::new("data", 10).subsample(&idx), |ctx, i| {
            seen.borrow_mut().push(i.to_vec1::<u32>()?);
            let z = ctx.sample("z", Normal::new(&mu, &one)?)?;
            ctx.observe("x", Normal::new(&z, &one)?, &data.index_select(&idx, 0)?)
        })
    };
    for which in ["AutoDelta", "AutoNormal"] {
        let guide: Box<dyn AutoGuide> = match which {
            "AutoDelta" => Box::new(AutoDelta::new(model)),
            _ => Box::new(AutoNormal::new(model)),
        };
        let mut svi = Svi::new(
            model,
            |ctx: &mut Ctx| guide.call(ctx),
            adam(0.01),
            TraceElbo::new(),
        )
        .seed(0);
        for batch in &batches {
            *current.borrow_mut() = Tensor::new(batch.as_slice(), &Device::Cpu)?;
            seen.borrow_mut().clear();
            let report = svi.step()?;
            let g = report
                .guide_trace
                .get("data")
                .unwrap()
                .value
                .to_vec1::<u32>()?;
            let m = report
                .model_trace
                .get("data")
                .unwrap()
                .value
                .to_vec1::<u32>()?;
            assert_eq!((&g, &m), (batch, batch), "{which}: guide and model indices");
            // The model's plate saw the model's own indices.
            assert!(
                seen.borrow().iter().all(|s| s == batch),
                "{which}: {:?}",
                seen.borrow()
            );
            // The guide's local site is the rows `batch` of its full-size parameter.
            let z = &report.guide_trace.get("z").unwrap();
            let name = if which == "AutoDelta" {
                "AutoDelta.z"
            } else {
                "AutoNormal.locs.z"
            };
            let full = report.guide_trace.get(name).unwrap().value.clone();
            assert_eq!(full.dims(), &[10], "{which}: full-size parameter");
            let rows = full.index_select(&Tensor::new(batch.as_slice(), &Device::Cpu)?, 0)?;
            let q = z.dist.as_ref().unwrap();
            let at = q.mean()?; // the Delta's point, the Normal's loc
            assert!(
                max_abs_diff(&at, &rows) < 1e-12,
                "{which}: guide rows {:?} against {:?}",
                host(&at),
                host(&rows)
            );
        }
    }
    Ok(())
}

/// NumPyro's bug numpyro#1739: the subsample size changes from one step to the next (the last,
/// smaller batch of an epoch): the guide follows the model's size at every step, and the two
/// see the same indices.
#[test]
fn subsample_size_changes_numpyro_1739() -> Res {
    let data = local_data()?;
    let (zero, one) = (
        Tensor::new(0.0f64, &Device::Cpu)?,
        Tensor::new(1.0f64, &Device::Cpu)?,
    );
    let size = Cell::new(4usize);
    let model = |ctx: &mut Ctx| {
        let mu = ctx.sample("mu", Normal::new(&zero, &one)?)?;
        ctx.plate_subsample("data", 10, size.get(), |ctx, idx| {
            let z = ctx.sample("z", Normal::new(&mu, &one)?)?;
            ctx.observe("x", Normal::new(&z, &one)?, &data.index_select(idx, 0)?)
        })
    };
    for particles in [1, 3] {
        let guide = AutoNormal::new(model);
        // Also with vectorised particles (an outer plate around the guide's plates).
        let elbo = TraceMeanFieldElbo::new()
            .num_particles(particles)
            .vectorize_particles(particles > 1);
        let mut svi = Svi::new(model, guide.as_fn(), adam(0.01), elbo).seed(0);
        for n in [4, 4, 2, 4, 3, 1, 4] {
            size.set(n);
            let report = svi.step()?;
            let g = report
                .guide_trace
                .get("data")
                .unwrap()
                .value
                .to_vec1::<u32>()?;
            let m = report
                .model_trace
                .get("data")
                .unwrap()
                .value
                .to_vec1::<u32>()?;
            assert_eq!(g.len(), n);
            assert_eq!(g, m, "guide and model indices");
            let z = report.guide_trace.get("z").unwrap().value.dims().to_vec();
            assert_eq!(
                z,
                if particles == 1 {
                    vec![n]
                } else {
                    vec![particles, n]
                }
            );
            // The KL of the local site is scaled by 10 / n in both.
            assert!((report.model_trace.get("z").unwrap().scale - 10.0 / n as f64).abs() < 1e-12);
        }
    }
    Ok(())
}

/// A hand-written guide that draws its own indices while the model passes others is an error
/// naming the plate (the check behind the two tests above, for guides by hand).
#[test]
fn model_indices_against_other_guide_indices_is_an_error() -> Res {
    let (zero, one) = (
        Tensor::new(0.0f64, &Device::Cpu)?,
        Tensor::new(1.0f64, &Device::Cpu)?,
    );
    let own = Tensor::new(&[1u32, 2], &Device::Cpu)?;
    let model = |ctx: &mut Ctx| {
        ctx.plate_with(Plate::new("data", 10).subsample(&own), |ctx, _| {
            ctx.sample("z", Normal::new(&zero, &one)?)
        })
    };
    let other = Tensor::new(&[5u32, 6], &Device::Cpu)?;
    let guide = |ctx: &mut Ctx| {
        ctx.plate_with(Plate::new("data", 10).subsample(&other), |ctx, _| {
            ctx.sample("z", Normal::new(&zero, &one)?)
        })
    };
    let e = crate::common::step_error(model, guide, adam(0.01), TraceElbo::new());
    assert!(
        matches!(e.root(), InferError::Plate { plate, .. } if plate == "data"),
        "{e}"
    );
    assert_mentions(&e, &["[1, 2]", "[5, 6]"]);
    Ok(())
}

/// A joint guide refuses a local latent in a subsampled plate (its vector would need the
/// plate's full size), naming the site and the plate.
#[test]
fn joint_guides_refuse_subsampled_local_sites() -> Res {
    let (zero, one) = (
        Tensor::new(0.0f64, &Device::Cpu)?,
        Tensor::new(1.0f64, &Device::Cpu)?,
    );
    let model = |ctx: &mut Ctx| {
        ctx.plate_subsample("data", 10, 3, |ctx, _| {
            ctx.sample("z", Normal::new(&zero, &one)?)
        })
    };
    let guide = AutoMultivariateNormal::new(model);
    let e = run(&Device::Cpu, DType::F64, 0, |ctx| guide.call(ctx)).unwrap_err();
    assert_mentions(
        &e,
        &["AutoMultivariateNormal", "`z`", "subsampled plate `data`"],
    );
    Ok(())
}
