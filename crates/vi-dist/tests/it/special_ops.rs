//! Special ops: backward passes against finite differences, the composed (device-agnostic)
//! paths against the CPU kernels, and `standard_gamma_grad` against the CDF and the inverse
//! CDF (the mpmath comparison is in `conformance`).

use candle_core::{DType, Device, Tensor, Var};
use statrs::function::gamma::{gamma_lr, ln_gamma};
use vi_dist::ops;

use crate::common::{host, t, within};

type Op = fn(&Tensor) -> vi_dist::Result<Tensor>;

/// Value and gradient of `sum(op(x))` at `xs` (f64, CPU).
fn value_and_grad(op: Op, xs: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let x = Var::new(xs, &Device::Cpu).unwrap();
    let y = op(x.as_tensor()).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    let g = g.get(x.as_tensor()).map(host).expect("no gradient");
    (host(&y), g)
}

/// Positive and negative non-integer arguments for lgamma / digamma / trigamma.
fn gamma_grid() -> Vec<f64> {
    let mut g: Vec<f64> = (-80..=60)
        .map(|i| 10f64.powf(f64::from(i) / 10.0))
        .collect();
    g.extend([
        0.5,
        0.999,
        1.0,
        1.001,
        1.4616321449683622,
        1.5,
        2.0,
        2.001,
        3.0,
        171.5,
    ]);
    g.extend([
        -1e-8, -0.001, -0.3, -0.5, -0.999, -1.3, -1.5, -2.457, -2.7, -3.5, -10.25, -50.5, -100.3,
        -170.6,
    ]);
    g
}

/// Tiny to large magnitudes of both signs, with 0.
fn wide_grid() -> Vec<f64> {
    let mags = [
        1e-300, 1e-100, 1e-20, 1e-16, 1e-10, 1e-5, 1e-3, 0.1, 0.49, 0.5, 0.51, 1.0, 3.0, 10.0,
        30.0, 40.0, 100.0, 700.0, 1000.0, 1e10, 1e300,
    ];
    let mut g = vec![0.0];
    g.extend(mags);
    g.extend(mags.iter().map(|x| -x));
    g
}

fn log1p_grid() -> Vec<f64> {
    let mut g: Vec<f64> = wide_grid().into_iter().filter(|x| *x > -0.5).collect();
    g.extend([-0.5, -0.9, -0.999999, -1.0 + 1e-12]);
    g
}

#[test]
fn backward_matches_finite_differences() {
    let moderate = [-2.7, -1.3, -0.5, 0.01, 0.3, 1.0, 1.7, 4.0, 25.0];
    let cases: [(&str, Op, Vec<f64>); 6] = [
        ("lgamma", ops::lgamma, moderate.to_vec()),
        ("digamma", ops::digamma, moderate.to_vec()),
        ("log1p", ops::log1p, vec![-0.9, -0.3, 1e-8, 0.4, 3.0, 1e3]),
        (
            "expm1",
            ops::expm1,
            vec![-30.0, -1.0, -1e-8, 0.0, 0.3, 5.0, 50.0],
        ),
        (
            "softplus",
            ops::softplus,
            vec![-40.0, -3.0, -1e-3, 0.0, 0.7, 5.0, 40.0],
        ),
        (
            "sigmoid",
            ops::sigmoid,
            vec![-40.0, -3.0, -1e-3, 0.0, 0.7, 5.0, 40.0],
        ),
    ];
    for (name, op, xs) in cases {
        let (_, grad) = value_and_grad(op, &xs);
        // One point at a time, so a large value elsewhere does not swamp the difference.
        let fd: Vec<f64> = xs
            .iter()
            .map(|x| vi_test::finite_difference(&[*x], 1e-6, |x| host(&op(&t(x)).unwrap())[0])[0])
            .collect();
        for ((x, g), f) in xs.iter().zip(&grad).zip(&fd) {
            assert!(
                within(*g, *f, 1e-6, 1e-8),
                "{name}'({x}): backward {g:e}, finite difference {f:e}"
            );
        }
    }
}

