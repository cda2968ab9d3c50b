//! `TransformedDistribution` against independent truths: `LogNormal` for a normal through
//! exp (values, draws and gradients), the normal with moved parameters for an affine chain
//! (density, mean, variance, entropy), finite differences for a longer chain, the logit-normal
//! CDF for draws through a sigmoid; shapes through the chain as torch computes them (base
//! dims reinterpreted, the base expanded by broadcasting parameters), `expand`, the support,
//! `Transform::same_as`, and the typed errors.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use vi_dist::transforms::{
    Affine, Compose, Exp, Identity, IndependentTransform, LowerCholesky, Sigmoid, Softplus,
    StickBreaking,
};
use vi_dist::{
    Bernoulli, Constraint, DistError, Distribution, LogNormal, MultivariateNormal, Normal,
    Transform, TransformedDistribution, biject_to,
};
use vi_test::{F32, Tol, finite_difference, stats, test_device, to_vec};

use crate::common::{Res, rng, t, tensor};

fn tol(dtype: DType) -> Tol {
    match dtype {
        DType::F64 => Tol {
            rtol: 1e-12,
            atol: 1e-12,
        },
        _ => F32,
    }
}

/// Every element of `a` against `b` (same shape) within `tol`.
fn check(what: &str, a: &Tensor, b: &Tensor, tol: Tol) -> Res {
    if a.dims() != b.dims() {
        return Err(format!("{what}: shapes {:?} vs {:?}", a.dims(), b.dims()).into());
    }
    let (x, y) = (to_vec(a)?, to_vec(b)?);
    for (i, (p, q)) in x.iter().zip(&y).enumerate() {
        if !tol.close(*p, *q) {
            return Err(format!("{what}[{i}]: {p} vs {q}").into());
        }
    }
    Ok(())
}

fn td(base: impl Distribution, transforms: Vec<Box<dyn Transform>>) -> TransformedDistribution {
    TransformedDistribution::new(Box::new(base), transforms).expect("a transformed distribution")
}

/// `TransformedDistribution(Normal, Exp)` is `LogNormal`: log densities, gradients with
/// respect to both parameters and the value, draws from one seed and their gradients.
fn agrees_with_lognormal(device: &Device, dtype: DType) -> Res {
    let loc = Var::from_tensor(&tensor(&[-0.5, 0.0, 1.5], &[3], dtype, device))?;
    let scale = Var::from_tensor(&tensor(&[0.3, 1.0, 2.5], &[3], dtype, device))?;
    let y = Var::from_tensor(&tensor(
        &[0.1, 1.0, 7.0, 2.0, 0.01, 30.0],
        &[2, 3],
        dtype,
        device,
    ))?;
    let d = td(
        Normal::new(loc.as_tensor(), scale.as_tensor())?,
        vec![Box::new(Exp)],
    );
    let ln = LogNormal::new(loc.as_tensor(), scale.as_tensor())?;
    assert_eq!((d.batch_shape(), d.event_shape()), (&[3][..], &[][..]));
    let (a, b) = (d.log_prob(y.as_tensor())?, ln.log_prob(y.as_tensor())?);
    check("log_prob", &a, &b, tol(dtype))?;
    let (ga, gb) = (a.sum_all()?.backward()?, b.sum_all()?.backward()?);
    for (name, v) in [("loc", &loc), ("scale", &scale), ("value", &y)] {
        let (p, q) = (ga.get(v.as_tensor()), gb.get(v.as_tensor()));
        check(
            &format!("grad {name}"),
            p.ok_or("no gradient")?,
            q.ok_or("no gradient")?,
            tol(dtype),
        )?;
    }
    // one seed, the same draws, and the same pathwise gradients
    let (xa, xb) = (
        d.rsample(&[4], &mut rng(7))?,
        ln.rsample(&[4], &mut rng(7))?,
    );
    assert_eq!(xa.dims(), &[4, 3]);
    check("rsample", &xa, &xb, tol(dtype))?;
    let (ga, gb) = (xa.sum_all()?.backward()?, xb.sum_all()?.backward()?);
    for v in [&loc, &scale] {
        check(
            "rsample grad",
            ga.get(v.as_tensor()).ok_or("no gradient")?,
            gb.get(v.as_tensor()).ok_or("no gradient")?,
            tol(dtype),
        )?;
    }
    let s = d.sample(&[4], &mut rng(7))?;
    check("sample", &s, &xb.detach(), tol(dtype))?;
    assert!(s.sum_all()?.backward()?.get(loc.as_tensor()).is_none());
    assert!(d.has_rsample());
    Ok(())
}
test_device!(agrees_with_lognormal);

