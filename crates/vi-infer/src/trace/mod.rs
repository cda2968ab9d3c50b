//! `Trace`: the record of one run of a model or guide.

mod site;

pub use site::Site;

use std::collections::HashMap;
use std::fmt::Write as _;

use candle_core::Tensor;

use crate::error::{InferError, Result};
use crate::message::{Message, SiteKind};

/// The record of one run: its sites in the order they ran, by name.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use rand::SeedableRng;
/// use vi_dist::Normal;
/// use vi_infer::{Ctx, ParamStore};
/// let dev = Device::Cpu;
/// let mut store = ParamStore::new(&dev, DType::F32);
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let mut ctx = Ctx::new(&mut store, &mut rng);
/// let (_, tr) = ctx.trace(|ctx| {
///     let n = Normal::new(&Tensor::zeros(4, DType::F32, &dev)?, &Tensor::ones(4, DType::F32, &dev)?)?;
///     ctx.sample("z", n)
/// })?;
/// assert_eq!(tr.get("z").unwrap().log_prob()?.dims(), &[4]);
/// assert_eq!(tr.names().collect::<Vec<_>>(), vec!["z"]);
/// # Ok::<(), vi_infer::InferError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Trace {
    sites: Vec<Site>,
    /// The plates the run entered, in order (with or without sites in them).
    plates_entered: Vec<String>,
    /// Site positions by name, built once the trace holds [`INDEX_FROM`] sites; below that a
    /// scan of the names is faster than hashing one (and costs no allocation per site).
    index: HashMap<String, usize>,
}

/// The number of sites from which a trace indexes its names.
const INDEX_FROM: usize = 16;

impl Trace {
    /// An empty trace.
    ///
    /// ```
    /// assert!(vi_infer::Trace::new().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a message as a site. A sample, deterministic or subsample name seen twice is
    /// [`InferError::DuplicateSite`]; a parameter read twice is recorded once.
    ///
    /// ```
    /// use vi_infer::{Message, SiteKind, Trace};
    /// let mut tr = Trace::new();
    /// let mut msg = Message::new("z", SiteKind::Sample);
    /// msg.value = Some(candle_core::Tensor::new(1.0f32, &candle_core::Device::Cpu)?);
    /// tr.record(&msg)?;
    /// assert!(tr.record(&msg).is_err()); // a sample name twice
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn record(&mut self, msg: &Message) -> Result<()> {
        if self.admits(msg)?
            && let Some(site) = Site::from_message(msg)
        {
            self.push(site);
        }
        Ok(())
    }

    /// [`record`](Trace::record) taking the message: its name, distribution and plates move
    /// into the site instead of being copied.
    pub(crate) fn record_owned(&mut self, msg: Message) -> Result<()> {
        if self.admits(&msg)?
            && let Some(site) = Site::from_owned(msg)
        {
            self.push(site);
        }
        Ok(())
    }

    /// Whether `msg` makes a new site: `Ok(true)` for a new name with a value, `Ok(false)` to
    /// keep the trace as is (a parameter read again, or no value),
    /// [`InferError::DuplicateSite`] for a name seen twice otherwise.
    fn admits(&self, msg: &Message) -> Result<bool> {
        if let Some(i) = self.position(&msg.name) {
            if msg.kind == SiteKind::Param && self.sites[i].kind == SiteKind::Param {
                return Ok(false);
            }
            return Err(InferError::DuplicateSite {
                site: msg.name.clone(),
            });
        }
        Ok(msg.value.is_some())
    }

    /// Appends a site whose name is not in the trace yet, indexing it when the trace is large.
    fn push(&mut self, site: Site) {
        let i = self.sites.len();
        if i + 1 == INDEX_FROM {
            self.index.reserve(2 * INDEX_FROM);
            for (k, s) in self.sites.iter().enumerate() {
                self.index.insert(s.name.clone(), k);
            }
        }
        if i + 1 >= INDEX_FROM {
            self.index.insert(site.name.clone(), i);
        }
        self.sites.push(site);
    }

