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

use candle_core::Var;
use candle_core::backprop::GradStore;

use crate::error::{OptimError, Result};
use crate::lr_transform::LrTransform;
use crate::optimizer::Optimizer;
use crate::state::{StateDict, count_tensor, scalar_count};

mod cosine_annealing_lr;
mod exponential_lr;
mod plateau;
mod step_lr;

pub use cosine_annealing_lr::CosineAnnealingLr;
pub use exponential_lr::ExponentialLr;
pub use plateau::{PlateauMode, PlateauOptions, ReduceLrOnPlateau, ThresholdMode};
pub use step_lr::StepLr;

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
    /// [`ReduceLrOnPlateau`], ignored by the others); `current_lr` is the largest rate the
    /// optimizer steps with now ([`Optimizer::max_learning_rate`]).
    fn advance(&mut self, metric: Option<f64>, current_lr: f64) -> Result<()>;

    /// The schedule's counters, under `scheduler.*` keys.
    fn state_dict(&self) -> Result<StateDict>;

    /// Restores counters written by [`state_dict`](LrSchedule::state_dict); on an error
    /// nothing changes ([`Scheduler`] relies on it to keep a failed load harmless).
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
    /// The map in force was set from outside (`set_lr_transform`), not by the schedule.
    overridden: bool,
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
            overridden: false,
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
            .advance(metric, self.optimizer.max_learning_rate())?;
        self.follow_schedule();
        Ok(())
    }

    /// Sets the optimizer's map to the schedule's.
    fn follow_schedule(&mut self) {
        self.optimizer.set_lr_transform(self.schedule.transform());
        self.overridden = false;
    }

    /// A step's result, with the schedule named in a learning-rate error when the schedule
    /// set the rate.
    fn blame(&self, mut r: Result<()>) -> Result<()> {
        if let Err(OptimError::InvalidLearningRate { scheduler, .. }) = &mut r
            && scheduler.is_none()
            && !self.overridden
        {
            *scheduler = Some(self.schedule.name());
        }
        r
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
    /// The optimizer's step; a learning rate refused there names this schedule, unless the
    /// rate was set from outside since the schedule's last epoch.
    fn step_params(&mut self, params: &[(&str, &Var)], grads: &GradStore) -> Result<()> {
        let r = self.optimizer.step_params(params, grads);
        self.blame(r)
    }
    /// As [`step_params`](Scheduler::step_params), on the parameters the optimizer holds.
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let r = self.optimizer.step(grads);
        self.blame(r)
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
    fn max_learning_rate(&self) -> f64 {
        self.optimizer.max_learning_rate()
    }
    fn lr_transform(&self) -> LrTransform {
        self.optimizer.lr_transform()
    }
    /// Overrides the schedule until its next epoch.
    fn set_lr_transform(&mut self, transform: LrTransform) {
        self.optimizer.set_lr_transform(transform);
        self.overridden = true;
    }
    /// The optimizer's state and the schedule's counters.
    fn state_dict(&self) -> Result<StateDict> {
        let mut state = self.optimizer.state_dict()?;
        state.extend(self.schedule.state_dict()?);
        Ok(state)
    }
    /// Restores the optimizer's state and the schedule's counters; a state that either
    /// refuses changes neither.
    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        // Each load is all-or-nothing on its own; undo the schedule's if the optimizer's fails.
        let previous = self.schedule.state_dict()?;
        self.schedule.load_state_dict(state)?;
        if let Err(e) = self.optimizer.load_state_dict(state) {
            self.schedule.load_state_dict(&previous)?;
            return Err(e);
        }
        self.follow_schedule();
        Ok(())
    }
}

/// [`LrSchedule`] for a schedule whose map depends on the epoch count alone: the type has an
/// `epoch: u64` field, a `NAME` and a `current()` method that gives the map at that epoch.
macro_rules! epoch_schedule {
    ($ty:ty) => {
        impl $crate::scheduler::LrSchedule for $ty {
            fn name(&self) -> &'static str {
                Self::NAME
            }
            fn transform(&self) -> $crate::lr_transform::LrTransform {
                self.current()
            }
            fn advance(&mut self, _: Option<f64>, _: f64) -> $crate::error::Result<()> {
                self.epoch += 1;
                Ok(())
            }
            fn state_dict(&self) -> $crate::error::Result<$crate::state::StateDict> {
                $crate::scheduler::epoch_state(self.epoch)
            }
            fn load_state_dict(
                &mut self,
                state: &$crate::state::StateDict,
            ) -> $crate::error::Result<()> {
                self.epoch = $crate::scheduler::load_epoch(Self::NAME, state)?;
                Ok(())
            }
        }
    };
}
use epoch_schedule;

pub(super) const EPOCH: &str = "scheduler.epoch";

pub(super) fn get<'a>(
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

pub(super) fn epoch_state(epoch: u64) -> Result<StateDict> {
    let mut s = StateDict::new();
    s.insert(EPOCH, count_tensor(epoch)?);
    Ok(s)
}

pub(super) fn load_epoch(owner: &'static str, state: &StateDict) -> Result<u64> {
    scalar_count(owner, EPOCH, get(owner, state, EPOCH)?)
}
