//! The fused CPU kernels: the relative accuracy of the vectorised f32 softplus far left (each
//! instruction set's build is tested against f64 `std` in `ops/fastmath.rs`), and every fused
//! op against its composed candle expression on seeded random
//! shapes (broadcast, expanded, transposed inputs), values and gradients, with finite
//! differences for each fused backward and the "no gradient for an untracked input" rule.

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vi_dist::ops::fastmath::{self, Func};
use vi_dist::ops::{composed, fused};
use vi_dist::{Distribution, HalfNormal, LogNormal, Normal};
use vi_test::{assert_all_close as assert_close, fused_tol as tol};

use crate::common::{Res, host};

/// Autograd against central finite differences (step 1e-6) in f64.
const FD_TOL: vi_test::Tol = vi_test::Tol {
    rtol: 1e-6,
    atol: 1e-6,
};

// ---------- fastmath ----------

/// softplus(x) ≈ eˣ for x ≪ 0 with full relative accuracy (a proper log1p, not ln(1 + y)).
#[test]
fn softplus_keeps_relative_accuracy_far_left() {
    let xs: Vec<f32> = (0..400).map(|i| -17.0 - 0.2 * i as f32).collect();
    let mut ys = xs.clone();
    fastmath::apply(Func::Softplus, &mut ys);
    for (x, y) in xs.iter().zip(&ys) {
        let r = f64::from(*x).exp().ln_1p();
        if r > f64::from(f32::MIN_POSITIVE) {
            assert!(
                ((f64::from(*y) - r) / r).abs() < 3e-7,
                "softplus({x}) = {y}, want {r}"
            );
        }
    }
}

// ---------- fused against composed ----------

/// How an input reaches the output shape.
#[derive(Clone, Copy, Debug)]
enum Pattern {
    /// Contiguous, the output shape.
    Full,
    /// Rank 0.
    Scalar,
    /// The last dim only (a row, broadcast over the leading dims).
    Row,
    /// The first dim with size-1 dims after it (a column).
    Column,
    /// The output shape with every other dim 1, expanded by `broadcast_as` (stride 0).
    Expanded,
    /// The output shape built transposed and permuted back (not contiguous).
    Transposed,
}

const PATTERNS: [Pattern; 6] = [
    Pattern::Full,
    Pattern::Scalar,
    Pattern::Row,
    Pattern::Column,
    Pattern::Expanded,
    Pattern::Transposed,
];

/// A leaf (what gradients are taken against) and the view of it the op receives.
struct Input {
    leaf: Var,
    view: Tensor,
}

fn input(
    rng: &mut ChaCha8Rng,
    shape: &[usize],
    pattern: Pattern,
    draw: &dyn Fn(&mut ChaCha8Rng) -> f64,
    dtype: DType,
) -> Input {
    let leaf_shape: Vec<usize> = match pattern {
        Pattern::Full | Pattern::Transposed => shape.to_vec(),
        Pattern::Scalar => vec![],
        Pattern::Row => shape.last().map(|&d| vec![d]).unwrap_or_default(),
        Pattern::Column => shape
            .iter()
            .enumerate()
            .map(|(i, &d)| if i == 0 { d } else { 1 })
            .collect(),
        Pattern::Expanded => shape
            .iter()
            .enumerate()
            .map(|(i, &d)| if i % 2 == 1 { d } else { 1 })
            .collect(),
    };
    let rev: Vec<usize> = leaf_shape.iter().rev().copied().collect();
    let transposed = matches!(pattern, Pattern::Transposed) && shape.len() >= 2;
    let store_shape = if transposed { rev } else { leaf_shape.clone() };
    let n: usize = store_shape.iter().product();
    let data: Vec<f64> = (0..n).map(|_| draw(rng)).collect();
    let leaf = Var::from_tensor(
        &Tensor::from_vec(data, store_shape.as_slice(), &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap(),
    )
    .unwrap();
    let mut view = leaf.as_tensor().clone();
    if transposed {
        let perm: Vec<usize> = (0..shape.len()).rev().collect();
        view = view.permute(perm).unwrap();
    }
    if matches!(pattern, Pattern::Expanded) {
        view = view.broadcast_as(shape).unwrap();
    }
    Input { leaf, view }
}

fn random_shape(rng: &mut ChaCha8Rng) -> Vec<usize> {
    let rank = rng.random_range(0..=3);
    (0..rank).map(|_| rng.random_range(1..=5)).collect()
}

type OpFn = fn(&[&Tensor]) -> vi_dist::Result<Tensor>;

/// One fused op, its composed twin, and how to draw each input.
struct Case {
    name: &'static str,
    fused: OpFn,
    composed: OpFn,
    draws: Vec<fn(&mut ChaCha8Rng) -> f64>,
}

fn normal_draw(r: &mut ChaCha8Rng) -> f64 {
    let u: f64 = r.random_range(-1.0..1.0);
    let v: f64 = r.random_range(-1.0..1.0);
    2.0 * (u + v)
}
fn scale_draw(r: &mut ChaCha8Rng) -> f64 {
    r.random_range(0.3..3.0)
}
fn logit_draw(r: &mut ChaCha8Rng) -> f64 {
    r.random_range(-8.0..8.0)
}
fn bit_draw(r: &mut ChaCha8Rng) -> f64 {
    f64::from(u8::from(r.random_bool(0.4)))
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "softplus",
            fused: |x| fused::softplus(x[0]),
            composed: |x| composed::softplus(x[0]),
            draws: vec![logit_draw],
        },
        Case {
            name: "sigmoid",
            fused: |x| fused::sigmoid(x[0]),
            composed: |x| composed::sigmoid(x[0]),
            draws: vec![logit_draw],
        },
        Case {
            name: "normal_log_prob",
            fused: |x| fused::normal_log_prob(x[0], x[1], x[2]),
            composed: |x| composed::normal_log_prob(x[0], x[1], x[2]),
            draws: vec![normal_draw, normal_draw, scale_draw],
        },
        Case {
            name: "normal_rsample",
            fused: |x| fused::normal_rsample(x[0], x[1], x[2]),
            composed: |x| composed::normal_rsample(x[0], x[1], x[2]),
            draws: vec![normal_draw, scale_draw, normal_draw],
        },
        Case {
            name: "bernoulli_log_prob",
            fused: |x| fused::bernoulli_log_prob(x[0], x[1]),
            composed: |x| composed::bernoulli_log_prob(x[0], x[1]),
            draws: vec![bit_draw, logit_draw],
        },
        Case {
            name: "kl_normal_normal",
            fused: |x| fused::kl_normal_normal(x[0], x[1], x[2], x[3]),
            composed: |x| composed::kl_normal_normal(x[0], x[1], x[2], x[3]),
            draws: vec![normal_draw, scale_draw, normal_draw, scale_draw],
        },
    ]
}

