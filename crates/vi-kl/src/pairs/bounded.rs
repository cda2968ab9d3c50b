//! Pairs whose `p` is Uniform or Pareto (bounded supports).

use crate::registry::KlRegistry;

pub(super) fn register(_reg: &mut KlRegistry) {}
