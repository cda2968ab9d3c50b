//! The snippets of `docs/guide.md` and of the README's tour, as tests: each Rust block of those
//! files must appear, line for line (indentation aside), in this file, and every test here
//! runs it and checks what the text says it does (`guide::snippets_in_sync`).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_infer::candle::{DType, Device, Tensor};
use vi_infer::dist::{Constraint, Distribution, Normal};
use vi_infer::{Ctx, ParamStore};

use crate::common::{Res, assert_within_abs, step_error};

/// The README's tour and the guide's first example.
#[test]
fn tour() -> Res {
    use vi_infer::candle::{Device, Tensor};
    use vi_infer::dist::{Constraint, Normal};
    use vi_infer::optim::{Adam, AdamOptions};
    use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};

    let dev = Device::Cpu;
    let data = Tensor::new(&[1.2f64, 0.8, 1.1, 0.9], &dev)?;
    let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    // The model: mu ~ Normal(0, 1), and four observations x_i ~ Normal(mu, 1).
    let model = |ctx: &mut Ctx| {
        let mu = ctx.sample("mu", Normal::new(&zero, &one)?)?;
        ctx.plate("data", 4, |ctx| {
            ctx.observe("x", Normal::new(&mu, &one)?, &data)
        })
    };
    // The guide: q(mu) = Normal(loc, scale), both learnable, the scale kept positive.
    let guide = |ctx: &mut Ctx| {
        let loc = ctx.param("loc", &zero, Constraint::Real)?;
        let scale = ctx.param("scale", &one, Constraint::Positive)?;
        ctx.sample("mu", Normal::new(&loc, &scale)?)
    };
    let adam = Adam::empty(AdamOptions {
        lr: 0.02,
        ..Default::default()
    })?;
    let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new()).seed(0);
    for step in 0..2000 {
        let report = svi.step()?; // the loss (-ELBO) and each site's term
        if step % 500 == 0 {
            let kl = report.site("mu").unwrap().sum_f64()?;
            println!("step {step}: loss {:.3}, KL(mu) {kl:.3}", report.loss);
        }
    }
    // The exact posterior is Normal(0.8, 0.447).
    let loc = svi.store().get("loc")?.unwrap().to_scalar::<f64>()?;
    let scale = svi.store().get("scale")?.unwrap().to_scalar::<f64>()?;
    println!("q(mu) = Normal({loc:.3}, {scale:.3})");
    assert_within_abs("loc", &[loc], &[0.8], 0.05);
    assert_within_abs("scale", &[scale], &[0.2f64.sqrt()], 0.05);
    Ok(())
}

/// The README's tour, shorter than the guide's first example.
#[test]
fn readme_tour() -> Res {
    use vi_infer::candle::{Device, Tensor};
    use vi_infer::dist::{Constraint, Normal};
    use vi_infer::optim::{Adam, AdamOptions};
    use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};

    let dev = Device::Cpu;
    let x = Tensor::new(&[1.2f64, 0.8, 1.1, 0.9], &dev)?;
    let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    let model = |ctx: &mut Ctx| {
        let mu = ctx.sample("mu", Normal::new(&zero, &one)?)?; // the prior
        ctx.plate("data", 4, |ctx| {
            ctx.observe("x", Normal::new(&mu, &one)?, &x) // the likelihood
        })
    };
    let guide = |ctx: &mut Ctx| {
        let loc = ctx.param("loc", &zero, Constraint::Real)?;
        let scale = ctx.param("scale", &one, Constraint::Positive)?;
        ctx.sample("mu", Normal::new(&loc, &scale)?) // q(mu) = Normal(loc, scale)
    };
    let adam = Adam::empty(AdamOptions {
        lr: 0.02,
        ..Default::default()
    })?;
    let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new());
    for _ in 0..2000 {
        svi.step()?; // returns the loss and each site's KL or log-likelihood
    }
    let loc = svi.store().get("loc")?.unwrap().to_scalar::<f64>()?; // about 0.8

    assert_within_abs("loc", &[loc], &[0.8], 0.05);
    Ok(())
}

/// Sites and traces: what `ctx.trace` records.
#[test]
fn sites_and_traces() -> Res {
    use rand::SeedableRng;
    use vi_infer::candle::{DType, Device, Tensor};
    use vi_infer::dist::{Constraint, Normal};
    use vi_infer::{Ctx, ParamStore, SiteKind};

    let dev = Device::Cpu;
    let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    let x = Tensor::new(&[0.3f64, -0.2, 1.4], &dev)?;
    let model = |ctx: &mut Ctx| {
        let s = ctx.param("s", &one, Constraint::Positive)?;
        let z = ctx.sample("z", Normal::new(&zero, &s)?)?;
        ctx.deterministic("z2", &z.sqr()?)?;
        ctx.plate("data", 3, |ctx| {
            ctx.observe("x", Normal::new(&z, &one)?, &x)
        })
    };
    // Running a model by hand: a context over a store and a generator.
    let mut store = ParamStore::new(&dev, DType::F64);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut ctx = Ctx::new(&mut store, &mut rng);
    let (_, trace) = ctx.trace(model)?;
    assert_eq!(trace.names().collect::<Vec<_>>(), ["s", "z", "z2", "x"]);
    let z = trace.get("z").unwrap();
    assert!(z.kind == SiteKind::Sample && z.is_latent());
    assert!(trace.get("x").unwrap().is_observed);
    assert_eq!(trace.get("x").unwrap().log_prob()?.dims(), &[3]); // one per data point
    let log_joint = trace.log_prob_sum()?; // log p(z) + sum_i log p(x_i | z)
    print!("{}", trace.format_shapes()?);

    let by_hand = (z.log_prob_sum()? + trace.get("x").unwrap().log_prob_sum()?)?;
    assert_eq!(log_joint.to_scalar::<f64>()?, by_hand.to_scalar::<f64>()?);
    assert_eq!(trace.get("z2").unwrap().kind, SiteKind::Deterministic);
    assert_eq!(
        trace.format_shapes()?,
        "Trace Shapes:\n Param Sites:\n            s\nSample Sites:\n       z dist   |\n        \
         value   |\n     log_prob   |\n     z2 value\n   data plate 3 |\n       x dist 3 |\n        \
         value 3 |\n     log_prob 3 |\n"
    );
    Ok(())
}

