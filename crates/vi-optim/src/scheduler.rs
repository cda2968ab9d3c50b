//! Learning-rate schedulers that wrap any [`Optimizer`]: [`StepLr`], [`ExponentialLr`],
//! [`CosineAnnealingLr`] and [`ReduceLrOnPlateau`], as torch's `lr_scheduler` (and Pyro's
//! `pyro.optim.*LR` wrappers of them).
//!
//! A [`Scheduler`] owns the optimizer and is an optimizer itself, so it goes wherever one
//! goes. Each epoch (whatever the caller counts as one) ends with
//! [`Scheduler::advance`], torch's `scheduler.step()`, or [`Scheduler::advance_with`]
//! for the plateau schedule, which watches a metric. The schedule sets the optimizer's
//! [`LrTransform`], so every parameter follows it from its own configured learning rate,
//! including parameters first seen later.

use std::f64::consts::PI;

use candle_core::Var;
use candle_core::backprop::GradStore;

use crate::error::{OptimError, Result, check};
use crate::optimizer::{LrTransform, Optimizer};
use crate::state::{StateDict, count_tensor, f64_tensor, scalar_count, scalar_f64};

/// How the learning rate evolves over epochs: the part of a [`Scheduler`] that is not the
/// optimizer.
///
/// ```
/// use vi_optim::{ExponentialLr, LrSchedule};
///
/// let mut s = ExponentialLr::new(0.5)?;
/// s.advance(None, 1.0)?;
/// assert_eq!(s.transform().apply(0.1), 0.05);
/// # Ok::<(), vi_optim::OptimError>(())
/// ```
pub trait LrSchedule {
    /// The schedule's name (`"StepLR"`, …).
    fn name(&self) -> &'static str;

    /// The learning-rate map at the current epoch.
    fn transform(&self) -> LrTransform;

    /// Moves to the next epoch. `metric` is the watched quantity (required by
    /// [`ReduceLrOnPlateau`], ignored by the others); `current_lr` is the optimizer's current
    /// default learning rate.
    fn advance(&mut self, metric: Option<f64>, current_lr: f64) -> Result<()>;

    /// The schedule's counters, under `scheduler.*` keys.
    fn state_dict(&self) -> Result<StateDict>;

    /// Restores counters written by [`state_dict`](LrSchedule::state_dict).
    fn load_state_dict(&mut self, state: &StateDict) -> Result<()>;
}

/// An optimizer whose learning rate follows a [`LrSchedule`].
///
/// ```
/// use candle_core::{Device, Var};
/// use vi_optim::{Adam, AdamOptions, Optimizer, Scheduler, StepLr};
///
/// let x = Var::new(&[1.0f64], &Device::Cpu)?;
/// let adam = Adam::new([("x", x.clone())], AdamOptions { lr: 0.1, ..Default::default() })?;
/// let mut opt = Scheduler::new(adam, StepLr::new(2, 0.5)?);
/// for _epoch in 0..4 {
///     opt.step(&x.as_tensor().sqr()?.sum_all()?.backward()?)?;
///     opt.advance()?;
/// }
/// assert_eq!(opt.learning_rate(), 0.025);
/// # Ok::<(), vi_optim::OptimError>(())
/// ```
#[derive(Debug)]
pub struct Scheduler<O, S> {
    optimizer: O,
    schedule: S,
}

impl<O: Optimizer, S: LrSchedule> Scheduler<O, S> {
    /// Wraps `optimizer`, setting its learning rates to the schedule's first epoch (torch's
    /// scheduler constructor does the same).
    ///
    /// ```
    /// use vi_optim::{Adam, AdamOptions, ExponentialLr, Optimizer, Scheduler};
    ///
    /// let opt = Scheduler::new(Adam::empty(AdamOptions::default())?, ExponentialLr::new(0.9)?);
    /// assert_eq!(opt.learning_rate(), 1e-3);
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    pub fn new(mut optimizer: O, schedule: S) -> Self {
        optimizer.set_lr_transform(schedule.transform());
        Scheduler {
            optimizer,
            schedule,
        }
    }

