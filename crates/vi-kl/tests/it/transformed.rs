//! `TransformedDistribution ‖ TransformedDistribution`: the KL of the bases through the same
//! chain (torch's rule), checked against the bases' closed form and against the Monte Carlo
//! estimate of the transformed pair (whose log densities carry the Jacobians, so it is an
//! independent truth); different chains and bases without a closed form are `NoClosedForm`.

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_dist::transforms::{Affine, Compose, Exp, Identity, Sigmoid, Softplus, StickBreaking};
use vi_dist::{
    Cauchy, Constraint, Distribution, LogNormal, Normal, Transform, TransformedDistribution,
    biject_to,
};
use vi_kl::{KlError, kl_divergence, kl_monte_carlo_with_error};
use vi_test::test_device;

use crate::common::{Res, assert_within, host, tensor};

fn td(
    base: impl Distribution,
    transforms: Vec<Box<dyn Transform>>,
) -> vi_dist::Result<TransformedDistribution> {
    TransformedDistribution::new(Box::new(base), transforms)
}

/// A chain made fresh for each side (equal by `same_as`, never the same objects).
type Chain = fn() -> Vec<Box<dyn Transform>>;

fn chains() -> Vec<(&'static str, Chain)> {
    vec![
        ("exp", || vec![Box::new(Exp)]),
        ("affine, sigmoid", || {
            vec![Box::new(Affine::new(0.5, -2.0)), Box::new(Sigmoid)]
        }),
        ("biject_to(interval(-1, 3))", || {
            vec![biject_to(&Constraint::interval(-1.0, 3.0)).expect("a bijection")]
        }),
        ("softplus, affine(event 1)", || {
            vec![
                Box::new(Softplus),
                Box::new(Affine::new(1.0, 3.0).with_event_dim(1)),
            ]
        }),
    ]
}

/// Through the same chain, the KL of the transformed pair is the bases' (summed over the dims
/// the chain makes event dims), and gradients reach both sides' parameters.
fn same_chain_is_the_kl_of_the_bases(dev: &Device, dtype: DType) -> Res {
    let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
    let v = |x: &[f64]| Var::from_tensor(&tensor(x, &[2, 3], dtype, dev));
    let (lp, sp) = (
        v(&[0.1, -0.3, 0.7, 1.2, 0.0, -2.0])?,
        v(&[0.5, 1.0, 1.5, 0.8, 2.0, 0.3])?,
    );
    let (lq, sq) = (
        v(&[0.0, 0.4, -0.2, 1.0, 0.5, -1.0])?,
        v(&[1.0, 0.7, 1.2, 1.1, 1.5, 0.6])?,
    );
    let p = Normal::new(lp.as_tensor(), sp.as_tensor())?;
    let q = Normal::new(lq.as_tensor(), sq.as_tensor())?;
    let base = kl_divergence(&p, &q)?;
    for (name, chain) in chains() {
        let (tp, tq) = (td(p.clone(), chain())?, td(q.clone(), chain())?);
        let kl = kl_divergence(&tp, &tq)?;
        let want = if tp.event_shape().is_empty() {
            base.clone()
        } else {
            base.sum(1)?
        };
        assert_eq!(kl.dims(), want.dims(), "{name}");
        assert_within(&host(&kl), &host(&want), tol, name);
        let grads = kl.sum_all()?.backward()?;
        for var in [&lp, &sp, &lq, &sq] {
            assert!(grads.get(var.as_tensor()).is_some(), "{name}: a gradient");
        }
    }
    // stick breaking reinterprets the last batch dim: the KL sums the bases' over it
    let (tp, tq) = (
        td(p.clone(), vec![Box::new(StickBreaking)])?,
        td(q.clone(), vec![Box::new(StickBreaking)])?,
    );
    assert_eq!((tp.batch_shape(), tp.event_shape()), (&[2][..], &[4][..]));
    assert_within(
        &host(&kl_divergence(&tp, &tq)?),
        &host(&base.sum(1)?),
        tol,
        "stick breaking",
    );
    Ok(())
}
test_device!(same_chain_is_the_kl_of_the_bases);

/// The closed form against the Monte Carlo estimate over draws of the transformed `p`, scored
/// by both transformed log densities (Jacobians included): within 4 standard errors.
#[test]
fn closed_form_matches_monte_carlo() -> Res {
    let dev = Device::Cpu;
    let p = Normal::new(
        &tensor(&[0.3, -0.5, 1.0], &[3], DType::F64, &dev),
        &tensor(&[0.6, 1.2, 0.9], &[3], DType::F64, &dev),
    )?;
    let q = Normal::new(
        &tensor(&[0.0, 0.2, 0.5], &[3], DType::F64, &dev),
        &tensor(&[1.0, 0.8, 1.3], &[3], DType::F64, &dev),
    )?;
    let mut all: Vec<(&str, Chain)> = chains();
    all.push(("stick breaking", || vec![Box::new(StickBreaking)]));
    for (i, (name, chain)) in all.into_iter().enumerate() {
        let (tp, tq) = (td(p.clone(), chain())?, td(q.clone(), chain())?);
        let kl = host(&kl_divergence(&tp, &tq)?);
        let mut rng = ChaCha8Rng::seed_from_u64(40 + i as u64);
        let mc = kl_monte_carlo_with_error(&tp, &tq, 40_000, &mut rng)?;
        let (est, se) = (host(&mc.estimate), host(&mc.std_error));
        for ((k, m), s) in kl.iter().zip(&est).zip(&se) {
            assert!(
                (k - m).abs() <= 4.0 * s,
                "{name}: closed form {kl:?}, Monte Carlo {est:?} ± {se:?}"
            );
        }
    }
    Ok(())
}

