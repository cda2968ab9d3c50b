//! The one error type of `vi-kl`.

/// Everything that can go wrong when computing a KL divergence.
///
/// Each variant names both distributions (wrappers included, e.g. `Independent(Normal, 1)`)
/// and the shapes involved.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use vi_dist::{Cauchy, Normal};
/// use vi_kl::{KlError, kl_divergence};
/// let zero = Tensor::zeros(2, DType::F64, &Device::Cpu)?;
/// let one = Tensor::ones(2, DType::F64, &Device::Cpu)?;
/// let err = kl_divergence(&Normal::new(&zero, &one)?, &Cauchy::new(&zero, &one)?).unwrap_err();
/// assert!(err.is_no_closed_form());
/// assert_eq!(err.to_string(), "no closed-form KL(Normal ‖ Cauchy) is registered");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KlError {
    /// No rule in the registry covers this pair of distributions.
    #[error("no closed-form KL({p} ‖ {q}) is registered")]
    NoClosedForm {
        /// The first argument, described with its wrappers.
        p: String,
        /// The second argument, described with its wrappers.
        q: String,
    },
    /// The two batch shapes do not broadcast against each other.
    #[error("KL({p} ‖ {q}): batch shapes {p_shape:?} and {q_shape:?} do not broadcast")]
    BatchShape {
        /// The first argument.
        p: String,
        /// The second argument.
        q: String,
        /// Batch shape of `p`.
        p_shape: Vec<usize>,
        /// Batch shape of `q`.
        q_shape: Vec<usize>,
    },
    /// The two event shapes differ.
    #[error("KL({p} ‖ {q}): event shapes {p_shape:?} and {q_shape:?} differ")]
    EventShape {
        /// The first argument.
        p: String,
        /// The second argument.
        q: String,
        /// Event shape of `p`.
        p_shape: Vec<usize>,
        /// Event shape of `q`.
        q_shape: Vec<usize>,
    },
    /// The two distributions live on different devices or have different dtypes.
    #[error("KL({p} ‖ {q}): p is {p_kind}, q is {q_kind}")]
    Kind {
        /// The first argument.
        p: String,
        /// The second argument.
        q: String,
        /// dtype and device of `p`.
        p_kind: String,
        /// dtype and device of `q`.
        q_kind: String,
    },
    /// The pair has a rule, but not for these parameters (for example two `Categorical`s with
    /// different numbers of classes, or a `Binomial` whose `total_count` is below `q`'s).
    #[error("KL({p} ‖ {q}): {msg}")]
    Unsupported {
        /// The first argument.
        p: String,
        /// The second argument.
        q: String,
        /// What is not supported, in words.
        msg: String,
    },
    /// A rule returned a tensor whose shape is not the broadcast batch shape.
    #[error("KL({p} ‖ {q}): the rule returned shape {found:?}, expected {expected:?}")]
    RuleShape {
        /// The first argument.
        p: String,
        /// The second argument.
        q: String,
        /// The shape the rule returned.
        found: Vec<usize>,
        /// The broadcast batch shape.
        expected: Vec<usize>,
    },
    /// Bad arguments to [`kl_monte_carlo`](crate::kl_monte_carlo) and similar.
    #[error("{0}")]
    Invalid(String),
    /// An error from a distribution (building, sampling, `log_prob`).
    #[error(transparent)]
    Dist(#[from] vi_dist::DistError),
    /// An error from a candle op.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl KlError {
    /// Whether this is [`KlError::NoClosedForm`]: the caller may fall back to a Monte Carlo
    /// estimate, as `TraceMeanFieldElbo` does.
    ///
    /// ```
    /// use vi_kl::KlError;
    /// let e = KlError::NoClosedForm { p: "Normal".into(), q: "Cauchy".into() };
    /// assert!(e.is_no_closed_form());
    /// assert!(!KlError::Invalid("x".into()).is_no_closed_form());
    /// ```
    pub fn is_no_closed_form(&self) -> bool {
        matches!(self, KlError::NoClosedForm { .. })
    }
}

/// `Result` with [`KlError`].
///
/// ```
/// fn no_kl() -> vi_kl::Result<()> {
///     Err(vi_kl::KlError::Invalid("example".into()))
/// }
/// assert!(no_kl().is_err());
/// ```
pub type Result<T> = std::result::Result<T, KlError>;