/// Plates: nesting, dims, broadcasting.
#[test]
fn plates_nest() -> Res {
    let dev = Device::Cpu;
    let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    let mut store = ParamStore::new(&dev, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut ctx = Ctx::new(&mut store, &mut rng);

    let (z, trace) = ctx.trace(|ctx| {
        ctx.plate("columns", 2, |ctx| {
            ctx.plate("rows", 3, |ctx| ctx.sample("z", Normal::new(&zero, &one)?))
        })
    })?;
    assert_eq!(z.dims(), &[3, 2]); // "columns" took dim -1, "rows" dim -2
    let frames = &trace.get("z").unwrap().plates;
    assert_eq!((frames[0].dim, frames[1].dim), (-1, -2));

    // A vector-valued site in a plate: the event dims stay on the right.
    let loc = Tensor::zeros(5, DType::F64, &dev)?;
    let w = ctx.plate("data", 3, |ctx| {
        let prior = Normal::new(&loc, &loc.ones_like()?)?.to_event(1)?; // batch [], event [5]
        ctx.sample("w", prior)
    })?;
    assert_eq!(w.dims(), &[3, 5]); // plate dim, then the event dim

    let u = ctx.plate_dim("rows", 4, -2, |ctx| {
        ctx.sample("u", Normal::new(&zero, &one)?)
    })?;
    assert_eq!(u.dims(), &[4, 1]);
    Ok(())
}

/// A subsampled plate: indices, batch size, scale.
#[test]
fn plate_subsample() -> Res {
    let dev = Device::Cpu;
    let one = Tensor::new(1.0f64, &dev)?;
    let mut store = ParamStore::new(&dev, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut ctx = Ctx::new(&mut store, &mut rng);
    let mu = Tensor::new(0.5f64, &dev)?;
    let data = (Tensor::arange(0u32, 1000, &dev)?.to_dtype(DType::F64)? / 1000.0)?;

    let (_, trace) = ctx.trace(|ctx| {
        ctx.plate_subsample("data", 1000, 100, |ctx, idx| {
            let batch = data.index_select(idx, 0)?; // idx: 100 distinct indices in 0..1000
            ctx.observe("x", Normal::new(&mu, &one)?, &batch)
        })
    })?;
    let x = trace.get("x").unwrap();
    assert_eq!(x.scale, 10.0); // 1000 / 100: the sum over the batch estimates the full sum
    assert_eq!(trace.get("data").unwrap().value.dims(), &[100]); // the indices, as a site

    let idx = trace.get("data").unwrap().value.to_vec1::<u32>()?;
    let mut sorted = idx.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 100);
    assert!(idx.iter().all(|&i| i < 1000));
    let unscaled = x.unscaled_log_prob()?.sum_all()?.to_scalar::<f64>()?;
    let scaled = x.log_prob_sum()?.to_scalar::<f64>()?;
    assert_within_abs("scaled", &[scaled], &[10.0 * unscaled], 1e-9);
    Ok(())
}

/// `plate_with`: a subsampled plate at a dim, entered twice; indices of one's own.
#[test]
fn plate_with_options() -> Res {
    let dev = Device::Cpu;
    let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    let mut store = ParamStore::new(&dev, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut ctx = Ctx::new(&mut store, &mut rng);

    use vi_infer::Plate;
    let rows = Plate::new("rows", 1000).subsample_size(10).dim(-2);
    let (_, trace) = ctx.trace(|ctx| {
        let first = ctx.plate_with(rows.clone(), |ctx, idx| {
            ctx.sample("a", Normal::new(&zero, &one)?)?; // batch [10, 1]: rows at dim -2
            Ok(idx.to_vec1::<u32>()?)
        })?;
        let again = ctx.plate_with(rows, |_, idx| Ok(idx.to_vec1::<u32>()?))?;
        assert_eq!(first, again); // the same ten rows
        let mine = Tensor::new(&[3u32, 14, 15], &dev)?;
        ctx.plate_with(Plate::new("cols", 100).subsample(&mine), |ctx, _| {
            ctx.sample("b", Normal::new(&zero, &one)?) // batch [3]
        })
    })?;
    assert_eq!(trace.get("a").unwrap().value.dims(), &[10, 1]);
    assert_eq!(trace.get("b").unwrap().scale, 100.0 / 3.0);
    // The indices were recorded once.
    assert_eq!(trace.get("rows").unwrap().value.dims(), &[10]);
    assert_eq!(
        trace.get("cols").unwrap().value.to_vec1::<u32>()?,
        [3, 14, 15]
    );
    Ok(())
}

/// Minibatches from the training loop: the closures read a batch the loop sets.
#[test]
fn minibatches() -> Res {
    use vi_infer::optim::{Adam, AdamOptions};
    use vi_infer::{Svi, TraceMeanFieldElbo};

    let dev = Device::Cpu;
    let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);

    use std::cell::RefCell;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let truth = Normal::new(&one, &one)?;
    let train = truth.sample(&[20, 4], &mut rng)?; // 20 batches of 4 data points
    let test = truth.sample(&[4], &mut rng)?; // a held-out batch
    let n = 80; // data points in the training set

    let batch = RefCell::new(train.get(0)?);
    let model = |ctx: &mut Ctx| {
        let mu = ctx.sample("mu", Normal::new(&zero, &one)?)?;
        let x = batch.borrow().clone();
        let size = x.dims()[0];
        // Scale the batch's log-likelihood by n / size, as a subsampled plate does.
        ctx.scale(n as f64 / size as f64, |ctx| {
            ctx.plate("data", size, |ctx| {
                ctx.observe("x", Normal::new(&mu, &one)?, &x)
            })
        })
    };
    let guide = |ctx: &mut Ctx| {
        let loc = ctx.param("loc", &zero, Constraint::Real)?;
        let scale = ctx.param("scale", &one, Constraint::Positive)?;
        ctx.sample("mu", Normal::new(&loc, &scale)?)
    };
    let adam = Adam::empty(AdamOptions::default())?;
    let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new());
    for epoch in 0..3 {
        for i in 0..20 {
            *batch.borrow_mut() = train.get(i)?;
            svi.step()?;
        }
        *batch.borrow_mut() = test.clone();
        let test_loss = svi.evaluate_loss()?.loss; // no gradient step
        println!("epoch {epoch}: test loss {test_loss:.3}");
    }

    assert!(svi.evaluate_loss()?.loss.is_finite());
    assert!(svi.store().get("loc")?.unwrap().to_scalar::<f64>()? > 0.0);
    Ok(())
}