/// An affine chain of a normal is the normal with moved parameters: density, mean, variance
/// and entropy (the three torch leaves undefined) all agree with it.
fn affine_chain_is_a_normal(device: &Device, dtype: DType) -> Res {
    let loc = tensor(&[0.0, 1.0, -2.0], &[3], dtype, device);
    let scale = tensor(&[1.0, 0.5, 2.0], &[3], dtype, device);
    let shift = tensor(&[3.0, -1.0, 0.25], &[3], dtype, device);
    let factor = tensor(&[2.0, -0.5, 3.0], &[3], dtype, device);
    // y = 1 + (-2) (shift + factor x) = (1 - 2 shift) - 2 factor x
    let d = td(
        Normal::new(&loc, &scale)?,
        vec![
            Box::new(Affine::new(shift.clone(), factor.clone())),
            Box::new(Identity),
            Box::new(Compose::new(vec![Box::new(Affine::new(1.0, -2.0))])),
        ],
    );
    let a = shift.affine(-2.0, 1.0)?;
    let b = factor.affine(-2.0, 0.0)?;
    let same = Normal::new(&(a + b.mul(&loc)?)?, &b.mul(&scale)?.abs()?)?;
    let y = tensor(&[0.3, -4.0, 2.0, 10.0, 0.0, -1.0], &[2, 3], dtype, device);
    check(
        "log_prob",
        &d.log_prob(&y)?,
        &same.log_prob(&y)?,
        tol(dtype),
    )?;
    check("mean", &d.mean()?, &same.mean()?, tol(dtype))?;
    check("variance", &d.variance()?, &same.variance()?, tol(dtype))?;
    check("entropy", &d.entropy()?, &same.entropy()?, tol(dtype))?;
    // with the last dim as one event (an affine map over vectors): summed over it
    let d1 = td(
        Normal::new(&loc, &scale)?,
        vec![Box::new(
            Affine::new(shift.clone(), factor.clone()).with_event_dim(1),
        )],
    );
    assert_eq!((d1.batch_shape(), d1.event_shape()), (&[][..], &[3][..]));
    let same1 = Normal::new(&(&shift + factor.mul(&loc)?)?, &factor.mul(&scale)?.abs()?)?;
    check(
        "log_prob, event dim 1",
        &d1.log_prob(&y)?,
        &same1.log_prob(&y)?.sum(1)?,
        tol(dtype),
    )?;
    check(
        "entropy, event dim 1",
        &d1.entropy()?,
        &same1.entropy()?.sum(0)?,
        tol(dtype),
    )?;
    check("mean, event dim 1", &d1.mean()?, &same1.mean()?, tol(dtype))?;
    // an empty chain is the base itself
    let d0 = td(Normal::new(&loc, &scale)?, vec![]);
    let n = Normal::new(&loc, &scale)?;
    check(
        "empty chain",
        &d0.log_prob(&y)?,
        &n.log_prob(&y)?,
        tol(dtype),
    )?;
    check(
        "empty chain entropy",
        &d0.entropy()?,
        &n.entropy()?,
        tol(dtype),
    )?;
    assert!(d0.support().same_as(&Constraint::Real));
    Ok(())
}
test_device!(affine_chain_is_a_normal);

/// Where the chain is not affine, mean, variance and entropy are the typed `Undefined`.
#[test]
fn moments_of_a_nonlinear_chain_are_undefined() -> Res {
    let d = td(
        Normal::new(&t(&[0.0]), &t(&[1.0]))?,
        vec![Box::new(Affine::new(1.0, 2.0)), Box::new(Sigmoid)],
    );
    for (what, r) in [
        ("mean", d.mean()),
        ("variance", d.variance()),
        ("entropy", d.entropy()),
    ] {
        match r.map_err(DistError::into_kind) {
            Err(DistError::Undefined {
                dist: "TransformedDistribution",
                what: w,
            }) => assert_eq!(w, what),
            other => panic!("{what}: {other:?}"),
        }
    }
    Ok(())
}

