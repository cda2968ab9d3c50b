//! The one error type of `vi-dist`.

use std::panic::Location;

use candle_core::{DType, Device};

/// Everything that can go wrong when building or using a distribution.
///
/// Each variant names the distribution (or op), the parameter and the shapes involved, so the
/// message points at the user's line rather than at a candle kernel. An error from a
/// constructor (`new`, `from_logits`, `from_scale_tril`, …, `expand`, `to_event`, `mask`,
/// [`DistSpec::build`](crate::DistSpec::build)) comes wrapped in [`DistError::At`], which
/// adds the caller's source location; [`DistError::kind`] sees through it, for matching.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use vi_dist::{DistError, Normal};
/// let loc = Tensor::zeros(2, DType::F64, &Device::Cpu)?;
/// let scale = Tensor::ones(3, DType::F64, &Device::Cpu)?;
/// let err = Normal::new(&loc, &scale).unwrap_err();
/// assert!(matches!(err.kind(), DistError::Broadcast { dist: "Normal", .. }));
/// let line = line!() - 2; // the line of `Normal::new` above
/// assert_eq!(err.location().map(|l| l.line()), Some(line));
/// let message = err.to_string();
/// assert!(message.starts_with("Normal: parameter shapes do not broadcast: loc [2], scale [3] (at "));
/// assert!(message.ends_with(&format!(":{line}:11)")));
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DistError {
    /// A parameter has the wrong rank or event shape.
    #[error("{dist}: parameter `{param}` has shape {found:?}, expected {expected}")]
    ParamShape {
        /// Distribution name.
        dist: &'static str,
        /// Parameter name (as in `torch.distributions`).
        param: &'static str,
        /// What was expected, in words (e.g. "[.., n, n] with n = 3").
        expected: String,
        /// The shape that was given.
        found: Vec<usize>,
    },
    /// The parameters' batch shapes do not broadcast against each other.
    #[error("{dist}: parameter shapes do not broadcast: {shapes}")]
    Broadcast {
        /// Distribution name.
        dist: &'static str,
        /// Each parameter with its shape, e.g. `loc [2, 3], scale [4]`.
        shapes: String,
    },
    /// Parameters live on different devices or have different dtypes.
    #[error("{dist}: parameter `{param}` is {found}, expected {expected} like the first parameter")]
    ParamKind {
        /// Distribution name.
        dist: &'static str,
        /// Parameter name.
        param: &'static str,
        /// The dtype/device expected.
        expected: String,
        /// The dtype/device found.
        found: String,
    },
    /// A parameter lies outside its support (validation on). The message ends with the first
    /// offending element: "NaN", "inf", "-inf" or the number, and its index, e.g.
    /// "Normal: parameter `scale` (shape [3]) is outside its support positive: NaN at [1]".
    #[error(
        "{dist}: parameter `{param}` (shape {shape:?}) is outside its support {constraint}: {found}"
    )]
    ParamSupport {
        /// Distribution name.
        dist: &'static str,
        /// Parameter name.
        param: &'static str,
        /// The constraint that failed, e.g. "positive".
        constraint: String,
        /// The parameter's shape.
        shape: Vec<usize>,
        /// The first element (in row-major order) outside the support and its index.
        found: Box<BadValue>,
    },
    /// A value passed to `log_prob` has a shape that does not fit `batch + event`.
    #[error(
        "{dist}: value of shape {value:?} does not fit batch shape {batch:?} and event shape {event:?}"
    )]
    ValueShape {
        /// Distribution name.
        dist: &'static str,
        /// Shape of the value.
        value: Vec<usize>,
        /// Batch shape of the distribution.
        batch: Vec<usize>,
        /// Event shape of the distribution.
        event: Vec<usize>,
    },
    /// A value passed to `log_prob` has another dtype or device than the distribution.
    #[error("{dist}: value is {found}, expected {expected} like the parameters")]
    ValueKind {
        /// Distribution name.
        dist: &'static str,
        /// The dtype/device of the distribution.
        expected: String,
        /// The dtype/device of the value.
        found: String,
    },
    /// A value passed to `log_prob` is outside the support (validation on), with the first
    /// offending element as in [`DistError::ParamSupport`], e.g.
    /// "Beta: value of shape [4] is outside the support unit_interval: 1.5 at [2]".
    #[error("{dist}: value of shape {shape:?} is outside the support {constraint}: {found}")]
    ValueSupport {
        /// Distribution name.
        dist: &'static str,
        /// The support, e.g. "interval(0, 1)".
        constraint: String,
        /// Shape of the value.
        shape: Vec<usize>,
        /// The first element outside the support and its index.
        found: Box<BadValue>,
    },
    /// `rsample` on a family without a reparameterised sampler.
    #[error("{dist}: has no reparameterised sampler; use `sample` (no gradient)")]
    NoRsample {
        /// Distribution name.
        dist: &'static str,
    },
    /// `enumerate_support` on a distribution whose support is not finite (or that cannot list
    /// it: an `Independent` with reinterpreted dims, whose support is a product), as torch's
    /// `NotImplementedError`.
    #[error("{dist}: has no finite support to enumerate")]
    NotEnumerable {
        /// The distribution, with its wrappers.
        dist: String,
    },
    /// A quantity the family does not define in closed form (torch raises
    /// `NotImplementedError` for the same).
    #[error("{dist}: {what} has no closed form")]
    Undefined {
        /// Distribution name.
        dist: &'static str,
        /// The quantity, e.g. "entropy".
        what: &'static str,
    },
    /// `expand` to a batch shape the current one cannot broadcast to.
    #[error("{dist}: cannot expand batch shape {from:?} to {to:?}")]
    Expand {
        /// Distribution name.
        dist: &'static str,
        /// Current batch shape.
        from: Vec<usize>,
        /// Requested batch shape.
        to: Vec<usize>,
    },
    /// `to_event(n)` with fewer than `n` batch dims.
    #[error("{dist}: to_event({n}) needs at least {n} batch dims, batch shape is {batch:?}")]
    ToEvent {
        /// Distribution name.
        dist: &'static str,
        /// Requested number of dims.
        n: usize,
        /// Batch shape of the base.
        batch: Vec<usize>,
    },
    /// A mask whose shape does not broadcast with the batch shape.
    #[error("{dist}: mask of shape {mask:?} does not broadcast with batch shape {batch:?}")]
    MaskShape {
        /// Distribution name.
        dist: &'static str,
        /// Shape of the mask.
        mask: Vec<usize>,
        /// Batch shape of the distribution.
        batch: Vec<usize>,
    },
    /// An op given input it cannot handle (a matrix that is not positive definite, a shape that
    /// is not square, a dtype the op has no kernel for).
    #[error("{op}: {msg}")]
    Op {
        /// Op name, e.g. "cholesky".
        op: &'static str,
        /// What was wrong, with the shapes involved.
        msg: String,
    },
    /// A value outside the domain of a transform (e.g. `inverse` of a non-positive number
    /// for the exp transform).
    #[error("transform {transform}: {msg}")]
    Transform {
        /// Transform name.
        transform: &'static str,
        /// What was wrong.
        msg: String,
    },
    /// A sample shape, dtype or other argument that the call cannot accept.
    #[error("{dist}: {msg}")]
    Invalid {
        /// Distribution (or function) name.
        dist: &'static str,
        /// What was wrong.
        msg: String,
    },
    /// An error from candle itself.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An error from a constructor (or `expand`, `to_event`, `mask`), with the source location
    /// of the call: `"<error> (at src/model.rs:12:9)"`. Match on [`DistError::kind`] to see
    /// the error inside.
    #[error("{error} (at {location})")]
    At {
        /// Where the constructor was called (its `#[track_caller]` location).
        location: &'static Location<'static>,
        /// The error itself (never another `At`).
        error: Box<DistError>,
    },
}