/// The handlers through `Ctx`'s methods.
#[test]
fn handlers() -> Res {
    let dev = Device::Cpu;
    let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    let data = Tensor::new(&[1.2f64, 0.8, 1.1, 0.9], &dev)?;
    let model = |ctx: &mut Ctx| {
        let mu = ctx.sample("mu", Normal::new(&zero, &one)?)?;
        ctx.plate("data", 4, |ctx| {
            ctx.observe("x", Normal::new(&mu, &one)?, &data)
        })
    };
    let guide = |ctx: &mut Ctx| {
        let loc = ctx.param("loc", &zero, Constraint::Real)?;
        ctx.sample("mu", Normal::new(&loc, &one)?)
    };
    let mut store = ParamStore::new(&dev, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut ctx = Ctx::new(&mut store, &mut rng);

    use vi_infer::handlers::Block;
    // trace + replay: score the model at the guide's draw (one importance weight).
    let (_, guide_tr) = ctx.trace(guide)?;
    let (_, model_tr) = ctx.trace(|ctx| ctx.replay(&guide_tr, model))?;
    let log_w = (model_tr.log_prob_sum()? - guide_tr.log_prob_sum()?)?;

    // condition: fix a latent site to a value; it becomes observed.
    let fixed = [("mu".to_string(), Tensor::new(0.5f64, &dev)?)];
    let (_, tr) = ctx.trace(|ctx| ctx.condition(fixed, model))?;
    assert!(tr.get("mu").unwrap().is_observed);

    // block: run the sites but hide them from the handlers outside (here, the trace).
    let (_, tr) = ctx.trace(|ctx| ctx.block(Block::hide(["mu"]), model))?;
    assert!(!tr.contains("mu") && tr.contains("x"));

    // scale: multiply log-densities (a KL-annealing weight, say); mask: count some only.
    let beta = 0.1;
    let (_, tr) = ctx.trace(|ctx| ctx.scale(beta, model))?;
    assert_eq!(tr.get("x").unwrap().scale, 0.1);
    let keep = Tensor::new(&[1u8, 1, 0, 1], &dev)?;
    let (_, tr) = ctx.trace(|ctx| ctx.mask(&keep, model))?;
    assert_eq!(tr.get("x").unwrap().log_prob()?.to_vec1::<f64>()?[2], 0.0);

    // seed: the same seed gives the same draws, whatever ran before.
    let a = ctx.seed(7, model)?;
    let b = ctx.seed(7, model)?;
    assert_eq!(a.to_vec1::<f64>()?, b.to_vec1::<f64>()?);

    assert_eq!(
        model_tr.get("mu").unwrap().value.to_scalar::<f64>()?,
        guide_tr.get("mu").unwrap().value.to_scalar::<f64>()?
    );
    assert!(log_w.to_scalar::<f64>()?.is_finite());
    // Replay does not touch observed sites: x keeps its data.
    assert_eq!(
        model_tr.get("x").unwrap().value.to_vec1::<f64>()?,
        data.to_vec1::<f64>()?
    );
    Ok(())
}

/// A handler of one's own.
#[test]
fn custom_handler() -> Res {
    let dev = Device::Cpu;
    let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    let mut store = ParamStore::new(&dev, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut ctx = Ctx::new(&mut store, &mut rng);

    use vi_infer::{Message, Messenger};

    /// Counts the latent sample sites and doubles their log-densities.
    #[derive(Default)]
    struct CountAndDouble {
        latent: usize,
    }
    impl Messenger for CountAndDouble {
        fn process(&mut self, msg: &mut Message) -> vi_infer::Result<()> {
            if msg.is_latent() {
                msg.scale *= 2.0;
            }
            Ok(())
        }
        fn postprocess(&mut self, msg: &Message) -> vi_infer::Result<()> {
            if msg.is_latent() {
                self.latent += 1;
            }
            Ok(())
        }
    }
    let ((_, trace), handler) = ctx.with(CountAndDouble::default(), |ctx| {
        ctx.trace(|ctx| ctx.sample("z", Normal::new(&zero, &one)?))
    })?;
    assert_eq!(handler.latent, 1);
    assert_eq!(trace.get("z").unwrap().scale, 2.0);
    Ok(())
}

/// The param store: constrained parameters, modules, saving.
#[test]
fn param_store() -> Res {
    let dev = Device::Cpu;
    let mut store = ParamStore::new(&dev, DType::F64);
    let init = Tensor::new(&[0.5f64, 2.0], &dev)?;
    let scale = store.param("scale", || Ok(init.clone()), &Constraint::Positive)?;
    let raw = store.unconstrained("scale").unwrap(); // the Var the optimizer moves: log(scale)
    let path = std::env::temp_dir().join("vi_guide_params.safetensors");
    store.save(&path)?; // unconstrained values, module variables included
    let mut back = ParamStore::new(&dev, DType::F64);
    back.load(&path)?;
    let again = back.param("scale", || init.zeros_like(), &Constraint::Positive)?;
    assert_eq!(again.to_vec1::<f64>()?, [0.5, 2.0]); // the init is not used again

    std::fs::remove_file(&path).ok();
    assert_eq!(scale.to_vec1::<f64>()?, [0.5, 2.0]);
    let raw = raw.as_tensor().to_vec1::<f64>()?;
    assert_within_abs("log scale", &raw, &[0.5f64.ln(), 2.0f64.ln()], 1e-12);
    Ok(())
}

/// A tiny VAE: modules in the store, a plate over the batch, Bernoulli pixels, checkpoints.
#[test]
fn modules() -> Res {
    use vi_infer::candle::{DType, Device, Module, Tensor};
    use vi_infer::dist::{Bernoulli, Distribution, Normal};
    use vi_infer::layers::linear; // candle_nn::linear's twin, without gradients for data
    use vi_infer::optim::{Adam, AdamOptions};
    use vi_infer::{Ctx, ParamStore, Svi, TraceMeanFieldElbo};

    let dev = Device::Cpu;
    let images = Tensor::new(
        &[[1f32, 1., 0., 0., 1., 0.], [0., 1., 1., 0., 0., 1.]],
        &dev,
    )?;
    let images = images.repeat((8, 1))?; // 16 images of 6 pixels
    let (n, latent) = (16, 2);

    let store = ParamStore::new(&dev, DType::F32);
    // Modules are built once, from the store: their variables live in it.
    let encoder = linear(6, 2 * latent, store.var_builder("encoder")?)?; // x -> (loc, log scale)
    let decoder = linear(latent, 6, store.var_builder("decoder")?)?; // z -> pixel logits
    let zeros = Tensor::zeros(latent, DType::F32, &dev)?;
    let ones = Tensor::ones(latent, DType::F32, &dev)?;

    let model = |ctx: &mut Ctx| {
        let decoder = ctx.module("decoder", &decoder)?; // step its variables
        ctx.plate("data", n, |ctx| {
            let z = ctx.sample("z", Normal::new(&zeros, &ones)?.to_event(1)?)?;
            let logits = decoder.forward(&z)?;
            ctx.observe("x", Bernoulli::from_logits(&logits)?.to_event(1)?, &images)
        })
    };
    let guide = |ctx: &mut Ctx| {
        let encoder = ctx.module("encoder", &encoder)?;
        ctx.plate("data", n, |ctx| {
            let h = encoder.forward(&images)?;
            let (loc, scale) = (h.narrow(1, 0, latent)?, h.narrow(1, latent, latent)?.exp()?);
            ctx.sample("z", Normal::new(&loc, &scale)?.to_event(1)?)
        })
    };
    let adam = Adam::empty(AdamOptions {
        lr: 1e-2,
        ..Default::default()
    })?;
    let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new()).with_store(store);
    let first = svi.step()?.loss;
    for _ in 0..200 {
        svi.step()?;
    }
    // A checkpoint: parameters, Adam's moments and the generator's position.
    let path = std::env::temp_dir().join("vi_guide_vae.safetensors");
    svi.save(&path)?;
    let next = svi.step()?.loss;
    svi.load(&path)?; // back to the checkpoint: the same step again, bit for bit
    assert_eq!(svi.step()?.loss, next);

    std::fs::remove_file(&path).ok();
    let last = svi.evaluate_loss()?.loss;
    assert!(last < first, "loss {first} -> {last}");
    let names: Vec<String> = svi.store().named_tensors().into_keys().collect();
    assert_eq!(names.len(), 4);
    Ok(())
}

/// The two ELBOs and their particles; a discrete guide site needs `TraceElbo`.
#[test]
fn elbos() -> Res {
    use vi_infer::dist::Bernoulli;
    use vi_infer::optim::{Adam, AdamOptions};
    use vi_infer::{InferError, Svi, TraceElbo, TraceMeanFieldElbo};

    // Eight draws of the guide per step, at once, in a plate left of the model's one plate.
    let elbo = TraceMeanFieldElbo::new()
        .num_particles(8)
        .vectorize_particles(true)
        .max_plate_nesting(1);
    let score = TraceElbo::new().num_particles(8); // eight runs, one after another

    let dev = Device::Cpu;
    let half = Tensor::new(0.5f64, &dev)?;
    let data = Tensor::new(&[1.0f64, 1.0, 0.0, 1.0], &dev)?;
    let model = |ctx: &mut Ctx| {
        let p = ctx.sample("p", vi_infer::dist::Beta::new(&half, &half)?)?;
        ctx.plate("data", 4, |ctx| {
            ctx.observe("x", Bernoulli::from_probs(&p)?, &data)
        })
    };
    let guide = |ctx: &mut Ctx| {
        let a = ctx.param("a", &half, Constraint::Positive)?;
        let b = ctx.param("b", &half, Constraint::Positive)?;
        ctx.sample("p", vi_infer::dist::Beta::new(&a, &b)?)
    };
    let mut svi = Svi::new(model, guide, Adam::empty(AdamOptions::default())?, elbo);
    let report = svi.step()?;
    assert_eq!(report.site("x").unwrap().value.dims(), &[8, 4]);
    let mut svi = Svi::new(model, guide, Adam::empty(AdamOptions::default())?, score);
    assert!(svi.step()?.loss.is_finite());

    // A discrete latent: TraceMeanFieldElbo refuses it, TraceElbo adds the score-function term.
    let coin_model = |ctx: &mut Ctx| {
        let c = ctx.sample("c", Bernoulli::from_probs(&half)?)?;
        let loc = (&c * 2.0)?;
        ctx.observe("y", Normal::new(&loc, &half)?, &Tensor::new(1.8f64, &dev)?)
    };
    let coin_guide = |ctx: &mut Ctx| {
        let p = ctx.param("p", &half, Constraint::UnitInterval)?;
        ctx.sample("c", Bernoulli::from_probs(&p)?)
    };
    let adam = Adam::empty(AdamOptions::default())?;
    let mut svi = Svi::new(coin_model, coin_guide, adam, TraceMeanFieldElbo::new());
    assert!(matches!(
        svi.step(),
        Err(InferError::NotReparameterized { .. })
    ));
    let adam = Adam::empty(AdamOptions::default())?;
    let mut svi = Svi::new(coin_model, coin_guide, adam, TraceElbo::new());
    assert!(svi.step()?.loss.is_finite());
    Ok(())
}

/// The ELBO family of the guide: baselines on a non-reparameterised site under
/// `TraceGraphElbo` (a decaying average and a neural baseline), and IWAE's bound.
#[test]
fn elbo_family() -> Res {
    use candle_nn::Module;
    use vi_infer::dist::Bernoulli;
    use vi_infer::optim::{Adam, AdamOptions};
    use vi_infer::{Baseline, ParamStore, RenyiElbo, SiteOptions, Svi, TraceGraphElbo};

    let dev = Device::Cpu;
    let store = ParamStore::new(&dev, DType::F64);
    let net = candle_nn::linear(2, 1, store.var_builder("baseline")?)?;
    let x = Tensor::new(&[[0.5f64, -1.0], [1.0, 0.2]], &dev)?;
    let half = Tensor::new(0.5f64, &dev)?;
    let model = |ctx: &mut Ctx| {
        ctx.plate("data", 2, |ctx| {
            let c = ctx.sample("c", Bernoulli::from_probs(&half)?)?;
            let d = ctx.sample("d", Bernoulli::from_probs(&half)?)?;
            let y = Tensor::new(&[1.8f64, 0.2], &dev)?;
            ctx.observe("y", Normal::new(&(c + d)?, &half)?, &y)
        })
    };
    let guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let logits = ctx.param(
            "logits",
            &Tensor::zeros(2, DType::F64, &dev)?,
            Constraint::Real,
        )?;
        ctx.plate("data", 2, |ctx| {
            // A decaying average of the site's past costs (Pyro's use_decaying_avg_baseline, beta 0.9).
            let avg = SiteOptions::new().baseline(Baseline::decaying_average(0.9)?);
            ctx.sample_with("c", Bernoulli::from_logits(&logits)?, avg)?;
            // A network's output on a detached input, trained by its own loss term (cost − b)²
            // (Pyro's nn_baseline): mark the module so the optimizer steps it.
            let b = Baseline::neural(ctx.module("baseline", &net)?, &x)?; // x [2, 2]: b [2]
            ctx.sample_with(
                "d",
                Bernoulli::from_logits(&logits)?,
                SiteOptions::new().baseline(b),
            )?;
            Ok(())
        })
    };
    let adam = Adam::empty(AdamOptions {
        lr: 0.05,
        ..Default::default()
    })?;
    let mut svi = Svi::new(model, guide, adam, TraceGraphElbo::new()).with_store(store);
    let before = net.forward(&x)?.flatten_all()?.to_vec1::<f64>()?;
    for _ in 0..20 {
        assert!(svi.step()?.loss.is_finite());
    }
    // The baseline's module was stepped by its loss term.
    assert_ne!(net.forward(&x)?.flatten_all()?.to_vec1::<f64>()?, before);

    // IWAE with 5000 importance samples per image, drawn at once in a plate left of `data`.
    let iwae = RenyiElbo::new(0.0)?
        .num_particles(5000)
        .vectorize_particles(true)
        .max_plate_nesting(1);
    let data = Tensor::new(&[0.3f64, -0.4], &dev)?;
    let m = |ctx: &mut Ctx| {
        ctx.plate("data", 2, |ctx| {
            let z = ctx.sample("z", Normal::new(&half.zeros_like()?, &half.ones_like()?)?)?;
            ctx.observe("x", Normal::new(&z, &half)?, &data)
        })
    };
    let g = |ctx: &mut Ctx| {
        ctx.plate("data", 2, |ctx| {
            ctx.sample("z", Normal::new(&half.zeros_like()?, &half)?)
        })
    };
    let mut svi = Svi::new(m, g, Adam::empty(AdamOptions::default())?, iwae);
    let bound = -svi.evaluate_loss()?.loss;
    // log p(x) = Σ log N(x_i; 0, √1.25); 5000 samples leave the bound within a few hundredths.
    let exact: f64 = [0.3f64, -0.4]
        .iter()
        .map(|x| -0.5 * x * x / 1.25 - 0.5 * (2.0 * std::f64::consts::PI * 1.25).ln())
        .sum();
    assert!((bound - exact).abs() < 0.05, "{bound} vs {exact}");
    Ok(())
}