/// `log_prob` of Normal → Affine(tensor) → Exp against central finite differences of the same
/// function in every input (the base's parameters, the affine map's tensors, the value).
#[test]
fn chain_gradients_match_finite_differences() -> Res {
    let inputs = [
        vec![0.2, -0.4],  // loc
        vec![0.7, 1.3],   // scale
        vec![0.5, -1.0],  // affine loc
        vec![1.5, -0.75], // affine scale
        vec![0.8, 2.5],   // value
    ];
    let lp = |v: &[Tensor]| -> vi_dist::Result<Tensor> {
        let d = TransformedDistribution::new(
            Box::new(Normal::new(&v[0], &v[1])?),
            vec![
                Box::new(Affine::new(v[2].clone(), v[3].clone())),
                Box::new(Exp),
            ],
        )?;
        Ok(d.log_prob(&v[4])?.sum_all()?)
    };
    let vars: Vec<Var> = inputs
        .iter()
        .map(|x| Var::new(x.as_slice(), &Device::Cpu))
        .collect::<Result<_, _>>()?;
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let grads = lp(&tensors)?.backward()?;
    for (k, var) in vars.iter().enumerate() {
        let got = to_vec(grads.get(var.as_tensor()).ok_or("no gradient")?)?;
        let want = finite_difference(&inputs[k], 1e-6, |x| {
            let mut ts = tensors.clone();
            ts[k] = t(x);
            lp(&ts)
                .and_then(|s| Ok(s.to_scalar::<f64>()?))
                .unwrap_or(f64::NAN)
        });
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() < 1e-6 * (1.0 + w.abs()),
                "input {k}[{i}]: {g} vs {w}"
            );
        }
    }
    Ok(())
}

/// Draws through a sigmoid follow the logit-normal law: a KS test against
/// `Φ((logit y − μ) / σ)`.
#[test]
fn sigmoid_draws_follow_the_logit_normal() -> Res {
    let (mu, sigma) = (0.4, 1.7);
    let d = td(
        Normal::new(&t(&[mu]), &t(&[sigma]))?,
        vec![Box::new(Sigmoid)],
    );
    let draws = to_vec(&d.sample(&[4000], &mut rng(3))?)?;
    assert!(draws.iter().all(|y| *y > 0.0 && *y < 1.0));
    let cdf = |y: f64| {
        let z = ((y / (1.0 - y)).ln() - mu) / sigma;
        0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
    };
    stats::check_ks(&draws, cdf, 1e-3)?;
    Ok(())
}

/// Shapes as torch's constructor computes them.
#[test]
fn shapes_through_the_chain() -> Res {
    let z = |s: &[usize]| Tensor::zeros(s, DType::F64, &Device::Cpu).expect("zeros");
    let o = |s: &[usize]| Tensor::ones(s, DType::F64, &Device::Cpu).expect("ones");
    let r = &mut rng(0);
    // stick breaking needs one event dim: the base's last batch dim becomes it
    let d = td(
        Normal::new(&z(&[4, 2]), &o(&[4, 2]))?,
        vec![Box::new(StickBreaking)],
    );
    assert_eq!((d.batch_shape(), d.event_shape()), (&[4][..], &[3][..]));
    assert_eq!(d.base().describe(), "Independent(Normal, 1)");
    let x = d.rsample(&[5], r)?;
    assert_eq!(x.dims(), &[5, 4, 3]);
    assert_eq!(d.log_prob(&x)?.dims(), &[5, 4]);
    assert!(d.support().same_as(&Constraint::Simplex));
    // a tensor loc broadcasts the scalar base to its shape
    let d = td(
        Normal::new(&z(&[]), &o(&[]))?,
        vec![Box::new(Affine::new(t(&[1.0, 2.0, 3.0]), 1.0))],
    );
    assert_eq!((d.batch_shape(), d.event_shape()), (&[3][..], &[][..]));
    assert_eq!(d.base().batch_shape(), &[3]);
    assert_eq!(d.sample(&[2], r)?.dims(), &[2, 3]);
    // a vector base keeps its event through an elementwise map
    let mvn = MultivariateNormal::from_diag_scale(&z(&[2, 3]), &o(&[2, 3]))?;
    let d = td(mvn, vec![Box::new(Exp)]);
    assert_eq!((d.batch_shape(), d.event_shape()), (&[2][..], &[3][..]));
    assert_eq!(d.support().to_string(), "independent(positive, 1)");
    let y = d.sample(&[], r)?;
    assert_eq!(d.log_prob(&y)?.dims(), &[2]);
    // a vector-event affine map after an elementwise one
    let d = td(
        Normal::new(&z(&[4, 3]), &o(&[4, 3]))?,
        vec![
            Box::new(Exp),
            Box::new(Affine::new(0.0, 2.0).with_event_dim(1)),
        ],
    );
    assert_eq!((d.batch_shape(), d.event_shape()), (&[4][..], &[3][..]));
    assert_eq!(d.support().to_string(), "independent(real, 1)");
    let y = d.sample(&[2], r)?;
    let lp = d.log_prob(&y)?;
    assert_eq!(lp.dims(), &[2, 4]);
    // = Σ over the event of the elementwise log-normal density of y / 2, minus 3 ln 2
    let ln = LogNormal::new(&z(&[4, 3]), &o(&[4, 3]))?;
    let want = (ln.log_prob(&y.affine(0.5, 0.0)?)?.sum(2)? - 3.0 * 2f64.ln())?;
    check("log_prob", &lp, &want, tol(DType::F64))?;
    // a value with extra leading dims that broadcast against the batch
    let d = td(Normal::new(&z(&[3]), &o(&[3]))?, vec![Box::new(Softplus)]);
    assert_eq!(d.log_prob(&o(&[2, 1]))?.dims(), &[2, 3]);
    Ok(())
}

