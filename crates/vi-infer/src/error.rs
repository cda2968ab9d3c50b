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
    /// Two nested plates claim the same dim, or a plate's settings are invalid.
    #[error("plate `{plate}`: {msg}")]
    Plate {
        /// The plate.
        plate: String,
        /// What is wrong, in words.
        msg: String,
    },
    /// An observed value lies outside its distribution's support (or has the wrong shape).
    #[error("observed site `{site}`: {source}")]
    Observed {
        /// The site.
        site: String,
        /// What the distribution said.
        source: Box<DistError>,
    },
    /// A distribution error at a site (building, sampling, `log_prob`).
    #[error("site `{site}`: {source}")]
    Site {
        /// The site.
        site: String,
        /// The distribution's error.
        source: Box<DistError>,
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