/// Value of the op and gradients of `Σ w · op` for every leaf (`None` where there is none).
fn eval(
    op: OpFn,
    inputs: &[Input],
    weights: Option<&Tensor>,
) -> (Vec<f64>, Vec<usize>, Vec<Option<Vec<f64>>>) {
    let views: Vec<&Tensor> = inputs.iter().map(|i| &i.view).collect();
    let y = op(&views).unwrap();
    let loss = match weights {
        Some(w) => y.broadcast_mul(w).unwrap().sum_all().unwrap(),
        None => y.sum_all().unwrap(),
    };
    let grads = loss.backward().unwrap();
    let g = inputs
        .iter()
        .map(|i| grads.get(i.leaf.as_tensor()).map(host))
        .collect();
    (host(&y), y.dims().to_vec(), g)
}

fn fused_matches_composed(dtype: DType, seed: u64, rounds: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for case in cases() {
        for round in 0..rounds {
            let shape = random_shape(&mut rng);
            let inputs: Vec<Input> = case
                .draws
                .iter()
                .map(|d| {
                    let p = PATTERNS[rng.random_range(0..PATTERNS.len())];
                    input(&mut rng, &shape, p, d, dtype)
                })
                .collect();
            let w = if round % 2 == 0 {
                let n: usize = shape.iter().product();
                let data: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
                Some(
                    Tensor::from_vec(data, shape.as_slice(), &Device::Cpu)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap(),
                )
            } else {
                None
            };
            let what = format!("{} {dtype:?} round {round} shape {shape:?}", case.name);
            let (fv, fs, fg) = eval(case.fused, &inputs, w.as_ref());
            let (cv, cs, cg) = eval(case.composed, &inputs, w.as_ref());
            assert_eq!(fs, cs, "{what}: shapes");
            assert_close(&what, &fv, &cv, tol(dtype));
            for (i, (a, b)) in fg.iter().zip(&cg).enumerate() {
                let (Some(a), Some(b)) = (a, b) else {
                    panic!("{what}: input {i} has no gradient");
                };
                assert_close(&format!("{what} ∂{i}"), a, b, tol(dtype));
            }
        }
    }
}

#[test]
fn fused_matches_composed_f64() {
    fused_matches_composed(DType::F64, 7, 60);
}

#[test]
fn fused_matches_composed_f32() {
    fused_matches_composed(DType::F32, 8, 60);
}

/// Tensors past the threading threshold (64K elements: split across rayon's threads), with a
/// broadcast row and a transposed input, f32 and f64.
#[test]
fn fused_matches_composed_on_large_tensors() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let shape = [256usize, 300];
    for dtype in [DType::F64, DType::F32] {
        for case in cases() {
            let inputs: Vec<Input> = case
                .draws
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let p = [Pattern::Full, Pattern::Row, Pattern::Transposed][i % 3];
                    input(&mut rng, &shape, p, d, dtype)
                })
                .collect();
            let what = format!("{} {dtype:?} large", case.name);
            let (fv, _, fg) = eval(case.fused, &inputs, None);
            let (cv, _, cg) = eval(case.composed, &inputs, None);
            assert_close(&what, &fv, &cv, tol(dtype));
            for (i, (a, b)) in fg.iter().zip(&cg).enumerate() {
                // a row gradient sums 256 terms: allow for the f32 accumulation
                let t = match (dtype, i % 3) {
                    (DType::F32, 1) => vi_test::Tol {
                        rtol: 1e-3,
                        atol: 1e-3,
                    },
                    _ => tol(dtype),
                };
                let (Some(a), Some(b)) = (a, b) else {
                    panic!("{what}: input {i} has no gradient");
                };
                assert_close(&format!("{what} ∂{i}"), a, b, t);
            }
        }
    }
}