/// Per-site KL from the step report: analytic and Monte Carlo.
#[test]
fn per_site_kl() -> Res {
    use vi_infer::dist::{Constraint, HalfNormal, LogNormal, Normal};
    use vi_infer::optim::{Adam, AdamOptions};
    use vi_infer::{Ctx, Svi, TermKind, TraceMeanFieldElbo};

    let dev = Device::Cpu;
    let data = Tensor::new(&[1.2f64, 0.8, 1.1, 0.9], &dev)?;
    let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    let model = |ctx: &mut Ctx| {
        let mu = ctx.sample("mu", Normal::new(&zero, &one)?)?;
        let sigma = ctx.sample("sigma", HalfNormal::new(&one)?)?;
        ctx.plate("data", 4, |ctx| {
            ctx.observe("x", Normal::new(&mu, &sigma)?, &data)
        })
    };
    let guide = |ctx: &mut Ctx| {
        let loc = ctx.param("loc", &zero, Constraint::Real)?;
        let log_sigma = ctx.param("log_sigma", &zero, Constraint::Real)?;
        ctx.sample("mu", Normal::new(&loc, &one)?)?;
        ctx.sample("sigma", LogNormal::new(&log_sigma, &(&one * 0.3)?)?)
    };
    let adam = Adam::empty(AdamOptions::default())?;
    let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new());
    let report = svi.step()?;
    for term in &report.sites {
        let how = match term.kind {
            TermKind::KlAnalytic => "KL(q || p), closed form",
            TermKind::KlMonteCarlo => "KL(q || p), one-draw estimate log q(z) - log p(z)",
            TermKind::LogLikelihood => "log p(x | z)",
            TermKind::Marginalized => "log of a sum over enumerated values",
            TermKind::Auxiliary => "log q(u) of a guide-only (auxiliary) site",
        };
        println!("{:>6} {:>9.4}  {how}", term.name, term.sum_f64()?);
    }
    let kl_mu = report.site("mu").unwrap().sum_f64()?;
    let total_kl: f64 = report
        .kls()
        .map(|t| t.sum_f64())
        .sum::<vi_infer::Result<f64>>()?;

    assert_eq!(report.site("mu").unwrap().kind, TermKind::KlAnalytic);
    assert_eq!(report.site("sigma").unwrap().kind, TermKind::KlMonteCarlo);
    assert_eq!(report.site("x").unwrap().kind, TermKind::LogLikelihood);
    // KL(N(0, 1) || N(0, 1)) = 0 at the first step (loc starts at 0).
    assert_within_abs("KL(mu)", &[kl_mu], &[0.0], 1e-12);
    // loss = sum of KLs - sum of log-likelihoods
    let ll = report.site("x").unwrap().sum_f64()?;
    assert_within_abs("loss", &[report.loss], &[total_kl - ll], 1e-9);
    // The same decomposition under TraceElbo, with two particles: every KL is Monte Carlo.
    let adam = Adam::empty(AdamOptions::default())?;
    let elbo = vi_infer::TraceElbo::new().num_particles(2);
    let mut svi = Svi::new(model, guide, adam, elbo);
    let report = svi.step()?;
    assert!(report.kls().all(|t| t.kind == TermKind::KlMonteCarlo));
    let total_kl: f64 = report.kls().map(|t| t.sum_f64().unwrap()).sum();
    let ll = report.site("x").unwrap().sum_f64()?;
    assert_within_abs("loss", &[report.loss], &[total_kl - ll], 1e-9);
    Ok(())
}

/// Per-site KL in a VAE-shaped model: the value is batch-shaped; the mean per dimension.
#[test]
fn per_site_kl_batch() -> Res {
    use vi_infer::optim::{Adam, AdamOptions};
    use vi_infer::{Svi, TermKind, TraceMeanFieldElbo};

    let dev = Device::Cpu;
    let (batch, latent) = (8, 3);
    let x = Normal::new(
        &Tensor::zeros((batch, latent), DType::F64, &dev)?,
        &Tensor::ones((batch, latent), DType::F64, &dev)?,
    )?
    .sample(&[], &mut ChaCha8Rng::seed_from_u64(1))?;
    let zeros = Tensor::zeros(latent, DType::F64, &dev)?;
    let ones = Tensor::ones(latent, DType::F64, &dev)?;
    let model = |ctx: &mut Ctx| {
        ctx.plate("data", batch, |ctx| {
            let z = ctx.sample("z", Normal::new(&zeros, &ones)?.to_event(1)?)?;
            ctx.observe("x", Normal::new(&z, &ones)?.to_event(1)?, &x)
        })
    };
    let guide = |ctx: &mut Ctx| {
        let loc = ctx.param("loc", &x.zeros_like()?, Constraint::Real)?;
        let scale = ctx.param("scale", &(x.ones_like()? * 0.5)?, Constraint::Positive)?;
        ctx.plate("data", batch, |ctx| {
            ctx.sample("z", Normal::new(&loc, &scale)?.to_event(1)?)
        })
    };
    let adam = Adam::empty(AdamOptions::default())?;
    let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new());

    let report = svi.step()?;
    let z = report.site("z").unwrap();
    assert_eq!(z.kind, TermKind::KlAnalytic);
    assert_eq!(z.value.dims(), &[batch]); // one KL per data point, summed over the event dim
    let per_dim = z.sum_f64()? / (batch * latent) as f64; // mean KL per latent dimension

    // KL(N(0, 0.5) || N(0, 1)) per dim = -log 0.5 + (0.25 - 1) / 2
    let want = -(0.5f64.ln()) + (0.25 - 1.0) / 2.0;
    assert_within_abs("KL per dim", &[per_dim], &[want], 1e-12);
    Ok(())
}

/// The seed question: a `Normal(loc, scale).to_event(1)` guide against a MultivariateNormal
/// prior.
#[test]
fn seed_question() -> Res {
    use vi_infer::dist::{Constraint, Distribution, MultivariateNormal, Normal};
    use vi_infer::kl::kl_divergence;
    use vi_infer::optim::{Adam, AdamOptions};
    use vi_infer::{Ctx, Svi, TermKind, TraceMeanFieldElbo};

    let dev = Device::Cpu;
    let zeros = Tensor::zeros(3, DType::F64, &dev)?;
    let ones = Tensor::ones(3, DType::F64, &dev)?;
    let x = Tensor::new(&[0.5f64, -0.3, 1.2], &dev)?;
    let tril = Tensor::new(&[[1.0f64, 0., 0.], [0.6, 0.8, 0.], [-0.4, 0.3, 0.9]], &dev)?;
    let model = |ctx: &mut Ctx| {
        let prior = MultivariateNormal::from_scale_tril(&zeros, &tril)?; // correlated
        let z = ctx.sample("z", prior)?;
        ctx.observe("x", Normal::new(&z, &ones)?.to_event(1)?, &x)
    };
    let guide = |ctx: &mut Ctx| {
        let loc = ctx.param("loc", &zeros, Constraint::Real)?;
        let scale = ctx.param("scale", &ones, Constraint::Positive)?;
        ctx.sample("z", Normal::new(&loc, &scale)?.to_event(1)?) // mean field
    };
    let adam = Adam::empty(AdamOptions::default())?;
    let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new());
    svi.step()?;
    let report = svi.evaluate_loss()?; // no step: the traces' parameters stay as they were
    let term = report.site("z").unwrap();
    assert_eq!(term.kind, TermKind::KlAnalytic); // a closed form, not an estimate

    // The same number by hand, from the distributions the two traces hold...
    let q = report.guide_trace.get("z").unwrap().dist.as_ref().unwrap();
    let p = report.model_trace.get("z").unwrap().dist.as_ref().unwrap();
    let by_hand = kl_divergence(q.as_ref(), p.as_ref())?;
    // ...and with the guide written as a diagonal MVN: pass the scale, not a variance.
    let loc = &report.guide_trace.get("loc").unwrap().value;
    let scale = &report.guide_trace.get("scale").unwrap().value;
    let diag = MultivariateNormal::from_diag_scale(loc, scale)?;
    let as_mvn = kl_divergence(&diag, p.as_ref())?;
    // The other direction has a closed form too.
    let reverse = kl_divergence(p.as_ref(), q.as_ref())?;

    let (a, b, c) = (
        term.sum_f64()?,
        by_hand.to_scalar::<f64>()?,
        as_mvn.to_scalar::<f64>()?,
    );
    assert_within_abs("KL by hand", &[a], &[b], 1e-12);
    assert_within_abs("KL as an MVN", &[a], &[c], 1e-10);
    assert!(reverse.to_scalar::<f64>()? > 0.0);
    let _ = Distribution::event_shape(&diag);
    Ok(())
}

