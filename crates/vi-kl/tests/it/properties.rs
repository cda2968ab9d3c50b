//! Property tests: random batch shapes on both sides either broadcast (the KL has the
//! broadcast shape and no NaN) or give `KlError::BatchShape` naming both shapes; never a
//! panic.

use candle_core::{DType, Device, Tensor};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vi_dist::{DistSpec, Distribution, broadcast_shapes};
use vi_kl::{KlError, kl_divergence};

/// How to fill a parameter.
#[derive(Clone, Copy)]
enum Fill {
    Real,
    Positive,
    /// In [1, 2): concentrations, Pareto alphas.
    AboveOne,
    /// In (0, 1): probabilities.
    Unit,
    /// A count of 4 (Binomial's total_count).
    Count,
    /// A lower-triangular factor with a positive diagonal (the last two dims).
    Tril,
}

/// One side of a pair: a family with its parameters (name, event rank, fill) and extra
/// trailing event dims.
struct Side {
    family: &'static str,
    form: Option<&'static str>,
    params: &'static [(&'static str, usize, Fill)],
    to_event: usize,
}

const fn side(family: &'static str, params: &'static [(&'static str, usize, Fill)]) -> Side {
    Side {
        family,
        form: None,
        params,
        to_event: 0,
    }
}

const LOC_SCALE: &[(&str, usize, Fill)] = &[("loc", 0, Fill::Real), ("scale", 0, Fill::Positive)];
const GAMMA: &[(&str, usize, Fill)] = &[
    ("concentration", 0, Fill::AboveOne),
    ("rate", 0, Fill::Positive),
];
const BETA: &[(&str, usize, Fill)] = &[
    ("concentration1", 0, Fill::AboveOne),
    ("concentration0", 0, Fill::AboveOne),
];
const LOGITS: &[(&str, usize, Fill)] = &[("logits", 0, Fill::Real)];
const PROBS: &[(&str, usize, Fill)] = &[("probs", 0, Fill::Unit)];
const CAT: &[(&str, usize, Fill)] = &[("logits", 1, Fill::Real)];
const DIRICHLET: &[(&str, usize, Fill)] = &[("concentration", 1, Fill::AboveOne)];
const RATE: &[(&str, usize, Fill)] = &[("rate", 0, Fill::Positive)];
const BINOMIAL: &[(&str, usize, Fill)] =
    &[("total_count", 0, Fill::Count), ("logits", 0, Fill::Real)];
const MVN: &[(&str, usize, Fill)] = &[("loc", 1, Fill::Real), ("scale_tril", 2, Fill::Tril)];
const LOWRANK: &[(&str, usize, Fill)] = &[
    ("loc", 1, Fill::Real),
    ("cov_factor", 2, Fill::Real),
    ("cov_diag", 1, Fill::Positive),
];
const UNIFORM_P: &[(&str, usize, Fill)] = &[("low", 0, Fill::Unit), ("high", 0, Fill::AboveOne)];
const UNIFORM_Q: &[(&str, usize, Fill)] = &[("low", 0, Fill::Real), ("high", 0, Fill::AboveOne)];
const PARETO: &[(&str, usize, Fill)] =
    &[("scale", 0, Fill::AboveOne), ("alpha", 0, Fill::AboveOne)];

/// Event size of the vector families (and of the low-rank factor's rank: the same, 3).
const K: usize = 3;

fn diag_normal() -> Side {
    Side {
        to_event: 1,
        ..side("Normal", LOC_SCALE)
    }
}

fn pairs() -> Vec<(Side, Side)> {
    vec![
        (side("Normal", LOC_SCALE), side("Normal", LOC_SCALE)),
        (side("Normal", LOC_SCALE), side("Gumbel", LOC_SCALE)),
        (side("Normal", LOC_SCALE), side("Gamma", GAMMA)),
        (side("Laplace", LOC_SCALE), side("Laplace", LOC_SCALE)),
        (side("Cauchy", LOC_SCALE), side("Cauchy", LOC_SCALE)),
        (side("Gumbel", LOC_SCALE), side("Normal", LOC_SCALE)),
        (side("Gamma", GAMMA), side("Gamma", GAMMA)),
        (side("Exponential", RATE), side("Gamma", GAMMA)),
        (side("Beta", BETA), side("Beta", BETA)),
        (side("Beta", BETA), side("Uniform", UNIFORM_Q)),
        (side("Uniform", UNIFORM_P), side("Uniform", UNIFORM_Q)),
        (side("Pareto", PARETO), side("Pareto", PARETO)),
        (side("Dirichlet", DIRICHLET), side("Dirichlet", DIRICHLET)),
        (side("Bernoulli", LOGITS), side("Bernoulli", LOGITS)),
        (
            Side {
                form: Some("probs"),
                ..side("Bernoulli", PROBS)
            },
            side("Bernoulli", LOGITS),
        ),
        (side("Bernoulli", LOGITS), side("Poisson", RATE)),
        (side("Binomial", BINOMIAL), side("Binomial", BINOMIAL)),
        (side("Geometric", PROBS), side("Geometric", PROBS)),
        (side("Poisson", RATE), side("Poisson", RATE)),
        (side("Categorical", CAT), side("Categorical", CAT)),
        (
            side("OneHotCategorical", CAT),
            side("OneHotCategorical", CAT),
        ),
        (diag_normal(), diag_normal()),
        (diag_normal(), side("MultivariateNormal", MVN)),
        (side("MultivariateNormal", MVN), diag_normal()),
        (
            side("MultivariateNormal", MVN),
            side("MultivariateNormal", MVN),
        ),
        (
            side("LowRankMultivariateNormal", LOWRANK),
            side("MultivariateNormal", MVN),
        ),
        (
            side("MultivariateNormal", MVN),
            side("LowRankMultivariateNormal", LOWRANK),
        ),
        (
            side("LowRankMultivariateNormal", LOWRANK),
            side("LowRankMultivariateNormal", LOWRANK),
        ),
    ]
}

fn fill(f: Fill, shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let mut v: Vec<f64> = (0..n)
        .map(|_| match f {
            Fill::Real => rng.random_range(-1.0..1.0),
            Fill::Positive => rng.random_range(0.5..2.0),
            Fill::AboveOne => rng.random_range(1.0..2.0),
            Fill::Unit => rng.random_range(0.05..0.95),
            Fill::Count => 4.0,
            Fill::Tril => 0.0,
        })
        .collect();
    if let Fill::Tril = f {
        let (r, c) = (shape[shape.len() - 2], shape[shape.len() - 1]);
        for (i, x) in v.iter_mut().enumerate() {
            let (row, col) = ((i / c) % r, i % c);
            *x = match row.cmp(&col) {
                std::cmp::Ordering::Equal => rng.random_range(0.5..1.5),
                std::cmp::Ordering::Greater => rng.random_range(-0.3..0.3),
                std::cmp::Ordering::Less => 0.0,
            };
        }
    }
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Builds `side` with batch shape `batch`.
fn build(
    side: &Side,
    batch: &[usize],
    rng: &mut ChaCha8Rng,
    dtype: DType,
) -> Box<dyn Distribution> {
    let mut spec = DistSpec::new(side.family).event_dims(side.to_event);
    if let Some(form) = side.form {
        spec = spec.form(form);
    }
    for &(name, rank, f) in side.params {
        // The reinterpreted dims of `to_event` are part of the base's batch.
        let shape: Vec<usize> = batch
            .iter()
            .copied()
            .chain(std::iter::repeat_n(K, side.to_event + rank))
            .collect();
        spec = spec.param(name, fill(f, &shape, rng).to_dtype(dtype).unwrap());
    }
    spec.build().unwrap()
}

fn shape_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..4, 0..4)
}

/// q's batch shape: unrelated to p's, or derived from it so that it broadcasts (leading dims
/// dropped, some dims set to 1).
fn q_shape(p: &[usize], other: Vec<usize>, derive: bool, drop: usize, ones: u8) -> Vec<usize> {
    if !derive {
        return other;
    }
    p[drop.min(p.len())..]
        .iter()
        .enumerate()
        .map(|(i, &d)| if ones & (1 << i) != 0 { 1 } else { d })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, .. ProptestConfig::default() })]

    #[test]
    fn batch_shapes_broadcast_or_fail_typed(
        which in 0usize..28,
        p_batch in shape_strategy(),
        other in shape_strategy(),
        derive in any::<bool>(),
        drop in 0usize..3,
        ones in any::<u8>(),
        swap in any::<bool>(),
        f32 in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let all = pairs();
        let (ps, qs) = &all[which % all.len()];
        let q_batch = q_shape(&p_batch, other, derive, drop, ones);
        let (p_batch, q_batch) = if swap { (q_batch, p_batch) } else { (p_batch, q_batch) };
        let dtype = if f32 { DType::F32 } else { DType::F64 };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let p = build(ps, &p_batch, &mut rng, dtype);
        let q = build(qs, &q_batch, &mut rng, dtype);
        let expected = broadcast_shapes(&[p.batch_shape(), q.batch_shape()]);
        match (expected, kl_divergence(p.as_ref(), q.as_ref())) {
            (Some(b), Ok(kl)) => {
                prop_assert_eq!(kl.dims(), b.as_slice());
                let v = vi_test::to_vec(&kl).unwrap();
                prop_assert!(v.iter().all(|x| !x.is_nan()), "{} ‖ {}: NaN in {:?}", ps.family, qs.family, v);
            }
            (None, Err(KlError::BatchShape { p_shape, q_shape, .. })) => {
                prop_assert_eq!(p_shape, p_batch);
                prop_assert_eq!(q_shape, q_batch);
            }
            (b, r) => prop_assert!(false, "{} ‖ {}: batch {:?} vs {:?}, expected {:?}, got {:?}",
                ps.family, qs.family, p_batch, q_batch, b, r.map(|t| t.dims().to_vec())),
        }
    }

    /// Event shapes that differ give `EventShape` naming both.
    #[test]
    fn event_shapes_must_agree(k in 1usize..5, m in 1usize..5, batch in shape_strategy()) {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let n = |size: usize, rng: &mut ChaCha8Rng| {
            let shape: Vec<usize> = batch.iter().copied().chain([size]).collect();
            DistSpec::new("Normal").event_dims(1)
                .param("loc", fill(Fill::Real, &shape, rng))
                .param("scale", fill(Fill::Positive, &shape, rng))
                .build().unwrap()
        };
        let (p, q) = (n(k, &mut rng), n(m, &mut rng));
        match kl_divergence(p.as_ref(), q.as_ref()) {
            Ok(kl) => prop_assert!(k == m && kl.dims() == batch.as_slice()),
            Err(KlError::EventShape { p_shape, q_shape, .. }) => {
                prop_assert!(k != m);
                prop_assert_eq!((p_shape, q_shape), (vec![k], vec![m]));
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}
