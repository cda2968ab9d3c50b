//! Property tests: random batch, event and sample shapes give the documented output shapes or
//! a typed error, never a panic, for every family (built through `DistSpec`).

use candle_core::{DType, Device, Tensor};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_dist::{DistError, DistSpec, Distribution, broadcast_shapes};

/// How to fill a parameter with valid values.
#[derive(Clone, Copy, Debug)]
enum Fill {
    Real,
    Positive,
    Prob,
    Count,
    /// Values in `[a, a + 1)`, above what the companions (Uniform's `low`) can reach.
    Above(f64),
    /// Lower-triangular matrices with a positive diagonal (last two dims).
    LowerCholesky,
    /// Symmetric positive-definite matrices (last two dims).
    PosDef,
}

/// A family: torch name, form, and its parameters `(name, event rank, fill)`.
struct Family {
    name: &'static str,
    form: Option<&'static str>,
    params: &'static [(&'static str, usize, Fill)],
}

const fn fam(
    name: &'static str,
    form: Option<&'static str>,
    params: &'static [(&'static str, usize, Fill)],
) -> Family {
    Family { name, form, params }
}

use Fill::*;

#[rustfmt::skip]
const FAMILIES: &[Family] = &[
    fam("Normal", None, &[("loc", 0, Real), ("scale", 0, Positive)]),
    fam("LogNormal", None, &[("loc", 0, Real), ("scale", 0, Positive)]),
    fam("HalfNormal", None, &[("scale", 0, Positive)]),
    fam("HalfCauchy", None, &[("scale", 0, Positive)]),
    fam("Laplace", None, &[("loc", 0, Real), ("scale", 0, Positive)]),
    fam("Cauchy", None, &[("loc", 0, Real), ("scale", 0, Positive)]),
    fam("Uniform", None, &[("low", 0, Real), ("high", 0, Above(3.0))]),
    fam("Exponential", None, &[("rate", 0, Positive)]),
    fam("Gamma", None, &[("concentration", 0, Positive), ("rate", 0, Positive)]),
    fam("Beta", None, &[("concentration1", 0, Positive), ("concentration0", 0, Positive)]),
    fam("Dirichlet", None, &[("concentration", 1, Positive)]),
    fam("StudentT", None, &[("df", 0, Positive), ("loc", 0, Real), ("scale", 0, Positive)]),
    fam("Gumbel", None, &[("loc", 0, Real), ("scale", 0, Positive)]),
    fam("Pareto", None, &[("scale", 0, Positive), ("alpha", 0, Positive)]),
    fam("Bernoulli", None, &[("logits", 0, Real)]),
    fam("Bernoulli", Some("probs"), &[("probs", 0, Prob)]),
    fam("Categorical", None, &[("logits", 1, Real)]),
    fam("Categorical", Some("probs"), &[("probs", 1, Positive)]),
    fam("OneHotCategorical", None, &[("logits", 1, Real)]),
    fam("OneHotCategorical", Some("probs"), &[("probs", 1, Positive)]),
    fam("Poisson", None, &[("rate", 0, Positive)]),
    fam("Binomial", None, &[("total_count", 0, Count), ("logits", 0, Real)]),
    fam("Binomial", Some("probs"), &[("total_count", 0, Count), ("probs", 0, Prob)]),
    fam("Geometric", None, &[("probs", 0, Prob)]),
    fam("Geometric", Some("logits"), &[("logits", 0, Real)]),
    fam("MultivariateNormal", None, &[("loc", 1, Real), ("scale_tril", 2, LowerCholesky)]),
    fam("MultivariateNormal", Some("covariance"), &[("loc", 1, Real), ("covariance_matrix", 2, PosDef)]),
    fam("MultivariateNormal", Some("precision"), &[("loc", 1, Real), ("precision_matrix", 2, PosDef)]),
    fam("LowRankMultivariateNormal", None, &[("loc", 1, Real), ("cov_factor", 2, Real), ("cov_diag", 1, Positive)]),
];

