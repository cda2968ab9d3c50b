//! Errors that say where and what: every constructor's error carries the caller's source
//! location (`DistError::At`), support errors name the first offending element ("NaN", "inf",
//! "-inf" or the number) and its index, and `Normal` with scale `+inf` is accepted as in
//! torch and Pyro.

use candle_core::{DType, Device, Tensor};
use vi_dist::*;

use crate::common::t;

/// Check that `r` failed with a location on `line` of this file, and return the error.
#[track_caller]
fn failed_at<T>(r: vi_dist::Result<T>, line: u32) -> DistError {
    let Err(e) = r else {
        panic!("line {line}: expected an error")
    };
    let at = e
        .location()
        .unwrap_or_else(|| panic!("line {line}: no location in {e}"));
    assert_eq!((at.file(), at.line()), (file!(), line), "{e}");
    assert!(
        e.to_string()
            .ends_with(&format!(" (at {}:{line}:{})", file!(), at.column())),
        "{e}"
    );
    assert!(!matches!(e.kind(), DistError::At { .. }));
    e
}

/// Every public constructor, with bad input, on a line of its own: the error names that line.
#[test]
fn constructor_errors_carry_the_callers_location() {
    let (one, neg, three) = (t(&[1.0, 1.0]), t(&[1.0, -1.0]), t(&[1.0, 1.0, 1.0]));
    let m = Tensor::eye(2, DType::F64, &Device::Cpu).unwrap();
    let bad_m = t(&[1.0, 2.0, 2.0, 1.0]).reshape((2, 2)).unwrap();
    let w = Tensor::ones((2, 1), DType::F64, &Device::Cpu).unwrap();
    let (probs_bad, zero) = (t(&[0.5, 1.5]), t(&[0.0, 0.0]));
    let counts = t(&[1.0, -1.0]);
    let nan = t(&[0.0, f64::NAN]);
    let l = line!();
    failed_at(Normal::new(&one, &neg), l + 1);
    failed_at(LogNormal::new(&one, &neg), l + 2);
    failed_at(HalfNormal::new(&neg), l + 3);
    failed_at(Cauchy::new(&one, &neg), l + 4);
    failed_at(HalfCauchy::new(&neg), l + 5);
    failed_at(Laplace::new(&one, &neg), l + 6);
    failed_at(StudentT::new(&neg, &one, &one), l + 7);
    failed_at(Uniform::new(&one, &one), l + 8);
    failed_at(Exponential::new(&neg), l + 9);
    failed_at(Gamma::new(&neg, &one), l + 10);
    failed_at(Beta::new(&one, &neg), l + 11);
    failed_at(Dirichlet::new(&neg), l + 12);
    failed_at(Gumbel::new(&one, &neg), l + 13);
    failed_at(Pareto::new(&neg, &one), l + 14);
    failed_at(MultivariateNormal::from_scale_tril(&one, &bad_m), l + 15);
    failed_at(MultivariateNormal::from_covariance(&three, &m), l + 16);
    failed_at(MultivariateNormal::from_precision(&one, &bad_m), l + 17);
    failed_at(MultivariateNormal::from_diag_scale(&one, &neg), l + 18);
    failed_at(LowRankMultivariateNormal::new(&one, &w, &neg), l + 19);
    failed_at(Bernoulli::from_logits(&nan), l + 20);
    failed_at(Bernoulli::from_probs(&probs_bad), l + 21);
    failed_at(Categorical::from_logits(&nan), l + 22);
    failed_at(Categorical::from_probs(&neg), l + 23);
    failed_at(OneHotCategorical::from_logits(&nan), l + 24);
    failed_at(OneHotCategorical::from_probs(&neg), l + 25);
    failed_at(Poisson::new(&neg), l + 26);
    failed_at(Binomial::from_probs(&counts, &zero), l + 27);
    failed_at(Binomial::from_logits(&counts, &zero), l + 28);
    failed_at(Geometric::from_probs(&zero), l + 29);
    failed_at(Geometric::from_logits(&nan), l + 30);
    failed_at(Delta::new(&one, None, 2), l + 31);
    let d = Normal::new(&one, &one).unwrap();
    let boxed: Box<dyn Distribution> = Box::new(d.clone());
    let mask3 = Tensor::new(&[1u8, 0, 1], &Device::Cpu).unwrap();
    let l = line!();
    failed_at(d.expand(&[3]), l + 1);
    failed_at(boxed.expand(&[3]), l + 2);
    failed_at(d.to_event(2), l + 3);
    failed_at(boxed.mask(&mask3), l + 4);
    failed_at(Independent::new(boxed.clone(), 2), l + 5);
    failed_at(Expanded::new(boxed.clone(), &[3]), l + 6);
    failed_at(Masked::new(boxed.clone(), &mask3), l + 7);
    let spec = DistSpec::new("Normal").param("loc", one.clone());
    failed_at(spec.build(), line!());
    // Wrappers expand through their base, and still report the user's line.
    let z23 = Tensor::zeros((2, 3), DType::F64, &Device::Cpu).unwrap();
    let ind = Normal::new(&z23, &z23.ones_like().unwrap())
        .unwrap()
        .to_event(1)
        .unwrap();
    failed_at(ind.expand(&[3]), line!());
    let masked = d
        .mask(&Tensor::new(&[1u8, 1], &Device::Cpu).unwrap())
        .unwrap();
    failed_at(masked.expand(&[5]), line!());
}