/// A composition is the same map as its parts in a row; identities change nothing.
#[test]
fn compositions_are_flattened() -> Res {
    let t = |v: &[f64]| Tensor::new(v, &Device::Cpu);
    let p = Normal::new(&t(&[0.0, 1.0])?, &t(&[1.0, 2.0])?)?;
    let q = Normal::new(&t(&[0.5, 0.0])?, &t(&[1.5, 1.0])?)?;
    let a = td(
        p.clone(),
        vec![Box::new(Compose::new(vec![
            Box::new(Exp),
            Box::new(Affine::new(1.0, 2.0)),
        ]))],
    )?;
    let b = td(
        q.clone(),
        vec![
            Box::new(Identity),
            Box::new(Exp),
            Box::new(Compose::new(vec![Box::new(Affine::new(1.0, 2.0))])),
        ],
    )?;
    assert_within(
        &host(&kl_divergence(&a, &b)?),
        &host(&kl_divergence(&p, &q)?),
        1e-12,
        "flattened",
    );
    Ok(())
}

/// Different chains, a base pair without a closed form, or a transformed distribution against
/// another family: `NoClosedForm` naming the pair (what sends `TraceMeanFieldElbo` to Monte
/// Carlo); different event shapes: `EventShape`.
#[test]
fn no_closed_form_otherwise() -> Res {
    let t = |v: &[f64]| Tensor::new(v, &Device::Cpu);
    let p = Normal::new(&t(&[0.0, 1.0])?, &t(&[1.0, 2.0])?)?;
    let q = Normal::new(&t(&[0.5, 0.0])?, &t(&[1.5, 1.0])?)?;
    let no = |r: vi_kl::Result<Tensor>| match r {
        Err(e) if e.is_no_closed_form() => e.to_string(),
        other => panic!("expected NoClosedForm, got {other:?}"),
    };
    let msg = no(kl_divergence(
        &td(p.clone(), vec![Box::new(Exp)])?,
        &td(q.clone(), vec![Box::new(Softplus)])?,
    ));
    assert_eq!(
        msg,
        "no closed-form KL(TransformedDistribution(Normal, [exp]) ‖ \
         TransformedDistribution(Normal, [softplus])) is registered"
    );
    // the same parts in another order, other parameters, a longer chain
    for (a, b) in [
        (
            vec![
                Box::new(Exp) as Box<dyn Transform>,
                Box::new(Affine::new(0.0, 2.0)),
            ],
            vec![
                Box::new(Affine::new(0.0, 2.0)) as Box<dyn Transform>,
                Box::new(Exp),
            ],
        ),
        (
            vec![Box::new(Affine::new(0.0, 2.0)) as Box<dyn Transform>],
            vec![Box::new(Affine::new(0.0, 2.5)) as Box<dyn Transform>],
        ),
        (
            vec![Box::new(Exp) as Box<dyn Transform>],
            vec![Box::new(Exp) as Box<dyn Transform>, Box::new(Exp)],
        ),
    ] {
        no(kl_divergence(&td(p.clone(), a)?, &td(q.clone(), b)?));
    }
    // same chain, but Normal ‖ Cauchy has no closed form: named by the outer pair
    let c = Cauchy::new(&t(&[0.5, 0.0])?, &t(&[1.5, 1.0])?)?;
    let msg = no(kl_divergence(
        &td(p.clone(), vec![Box::new(Exp)])?,
        &td(c, vec![Box::new(Exp)])?,
    ));
    assert!(
        msg.contains("TransformedDistribution(Cauchy, [exp])"),
        "{msg}"
    );
    // torch has no rule against the family of the same law
    let ln = LogNormal::new(&t(&[0.5, 0.0])?, &t(&[1.5, 1.0])?)?;
    no(kl_divergence(&td(p.clone(), vec![Box::new(Exp)])?, &ln));
    // event [2] against event []
    let r = kl_divergence(
        &td(
            p.clone(),
            vec![Box::new(Affine::new(0.0, 1.0).with_event_dim(1))],
        )?,
        &td(q.clone(), vec![Box::new(Affine::new(0.0, 1.0))])?,
    );
    assert!(matches!(r, Err(KlError::EventShape { .. })), "{r:?}");
    Ok(())
}