/// The first element of a parameter or value outside its support, as
/// [`DistError::ParamSupport`] and [`DistError::ValueSupport`] report it; displayed as
/// `NaN at [1]` (or the value alone for a scalar).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{DistError, Normal};
/// let scale = Tensor::new(&[1.0f64, f64::NAN, -1.0], &Device::Cpu)?;
/// let loc = scale.zeros_like()?;
/// match Normal::new(&loc, &scale).unwrap_err().into_kind() {
///     DistError::ParamSupport { found, .. } => {
///         assert_eq!((found.value.as_str(), &found.index[..]), ("NaN", &[1][..]));
///         assert_eq!(found.to_string(), "NaN at [1]");
///     }
///     other => panic!("{other}"),
/// }
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadValue {
    /// What the element is: `"NaN"`, `"inf"`, `"-inf"` or the number (`"-0.5"`); for a
    /// constraint on whole events (simplex, one-hot, matrices) the event's values when short
    /// (`"[1.5, -0.5]"`), else a description.
    pub value: String,
    /// Its index, row-major (of the element, or of the event for constraints on whole
    /// events); empty for a scalar.
    pub index: Vec<usize>,
}

impl std::fmt::Display for BadValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.index.is_empty() {
            write!(f, "{}", self.value)
        } else {
            write!(f, "{} at {:?}", self.value, self.index)
        }
    }
}

