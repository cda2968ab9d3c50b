//! Transforms and `transform_to`: round trips, support of the forward map (also at extreme
//! inputs), `log_abs_det_jacobian` against the log-determinant of the Jacobian built by autodiff
//! (row by row with `backward()`, in f64), gradients to the unconstrained input, typed errors.
//!
//! Where a transform changes the number of coordinates, the Jacobian is taken of its square
//! reparameterisation as torch's tests do: stick breaking against the first k − 1 outputs, the
//! matrix transforms between lower triangles.

use std::error::Error;

use candle_core::{D, DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_dist::transforms::{
    Affine, Compose, Exp, Identity, IndependentTransform, LowerCholesky, PositiveDefinite, Sigmoid,
    Softplus, StickBreaking,
};
use vi_dist::{
    Bound, Constraint, DistError, Transform, biject_to, standard_normal, transform_to,
    uniform_open01,
};
use vi_test::to_vec;

use crate::common::{Res, tensor};

/// Which coordinates of an event take part in the square Jacobian.
#[derive(Clone, Copy, Debug)]
enum Square {
    /// Every coordinate.
    All,
    /// All but the last coordinate of each vector (the simplex's dependent one).
    DropLast,
    /// The lower triangle, diagonal included, of each matrix.
    LowerTri,
}

impl Square {
    fn select(self, event: &[usize]) -> Vec<usize> {
        let size: usize = event.iter().product();
        let last = event.last().copied().unwrap_or(1);
        (0..size)
            .filter(|&i| match self {
                Square::All => true,
                Square::DropLast => i % last != last - 1,
                Square::LowerTri => (i / last) % last >= i % last,
            })
            .collect()
    }
}

struct Case {
    name: String,
    t: Box<dyn Transform>,
    /// The set `forward` must land in.
    support: Constraint,
    x_shape: Vec<usize>,
    sq_in: Square,
    sq_out: Square,
    /// Largest |x| for the extreme-input check.
    extreme: f64,
    /// Standard deviation of the random unconstrained inputs.
    x_scale: f64,
}

const BIG: f64 = 1e4;

/// Input scale for the positive-definite cases: with x ~ 1.5 N(0, 1) some L Lᵀ have condition
/// numbers near 1e5, and their f32 Cholesky factor recovers ln Lᵢᵢ only to ~3e-3.
const PD_SCALE: f64 = 0.7;

fn case(name: &str, t: Box<dyn Transform>, support: Constraint, x_shape: &[usize]) -> Case {
    Case {
        name: name.to_string(),
        t,
        support,
        x_shape: x_shape.to_vec(),
        sq_in: Square::All,
        sq_out: Square::All,
        extreme: BIG,
        x_scale: 1.5,
    }
}

/// The transforms themselves, with the set their `forward` lands in.
fn transform_cases(device: &Device, dtype: DType) -> candle_core::Result<Vec<Case>> {
    let loc = tensor(&[0.5, -1.0], &[2], dtype, device);
    let scale = tensor(&[2.0, -0.25], &[2], dtype, device);
    let real = Constraint::Real;
    let mut v = vec![
        case("identity", Box::new(Identity), real.clone(), &[3, 2]),
        case("exp", Box::new(Exp), Constraint::Positive, &[3, 2]),
        case(
            "sigmoid",
            Box::new(Sigmoid),
            Constraint::UnitInterval,
            &[3, 2],
        ),
        case(
            "softplus",
            Box::new(Softplus),
            Constraint::Positive,
            &[3, 2],
        ),
        case(
            "affine_scalar",
            Box::new(Affine::new(1.5, -2.0)),
            real.clone(),
            &[3, 2],
        ),
        case(
            "affine_tensor",
            Box::new(Affine::new(loc.clone(), scale.clone())),
            real.clone(),
            &[3, 2],
        ),
        case(
            "affine_event1",
            Box::new(Affine::new(loc, scale).with_event_dim(1)),
            real.clone().independent(1),
            &[3, 2],
        ),
        case(
            "compose_exp_affine",
            Box::new(Compose::new(vec![
                Box::new(Exp),
                Box::new(Affine::new(2.0, 3.0)),
            ])),
            // without transform_to's clamp, 2 + e^-1e4 rounds to 2
            Constraint::GreaterThanEq(Bound::Scalar(2.0)),
            &[4],
        ),
        case(
            "independent_sigmoid",
            Box::new(IndependentTransform::new(Box::new(Sigmoid), 1)),
            Constraint::UnitInterval.independent(1),
            &[2, 3],
        ),
    ];
    let mut sb = case(
        "stick_breaking",
        Box::new(StickBreaking),
        Constraint::Simplex,
        &[2, 4],
    );
    sb.sq_out = Square::DropLast;
    v.push(sb);
    // affine (event dim 0) then stick breaking (event dim 1): the chain has event dim 1 and the
    // affine log-determinant is summed over the vector
    let mut chain = case(
        "compose_affine_stick_breaking",
        Box::new(Compose::new(vec![
            Box::new(Affine::new(0.5, -2.0)),
            Box::new(StickBreaking),
        ])),
        Constraint::Simplex,
        &[3, 3],
    );
    chain.sq_out = Square::DropLast;
    v.push(chain);
    let mut lc = case(
        "lower_cholesky",
        Box::new(LowerCholesky),
        Constraint::LowerCholesky,
        &[2, 3, 3],
    );
    lc.sq_in = Square::LowerTri;
    lc.sq_out = Square::LowerTri;
    v.push(lc);
    let mut pd = case(
        "positive_definite",
        Box::new(PositiveDefinite),
        Constraint::PositiveDefinite,
        &[2, 3, 3],
    );
    pd.sq_in = Square::LowerTri;
    pd.sq_out = Square::LowerTri;
    // L Lᵀ of a factor with entries e^{±30} is numerically singular: no finite precision keeps it
    // positive definite, so the extreme check stays in a range where it is well conditioned.
    pd.extreme = 2.0;
    pd.x_scale = PD_SCALE;
    v.push(pd);
    Ok(v)
}

/// Every constraint `transform_to` covers, with the shape of the unconstrained input.
fn constraint_cases(
    device: &Device,
    dtype: DType,
) -> candle_core::Result<Vec<(Constraint, Vec<usize>)>> {
    let low = tensor(&[-1.0, 0.0, 2.0], &[3], dtype, device);
    let high = tensor(&[1.0, 0.5, 10.0], &[3], dtype, device);
    // bounds far from 0 make the f32 round trip ill-conditioned (1000 + e^-4 keeps 3 digits of
    // e^-4): they are checked for the support only, in `large_bounds_stay_in_support`
    let b = tensor(&[-3.0, 0.0, 20.0], &[3], dtype, device);
    Ok(vec![
        (Constraint::Real, vec![4, 3]),
        (Constraint::Positive, vec![4, 3]),
        (Constraint::NonNegative, vec![4, 3]),
        (Constraint::UnitInterval, vec![4, 3]),
        (Constraint::interval(-2.0, 5.0), vec![4, 3]),
        (Constraint::interval(0.1, 0.3), vec![4, 3]),
        (Constraint::interval(low.clone(), high.clone()), vec![4, 3]),
        (Constraint::interval(-1.0, high.clone()), vec![4, 3]),
        (
            Constraint::HalfOpenInterval {
                low: Bound::Scalar(0.0),
                high: Bound::Scalar(2.0),
            },
            vec![4, 3],
        ),
        (
            Constraint::HalfOpenInterval {
                low: Bound::Tensor(low.clone()),
                high: Bound::Tensor(high),
            },
            vec![4, 3],
        ),
        (Constraint::greater_than(3.0), vec![4, 3]),
        (Constraint::greater_than(b.clone()), vec![4, 3]),
        (Constraint::GreaterThanEq(Bound::Scalar(-1.0)), vec![4, 3]),
        (
            Constraint::GreaterThanEq(Bound::Tensor(b.clone())),
            vec![4, 3],
        ),
        (Constraint::LessThan(Bound::Scalar(2.0)), vec![4, 3]),
        (Constraint::LessThan(Bound::Tensor(b)), vec![4, 3]),
        (Constraint::Simplex, vec![4, 3]),
        (Constraint::LowerCholesky, vec![2, 3, 3]),
        (Constraint::PositiveDefinite, vec![2, 3, 3]),
        (Constraint::Positive.independent(1), vec![4, 3]),
        (Constraint::interval(low, 5.0).independent(2), vec![2, 4, 3]),
        (Constraint::Simplex.independent(1), vec![2, 3, 4]),
        (Constraint::LowerCholesky.independent(1), vec![2, 2, 2]),
        // three batch dims: more than candle's matmul takes
        (
            Constraint::PositiveDefinite.independent(1),
            vec![2, 2, 2, 3, 3],
        ),
    ])
}

fn base_of(c: &Constraint) -> &Constraint {
    match c {
        Constraint::Independent { base, .. } => base_of(base),
        other => other,
    }
}

fn constraint_case(c: Constraint, x_shape: Vec<usize>) -> R2<Case> {
    let t = transform_to(&c)?;
    let (sq_in, sq_out, extreme, x_scale) = match base_of(&c) {
        Constraint::Simplex => (Square::All, Square::DropLast, BIG, 1.5),
        Constraint::LowerCholesky => (Square::LowerTri, Square::LowerTri, BIG, 1.5),
        Constraint::PositiveDefinite => (Square::LowerTri, Square::LowerTri, 2.0, PD_SCALE),
        _ => (Square::All, Square::All, BIG, 1.5),
    };
    Ok(Case {
        name: format!("transform_to({c})"),
        t,
        support: c,
        x_shape,
        sq_in,
        sq_out,
        extreme,
        x_scale,
    })
}

type R2<T> = std::result::Result<T, Box<dyn Error>>;

fn bound_tensor(b: &Bound, like: &Tensor) -> candle_core::Result<Tensor> {
    match b {
        Bound::Scalar(v) => Tensor::new(*v, like.device())?.to_dtype(like.dtype()),
        Bound::Tensor(t) => t.to_dtype(like.dtype()),
    }
}

/// A random point of `c` of `shape`, drawn independently of the transform.
fn sample_support(
    c: &Constraint,
    shape: &[usize],
    dtype: DType,
    device: &Device,
    rng: &mut ChaCha8Rng,
) -> R2<Tensor> {
    let n = standard_normal(shape, dtype, device, rng)?;
    let u = uniform_open01(shape, dtype, device, rng)?;
    Ok(match c {
        Constraint::Real => n.affine(2.0, 0.0)?,
        Constraint::Positive | Constraint::NonNegative => n.exp()?,
        Constraint::UnitInterval => u,
        Constraint::Interval { low, high } | Constraint::HalfOpenInterval { low, high } => {
            let (lo, hi) = (bound_tensor(low, &u)?, bound_tensor(high, &u)?);
            u.broadcast_mul(&hi.broadcast_sub(&lo)?)?
                .broadcast_add(&lo)?
        }
        Constraint::GreaterThan(b) | Constraint::GreaterThanEq(b) => {
            n.exp()?.broadcast_add(&bound_tensor(b, &n)?)?
        }
        Constraint::LessThan(b) => n.exp()?.neg()?.broadcast_add(&bound_tensor(b, &n)?)?,
        Constraint::Simplex => {
            let e = n.exp()?;
            e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?
        }
        Constraint::LowerCholesky => {
            let k = shape[shape.len() - 1];
            let eye = Tensor::eye(k, dtype, device)?;
            let strict = (Tensor::tril2(k, dtype, device)? - &eye)?;
            (n.broadcast_mul(&strict)? + u.affine(1.0, 0.5)?.broadcast_mul(&eye)?)?
        }
        Constraint::PositiveDefinite => {
            let k = shape[shape.len() - 1];
            let at = n.t()?;
            let eye = Tensor::eye(k, dtype, device)?.affine(k as f64, 0.0)?;
            vi_dist::ops::batch_matmul(&n, &at)?.broadcast_add(&eye)?
        }
        Constraint::Independent { base, .. } => sample_support(base, shape, dtype, device, rng)?,
        other => return Err(format!("no sampler for {other}").into()),
    })
}

/// Round-trip tolerance: |a − b| <= tol (1 + |b|).
fn round_trip_tol(dtype: DType) -> f64 {
    if dtype == DType::F64 { 1e-9 } else { 2e-4 }
}

fn assert_close_at(what: &str, a: &[f64], b: &[f64], idx: &[usize], tol: f64) -> Res {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for &i in idx {
        let (x, y) = (a[i], b[i]);
        // written so that NaN fails
        let close = (x - y).abs() <= tol * (1.0 + y.abs());
        if !close {
            return Err(format!("{what}: element {i}: {x:e} vs {y:e}").into());
        }
    }
    Ok(())
}

/// Flat indices, over the whole tensor, of the selected coordinates of each event.
fn selected(shape: &[usize], event_rank: usize, sq: Square) -> Vec<usize> {
    let split = shape.len() - event_rank;
    let event = &shape[split..];
    let es: usize = event.iter().product();
    let batch: usize = shape[..split].iter().product();
    let sel = sq.select(event);
    (0..batch)
        .flat_map(|b| sel.iter().map(move |i| b * es + i))
        .collect()
}

/// ln |det m| by LU with partial pivoting.
fn log_abs_det(mut m: Vec<f64>, n: usize) -> f64 {
    let mut acc = 0.0;
    for c in 0..n {
        let p = (c..n)
            .max_by(|&a, &b| m[a * n + c].abs().total_cmp(&m[b * n + c].abs()))
            .unwrap_or(c);
        if p != c {
            for k in 0..n {
                m.swap(c * n + k, p * n + k);
            }
        }
        let piv = m[c * n + c];
        acc += piv.abs().ln();
        for r in c + 1..n {
            let f = m[r * n + c] / piv;
            for k in c..n {
                m[r * n + k] -= f * m[c * n + k];
            }
        }
    }
    acc
}

/// The full Jacobian ∂y/∂x (rows: outputs, row-major), one `backward()` per output element.
fn jacobian(t: &dyn Transform, x: &Tensor) -> R2<(Vec<f64>, Vec<usize>)> {
    let xv = Var::from_tensor(x)?;
    let y = t.forward(xv.as_tensor())?;
    let flat = y.flatten_all()?;
    let n_in = x.elem_count();
    let mut jac = Vec::with_capacity(flat.elem_count() * n_in);
    for i in 0..flat.elem_count() {
        let grads = flat.get(i)?.backward()?;
        match grads.get(xv.as_tensor()) {
            Some(g) => jac.extend(to_vec(g)?),
            None => jac.extend(std::iter::repeat_n(0.0, n_in)),
        }
    }
    Ok((jac, y.dims().to_vec()))
}

/// `log_abs_det_jacobian` against ln |det J| of the square part of each event's block of the
/// autodiff Jacobian, to 1e-8; entries outside the event's block must be zero.
fn check_jacobian(c: &Case, x: &Tensor) -> Res {
    let x = x.to_dtype(DType::F64)?;
    let (jac, y_shape) = jacobian(c.t.as_ref(), &x)?;
    let y = c.t.forward(&x)?;
    let ladj = to_vec(&c.t.log_abs_det_jacobian(&x, &y)?)?;
    let br = x.rank() - c.t.event_dim();
    assert_eq!(&y_shape[..br], &x.dims()[..br], "{}: batch dims", c.name);
    let n_in = x.elem_count();
    let in_es: usize = x.dims()[br..].iter().product();
    let out_es: usize = y_shape[br..].iter().product();
    let sel_in = c.sq_in.select(&x.dims()[br..]);
    let sel_out = c.sq_out.select(&y_shape[br..]);
    assert_eq!(sel_in.len(), sel_out.len(), "{}: square part", c.name);
    let m = sel_in.len();
    let batch = ladj.len();
    assert_eq!(batch * in_es, n_in, "{}: ladj shape", c.name);
    for b in 0..batch {
        for r in 0..out_es {
            let row = (b * out_es + r) * n_in;
            for col in 0..n_in {
                if col / in_es != b && jac[row + col] != 0.0 {
                    return Err(format!(
                        "{}: output {r} of event {b} depends on input {col}",
                        c.name
                    )
                    .into());
                }
            }
        }
        let mut sub = Vec::with_capacity(m * m);
        for &r in &sel_out {
            for &col in &sel_in {
                sub.push(jac[(b * out_es + r) * n_in + b * in_es + col]);
            }
        }
        let expected = log_abs_det(sub, m);
        let got = ladj[b];
        if (got - expected).abs() > 1e-8 * expected.abs().max(1.0) {
            return Err(
                format!("{}: event {b}: ladj {got} vs ln|det J| {expected}", c.name).into(),
            );
        }
    }
    Ok(())
}

fn check_case(c: &Case, device: &Device, dtype: DType, rng: &mut ChaCha8Rng) -> Res {
    let t = c.t.as_ref();
    let tol = round_trip_tol(dtype);
    let x = standard_normal(&c.x_shape, dtype, device, rng)?.affine(c.x_scale, 0.0)?;

    // forward lands in the support, with the advertised shape
    let y = t.forward(&x)?;
    assert_eq!(
        y.dims(),
        t.forward_shape(x.dims())?,
        "{}: forward_shape",
        c.name
    );
    assert!(
        c.support.all(&y)?,
        "{}: forward(x) outside {}",
        c.name,
        c.support
    );

    // inverse(forward(x)) = x on the coordinates the transform keeps
    let x_back = t.inverse(&y)?;
    assert_eq!(x_back.dims(), x.dims(), "{}: inverse shape", c.name);
    let sel_in = selected(x.dims(), t.event_dim(), c.sq_in);
    assert_close_at(
        &format!("{}: inverse(forward(x))", c.name),
        &to_vec(&x_back)?,
        &to_vec(&x)?,
        &sel_in,
        tol,
    )?;

    // forward(inverse(y)) = y for y drawn from the support independently
    let ys = sample_support(&c.support, y.dims(), dtype, device, rng)?;
    assert!(c.support.all(&ys)?, "{}: test sampler", c.name);
    let xs = t.inverse(&ys)?;
    assert_eq!(
        xs.dims(),
        t.inverse_shape(ys.dims())?,
        "{}: inverse_shape",
        c.name
    );
    let all: Vec<usize> = (0..ys.elem_count()).collect();
    assert_close_at(
        &format!("{}: forward(inverse(y))", c.name),
        &to_vec(&t.forward(&xs)?)?,
        &to_vec(&ys)?,
        &all,
        tol,
    )?;

    // one log-determinant per event
    let ladj = t.log_abs_det_jacobian(&x, &y)?;
    assert_eq!(
        ladj.dims(),
        &x.dims()[..x.rank() - t.event_dim()],
        "{}: ladj shape",
        c.name
    );
    assert!(
        to_vec(&ladj)?.iter().all(|v| v.is_finite()),
        "{}: ladj finite",
        c.name
    );

    // gradients reach the unconstrained input
    let xv = Var::from_tensor(&x)?;
    let w = standard_normal(y.dims(), dtype, device, rng)?;
    let loss = (t.forward(xv.as_tensor())? * w)?.sum_all()?;
    let grads = loss.backward()?;
    let g = to_vec(grads.get(xv.as_tensor()).ok_or("no gradient")?)?;
    assert!(
        g.iter().all(|v| v.is_finite()),
        "{}: gradient finite",
        c.name
    );
    assert!(g.iter().any(|v| *v != 0.0), "{}: gradient all zero", c.name);

    // extreme inputs stay in the support, without NaN
    let levels = [-1.0, -1e-2, -3e-3, -5e-4, 0.0, 5e-4, 3e-3, 1e-2, 1.0];
    let n: usize = c.x_shape.iter().product();
    for shift in 0..levels.len() {
        let data: Vec<f64> = (0..n)
            .map(|i| levels[(i * 5 + shift) % levels.len()] * c.extreme)
            .collect();
        let xe = tensor(&data, &c.x_shape, dtype, device);
        let ye = t.forward(&xe)?;
        assert!(
            to_vec(&ye)?.iter().all(|v| !v.is_nan()),
            "{}: NaN at extreme inputs",
            c.name
        );
        assert!(
            c.support.all(&ye)?,
            "{}: forward outside {} at extreme inputs {data:?}",
            c.name,
            c.support
        );
        let le = t.log_abs_det_jacobian(&xe, &ye)?;
        assert!(
            to_vec(&le)?.iter().all(|v| !v.is_nan()),
            "{}: NaN ladj at extreme inputs",
            c.name
        );
    }

    if dtype == DType::F64 {
        check_jacobian(c, &x)?;
    }
    Ok(())
}

fn transforms_all(device: &Device, dtype: DType) -> Res {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for c in transform_cases(device, dtype)? {
        check_case(&c, device, dtype, &mut rng)?;
    }
    Ok(())
}
vi_test::test_device!(transforms_all);

fn transform_to_all(device: &Device, dtype: DType) -> Res {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for (c, shape) in constraint_cases(device, dtype)? {
        let case = constraint_case(c, shape)?;
        check_case(&case, device, dtype, &mut rng)?;
        // nonnegative maps through exp, onto the positive reals
        let expected = match &case.support {
            Constraint::NonNegative => "positive".to_string(),
            c => c.to_string(),
        };
        assert_eq!(
            case.t.codomain().to_string(),
            expected,
            "{}: codomain",
            case.name
        );
        assert_eq!(
            case.t.event_dim(),
            case.support.event_dim(),
            "{}: event_dim",
            case.name
        );
    }
    Ok(())
}
vi_test::test_device!(transform_to_all);

#[test]
fn event_dims_and_names() -> Res {
    let t = transform_to(&Constraint::Simplex.independent(1))?;
    assert_eq!(
        (t.name(), t.event_dim(), t.codomain_event_dim()),
        ("independent", 2, 2)
    );
    assert_eq!(t.domain().to_string(), "independent(real, 2)");
    let t = Compose::new(vec![
        Box::new(Affine::new(0.0, 2.0)),
        Box::new(StickBreaking),
    ]);
    assert_eq!((t.event_dim(), t.codomain_event_dim()), (1, 1));
    assert_eq!(t.domain().to_string(), "independent(real, 1)");
    assert_eq!(t.codomain().to_string(), "simplex");
    assert_eq!(t.forward_shape(&[2, 3])?, vec![2, 4]);
    assert_eq!(t.inverse_shape(&[2, 4])?, vec![2, 3]);
    let t = transform_to(&Constraint::interval(0.0, 2.0))?;
    assert_eq!((t.name(), t.event_dim()), ("compose", 0));
    assert_eq!(t.codomain().to_string(), "interval(0, 2)");
    assert_eq!(transform_to(&Constraint::PositiveDefinite)?.event_dim(), 2);
    assert_eq!(Compose::new(vec![]).event_dim(), 0);
    Ok(())
}

#[test]
fn biject_to_agrees_with_transform_to() -> Res {
    for (c, _) in constraint_cases(&Device::Cpu, DType::F64)? {
        let (a, b) = (transform_to(&c)?, biject_to(&c)?);
        assert_eq!(a.name(), b.name());
        assert_eq!(a.codomain().to_string(), b.codomain().to_string());
    }
    Ok(())
}

#[test]
fn discrete_constraints_have_no_transform() {
    let discrete = [
        Constraint::Boolean,
        Constraint::NonNegativeInteger,
        Constraint::IntegerInterval {
            low: Bound::Scalar(0.0),
            high: Bound::Scalar(3.0),
        },
        Constraint::OneHot,
        Constraint::Boolean.independent(1),
    ];
    for c in discrete {
        match transform_to(&c) {
            Err(DistError::Transform { transform, msg }) => {
                assert_eq!(transform, "transform_to");
                let name = base_of(&c).to_string();
                assert!(msg.contains(&name), "{msg} should name {name}");
            }
            other => panic!("{c}: expected a transform error, got {other:?}"),
        }
    }
}

#[test]
fn zero_is_the_centre() -> Res {
    let x = Tensor::zeros((2, 4), DType::F64, &Device::Cpu)?;
    let y = to_vec(&StickBreaking.forward(&x)?)?;
    assert!(y.iter().all(|v| (v - 0.2).abs() < 1e-15), "{y:?}");
    let ladj = transform_to(&Constraint::interval(-1.0, 3.0))?
        .log_abs_det_jacobian(&x, &(x.affine(0.0, 1.0)?))?;
    // sigmoid'(0) (3 − (−1)) = 1
    assert!(to_vec(&ladj)?.iter().all(|v| v.abs() < 1e-15));
    // PD: at x = 0, y = I and ln|det J| = n ln 2
    let x = Tensor::zeros((3, 3), DType::F64, &Device::Cpu)?;
    let y = PositiveDefinite.forward(&x)?;
    assert_eq!(
        to_vec(&y)?,
        to_vec(&Tensor::eye(3, DType::F64, &Device::Cpu)?)?
    );
    let l = PositiveDefinite
        .log_abs_det_jacobian(&x, &y)?
        .to_scalar::<f64>()?;
    assert!((l - 3.0 * 2f64.ln()).abs() < 1e-15);
    Ok(())
}

#[test]
fn bad_shapes_are_typed_errors() -> Res {
    let dev = Device::Cpu;
    let rect = Tensor::zeros((2, 3), DType::F64, &dev)?;
    let scalar = Tensor::new(1.0f64, &dev)?;
    assert!(matches!(
        LowerCholesky.forward(&rect),
        Err(DistError::Op { .. })
    ));
    assert!(matches!(
        PositiveDefinite.inverse(&rect),
        Err(DistError::Op { .. })
    ));
    assert!(matches!(
        StickBreaking.forward(&scalar),
        Err(DistError::Transform { .. })
    ));
    assert!(matches!(
        StickBreaking.forward_shape(&[]),
        Err(DistError::Transform { .. })
    ));
    assert!(matches!(
        StickBreaking.inverse_shape(&[2, 0]),
        Err(DistError::Transform { .. })
    ));
    let t = transform_to(&Constraint::Positive.independent(2))?;
    assert!(matches!(
        t.forward(&Tensor::zeros(3, DType::F64, &dev)?),
        Err(DistError::Transform { .. })
    ));
    let not_pd = Tensor::new(&[[1.0f64, 2.0], [2.0, 1.0]], &dev)?;
    assert!(matches!(
        PositiveDefinite.inverse(&not_pd),
        Err(DistError::Op { op: "cholesky", .. })
    ));
    Ok(())
}

#[test]
fn sigmoid_clamps_as_torch() -> Res {
    let x = Tensor::new(&[-200.0f32, 200.0], &Device::Cpu)?;
    let y = Sigmoid.forward(&x)?.to_vec1::<f32>()?;
    assert_eq!(y, vec![f32::EPSILON, 1.0 - f32::EPSILON]);
    let back = Sigmoid
        .inverse(&Tensor::new(&[0.0f32, 1.0], &Device::Cpu)?)?
        .to_vec1::<f32>()?;
    assert!(back.iter().all(|v| v.is_finite()));
    Ok(())
}

/// `Exp` (the positive parameters' transform): `max(eˣ, tiny)`, gradient `eˣ` above the clamp
/// and 0 below it, for contiguous and strided inputs and gradients (the CPU kernel and the
/// composed path agree).
fn exp_clamp_and_gradient(device: &Device, dtype: DType) -> Res {
    let tiny = if dtype == DType::F64 {
        f64::MIN_POSITIVE
    } else {
        f64::from(f32::MIN_POSITIVE)
    };
    // Columns: clamped in both dtypes, clamped in f32 only (e^-100 is subnormal there), then
    // ordinary values.
    let data = [-1000.0, -100.0, -1.0, 0.0, 2.5, 0.5, -3.0, 1.0];
    let x = Var::from_tensor(&tensor(&data, &[2, 4], dtype, device))?;
    let w = tensor(
        &[1.0, 2.0, 3.0, 4.0, -1.0, 0.5, 2.0, 1.5],
        &[2, 4],
        dtype,
        device,
    );
    for transposed in [false, true] {
        let xt = if transposed {
            x.as_tensor().t()?
        } else {
            x.as_tensor().clone()
        };
        let y = Exp.forward(&xt)?;
        let expected = xt.exp()?.maximum(tiny)?;
        assert_eq!(to_vec(&y)?, to_vec(&expected)?);
        // A contiguous upstream gradient (w) and a broadcast one (sum).
        let wt = if transposed { w.t()? } else { w.clone() };
        for weighted in [true, false] {
            let loss = if weighted {
                (&y * &wt)?.sum_all()?
            } else {
                y.sum_all()?
            };
            let g = loss.backward()?;
            let g = to_vec(g.get(x.as_tensor()).ok_or("no gradient")?)?;
            for (i, (&xi, gi)) in data.iter().zip(g).enumerate() {
                let e = if dtype == DType::F64 {
                    xi.exp()
                } else {
                    f64::from((xi as f32).exp())
                };
                let wi = if weighted { to_vec(&w)?[i] } else { 1.0 };
                let want = if e > tiny { wi * e } else { 0.0 };
                assert!(
                    (gi - want).abs() <= 1e-6 * want.abs(),
                    "x = {xi}: gradient {gi}, expected {want}"
                );
            }
        }
    }
    Ok(())
}
vi_test::test_device!(exp_clamp_and_gradient);

/// Strict bounds far from 0: `b + eˣ` rounds to `b` already for moderate `x` (in f32 at
/// x ≈ −10 for b = 1000), yet the output stays strictly inside.
fn large_bounds_stay_in_support(device: &Device, dtype: DType) -> Res {
    let bt = tensor(&[-1e6, -1000.0, 0.0, 1000.0, 1e6], &[5], dtype, device);
    let constraints = [
        Constraint::greater_than(1000.0),
        Constraint::greater_than(-1e6),
        Constraint::greater_than(bt.clone()),
        Constraint::LessThan(Bound::Scalar(-1000.0)),
        Constraint::LessThan(Bound::Scalar(1e6)),
        Constraint::LessThan(Bound::Tensor(bt.clone())),
        Constraint::HalfOpenInterval {
            low: Bound::Scalar(999.0),
            high: Bound::Tensor(bt.abs()?.affine(1.0, 1000.0)?),
        },
    ];
    for c in constraints {
        let t = transform_to(&c)?;
        for v in [-1e4, -100.0, -30.0, -10.0, 0.0, 10.0, 30.0] {
            let x = Tensor::full(v, 5, device)?.to_dtype(dtype)?;
            let y = t.forward(&x)?;
            assert!(c.all(&y)?, "{c} at x = {v}: {y}");
        }
    }
    Ok(())
}
vi_test::test_device!(large_bounds_stay_in_support);

mod shapes {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Any batch shape: forward, inverse and the log-determinant have the documented shapes.
        #[test]
        fn shapes_follow_batch(which in 0usize..1000, batch in prop::collection::vec(1usize..4, 0..3)) {
            let mut cases = constraint_cases(&Device::Cpu, DType::F64).unwrap();
            let n = cases.len();
            let (c, x_shape) = cases.swap_remove(which % n);
            let t = transform_to(&c).unwrap();
            // keep the case's event dims (and its tensor bounds' last dim), prepend the batch
            let event = &x_shape[x_shape.len() - t.event_dim().max(1)..];
            let shape: Vec<usize> = batch.iter().chain(event).copied().collect();
            let x = Tensor::zeros(shape.as_slice(), DType::F64, &Device::Cpu).unwrap();
            let y = t.forward(&x).unwrap();
            let forward_shape = t.forward_shape(&shape).unwrap();
            prop_assert_eq!(y.dims(), forward_shape.as_slice());
            let x_back = t.inverse(&y).unwrap();
            prop_assert_eq!(x_back.dims(), shape.as_slice());
            let ladj = t.log_abs_det_jacobian(&x, &y).unwrap();
            prop_assert_eq!(ladj.dims(), &shape[..shape.len() - t.event_dim()]);
        }
    }
}