    /// Ends an epoch: torch's `scheduler.step()`. An error for [`ReduceLrOnPlateau`], which
    /// needs [`advance_with`](Scheduler::advance_with).
    ///
    /// ```
    /// use vi_optim::{Adam, AdamOptions, ExponentialLr, Optimizer, Scheduler};
    ///
    /// let adam = Adam::empty(AdamOptions { lr: 1.0, ..Default::default() })?;
    /// let mut opt = Scheduler::new(adam, ExponentialLr::new(0.5)?);
    /// opt.advance()?;
    /// assert_eq!(opt.learning_rate(), 0.5);
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    pub fn advance(&mut self) -> Result<()> {
        self.advance_inner(None)
    }

    /// Ends an epoch with the watched metric (the loss, for a `Min` plateau): torch's
    /// `scheduler.step(metric)`.
    ///
    /// ```
    /// use vi_optim::{Adam, AdamOptions, Optimizer, PlateauOptions, ReduceLrOnPlateau, Scheduler};
    ///
    /// let adam = Adam::empty(AdamOptions { lr: 1.0, ..Default::default() })?;
    /// let plateau = ReduceLrOnPlateau::new(PlateauOptions { patience: 0, ..Default::default() })?;
    /// let mut opt = Scheduler::new(adam, plateau);
    /// opt.advance_with(1.0)?; // an improvement on +inf
    /// opt.advance_with(1.0)?; // no improvement, patience 0: reduce
    /// assert!((opt.learning_rate() - 0.1).abs() < 1e-15);
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    pub fn advance_with(&mut self, metric: f64) -> Result<()> {
        self.advance_inner(Some(metric))
    }

    fn advance_inner(&mut self, metric: Option<f64>) -> Result<()> {
        self.schedule
            .advance(metric, self.optimizer.learning_rate())?;
        self.optimizer.set_lr_transform(self.schedule.transform());
        Ok(())
    }

    /// The wrapped optimizer.
    ///
    /// ```
    /// use vi_optim::{Adam, AdamOptions, ExponentialLr, Scheduler};
    ///
    /// let opt = Scheduler::new(Adam::empty(AdamOptions::default())?, ExponentialLr::new(0.9)?);
    /// assert_eq!(opt.optimizer().options().lr, 1e-3);
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    pub fn optimizer(&self) -> &O {
        &self.optimizer
    }

    /// The wrapped optimizer, mutably.
    ///
    /// ```
    /// use vi_optim::{Adam, AdamOptions, ExponentialLr, Scheduler};
    ///
    /// let mut opt = Scheduler::new(Adam::empty(AdamOptions::default())?, ExponentialLr::new(0.9)?);
    /// opt.optimizer_mut().set_cpu_fast_path(false);
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    pub fn optimizer_mut(&mut self) -> &mut O {
        &mut self.optimizer
    }

    /// The schedule.
    ///
    /// ```
    /// use vi_optim::{Adam, AdamOptions, ExponentialLr, LrSchedule, Scheduler};
    ///
    /// let opt = Scheduler::new(Adam::empty(AdamOptions::default())?, ExponentialLr::new(0.9)?);
    /// assert_eq!(opt.schedule().name(), "ExponentialLR");
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    pub fn schedule(&self) -> &S {
        &self.schedule
    }

    /// The optimizer and the schedule, unwrapped.
    ///
    /// ```
    /// use vi_optim::{Adam, AdamOptions, ExponentialLr, Scheduler};
    ///
    /// let opt = Scheduler::new(Adam::empty(AdamOptions::default())?, ExponentialLr::new(0.9)?);
    /// let (adam, _schedule) = opt.into_parts();
    /// # Ok::<(), vi_optim::OptimError>(())
    /// ```
    pub fn into_parts(self) -> (O, S) {
        (self.optimizer, self.schedule)
    }
}

impl<O: Optimizer, S: LrSchedule> Optimizer for Scheduler<O, S> {
    fn name(&self) -> &'static str {
        self.optimizer.name()
    }
    fn step_params(&mut self, params: &[(&str, &Var)], grads: &GradStore) -> Result<()> {
        self.optimizer.step_params(params, grads)
    }
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.optimizer.step(grads)
    }
    fn add_param(&mut self, name: &str, var: Var) -> Result<()> {
        self.optimizer.add_param(name, var)
    }
    fn params(&self) -> &[(String, Var)] {
        self.optimizer.params()
    }
    fn learning_rate(&self) -> f64 {
        self.optimizer.learning_rate()
    }
    fn lr_transform(&self) -> LrTransform {
        self.optimizer.lr_transform()
    }
    /// Overrides the schedule until its next epoch.
    fn set_lr_transform(&mut self, transform: LrTransform) {
        self.optimizer.set_lr_transform(transform)
    }
    /// The optimizer's state and the schedule's counters.
    fn state_dict(&self) -> Result<StateDict> {
        let mut state = self.optimizer.state_dict()?;
        state.extend(self.schedule.state_dict()?);
        Ok(state)
    }
    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.optimizer.load_state_dict(state)?;
        self.schedule.load_state_dict(state)?;
        self.optimizer.set_lr_transform(self.schedule.transform());
        Ok(())
    }
}