/// Errors raised after construction (`log_prob`, `rsample`) carry no location: the site that
/// called them names itself.
#[test]
fn other_errors_carry_none() {
    let d = Normal::new(&t(&[0.0, 0.0]), &t(&[1.0, 1.0])).unwrap();
    let e = d.log_prob(&t(&[0.0, 0.0, 0.0])).unwrap_err();
    assert!(e.location().is_none());
    assert!(matches!(e, DistError::ValueShape { .. }));
    let e = Bernoulli::from_probs(&t(&[0.5]))
        .unwrap()
        .rsample(
            &[],
            &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0),
        )
        .unwrap_err();
    assert!(e.location().is_none());
}

/// `at` keeps one location, the last attached (the outermost call); `kind` and `into_kind`
/// see through it.
#[test]
fn at_replaces_and_kind_sees_through() {
    let e = Normal::new(&t(&[0.0]), &t(&[-1.0])).unwrap_err();
    let first = e.location().unwrap();
    let here = std::panic::Location::caller();
    let e = e.at(here);
    assert_eq!(e.location(), Some(here));
    assert_ne!(e.location(), Some(first));
    let DistError::At { error, .. } = &e else {
        panic!("{e:?}")
    };
    assert!(matches!(**error, DistError::ParamSupport { .. }));
    assert!(matches!(
        e.kind(),
        DistError::ParamSupport { param: "scale", .. }
    ));
    assert!(matches!(e.into_kind(), DistError::ParamSupport { .. }));
}

/// The message of a parameter outside its support, without the location suffix.
fn param_message(r: vi_dist::Result<impl std::fmt::Debug>) -> String {
    r.unwrap_err().kind().to_string()
}