#[test]
fn composed_matches_kernels() {
    let cases: [(&str, Op, Op, Vec<f64>); 7] = [
        ("lgamma", ops::lgamma, ops::composed::lgamma, gamma_grid()),
        (
            "digamma",
            ops::digamma,
            ops::composed::digamma,
            gamma_grid(),
        ),
        (
            "trigamma",
            ops::trigamma,
            ops::composed::trigamma,
            gamma_grid(),
        ),
        ("log1p", ops::log1p, ops::composed::log1p, log1p_grid()),
        ("expm1", ops::expm1, ops::composed::expm1, wide_grid()),
        (
            "softplus",
            ops::softplus,
            ops::composed::softplus,
            wide_grid(),
        ),
        ("sigmoid", ops::sigmoid, ops::composed::sigmoid, wide_grid()),
    ];
    for (name, kernel, composed, xs) in cases {
        let want = host(&kernel(&t(&xs)).unwrap());
        let got = host(&composed(&t(&xs)).unwrap());
        let mut worst = 0f64;
        for ((x, g), w) in xs.iter().zip(&got).zip(&want) {
            // Relative, with an absolute floor of 1e-12 near the zeros of lgamma / digamma.
            assert!(
                within(*g, *w, 1e-12, 1e-12),
                "{name}({x:e}): composed {g:e}, kernel {w:e}"
            );
            if w.is_finite() && *w != 0.0 {
                worst = worst.max(((g - w) / w.abs().max(1.0)).abs());
            }
        }
        println!(
            "{name}: {} points, max error (relative, floor 1) {worst:e}",
            xs.len()
        );
        if name == "trigamma" {
            continue; // no backward on the kernel
        }
        let (_, want) = value_and_grad(kernel, &xs);
        let (_, got) = value_and_grad(composed, &xs);
        for ((x, g), w) in xs.iter().zip(&got).zip(&want) {
            assert!(
                within(*g, *w, 1e-10, 1e-12),
                "{name}'({x:e}): composed autograd {g:e}, kernel backward {w:e}"
            );
        }
    }
}

