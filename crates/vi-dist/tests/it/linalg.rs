//! The matrix ops of `vi_dist::ops`: values, the host kernels against the composed paths,
//! every backward pass against finite differences in f64, and typed errors.

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vi_dist::{DistError, ops};

use crate::common::{Res, close, host};

type Op = fn(&Tensor) -> vi_dist::Result<Tensor>;
type Op2 = fn(&Tensor, &Tensor, bool) -> vi_dist::Result<Tensor>;

fn randn(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// A batch of symmetric positive-definite matrices `B Bᵀ + n I / 2`.
pub(crate) fn spd(batch: &[usize], n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let count: usize = batch.iter().product();
    let mut out = Vec::with_capacity(count * n * n);
    for _ in 0..count {
        let b = randn(&mut rng, n * n);
        for i in 0..n {
            for j in 0..n {
                let dot: f64 = (0..n).map(|k| b[i * n + k] * b[j * n + k]).sum();
                out.push(dot + if i == j { n as f64 / 2.0 } else { 0.0 });
            }
        }
    }
    out
}

/// A batch of well-conditioned triangular matrices.
fn triangular(batch: &[usize], n: usize, lower: bool, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let count: usize = batch.iter().product();
    let mut out = Vec::with_capacity(count * n * n);
    for _ in 0..count {
        for i in 0..n {
            for j in 0..n {
                let keep = if lower { j <= i } else { j >= i };
                let v = if i == j {
                    rng.random_range(1.0..2.0)
                } else if keep {
                    rng.random_range(-0.5..0.5)
                } else {
                    // Garbage outside the triangle: the ops must not read it.
                    rng.random_range(-9.0..9.0)
                };
                out.push(v);
            }
        }
    }
    out
}

fn shape(batch: &[usize], tail: &[usize]) -> Vec<usize> {
    batch.iter().chain(tail).copied().collect()
}

fn t64(data: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(data.to_vec(), shape, &Device::Cpu).unwrap()
}

/// `Σ w ⊙ f(x)` and its gradient w.r.t. `x` by autograd.
fn weighted_grad(
    x: &[f64],
    xs: &[usize],
    w: &Tensor,
    f: impl Fn(&Tensor) -> Tensor,
) -> (f64, Vec<f64>) {
    let v = Var::from_tensor(&t64(x, xs)).unwrap();
    let y = f(v.as_tensor());
    let s = y.broadcast_mul(w).unwrap().sum_all().unwrap();
    let g = s.backward().unwrap();
    (
        s.to_scalar::<f64>().unwrap(),
        host(g.get(v.as_tensor()).unwrap()),
    )
}

#[test]
fn cholesky_reconstructs_and_matches_composed() -> Res {
    // Three batch dims: more than candle's matmul takes directly.
    let (batch, n) = ([2, 3, 2], 4);
    let a = spd(&batch, n, 1);
    for dtype in [DType::F64, DType::F32] {
        let at = t64(&a, &shape(&batch, &[n, n])).to_dtype(dtype)?;
        let l = ops::cholesky(&at)?;
        let back = ops::batch_matmul(&l, &l.t()?)?;
        let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
        close(&host(&back), &a, tol)?;
        // Lower triangular with a positive diagonal.
        assert_eq!(host(&ops::tril(&l)?), host(&l));
        assert!(host(&ops::diagonal(&l)?).iter().all(|&d| d > 0.0));
        close(&host(&ops::composed::cholesky(&at)?), &host(&l), tol)?;
    }
    // Gradients of kernel and composed paths agree at this rank too.
    let xs = shape(&batch, &[n, n]);
    let mut rng = ChaCha8Rng::seed_from_u64(19);
    let w = t64(&randn(&mut rng, a.len()), &xs);
    let (_, g1) = weighted_grad(&a, &xs, &w, |x| ops::cholesky(x).unwrap());
    let (_, g2) = weighted_grad(&a, &xs, &w, |x| ops::composed::cholesky(x).unwrap());
    close(&g1, &g2, 1e-10)?;
    Ok(())
}

#[test]
fn cholesky_backward_is_symmetric_and_matches_finite_differences() -> Res {
    let (batch, n) = ([2], 4);
    let xs = shape(&batch, &[n, n]);
    let a = spd(&batch, n, 2);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    // Weights on every entry of L, the upper triangle included: it must drop out.
    let w = t64(&randn(&mut rng, a.len()), &xs);
    for op in [ops::cholesky as Op, ops::composed::cholesky as Op] {
        let (_, g) = weighted_grad(&a, &xs, &w, |x| op(x).unwrap());
        // The symmetric gradient is the derivative of x ↦ h(chol((x + xᵀ) / 2)).
        let fd = vi_test::finite_difference(&a, 1e-6, |x| {
            let x = t64(x, &xs);
            let s = ((&x + x.t().unwrap()).unwrap() * 0.5).unwrap();
            let l = ops::cholesky(&s).unwrap();
            l.broadcast_mul(&w)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        });
        close(&g, &fd, 1e-7)?;
        for m in g.chunks(n * n) {
            for i in 0..n {
                for j in 0..i {
                    assert!((m[i * n + j] - m[j * n + i]).abs() < 1e-12, "not symmetric");
                }
            }
        }
    }
    Ok(())
}

#[test]
fn cholesky_errors_name_the_batch_element() -> Res {
    let (batch, n) = ([2, 3], 3);
    let mut a = spd(&batch, n, 4);
    // Element [1, 2]: an indefinite matrix.
    let off = (3 + 2) * n * n;
    a[off..off + n * n].copy_from_slice(&[1.0, 2.0, 0.0, 2.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    for dtype in [DType::F64, DType::F32] {
        let at = t64(&a, &shape(&batch, &[n, n])).to_dtype(dtype)?;
        for op in [ops::cholesky as Op, ops::composed::cholesky as Op] {
            match op(&at) {
                Err(DistError::Op {
                    op: "cholesky",
                    msg,
                }) => {
                    assert!(msg.contains("[1, 2]"), "{msg}");
                    assert!(msg.contains("[2, 3, 3, 3]"), "{msg}");
                }
                other => panic!("expected a typed error, got {other:?}"),
            }
        }
    }
    // NaN is an error, not a NaN factor.
    let nan = t64(&[f64::NAN, 0.0, 0.0, 1.0], &[2, 2]);
    assert!(matches!(ops::cholesky(&nan), Err(DistError::Op { .. })));
    assert!(matches!(
        ops::composed::cholesky(&nan),
        Err(DistError::Op { .. })
    ));
    // Not square.
    let rect = Tensor::zeros((2, 3), DType::F64, &Device::Cpu)?;
    assert!(matches!(ops::cholesky(&rect), Err(DistError::Op { .. })));
    assert!(matches!(
        ops::cholesky(&rect.to_dtype(DType::U8)?),
        Err(DistError::Op { .. })
    ));
    Ok(())
}

/// `solve_triangular` (and its transposed form) against `A X = B` by matmul, kernel against
/// composed, and both gradients against finite differences; `a` batch `[3]` broadcasts
/// against `b` batch `[2, 3]`.
#[test]
fn solve_triangular_values_and_gradients() -> Res {
    let (n, k) = (4, 2);
    let (ab, bb) = ([3usize], [2usize, 3]);
    let (ash, bsh) = (shape(&ab, &[n, n]), shape(&bb, &[n, k]));
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let b = randn(&mut rng, bsh.iter().product());
    let w = t64(&randn(&mut rng, bsh.iter().product()), &bsh);
    for lower in [true, false] {
        let a = triangular(&ab, n, lower, 6);
        let at = t64(&a, &ash);
        let bt = t64(&b, &bsh);
        let pairs: [(Op2, Op2, bool); 2] = [
            (
                ops::solve_triangular,
                ops::composed::solve_triangular,
                false,
            ),
            (
                ops::solve_triangular_transposed,
                ops::composed::solve_triangular_transposed,
                true,
            ),
        ];
        for (kernel, comp, transpose) in pairs {
            let x = kernel(&at, &bt, lower)?;
            assert_eq!(x.dims(), bsh.as_slice());
            // A X = B with A's triangle only.
            let tri = if lower {
                ops::tril(&at)?
            } else {
                ops::tril(&at.t()?)?.t()?
            };
            let m = if transpose { tri.t()? } else { tri };
            close(&host(&m.broadcast_matmul(&x)?), &b, 1e-12)?;
            close(&host(&comp(&at, &bt, lower)?), &host(&x), 1e-12)?;
            for op in [kernel, comp] {
                let (_, ga) = weighted_grad(&a, &ash, &w, |a| op(a, &bt, lower).unwrap());
                let fd_a = vi_test::finite_difference(&a, 1e-6, |a| {
                    let x = kernel(&t64(a, &ash), &bt, lower).unwrap();
                    x.mul(&w)
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .to_scalar::<f64>()
                        .unwrap()
                });
                close(&ga, &fd_a, 1e-7)
                    .map_err(|e| format!("grad a (lower {lower}, transpose {transpose}): {e}"))?;
                let (_, gb) = weighted_grad(&b, &bsh, &w, |b| op(&at, b, lower).unwrap());
                let fd_b = vi_test::finite_difference(&b, 1e-6, |b| {
                    let x = kernel(&at, &t64(b, &bsh), lower).unwrap();
                    x.mul(&w)
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .to_scalar::<f64>()
                        .unwrap()
                });
                close(&gb, &fd_b, 1e-7).map_err(|e| format!("grad b: {e}"))?;
            }
        }
    }
    Ok(())
}

#[test]
fn solve_triangular_f32_matches_f64() -> Res {
    let (n, k) = (5, 3);
    let a = triangular(&[2], n, true, 7);
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let b = randn(&mut rng, 2 * n * k);
    let (at, bt) = (t64(&a, &[2, n, n]), t64(&b, &[2, n, k]));
    let x64 = host(&ops::solve_triangular(&at, &bt, true)?);
    let x32 = ops::solve_triangular(&at.to_dtype(DType::F32)?, &bt.to_dtype(DType::F32)?, true)?;
    assert_eq!(x32.dtype(), DType::F32);
    close(&host(&x32), &x64, 1e-5)?;
    Ok(())
}

#[test]
fn solve_triangular_shape_errors() -> Res {
    let a = Tensor::eye(3, DType::F64, &Device::Cpu)?;
    let bad_rows = Tensor::ones((4, 1), DType::F64, &Device::Cpu)?;
    let vector = Tensor::ones(3, DType::F64, &Device::Cpu)?;
    let rect = Tensor::ones((3, 2), DType::F64, &Device::Cpu)?;
    let a_batch = Tensor::ones((2, 3, 3), DType::F64, &Device::Cpu)?;
    let b_batch = Tensor::ones((4, 3, 1), DType::F64, &Device::Cpu)?;
    let b32 = Tensor::ones((3, 1), DType::F32, &Device::Cpu)?;
    for (a, b) in [
        (&a, &bad_rows),
        (&a, &vector),
        (&rect, &bad_rows),
        (&a_batch, &b_batch),
        (&a, &b32),
    ] {
        match ops::solve_triangular(a, b, true) {
            Err(DistError::Op {
                op: "solve_triangular",
                msg,
            }) => {
                assert!(msg.contains(&format!("{:?}", a.dims())), "{msg}");
                assert!(msg.contains(&format!("{:?}", b.dims())), "{msg}");
            }
            other => panic!(
                "expected a typed error for {:?} / {:?}, got {other:?}",
                a.dims(),
                b.dims()
            ),
        }
    }
    Ok(())
}

#[test]
fn derived_ops() -> Res {
    let (batch, n) = ([2], 3);
    let a = spd(&batch, n, 9);
    let at = t64(&a, &shape(&batch, &[n, n]));
    let l = ops::cholesky(&at)?;
    // cholesky_solve: A X = B.
    let b = t64(&[1.0, 2.0, 3.0, -1.0, 0.5, 2.0], &[2, 3, 1]);
    let x = ops::cholesky_solve(&l, &b)?;
    close(&host(&at.matmul(&x)?), &host(&b), 1e-12)?;
    // triangular_inverse: L L⁻¹ = I.
    let inv = ops::triangular_inverse(&l, true)?;
    let eye = Tensor::eye(n, DType::F64, &Device::Cpu)?.broadcast_as((2, n, n))?;
    close(&host(&l.matmul(&inv)?), &host(&eye), 1e-12)?;
    assert_eq!(host(&ops::tril(&inv)?), host(&inv));
    // triangular_logdet: ½ ln det A, with det from the 3×3 formula.
    let det = |m: &[f64]| {
        m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6])
            + m[2] * (m[3] * m[7] - m[4] * m[6])
    };
    let want: Vec<f64> = a.chunks(9).map(|m| 0.5 * det(m).ln()).collect();
    close(&host(&ops::triangular_logdet(&l)?), &want, 1e-12)?;
    // precision_to_scale_tril: lower, and L Lᵀ = P⁻¹.
    let s = ops::precision_to_scale_tril(&at)?;
    assert_eq!(host(&ops::tril(&s)?), host(&s));
    let cov = s.matmul(&s.t()?)?;
    close(&host(&cov.matmul(&at)?), &host(&eye), 1e-11)?;
    // Its gradient (through flip, cholesky, inverse) is symmetric and matches FD.
    let xs = shape(&batch, &[n, n]);
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let w = t64(&randn(&mut rng, a.len()), &xs);
    let (_, g) = weighted_grad(&a, &xs, &w, |p| ops::precision_to_scale_tril(p).unwrap());
    let fd = vi_test::finite_difference(&a, 1e-6, |p| {
        let p = t64(p, &xs);
        let p = ((&p + p.t().unwrap()).unwrap() * 0.5).unwrap();
        let s = ops::precision_to_scale_tril(&p).unwrap();
        s.mul(&w)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    });
    close(&g, &fd, 1e-7)?;
    // diag_embed and is_positive_definite.
    let d = ops::diag_embed(&t64(&[1.0, 2.0, 3.0, 4.0], &[2, 2]))?;
    assert_eq!(host(&d), vec![1.0, 0.0, 0.0, 2.0, 3.0, 0.0, 0.0, 4.0]);
    assert_eq!(ops::is_positive_definite(&at)?.to_vec1::<u8>()?, vec![1, 1]);
    Ok(())
}