/// Every fused backward against central finite differences of the fused forward (f64).
#[test]
fn fused_backward_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for case in cases() {
        let shape = [2usize, 3];
        let inputs: Vec<Input> = case
            .draws
            .iter()
            .map(|d| input(&mut rng, &shape, Pattern::Full, d, DType::F64))
            .collect();
        let w = Tensor::new(&[[0.3f64, -1.2, 0.7], [1.1, 0.4, -0.6]], &Device::Cpu).unwrap();
        let (_, _, grads) = eval(case.fused, &inputs, Some(&w));
        let base: Vec<Vec<f64>> = inputs.iter().map(|i| host(i.leaf.as_tensor())).collect();
        for (k, g) in grads.iter().enumerate() {
            let fd = vi_test::finite_difference(&base[k], 1e-6, |x| {
                let ts: Vec<Tensor> = base
                    .iter()
                    .enumerate()
                    .map(|(j, b)| {
                        let d = if j == k { x.to_vec() } else { b.clone() };
                        Tensor::from_vec(d, &shape, &Device::Cpu).unwrap()
                    })
                    .collect();
                let refs: Vec<&Tensor> = ts.iter().collect();
                let y = (case.fused)(&refs).unwrap();
                (y * &w)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            });
            let g = g.as_ref().expect("gradient");
            let what = format!("{} ∂{k} (autograd vs finite difference)", case.name);
            assert_close(&what, g, &fd, FD_TOL);
        }
    }
}

/// An input that tracks no gradient gets none: the op's backward returns `None` for it (so
/// candle's gradient store has no entry), while tracked ones get theirs.
#[test]
fn untracked_inputs_get_no_gradient() -> Res {
    let cpu = Device::Cpu;
    let data = Tensor::new(&[[1.0f32, 0.0, 1.0]], &cpu)?;
    let logits = Var::new(&[[0.5f32, -2.0, 3.0]], &cpu)?;
    let g = fused::bernoulli_log_prob(&data, logits.as_tensor())?
        .sum_all()?
        .backward()?;
    assert!(g.get(&data).is_none());
    assert!(g.get(logits.as_tensor()).is_some());

    // the VAE's prior: constant Normal(0, 1) expanded, a tracked sample
    let z = Var::new(&[[0.3f64, -1.0], [2.0, 0.1]], &cpu)?;
    let zero = Tensor::zeros((2, 2), DType::F64, &cpu)?;
    let one = Tensor::ones(2, DType::F64, &cpu)?.broadcast_as((2, 2))?;
    let g = fused::normal_log_prob(z.as_tensor(), &zero, &one)?
        .sum_all()?
        .backward()?;
    assert!(g.get(&zero).is_none() && g.get(&one).is_none());
    let gz = host(g.get(z.as_tensor()).expect("dz"));
    assert_eq!(gz, vec![-0.3, 1.0, -2.0, -0.1]);

    // KL of a tracked guide against the constant prior: gradients for p only
    let (mp, sp) = (
        Var::new(&[0.5f64, -1.0], &cpu)?,
        Var::new(&[0.7f64, 1.3], &cpu)?,
    );
    let (mq, sq) = (
        Tensor::zeros(2, DType::F64, &cpu)?,
        Tensor::ones(2, DType::F64, &cpu)?,
    );
    let g = fused::kl_normal_normal(mp.as_tensor(), sp.as_tensor(), &mq, &sq)?
        .sum_all()?
        .backward()?;
    assert!(g.get(&mq).is_none() && g.get(&sq).is_none());
    assert!(g.get(mp.as_tensor()).is_some() && g.get(sp.as_tensor()).is_some());

    // rsample: ε is data
    let eps = Tensor::new(&[0.2f32, -0.4], &cpu)?;
    let (loc, scale) = (
        Var::new(&[1.0f32, 2.0], &cpu)?,
        Var::new(&[0.5f32, 3.0], &cpu)?,
    );
    let g = fused::normal_rsample(loc.as_tensor(), scale.as_tensor(), &eps)?
        .sum_all()?
        .backward()?;
    assert!(g.get(&eps).is_none());
    assert_eq!(host(g.get(scale.as_tensor()).expect("dscale")), host(&eps));
    assert_eq!(host(g.get(loc.as_tensor()).expect("dloc")), vec![1.0, 1.0]);
    Ok(())
}

