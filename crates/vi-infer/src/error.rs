//! The one error type of `vi-infer`.

use vi_dist::DistError;
use vi_kl::KlError;
use vi_optim::OptimError;

/// Everything that can go wrong in a model, a guide, a handler or an SVI step.
///
/// Variants name the site, plate, distribution and shapes involved, so the message points
/// at the user's `ctx.sample` line rather than at a candle kernel.
///
/// ```
/// use vi_infer::InferError;
/// let e = InferError::DuplicateSite { site: "z".into() };
/// assert_eq!(e.to_string(), "site `z` is used twice in one run: site names must be unique");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InferError {
    /// Two sites of one run share a name.
    #[error("site `{site}` is used twice in one run: site names must be unique")]
    DuplicateSite {
        /// The repeated name.
        site: String,
    },
    /// The guide samples a site that is not a latent site of the model (absent there, or
    /// observed).
    #[error("guide site `{site}` is not a latent site of the model (absent, or observed there)")]
    GuideSiteNotInModel {
        /// The guide's site.
        site: String,
    },
    /// The model has a latent site that the guide does not sample.
    #[error("model latent site `{site}` is not sampled by the guide")]
    LatentNotInGuide {
        /// The model's site.
        site: String,
    },
    /// The model and the guide give a site different event shapes.
    #[error(
        "site `{site}`: the model's {model_dist} has event shape {model:?}, the guide's {guide_dist} has {guide:?}"
    )]
    EventShape {
        /// The site.
        site: String,
        /// The model's distribution (with wrappers).
        model_dist: String,
        /// The guide's distribution (with wrappers).
        guide_dist: String,
        /// The model's event shape.
        model: Box<[usize]>,
        /// The guide's event shape.
        guide: Box<[usize]>,
    },
    /// A site's distribution (or the value given to it) has, at a plate's dim, a size other
    /// than the plate's (or 1).
    #[error(
        "site `{site}` inside plate `{plate}` (size {size}, dim {dim}): {dist} has batch shape {batch:?}, whose dim {dim} is neither {size} nor 1"
    )]
    PlateSize {
        /// The site.
        site: String,
        /// The plate.
        plate: String,
        /// The plate's size (its subsample size when subsampled).
        size: usize,
        /// The plate's dim (negative, counted from the right of the batch shape).
        dim: isize,
        /// The site's distribution, or `the observed value` / `the value`.
        dist: String,
        /// The distribution's (or the value's) batch shape.
        batch: Box<[usize]>,
    },
    /// `TraceMeanFieldElbo` met a guide site without `rsample`.
    #[error(
        "guide site `{site}`: {dist} is not reparameterised; TraceMeanFieldElbo needs rsample (use TraceElbo, which adds the score-function term)"
    )]
    NotReparameterized {
        /// The site.
        site: String,
        /// The guide's distribution.
        dist: String,
    },
    /// An ELBO's setting out of its range: [`RenyiElbo`](crate::RenyiElbo)'s `alpha` of 1 (the
    /// ELBO itself: use [`TraceElbo`](crate::TraceElbo)) or not finite, or fewer than two
    /// particles.
    #[error("{elbo}: {msg}")]
    ElboSetting {
        /// The ELBO.
        elbo: &'static str,
        /// What is wrong, and what to do instead.
        msg: String,
    },
    /// A guide site's [`Baseline`](crate::Baseline) that [`TraceGraphElbo`](crate::TraceGraphElbo)
    /// cannot use: a value whose shape does not broadcast to the site's batch shape, or a
    /// decaying average's `beta` outside `[0, 1)`.
    #[error("guide site `{site}`: {msg}")]
    Baseline {
        /// The site.
        site: String,
        /// What is wrong, with the shapes involved.
        msg: String,
    },
    /// Two nested plates claim the same dim, or a plate's settings are invalid.
    #[error("plate `{plate}`: {msg}")]
    Plate {
        /// The plate.
        plate: String,
        /// What is wrong, in words.
        msg: String,
    },
    /// An observed value lies outside its distribution's support (or has the wrong shape).
    #[error("observed site `{site}`{}: {source}", in_plates(plates))]
    Observed {
        /// The site.
        site: String,
        /// The plates the site is in, outermost first.
        plates: Vec<String>,
        /// What the distribution said.
        source: Box<DistError>,
    },
    /// A distribution error at a site (sampling, `log_prob`, expanding to a plate).
    #[error("site `{site}`{}: {source}", in_plates(plates))]
    Site {
        /// The site.
        site: String,
        /// The plates the site is in, outermost first.
        plates: Vec<String>,
        /// The distribution's error.
        source: Box<DistError>,
    },
    /// A sample site whose batch shape (its log-density's shape: the value's batch dims
    /// broadcast with the distribution's batch shape) has a dim of size other than 1 that no
    /// plate declares, as Pyro's `check_site_shape`.
    #[error(
        "site `{site}`: {what} gives a log-density of shape {shape:?}, whose dim {dim} (size {size}) {}; plates here: {}. Enclose the batched dim in a plate, move it into the event with `.to_event(..)`, or reshape the data",
        dim_owner(plate),
        plate_list(plates)
    )]
    SiteShape {
        /// The site.
        site: String,
        /// The site's distribution (with its batch and event shapes), or the mask or scale
        /// that widened it.
        what: String,
        /// The batch shape of the site's log-density.
        shape: Box<[usize]>,
        /// The offending dim, counted from the right (negative).
        dim: isize,
        /// Its size.
        size: usize,
        /// The plate at that dim and its size, if one is there (then `size` is neither 1 nor
        /// the plate's).
        plate: Option<Box<(String, usize)>>,
        /// The plates the site is in: `name (dim d, size n)`.
        plates: Box<[String]>,
    },
    /// A latent site whose model and guide distributions have batch shapes that disagree
    /// (after broadcasting size-1 dims), as Pyro's `check_model_guide_match`.
    #[error(
        "site `{site}`: the model's {model_dist} has shape {model:?} (batch + event), the guide's {guide_dist} has {guide:?}; they disagree at dim {dim}. Sample the site in the same plates in both"
    )]
    BatchShape {
        /// The site.
        site: String,
        /// The model's distribution (with wrappers).
        model_dist: String,
        /// The guide's distribution (with wrappers).
        guide_dist: String,
        /// The model's batch + event shape.
        model: Box<[usize]>,
        /// The guide's batch + event shape.
        guide: Box<[usize]>,
        /// The first dim (from the right, negative) where they disagree.
        dim: isize,
    },
    /// The guide uses a plate that the model never enters (Pyro: "Found plate statements in
    /// guide but not model").
    #[error(
        "plate `{plate}` appears in the guide ({}) but not in the model",
        first_site(site)
    )]
    GuidePlateNotInModel {
        /// The plate.
        plate: String,
        /// The first guide site in it (none for a plate entered with no site in it).
        site: Option<String>,
    },
    /// Enumerated sites that cannot be summed out as the program is written: a site whose
    /// log-density has a dim left of the plates that no enumerated site it can see explains,
    /// enumerated sites of independent plates meeting in one factor, a site depending on an
    /// enumerated site outside that site's plates, factors of different scales, model
    /// enumeration more global than guide enumeration (the sites are named; Pyro raises
    /// `ValueError`/`NotImplementedError` for the same).
    /// Also a tensor enumeration would make wider than candle's CPU kernels take (8 dims: an
    /// enumerated value, or [`vindex`](crate::vindex) on enumerated values, which names no site
    /// and comes wrapped in [`InferError::InProgram`] with the last site recorded).
    #[error("enumeration{}: {msg}", at_sites(sites))]
    Enumeration {
        /// The sites involved (none where the program's own op failed: see `InProgram`).
        sites: Vec<String>,
        /// What is wrong, in words.
        msg: String,
    },
    /// The loss of a step, or the gradient of a parameter, is NaN or infinite. The step left
    /// the parameters and the optimizer's state as they were.
    #[error(
        "{what} is {value}{}; the parameters and the optimizer state are unchanged",
        culprits(terms)
    )]
    NonFinite {
        /// `the loss` or `the gradient of param `w``.
        what: String,
        /// What the value is: `NaN`, `inf`, `-inf`, or `NaN at [2, 3]` for a tensor.
        value: String,
        /// For the loss: each site whose term is not finite (name, term kind, value).
        terms: Vec<(String, String, String)>,
    },
    /// An error raised while the model or the guide ran that does not name a site itself
    /// (a distribution's constructor, a candle op): which program, and the last site it
    /// recorded before the error.
    #[error("in the {program}{}: {source}", after_site(last_site))]
    InProgram {
        /// `model` or `guide`.
        program: &'static str,
        /// The last site the program recorded before the error (none: it failed before its
        /// first site).
        last_site: Option<String>,
        /// The error.
        source: Box<InferError>,
    },
    /// A KL error at a site.
    #[error("site `{site}`: {source}")]
    Kl {
        /// The site.
        site: String,
        /// The KL error.
        source: Box<KlError>,
    },
    /// A parameter used inconsistently (another dtype, device, shape or constraint than the
    /// stored one), or a name clash between a parameter and a module variable.
    #[error("param `{name}`: {msg}")]
    Param {
        /// The parameter.
        name: String,
        /// What is wrong, in words.
        msg: String,
    },
    /// An automatic guide cannot guide a site of the model: its initial value lies outside
    /// the support, its support is discrete, or its plates do not fit the guide.
    #[error("{guide}, site `{site}`: {msg}")]
    AutoGuide {
        /// The guide (`AutoNormal`, `AutoDelta`, …).
        guide: String,
        /// The model's site.
        site: String,
        /// What is wrong, in words.
        msg: String,
    },
    /// Data-parallel SVI: a subsampled plate's batch (the world's) is not a multiple of the
    /// world size, so the ranks cannot take equal shares of it.
    #[error(
        "plate `{plate}`: a batch of {batch} does not split over {world} ranks (data-parallel SVI needs a multiple of the world size)"
    )]
    IndivisibleBatch {
        /// The plate.
        plate: String,
        /// Its subsample size: the batch of the whole world.
        batch: usize,
        /// The world size.
        world: usize,
    },
    /// Data-parallel SVI: the ranks' steps differ in structure (a site, a parameter or its
    /// size present on some ranks only), found before any gradient is exchanged.
    #[error("data-parallel ranks disagree (world size {world}): {what}")]
    RankMismatch {
        /// The world size.
        world: usize,
        /// What differs, naming the site or parameter and the ranks.
        what: String,
    },
    /// Data-parallel SVI: another rank's step failed, so this one stops too (its parameters
    /// and optimizer state unchanged).
    #[error("rank {rank} of {world} failed this step: {msg}")]
    PeerFailed {
        /// The rank whose step failed.
        rank: usize,
        /// The world size.
        world: usize,
        /// Its error, as text.
        msg: String,
    },
    /// Data-parallel SVI: a collective did not complete in time (a rank that died, hangs, or
    /// no longer steps). The communicator is unusable afterwards.
    #[error(
        "rank {rank} of {world}: the {op} did not complete within {seconds} s (a rank died, hangs or stopped stepping)"
    )]
    CollectiveTimeout {
        /// This rank.
        rank: usize,
        /// The world size.
        world: usize,
        /// The collective (`all-reduce of the gradients`, …).
        op: String,
        /// The deadline, in seconds.
        seconds: f64,
    },
    /// Data-parallel SVI: the communication engine (MPI, NCCL) reported an error, or a
    /// buffer handed to it is unusable.
    #[error("rank {rank} of {world}: {msg}")]
    Communication {
        /// This rank.
        rank: usize,
        /// The world size.
        world: usize,
        /// What failed.
        msg: String,
    },
    /// Bad arguments (e.g. zero particles).
    #[error("{0}")]
    Invalid(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An error from a distribution outside any site.
    #[error(transparent)]
    Dist(Box<DistError>),
    /// An error from the KL registry outside any site.
    #[error(transparent)]
    KlDivergence(Box<KlError>),
    /// An error from the optimizer.
    #[error(transparent)]
    Optim(Box<OptimError>),
    /// An error from a candle op.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl InferError {
    /// The error itself, seen through [`InferError::InProgram`]'s context: match on this.
    ///
    /// ```
    /// use vi_infer::InferError;
    /// let inner = InferError::Invalid("bad".into());
    /// let e = InferError::InProgram { program: "guide", last_site: None, source: Box::new(inner) };
    /// assert!(matches!(e.root(), InferError::Invalid(_)));
    /// assert_eq!(e.to_string(), "in the guide (before its first site): bad");
    /// ```
    pub fn root(&self) -> &InferError {
        match self {
            InferError::InProgram { source, .. } => source.root(),
            other => other,
        }
    }

    /// Whether the error names no site of its own, so that the program it came from and its
    /// last site are worth adding.
    pub(crate) fn lacks_site(&self) -> bool {
        matches!(
            self,
            InferError::Dist(_)
                | InferError::KlDivergence(_)
                | InferError::Candle(_)
                | InferError::Invalid(_)
                | InferError::Optim(_)
        ) || matches!(self, InferError::Enumeration { sites, .. } if sites.is_empty())
    }

    /// Adds the program (`model` or `guide`) and its last recorded site to an error that
    /// names no site.
    pub(crate) fn in_program(self, program: &'static str, last_site: Option<&str>) -> Self {
        if self.lacks_site() {
            InferError::InProgram {
                program,
                last_site: last_site.map(str::to_string),
                source: Box::new(self),
            }
        } else {
            self
        }
    }
}