/// Each call form of the guide's Pyro → vi table.
#[test]
fn translation_table() -> Res {
    use vi_infer::dist::{Independent, Masked};
    use vi_infer::handlers::Block;
    use vi_infer::kl::{KlRegistry, kl_divergence, register_kl};
    use vi_infer::optim::{Adam, AdamOptions, ClippedAdam, ClippedAdamOptions};
    use vi_infer::{Svi, TraceElbo, TraceMeanFieldElbo};

    let dev = Device::Cpu;
    let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    let init = one.clone();
    let data = Tensor::new(&[0.5f64, 1.5], &dev)?;
    let (n, b) = (2, 1);
    let (v, m, s) = (zero.clone(), Tensor::new(&[1u8, 0], &dev)?, 0.5);
    let store = ParamStore::new(&dev, DType::F64);
    let encoder = vi_infer::nn::linear(2, 2, store.var_builder("encoder")?)?;
    let mut store = store;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut ctx = Ctx::new(&mut store, &mut rng);
    let dist = Normal::new(&zero, &one)?;

    let (_, tr) = ctx.trace(|ctx| {
        let z = ctx.sample("z", dist.clone())?;
        ctx.observe("x0", Normal::new(&z, &one)?, &one)?;
        let _s = ctx.param("s", &init, Constraint::Positive)?;
        let _s2 = ctx.param_with("s2", || Ok(init.clone()), Constraint::Positive)?;
        let _enc = ctx.module("encoder", &encoder)?;
        ctx.deterministic("d", &z)?;
        ctx.plate("data", n, |ctx| {
            ctx.observe("x", Normal::new(&z, &one)?, &data)
        })?;
        ctx.plate_dim("rows", n, -2, |ctx| ctx.sample("r", dist.clone()))?;
        ctx.plate_subsample("sub", n, b, |ctx, idx| {
            ctx.observe("xs", Normal::new(&z, &one)?, &data.index_select(idx, 0)?)
        })?;
        ctx.plate_with(
            vi_infer::Plate::new("sub2", n).subsample_size(b).dim(-2),
            |ctx, _| ctx.sample("r2", dist.clone()),
        )?;
        let idx = Tensor::new(&[1u32], &dev)?;
        ctx.plate_with(vi_infer::Plate::new("own", n).subsample(&idx), |ctx, _| {
            ctx.sample("r3", dist.clone())
        })?;
        ctx.factor("f", &Tensor::new(-0.5f64, &dev)?)?;
        ctx.plate("missing", n, |ctx| {
            ctx.observe_masked("xm", Normal::new(&zero, &one)?, &data, &m)
        })?;
        let _nr: vi_infer::dist::NoRsample = dist.without_rsample();
        let _e: Independent = Normal::new(&data, &data)?.to_event(1)?;
        let _m: Masked = dist.mask(&Tensor::new(1u8, &dev)?)?;
        Ok(())
    })?;
    assert_eq!(tr.get("r2").unwrap().plates[0].dim, -2);
    assert_eq!(tr.get("r3").unwrap().scale, 2.0);
    assert!(tr.get("f").unwrap().is_observed && tr.get("xm_unobserved").unwrap().is_latent());
    assert_eq!(tr.get("s").unwrap().kind, vi_infer::SiteKind::Param);
    assert!(tr.get("s2").is_some() && tr.get("d").is_some());
    assert_eq!(ctx.modules(), ["encoder"]);
    assert_eq!(tr.get("r").unwrap().value.dims(), &[2, 1]);
    assert_eq!(tr.get("xs").unwrap().scale, 2.0);
    let _ = tr.get("z").unwrap().value.clone();
    let _ = tr.get("z").unwrap().dist.as_ref().unwrap();
    let _ = tr.log_prob_sum()?;
    let _ = tr.format_shapes()?;

    let f = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
    let (_, tr) = ctx.trace(f)?;
    ctx.replay(&tr, f)?;
    ctx.condition([("z".to_string(), v.clone())], f)?;
    ctx.substitute([("s".to_string(), v.clone())], |ctx| {
        ctx.param("s", &init, Constraint::Positive)
    })?;
    ctx.block(Block::hide(["z"]), f)?;
    ctx.block(Block::expose(["z"]), f)?;
    ctx.block(Block::All, f)?;
    ctx.scale(s, f)?;
    ctx.scale_by(&data, |ctx| {
        ctx.plate("data", n, |ctx| ctx.sample("zs", Normal::new(&zero, &one)?))
    })?;
    ctx.mask(&m, |ctx| ctx.sample("zm", Normal::new(&data, &data)?))?;
    ctx.seed(0, f)?;
    let (_, tracer) = ctx.with(vi_infer::handlers::TraceMessenger::new(), f)?;
    assert!(tracer.into_trace().contains("z"));

    let _ = TraceElbo::new();
    let _ = TraceMeanFieldElbo::new();
    let _ = TraceElbo::new()
        .num_particles(8)
        .vectorize_particles(true)
        .max_plate_nesting(1);
    let _ = Adam::empty(AdamOptions {
        lr: 1e-3,
        ..Default::default()
    })?;
    let optim = ClippedAdam::empty(ClippedAdamOptions {
        lr: 1e-3,
        clip_norm: 10.0,
        lrd: 0.999,
        ..Default::default()
    })?;
    let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
    let guide = |ctx: &mut Ctx| {
        let loc = ctx.param("loc", &zero, Constraint::Real)?;
        ctx.sample("z", Normal::new(&loc, &one)?)
    };
    let mut svi = Svi::new(model, guide, optim, TraceElbo::new()).seed(0);
    let _ = svi.step()?.loss;
    let _ = svi.evaluate_loss()?.loss;
    let path = std::env::temp_dir().join("vi_guide_table.safetensors");
    svi.store().save(&path)?;
    svi.store_mut().load(&path)?;
    svi.save(&path)?;
    svi.load(&path)?;
    std::fs::remove_file(&path).ok();
    let _ = svi.store().get("loc")?;

    let before = vi_infer::dist::set_validation(false);
    vi_infer::dist::set_validation(before);
    let checked = vi_infer::dist::with_validation(false, vi_infer::dist::validation_enabled);
    assert!(!checked);

    let p = Normal::new(&zero, &one)?;
    let q = Normal::new(&one, &one)?;
    let _ = kl_divergence(&p, &q)?;
    // register_kl: a rule for a distribution type of one's own.
    register_kl(|p: &Mine, q: &Normal, reg: &KlRegistry| reg.kl(&p.0, q));
    let kl = kl_divergence(&Mine(p.clone()), &p)?;
    assert_eq!(kl.to_scalar::<f64>()?, 0.0);
    Ok(())
}

/// A distribution type of one's own (a Normal inside), for `register_kl`.
#[derive(Clone, Debug)]
struct Mine(Normal);

impl Distribution for Mine {
    fn name(&self) -> &'static str {
        "Mine"
    }
    fn batch_shape(&self) -> &[usize] {
        self.0.batch_shape()
    }
    fn event_shape(&self) -> &[usize] {
        self.0.event_shape()
    }
    fn dtype(&self) -> DType {
        self.0.dtype()
    }
    fn device(&self) -> &Device {
        self.0.device()
    }
    fn sample(&self, s: &[usize], rng: &mut dyn rand::RngCore) -> vi_infer::dist::Result<Tensor> {
        self.0.sample(s, rng)
    }
    fn log_prob(&self, x: &Tensor) -> vi_infer::dist::Result<Tensor> {
        self.0.log_prob(x)
    }
    fn entropy(&self) -> vi_infer::dist::Result<Tensor> {
        self.0.entropy()
    }
    fn mean(&self) -> vi_infer::dist::Result<Tensor> {
        self.0.mean()
    }
    fn variance(&self) -> vi_infer::dist::Result<Tensor> {
        self.0.variance()
    }
    fn support(&self) -> Constraint {
        self.0.support()
    }
    fn expand(&self, b: &[usize]) -> vi_infer::dist::Result<Box<dyn Distribution>> {
        self.0.expand(b)
    }
    fn clone_box(&self) -> Box<dyn Distribution> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Discrete latents: a mixture and an HMM summed out with `TraceEnumElbo`, decoded with
