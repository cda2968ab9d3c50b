//! Pairs whose `p` is Beta, Exponential, Gamma or Dirichlet.

use crate::registry::KlRegistry;

pub(super) fn register(_reg: &mut KlRegistry) {}
