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