/// `infer_discrete`.
#[test]
fn enumeration() -> Res {
    use vi_infer::dist::Categorical;
    use vi_infer::optim::{Adam, AdamOptions};
    use vi_infer::{Elbo, InferDiscrete, Svi, TraceEnumElbo, vindex};
    let dev = Device::Cpu;
    let one = Tensor::new(1.0f64, &dev)?;

    // A mixture of two Gaussians: each point's component summed out, the rest fitted.
    let data = Tensor::new(&[0.0f64, 1.0, 10.0, 11.0, 12.0], &dev)?;
    let model = |ctx: &mut Ctx| {
        let w0 = Tensor::new(&[0.5f64, 0.5], &dev)?;
        let weights = ctx.param("weights", &w0, Constraint::Simplex)?;
        let locs0 = Tensor::new(&[2.0f64, 8.0], &dev)?;
        let locs = ctx.param("locs", &locs0, Constraint::Real)?;
        let scale = ctx.param("scale", &Tensor::new(2.0f64, &dev)?, Constraint::Positive)?;
        ctx.plate("data", 5, |ctx| {
            // The values 0 and 1 along a dim left of the plate: shape [2, 1].
            let z = ctx.sample_enum("z", Categorical::from_probs(&weights)?)?;
            let loc = vindex(&locs, &[&z])?; // locs[z], shape [2, 1]
            ctx.observe("x", Normal::new(&loc, &scale)?, &data)?; // log-density [2, 5]
            Ok(z)
        })
    };
    let guide = |_: &mut Ctx| Ok(()); // nothing left to sample: maximum likelihood
    let adam = Adam::empty(AdamOptions {
        lr: 0.1,
        ..Default::default()
    })?;
    let elbo = TraceEnumElbo::new().max_plate_nesting(1);
    let mut svi = Svi::new(model, guide, adam, elbo);
    for _ in 0..300 {
        svi.step()?;
    }
    // Each point's most probable component, under the fitted parameters.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut ctx = Ctx::new(svi.store_mut(), &mut rng);
    let z = ctx.infer_discrete(&InferDiscrete::map(), model)?;
    assert_eq!(z.to_vec1::<f64>()?, [0.0, 0.0, 1.0, 1.0, 1.0]);

    // A hidden Markov model: each state summed out, two enumeration dims for the whole chain.
    let trans = Tensor::new(&[[0.9f64, 0.1], [0.2, 0.8]], &dev)?;
    let ys = Tensor::new(&[0.1f64, -0.3, 2.2, 1.9, 2.4], &dev)?;
    let locs = Tensor::new(&[0.0f64, 2.0], &dev)?;
    let hmm = |ctx: &mut Ctx| {
        let mut x = Tensor::new(0.0f64, &dev)?; // the state before the first
        ctx.markov(0..5, |ctx, t| {
            let probs = vindex(&trans, &[&x])?; // trans[x]
            x = ctx.sample_enum(&format!("x_{t}"), Categorical::from_probs(&probs)?)?;
            let y = ys.narrow(0, t, 1)?.squeeze(0)?;
            let emission = Normal::new(&vindex(&locs, &[&x])?, &one)?;
            ctx.observe(&format!("y_{t}"), emission, &y)?;
            Ok(x.clone())
        })
    };
    let mut store = ParamStore::new(&dev, DType::F64);
    let out = TraceEnumElbo::new().max_plate_nesting(0).compute(
        &mut |ctx: &mut Ctx| hmm(ctx).map(|_| ()),
        &mut |_: &mut Ctx| Ok(()),
        &mut store,
        &mut rng,
    )?;
    println!("log p(y) = {:.4}", -out.loss.to_scalar::<f64>()?); // the forward algorithm's
    let mut ctx = Ctx::new(&mut store, &mut rng);
    let path = ctx.infer_discrete(&InferDiscrete::map(), hmm)?; // Viterbi
    let path: Vec<f64> = path
        .iter()
        .map(|x| x.to_scalar::<f64>())
        .collect::<Result<_, _>>()?;
    assert_eq!(path, [0.0, 0.0, 1.0, 1.0, 1.0]);
    // Pyro's @config_enumerate: every discrete latent site of a program marked at once.
    let marked = vi_infer::config_enumerate(|ctx: &mut Ctx| {
        let p = Tensor::new(0.3f64, &dev)?;
        ctx.sample("c", vi_infer::dist::Bernoulli::from_probs(&p)?)
    });
    let mut marked = marked;
    let (_, tr) = ctx.trace(|ctx| marked(ctx))?;
    assert!(tr.get("c").unwrap().infer.enumerate);
    // The forward algorithm by hand, for the check.
    let lnorm = |y: f64, m: f64| crate::common::normal_lp(y, m, 1.0);
    let (a, mu, yv) = (
        [[0.9, 0.1], [0.2, 0.8]],
        [0.0, 2.0],
        [0.1, -0.3, 2.2, 1.9, 2.4],
    );
    let mut alpha: Vec<f64> = (0..2)
        .map(|j| a[0][j] * lnorm(yv[0], mu[j]).exp())
        .collect();
    for y in &yv[1..] {
        alpha = (0..2)
            .map(|j| (0..2).map(|i| alpha[i] * a[i][j]).sum::<f64>() * lnorm(*y, mu[j]).exp())
            .collect();
    }
    let want = alpha.iter().sum::<f64>().ln();
    assert_within_abs("log p(y)", &[-out.loss.to_scalar::<f64>()?], &[want], 1e-12);
    Ok(())
}

/// The guide's "Automatic guides" and "Predictive" sections: an `AutoNormal` on a regression
/// with a positive noise scale, its posterior summaries, an `AutoGuideList`, and the posterior
/// predictive.
#[test]
fn automatic_guides_and_predictive() -> Res {
    use vi_infer::autoguide::{
        AutoDelta, AutoGuide, AutoGuideList, AutoMultivariateNormal, AutoNormal,
    };
    use vi_infer::candle::D;
    use vi_infer::dist::HalfNormal;
    use vi_infer::handlers::Block;
    use vi_infer::optim::{Adam, AdamOptions};
    use vi_infer::{Predictive, Svi, TraceMeanFieldElbo};
    let dev = Device::Cpu;
    let n = 50;
    let mut gen_rng = ChaCha8Rng::seed_from_u64(4);
    let x = vi_infer::dist::standard_normal(&[n, 2], DType::F64, &dev, &mut gen_rng)?;
    let noise = vi_infer::dist::standard_normal(&[n], DType::F64, &dev, &mut gen_rng)?;
    let w_true = Tensor::new(&[1.0f64, -0.5], &dev)?;
    let y = (x.broadcast_mul(&w_true)?.sum(D::Minus1)? + (noise * 0.3)?)?;
    let (zeros, ones) = (
        Tensor::zeros(2, DType::F64, &dev)?,
        Tensor::ones(2, DType::F64, &dev)?,
    );
    let one = Tensor::new(1.0f64, &dev)?;
    let model = |ctx: &mut Ctx| {
        let w = ctx.sample("w", Normal::new(&zeros, &ones)?.to_event(1)?)?;
        let sigma = ctx.sample("sigma", HalfNormal::new(&one)?)?;
        let mean = x.broadcast_mul(&w)?.sum(D::Minus1)?;
        ctx.plate("data", n, |ctx| {
            ctx.observe("y", Normal::new(&mean, &sigma)?, &y)
        })
    };
    let guide = AutoNormal::new(model); // the closure borrows its data: it is Copy
    let adam = Adam::empty(AdamOptions {
        lr: 0.03,
        ..Default::default()
    })?;
    let mut svi = Svi::new(model, guide.as_fn(), adam, TraceMeanFieldElbo::new()).seed(0);
    for _ in 0..1500 {
        svi.step()?;
    }
    let median = guide.median(svi.store())?; // site name -> constrained value
    let bands = guide.quantiles(svi.store(), &[0.05, 0.95])?; // [2, ...site shape] per site
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let draws = guide.sample_posterior(svi.store(), 1000, &mut rng)?; // [1000, ...] per site
    let report = svi.step()?;
    let kl_sigma = report.site("sigma").unwrap(); // terms under the model's site names

    let w = median["w"].to_vec1::<f64>()?;
    assert!(
        (w[0] - 1.0).abs() < 0.15 && (w[1] + 0.5).abs() < 0.15,
        "{w:?}"
    );
    let sigma = median["sigma"].to_scalar::<f64>()?;
    assert!((sigma - 0.3).abs() < 0.1, "{sigma}");
    assert_eq!(bands["w"].dims(), &[2, 2]);
    assert_eq!(draws["sigma"].dims(), &[1000]);
    assert!(draws["sigma"].min(0)?.to_scalar::<f64>()? > 0.0);
    assert_eq!(kl_sigma.kind, vi_infer::TermKind::KlMonteCarlo); // a log-normal against a half-normal

    let guide = AutoGuideList::new()
        .push(AutoMultivariateNormal::new(model).block(Block::hide(["sigma"])))
        .push(AutoDelta::new(model).block(Block::expose(["sigma"])));
    let mut svi2 = Svi::new(
        model,
        guide.as_fn(),
        Adam::empty(AdamOptions::default())?,
        TraceMeanFieldElbo::new(),
    );
    svi2.step()?;
    assert_eq!(guide.latent_sites(), ["w", "sigma"]);

    let guide = AutoNormal::new(model);
    let adam = Adam::empty(AdamOptions {
        lr: 0.03,
        ..Default::default()
    })?;
    let mut svi = Svi::new(model, guide.as_fn(), adam, TraceMeanFieldElbo::new()).seed(0);
    for _ in 0..300 {
        svi.step()?;
    }
    let mut predictive = Predictive::with_guide(model, guide.as_fn())
        .num_samples(1000)
        .parallel(true);
    let draws = predictive.run(svi.store_mut())?;
    let y_draws = &draws["y"]; // [1000, n]: the posterior predictive of the data
    let sigma_draws = &draws["sigma"]; // [1000]
    assert_eq!(y_draws.dims(), &[1000, n]);
    assert_eq!(sigma_draws.dims(), &[1000]);
    Ok(())
}