    /// Where the site named `name` is.
    fn position(&self, name: &str) -> Option<usize> {
        if self.sites.len() >= INDEX_FROM {
            self.index.get(name).copied()
        } else {
            self.sites.iter().position(|s| s.name == name)
        }
    }

    /// The site named `name`.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let (_, tr) = ctx.trace(|ctx| {
    ///     let s = ctx.param("s", &one, Constraint::Positive)?;
    ///     let z = ctx.sample("z", Normal::new(&zero, &s)?)?;
    ///     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// })?;
    /// assert_eq!(tr.get("s").unwrap().kind, vi_infer::SiteKind::Param);
    /// assert!(tr.get("nope").is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, name: &str) -> Option<&Site> {
        self.position(name).map(|i| &self.sites[i])
    }

    /// Whether a site is named `name`.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let (_, tr) = ctx.trace(|ctx| {
    ///     let s = ctx.param("s", &one, Constraint::Positive)?;
    ///     let z = ctx.sample("z", Normal::new(&zero, &s)?)?;
    ///     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// })?;
    /// assert!(tr.contains("z") && !tr.contains("nope"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn contains(&self, name: &str) -> bool {
        self.position(name).is_some()
    }

    /// The sites in the order they ran.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let (_, tr) = ctx.trace(|ctx| {
    ///     let s = ctx.param("s", &one, Constraint::Positive)?;
    ///     let z = ctx.sample("z", Normal::new(&zero, &s)?)?;
    ///     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// })?;
    /// let observed = tr.sites().filter(|s| s.is_observed).count();
    /// assert_eq!(observed, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sites(&self) -> impl Iterator<Item = &Site> {
        self.sites.iter()
    }

    /// The site names in the order they ran.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let (_, tr) = ctx.trace(|ctx| {
    ///     let s = ctx.param("s", &one, Constraint::Positive)?;
    ///     let z = ctx.sample("z", Normal::new(&zero, &s)?)?;
    ///     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// })?;
    /// assert_eq!(tr.names().collect::<Vec<_>>(), ["s", "z", "x"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sites.iter().map(|s| s.name.as_str())
    }

    /// The names of the plates the run entered, in the order it first entered them, sites in
    /// them or not (as Pyro records every plate): what tells a plate of the guide that the
    /// model never enters.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let (_, tr) = ctx.trace(|ctx| ctx.plate("empty", 3, |_| Ok(())))?;
    /// assert_eq!(tr.plates_entered(), ["empty"]);
    /// assert!(tr.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn plates_entered(&self) -> &[String] {
        &self.plates_entered
    }

    pub(crate) fn set_plates_entered(&mut self, plates: Vec<String>) {
        self.plates_entered = plates;
    }

    /// The name of the last site recorded, if any.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let (_, tr) = ctx.trace(|ctx| {
    ///     let s = ctx.param("s", &one, Constraint::Positive)?;
    ///     ctx.sample("z", Normal::new(&zero, &s)?)
    /// })?;
    /// assert_eq!(tr.last_name(), Some("z"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn last_name(&self) -> Option<&str> {
        self.sites.last().map(|s| s.name.as_str())
    }

    /// The number of sites.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let (_, tr) = ctx.trace(|ctx| {
    ///     let s = ctx.param("s", &one, Constraint::Positive)?;
    ///     let z = ctx.sample("z", Normal::new(&zero, &s)?)?;
    ///     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// })?;
    /// assert_eq!(tr.len(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.sites.len()
    }

    /// Whether the trace has no sites.
    ///
    /// ```
    /// assert!(vi_infer::Trace::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }

    /// The sum over sample sites (latent and observed) of their log-densities: Pyro's
    /// `trace.log_prob_sum()`. A scalar tensor; 0 without sample sites.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use rand::SeedableRng;
    /// # use vi_dist::Normal;
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let dev = Device::Cpu;
    /// # let mut store = ParamStore::new(&dev, DType::F64);
    /// # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    /// let (_, tr) = ctx.trace(|ctx| {
    ///     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
    ///     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// })?;
    /// let by_site = (tr.get("z").unwrap().log_prob_sum()? + tr.get("x").unwrap().log_prob_sum()?)?;
    /// assert_eq!(tr.log_prob_sum()?.to_scalar::<f64>()?, by_site.to_scalar::<f64>()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn log_prob_sum(&self) -> Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for s in self.sites.iter().filter(|s| s.kind == SiteKind::Sample) {
            let lp = s.log_prob_sum()?;
            total = Some(match total {
                Some(t) => (t + lp)?,
                None => lp,
            });
        }
        match total {
            Some(t) => Ok(t),
            None => Err(InferError::Invalid("the trace has no sample sites".into())),
        }
    }

    /// The shapes of every site, as Pyro's `trace.format_shapes()`: for each sample site
    /// its distribution's batch and event shapes (`batch | event`), its value's, and its
    /// log-density's; for each parameter its shape.
    ///
    /// ```text
    /// Trace Shapes:
    ///  Param Sites:
    ///        loc_q  50
    /// Sample Sites:
    ///   data plate 256 |
    ///       z dist 256 | 50
    ///        value 256 | 50
    ///     log_prob 256 |
    /// ```
    pub fn format_shapes(&self) -> Result<String> {
        let dims = |d: &[usize]| {
            d.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        // Rows of (name, what, batch, event or None for a plain shape).
        let mut rows: Vec<(String, String, String, Option<String>)> = vec![
            ("Trace Shapes:".into(), String::new(), String::new(), None),
            ("Param Sites:".into(), String::new(), String::new(), None),
        ];
        for s in self.sites.iter().filter(|s| s.kind == SiteKind::Param) {
            rows.push((s.name.clone(), String::new(), dims(s.value.dims()), None));
        }
        rows.push(("Sample Sites:".into(), String::new(), String::new(), None));
        let mut plates_seen: Vec<String> = Vec::new();
        for s in &self.sites {
            match s.kind {
                SiteKind::Subsample => {
                    rows.push((
                        s.name.clone(),
                        "plate".into(),
                        dims(s.value.dims()),
                        Some(String::new()),
                    ));
                    plates_seen.push(s.name.clone());
                }
                SiteKind::Sample => {
                    for p in &s.plates {
                        if !plates_seen.contains(&p.name) {
                            plates_seen.push(p.name.clone());
                            rows.push((
                                p.name.clone(),
                                "plate".into(),
                                p.subsample_size.to_string(),
                                Some(String::new()),
                            ));
                        }
                    }
                    let Some(d) = &s.dist else { continue };
                    let batch = d.batch_shape();
                    let event = d.event_shape();
                    rows.push((
                        s.name.clone(),
                        "dist".into(),
                        dims(batch),
                        Some(dims(event)),
                    ));
                    let v = s.value.dims();
                    let split = v.len().saturating_sub(event.len());
                    rows.push((
                        String::new(),
                        "value".into(),
                        dims(&v[..split]),
                        Some(dims(&v[split..])),
                    ));
                    let lp = s.log_prob()?;
                    rows.push((
                        String::new(),
                        "log_prob".into(),
                        dims(lp.dims()),
                        Some(String::new()),
                    ));
                }
                SiteKind::Deterministic => {
                    rows.push((s.name.clone(), "value".into(), dims(s.value.dims()), None));
                }
                SiteKind::Param => {}
            }
        }
        // The label column (`z dist`, `value`, `data plate`) right-aligned, as Pyro's.
        let rows: Vec<(String, String, Option<String>)> = rows
            .into_iter()
            .map(|(name, what, batch, event)| {
                let label = match (name.is_empty(), what.is_empty()) {
                    (_, true) => name,
                    (true, false) => what,
                    (false, false) => format!("{name} {what}"),
                };
                (label, batch, event)
            })
            .collect();
        let w_label = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
        let w_batch = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
        let mut out = String::new();
        for (label, batch, event) in rows {
            let mut line = format!("{label:>w_label$} {batch:>w_batch$}");
            if let Some(e) = event {
                let _ = write!(line, " | {e}");
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        Ok(out)
    }
}