/// All four KL parameters tracked (the op folds the locs into their difference).
#[test]
fn kl_with_every_parameter_tracked() -> Res {
    let cpu = Device::Cpu;
    let vars: Vec<Var> = [[0.5f64, -1.0], [0.7, 1.3], [0.1, 0.4], [1.5, 0.2]]
        .iter()
        .map(|v| Var::new(v, &cpu).unwrap())
        .collect();
    let ts: Vec<&Tensor> = vars.iter().map(|v| v.as_tensor()).collect();
    let a = fused::kl_normal_normal(ts[0], ts[1], ts[2], ts[3])?;
    let b = composed::kl_normal_normal(ts[0], ts[1], ts[2], ts[3])?;
    assert_close("kl", &host(&a), &host(&b), tol(DType::F64));
    let (ga, gb) = (a.sum_all()?.backward()?, b.sum_all()?.backward()?);
    for t in ts {
        let (x, y) = (ga.get(t).expect("fused grad"), gb.get(t).expect("grad"));
        assert_close("kl grad", &host(x), &host(y), tol(DType::F64));
    }
    Ok(())
}

/// Far tails and extreme scales: fused and composed agree, gradients stay finite.
#[test]
fn extreme_inputs() -> Res {
    let cpu = Device::Cpu;
    for dtype in [DType::F64, DType::F32] {
        let x = Var::from_tensor(
            &Tensor::new(&[1e4f64, -1e4, 0.0, 30.0, -30.0], &cpu)?.to_dtype(dtype)?,
        )?;
        for (name, f, c) in [
            (
                "softplus",
                fused::softplus as fn(&Tensor) -> vi_dist::Result<Tensor>,
                composed::softplus as fn(&Tensor) -> vi_dist::Result<Tensor>,
            ),
            ("sigmoid", fused::sigmoid, composed::sigmoid),
        ] {
            let (a, b) = (f(x.as_tensor())?, c(x.as_tensor())?);
            assert_close(name, &host(&a), &host(&b), tol(dtype));
            let ga = host(a.sum_all()?.backward()?.get(x.as_tensor()).expect("grad"));
            let gb = host(b.sum_all()?.backward()?.get(x.as_tensor()).expect("grad"));
            assert!(ga.iter().all(|g| g.is_finite()), "{name}: {ga:?}");
            assert_close(&format!("{name} grad"), &ga, &gb, tol(dtype));
        }
        let sp = host(&fused::softplus(x.as_tensor())?);
        assert_eq!(sp[..2], [1e4, 0.0]);

        // tiny and huge scales
        let (tiny, huge) = match dtype {
            DType::F64 => (1e-150, 1e150),
            _ => (1e-18, 1e18),
        };
        let scale = Tensor::new(&[tiny, 1.0, huge], &cpu)?.to_dtype(dtype)?;
        let loc = Tensor::new(&[0.0f64, 0.0, 0.0], &cpu)?.to_dtype(dtype)?;
        let v = (&scale * 0.5)?;
        let a = host(&fused::normal_log_prob(&v, &loc, &scale)?);
        let b = host(&composed::normal_log_prob(&v, &loc, &scale)?);
        assert_close("normal tiny/huge", &a, &b, tol(dtype));
        let a = host(&fused::kl_normal_normal(
            &loc,
            &scale,
            &loc,
            &scale.ones_like()?,
        )?);
        let b = host(&composed::kl_normal_normal(
            &loc,
            &scale,
            &loc,
            &scale.ones_like()?,
        )?);
        assert_close("kl tiny/huge", &a, &b, tol(dtype));
    }
    Ok(())
}

/// The distributions route through the fused ops on the CPU and still give the composed
/// values, with a value that broadcasts (sample dims) against the batch.
#[test]
fn distributions_use_the_same_math() -> Res {
    let cpu = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for dtype in [DType::F64, DType::F32] {
        let loc = input(&mut rng, &[3, 4], Pattern::Full, &normal_draw, dtype);
        let scale = input(&mut rng, &[4], Pattern::Full, &scale_draw, dtype);
        let v = input(&mut rng, &[2, 3, 4], Pattern::Full, &normal_draw, dtype);
        let d = Normal::new(&loc.view, &scale.view)?;
        let want = composed::normal_log_prob(&v.view, d.loc(), d.scale())?;
        assert_close(
            "Normal",
            &host(&d.log_prob(&v.view)?),
            &host(&want),
            tol(dtype),
        );

        let pos = v.view.abs()?.affine(1.0, 0.1)?;
        let ln = LogNormal::new(&loc.view, &scale.view)?;
        let log_x = pos.log()?;
        let want =
            composed::normal_log_prob(&log_x, ln.loc(), ln.scale())?.broadcast_sub(&log_x)?;
        assert_close(
            "LogNormal",
            &host(&ln.log_prob(&pos)?),
            &host(&want),
            tol(dtype),
        );

        let hn = HalfNormal::new(&scale.view)?;
        let zero = Tensor::zeros((), dtype, &cpu)?;
        let want = composed::normal_log_prob(&pos, &zero, hn.scale())?.affine(1.0, 2f64.ln())?;
        assert_close(
            "HalfNormal",
            &host(&hn.log_prob(&pos)?),
            &host(&want),
            tol(dtype),
        );

        let mut r = ChaCha8Rng::seed_from_u64(1);
        let z = d.rsample(&[2], &mut r)?;
        let mut r = ChaCha8Rng::seed_from_u64(1);
        let eps = vi_dist::standard_normal(&[2, 3, 4], dtype, &cpu, &mut r)?;
        let want = composed::normal_rsample(d.loc(), d.scale(), &eps)?;
        assert_close("Normal rsample", &host(&z), &host(&want), tol(dtype));
    }
    Ok(())
}

