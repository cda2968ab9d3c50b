//! Pairs of discrete families: Bernoulli, Binomial, Categorical, OneHotCategorical, Geometric, Poisson.

use crate::registry::KlRegistry;

pub(super) fn register(_reg: &mut KlRegistry) {}
