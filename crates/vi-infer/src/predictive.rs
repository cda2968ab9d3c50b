//! `Predictive`: draws of a model's sites under its prior, a guide, or given posterior samples
//! (Pyro's `pyro.infer.Predictive`).

use std::collections::HashMap;

use candle_core::Tensor;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::autoguide::Values;
use crate::ctx::Ctx;
use crate::error::{InferError, Result};
use crate::handlers::{ReplayMessenger, UnconditionMessenger};
use crate::message::{Message, SiteKind};
use crate::messenger::Messenger;
use crate::param_store::ParamStore;
use crate::trace::Trace;

/// The name of the outer plate that [`Predictive::parallel`] draws the samples in.
///
/// ```
/// assert_eq!(vi_infer::PREDICTIVE_PLATE, "_num_predictive_samples");
/// ```
pub const PREDICTIVE_PLATE: &str = "_num_predictive_samples";

/// A model or a guide, as `Predictive` keeps it.
type Program<'m> = Box<dyn FnMut(&mut Ctx<'_>) -> Result<()> + 'm>;

/// Where the latent values come from.
enum Source<'m> {
    /// The model's prior.
    Prior,
    /// A guide's draws, replayed into the model.
    Guide(Program<'m>),
    /// Given posterior samples, `[num_samples, …site shape]` per site, replayed into the model.
    Samples(Values),
}

/// Draws of a model's sites (Pyro's `Predictive`): `num_samples` runs of the model with its
/// latent sites drawn from the prior ([`new`](Predictive::new)), from a guide
/// ([`with_guide`](Predictive::with_guide): the posterior predictive), or taken from given
/// posterior samples ([`with_samples`](Predictive::with_samples)); the observed sites it
/// returns are released (drawn from their distributions, as `poutine.uncondition`), the others
/// keep their data (and cost nothing). The result maps each returned site to a tensor
/// `[num_samples, …site shape]`.
///
/// - **Sites returned**: by default every latent sample site and deterministic site of the
///   model, and for a posterior predictive the observed ones too (their draws);
///   [`return_sites`](Predictive::return_sites) names them instead.
/// - **Seeded**: each site draws from a generator of its own, seeded from
///   [`seed`](Predictive::seed) and the site's name, in the order of the samples. So one seed
///   gives the same draws again, and the same draws whether the samples are drawn
///   [`parallel`](Predictive::parallel) or one run after another, for every site whose
///   family draws its elements in one pass, in order (all but those that draw in two passes:
///   Beta and the families built on it, whose draws differ between the two modes; and the
///   indices of a subsampled plate, drawn once for all samples in parallel, once per sample
///   otherwise).
/// - **Parallel**: one run of the model in an outer plate of `num_samples` at dim
///   `-(max_plate_nesting + 1)` (found by a first run of one sample unless
///   [`max_plate_nesting`](Predictive::max_plate_nesting) gives it), as the vectorised
///   particles of the ELBOs: the model must broadcast over a leading batch dim. Otherwise a
///   loop of `num_samples` runs.
///
/// ```
/// use vi_infer::autoguide::AutoNormal;
/// use vi_infer::candle::{Device, Tensor};
/// use vi_infer::dist::Normal;
/// use vi_infer::optim::{Adam, AdamOptions};
/// use vi_infer::{Ctx, Predictive, Svi, TraceMeanFieldElbo};
/// let dev = Device::Cpu;
/// let data = Tensor::new(&[1.2f64, 0.8, 1.1, 0.9], &dev)?;
/// let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
/// let model = |ctx: &mut Ctx| {
///     let mu = ctx.sample("mu", Normal::new(&zero, &one)?)?;
///     ctx.plate("data", 4, |ctx| ctx.observe("x", Normal::new(&mu, &one)?, &data))
/// };
/// let guide = AutoNormal::new(model);
/// let adam = Adam::empty(AdamOptions { lr: 0.05, ..Default::default() })?;
/// let mut svi = Svi::new(model, guide.as_fn(), adam, TraceMeanFieldElbo::new()).seed(0);
/// for _ in 0..300 {
///     svi.step()?;
/// }
/// let draws = Predictive::with_guide(model, guide.as_fn())
///     .num_samples(100)
///     .parallel(true)
///     .run(svi.store_mut())?;
/// assert_eq!(draws["mu"].dims(), &[100]);
/// assert_eq!(draws["x"].dims(), &[100, 4]); // the posterior predictive of the data
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Predictive<'m> {
    model: Program<'m>,
    source: Source<'m>,
    num_samples: usize,
    return_sites: Option<Vec<String>>,
    parallel: bool,
    seed: u64,
    max_plate_nesting: Option<usize>,
}