const EPOCH: &str = "scheduler.epoch";

fn get<'a>(
    owner: &'static str,
    state: &'a StateDict,
    key: &str,
) -> Result<&'a candle_core::Tensor> {
    state.get(key).ok_or_else(|| OptimError::State {
        optimizer: owner,
        key: key.to_string(),
        message: "missing".to_string(),
    })
}

fn epoch_state(epoch: u64) -> Result<StateDict> {
    let mut s = StateDict::new();
    s.insert(EPOCH, count_tensor(epoch)?);
    Ok(s)
}

fn load_epoch(owner: &'static str, state: &StateDict) -> Result<u64> {
    scalar_count(owner, EPOCH, get(owner, state, EPOCH)?)
}

/// torch's `StepLR`: the learning rate times `gamma` every `step_size` epochs,
/// `lr(e) = base · gamma^⌊e / step_size⌋`.
///
/// ```
/// use vi_optim::{LrSchedule, StepLr};
///
/// let mut s = StepLr::new(3, 0.1)?;
/// let mut lrs = vec![];
/// for _ in 0..7 {
///     lrs.push(s.transform().apply(1.0));
///     s.advance(None, 0.0)?;
/// }
/// let expected = [1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1f64.powi(2)];
/// assert!(lrs.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-15));
/// # Ok::<(), vi_optim::OptimError>(())
/// ```
#[derive(Clone, Debug)]
pub struct StepLr {
    step_size: u64,
    gamma: f64,
    epoch: u64,
}

impl StepLr {
    /// Multiply by `gamma` every `step_size` epochs (`step_size ≥ 1`, `gamma ≥ 0`).
    ///
    /// ```
    /// assert!(vi_optim::StepLr::new(0, 0.1).is_err());
    /// ```
    pub fn new(step_size: u64, gamma: f64) -> Result<Self> {
        check(
            "StepLR",
            None,
            "step_size",
            step_size as f64,
            step_size >= 1,
            "step_size ≥ 1",
        )?;
        check(
            "StepLR",
            None,
            "gamma",
            gamma,
            gamma >= 0.0 && gamma.is_finite(),
            "a finite gamma ≥ 0",
        )?;
        Ok(StepLr {
            step_size,
            gamma,
            epoch: 0,
        })
    }
}

impl LrSchedule for StepLr {
    fn name(&self) -> &'static str {
        "StepLR"
    }
    fn transform(&self) -> LrTransform {
        LrTransform::scaled(self.gamma.powf((self.epoch / self.step_size) as f64))
    }
    fn advance(&mut self, _: Option<f64>, _: f64) -> Result<()> {
        self.epoch += 1;
        Ok(())
    }
    fn state_dict(&self) -> Result<StateDict> {
        epoch_state(self.epoch)
    }
    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.epoch = load_epoch(self.name(), state)?;
        Ok(())
    }
}

/// torch's `ExponentialLR`: `lr(e) = base · gammaᵉ`.
///
/// ```
/// use vi_optim::{ExponentialLr, LrSchedule};
///
/// let mut s = ExponentialLr::new(0.9)?;
/// s.advance(None, 0.0)?;
/// s.advance(None, 0.0)?;
/// assert!((s.transform().apply(1.0) - 0.81).abs() < 1e-15);
/// # Ok::<(), vi_optim::OptimError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ExponentialLr {
    gamma: f64,
    epoch: u64,
}

impl ExponentialLr {
    /// Multiply by `gamma ≥ 0` every epoch.
    ///
    /// ```
    /// assert!(vi_optim::ExponentialLr::new(-0.5).is_err());
    /// ```
    pub fn new(gamma: f64) -> Result<Self> {
        check(
            "ExponentialLR",
            None,
            "gamma",
            gamma,
            gamma >= 0.0 && gamma.is_finite(),
            "a finite gamma ≥ 0",
        )?;
        Ok(ExponentialLr { gamma, epoch: 0 })
    }
}

