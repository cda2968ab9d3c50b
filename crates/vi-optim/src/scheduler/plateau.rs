//! torch's `ReduceLROnPlateau`.

use crate::error::{Check, OptimError, Result};
use crate::lr_transform::LrTransform;
use crate::state::{StateDict, count_tensor, f64_tensor, scalar_count, scalar_f64};

use super::{LrSchedule, epoch_state, get, load_epoch};

/// Whether [`ReduceLrOnPlateau`]'s metric should fall (a loss) or rise (an accuracy).
///
/// ```
/// use vi_optim::{PlateauMode, PlateauOptions};
/// let accuracy = PlateauOptions { mode: PlateauMode::Max, ..Default::default() };
/// assert_eq!(PlateauOptions::default().mode, PlateauMode::Min);
/// # let _ = accuracy;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PlateauMode {
    /// Lower is better (torch's `mode="min"`).
    Min,
    /// Higher is better (`mode="max"`).
    Max,
}

/// How [`ReduceLrOnPlateau`] measures a significant improvement.
///
/// ```
/// use vi_optim::{PlateauOptions, ThresholdMode};
/// let absolute = PlateauOptions { threshold_mode: ThresholdMode::Abs, threshold: 0.01, ..Default::default() };
/// assert_eq!(PlateauOptions::default().threshold_mode, ThresholdMode::Rel);
/// # let _ = absolute;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ThresholdMode {
    /// Better than `best · (1 ∓ threshold)` (torch's `threshold_mode="rel"`).
    Rel,
    /// Better than `best ∓ threshold` (`"abs"`).
    Abs,
}

/// Options of [`ReduceLrOnPlateau`], with torch's names and defaults.
///
/// ```
/// let o = vi_optim::PlateauOptions::default();
/// assert_eq!((o.factor, o.patience, o.threshold), (0.1, 10, 1e-4));
/// ```
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PlateauOptions {
    /// Whether the metric should fall or rise.
    pub mode: PlateauMode,
    /// Each reduction multiplies the learning rate by `factor` (in `[0, 1)`).
    pub factor: f64,
    /// Epochs without improvement tolerated before a reduction.
    pub patience: u64,
    /// Size of a significant improvement.
    pub threshold: f64,
    /// Relative or absolute threshold.
    pub threshold_mode: ThresholdMode,
    /// Epochs to wait after a reduction before counting bad epochs again.
    pub cooldown: u64,
    /// Lower bound of every learning rate.
    pub min_lr: f64,
    /// A reduction smaller than `eps` (on the largest learning rate) is skipped.
    pub eps: f64,
}

impl Default for PlateauOptions {
    fn default() -> Self {
        PlateauOptions {
            mode: PlateauMode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: 0.0,
            eps: 1e-8,
        }
    }
}

/// torch's `ReduceLROnPlateau`: multiply the learning rates by `factor` (down to `min_lr`)
/// when the watched metric has not improved for more than `patience` epochs.
///
/// After `k` reductions a parameter configured with `base` steps with
/// `max(base · factorᵏ, min_lr)`, the closed form of torch's repeated
/// `max(lr · factor, min_lr)` per parameter group. torch skips a group's reduction when it
/// would change that group's rate by `eps` or less; one schedule serves every parameter
/// here, so a reduction is made while the largest rate
/// ([`Optimizer::max_learning_rate`](crate::Optimizer::max_learning_rate)) can still fall by
/// more than `eps`: a parameter with a larger rate keeps being reduced after the default one
/// has reached `min_lr`, as in its own torch group. (Rates within `eps` of zero may differ
/// from torch's per-group cut-off.)
///
/// ```
/// use vi_optim::{LrSchedule, PlateauOptions, ReduceLrOnPlateau};
///
/// let mut s = ReduceLrOnPlateau::new(PlateauOptions { patience: 1, ..Default::default() })?;
/// for loss in [3.0, 2.0, 2.0, 2.0] {
///     s.advance(Some(loss), s.transform().apply(1.0))?;
/// }
/// assert!((s.transform().apply(1.0) - 0.1).abs() < 1e-15);
/// assert_eq!(s.num_reductions(), 1);
/// # Ok::<(), vi_optim::OptimError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ReduceLrOnPlateau {
    options: PlateauOptions,
    best: f64,
    num_bad_epochs: u64,
    cooldown_counter: u64,
    reductions: u64,
    scale: f64,
    epoch: u64,
}

