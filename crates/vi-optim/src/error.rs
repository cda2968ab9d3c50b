//! The one error type of `vi-optim`.

use candle_core::DType;

use crate::lr_transform::LrTransform;

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
    /// The learning rate a step would use is NaN, infinite or negative: the configured rate
    /// through a map set from outside ([`set_learning_rate`](crate::Optimizer::set_learning_rate),
    /// [`set_lr_transform`](crate::Optimizer::set_lr_transform), a loaded state) or by a
    /// schedule (a user's [`LrSchedule`](crate::LrSchedule) that goes below zero, an
    /// [`ExponentialLr`](crate::ExponentialLr) whose rate overflows), or, for
    /// [`ClippedAdam`](crate::ClippedAdam), after its `lrd` decay. The step that finds it
    /// moves no parameter and changes no state.
    ///
    /// ```
    /// use candle_core::{Device, Var};
    /// use vi_optim::{Adam, AdamOptions, OptimError, Optimizer};
    ///
    /// let w = Var::new(&[1.0f64], &Device::Cpu)?;
    /// let mut opt = Adam::new([("w", w.clone())], AdamOptions::default())?;
    /// opt.set_learning_rate(-0.1);
    /// let err = opt.step(&w.as_tensor().sqr()?.sum_all()?.backward()?).unwrap_err();
    /// assert!(matches!(err, OptimError::InvalidLearningRate { value: -0.1, scheduler: None, .. }));
    /// assert_eq!(w.as_tensor().to_vec1::<f64>()?, [1.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[error("{optimizer}: parameter `{param}` would step with learning rate {value}{by}: \
        expected a finite rate ≥ 0 (the configured lr {base} through the map \
        lr ↦ max({} · lr + {}, {}){decay}); no parameter was updated",
        transform.scale, transform.shift, transform.floor,
        by = scheduler.map(|s| format!(", set by the scheduler {s}")).unwrap_or_default(),
        decay = if *lr_decay { " and the lrd decay" } else { "" })]
    InvalidLearningRate {
        /// Optimizer name.
        optimizer: &'static str,
        /// The first parameter found with this rate.
        param: String,
        /// The rate the step would have used.
        value: f64,
        /// The parameter's configured learning rate.
        base: f64,
        /// The learning-rate map in force.
        transform: LrTransform,
        /// Whether `value` includes [`ClippedAdam`](crate::ClippedAdam)'s `lrd` decay.
        lr_decay: bool,
        /// The schedule that set the map ([`LrSchedule::name`](crate::LrSchedule::name)),
        /// when a [`Scheduler`](crate::Scheduler) set it; `None` when the map was set from
        /// outside.
        scheduler: Option<&'static str>,
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

/// The checks of one set of options: who owns them (optimizer or scheduler) and, for
/// per-parameter options, which parameter they belong to. Each check gives an
/// [`OptimError::InvalidOption`] naming both and the option.
pub(crate) struct Check<'a> {
    owner: &'static str,
    param: Option<&'a str>,
}

impl<'a> Check<'a> {
    pub(crate) fn new(owner: &'static str, param: Option<&'a str>) -> Self {
        Check { owner, param }
    }

    /// `value` satisfies `ok`, described by `expected`.
    pub(crate) fn holds(
        &self,
        option: &'static str,
        value: f64,
        ok: bool,
        expected: &'static str,
    ) -> Result<()> {
        if ok {
            return Ok(());
        }
        Err(OptimError::InvalidOption {
            optimizer: self.owner,
            param: self.param.map(str::to_string),
            option,
            value,
            expected,
        })
    }

    /// A finite value ≥ 0.
    pub(crate) fn non_negative(&self, option: &'static str, value: f64) -> Result<()> {
        let ok = value >= 0.0 && value.is_finite();
        self.holds(option, value, ok, "a finite value ≥ 0")
    }

    /// A finite value > 0.
    pub(crate) fn positive(&self, option: &'static str, value: f64) -> Result<()> {
        let ok = value > 0.0 && value.is_finite();
        self.holds(option, value, ok, "a finite value > 0")
    }

    /// A value in `[0, 1)`.
    pub(crate) fn below_one(&self, option: &'static str, value: f64) -> Result<()> {
        let ok = (0.0..1.0).contains(&value);
        self.holds(option, value, ok, "a value in [0, 1)")
    }

    /// A count ≥ 1.
    pub(crate) fn at_least_one(&self, option: &'static str, value: u64) -> Result<()> {
        self.holds(option, value as f64, value >= 1, "a count ≥ 1")
    }
}