/// Not-supported inputs are an error for the fused functions, and the dispatching ones fall
/// back to the composed path.
#[test]
fn unsupported_inputs_fall_back() -> Res {
    let cpu = Device::Cpu;
    let a = Tensor::new(&[0.5f32], &cpu)?;
    let b = Tensor::new(&[0.5f64], &cpu)?;
    assert!(fused::bernoulli_log_prob(&a, &b).is_err());
    assert!(vi_dist::ops::bernoulli_log_prob(&a, &b).is_err());
    let h = a.to_dtype(DType::BF16)?;
    assert!(!fused::is_supported(&[&h]));
    let y = vi_dist::ops::softplus(&h)?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?;
    assert!((y[0] - 0.974).abs() < 1e-2);
    Ok(())
}

// ---------- fused ops summed over trailing (event) dims ----------

type SumFn = fn(&[&Tensor], usize) -> vi_dist::Result<Tensor>;

/// A summing fused op and the elementwise composed op it sums.
struct SumCase {
    name: &'static str,
    fused: SumFn,
    composed: OpFn,
    draws: Vec<fn(&mut ChaCha8Rng) -> f64>,
}

fn sum_cases() -> Vec<SumCase> {
    vec![
        SumCase {
            name: "normal_log_prob_sum",
            fused: |x, k| fused::normal_log_prob_sum(x[0], x[1], x[2], k),
            composed: |x| composed::normal_log_prob(x[0], x[1], x[2]),
            draws: vec![normal_draw, normal_draw, scale_draw],
        },
        SumCase {
            name: "bernoulli_log_prob_sum",
            fused: |x, k| fused::bernoulli_log_prob_sum(x[0], x[1], k),
            composed: |x| composed::bernoulli_log_prob(x[0], x[1]),
            draws: vec![bit_draw, logit_draw],
        },
        SumCase {
            name: "kl_normal_normal_sum",
            fused: |x, k| fused::kl_normal_normal_sum(x[0], x[1], x[2], x[3], k),
            composed: |x| composed::kl_normal_normal(x[0], x[1], x[2], x[3]),
            draws: vec![normal_draw, scale_draw, normal_draw, scale_draw],
        },
    ]
}

fn sum_last(t: Tensor, k: usize) -> Tensor {
    (0..k).fold(t, |t, _| t.sum(candle_core::D::Minus1).unwrap())
}

/// Value and gradients of every leaf of `Σ w · y` for `y = op(views)` (`None`: no gradient).
fn eval_with(
    y: Tensor,
    inputs: &[Input],
    weights: Option<&Tensor>,
) -> (Vec<f64>, Vec<usize>, Vec<Option<Vec<f64>>>) {
    let loss = match weights {
        Some(w) => y.broadcast_mul(w).unwrap().sum_all().unwrap(),
        None => y.sum_all().unwrap(),
    };
    let grads = loss.backward().unwrap();
    let g = inputs
        .iter()
        .map(|i| grads.get(i.leaf.as_tensor()).map(host))
        .collect();
    (host(&y), y.dims().to_vec(), g)
}

fn random_weights(rng: &mut ChaCha8Rng, shape: &[usize], dtype: DType) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(data, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// Compare one summing op with the composed op then `sum`, values and every gradient.
fn check_sum_case(
    case: &SumCase,
    inputs: &[Input],
    k: usize,
    w: Option<&Tensor>,
    what: &str,
    value_tol: vi_test::Tol,
    grad_tol: &dyn Fn(usize) -> vi_test::Tol,
) {
    let views: Vec<&Tensor> = inputs.iter().map(|i| &i.view).collect();
    let (fv, fs, fg) = eval_with((case.fused)(&views, k).unwrap(), inputs, w);
    let (cv, cs, cg) = eval_with(sum_last((case.composed)(&views).unwrap(), k), inputs, w);
    assert_eq!(fs, cs, "{what}: shapes");
    assert_close(what, &fv, &cv, value_tol);
    for (i, (a, b)) in fg.iter().zip(&cg).enumerate() {
        let (Some(a), Some(b)) = (a, b) else {
            panic!("{what}: input {i} has no gradient");
        };
        assert_close(&format!("{what} ∂{i}"), a, b, grad_tol(i));
    }
}

fn summed_matches_composed(dtype: DType, seed: u64, rounds: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for case in sum_cases() {
        for round in 0..rounds {
            let k = 1 + round % 2;
            let rank = rng.random_range(k..=3);
            let shape: Vec<usize> = (0..rank).map(|_| rng.random_range(1..=5)).collect();
            // the first input reaches the whole shape (so the sum has `rank - k` dims), the
            // others any pattern
            let full = [Pattern::Full, Pattern::Expanded, Pattern::Transposed];
            let inputs: Vec<Input> = case
                .draws
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let p = if i == 0 {
                        full[rng.random_range(0..full.len())]
                    } else {
                        PATTERNS[rng.random_range(0..PATTERNS.len())]
                    };
                    input(&mut rng, &shape, p, d, dtype)
                })
                .collect();
            let w = (round % 3 != 0).then(|| random_weights(&mut rng, &shape[..rank - k], dtype));
            let what = format!(
                "{} {dtype:?} round {round} shape {shape:?} k {k}",
                case.name
            );
            check_sum_case(&case, &inputs, k, w.as_ref(), &what, tol(dtype), &|_| {
                tol(dtype)
            });
        }
    }
}

