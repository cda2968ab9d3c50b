//! torch's `CosineAnnealingLR`, in its closed form.

use std::f64::consts::PI;

use crate::error::{Result, check};
use crate::optimizer::LrTransform;
use crate::state::StateDict;

use super::{LrSchedule, epoch_state, load_epoch};

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