/// `expand` broadcasts the base through the inverse shapes; the result scores and draws in
/// the new batch shape.
#[test]
fn expand_broadcasts_the_batch() -> Res {
    let d = td(
        Normal::new(&t(&[0.0, 1.0, 2.0]), &t(&[1.0, 1.0, 2.0]))?,
        vec![
            Box::new(Affine::new(t(&[0.5, 0.5, 0.5]), 2.0)),
            Box::new(Exp),
        ],
    );
    let e = d.expand(&[2, 3])?;
    assert_eq!((e.batch_shape(), e.event_shape()), (&[2, 3][..], &[][..]));
    assert_eq!(
        e.describe(),
        "TransformedDistribution(Normal, [affine, exp])"
    );
    let y = Tensor::new(&[[0.5f64, 2.0, 9.0], [1.5, 3.0, 20.0]], &Device::Cpu)?;
    check(
        "expanded log_prob",
        &e.log_prob(&y)?,
        &d.log_prob(&y)?,
        tol(DType::F64),
    )?;
    assert_eq!(e.sample(&[4], &mut rng(1))?.dims(), &[4, 2, 3]);
    let line = line!() + 1;
    let err = d.expand(&[2]).unwrap_err();
    assert!(matches!(
        err.kind(),
        DistError::Expand {
            dist: "TransformedDistribution",
            ..
        }
    ));
    assert_eq!(err.location().map(|l| l.line()), Some(line));
    // a chain with reinterpreted dims expands its batch only
    let s = td(
        Normal::new(
            &Tensor::zeros(2, DType::F64, &Device::Cpu)?,
            &Tensor::ones(2, DType::F64, &Device::Cpu)?,
        )?,
        vec![Box::new(StickBreaking)],
    );
    let e = s.expand(&[5])?;
    assert_eq!((e.batch_shape(), e.event_shape()), (&[5][..], &[3][..]));
    assert_eq!(e.rsample(&[], &mut rng(2))?.dims(), &[5, 3]);
    Ok(())
}

/// The support is the last codomain; `log_prob` checks the value against it and names the
/// distribution; `biject_to` chains report the constraint itself.
#[test]
fn support_and_value_checks() -> Res {
    let d = td(
        Normal::new(&t(&[0.0, 1.0]), &t(&[1.0, 1.0]))?,
        vec![Box::new(Sigmoid)],
    );
    assert!(d.support().same_as(&Constraint::UnitInterval));
    let err = d.log_prob(&t(&[0.5, 1.5])).unwrap_err();
    match err.kind() {
        DistError::ValueSupport {
            dist, constraint, ..
        } => assert_eq!(
            (*dist, constraint.as_str()),
            ("TransformedDistribution", "unit_interval")
        ),
        other => panic!("{other}"),
    }
    let c = Constraint::interval(-1.0, 3.0);
    let d = td(
        Normal::new(&t(&[0.0, 1.0]), &t(&[1.0, 1.0]))?,
        vec![biject_to(&c)?],
    );
    assert!(d.support().same_as(&c));
    let y = d.rsample(&[100], &mut rng(4))?;
    assert!(c.all(&y)?);
    assert_eq!(d.log_prob(&y)?.dims(), &[100, 2]);
    // a value the base cannot have (a gamma base has no mass below 0 = ln 1): the base's error
    let g = vi_dist::Gamma::new(&t(&[2.0]), &t(&[1.0]))?;
    let d = td(g, vec![Box::new(Exp)]);
    assert!(d.log_prob(&t(&[2.0])).is_ok());
    assert!(matches!(
        d.log_prob(&t(&[0.5])).unwrap_err().kind(),
        DistError::ValueSupport { dist: "Gamma", .. }
    ));
    Ok(())
}