#[test]
fn summed_matches_composed_f64() {
    summed_matches_composed(DType::F64, 17, 60);
}

#[test]
fn summed_matches_composed_f32() {
    summed_matches_composed(DType::F32, 18, 60);
}

/// The VAE's shapes ([256, 784] past the threading threshold, [256, 50] below it), a row
/// summed wider than one chunk ([3, 2500]), everything summed at once (k = rank), with
/// broadcast rows, transposed inputs and the expanded constant prior, f64 and f32.
#[test]
fn summed_matches_composed_on_large_tensors() {
    let mut rng = ChaCha8Rng::seed_from_u64(19);
    let shapes: [(&[usize], usize); 5] = [
        (&[256, 784], 1),
        (&[256, 50], 1),
        (&[3, 2500], 1),
        (&[16, 4, 300], 2),
        (&[256, 784], 2),
    ];
    for dtype in [DType::F64, DType::F32] {
        for case in sum_cases() {
            for (si, &(shape, k)) in shapes.iter().enumerate() {
                let inputs: Vec<Input> = case
                    .draws
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        let p = [
                            Pattern::Full,
                            Pattern::Row,
                            Pattern::Transposed,
                            Pattern::Expanded,
                        ][(i + si) % 4];
                        input(&mut rng, shape, p, d, dtype)
                    })
                    .collect();
                let patterns: Vec<usize> = (0..inputs.len()).map(|i| (i + si) % 4).collect();
                let w = random_weights(&mut rng, &shape[..shape.len() - k], dtype);
                let what = format!("{} {dtype:?} {shape:?} k {k}", case.name);
                // f32 sums of up to 200 000 terms: the composed side sums in f32; a broadcast
                // input's gradient sums many terms on both sides.
                let f32_sum = vi_test::Tol {
                    rtol: 1e-4,
                    atol: 1e-2,
                };
                let value_tol = match dtype {
                    DType::F64 => tol(dtype),
                    _ => f32_sum,
                };
                let grad_tol = |i: usize| match (dtype, patterns[i]) {
                    (DType::F32, 1 | 3) => vi_test::Tol {
                        rtol: 1e-3,
                        atol: 1e-3,
                    },
                    _ => tol(dtype),
                };
                check_sum_case(&case, &inputs, k, Some(&w), &what, value_tol, &grad_tol);
            }
        }
    }
}

/// The f32 sums accumulate in f64: a sum of 200 704 terms matches the f64 sum of the same
/// f32 terms to an f32 rounding, where a plain f32 running sum would drift.
#[test]
fn summed_f32_accumulates_in_f64() -> Res {
    let cpu = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let n = 256 * 784;
    let logits: Vec<f32> = (0..n).map(|_| rng.random_range(-8.0..8.0)).collect();
    let bits: Vec<f32> = (0..n)
        .map(|_| f32::from(u8::from(rng.random_bool(0.3))))
        .collect();
    let l = Tensor::from_vec(logits, (256, 784), &cpu)?;
    let x = Tensor::from_vec(bits, (256, 784), &cpu)?;
    let each: Vec<f64> = host(&fused::bernoulli_log_prob(&x, &l)?);
    let exact: f64 = each.iter().sum();
    let total = fused::bernoulli_log_prob_sum(&x, &l, 2)?.to_scalar::<f32>()?;
    assert!(
        (f64::from(total) - exact).abs() <= exact.abs() * 1e-7,
        "{total} vs {exact}"
    );
    // `Independent(Bernoulli, 2)` and `Independent(Normal, 2)` take the summing op (candle's
    // f32 `sum` of the same terms is off by 3e-7 relative here)
    let d = vi_dist::Bernoulli::from_logits(&l)?.to_event(2)?;
    let total = d.log_prob(&x)?.to_scalar::<f32>()?;
    assert!(
        (f64::from(total) - exact).abs() <= exact.abs() * 1e-7,
        "Independent(Bernoulli): {total} vs {exact}"
    );
    let scale = l.abs()?.affine(1.0, 0.5)?;
    let d = Normal::new(&x, &scale)?.to_event(2)?;
    let exact: f64 = host(&fused::normal_log_prob(&l, &x, &scale)?).iter().sum();
    let total = d.log_prob(&l)?.to_scalar::<f32>()?;
    assert!(
        (f64::from(total) - exact).abs() <= exact.abs() * 1e-7,
        "Independent(Normal): {total} vs {exact}"
    );
    Ok(())
}

