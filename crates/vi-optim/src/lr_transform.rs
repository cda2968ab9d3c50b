//! [`LrTransform`]: the learning-rate map that schedulers set.

/// The map from a parameter's configured learning rate to the one a step uses:
/// `lr = max(scale · base + shift, floor)` where `scale · base + shift ≥ 0`.
///
/// The floor is a lower bound for a rate that is decaying (`min_lr`), not a clamp: a map
/// whose `scale · base + shift` is negative or NaN gives that value unchanged, and the
/// optimizer's step refuses it ([`OptimError::InvalidLearningRate`](crate::OptimError)),
/// so a schedule gone below zero stops training with an error instead of freezing it at a
/// rate of 0.
///
/// Schedulers never overwrite a parameter's configured learning rate; they set this map, which
/// is the closed form of every torch scheduler applied per parameter group (`StepLR`,
/// `ExponentialLR`: a scale; `CosineAnnealingLR`: scale and shift; `ReduceLROnPlateau`: a
/// scale and the `min_lr` floor). A parameter first seen later follows the map of the
/// current epoch from its own configured rate (Pyro instead builds a fresh scheduler per
/// parameter, so there a late parameter starts at epoch 0).
///
/// ```
/// use vi_optim::LrTransform;
///
/// assert_eq!(LrTransform::IDENTITY.apply(0.1), 0.1);
/// assert_eq!(LrTransform::constant(0.5).apply(0.1), 0.5);
/// assert_eq!(LrTransform::scaled(0.5).apply(0.1), 0.05);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrTransform {
    /// Multiplies the configured learning rate.
    pub scale: f64,
    /// Added after scaling.
    pub shift: f64,
    /// Lower bound of the result.
    pub floor: f64,
}

impl LrTransform {
    /// The configured learning rate, unchanged.
    ///
    /// ```
    /// assert_eq!(vi_optim::LrTransform::IDENTITY.apply(0.25), 0.25);
    /// ```
    pub const IDENTITY: LrTransform = LrTransform {
        scale: 1.0,
        shift: 0.0,
        floor: 0.0,
    };

    /// Every parameter at learning rate `lr` (what `candle_nn::Optimizer::set_learning_rate`
    /// means).
    ///
    /// ```
    /// assert_eq!(vi_optim::LrTransform::constant(0.2).apply(3.0), 0.2);
    /// ```
    pub fn constant(lr: f64) -> Self {
        LrTransform {
            scale: 0.0,
            shift: lr,
            floor: 0.0,
        }
    }

    /// The configured learning rate times `factor`.
    ///
    /// ```
    /// assert_eq!(vi_optim::LrTransform::scaled(0.1).apply(2.0), 0.2);
    /// ```
    pub fn scaled(factor: f64) -> Self {
        LrTransform {
            scale: factor,
            ..Self::IDENTITY
        }
    }

    /// The learning rate for a parameter configured with `base`. A negative or NaN value of
    /// `scale · base + shift` is returned as it is (the step then reports it as an
    /// [`InvalidLearningRate`](crate::OptimError::InvalidLearningRate)), where `f64::max`
    /// would turn it into the floor and silently stop training.
    ///
    /// ```
    /// use vi_optim::LrTransform;
    /// let t = LrTransform { scale: 0.5, shift: 0.01, floor: 0.1 };
    /// assert_eq!(t.apply(1.0), 0.51);
    /// assert_eq!(t.apply(0.1), 0.1); // 0.06, lifted to the floor
    /// let below_zero = LrTransform { scale: -1.0, shift: 0.0, floor: 0.1 };
    /// assert_eq!(below_zero.apply(0.5), -0.5); // not lifted: the step refuses it
    /// assert!(LrTransform::constant(f64::NAN).apply(1.0).is_nan());
    /// ```
    pub fn apply(&self, base: f64) -> f64 {
        let lr = self.scale * base + self.shift;
        if lr >= 0.0 && lr < self.floor {
            self.floor
        } else {
            lr
        }
    }

    pub(crate) fn to_array(self) -> [f64; 3] {
        [self.scale, self.shift, self.floor]
    }

    pub(crate) fn from_array(a: [f64; 3]) -> Self {
        LrTransform {
            scale: a[0],
            shift: a[1],
            floor: a[2],
        }
    }
}

impl Default for LrTransform {
    fn default() -> Self {
        Self::IDENTITY
    }
}