fn fill(fill: Fill, shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor {
    use rand::Rng;
    let n: usize = shape.iter().product();
    let mut data: Vec<f64> = (0..n)
        .map(|_| match fill {
            Real | LowerCholesky | PosDef => rng.random_range(-1.0..1.0),
            Positive => rng.random_range(0.5..2.0),
            Prob => rng.random_range(0.1..0.9),
            Count => rng.random_range(1..6) as f64,
            Above(a) => rng.random_range(a..a + 1.0),
        })
        .collect();
    if matches!(fill, LowerCholesky | PosDef) {
        let k = shape[shape.len() - 1];
        for m in data.chunks_mut(k * k) {
            // lower triangle with a diagonal in [1.5, 2.5)
            for i in 0..k {
                for j in i + 1..k {
                    m[i * k + j] = 0.0;
                }
                m[i * k + i] = m[i * k + i].abs() + 1.5;
            }
            if matches!(fill, PosDef) {
                let l = m.to_vec();
                for i in 0..k {
                    for j in 0..k {
                        m[i * k + j] = (0..k).map(|t| l[i * k + t] * l[j * k + t]).sum();
                    }
                }
            }
        }
    }
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// Event dims appended to a parameter of event rank `r` (size 3 for every event dim).
fn event_dims(r: usize) -> Vec<usize> {
    vec![3; r]
}

fn shape_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..4, 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Parameters with broadcastable batch shapes build a distribution whose shapes follow
    /// torch; non-broadcastable ones give `DistError::Broadcast`.
    #[test]
    fn shapes_follow_torch(
        family in 0..FAMILIES.len(),
        shapes in prop::collection::vec(shape_strategy(), 4),
        sample_shape in prop::collection::vec(1usize..3, 0..3),
        seed in 0u64..1000,
        to_event in 0usize..3,
    ) {
        let fam = &FAMILIES[family];
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut spec = DistSpec::new(fam.name);
        if let Some(f) = fam.form { spec = spec.form(f); }
        let mut batch_shapes = Vec::new();
        for (i, &(name, rank, f)) in fam.params.iter().enumerate() {
            let batch = &shapes[i % shapes.len()];
            batch_shapes.push(batch.as_slice());
            let full: Vec<usize> = batch.iter().copied().chain(event_dims(rank)).collect();
            spec = spec.param(name, fill(f, &full, &mut rng));
        }
        let expected_batch = broadcast_shapes(&batch_shapes);
        let built = spec.build().map_err(DistError::into_kind);
        let d = match (expected_batch, built) {
            (None, Err(DistError::Broadcast { .. })) => return Ok(()),
            (None, other) => panic!("{}: expected a Broadcast error, got {:?}", fam.name, other.map(|d| d.batch_shape().to_vec())),
            (Some(_), Err(e)) => panic!("{}: {e}", fam.name),
            (Some(b), Ok(d)) => { prop_assert_eq!(d.batch_shape(), b.as_slice()); d }
        };
        let batch = d.batch_shape().to_vec();
        let event = d.event_shape().to_vec();
        let x = d.sample(&sample_shape, &mut rng).unwrap();
        let mut full = sample_shape.clone();
        full.extend(&batch);
        full.extend(&event);
        prop_assert_eq!(x.dims(), full.as_slice());
        let lp = d.log_prob(&x).unwrap();
        let mut lp_shape = sample_shape.clone();
        lp_shape.extend(&batch);
        prop_assert_eq!(lp.dims(), lp_shape.as_slice());
        // to_event: fewer batch dims, or a typed error
        match d.to_event(to_event) {
            Ok(ind) => {
                prop_assert!(to_event <= batch.len());
                prop_assert_eq!(ind.batch_shape(), &batch[..batch.len() - to_event]);
                let lp = ind.log_prob(&x).unwrap();
                prop_assert_eq!(lp.dims(), &lp_shape[..lp_shape.len() - to_event]);
            }
            Err(e) => {
                let ok = matches!(e.kind(), DistError::ToEvent { .. }) && to_event > batch.len();
                prop_assert!(ok, "to_event({}) on batch {:?}: {}", to_event, batch, e);
            }
        }
        // expand to a larger batch
        let mut bigger = vec![2usize];
        bigger.extend(&batch);
        let e = d.expand(&bigger).unwrap();
        prop_assert_eq!(e.batch_shape(), bigger.as_slice());
        prop_assert_eq!(e.log_prob(&x).unwrap().rank(), sample_shape.len().max(1) + batch.len());
        // a value with a wrong event shape is a typed error
        if !event.is_empty() {
            let mut wrong = batch.clone();
            wrong.extend(event.iter().map(|d| d + 1));
            let bad = Tensor::zeros(wrong, DType::F64, &Device::Cpu).unwrap();
            let typed = matches!(d.log_prob(&bad), Err(DistError::ValueShape { .. }));
            prop_assert!(typed, "wrong event shape accepted");
        }
    }
}

/// A value outside the parameter's support (NaN for reals).
fn invalid(fill: Fill, nan: bool) -> f64 {
    if nan {
        return f64::NAN;
    }
    match fill {
        Real => f64::NAN,
        Positive | Count | LowerCholesky | PosDef => -1.0,
        Above(a) => a - 10.0,
        Prob => 1.5,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// With validation on, a NaN or out-of-support element in any parameter is a typed
    /// `ParamSupport` error naming that parameter; with validation off the same call builds.
    #[test]
    fn invalid_parameters_are_typed_errors(
        family in 0..FAMILIES.len(),
        which in 0usize..4,
        batch in shape_strategy(),
        seed in 0u64..1000,
        nan in any::<bool>(),
    ) {
        let fam = &FAMILIES[family];
        let which = which % fam.params.len();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut spec = DistSpec::new(fam.name);
        if let Some(f) = fam.form { spec = spec.form(f); }
        let mut bad_name = "";
        let mut factorised = false;
        for (i, &(name, rank, f)) in fam.params.iter().enumerate() {
            let full: Vec<usize> = batch.iter().copied().chain(event_dims(rank)).collect();
            let mut t = fill(f, &full, &mut rng);
            if i == which {
                let mut data = vi_test::to_vec(&t).unwrap();
                data[0] = invalid(f, nan);
                t = Tensor::from_vec(data, full.as_slice(), &Device::Cpu).unwrap();
                bad_name = name;
                // a matrix without a Cholesky factor cannot be built at all
                factorised = matches!(f, PosDef) || fam.name == "LowRankMultivariateNormal";
            }
            spec = spec.param(name, t);
        }
        match spec.build().map_err(DistError::into_kind) {
            Err(DistError::ParamSupport { param, .. }) => prop_assert_eq!(param, bad_name),
            Err(e) => prop_assert!(false, "{}: expected ParamSupport for {}, got {}", fam.name, bad_name, e),
            Ok(_) => prop_assert!(false, "{}: invalid {} accepted", fam.name, bad_name),
        }
        let off = vi_dist::with_validation(false, || spec.build());
        prop_assert!(off.is_ok() || factorised, "{}: validation off still rejected", fam.name);
    }
}

/// Empty batches (a parameter with a batch dim of 0) and empty sample shapes give empty
/// tensors of the documented shapes for every family, with validation on (torch allows both).
#[test]
fn empty_batches_and_samples() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for fam in FAMILIES {
        for batch in [vec![0usize], vec![2]] {
            let mut spec = DistSpec::new(fam.name);
            if let Some(f) = fam.form {
                spec = spec.form(f);
            }
            for &(name, rank, f) in fam.params {
                let full: Vec<usize> = batch.iter().copied().chain(event_dims(rank)).collect();
                spec = spec.param(name, fill(f, &full, &mut rng));
            }
            let tag = format!("{} {:?} batch {batch:?}", fam.name, fam.form);
            let d = spec.build().unwrap_or_else(|e| panic!("{tag}: {e}"));
            for sample_shape in [vec![0usize], vec![3]] {
                let x = d
                    .sample(&sample_shape, &mut rng)
                    .unwrap_or_else(|e| panic!("{tag}: {e}"));
                let mut want = sample_shape.clone();
                want.extend(&batch);
                let lp = d.log_prob(&x).unwrap_or_else(|e| panic!("{tag}: {e}"));
                assert_eq!(lp.dims(), want.as_slice(), "{tag}");
            }
        }
    }
}
