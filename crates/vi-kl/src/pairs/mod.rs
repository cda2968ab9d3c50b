//! The closed forms, one file per group of `p` families. Formulas follow torch's and Pyro's
//! registered KLs (re-derived, not copied), with broadcasting over both batch shapes.

use crate::registry::KlRegistry;

mod bounded;
mod discrete;
mod gamma_family;
mod location_scale;
mod mvn;
mod transformed;

/// Adds every shipped closed form to `reg`.
pub(crate) fn register(reg: &mut KlRegistry) {
    location_scale::register(reg);
    gamma_family::register(reg);
    bounded::register(reg);
    discrete::register(reg);
    mvn::register(reg);
    transformed::register(reg);
}
