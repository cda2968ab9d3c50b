//! What a `ctx.sample` / `ctx.param` call sends through the handler stack.

use candle_core::{Device, Tensor};
use vi_dist::Distribution;

use crate::site_options::SiteOptions;

/// The kind of a site.
///
/// ```
/// use vi_infer::{Message, SiteKind};
/// assert!(Message::new("z", SiteKind::Sample).is_latent());
/// assert!(!Message::new("w", SiteKind::Param).is_latent());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteKind {
    /// A random variable (`ctx.sample`, or `ctx.observe` when observed).
    Sample,
    /// A learnable parameter (`ctx.param`); its value is the constrained tensor.
    Param,
    /// A recorded function of other sites (`ctx.deterministic`); no log-density.
    Deterministic,
    /// The indices a subsampled plate drew (`ctx.plate_subsample`), recorded under the
    /// plate's name so that replaying a model against a guide reuses them.
    Subsample,
}

/// A plate a site lives in: its name, its dim and size, and the scale it applies.
///
/// ```
/// let f = vi_infer::PlateFrame { name: "data".into(), dim: -1, size: 60_000, subsample_size: 256 };
/// assert!((f.scale() - 234.375).abs() < 1e-12);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct PlateFrame {
    /// The plate's name.
    pub name: String,
    /// The dim it occupies, counted from the right of the batch shape (`-1` is rightmost).
    pub dim: isize,
    /// The full size of the plate.
    pub size: usize,
    /// The size of the batch dim: `size`, or the subsample size.
    pub subsample_size: usize,
}

impl PlateFrame {
    /// `size / subsample_size`: the factor a subsampled plate scales log-densities by.
    ///
    /// ```
    /// use vi_infer::PlateFrame;
    /// let f = PlateFrame { name: "data".into(), dim: -1, size: 1000, subsample_size: 100 };
    /// assert_eq!(f.scale(), 10.0);
    /// ```
    pub fn scale(&self) -> f64 {
        self.size as f64 / self.subsample_size.max(1) as f64
    }
}

/// One iteration of a sequential plate ([`Ctx::plate_seq`](crate::Ctx::plate_seq), Pyro's
/// `for i in pyro.plate(name, size)`): sites in iterations with different indices of the same
/// plate are conditionally independent. It has no batch dim; `TraceGraphElbo` reads it to
/// keep each iteration's score away from the other iterations' costs.
///
/// ```
/// let f = vi_infer::SequentialFrame { name: "data".into(), index: 3 };
/// assert_eq!(f.index, 3);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequentialFrame {
    /// The plate's name.
    pub name: String,
    /// Which iteration.
    pub index: usize,
}

impl SequentialFrame {
    /// Whether a site in `a` and one in `b` are independent: some sequential plate holds them
    /// in different iterations.
    ///
    /// ```
    /// use vi_infer::SequentialFrame;
    /// let at = |i| vec![SequentialFrame { name: "data".into(), index: i }];
    /// assert!(SequentialFrame::independent(&at(0), &at(1)));
    /// assert!(!SequentialFrame::independent(&at(2), &at(2)));
    /// assert!(!SequentialFrame::independent(&at(2), &[]));
    /// ```
    pub fn independent(a: &[SequentialFrame], b: &[SequentialFrame]) -> bool {
        a.iter()
            .any(|x| b.iter().any(|y| x.name == y.name && x.index != y.index))
    }
}

/// What a subsampled plate asks for: `subsample_size` distinct indices in `0..size`, as a
/// u32 tensor on `device`.
///
/// ```
/// let s = vi_infer::Subsample { size: 10, subsample_size: 3, device: candle_core::Device::Cpu };
/// assert!(s.subsample_size <= s.size);
/// ```
#[derive(Clone, Debug)]
pub struct Subsample {
    /// The plate's full size.
    pub size: usize,
    /// How many indices.
    pub subsample_size: usize,
    /// Where the index tensor lives.
    pub device: Device,
}

/// A message: one site on its way through the handler stack. Handlers read and change it in
/// [`Messenger::process`](crate::Messenger::process) (before the value is drawn) and read
/// it in [`Messenger::postprocess`](crate::Messenger::postprocess) (after).
///
/// ```
/// use vi_infer::{Message, SiteKind};
/// let mut m = Message::new("x", SiteKind::Sample);
/// m.is_observed = true;
/// assert!(!m.is_latent());
/// ```
#[derive(Debug)]
pub struct Message {
    /// The site's name.
    pub name: String,
    /// What kind of site.
    pub kind: SiteKind,
    /// The distribution (sample sites).
    pub dist: Option<Box<dyn Distribution>>,
    /// The value: set by a handler (replay, condition, substitute, seed) or drawn by default.
    pub value: Option<Tensor>,
    /// Whether the value is data (`ctx.observe`, or a `condition` handler).
    pub is_observed: bool,
    /// Whether this is an auxiliary guide site ([`Ctx::sample_auxiliary`](crate::Ctx::sample_auxiliary),
    /// Pyro's `infer={"is_auxiliary": True}`): a latent of the guide alone, which the model
    /// never samples (the joint latent vector of the continuous autoguides).
    pub is_auxiliary: bool,
    /// The factor the site's log-density is multiplied by (plates' subsampling, `scale`).
    pub scale: f64,
    /// A per-element factor on top of `scale` (`ctx.scale_by` with a tensor), broadcastable to
    /// the batch shape; `None` for none.
    pub scale_tensor: Option<Tensor>,
    /// Where the site's log-density counts (`mask` handler, `ctx.mask`): a boolean (u8)
    /// tensor broadcastable to the batch shape; `None` counts everywhere.
    pub mask: Option<Tensor>,
    /// The plates the site lives in, outermost first.
    pub plates: Vec<PlateFrame>,
    /// The iterations of sequential plates the site lives in, outermost first.
    pub sequential: Vec<SequentialFrame>,
    /// Set by `block`: handlers further out do not see the message.
    pub stop: bool,
    /// For a `Subsample` message: what to draw.
    pub subsample: Option<Subsample>,
    /// Inference settings and bookkeeping: the enumeration mark and dims (Pyro's `infer`).
    pub infer: crate::enumerate::Infer,
    /// The site's options (`ctx.sample_with`; Pyro's `infer` dict).
    pub options: SiteOptions,
}

impl Message {
    /// A fresh message for `name` of `kind`.
    ///
    /// ```
    /// use vi_infer::{Message, SiteKind};
    /// let m = Message::new("z", SiteKind::Sample);
    /// assert_eq!((m.scale, m.is_observed, m.value.is_none()), (1.0, false, true));
    /// ```
    pub fn new(name: &str, kind: SiteKind) -> Self {
        Self {
            name: name.to_string(),
            kind,
            dist: None,
            value: None,
            is_observed: false,
            is_auxiliary: false,
            scale: 1.0,
            scale_tensor: None,
            mask: None,
            plates: Vec::new(),
            sequential: Vec::new(),
            stop: false,
            subsample: None,
            infer: crate::enumerate::Infer::default(),
            options: SiteOptions::default(),
        }
    }

    /// Whether this is a latent sample site (sampled, not observed).
    ///
    /// ```
    /// use vi_infer::{Message, SiteKind};
    /// assert!(Message::new("z", SiteKind::Sample).is_latent());
    /// ```
    pub fn is_latent(&self) -> bool {
        self.kind == SiteKind::Sample && !self.is_observed
    }
}
