//! Pyro's Gaussian-mixture tutorial in vi-infer: `K` components with weights
//! `~ Dirichlet(0.5)`, a shared scale `~ LogNormal(0, 2)` and locations `~ Normal(0, 10)` in a
//! plate of components; in a plate of data, each point's assignment `~ Categorical(weights)`,
//! enumerated, and the point `~ Normal(locs[assignment], scale)`. As in the tutorial, an
//! [`AutoDelta`] of the three global sites (the model with only them exposed, initialised by
//! `init_to_value`) and `TraceEnumElbo`, which sums the assignments out, give a MAP fit by
//! gradient descent ([`fit`]); `infer_discrete` then gives each point's most probable
//! component. The timing comparison ([`bench`]) uses the same MAP guide written by hand
//! ([`guide`]), as its Pyro side does. [`plain`] writes the same loss directly in candle (a
//! logsumexp over the components) for the timing comparison.

pub mod bench;
pub mod plain;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use vi_infer::candle::D;
use vi_infer::candle::{DType, Device, Tensor};
use vi_infer::dist::{Categorical, Constraint, Delta, Dirichlet, LogNormal, Normal};

use vi_infer::autoguide::{AutoDelta, AutoGuide, Init as AutoInit};
use vi_infer::handlers::Block;
use vi_infer::optim::{Adam, AdamOptions};
use vi_infer::{Ctx, InferDiscrete, ParamStore, Result, Svi, TraceEnumElbo, vindex};

/// The tutorial's data.
pub const TUTORIAL_DATA: [f64; 5] = [0.0, 1.0, 10.0, 11.0, 12.0];

/// The starting point of the guide: uniform weights, `locs` (one data point per component),
/// the scale `sqrt(var(data) / 2)` (the tutorial's `init_loc_fn`).
#[derive(Clone, Debug, PartialEq)]
pub struct Init {
    /// The components' initial locations.
    pub locs: Vec<f64>,
    /// The initial scale.
    pub scale: f64,
}

impl Init {
    /// The tutorial's initialisation with locations drawn from the data (distinct points).
    pub fn draw(data: &[f64], k: usize, rng: &mut impl Rng) -> Self {
        let idx = rand::seq::index::sample(rng, data.len(), k.min(data.len()));
        let n = data.len() as f64;
        let mean = data.iter().sum::<f64>() / n;
        // torch's `var` is the unbiased one.
        let var = data.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        Self {
            locs: idx.iter().map(|i| data[i]).collect(),
            scale: (var / 2.0).sqrt(),
        }
    }
}

/// The model: `data` a vector of points on the device and in the dtype to use, `k`
/// components. The assignments are enumerated (`sample_enum`).
pub fn model(ctx: &mut Ctx, data: &Tensor, k: usize) -> Result<()> {
    let (dev, dt) = (data.device().clone(), data.dtype());
    let full = |v: f64, shape: &[usize]| -> Result<Tensor> {
        Ok(Tensor::full(v, shape, &dev)?.to_dtype(dt)?)
    };
    let weights = ctx.sample("weights", Dirichlet::new(&full(0.5, &[k])?)?)?;
    let scale = ctx.sample("scale", LogNormal::new(&full(0.0, &[])?, &full(2.0, &[])?)?)?;
    let locs = ctx.plate("components", k, |ctx| {
        ctx.sample("locs", Normal::new(&full(0.0, &[])?, &full(10.0, &[])?)?)
    })?;
    ctx.plate("data", data.dims()[0], |ctx| {
        let assignment = ctx.sample_enum("assignment", Categorical::from_probs(&weights)?)?;
        let obs = Normal::new(&vindex(&locs, &[&assignment])?, &scale)?;
        ctx.observe("obs", obs, data)
    })?;
    Ok(())
}

/// The MAP guide written by hand (what [`svi_auto`]'s `AutoDelta` does, with softmax logits
/// for the weights; the timing comparison's guide, as its Pyro side): each global site a
/// point mass at a parameter in the site's support, the weights as the softmax of free
/// logits (Pyro's simplex parameterisation), the scale positive, the locations real.
pub fn guide(ctx: &mut Ctx, init: &Init, dev: &Device, dt: DType) -> Result<()> {
    let k = init.locs.len();
    let logits = ctx.param_with(
        "weights_logits",
        || Tensor::zeros(k, dt, dev),
        Constraint::Real,
    )?;
    // candle-nn's `softmax_last_dim` has no backward pass: the composed `softmax` has.
    let weights = vi_infer::nn::ops::softmax(&logits, D::Minus1)?;
    ctx.sample("weights", Delta::new(&weights, None, 1)?)?;
    let scale = ctx.param_with(
        "scale_map",
        || Tensor::new(init.scale, dev)?.to_dtype(dt),
        Constraint::Positive,
    )?;
    ctx.sample("scale", Delta::new(&scale, None, 0)?)?;
    let locs = ctx.param_with(
        "locs_map",
        || Tensor::new(init.locs.as_slice(), dev)?.to_dtype(dt),
        Constraint::Real,
    )?;
    ctx.plate("components", k, |ctx| {
        ctx.sample("locs", Delta::new(&locs, None, 0)?)
    })?;
    Ok(())
}

/// The optimizer of the tutorial: Adam, lr 0.1, betas (0.8, 0.99).
pub fn adam() -> Result<Adam> {
    Ok(Adam::empty(AdamOptions {
        lr: 0.1,
        betas: (0.8, 0.99),
        ..Default::default()
    })?)
}

/// The fitted mixture.
#[derive(Clone, Debug)]
pub struct Fit {
    /// The seed of the initialisation kept (the best of those tried).
    pub seed: u64,
    /// The loss before the first step, and after the last.
    pub initial_loss: f64,
    pub final_loss: f64,
    /// MAP weights, locations and scale.
    pub weights: Vec<f64>,
    pub locs: Vec<f64>,
    pub scale: f64,
    /// Each point's MAP component (`infer_discrete`, temperature 0).
    pub assignment: Vec<usize>,
}

