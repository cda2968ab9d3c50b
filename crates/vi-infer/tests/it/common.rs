//! What the test modules share, on top of `vi-test`'s helpers: tensors from f64 data and
//! back, `Normal` densities, comparisons, fresh contexts, the optimizer of a test run, and the
//! error of a run that must fail.

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_dist::Normal;
use vi_infer::{Ctx, Elbo, ElboOutput, InferError, ParamStore, Svi};
use vi_optim::{Adam, AdamOptions, Optimizer};
use vi_test::Tol;

/// The result of a test body (or a helper) that returns its errors with `?`.
pub(crate) type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// A model or a guide, boxed (to return a pair of them, or to name one's type).
pub(crate) type BoxedProgram<'a> = Box<vi_infer::Program<'a>>;

// Tensors ---------------------------------------------------------------------------------

/// An f64 vector on the CPU.
pub(crate) fn t(v: &[f64]) -> Tensor {
    Tensor::new(v, &Device::Cpu).expect("an f64 vector")
}

/// An f64 scalar on the CPU.
pub(crate) fn s(v: f64) -> Tensor {
    Tensor::new(v, &Device::Cpu).expect("an f64 scalar")
}

/// The vector `xs` on `dev` in `dt`.
pub(crate) fn tensor(xs: &[f64], dev: &Device, dt: DType) -> candle_core::Result<Tensor> {
    Tensor::new(xs, dev)?.to_dtype(dt)
}

/// The scalar `x` on `dev` in `dt`.
pub(crate) fn scalar(x: f64, dev: &Device, dt: DType) -> candle_core::Result<Tensor> {
    Tensor::new(x, dev)?.to_dtype(dt)
}

/// The elements of `t` as f64, flattened row-major (a panic if `t` cannot be read back).
pub(crate) fn host(t: &Tensor) -> Vec<f64> {
    vi_test::to_vec(t).expect("a tensor read back as f64")
}

// Normal ----------------------------------------------------------------------------------

/// `Normal(loc, scale)` with scalar parameters on `dev` in `dt`.
pub(crate) fn normal(loc: f64, scale: f64, dev: &Device, dt: DType) -> vi_infer::Result<Normal> {
    Ok(Normal::new(
        &scalar(loc, dev, dt)?,
        &scalar(scale, dev, dt)?,
    )?)
}

/// `log N(x; mu, sigma²)`, in f64 (the closed form the tests check log-densities against).
pub(crate) fn normal_lp(x: f64, mu: f64, sigma: f64) -> f64 {
    let z = (x - mu) / sigma;
    -0.5 * z * z - sigma.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
}

// Comparisons -----------------------------------------------------------------------------

/// The tolerance of a log-density computed in `dt` against its f64 closed form: 2e-5 in f32,
/// 1e-12 in f64 (for [`assert_close`]).
pub(crate) fn dtype_tol(dt: DType) -> f64 {
    if dt == DType::F32 { 2e-5 } else { 1e-12 }
}

/// Assert that `got` and `want` have the same length and agree within `tol · (1 + |want|)`
/// element by element ([`vi_test::assert_all_close`]); every expected value must be finite (a
/// non-finite one fails, as no tolerance of this form can hold for it).
pub(crate) fn assert_close_tol(got: &[f64], want: &[f64], tol: f64, what: &str) {
    if let Some(i) = want.iter().position(|w| !w.is_finite()) {
        panic!(
            "{what}[{i}]: the expected value {} is not finite (got {got:?})",
            want[i]
        );
    }
    vi_test::assert_all_close(
        what,
        got,
        want,
        Tol {
            rtol: tol,
            atol: tol,
        },
    );
}

/// [`assert_close_tol`] at the tolerance of `dt` ([`dtype_tol`]).
pub(crate) fn assert_close(got: &[f64], want: &[f64], dt: DType, what: &str) {
    assert_close_tol(got, want, dtype_tol(dt), what);
}

/// [`assert_close_tol`] for two tensors, which must have the same shape.
pub(crate) fn assert_close_tensors(got: &Tensor, want: &Tensor, tol: f64, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}: shapes");
    assert_close_tol(&host(got), &host(want), tol, what);
}