impl DistError {
    /// The error itself, seen through the [`DistError::At`] wrapper a constructor puts
    /// around it: match on this.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::{DistError, Exponential};
    /// let err = Exponential::new(&Tensor::new(&[1.0f64, -2.0], &Device::Cpu)?).unwrap_err();
    /// assert!(matches!(err, DistError::At { .. }));
    /// assert!(matches!(err.kind(), DistError::ParamSupport { param: "rate", .. }));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn kind(&self) -> &DistError {
        match self {
            DistError::At { error, .. } => error.kind(),
            other => other,
        }
    }

    /// The error itself by value, without the [`DistError::At`] wrapper.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::{DistError, Poisson};
    /// let err = Poisson::new(&Tensor::new(&[f64::NAN], &Device::Cpu)?).unwrap_err();
    /// match err.into_kind() {
    ///     DistError::ParamSupport { found, .. } => assert_eq!(found.to_string(), "NaN at [0]"),
    ///     other => panic!("{other}"),
    /// }
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn into_kind(self) -> DistError {
        match self {
            DistError::At { error, .. } => error.into_kind(),
            other => other,
        }
    }

    /// The source location of the constructor call that failed, where there is one.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::{Distribution, Normal};
    /// let cpu = Device::Cpu;
    /// let d = Normal::new(&Tensor::zeros(3, candle_core::DType::F64, &cpu)?, &Tensor::new(1.0f64, &cpu)?)?;
    /// let err = d.expand(&[2]).unwrap_err();
    /// assert_eq!(err.location().map(|l| l.line()), Some(line!() - 1));
    /// // log_prob is not a constructor: its errors carry no location
    /// let err = d.log_prob(&Tensor::zeros(2, candle_core::DType::F64, &cpu)?).unwrap_err();
    /// assert!(err.location().is_none());
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn location(&self) -> Option<&'static Location<'static>> {
        match self {
            DistError::At { location, .. } => Some(location),
            _ => None,
        }
    }

    /// This error with `location` attached (replacing any location it had: the outermost
    /// call, nearest the user's code, is the one to report). For constructors of
    /// distributions written outside this crate: take `std::panic::Location::caller()` in a
    /// `#[track_caller]` constructor and attach it to the errors it returns.
    ///
    /// ```
    /// use std::panic::Location;
    /// use vi_dist::DistError;
    /// #[track_caller]
    /// fn build() -> vi_dist::Result<()> {
    ///     let at = Location::caller();
    ///     Err(DistError::Invalid { dist: "Mine", msg: "no".into() }).map_err(|e| e.at(at))
    /// }
    /// let err = build().unwrap_err();
    /// assert_eq!(err.location().map(|l| l.line()), Some(line!() - 1));
    /// assert!(err.to_string().starts_with("Mine: no (at "));
    /// ```
    pub fn at(self, location: &'static Location<'static>) -> Self {
        DistError::At {
            location,
            error: Box::new(self.into_kind()),
        }
    }

    /// An op error with `context` (the distribution and parameter it was computing) put in
    /// front of its message; other errors pass through unchanged.
    pub(crate) fn in_context(self, context: &str) -> Self {
        if let DistError::At { location, error } = self {
            return error.in_context(context).at(location);
        }
        match self {
            DistError::Op { op, msg } => DistError::Op {
                op,
                msg: format!("{context}: {msg}"),
            },
            other => other,
        }
    }
}

/// Run a constructor's body `f`, attaching the caller's source location to its error: call it
/// from a `#[track_caller]` function (the location is that function's caller).
#[track_caller]
pub(crate) fn located<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    let at = Location::caller();
    f().map_err(|e| e.at(at))
}

/// `Result` with [`DistError`].
///
/// ```
/// fn rate_of(d: &vi_dist::Exponential) -> vi_dist::Result<f64> {
///     Ok(d.rate().to_scalar::<f64>()?)
/// }
/// let d = vi_dist::Exponential::new(&candle_core::Tensor::new(2.0f64, &candle_core::Device::Cpu)?)?;
/// assert_eq!(rate_of(&d)?, 2.0);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub type Result<T> = std::result::Result<T, DistError>;

/// "f32 on cpu" style description used in [`DistError::ParamKind`].
pub(crate) fn kind_of(dtype: DType, device: &Device) -> String {
    format!("{dtype:?} on {}", device_name(device))
}

/// A short device name for messages.
pub(crate) fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}
