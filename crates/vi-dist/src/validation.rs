//! Switching value checks on and off, as Pyro's `enable_validation`.
//!
//! Shape checks always run (they are cheap and need no device sync). Value checks (parameters
//! in their support, `log_prob` values in the support, NaN) read the data back to the host,
//! so they can be switched off for speed. The switch is per thread: tests and worker threads
//! do not affect each other.

use std::cell::Cell;

thread_local! {
    static VALIDATE: Cell<bool> = const { Cell::new(true) };
}

/// Whether value checks run on this thread (on by default).
///
/// ```
/// assert!(vi_dist::validation_enabled());
/// ```
pub fn validation_enabled() -> bool {
    VALIDATE.with(Cell::get)
}

/// Switch value checks on or off for this thread; returns the previous setting.
///
/// ```
/// let before = vi_dist::set_validation(false);
/// assert!(!vi_dist::validation_enabled());
/// vi_dist::set_validation(before);
/// ```
pub fn set_validation(enabled: bool) -> bool {
    VALIDATE.with(|v| v.replace(enabled))
}

/// Run `f` with value checks set to `enabled`, restoring the previous setting afterwards.
///
/// ```
/// let inside = vi_dist::with_validation(false, vi_dist::validation_enabled);
/// assert!(!inside);
/// assert!(vi_dist::validation_enabled());
/// ```
pub fn with_validation<T>(enabled: bool, f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            set_validation(self.0);
        }
    }
    let _restore = Restore(set_validation(enabled));
    f()
}

/// Tensors already known to lie in a support, by id: a value checked once (or produced by a
/// bijection into its constraint) is not read back again while it is in this small record.
/// Variables are never recorded (their storage changes in place under the same id).
mod known {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use candle_core::{Tensor, TensorId};

    use crate::constraint::Constraint;

    /// How many (tensor, support) pairs a thread remembers.
    const CAPACITY: usize = 256;

    thread_local! {
        static KNOWN: RefCell<VecDeque<(TensorId, u8)>> = const { RefCell::new(VecDeque::new()) };
    }

    /// A code for the constraints without parameters (the only ones recorded).
    fn code(c: &Constraint) -> Option<u8> {
        Some(match c {
            Constraint::Real => 1,
            Constraint::Positive => 2,
            Constraint::NonNegative => 3,
            Constraint::UnitInterval => 4,
            Constraint::Boolean => 5,
            Constraint::NonNegativeInteger => 6,
            Constraint::Simplex => 7,
            Constraint::OneHot => 8,
            Constraint::LowerCholesky => 9,
            Constraint::PositiveDefinite => 10,
            _ => return None,
        })
    }

    /// Whether a value in `known` lies in `wanted`: the same set, `real` (every member of a
    /// support is a number, not NaN), or `nonnegative` for `positive`.
    fn implies(known: u8, wanted: u8) -> bool {
        known == wanted || wanted == 1 || (known == 2 && wanted == 3)
    }

    pub(crate) fn contains(value: &Tensor, c: &Constraint) -> bool {
        let Some(wanted) = code(c) else {
            return false;
        };
        let id = value.id();
        KNOWN.with(|k| {
            k.borrow()
                .iter()
                .rev()
                .any(|&(i, known)| i == id && implies(known, wanted))
        })
    }

    pub(crate) fn insert(value: &Tensor, c: &Constraint) {
        let Some(code) = code(c) else { return };
        if value.is_variable() {
            return;
        }
        KNOWN.with(|k| {
            let mut k = k.borrow_mut();
            if k.len() == CAPACITY {
                k.pop_front();
            }
            k.push_back((value.id(), code));
        });
    }
}

pub(crate) use known::{contains as known_in, insert as remember_in};

/// Records that `value` lies in `constraint` without checking it, so that validation does
/// not read it back: for values that a bijection into the constraint produced (a parameter
/// read through `transform_to`), as `vi-infer`'s parameter store does. Only constraints
/// without parameters are recorded; variables never are (their storage changes in place).
/// A wrong claim here is a wrong number later: use it only where the construction
/// guarantees it.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Constraint, Normal};
/// let scale = Tensor::new(&[0.5f64, 2.0], &Device::Cpu)?.exp()?;
/// vi_dist::assume_in_support(&scale, &Constraint::Positive);
/// let d = Normal::new(&scale.zeros_like()?, &scale)?; // the scale is not read back
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn assume_in_support(value: &candle_core::Tensor, constraint: &crate::Constraint) {
    remember_in(value, constraint);
}