/// Every summing backward against central finite differences of its forward (f64), k = 1
/// and 2, with broadcast inputs.
#[test]
fn summed_backward_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(29);
    for case in sum_cases() {
        for k in [1usize, 2] {
            let shape = [2usize, 3, 2];
            let leaf_shapes: Vec<Vec<usize>> = (0..case.draws.len())
                .map(|i| match i % 3 {
                    0 => shape.to_vec(),
                    1 => vec![3, 1],
                    _ => vec![2],
                })
                .collect();
            let base: Vec<Vec<f64>> = leaf_shapes
                .iter()
                .zip(&case.draws)
                .map(|(s, d)| (0..s.iter().product()).map(|_| d(&mut rng)).collect())
                .collect();
            let w = random_weights(&mut rng, &shape[..shape.len() - k], DType::F64);
            let run = |vals: &[Vec<f64>], track: bool| {
                let vars: Vec<Var> = vals
                    .iter()
                    .zip(&leaf_shapes)
                    .map(|(v, s)| {
                        Var::from_tensor(
                            &Tensor::from_vec(v.clone(), s.as_slice(), &Device::Cpu).unwrap(),
                        )
                        .unwrap()
                    })
                    .collect();
                let ts: Vec<Tensor> = vars
                    .iter()
                    .map(|v| {
                        let t = if track {
                            v.as_tensor().clone()
                        } else {
                            v.as_tensor().detach()
                        };
                        t.broadcast_as(&shape[..]).unwrap()
                    })
                    .collect();
                let refs: Vec<&Tensor> = ts.iter().collect();
                let loss = (case.fused)(&refs, k)
                    .unwrap()
                    .broadcast_mul(&w)
                    .unwrap()
                    .sum_all()
                    .unwrap();
                (loss, vars)
            };
            let (loss, vars) = run(&base, true);
            let grads = loss.backward().unwrap();
            for (j, var) in vars.iter().enumerate() {
                let g = host(grads.get(var.as_tensor()).expect("gradient"));
                let fd = vi_test::finite_difference(&base[j], 1e-6, |x| {
                    let mut vals = base.clone();
                    vals[j] = x.to_vec();
                    run(&vals, false).0.to_scalar::<f64>().unwrap()
                });
                let what = format!("{} k {k} ∂{j} (autograd vs finite difference)", case.name);
                assert_close(&what, &g, &fd, FD_TOL);
            }
        }
    }
}

/// Summing ops: untracked inputs get no gradient, tracked ones theirs (the VAE's likelihood
/// and KL against the constant prior), all four KL parameters tracked, and `dims` beyond the
/// rank is an error on both paths.
#[test]
fn summed_gradients_and_errors() -> Res {
    let cpu = Device::Cpu;
    let data = Tensor::new(&[[1.0f32, 0.0, 1.0]], &cpu)?;
    let logits = Var::new(&[[0.5f32, -2.0, 3.0]], &cpu)?;
    let g = fused::bernoulli_log_prob_sum(&data, logits.as_tensor(), 1)?
        .sum_all()?
        .backward()?;
    assert!(g.get(&data).is_none());
    assert!(g.get(logits.as_tensor()).is_some());

    let (mp, sp) = (
        Var::new(&[[0.5f64, -1.0]], &cpu)?,
        Var::new(&[[0.7f64, 1.3]], &cpu)?,
    );
    let (mq, sq) = (
        Tensor::zeros(2, DType::F64, &cpu)?,
        Tensor::ones(2, DType::F64, &cpu)?,
    );
    let g = fused::kl_normal_normal_sum(mp.as_tensor(), sp.as_tensor(), &mq, &sq, 1)?
        .sum_all()?
        .backward()?;
    assert!(g.get(&mq).is_none() && g.get(&sq).is_none());
    assert!(g.get(mp.as_tensor()).is_some() && g.get(sp.as_tensor()).is_some());

    let vars: Vec<Var> = [[0.5f64, -1.0], [0.7, 1.3], [0.1, 0.4], [1.5, 0.2]]
        .iter()
        .map(|v| Var::new(v, &cpu).unwrap())
        .collect();
    let ts: Vec<&Tensor> = vars.iter().map(|v| v.as_tensor()).collect();
    let a = fused::kl_normal_normal_sum(ts[0], ts[1], ts[2], ts[3], 1)?;
    let b = composed::kl_normal_normal(ts[0], ts[1], ts[2], ts[3])?.sum_all()?;
    assert_eq!(a.dims(), &[] as &[usize]);
    assert_close("kl sum", &host(&a), &host(&b), tol(DType::F64));
    let (ga, gb) = (a.backward()?, b.backward()?);
    for t in ts {
        let (x, y) = (ga.get(t).expect("fused grad"), gb.get(t).expect("grad"));
        assert_close("kl sum grad", &host(x), &host(y), tol(DType::F64));
    }

    let v = Tensor::zeros((2, 3), DType::F32, &cpu)?;
    let one = Tensor::ones((), DType::F32, &cpu)?;
    assert!(fused::normal_log_prob_sum(&v, &one, &one, 3).is_err());
    assert!(vi_dist::ops::normal_log_prob_sum(&v, &one, &one, 3).is_err());
    let h = v.to_dtype(DType::BF16)?;
    let hone = one.to_dtype(DType::BF16)?;
    assert!(vi_dist::ops::normal_log_prob_sum(&h, &hone, &hone, 3).is_err());
    // the composed fallback (bf16) sums too
    let lp = vi_dist::ops::normal_log_prob_sum(&h, &hone, &hone, 1)?.to_dtype(DType::F32)?;
    assert_eq!(lp.dims(), &[2]);
    // an empty event sums to 0
    let e = Tensor::zeros((2, 0), DType::F64, &cpu)?;
    let z = fused::normal_log_prob_sum(&e, &e, &e, 1)?;
    assert_eq!(host(&z), vec![0.0, 0.0]);
    Ok(())
}

