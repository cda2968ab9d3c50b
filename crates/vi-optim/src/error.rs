//! The one error type of `vi-optim`.

use candle_core::DType;

/// Everything that can go wrong when building, stepping, saving or restoring an optimizer.
///
/// Each variant names the optimizer and, where one is involved, the parameter, so the message
/// points at the user's line rather than at a candle kernel.
///
/// ```
/// use vi_optim::{Adam, AdamOptions, OptimError};
///
/// let bad = AdamOptions { lr: -1.0, ..AdamOptions::default() };
/// let err = Adam::empty(bad).unwrap_err();
/// assert!(matches!(err, OptimError::InvalidOption { option: "lr", .. }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OptimError {
    /// An option is outside its valid range (negative learning rate, a beta outside [0, 1),
    /// eps ≤ 0, …).
    #[error("{optimizer}: option `{option}` = {value} {param_clause}is invalid: expected {expected}",
        param_clause = param.as_ref().map(|p| format!("for parameter `{p}` ")).unwrap_or_default())]
    InvalidOption {
        /// Optimizer or scheduler name.
        optimizer: &'static str,
        /// The parameter whose options these are (`None` for the default options).
        param: Option<String>,
        /// Option name, as torch/Pyro spell it.
        option: &'static str,
        /// The value given.
        value: f64,
        /// The valid range, in words.
        expected: &'static str,
    },
    /// Two options that cannot be combined (torch's SGD: nesterov needs momentum > 0 and no
    /// dampening).
    #[error("{optimizer}: {message}")]
    IncompatibleOptions {
        /// Optimizer name.
        optimizer: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A gradient's shape differs from its parameter's.
    #[error("{optimizer}: gradient of `{param}` has shape {found:?}, expected {expected:?}")]
    GradShape {
        /// Optimizer name.
        optimizer: &'static str,
        /// Parameter name.
        param: String,
        /// The parameter's shape.
        expected: Vec<usize>,
        /// The gradient's shape.
        found: Vec<usize>,
    },
    /// A gradient's dtype differs from its parameter's.
    #[error("{optimizer}: gradient of `{param}` is {found:?}, expected {expected:?}")]
    GradDType {
        /// Optimizer name.
        optimizer: &'static str,
        /// Parameter name.
        param: String,
        /// The parameter's dtype.
        expected: DType,
        /// The gradient's dtype.
        found: DType,
    },
    /// The same parameter name was given twice.
    #[error("{optimizer}: parameter `{param}` is already registered")]
    DuplicateParam {
        /// Optimizer name.
        optimizer: &'static str,
        /// Parameter name.
        param: String,
    },
    /// One `Var` under two names: it would be stepped twice per call, with two states.
    #[error("{optimizer}: parameter `{param}` is the same Var as `{other}`")]
    SharedParam {
        /// Optimizer name.
        optimizer: &'static str,
        /// The second name given to the Var.
        param: String,
        /// The first name given to it.
        other: String,
    },
    /// A gradient lives on another device than its parameter.
    #[error("{optimizer}: gradient of `{param}` is on {found:?}, the parameter on {expected:?}")]
    GradDevice {
        /// Optimizer name.
        optimizer: &'static str,
        /// Parameter name.
        param: String,
        /// The parameter's device.
        expected: candle_core::DeviceLocation,
        /// The gradient's device.
        found: candle_core::DeviceLocation,
    },
    /// A state entry does not fit its parameter or optimizer (wrong shape, a missing or
    /// unknown buffer, a key this optimizer does not write).
    #[error("{optimizer}: state `{key}`: {message}")]
    State {
        /// Optimizer or scheduler name.
        optimizer: &'static str,
        /// The state-dict key involved.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// `ReduceLrOnPlateau` was advanced without the metric it watches.
    #[error("{scheduler}: advance needs the metric (use `advance_with`)")]
    MissingMetric {
        /// Scheduler name.
        scheduler: &'static str,
    },
    /// An error from candle (device, dtype, I/O of safetensors files).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` with [`OptimError`].
///
/// ```
/// fn lr() -> vi_optim::Result<f64> {
///     Ok(1e-3)
/// }
/// assert_eq!(lr().unwrap(), 1e-3);
/// ```
pub type Result<T> = std::result::Result<T, OptimError>;

/// So `?` works in functions returning candle's `Result` (as `candle_nn::Optimizer` does):
/// candle errors come back unchanged, ours wrapped.
impl From<OptimError> for candle_core::Error {
    fn from(e: OptimError) -> Self {
        match e {
            OptimError::Candle(e) => e,
            other => candle_core::Error::wrap(other),
        }
    }
}

/// Check that `value` satisfies `ok`, else an [`OptimError::InvalidOption`].
pub(crate) fn check(
    optimizer: &'static str,
    param: Option<&str>,
    option: &'static str,
    value: f64,
    ok: bool,
    expected: &'static str,
) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(OptimError::InvalidOption {
            optimizer,
            param: param.map(str::to_string),
            option,
            value,
            expected,
        })
    }
}