/// `x` with `P(a, x) = u` (regularised lower incomplete gamma, statrs): bisection on `ln x`,
/// then Newton steps.
pub(crate) fn inverse_gamma_cdf(a: f64, u: f64) -> f64 {
    let (mut lo, mut hi) = (-700f64, (a + 50.0 * a.sqrt() + 100.0).ln());
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if gamma_lr(a, mid.exp()) < u {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let mut x = (0.5 * (lo + hi)).exp();
    for _ in 0..5 {
        let density = ((a - 1.0) * x.ln() - x - ln_gamma(a)).exp();
        let step = (gamma_lr(a, x) - u) / density;
        if !step.is_finite() {
            break;
        }
        x -= step;
    }
    x
}

fn gamma_density(a: f64, x: f64) -> f64 {
    ((a - 1.0) * x.ln() - x - ln_gamma(a)).exp()
}

fn grad_at(a: &[f64], x: &[f64]) -> Vec<f64> {
    host(&ops::standard_gamma_grad(&t(a), &t(x)).unwrap())
}

/// Points `(α, x)` at CDF levels away from the far tails, where finite differences of the
/// CDF are well conditioned.
fn level_grid() -> Vec<(f64, f64, f64)> {
    let mut pts = Vec::new();
    for a in [0.05, 0.3, 1.0, 2.5, 10.0, 100.0] {
        for u in [0.01, 0.1, 0.5, 0.9, 0.99] {
            pts.push((a, u, inverse_gamma_cdf(a, u)));
        }
    }
    pts
}

#[test]
fn standard_gamma_grad_matches_cdf_differences() {
    // dx/dα = −(∂P/∂α) / p, with ∂P/∂α by a central difference of statrs' gamma_lr.
    let pts = level_grid();
    let (a, x): (Vec<f64>, Vec<f64>) = pts.iter().map(|p| (p.0, p.2)).unzip();
    let ours = grad_at(&a, &x);
    let mut worst = 0f64;
    for ((a, u, x), g) in pts.iter().zip(&ours) {
        let h = 1e-5 * a;
        let dp = (gamma_lr(a + h, *x) - gamma_lr(a - h, *x)) / (2.0 * h);
        let fd = -dp / gamma_density(*a, *x);
        worst = worst.max(((g - fd) / fd).abs());
        assert!(
            within(*g, fd, 1e-5, 0.0),
            "alpha {a}, level {u}: ours {g:e}, CDF difference {fd:e}"
        );
    }
    println!("standard_gamma_grad vs CDF differences: max relative difference {worst:e}");
}

#[test]
fn standard_gamma_grad_matches_inverse_cdf_differences() {
    // dx/dα at a fixed CDF level u: a central difference of the inverse CDF.
    let pts = level_grid();
    let (a, x): (Vec<f64>, Vec<f64>) = pts.iter().map(|p| (p.0, p.2)).unzip();
    let ours = grad_at(&a, &x);
    let mut worst = 0f64;
    for ((a, u, x), g) in pts.iter().zip(&ours) {
        let h = 1e-5 * a;
        let fd = (inverse_gamma_cdf(a + h, *u) - inverse_gamma_cdf(a - h, *u)) / (2.0 * h);
        assert!(
            within(*g, fd, 1e-6, 1e-300),
            "alpha {a}, level {u}, x {x:e}: ours {g:e}, inverse-CDF difference {fd:e}"
        );
        worst = worst.max(((g - fd) / fd).abs());
    }
    println!("standard_gamma_grad vs inverse-CDF differences: max relative difference {worst:e}");
}

#[test]
fn standard_gamma_grad_edge_cases() {
    let a = [1.0, 1.0, -1.0, 0.0, f64::NAN, 2.0, 2.0, 1e8];
    let x = [0.0, f64::INFINITY, 1.0, 1.0, 1.0, f64::NAN, -1.0, 1e8];
    let g = grad_at(&a, &x);
    assert_eq!(g[0], 0.0);
    assert_eq!(g[1], f64::INFINITY);
    assert!(g[2..7].iter().all(|g| g.is_nan()), "{g:?}");
    // Wilson–Hilferty branch at the median of a huge alpha: dx/dα ≈ 1 + 1/(6α).
    assert!((g[7] - 1.0).abs() < 1e-6, "{}", g[7]);
    // Broadcasting: alpha [2, 1] against x [3].
    let g = ops::standard_gamma_grad(
        &Tensor::new(&[[1.0f64], [2.0]], &Device::Cpu).unwrap(),
        &t(&[0.5, 1.0, 2.0]),
    )
    .unwrap();
    assert_eq!(g.dims(), &[2, 3]);
    // dtype mismatch is a typed error.
    let err = ops::standard_gamma_grad(&t(&[1.0]), &Tensor::new(&[1.0f32], &Device::Cpu).unwrap());
    assert!(matches!(err, Err(vi_dist::DistError::Op { .. })), "{err:?}");
}

/// The reparameterisation op: value unchanged, gradient `standard_gamma_grad`, summed over
/// broadcast dims; the composed path (used off the CPU) agrees with the kernel path.
fn reparameterize_case(device: &Device, dtype: DType) -> vi_dist::Result<()> {
    let alpha = Var::from_tensor(&Tensor::new(&[0.3f64, 1.0, 7.5], device)?.to_dtype(dtype)?)?;
    let x = Tensor::new(&[[0.01f64, 0.8, 6.0], [0.5, 2.5, 9.0]], device)?.to_dtype(dtype)?;
    let want_grad = ops::standard_gamma_grad(alpha.as_tensor(), &x)?.sum(0)?;
    for (name, f) in [
        (
            "kernel",
            ops::reparameterize_standard_gamma as fn(&Tensor, &Tensor) -> _,
        ),
        ("composed", ops::composed::reparameterize_standard_gamma),
    ] {
        let y = f(alpha.as_tensor(), &x)?;
        assert_eq!(host(&y), host(&x), "{name}: value changed");
        let g = y.sum_all()?.backward()?;
        let g = g.get(alpha.as_tensor()).expect("no gradient");
        let (g, w) = (host(g), host(&want_grad));
        for (g, w) in g.iter().zip(&w) {
            assert!(within(*g, *w, 1e-6, 0.0), "{name}: grad {g}, expected {w}");
        }
    }
    let composed = ops::composed::standard_gamma_grad(alpha.as_tensor(), &x)?;
    let kernel = ops::standard_gamma_grad(alpha.as_tensor(), &x)?;
    assert_eq!(host(&composed), host(&kernel));
    Ok(())
}
vi_test::test_device!(reparameterize_case);