#[test]
fn support_errors_name_the_first_bad_element() {
    let one3 = t(&[0.0, 0.0, 0.0]);
    // NaN, inf, -inf and plain numbers, each with its index.
    assert_eq!(
        param_message(Normal::new(&one3, &t(&[1.0, f64::NAN, -1.0]))),
        "Normal: parameter `scale` (shape [3]) is outside its support positive: NaN at [1]"
    );
    assert_eq!(
        param_message(Normal::new(&one3, &t(&[1.0, 2.0, f64::NEG_INFINITY]))),
        "Normal: parameter `scale` (shape [3]) is outside its support positive: -inf at [2]"
    );
    assert_eq!(
        param_message(Normal::new(&one3, &t(&[-0.5, 1.0, 1.0]))),
        "Normal: parameter `scale` (shape [3]) is outside its support positive: -0.5 at [0]"
    );
    assert_eq!(
        param_message(Normal::new(&t(&[0.0, f64::INFINITY, f64::NAN]), &t(&[1.0]))),
        "Normal: parameter `loc` (shape [3]) is outside its support real: NaN at [2]"
    );
    // A multi-dimensional index, row-major: the first bad element of a [2, 3] parameter.
    let rate = Tensor::new(&[[1.0f64, 2.0, 3.0], [4.0, 0.0, f64::NAN]], &Device::Cpu).unwrap();
    assert_eq!(
        param_message(Exponential::new(&rate)),
        "Exponential: parameter `rate` (shape [2, 3]) is outside its support positive: 0.0 at [1, 1]"
    );
    // A scalar has no index.
    assert_eq!(
        param_message(Poisson::new(&Tensor::new(-2.0f64, &Device::Cpu).unwrap())),
        "Poisson: parameter `rate` (shape []) is outside its support nonnegative: -2.0"
    );
    // A constraint on whole events: the event's values, or a non-finite element's full index.
    // (Categorical checks its probabilities once normalised: [0.75, -0.25] / 0.5)
    let probs = Tensor::new(&[[0.5f64, 0.5], [0.75, -0.25]], &Device::Cpu).unwrap();
    let DistError::ParamSupport { found, .. } =
        Categorical::from_probs(&probs).unwrap_err().into_kind()
    else {
        panic!()
    };
    assert_eq!(
        (found.value.as_str(), &found.index[..]),
        ("[1.5, -0.5]", &[1][..])
    );
    let nan_row = Tensor::new(&[[0.5f64, 0.5], [0.3, f64::NAN]], &Device::Cpu).unwrap();
    assert!(
        param_message(Dirichlet::new(&nan_row)).ends_with("positive: NaN at [1, 1]"),
        "{}",
        param_message(Dirichlet::new(&nan_row))
    );
    let upper = Tensor::new(&[[1.0f64, 1.0], [0.0, 1.0]], &Device::Cpu).unwrap();
    assert!(
        param_message(MultivariateNormal::from_scale_tril(&t(&[0.0, 0.0]), &upper))
            .ends_with("lower_cholesky: [1.0, 1.0, 0.0, 1.0]")
    );
}

#[test]
fn value_errors_name_the_first_bad_element() {
    let d = Beta::new(&t(&[1.0; 4]), &t(&[1.0; 4])).unwrap();
    let e = d.log_prob(&t(&[0.5, 0.2, 1.5, -1.0])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Beta: value of shape [4] is outside the support unit_interval: 1.5 at [2]"
    );
    let d = Normal::new(&t(&[0.0, 0.0]), &t(&[1.0, 1.0])).unwrap();
    let x = Tensor::new(&[[0.0f64, 1.0], [f64::NAN, 2.0]], &Device::Cpu).unwrap();
    assert_eq!(
        d.log_prob(&x).unwrap_err().to_string(),
        "Normal: value of shape [2, 2] is outside the support real: NaN at [1, 0]"
    );
    // to_event: the elementwise base names the element, not the event
    let ind = d.to_event(1).unwrap();
    let DistError::ValueSupport { found, .. } = ind.log_prob(&x).unwrap_err() else {
        panic!()
    };
    assert_eq!(
        (found.value.as_str(), &found.index[..]),
        ("NaN", &[1, 0][..])
    );
    // a bound that is a tensor (Uniform): the value broadcast against it
    let u = Uniform::new(&t(&[0.0, 0.0, 0.0]), &t(&[1.0, 2.0, 3.0])).unwrap();
    let e = u.log_prob(&t(&[2.5])).unwrap_err();
    let DistError::ValueSupport { found, .. } = e else {
        panic!("{e}")
    };
    assert_eq!((found.value.as_str(), &found.index[..]), ("2.5", &[0][..]));
    // discrete values
    let b = Bernoulli::from_logits(&t(&[0.0, 0.0])).unwrap();
    assert!(
        b.log_prob(&t(&[1.0, 0.5]))
            .unwrap_err()
            .to_string()
            .ends_with("boolean: 0.5 at [1]")
    );
    // Categorical's own range check (validation off) names the index too
    let c = Categorical::from_logits(&t(&[0.0, 0.0, 0.0])).unwrap();
    let e = with_validation(false, || c.log_prob(&t(&[1.0, 3.0]))).unwrap_err();
    assert!(e.to_string().ends_with("3.0 at [1]"), "{e}");
}