/// The error catalogue of docs/guide.md ("Errors and validation"): each model and guide
/// gives the error and the message shown there (the source location of a constructor's
/// error aside, which names this file).
#[test]
fn error_catalogue() -> Res {
    use vi_infer::dist::{Bernoulli, Beta, Poisson};
    use vi_infer::optim::{Adam, AdamOptions, Optimizer};
    use vi_infer::{InferError, Svi, TraceMeanFieldElbo};
    let dev = Device::Cpu;
    let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    fn first_step_error<TM, TG>(
        model: impl FnMut(&mut Ctx) -> vi_infer::Result<TM>,
        guide: impl FnMut(&mut Ctx) -> vi_infer::Result<TG>,
    ) -> InferError {
        let adam = Adam::empty(AdamOptions::default()).unwrap();
        step_error(model, guide, adam, TraceMeanFieldElbo::new())
    }
    /// The message without the source location of a constructor's error.
    fn unlocated(e: &InferError) -> String {
        let text = e.to_string();
        match text.find(" (at ") {
            Some(i) => text[..i].to_string(),
            None => text,
        }
    }
    let mut seen: Vec<(&str, String)> = Vec::new();
    {
        // catalogue: DuplicateSite
        let model = |ctx: &mut Ctx| {
            ctx.sample("z", Normal::new(&zero, &one)?)?;
            ctx.sample("z", Normal::new(&zero, &one)?) // the same name again
        };
        let guide = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
        // catalogue end
        let e = first_step_error(model, guide);
        assert!(
            matches!(e.root(), InferError::DuplicateSite { .. }),
            "{e:?}"
        );
        seen.push(("DuplicateSite", unlocated(&e)));
    }
    {
        // catalogue: GuideSiteNotInModel
        let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
        let guide = |ctx: &mut Ctx| {
            ctx.sample("z", Normal::new(&zero, &one)?)?;
            ctx.sample("extra", Normal::new(&zero, &one)?)
        };
        // catalogue end
        let e = first_step_error(model, guide);
        assert!(
            matches!(e.root(), InferError::GuideSiteNotInModel { .. }),
            "{e:?}"
        );
        seen.push(("GuideSiteNotInModel", unlocated(&e)));
    }
    {
        // catalogue: LatentNotInGuide
        let model = |ctx: &mut Ctx| {
            ctx.sample("z", Normal::new(&zero, &one)?)?;
            ctx.sample("w", Normal::new(&zero, &one)?)
        };
        let guide = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
        // catalogue end
        let e = first_step_error(model, guide);
        assert!(
            matches!(e.root(), InferError::LatentNotInGuide { .. }),
            "{e:?}"
        );
        seen.push(("LatentNotInGuide", unlocated(&e)));
    }
    {
        // catalogue: EventShape
        let loc = Tensor::zeros(3, DType::F64, &dev)?;
        let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&loc, &one)?.to_event(1)?);
        let guide =
            |ctx: &mut Ctx| ctx.plate("p", 3, |ctx| ctx.sample("z", Normal::new(&zero, &one)?));
        // catalogue end
        let e = first_step_error(model, guide);
        assert!(matches!(e.root(), InferError::EventShape { .. }), "{e:?}");
        seen.push(("EventShape", unlocated(&e)));
    }
    {
        // catalogue: BatchShape
        let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?); // batch []
        let guide = |ctx: &mut Ctx| {
            ctx.plate("p", 3, |ctx| ctx.sample("z", Normal::new(&zero, &one)?)) // batch [3]
        };
        // catalogue end
        let e = first_step_error(model, guide);
        assert!(matches!(e.root(), InferError::BatchShape { .. }), "{e:?}");
        seen.push(("BatchShape", unlocated(&e)));
    }
    {
        // catalogue: SiteShape
        let x = Tensor::zeros((5, 1), DType::F64, &dev)?;
        let model = |ctx: &mut Ctx| {
            ctx.plate("data", 5, |ctx| {
                ctx.observe("x", Normal::new(&zero, &one)?, &x)
            })
        };
        let guide = |_: &mut Ctx| Ok(());
        // catalogue end
        let e = first_step_error(model, guide);
        assert!(matches!(e.root(), InferError::SiteShape { .. }), "{e:?}");
        seen.push(("SiteShape", unlocated(&e)));
    }
    {
        // catalogue: PlateSize
        let x = Tensor::zeros(3, DType::F64, &dev)?;
        let model = |ctx: &mut Ctx| {
            ctx.plate("data", 4, |ctx| {
                ctx.observe("x", Normal::new(&zero, &one)?, &x)
            })
        };
        let guide = |_: &mut Ctx| Ok(());
        // catalogue end
        let e = first_step_error(model, guide);
        assert!(matches!(e.root(), InferError::PlateSize { .. }), "{e:?}");
        seen.push(("PlateSize", unlocated(&e)));
    }
    {
        // catalogue: GuidePlateNotInModel
        let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
        let guide = |ctx: &mut Ctx| {
            ctx.plate("batch", 4, |_| Ok(()))?;
            ctx.sample("z", Normal::new(&zero, &one)?)
        };
        // catalogue end
        let e = first_step_error(model, guide);
        assert!(
            matches!(e.root(), InferError::GuidePlateNotInModel { .. }),
            "{e:?}"
        );
        seen.push(("GuidePlateNotInModel", unlocated(&e)));
    }
    {
        // catalogue: NotReparameterized
        let half = Tensor::new(0.5f64, &dev)?;
        let model = |ctx: &mut Ctx| ctx.sample("c", Bernoulli::from_probs(&half)?);
        let guide = |ctx: &mut Ctx| ctx.sample("c", Bernoulli::from_probs(&half)?);
        // catalogue end
        let e = first_step_error(model, guide);
        assert!(
            matches!(e.root(), InferError::NotReparameterized { .. }),
            "{e:?}"
        );
        seen.push(("NotReparameterized", unlocated(&e)));
    }
    {
        // catalogue: ElboSetting
        let e = vi_infer::RenyiElbo::new(1.0).unwrap_err();
        // catalogue end
        assert!(matches!(e.root(), InferError::ElboSetting { .. }), "{e:?}");
        seen.push(("ElboSetting", unlocated(&e)));
    }
    {
        // catalogue: Baseline
        use vi_infer::{Baseline, SiteOptions, TraceGraphElbo};
        let half = Tensor::new(0.5f64, &dev)?;
        let model = |ctx: &mut Ctx| {
            ctx.plate("data", 3, |ctx| {
                ctx.sample("c", Bernoulli::from_probs(&half)?)
            })
        };
        let guide = |ctx: &mut Ctx| {
            let b = Baseline::fixed(Tensor::new(&[1.0f64, 2.0], &dev)?); // two values, three sites
            let opts = SiteOptions::new().baseline(b);
            ctx.plate("data", 3, |ctx| {
                ctx.sample_with("c", Bernoulli::from_probs(&half)?, opts)
            })
        };
        let mut svi = Svi::new(
            model,
            guide,
            Adam::empty(AdamOptions::default())?,
            TraceGraphElbo::new(),
        );
        let e = svi.step().unwrap_err();
        // catalogue end
        assert!(matches!(e.root(), InferError::Baseline { .. }), "{e:?}");
        seen.push(("Baseline", unlocated(&e)));
    }
    {
        // catalogue: Observed
        let counts = Tensor::new(&[2.0f64, -1.0], &dev)?;
        let model = |ctx: &mut Ctx| {
            ctx.plate("data", 2, |ctx| {
                ctx.observe("counts", Poisson::new(&one)?, &counts)
            })
        };
        let guide = |_: &mut Ctx| Ok(());
        // catalogue end
        let e = first_step_error(model, guide);
        assert!(matches!(e.root(), InferError::Observed { .. }), "{e:?}");
        seen.push(("Observed", unlocated(&e)));
    }
    {
        // catalogue: InProgram
        let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
        let guide = |ctx: &mut Ctx| {
            let loc = ctx.param("loc", &zero, Constraint::Real)?;
            let scale = (&one - 2.0)?; // -1: not a scale
            ctx.sample("z", Normal::new(&loc, &scale)?)
        };
        // catalogue end
        let e = first_step_error(model, guide);
        assert!(matches!(&e, InferError::InProgram { .. }), "{e:?}");
        seen.push(("InProgram", unlocated(&e)));
    }
    {
        // catalogue: NonFinite (loss)
        let model = |ctx: &mut Ctx| {
            let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
            ctx.observe("y", Beta::new(&z.exp()?, &(&one + 1.0)?)?, &one) // Beta(a, 2) at 1: -inf
        };
        let guide = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
        // catalogue end
        let e = first_step_error(model, guide);
        assert!(matches!(e.root(), InferError::NonFinite { .. }), "{e:?}");
        seen.push(("NonFinite (loss)", unlocated(&e)));
    }
    {
        // catalogue: NonFinite (gradient)
        let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
        let guide = |ctx: &mut Ctx| {
            let p = ctx.param("p", &one, Constraint::Real)?;
            let loc = (p - 1.0)?.sqrt()?; // sqrt at 0: an infinite derivative
            ctx.sample("z", Normal::new(&loc, &one)?)
        };
        // catalogue end
        let e = first_step_error(model, guide);
        assert!(matches!(e.root(), InferError::NonFinite { .. }), "{e:?}");
        seen.push(("NonFinite (gradient)", unlocated(&e)));
    }
    {
        // catalogue: Param
        let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
        let guide = |ctx: &mut Ctx| {
            let s = ctx.param("s", &one, Constraint::Positive)?;
            let again = ctx.param("s", &one, Constraint::UnitInterval)?; // another constraint
            ctx.sample("z", Normal::new(&s, &again)?)
        };
        // catalogue end
        let e = first_step_error(model, guide);
        assert!(matches!(e.root(), InferError::Param { .. }), "{e:?}");
        seen.push(("Param", unlocated(&e)));
    }
    {
        // catalogue: Plate
        let model = |ctx: &mut Ctx| {
            ctx.plate_dim("data", 3, 0, |ctx| {
                ctx.sample("z", Normal::new(&zero, &one)?)
            })
        };
        let guide = |_: &mut Ctx| Ok(());
        // catalogue end
        let e = first_step_error(model, guide);
        assert!(matches!(e.root(), InferError::Plate { .. }), "{e:?}");
        seen.push(("Plate", unlocated(&e)));
    }
    {
        // catalogue: Io
        let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
        let guide = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
        let mut svi = Svi::new(
            model,
            guide,
            Adam::empty(AdamOptions::default())?,
            TraceMeanFieldElbo::new(),
        );
        let e = svi.load("no/such/checkpoint.safetensors").unwrap_err();
        // catalogue end
        assert!(matches!(e.root(), InferError::Io { .. }), "{e:?}");
        seen.push(("Io", unlocated(&e)));
    }
    {
        // catalogue: Optim
        let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
        let guide = |ctx: &mut Ctx| {
            let loc = ctx.param("loc", &zero, Constraint::Real)?;
            ctx.sample("z", Normal::new(&loc, &one)?)
        };
        let mut svi = Svi::new(
            model,
            guide,
            Adam::empty(AdamOptions::default())?,
            TraceMeanFieldElbo::new(),
        );
        svi.optimizer_mut().set_learning_rate(-0.1);
        let e = svi.step().unwrap_err();
        // catalogue end
        assert!(matches!(e.root(), InferError::Optim(_)), "{e:?}");
        seen.push(("Optim", unlocated(&e)));
    }
    let expected: [(&str, &str); 19] = [
        (
            "DuplicateSite",
            "site `z` is used twice in one run: site names must be unique",
        ),
        (
            "GuideSiteNotInModel",
            "guide site `extra` is not a latent site of the model (absent, or observed there)",
        ),
        (
            "LatentNotInGuide",
            "model latent site `w` is not sampled by the guide",
        ),
        (
            "EventShape",
            "site `z`: the model's Independent(Normal, 1) has event shape [3], the guide's Normal has []",
        ),
        (
            "BatchShape",
            "site `z`: the model's Normal has shape [] (batch + event), the guide's Normal has [3]; they disagree at dim -1. Sample the site in the same plates in both",
        ),
        (
            "SiteShape",
            "site `x`: Normal with batch shape [5] and event shape [] gives a log-density of shape [5, 5], whose dim -2 (size 5) belongs to no plate the site is in (it must be 1); plates here: `data` (dim -1, size 5). Enclose the batched dim in a plate, move it into the event with `.to_event(..)`, or reshape the data",
        ),
        (
            "PlateSize",
            "site `x` inside plate `data` (size 4, dim -1): the observed value has batch shape [3], whose dim -1 is neither 4 nor 1",
        ),
        (
            "GuidePlateNotInModel",
            "plate `batch` appears in the guide (with no site in it) but not in the model",
        ),
        (
            "NotReparameterized",
            "guide site `c`: Bernoulli is not reparameterised; TraceMeanFieldElbo needs rsample (use TraceElbo, which adds the score-function term)",
        ),
        (
            "ElboSetting",
            "RenyiElbo: alpha = 1 is the ELBO itself; use TraceElbo, whose gradient has a lower variance",
        ),
        (
            "Baseline",
            "guide site `c`: the baseline has shape [2], which does not broadcast to the site's batch shape [3] (the shape of the cost it is subtracted from)",
        ),
        (
            "Observed",
            "observed site `counts` (in plate `data`): Poisson: value of shape [2] is outside the support nonnegative_integer: -1.0 at [1]",
        ),
        (
            "InProgram",
            "in the guide (after site `loc`): Normal: parameter `scale` (shape []) is outside its support positive: -1.0",
        ),
        (
            "NonFinite (loss)",
            "the loss is inf: non-finite at site `y` (log-likelihood: -inf); the parameters and the optimizer state are unchanged",
        ),
        (
            "NonFinite (gradient)",
            "the gradient of param `p` is NaN; the parameters and the optimizer state are unchanged",
        ),
        (
            "Param",
            "param `s`: used with constraint unit_interval, created (or loaded) with positive",
        ),
        (
            "Plate",
            "plate `data`: dim must be negative (from the right), got 0",
        ),
        (
            "Io",
            "no/such/checkpoint.safetensors: No such file or directory (os error 2)",
        ),
        (
            "Optim",
            "Adam: parameter `loc` would step with learning rate -0.1: expected a finite rate ≥ 0 (the configured lr 0.001 through the map lr ↦ max(0 · lr + -0.1, 0)); no parameter was updated",
        ),
    ];
    for (name, got) in &seen {
        println!("{name}\t{got}");
    }
    for ((name, got), (_, want)) in seen.iter().zip(expected) {
        assert_eq!(got, want, "{name}");
    }
    Ok(())
}