impl std::fmt::Debug for Predictive<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            Source::Prior => "prior",
            Source::Guide(_) => "guide",
            Source::Samples(_) => "samples",
        };
        f.debug_struct("Predictive")
            .field("source", &source)
            .field("num_samples", &self.num_samples)
            .field("return_sites", &self.return_sites)
            .field("parallel", &self.parallel)
            .field("seed", &self.seed)
            .finish()
    }
}

/// `program` as a `Program`, its value discarded.
fn program<'m, T>(mut f: impl FnMut(&mut Ctx<'_>) -> Result<T> + 'm) -> Program<'m> {
    Box::new(move |ctx: &mut Ctx<'_>| f(ctx).map(|_| ()))
}

impl<'m> Predictive<'m> {
    /// The prior predictive of `model`: its latent sites drawn from their priors (one sample
    /// unless [`num_samples`](Predictive::num_samples) says otherwise).
    ///
    /// ```
    /// # use vi_infer::candle::{Device, Tensor};
    /// # use vi_infer::dist::Normal;
    /// # use vi_infer::{Ctx, ParamStore, Predictive};
    /// # let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);
    /// let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
    /// let draws = Predictive::new(model).num_samples(10).run(&mut ParamStore::default())?;
    /// assert_eq!(draws["z"].dims(), &[10]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new<T>(model: impl FnMut(&mut Ctx<'_>) -> Result<T> + 'm) -> Self {
        Self {
            model: program(model),
            source: Source::Prior,
            num_samples: 1,
            return_sites: None,
            parallel: false,
            seed: 0,
            max_plate_nesting: None,
        }
    }

    /// The posterior predictive: each sample runs `guide` and replays its draws into the
    /// model (with the observed sites released).
    ///
    /// ```
    /// # use vi_infer::candle::{Device, Tensor};
    /// # use vi_infer::dist::Normal;
    /// # use vi_infer::{Ctx, ParamStore, Predictive};
    /// # let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);
    /// let model = |ctx: &mut Ctx| {
    ///     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
    ///     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// };
    /// let guide = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&one, &one)?);
    /// let draws = Predictive::with_guide(model, guide).num_samples(5).run(&mut ParamStore::default())?;
    /// assert_eq!((draws["z"].dims(), draws["x"].dims()), (&[5][..], &[5][..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_guide<T, U>(
        model: impl FnMut(&mut Ctx<'_>) -> Result<T> + 'm,
        guide: impl FnMut(&mut Ctx<'_>) -> Result<U> + 'm,
    ) -> Self {
        Self {
            source: Source::Guide(program(guide)),
            ..Self::new(model)
        }
    }

    /// The predictive from given posterior samples: site name → `[num_samples, …site shape]`
    /// (as [`AutoGuide::sample_posterior`](crate::autoguide::AutoGuide::sample_posterior)
    /// gives them, or from MCMC); `num_samples` is their leading size, and every tensor must
    /// have it.
    ///
    /// ```
    /// # use vi_infer::candle::{Device, Tensor};
    /// # use vi_infer::dist::Normal;
    /// # use vi_infer::{Ctx, ParamStore, Predictive};
    /// # let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);
    /// let model = |ctx: &mut Ctx| {
    ///     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
    ///     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// };
    /// let z = Tensor::new(&[0.5f64, 1.5, 2.5], &Device::Cpu)?;
    /// let samples = [("z".to_string(), z.clone())].into_iter().collect();
    /// let draws = Predictive::with_samples(model, samples)?.run(&mut ParamStore::default())?;
    /// assert_eq!(draws["z"].to_vec1::<f64>()?, [0.5, 1.5, 2.5]);
    /// assert_eq!(draws["x"].dims(), &[3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_samples<T>(
        model: impl FnMut(&mut Ctx<'_>) -> Result<T> + 'm,
        samples: Values,
    ) -> Result<Self> {
        let mut n = None;
        for (name, t) in &samples {
            let lead = t.dims().first().copied().ok_or_else(|| {
                InferError::Invalid(format!(
                    "Predictive: posterior sample of site `{name}` is a scalar: it needs a \
                     leading dim of samples"
                ))
            })?;
            match n {
                None => n = Some(lead),
                Some(m) if m != lead => {
                    return Err(InferError::Invalid(format!(
                        "Predictive: posterior samples disagree on their number: {m}, and \
                         {lead} for site `{name}`"
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(Self {
            source: Source::Samples(samples),
            num_samples: n.unwrap_or(1),
            ..Self::new(model)
        })
    }

    /// The number of samples (given samples fix it: another number is an error at
    /// [`run`](Predictive::run)).
    ///
    /// ```
    /// # use vi_infer::candle::{Device, Tensor};
    /// # use vi_infer::dist::Normal;
    /// # use vi_infer::{Ctx, Predictive};
    /// # let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);
    /// # let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
    /// let p = Predictive::new(model).num_samples(1000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn num_samples(mut self, n: usize) -> Self {
        self.num_samples = n;
        self
    }

    /// The sites to return (by default: every latent and deterministic site, and for a
    /// posterior predictive the observed ones); a name the model does not have is an error at
    /// [`run`](Predictive::run).
    ///
    /// ```
    /// # use vi_infer::candle::{Device, Tensor};
    /// # use vi_infer::dist::Normal;
    /// # use vi_infer::{Ctx, ParamStore, Predictive};
    /// # let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);
    /// let model = |ctx: &mut Ctx| {
    ///     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
    ///     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// };
    /// let draws = Predictive::new(model).return_sites(&["x"]).run(&mut ParamStore::default())?;
    /// assert_eq!(draws.keys().collect::<Vec<_>>(), ["x"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn return_sites(mut self, sites: &[&str]) -> Self {
        self.return_sites = Some(sites.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Draws all samples in one run, in an outer plate (see the type's docs), instead of one
    /// run each.
    ///
    /// ```
    /// # use vi_infer::candle::{Device, Tensor};
    /// # use vi_infer::dist::Normal;
    /// # use vi_infer::{Ctx, Predictive};
    /// # let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);
    /// # let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
    /// let p = Predictive::new(model).num_samples(1000).parallel(true);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parallel(mut self, on: bool) -> Self {
        self.parallel = on;
        self
    }

    /// The seed of the draws (default 0).
    ///
    /// ```
    /// # use vi_infer::candle::{Device, Tensor};
    /// # use vi_infer::dist::Normal;
    /// # use vi_infer::{Ctx, Predictive};
    /// # let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);
    /// # let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
    /// let p = Predictive::new(model).seed(7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The number of plate dims the model (and guide) use, for [`parallel`](Self::parallel):
    /// the samples' plate goes left of them. Found by a first run of one sample if not given.
    ///
    /// ```
    /// # use vi_infer::candle::{Device, Tensor};
    /// # use vi_infer::dist::Normal;
    /// # use vi_infer::{Ctx, Predictive};
    /// # let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);
    /// # let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
    /// let p = Predictive::new(model).parallel(true).max_plate_nesting(1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_plate_nesting(mut self, n: usize) -> Self {
        self.max_plate_nesting = Some(n);
        self
    }

    /// Draws the samples: site name → `[num_samples, …site shape]`. Parameters (of the guide,
    /// of the model) are read from `store`.
    ///
    /// ```
    /// # use vi_infer::candle::{Device, Tensor};
    /// # use vi_infer::dist::Normal;
    /// # use vi_infer::{Ctx, ParamStore, Predictive};
    /// # let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);
    /// let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
    /// let mut p = Predictive::new(model).num_samples(4).seed(1);
    /// let (a, b) = (p.run(&mut ParamStore::default())?, p.run(&mut ParamStore::default())?);
    /// assert_eq!(a["z"].to_vec1::<f64>()?, b["z"].to_vec1::<f64>()?); // seeded
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run(&mut self, store: &mut ParamStore) -> Result<Values> {
        let n = self.num_samples;
        if n == 0 {
            return Err(InferError::Invalid(
                "Predictive: num_samples must be at least 1".into(),
            ));
        }
        if let Source::Samples(s) = &self.source
            && let Some((name, t)) = s.iter().find(|(_, t)| t.dims()[0] != n)
        {
            return Err(InferError::Invalid(format!(
                "Predictive: num_samples is {n}, but the posterior sample of site `{name}` has \
                 {} rows",
                t.dims()[0]
            )));
        }
        if self.parallel {
            self.run_parallel(store)
        } else {
            self.run_loop(store)
        }
    }

    /// One sample's run: the guide (if any) traced, then the model traced with the latent
    /// values replayed and the observed sites released. Returns the model's trace and the
    /// names of the released sites.
    fn once(
        &mut self,
        ctx: &mut Ctx<'_>,
        sample: Option<usize>,
        vectorized: Option<(usize, isize)>,
    ) -> Result<(Trace, Vec<String>)> {
        // The observed sites to draw: those returned (all of them by default for a posterior
        // predictive; none by default for the prior's). Data left observed costs nothing.
        let release = match (&self.return_sites, &self.source) {
            (Some(names), _) => UnconditionMessenger::only(names.iter().cloned()),
            (None, Source::Prior) => UnconditionMessenger::only(Vec::<String>::new()),
            (None, _) => UnconditionMessenger::new(),
        };
        let Self { model, source, .. } = self;
        let in_plate =
            |ctx: &mut Ctx<'_>, f: &mut dyn FnMut(&mut Ctx<'_>) -> Result<()>| match vectorized {
                Some((n, dim)) => ctx.plate_dim(PREDICTIVE_PLATE, n, dim, |ctx| f(ctx)),
                None => f(ctx),
            };
        let replay = match source {
            Source::Prior => ReplayMessenger::from_values(Vec::new()),
            Source::Guide(guide) => {
                let (out, trace) = ctx.trace_partial(|ctx| in_plate(ctx, guide))?;
                out.map_err(|e| e.in_program("guide", trace.last_name()))?;
                ReplayMessenger::new(&trace)
            }
            Source::Samples(values) => {
                let picked = values
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), pick(v, sample)?)))
                    .collect::<Result<Vec<_>>>()?;
                ReplayMessenger::from_values(picked)
            }
        };
        let (out, trace) = ctx.trace_partial(|ctx| {
            let (released, _) = ctx.with(replay, |ctx| {
                let ((), h) = ctx.with(release.clone(), |ctx| in_plate(ctx, model))?;
                Ok(h.released().to_vec())
            })?;
            Ok(released)
        })?;
        let released = out.map_err(|e| e.in_program("model", trace.last_name()))?;
        Ok((trace, released))
    }

    /// The names of the sites to return, from one trace of the model.
    fn chosen(&self, trace: &Trace, released: &[String]) -> Result<Vec<String>> {
        if let Some(names) = &self.return_sites {
            if let Some(missing) = names.iter().find(|n| !trace.contains(n)) {
                return Err(InferError::Invalid(format!(
                    "Predictive: return site `{missing}` is not a site of the model"
                )));
            }
            return Ok(names.clone());
        }
        let posterior = !matches!(self.source, Source::Prior);
        Ok(trace
            .sites()
            .filter(|s| match s.kind {
                SiteKind::Deterministic => true,
                SiteKind::Sample => !s.is_observed && (posterior || !released.contains(&s.name)),
                _ => false,
            })
            .map(|s| s.name.clone())
            .collect())
    }

    fn run_loop(&mut self, store: &mut ParamStore) -> Result<Values> {
        let mut host = ChaCha8Rng::seed_from_u64(self.seed);
        let mut streams = SiteStreams::new(self.seed);
        let mut names: Option<Vec<String>> = None;
        let mut parts: HashMap<String, Vec<Tensor>> = HashMap::new();
        for i in 0..self.num_samples {
            let mut ctx = Ctx::new(store, &mut host);
            let ((trace, released), s) = ctx.with(streams, |ctx| self.once(ctx, Some(i), None))?;
            streams = s;
            let names = match &names {
                Some(n) => n,
                None => names.insert(self.chosen(&trace, &released)?),
            };
            for name in names {
                let Some(site) = trace.get(name) else {
                    return Err(InferError::Invalid(format!(
                        "Predictive: site `{name}` is missing from sample {i} (the model's \
                         structure changed between samples)"
                    )));
                };
                parts
                    .entry(name.clone())
                    .or_default()
                    .push(site.value.detach());
            }
        }
        let mut out = Values::new();
        for (name, vs) in parts {
            let stacked = Tensor::stack(&vs, 0).map_err(|e| {
                InferError::Invalid(format!(
                    "Predictive: the draws of site `{name}` change shape between samples: {e}"
                ))
            })?;
            out.insert(name, stacked);
        }
        Ok(out)
    }

    fn run_parallel(&mut self, store: &mut ParamStore) -> Result<Values> {
        let n = self.num_samples;
        // One sample on a generator of its own: the nesting and each site's shape.
        let mut own = ChaCha8Rng::seed_from_u64(self.seed ^ 0x9e37_79b9);
        let (probe, released) = {
            let mut ctx = Ctx::new(store, &mut own);
            let seed = self.seed;
            ctx.seed(seed ^ 0x7f4a_7c15, |ctx| self.once(ctx, Some(0), None))?
        };
        let nesting = match self.max_plate_nesting {
            Some(k) => k,
            None => crate::elbo::plate_nesting(&probe, &Trace::new()),
        };
        let names = self.chosen(&probe, &released)?;
        let dim = -(nesting as isize) - 1;
        // Given samples `[n, …site shape]` as the vectorised run has them: the samples' dim at
        // `dim`, 1s between it and the site's batch dims.
        if let Source::Samples(values) = &mut self.source {
            for (name, t) in values.iter_mut() {
                let Some(site) = probe.get(name) else {
                    continue;
                };
                let event = site.dist.as_ref().map_or(0, |d| d.event_shape().len());
                let batch_rank = site.value.rank().saturating_sub(event);
                let mut shape = vec![n];
                shape.extend(std::iter::repeat_n(1, nesting.saturating_sub(batch_rank)));
                shape.extend_from_slice(site.value.dims());
                *t = t.reshape(shape)?;
            }
        }
        let mut host = ChaCha8Rng::seed_from_u64(self.seed);
        let mut ctx = Ctx::new(store, &mut host);
        let run = ctx.with(SiteStreams::new(self.seed), |ctx| {
            self.once(ctx, None, Some((n, dim)))
        });
        // The given samples back to `[n, …site shape]`.
        if let Source::Samples(values) = &mut self.source {
            for (name, t) in values.iter_mut() {
                if let Some(site) = probe.get(name) {
                    let mut shape = vec![n];
                    shape.extend_from_slice(site.value.dims());
                    *t = t.reshape(shape)?;
                }
            }
        }
        let ((trace, _), _) = run?;
        let mut out = Values::new();
        for name in names {
            let (Some(one), Some(site)) = (probe.get(&name), trace.get(&name)) else {
                return Err(InferError::Invalid(format!(
                    "Predictive: site `{name}` is missing from the vectorised run"
                )));
            };
            let shape = one.value.dims();
            let mut full = vec![n];
            full.extend_from_slice(shape);
            let v = site.value.detach();
            let per: usize = shape.iter().product();
            let value = if v.elem_count() == n * per && v.dims().first() == Some(&n) {
                v.reshape(full)?
            } else if v.elem_count() == per {
                v.reshape(shape)?
                    .unsqueeze(0)?
                    .broadcast_as(full)?
                    .contiguous()?
            } else {
                return Err(InferError::Invalid(format!(
                    "Predictive: site `{name}` has shape {:?} in the vectorised run and {shape:?} \
                     in one sample: the model does not broadcast over the samples' plate at dim \
                     {dim} (set max_plate_nesting, or run with parallel(false))",
                    v.dims()
                )));
            };
            out.insert(name, value);
        }
        Ok(out)
    }
}

/// Sample `i` of a posterior sample `[n, …]`, or the whole tensor (already shaped for the
/// samples' plate).
fn pick(t: &Tensor, sample: Option<usize>) -> Result<Tensor> {
    Ok(match sample {
        Some(i) => t.get(i)?,
        None => t.clone(),
    })
}

/// Draws each site from a generator of its own, seeded from the seed and the site's name, so
/// the draws of a site do not depend on the other sites or on how the samples are run.
struct SiteStreams {
    seed: u64,
    streams: HashMap<String, ChaCha8Rng>,
    current: Option<String>,
}

impl SiteStreams {
    fn new(seed: u64) -> Self {
        Self {
            seed,
            streams: HashMap::new(),
            current: None,
        }
    }
}

/// FNV-1a of a name: the stream of its generator.
fn fnv1a(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Messenger for SiteStreams {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        self.current = msg.value.is_none().then(|| msg.name.clone());
        Ok(())
    }

    fn rng(&mut self) -> Option<&mut dyn RngCore> {
        let name = self.current.take()?;
        let seed = self.seed;
        let rng = self.streams.entry(name).or_insert_with_key(|name| {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            r.set_stream(fnv1a(name));
            r
        });
        Some(rng)
    }
}