impl ReduceLrOnPlateau {
    /// A plateau schedule; `factor` in `[0, 1)`, `threshold ≥ 0`, `min_lr ≥ 0`, `eps ≥ 0`.
    ///
    /// ```
    /// use vi_optim::{PlateauOptions, ReduceLrOnPlateau};
    /// assert!(ReduceLrOnPlateau::new(PlateauOptions { factor: 1.5, ..Default::default() }).is_err());
    /// ```
    pub fn new(options: PlateauOptions) -> Result<Self> {
        let (check, o) = (Check::new("ReduceLROnPlateau", None), &options);
        check.below_one("factor", o.factor)?;
        check.non_negative("threshold", o.threshold)?;
        check.non_negative("min_lr", o.min_lr)?;
        check.non_negative("eps", o.eps)?;
        let best = match o.mode {
            PlateauMode::Min => f64::INFINITY,
            PlateauMode::Max => f64::NEG_INFINITY,
        };
        Ok(ReduceLrOnPlateau {
            options,
            best,
            num_bad_epochs: 0,
            cooldown_counter: 0,
            reductions: 0,
            scale: 1.0,
            epoch: 0,
        })
    }

    /// How many times the learning rates have been reduced.
    ///
    /// ```
    /// use vi_optim::{PlateauOptions, ReduceLrOnPlateau};
    /// assert_eq!(ReduceLrOnPlateau::new(PlateauOptions::default())?.num_reductions(), 0);
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    pub fn num_reductions(&self) -> u64 {
        self.reductions
    }

    /// The best metric seen so far.
    ///
    /// ```
    /// use vi_optim::{PlateauOptions, ReduceLrOnPlateau};
    /// assert_eq!(ReduceLrOnPlateau::new(PlateauOptions::default())?.best(), f64::INFINITY);
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    pub fn best(&self) -> f64 {
        self.best
    }

    fn is_better(&self, a: f64) -> bool {
        let (o, best) = (&self.options, self.best);
        match (o.mode, o.threshold_mode) {
            (PlateauMode::Min, ThresholdMode::Rel) => a < best * (1.0 - o.threshold),
            (PlateauMode::Min, ThresholdMode::Abs) => a < best - o.threshold,
            (PlateauMode::Max, ThresholdMode::Rel) => a > best * (1.0 + o.threshold),
            (PlateauMode::Max, ThresholdMode::Abs) => a > best + o.threshold,
        }
    }
}

const BEST: &str = "scheduler.best";
const NUM_BAD: &str = "scheduler.num_bad_epochs";
const COOLDOWN: &str = "scheduler.cooldown_counter";
const REDUCTIONS: &str = "scheduler.num_reductions";
const SCALE: &str = "scheduler.scale";

impl LrSchedule for ReduceLrOnPlateau {
    fn name(&self) -> &'static str {
        "ReduceLROnPlateau"
    }

    fn transform(&self) -> LrTransform {
        LrTransform {
            scale: self.scale,
            shift: 0.0,
            floor: self.options.min_lr,
        }
    }

    fn advance(&mut self, metric: Option<f64>, current_lr: f64) -> Result<()> {
        let Some(metric) = metric else {
            return Err(OptimError::MissingMetric {
                scheduler: self.name(),
            });
        };
        self.epoch += 1;
        if self.is_better(metric) {
            self.best = metric;
            self.num_bad_epochs = 0;
        } else {
            self.num_bad_epochs += 1;
        }
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.num_bad_epochs = 0;
        }
        if self.num_bad_epochs > self.options.patience {
            // torch skips a reduction smaller than eps per group; we judge it on the largest
            // rate, so no parameter that torch would still reduce is held back.
            let new_lr = (current_lr * self.options.factor).max(self.options.min_lr);
            if current_lr - new_lr > self.options.eps {
                self.scale *= self.options.factor;
                self.reductions += 1;
            }
            self.cooldown_counter = self.options.cooldown;
            self.num_bad_epochs = 0;
        }
        Ok(())
    }

    fn state_dict(&self) -> Result<StateDict> {
        let mut s = epoch_state(self.epoch)?;
        s.insert(BEST, f64_tensor(self.best)?);
        s.insert(NUM_BAD, count_tensor(self.num_bad_epochs)?);
        s.insert(COOLDOWN, count_tensor(self.cooldown_counter)?);
        s.insert(REDUCTIONS, count_tensor(self.reductions)?);
        s.insert(SCALE, f64_tensor(self.scale)?);
        Ok(s)
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        let name = self.name();
        let epoch = load_epoch(name, state)?;
        let best = scalar_f64(name, BEST, get(name, state, BEST)?)?;
        let num_bad = scalar_count(name, NUM_BAD, get(name, state, NUM_BAD)?)?;
        let cooldown = scalar_count(name, COOLDOWN, get(name, state, COOLDOWN)?)?;
        let reductions = scalar_count(name, REDUCTIONS, get(name, state, REDUCTIONS)?)?;
        let scale = scalar_f64(name, SCALE, get(name, state, SCALE)?)?;
        (self.epoch, self.best, self.num_bad_epochs) = (epoch, best, num_bad);
        (self.cooldown_counter, self.reductions, self.scale) = (cooldown, reductions, scale);
        Ok(())
    }
}