/// Typed errors at construction, located at the caller's line.
#[test]
fn constructor_errors() -> Res {
    let n = Normal::new(&t(&[0.0, 1.0]), &t(&[1.0, 1.0]))?;
    // a discrete base
    let b = Bernoulli::from_probs(&t(&[0.5]))?;
    let line = line!() + 1;
    let r = TransformedDistribution::new(Box::new(b), vec![Box::new(Exp)]);
    let err = r.unwrap_err();
    assert_eq!(err.location().map(|l| l.line()), Some(line));
    assert!(matches!(
        err.kind(),
        DistError::Invalid {
            dist: "TransformedDistribution",
            ..
        }
    ));
    assert!(err.to_string().contains("discrete"), "{err}");
    // a transform that is not one-to-one
    let err =
        TransformedDistribution::new(n.clone_box(), vec![Box::new(LowerCholesky)]).unwrap_err();
    assert!(matches!(
        err.kind(),
        DistError::Transform {
            transform: "lower_cholesky",
            ..
        }
    ));
    let wrapped = IndependentTransform::new(Box::new(vi_dist::transforms::PositiveDefinite), 1);
    assert!(TransformedDistribution::new(n.clone_box(), vec![Box::new(wrapped)]).is_err());
    // too few dims for stick breaking
    let scalar = Normal::new(
        &Tensor::new(0.0f64, &Device::Cpu)?,
        &Tensor::new(1.0f64, &Device::Cpu)?,
    )?;
    let err =
        TransformedDistribution::new(Box::new(scalar), vec![Box::new(StickBreaking)]).unwrap_err();
    assert_eq!(
        err.kind().to_string(),
        "TransformedDistribution: the transforms (stick_breaking) need at least 1 dims per draw, \
         the base Normal has shape [] (batch [], event [])"
    );
    // parameters that do not broadcast with the base
    let err = TransformedDistribution::new(
        n.clone_box(),
        vec![Box::new(Affine::new(t(&[1.0, 2.0, 3.0]), 1.0))],
    )
    .unwrap_err();
    assert!(matches!(
        err.kind(),
        DistError::Transform {
            transform: "affine",
            ..
        }
    ));
    // rsample without a reparameterised base
    let d = TransformedDistribution::new(Box::new(n.without_rsample()), vec![Box::new(Exp)])?;
    assert!(!d.has_rsample());
    assert!(matches!(
        d.rsample(&[], &mut rng(0)).unwrap_err(),
        DistError::NoRsample {
            dist: "TransformedDistribution"
        }
    ));
    assert_eq!(d.sample(&[3], &mut rng(0))?.dims(), &[3, 2]);
    Ok(())
}