/// Extracts the ```rust blocks of a Markdown text, each as its trimmed, non-empty lines.
fn rust_blocks(markdown: &str) -> Vec<Vec<String>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in markdown.lines() {
        let t = line.trim();
        match &mut current {
            None if t.starts_with("```rust") => current = Some(Vec::new()),
            Some(b) if t.starts_with("```") => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            Some(b) if !t.is_empty() => b.push(t.to_string()),
            _ => {}
        }
    }
    blocks
}

fn contains_block(haystack: &[String], block: &[String]) -> bool {
    block.is_empty() || haystack.windows(block.len()).any(|w| w == block)
}

/// Every Rust block of the guide and of the README is in this file (so it compiles and runs).
#[test]
fn snippets_in_sync() {
    let this: Vec<String> = include_str!("guide.rs")
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    for (file, text) in [
        ("docs/guide.md", include_str!("../../../../docs/guide.md")),
        ("README.md", include_str!("../../../../README.md")),
    ] {
        let blocks = rust_blocks(text);
        assert!(!blocks.is_empty(), "{file} has no rust blocks");
        for (i, block) in blocks.iter().enumerate() {
            assert!(
                contains_block(&this, block),
                "{file}: rust block {} is not in tests/it/guide.rs:\n{}",
                i + 1,
                block.join("\n")
            );
        }
    }
}