/// A distribution's error at a site: [`InferError::Observed`] for an observed site,
/// [`InferError::Site`] otherwise, with the names of the site's plates.
pub(crate) fn at_site(
    site: &str,
    plates: &[crate::message::PlateFrame],
    observed: bool,
    source: DistError,
) -> InferError {
    let plates = plates.iter().map(|p| p.name.clone()).collect();
    let (site, source) = (site.to_string(), Box::new(source));
    if observed {
        InferError::Observed {
            site,
            plates,
            source,
        }
    } else {
        InferError::Site {
            site,
            plates,
            source,
        }
    }
}

/// ` (in plate `a`)` / ` (in plates `a`, `b`)` / nothing.
fn in_plates(plates: &[String]) -> String {
    match plates {
        [] => String::new(),
        [p] => format!(" (in plate `{p}`)"),
        ps => format!(
            " (in plates {})",
            ps.iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `` `a`, `b` ``.
/// ` at site(s) `a`, `b`` / nothing.
fn at_sites(sites: &[String]) -> String {
    if sites.is_empty() {
        String::new()
    } else {
        format!(" at site(s) {}", site_names(sites))
    }
}

fn site_names(sites: &[String]) -> String {
    sites
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn plate_list(plates: &[String]) -> String {
    if plates.is_empty() {
        "none".into()
    } else {
        plates.join(", ")
    }
}

fn dim_owner(plate: &Option<Box<(String, usize)>>) -> String {
    match plate.as_deref() {
        Some((p, n)) => format!("is neither 1 nor the size {n} of plate `{p}` there"),
        None => "belongs to no plate the site is in (it must be 1)".into(),
    }
}

fn culprits(terms: &[(String, String, String)]) -> String {
    if terms.is_empty() {
        return String::new();
    }
    let list: Vec<String> = terms
        .iter()
        .map(|(site, kind, v)| format!("site `{site}` ({kind}: {v})"))
        .collect();
    format!(": non-finite at {}", list.join(", "))
}

fn first_site(site: &Option<String>) -> String {
    match site {
        Some(s) => format!("first at site `{s}`"),
        None => "with no site in it".into(),
    }
}

fn after_site(last: &Option<String>) -> String {
    match last {
        Some(s) => format!(" (after site `{s}`)"),
        None => " (before its first site)".into(),
    }
}

impl From<DistError> for InferError {
    fn from(e: DistError) -> Self {
        InferError::Dist(Box::new(e))
    }
}

impl From<KlError> for InferError {
    fn from(e: KlError) -> Self {
        InferError::KlDivergence(Box::new(e))
    }
}

impl From<OptimError> for InferError {
    fn from(e: OptimError) -> Self {
        InferError::Optim(Box::new(e))
    }
}

/// `Result` with [`InferError`].
///
/// ```
/// fn model() -> vi_infer::Result<()> {
///     Err(vi_infer::InferError::Invalid("example".into()))
/// }
/// assert!(model().is_err());
/// ```
pub type Result<T> = std::result::Result<T, InferError>;