/// A model or a guide of this example.
pub type Program = Box<dyn FnMut(&mut Ctx) -> Result<()>>;

/// An [`Svi`] of the model and the hand-written [`guide`] from `init` (the timing
/// comparison's).
pub fn svi(
    data: &Tensor,
    k: usize,
    init: Init,
) -> Result<Svi<Program, Program, Adam, TraceEnumElbo>> {
    let (dev, dt) = (data.device().clone(), data.dtype());
    let d = data.clone();
    let model: Program = Box::new(move |ctx: &mut Ctx| model(ctx, &d, k));
    let guide: Program = Box::new(move |ctx: &mut Ctx| guide(ctx, &init, &dev, dt));
    Ok(Svi::new(
        model,
        guide,
        adam()?,
        TraceEnumElbo::new().max_plate_nesting(1),
    ))
}

/// An [`Svi`] of the model and the tutorial's guide: an [`AutoDelta`] of the model with the
/// global sites exposed (Pyro's `AutoDelta(poutine.block(model, expose=["weights", "locs",
/// "scale"]))`), initialised at `init` (uniform weights) as the tutorial's `init_loc_fn`.
/// Also returns the guide, to read the MAP values from the store.
#[allow(clippy::type_complexity)]
pub fn svi_auto(
    data: &Tensor,
    k: usize,
    init: &Init,
) -> Result<(
    Svi<Program, Program, Adam, TraceEnumElbo>,
    AutoDelta<'static>,
)> {
    let (dev, dt) = (data.device().clone(), data.dtype());
    let d = data.clone();
    let values = HashMap::from([
        (
            "weights".to_string(),
            Tensor::full(1.0 / k as f64, k, &dev)?.to_dtype(dt)?,
        ),
        (
            "locs".to_string(),
            Tensor::new(init.locs.as_slice(), &dev)?.to_dtype(dt)?,
        ),
        (
            "scale".to_string(),
            Tensor::new(init.scale, &dev)?.to_dtype(dt)?,
        ),
    ]);
    let guide = AutoDelta::new(move |ctx: &mut Ctx| model(ctx, &d, k))
        .block(Block::expose(["weights", "locs", "scale"]))
        .init(AutoInit::value(values));
    let d = data.clone();
    let model: Program = Box::new(move |ctx: &mut Ctx| model(ctx, &d, k));
    let g: Program = Box::new(guide.as_fn());
    let elbo = TraceEnumElbo::new().max_plate_nesting(1);
    Ok((Svi::new(model, g, adam()?, elbo), guide))
}

/// The tutorial's procedure: the initial loss of `tries` random initialisations, the best one
/// kept, `steps` Adam steps from it, the MAP of the global sites, then each point's MAP
/// assignment.
pub fn fit(data: &[f64], k: usize, tries: u64, steps: usize) -> Result<Fit> {
    let x = Tensor::new(data, &Device::Cpu)?;
    let mut best: Option<(f64, u64, Init)> = None;
    for seed in 0..tries {
        let init = Init::draw(data, k, &mut ChaCha8Rng::seed_from_u64(seed));
        let (s, _) = svi_auto(&x, k, &init)?;
        let mut s = s.seed(seed);
        let loss = s.evaluate_loss()?.loss;
        if best.as_ref().is_none_or(|b| loss < b.0) {
            best = Some((loss, seed, init));
        }
    }
    let Some((initial_loss, seed, init)) = best else {
        return Err(vi_infer::InferError::Invalid(
            "no initialisation tried".into(),
        ));
    };
    let (s, guide) = svi_auto(&x, k, &init)?;
    let mut s = s.seed(seed);
    let mut final_loss = initial_loss;
    for _ in 0..steps {
        final_loss = s.step()?.loss;
    }
    let map = guide.median(s.store())?;
    let get = |name: &str| -> Result<Vec<f64>> {
        let t = map
            .get(name)
            .ok_or_else(|| vi_infer::InferError::Invalid(format!("no MAP value of `{name}`")))?;
        Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
    };
    let weights = get("weights")?;
    let locs = get("locs")?;
    let scale = get("scale")?[0];
    let assignment = classify(data, &weights, &locs, scale)?;
    Ok(Fit {
        seed,
        initial_loss,
        final_loss,
        weights,
        locs,
        scale,
        assignment,
    })
}

/// Each point's MAP component given the fitted globals: `infer_discrete` (temperature 0) on
/// the model with the global sites conditioned on their MAP values.
pub fn classify(data: &[f64], weights: &[f64], locs: &[f64], scale: f64) -> Result<Vec<usize>> {
    let dev = Device::Cpu;
    let x = Tensor::new(data, &dev)?;
    let globals = [
        ("weights".to_string(), Tensor::new(weights, &dev)?),
        ("locs".to_string(), Tensor::new(locs, &dev)?),
        ("scale".to_string(), Tensor::new(scale, &dev)?),
    ];
    let mut store = ParamStore::new(&dev, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut ctx = Ctx::new(&mut store, &mut rng);
    let ((), trace) = ctx.trace(|ctx| {
        ctx.infer_discrete(&InferDiscrete::map().max_plate_nesting(1), |ctx| {
            ctx.condition(globals.clone(), |ctx| model(ctx, &x, locs.len()))
        })
    })?;
    let Some(site) = trace.get("assignment") else {
        return Err(vi_infer::InferError::Invalid("no assignment site".into()));
    };
    Ok(site
        .value
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?
        .into_iter()
        .map(|v| v as usize)
        .collect())
}