/// `same_as` compares types and parameters through compositions and wrappers.
#[test]
fn transform_identity() -> Res {
    let a = Affine::new(t(&[1.0, 2.0]), 0.5);
    assert!(a.same_as(&Affine::new(t(&[1.0, 2.0]), 0.5)));
    assert!(!a.same_as(&Affine::new(t(&[1.0, 2.5]), 0.5)));
    assert!(!a.same_as(&Affine::new(t(&[1.0, 2.0]), 0.5).with_event_dim(1)));
    assert!(!Affine::new(1.0, 2.0).same_as(&Affine::new(t(&[1.0]), 2.0)));
    let chain = || Compose::new(vec![Box::new(Exp), Box::new(Affine::new(1.0, 2.0))]);
    assert!(chain().same_as(&chain()));
    assert!(!chain().same_as(&Compose::new(vec![Box::new(Exp)])));
    assert!(!chain().same_as(&Compose::new(vec![
        Box::new(Affine::new(1.0, 2.0)),
        Box::new(Exp)
    ])));
    let ind = |n| IndependentTransform::new(Box::new(Sigmoid), n);
    assert!(ind(1).same_as(&ind(1)) && !ind(1).same_as(&ind(2)));
    assert!(!Sigmoid.same_as(&Softplus) && StickBreaking.same_as(&StickBreaking));
    for c in [
        Constraint::Positive,
        Constraint::interval(-1.0, 2.0),
        Constraint::greater_than(3.0),
        Constraint::Simplex,
        Constraint::Real.independent(1),
    ] {
        assert!(biject_to(&c)?.same_as(biject_to(&c)?.as_ref()), "{c}");
    }
    assert!(
        !biject_to(&Constraint::interval(-1.0, 2.0))?
            .same_as(biject_to(&Constraint::interval(-1.0, 3.0))?.as_ref())
    );
    // a transform of a user's type: the same object only (torch's default)
    #[derive(Debug)]
    struct Mine(f64);
    impl Transform for Mine {
        fn name(&self) -> &'static str {
            "mine"
        }
        fn domain(&self) -> Constraint {
            Constraint::Real
        }
        fn codomain(&self) -> Constraint {
            Constraint::Real
        }
        fn forward(&self, x: &Tensor) -> vi_dist::Result<Tensor> {
            Ok(x.affine(1.0, self.0)?)
        }
        fn inverse(&self, y: &Tensor) -> vi_dist::Result<Tensor> {
            Ok(y.affine(1.0, -self.0)?)
        }
        fn log_abs_det_jacobian(&self, x: &Tensor, _y: &Tensor) -> vi_dist::Result<Tensor> {
            Ok(x.zeros_like()?)
        }
    }
    let shared: Arc<dyn Transform> = Arc::new(Mine(1.0));
    assert!(shared.same_as(shared.clone().as_ref()));
    let (a, b) = (Mine(1.0), Mine(1.0));
    assert!(a.same_as(&a) && !a.same_as(&b));
    Ok(())
}

/// `describe` and the shared constructor.
#[test]
fn describe_and_shared_transforms() -> Res {
    let exp: Arc<dyn Transform> = Arc::new(Exp);
    let n = Normal::new(&t(&[0.0, 1.0]), &t(&[1.0, 1.0]))?;
    let d =
        TransformedDistribution::with_shared(n.to_event(1)?.clone_box(), vec![exp.clone(), exp])?;
    assert_eq!(
        d.describe(),
        "TransformedDistribution(Independent(Normal, 1), [exp, exp])"
    );
    assert_eq!((d.batch_shape(), d.event_shape()), (&[][..], &[2][..]));
    // y = exp(exp(x)): log p(y) = log N(ln ln y) − ln y − ln ln y, summed over the event
    let y = t(&[2.0, 5.0]);
    let lly = y.log()?.log()?;
    let want = (n.log_prob(&lly)? - y.log()? - &lly)?.sum(0)?;
    check("log_prob", &d.log_prob(&y)?, &want, tol(DType::F64))?;
    Ok(())
}

/// Masked-out placeholders are replaced by the image of a point of the base's support, not the
/// codomain's point: `Uniform(1, 2)` through exp lives on (e, e²), where the codomain's point
/// 1 (ln 1 = 0) lies outside the base's support.
#[test]
fn masked_placeholders_use_a_point_of_the_law() -> Res {
    let u = vi_dist::Uniform::new(&t(&[1.0, 1.0, 1.0]), &t(&[2.0, 2.0, 2.0]))?;
    let d = td(u, vec![Box::new(Exp)]);
    let y = t(&[1.5f64.exp(), f64::NAN, 1.2f64.exp()]);
    let keep = Tensor::new(&[1u8, 0, 1], &Device::Cpu)?;
    let m = d.mask(&keep)?;
    let lp = to_vec(&m.log_prob(&y)?)?;
    // log p(y) = −ln y on (e, e²) for a unit-width uniform base
    assert!(
        (lp[0] + 1.5).abs() < 1e-12 && lp[1] == 0.0 && (lp[2] + 1.2).abs() < 1e-12,
        "{lp:?}"
    );
    // inside an Independent and an Expanded too
    let e = vi_dist::Expanded::new(m.to_event(1)?.clone_box(), &[2])?;
    let lp = to_vec(&e.log_prob(&y)?)?;
    assert!(lp.iter().all(|v| (v + 2.7).abs() < 1e-12), "{lp:?}");
    Ok(())
}
