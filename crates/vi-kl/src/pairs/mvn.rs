//! Multivariate normal pairs: MVN, LowRankMVN, and `Independent(Normal, 1)` against either, both directions.

use crate::registry::KlRegistry;

pub(super) fn register(_reg: &mut KlRegistry) {}