/// `Independent(Normal | Bernoulli, k).log_prob` (the summing ops) against the base's
/// `log_prob` summed, with sample dims on the value and broadcast parameters, values and
/// gradients; its shape and support errors are unchanged.
#[test]
fn independent_log_prob_sums_in_the_op() -> Res {
    use vi_dist::{Bernoulli, DistError};
    let cpu = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    for dtype in [DType::F64, DType::F32] {
        for k in [1usize, 2] {
            let loc = input(&mut rng, &[3, 4], Pattern::Full, &normal_draw, dtype);
            let scale = input(&mut rng, &[4], Pattern::Full, &scale_draw, dtype);
            let v = input(&mut rng, &[2, 3, 4], Pattern::Full, &normal_draw, dtype);
            let d = Normal::new(&loc.view, &scale.view)?;
            let ins = [v, loc, scale];
            let ind = d.clone().to_event(k)?;
            let (a, sa, ga) = eval_with(ind.log_prob(&ins[0].view)?, &ins, None);
            let (b, sb, gb) = eval_with(sum_last(d.log_prob(&ins[0].view)?, k), &ins, None);
            assert_eq!(sa, sb);
            assert_close("Independent(Normal)", &a, &b, tol(dtype));
            for (x, y) in ga.iter().zip(&gb) {
                assert_close(
                    "Independent(Normal) grad",
                    x.as_ref().expect("grad"),
                    y.as_ref().expect("grad"),
                    tol(dtype),
                );
            }

            let logits = input(&mut rng, &[3, 4], Pattern::Expanded, &logit_draw, dtype);
            let x = input(&mut rng, &[3, 4], Pattern::Full, &bit_draw, dtype);
            let bern = Bernoulli::from_logits(&logits.view)?;
            let ind = bern.clone().to_event(k)?;
            let xv = x.view.detach();
            let ins = [logits];
            let (a, sa, ga) = eval_with(ind.log_prob(&xv)?, &ins, None);
            let (b, sb, gb) = eval_with(sum_last(bern.log_prob(&xv)?, k), &ins, None);
            assert_eq!(sa, sb);
            assert_close("Independent(Bernoulli)", &a, &b, tol(dtype));
            assert_close(
                "Independent(Bernoulli) grad",
                ga[0].as_ref().expect("grad"),
                gb[0].as_ref().expect("grad"),
                tol(dtype),
            );
            // integer values are accepted as by the base
            let xi = xv.to_dtype(DType::U8)?;
            assert_close(
                "Independent(Bernoulli) u8",
                &host(&ind.log_prob(&xi)?),
                &a,
                tol(dtype),
            );
        }
        // errors: the event shape, then the base's support (validation on)
        let d = Normal::new(
            &Tensor::zeros((3, 4), dtype, &cpu)?,
            &Tensor::ones((3, 4), dtype, &cpu)?,
        )?
        .to_event(1)?;
        let bad = Tensor::zeros((3, 5), dtype, &cpu)?;
        assert!(matches!(
            d.log_prob(&bad),
            Err(DistError::ValueShape { .. })
        ));
        let b =
            vi_dist::Bernoulli::from_logits(&Tensor::zeros((3, 4), dtype, &cpu)?)?.to_event(2)?;
        let half = Tensor::full(0.5f64, (3, 4), &cpu)?.to_dtype(dtype)?;
        let r = vi_dist::with_validation(true, || b.log_prob(&half));
        assert!(matches!(r, Err(DistError::ValueSupport { .. })));
        let other = Tensor::zeros((3, 4), DType::U32, &cpu)?.to_dtype(if dtype == DType::F32 {
            DType::F64
        } else {
            DType::F32
        })?;
        assert!(matches!(
            d.log_prob(&other),
            Err(DistError::ValueKind { .. })
        ));
    }
    Ok(())
}