/// The inverse of the positive-definite transform goes through `ops::cholesky` and its
/// backward pass: the gradient matches central finite differences.
#[test]
fn positive_definite_inverse_gradient() -> Res {
    let dev = Device::Cpu;
    let a = [4.0, 1.0, 0.5, 1.0, 3.0, -0.2, 0.5, -0.2, 2.0];
    let w = [0.3, -1.0, 0.7, 0.2, 1.1, -0.4, 0.9, 0.5, -0.6];
    let wt = Tensor::new(&w, &dev)?.reshape((3, 3))?;
    // symmetrise inside f so every perturbation stays symmetric
    let f = |v: &Tensor| -> R2<Tensor> {
        let s = ((v + v.t()?)? * 0.5)?;
        Ok((PositiveDefinite.inverse(&s)? * &wt)?.sum_all()?)
    };
    let av = Var::from_tensor(&Tensor::new(&a, &dev)?.reshape((3, 3))?)?;
    let grads = f(av.as_tensor())?.backward()?;
    let g = to_vec(grads.get(av.as_tensor()).ok_or("no gradient")?)?;
    let fd = vi_test::finite_difference(&a, 1e-6, |p| {
        let t = Tensor::new(p, &dev)
            .and_then(|t| t.reshape((3, 3)))
            .unwrap();
        f(&t).unwrap().to_scalar::<f64>().unwrap()
    });
    for (i, (x, y)) in g.iter().zip(&fd).enumerate() {
        assert!(
            (x - y).abs() < 1e-6 * (1.0 + y.abs()),
            "element {i}: {x} vs {y}"
        );
    }
    Ok(())
}