/// Normal's scale may be `+inf`, as torch's `positive` constraint and Pyro's validation allow
/// (docs/distributions.md): the density is 0 everywhere, so `log_prob` is `−inf` and the
/// entropy `+inf` (torch's figures), and Svi's non-finite loss check names the site. NaN and
/// `−inf` are rejected.
#[test]
fn normal_scale_inf_is_accepted_as_in_torch() {
    let d = Normal::new(&t(&[0.0]), &t(&[f64::INFINITY])).unwrap();
    let lp = d.log_prob(&t(&[1.0])).unwrap().to_vec1::<f64>().unwrap();
    assert_eq!(lp, vec![f64::NEG_INFINITY]);
    let h = d.entropy().unwrap().to_vec1::<f64>().unwrap();
    assert_eq!(h, vec![f64::INFINITY]);
    for bad in [f64::NAN, f64::NEG_INFINITY] {
        let e = Normal::new(&t(&[0.0]), &t(&[bad])).unwrap_err();
        assert!(matches!(e.kind(), DistError::ParamSupport { .. }), "{e}");
    }
}

/// The messages docs/distributions.md shows, one per kind (without the location suffix).
#[test]
fn messages_in_the_docs() {
    let cpu = Device::Cpu;
    let msg = |r: vi_dist::Result<Box<dyn Distribution>>| r.unwrap_err().kind().to_string();
    let two = t(&[0.0, 0.0]);
    let n = Normal::new(&two, &t(&[1.0, 1.0])).unwrap();
    let expected = [
        (
            msg(Normal::new(&two, &t(&[1.0, 1.0, 1.0])).map(|d| Box::new(d) as _)),
            "Normal: parameter shapes do not broadcast: loc [2], scale [3]",
        ),
        (
            msg(MultivariateNormal::from_covariance(
                &two,
                &Tensor::eye(3, DType::F64, &cpu).unwrap(),
            )
            .map(|d| Box::new(d) as _)),
            "MultivariateNormal: parameter `loc` has shape [2], expected [.., 3] to match \
             covariance_matrix of shape [3, 3]",
        ),
        (
            msg(
                Normal::new(&two, &t(&[1.0, 1.0]).to_dtype(DType::F32).unwrap())
                    .map(|d| Box::new(d) as _),
            ),
            "Normal: parameter `scale` is F32 on cpu, expected F64 on cpu like the first \
             parameter",
        ),
        (
            n.log_prob(&t(&[0.0; 3])).unwrap_err().to_string(),
            "Normal: value of shape [3] does not fit batch shape [2] and event shape []",
        ),
        (
            n.log_prob(&t(&[0.0; 2]).to_dtype(DType::F32).unwrap())
                .unwrap_err()
                .to_string(),
            "Normal: value is F32 on cpu, expected F64 on cpu like the parameters",
        ),
        (
            msg(n.expand(&[3])),
            "Normal: cannot expand batch shape [2] to [3]",
        ),
        (
            msg(n.to_event(2).map(|d| Box::new(d) as _)),
            "Normal: to_event(2) needs at least 2 batch dims, batch shape is [2]",
        ),
        (
            msg(n
                .mask(&Tensor::new(&[1u8, 0, 1], &cpu).unwrap())
                .map(|d| Box::new(d) as _)),
            "Normal: mask of shape [3] does not broadcast with batch shape [2]",
        ),
        (
            Bernoulli::from_logits(&two)
                .unwrap()
                .rsample(
                    &[],
                    &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0),
                )
                .unwrap_err()
                .to_string(),
            "Bernoulli: has no reparameterised sampler; use `sample` (no gradient)",
        ),
        (
            Poisson::new(&two)
                .unwrap()
                .entropy()
                .unwrap_err()
                .to_string(),
            "Poisson: entropy has no closed form",
        ),
    ];
    for (got, want) in expected {
        assert_eq!(got, want);
    }
}