/// Assert that `got` and `want` have the same length and every element is within `prec` of
/// its expected value, absolutely (Pyro's `assert_equal(actual, expected, prec)`).
pub(crate) fn assert_within_abs(what: &str, got: &[f64], want: &[f64], prec: f64) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= prec,
            "{what}: got {got:?}, exact {want:?} (prec {prec})"
        );
    }
}

/// The largest `|a − b|` over the elements of two tensors of as many elements (a NaN
/// difference is passed over by `f64::max`).
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    let a = host(a);
    let b = host(b);
    assert_eq!(a.len(), b.len());
    // A NaN difference is NaN (f64::max would skip it, and `NaN < tol` is false anyway, but
    // only if it reaches the comparison).
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, |m, d| if d.is_nan() || d > m { d } else { m })
}

/// Assert that the message of `e` contains each of `parts`.
pub(crate) fn assert_mentions(e: &InferError, parts: &[&str]) {
    let text = e.to_string();
    for p in parts {
        assert!(text.contains(p), "`{text}` should mention {p:?}");
    }
}

// Programs and runs -------------------------------------------------------------------------

/// The empty program (a guide with no site).
pub(crate) fn empty(_: &mut Ctx) -> vi_infer::Result<()> {
    Ok(())
}

/// Runs `f` in a fresh context: an empty store on `dev` in `dt` and a generator seeded with
/// `seed`.
pub(crate) fn run<T>(
    dev: &Device,
    dt: DType,
    seed: u64,
    f: impl FnOnce(&mut Ctx) -> vi_infer::Result<T>,
) -> vi_infer::Result<T> {
    let mut store = ParamStore::new(dev, dt);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ctx = Ctx::new(&mut store, &mut rng);
    f(&mut ctx)
}

/// Adam at learning rate `lr`, torch's defaults otherwise.
pub(crate) fn adam(lr: f64) -> Adam {
    Adam::empty(AdamOptions {
        lr,
        ..Default::default()
    })
    .expect("Adam options")
}

/// The error of the first `Svi::step` of `model` and `guide` with `optimizer` and `elbo`, the
/// generator seeded with 0 (a panic if the step succeeds).
pub(crate) fn step_error<TM, TG>(
    model: impl FnMut(&mut Ctx<'_>) -> vi_infer::Result<TM>,
    guide: impl FnMut(&mut Ctx<'_>) -> vi_infer::Result<TG>,
    optimizer: impl Optimizer,
    elbo: impl Elbo,
) -> InferError {
    let mut svi = Svi::new(model, guide, optimizer, elbo).seed(0);
    match svi.step() {
        Ok(r) => panic!("the step should fail, got loss {}", r.loss),
        Err(e) => e,
    }
}

/// `elbo.compute` of `model` and `guide` on a fresh store on `dev` in `dt`, the generator
/// seeded with `seed`.
pub(crate) fn elbo_output(
    elbo: &dyn Elbo,
    dev: &Device,
    dt: DType,
    seed: u64,
    mut model: impl FnMut(&mut Ctx) -> vi_infer::Result<()>,
    mut guide: impl FnMut(&mut Ctx) -> vi_infer::Result<()>,
) -> vi_infer::Result<ElboOutput> {
    let mut store = ParamStore::new(dev, dt);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    elbo.compute(&mut model, &mut guide, &mut store, &mut rng)
}

/// The error of [`elbo_output`] with seed 0 (a panic if the ELBO succeeds).
pub(crate) fn elbo_error(
    elbo: &dyn Elbo,
    dev: &Device,
    dt: DType,
    model: impl FnMut(&mut Ctx) -> vi_infer::Result<()>,
    guide: impl FnMut(&mut Ctx) -> vi_infer::Result<()>,
) -> InferError {
    match elbo_output(elbo, dev, dt, 0, model, guide) {
        Ok(out) => panic!("the ELBO should fail, got loss {}", out.loss),
        Err(e) => e,
    }
}