impl LrSchedule for ExponentialLr {
    fn name(&self) -> &'static str {
        "ExponentialLR"
    }
    fn transform(&self) -> LrTransform {
        LrTransform::scaled(self.gamma.powf(self.epoch as f64))
    }
    fn advance(&mut self, _: Option<f64>, _: f64) -> Result<()> {
        self.epoch += 1;
        Ok(())
    }
    fn state_dict(&self) -> Result<StateDict> {
        epoch_state(self.epoch)
    }
    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.epoch = load_epoch(self.name(), state)?;
        Ok(())
    }
}

/// torch's `CosineAnnealingLR` in its closed form:
/// `lr(e) = eta_min + (base − eta_min) · (1 + cos(π e / t_max)) / 2`, which rises again
/// after `t_max` epochs (period `2 t_max`), as torch's.
///
/// ```
/// use vi_optim::{CosineAnnealingLr, LrSchedule};
///
/// let mut s = CosineAnnealingLr::new(2, 0.0)?;
/// s.advance(None, 0.0)?;
/// assert!((s.transform().apply(1.0) - 0.5).abs() < 1e-15);
/// s.advance(None, 0.0)?;
/// assert!(s.transform().apply(1.0).abs() < 1e-15);
/// # Ok::<(), vi_optim::OptimError>(())
/// ```
#[derive(Clone, Debug)]
pub struct CosineAnnealingLr {
    t_max: u64,
    eta_min: f64,
    epoch: u64,
}

impl CosineAnnealingLr {
    /// Anneal from each parameter's rate to `eta_min ≥ 0` over `t_max ≥ 1` epochs.
    ///
    /// ```
    /// assert!(vi_optim::CosineAnnealingLr::new(0, 0.0).is_err());
    /// ```
    pub fn new(t_max: u64, eta_min: f64) -> Result<Self> {
        let name = "CosineAnnealingLR";
        check(name, None, "T_max", t_max as f64, t_max >= 1, "T_max ≥ 1")?;
        check(
            name,
            None,
            "eta_min",
            eta_min,
            eta_min >= 0.0 && eta_min.is_finite(),
            "a finite eta_min ≥ 0",
        )?;
        Ok(CosineAnnealingLr {
            t_max,
            eta_min,
            epoch: 0,
        })
    }
}

impl LrSchedule for CosineAnnealingLr {
    fn name(&self) -> &'static str {
        "CosineAnnealingLR"
    }
    fn transform(&self) -> LrTransform {
        let c = (1.0 + (PI * self.epoch as f64 / self.t_max as f64).cos()) / 2.0;
        LrTransform {
            scale: c,
            shift: self.eta_min * (1.0 - c),
            floor: 0.0,
        }
    }
    fn advance(&mut self, _: Option<f64>, _: f64) -> Result<()> {
        self.epoch += 1;
        Ok(())
    }
    fn state_dict(&self) -> Result<StateDict> {
        epoch_state(self.epoch)
    }
    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.epoch = load_epoch(self.name(), state)?;
        Ok(())
    }
}

/// Whether [`ReduceLrOnPlateau`]'s metric should fall (a loss) or rise (an accuracy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PlateauMode {
    /// Lower is better (torch's `mode="min"`).
    Min,
    /// Higher is better (`mode="max"`).
    Max,
}

/// How [`ReduceLrOnPlateau`] measures a significant improvement.
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
    /// A reduction smaller than `eps` (on the default learning rate) is skipped.
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
/// `max(lr · factor, min_lr)`.
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
        let name = "ReduceLROnPlateau";
        let o = &options;
        check(
            name,
            None,
            "factor",
            o.factor,
            (0.0..1.0).contains(&o.factor),
            "a factor in [0, 1)",
        )?;
        check(
            name,
            None,
            "threshold",
            o.threshold,
            o.threshold >= 0.0 && o.threshold.is_finite(),
            "a finite threshold ≥ 0",
        )?;
        check(
            name,
            None,
            "min_lr",
            o.min_lr,
            o.min_lr >= 0.0 && o.min_lr.is_finite(),
            "a finite min_lr ≥ 0",
        )?;
        check(
            name,
            None,
            "eps",
            o.eps,
            o.eps >= 0.0 && o.eps.is_finite(),
            "a finite eps ≥ 0",
        )?;
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

    /// How many times the learning rate has been reduced.
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
            // torch skips a reduction smaller than eps; we judge it on the default rate.
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
