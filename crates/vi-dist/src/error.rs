//! The one error type of `vi-dist`.

use candle_core::{DType, Device};

/// Everything that can go wrong when building or using a distribution.
///
/// Each variant names the distribution (or op), the parameter and the shapes involved, so the
/// message points at the user's line rather than at a candle kernel.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use vi_dist::{DistError, Normal};
/// let loc = Tensor::zeros(2, DType::F64, &Device::Cpu)?;
/// let scale = Tensor::ones(3, DType::F64, &Device::Cpu)?;
/// let err = Normal::new(&loc, &scale).unwrap_err();
/// assert!(matches!(err, DistError::Broadcast { dist: "Normal", .. }));
/// assert_eq!(err.to_string(), "Normal: parameter shapes do not broadcast: loc [2], scale [3]");
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
    /// A parameter lies outside its support (validation on).
    #[error("{dist}: parameter `{param}` (shape {shape:?}) is outside its support {constraint}")]
    ParamSupport {
        /// Distribution name.
        dist: &'static str,
        /// Parameter name.
        param: &'static str,
        /// The constraint that failed, e.g. "positive".
        constraint: String,
        /// The parameter's shape.
        shape: Vec<usize>,
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
    /// A value passed to `log_prob` is outside the support (validation on).
    #[error("{dist}: value of shape {shape:?} is outside the support {constraint}")]
    ValueSupport {
        /// Distribution name.
        dist: &'static str,
        /// The support, e.g. "interval(0, 1)".
        constraint: String,
        /// Shape of the value.
        shape: Vec<usize>,
    },
    /// `rsample` on a family without a reparameterised sampler.
    #[error("{dist}: has no reparameterised sampler; use `sample` (no gradient)")]
    NoRsample {
        /// Distribution name.
        dist: &'static str,
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
}

impl DistError {
    /// An op error with `context` (the distribution and parameter it was computing) put in
    /// front of its message; other errors pass through unchanged.
    pub(crate) fn in_context(self, context: &str) -> Self {
        match self {
            DistError::Op { op, msg } => DistError::Op {
                op,
                msg: format!("{context}: {msg}"),
            },
            other => other,
        }
    }
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
