//! Property tests: random batch, event and sample shapes give the documented output shapes or
//! a typed error, never a panic, for every family (built through `DistSpec`).

use candle_core::{DType, Device, Tensor};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_dist::{DistError, DistSpec, Distribution, broadcast_shapes};

/// How to fill a parameter with valid values.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // variants used as families are added
enum Fill {
    Real,
    Positive,
    Prob,
    Count,
    /// Positive values larger than the Pareto/Uniform companions need.
    Above(f64),
}

/// A family: torch name, form, its parameters `(name, event rank, fill)`, and its event rank
/// (the trailing dims of the first parameter that form the event).
struct Family {
    name: &'static str,
    form: Option<&'static str>,
    params: &'static [(&'static str, usize, Fill)],
}

const FAMILIES: &[Family] = &[
    Family {
        name: "Normal",
        form: None,
        params: &[("loc", 0, Fill::Real), ("scale", 0, Fill::Positive)],
    },
    Family {
        name: "Bernoulli",
        form: None,
        params: &[("logits", 0, Fill::Real)],
    },
    Family {
        name: "Bernoulli",
        form: Some("probs"),
        params: &[("probs", 0, Fill::Prob)],
    },
    Family {
        name: "Categorical",
        form: None,
        params: &[("logits", 1, Fill::Real)],
    },
    Family {
        name: "Categorical",
        form: Some("probs"),
        params: &[("probs", 1, Fill::Positive)],
    },
    Family {
        name: "OneHotCategorical",
        form: None,
        params: &[("logits", 1, Fill::Real)],
    },
    Family {
        name: "OneHotCategorical",
        form: Some("probs"),
        params: &[("probs", 1, Fill::Positive)],
    },
    Family {
        name: "Poisson",
        form: None,
        params: &[("rate", 0, Fill::Positive)],
    },
    Family {
        name: "Binomial",
        form: None,
        params: &[("total_count", 0, Fill::Count), ("logits", 0, Fill::Real)],
    },
    Family {
        name: "Binomial",
        form: Some("probs"),
        params: &[("total_count", 0, Fill::Count), ("probs", 0, Fill::Prob)],
    },
    Family {
        name: "Geometric",
        form: None,
        params: &[("probs", 0, Fill::Prob)],
    },
    Family {
        name: "Geometric",
        form: Some("logits"),
        params: &[("logits", 0, Fill::Real)],
    },
];

fn fill(fill: Fill, shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor {
    use rand::Rng;
    let n: usize = shape.iter().product();
    let data: Vec<f64> = (0..n)
        .map(|_| match fill {
            Fill::Real => rng.random_range(-2.0..2.0),
            Fill::Positive => rng.random_range(0.5..2.0),
            Fill::Prob => rng.random_range(0.1..0.9),
            Fill::Count => rng.random_range(1..6) as f64,
            Fill::Above(a) => rng.random_range(a..a + 1.0),
        })
        .collect();
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
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

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
        let built = spec.build();
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
                let ok = matches!(e, DistError::ToEvent { .. }) && to_event > batch.len();
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
        Fill::Real => f64::NAN,
        Fill::Positive | Fill::Count | Fill::Above(_) => -1.0,
        Fill::Prob => 1.5,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

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
        for (i, &(name, rank, f)) in fam.params.iter().enumerate() {
            let full: Vec<usize> = batch.iter().copied().chain(event_dims(rank)).collect();
            let mut t = fill(f, &full, &mut rng);
            if i == which {
                let mut data = vi_test::to_vec(&t).unwrap();
                data[0] = invalid(f, nan);
                t = Tensor::from_vec(data, full.as_slice(), &Device::Cpu).unwrap();
                bad_name = name;
            }
            spec = spec.param(name, t);
        }
        match spec.build() {
            Err(DistError::ParamSupport { param, .. }) => prop_assert_eq!(param, bad_name),
            Err(e) => prop_assert!(false, "{}: expected ParamSupport for {}, got {}", fam.name, bad_name, e),
            Ok(_) => prop_assert!(false, "{}: invalid {} accepted", fam.name, bad_name),
        }
        let off = vi_dist::with_validation(false, || spec.build());
        prop_assert!(off.is_ok(), "{}: validation off still rejected", fam.name);
    }
}
