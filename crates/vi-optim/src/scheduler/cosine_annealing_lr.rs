//! torch's `CosineAnnealingLR`, in its closed form.

use std::f64::consts::PI;

use crate::error::{Check, Result};
use crate::lr_transform::LrTransform;

use super::epoch_schedule;

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
        let check = Check::new(Self::NAME, None);
        check.at_least_one("T_max", t_max)?;
        check.non_negative("eta_min", eta_min)?;
        Ok(CosineAnnealingLr {
            t_max,
            eta_min,
            epoch: 0,
        })
    }

    const NAME: &'static str = "CosineAnnealingLR";

    fn current(&self) -> LrTransform {
        let c = (1.0 + (PI * self.epoch as f64 / self.t_max as f64).cos()) / 2.0;
        LrTransform {
            scale: c,
            shift: self.eta_min * (1.0 - c),
            floor: 0.0,
        }
    }
}

epoch_schedule!(CosineAnnealingLr);
