//! The pairs whose `p` is Beta, Exponential, Gamma or Dirichlet: `+inf` (never NaN) where
//! `q`'s support does not cover `p`'s, with finite gradients for the finite elements;
//! broadcasting of two different batch shapes; extreme concentrations; identities between
//! pairs; autograd against finite differences.

use candle_core::{DType, Device, Tensor, Var};
use vi_dist::{Beta, Dirichlet, Distribution, Exponential, Gamma, Gumbel, Normal, Pareto, Uniform};
use vi_kl::{KlRegistry, kl_divergence};
use vi_test::{Tol, assert_all_close};

use crate::common::{Res, host, tensor};

type Pair = (Box<dyn Distribution>, Box<dyn Distribution>);
/// KL values and, per parameter, its gradient values.
type ValuesAndGrads = (Vec<f64>, Vec<Vec<f64>>);

/// Builds `(p, q)` from p's and q's parameter tensors (all positive).
type Build = fn(&[Tensor], &[Tensor]) -> vi_dist::Result<Pair>;

/// A pair with a finite closed form: its name, how many parameters p and q take, and how to
/// build it from positive parameters.
struct FinitePair {
    name: &'static str,
    p_params: usize,
    q_params: usize,
    build: Build,
}

fn bx<T: Distribution + 'static>(d: T) -> Box<dyn Distribution> {
    Box::new(d)
}

/// Uniform(−a, 1 + b): always covers Beta's (0, 1).
fn covering_uniform(a: &Tensor, b: &Tensor) -> vi_dist::Result<Uniform> {
    Uniform::new(&a.neg()?, &(b + 1.0)?)
}

/// Every finite-valued pair of this group except Dirichlet‖Dirichlet (event-shaped).
fn finite_pairs() -> Vec<FinitePair> {
    vec![
        FinitePair {
            name: "Beta||Beta",
            p_params: 2,
            q_params: 2,
            build: |p, q| Ok((bx(Beta::new(&p[0], &p[1])?), bx(Beta::new(&q[0], &q[1])?))),
        },
        FinitePair {
            name: "Beta||Exponential",
            p_params: 2,
            q_params: 1,
            build: |p, q| Ok((bx(Beta::new(&p[0], &p[1])?), bx(Exponential::new(&q[0])?))),
        },
        FinitePair {
            name: "Beta||Gamma",
            p_params: 2,
            q_params: 2,
            build: |p, q| Ok((bx(Beta::new(&p[0], &p[1])?), bx(Gamma::new(&q[0], &q[1])?))),
        },
        FinitePair {
            name: "Beta||Normal",
            p_params: 2,
            q_params: 2,
            build: |p, q| Ok((bx(Beta::new(&p[0], &p[1])?), bx(Normal::new(&q[0], &q[1])?))),
        },
        FinitePair {
            name: "Beta||Uniform",
            p_params: 2,
            q_params: 2,
            build: |p, q| {
                Ok((
                    bx(Beta::new(&p[0], &p[1])?),
                    bx(covering_uniform(&q[0], &q[1])?),
                ))
            },
        },
        FinitePair {
            name: "Exponential||Exponential",
            p_params: 1,
            q_params: 1,
            build: |p, q| Ok((bx(Exponential::new(&p[0])?), bx(Exponential::new(&q[0])?))),
        },
        FinitePair {
            name: "Exponential||Gamma",
            p_params: 1,
            q_params: 2,
            build: |p, q| Ok((bx(Exponential::new(&p[0])?), bx(Gamma::new(&q[0], &q[1])?))),
        },
        FinitePair {
            name: "Exponential||Gumbel",
            p_params: 1,
            q_params: 2,
            build: |p, q| Ok((bx(Exponential::new(&p[0])?), bx(Gumbel::new(&q[0], &q[1])?))),
        },
        FinitePair {
            name: "Exponential||Normal",
            p_params: 1,
            q_params: 2,
            build: |p, q| Ok((bx(Exponential::new(&p[0])?), bx(Normal::new(&q[0], &q[1])?))),
        },
        FinitePair {
            name: "Gamma||Exponential",
            p_params: 2,
            q_params: 1,
            build: |p, q| Ok((bx(Gamma::new(&p[0], &p[1])?), bx(Exponential::new(&q[0])?))),
        },
        FinitePair {
            name: "Gamma||Gamma",
            p_params: 2,
            q_params: 2,
            build: |p, q| Ok((bx(Gamma::new(&p[0], &p[1])?), bx(Gamma::new(&q[0], &q[1])?))),
        },
        FinitePair {
            name: "Gamma||Gumbel",
            p_params: 2,
            q_params: 2,
            build: |p, q| {
                Ok((
                    bx(Gamma::new(&p[0], &p[1])?),
                    bx(Gumbel::new(&q[0], &q[1])?),
                ))
            },
        },
        FinitePair {
            name: "Gamma||Normal",
            p_params: 2,
            q_params: 2,
            build: |p, q| {
                Ok((
                    bx(Gamma::new(&p[0], &p[1])?),
                    bx(Normal::new(&q[0], &q[1])?),
                ))
            },
        },
    ]
}

/// Deterministic positive values in [0.4, 2.4) for parameter `k` of shape `shape`.
fn positive(k: usize, shape: &[usize], dtype: DType, device: &Device) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|i| 0.4 + ((i * 7 + k * 13 + 3) % 11) as f64 * 0.2)
        .collect();
    tensor(&v, shape, dtype, device)
}

/// Tolerances for comparing two computations of the same KL in `dtype`.
fn tols(dtype: DType) -> (f64, f64) {
    match dtype {
        DType::F64 => (1e-12, 1e-12),
        _ => (1e-5, 1e-5),
    }
}

/// Sums `g` (of shape `joint`) down to `shape`, as autograd does for a broadcast operand.
fn sum_to(g: &Tensor, shape: &[usize]) -> Tensor {
    let mut g = g.clone();
    while g.rank() > shape.len() {
        g = g.sum(0).unwrap();
    }
    for (d, &n) in shape.iter().enumerate() {
        if n == 1 && g.dims()[d] != 1 {
            g = g.sum_keepdim(d).unwrap();
        }
    }
    g
}

fn vars(ts: &[Tensor]) -> Vec<Var> {
    ts.iter().map(|t| Var::from_tensor(t).unwrap()).collect()
}

fn as_tensors(vs: &[Var]) -> Vec<Tensor> {
    vs.iter().map(|v| v.as_tensor().clone()).collect()
}

/// The broadcast of two shapes.
fn joint(a: &[usize], b: &[usize]) -> Vec<usize> {
    vi_dist::broadcast_shapes(&[a, b]).unwrap()
}

const SHAPES: [(&[usize], &[usize]); 5] = [
    (&[2, 3], &[3]),
    (&[2, 1], &[3]),
    (&[3], &[2, 1]),
    (&[], &[2, 3]),
    (&[2, 3], &[2, 1]),
];

/// Each finite pair with two different batch shapes gives the KL of the pair with both
/// sides' parameters expanded to the broadcast shape, and gradients that are the expanded
/// gradients summed over the broadcast dims.
fn broadcast_batch_shapes(device: &Device, dtype: DType) -> Res {
    let (rtol, atol) = tols(dtype);
    for pair in finite_pairs() {
        for (ps, qs) in SHAPES {
            let what = format!("{} {ps:?} vs {qs:?}", pair.name);
            let js = joint(ps, qs);
            let p_small = vars(
                &(0..pair.p_params)
                    .map(|k| positive(k, ps, dtype, device))
                    .collect::<Vec<_>>(),
            );
            let q_small = vars(
                &(0..pair.q_params)
                    .map(|k| positive(k + 5, qs, dtype, device))
                    .collect::<Vec<_>>(),
            );
            let expand = |vs: &[Var]| -> Vec<Var> {
                vars(
                    &vs.iter()
                        .map(|v| v.as_tensor().broadcast_as(js.as_slice())?.contiguous())
                        .collect::<candle_core::Result<Vec<_>>>()
                        .unwrap(),
                )
            };
            let (p_full, q_full) = (expand(&p_small), expand(&q_small));

            let (p, q) = (pair.build)(&as_tensors(&p_small), &as_tensors(&q_small))?;
            let kl = kl_divergence(p.as_ref(), q.as_ref())?;
            assert_eq!(kl.dims(), js.as_slice(), "{what}: shape");
            let (pf, qf) = (pair.build)(&as_tensors(&p_full), &as_tensors(&q_full))?;
            let kl_full = kl_divergence(pf.as_ref(), qf.as_ref())?;
            let v = host(&kl);
            assert!(v.iter().all(|x| x.is_finite()), "{what}: {v:?}");
            assert_all_close(&what, &v, &host(&kl_full), Tol { rtol, atol });

            let g = kl.sum_all()?.backward()?;
            let g_full = kl_full.sum_all()?.backward()?;
            for (small, full) in p_small
                .iter()
                .zip(&p_full)
                .chain(q_small.iter().zip(&q_full))
            {
                let gs = g.get(small.as_tensor()).expect("gradient of a parameter");
                let gf = g_full
                    .get(full.as_tensor())
                    .expect("gradient of a parameter");
                assert_eq!(gs.dims(), small.dims(), "{what}: gradient shape");
                let gv = host(gs);
                assert!(gv.iter().all(|x| x.is_finite()), "{what}: grad {gv:?}");
                assert_all_close(
                    &what,
                    &gv,
                    &host(&sum_to(gf, small.dims())),
                    Tol { rtol, atol },
                );
            }
        }
    }
    Ok(())
}
vi_test::test_device!(broadcast_batch_shapes);

/// Dirichlet‖Dirichlet with batch shapes [2,3] vs [3] and [2,1] vs [3] (event 4): the KL of
/// the expanded pair, gradients summed over the broadcast dims.
fn dirichlet_broadcast(device: &Device, dtype: DType) -> Res {
    let (rtol, atol) = tols(dtype);
    for (ps, qs) in SHAPES {
        let what = format!("Dirichlet {ps:?} vs {qs:?}");
        let js = joint(ps, qs);
        let with_event = |s: &[usize]| [s, &[4]].concat();
        let a = Var::from_tensor(&positive(0, &with_event(ps), dtype, device))?;
        let b = Var::from_tensor(&positive(1, &with_event(qs), dtype, device))?;
        let kl = kl_divergence(&Dirichlet::new(&a)?, &Dirichlet::new(&b)?)?;
        assert_eq!(kl.dims(), js.as_slice(), "{what}: shape");
        let full = with_event(&js);
        let af = Var::from_tensor(&a.broadcast_as(full.as_slice())?.contiguous()?)?;
        let bf = Var::from_tensor(&b.broadcast_as(full.as_slice())?.contiguous()?)?;
        let kl_full = kl_divergence(&Dirichlet::new(&af)?, &Dirichlet::new(&bf)?)?;
        assert_all_close(&what, &host(&kl), &host(&kl_full), Tol { rtol, atol });
        let g = kl.sum_all()?.backward()?;
        let g_full = kl_full.sum_all()?.backward()?;
        for (small, fullv) in [(&a, &af), (&b, &bf)] {
            let gs = g.get(small.as_tensor()).expect("gradient");
            let gf = g_full.get(fullv.as_tensor()).expect("gradient");
            assert_eq!(gs.dims(), small.dims());
            assert_all_close(
                &what,
                &host(gs),
                &host(&sum_to(gf, small.dims())),
                Tol { rtol, atol },
            );
        }
    }
    Ok(())
}
vi_test::test_device!(dirichlet_broadcast);

/// Beta‖Uniform is +inf (not NaN) exactly where `low > 0` or `high < 1`, ln(h − l) − H(p)
/// elsewhere (the boundary `low = 0`, `high = 1` included), and the gradients of
/// `kl.sum()` are finite for every parameter (zero from the infinite elements).
fn beta_uniform_partly_infinite(device: &Device, dtype: DType) -> Res {
    let t = |v: &[f64], s: &[usize]| tensor(v, s, dtype, device);
    let c1 = Var::from_tensor(&t(&[0.5, 1.0, 2.0, 3.0, 0.7, 1.5], &[2, 3]))?;
    let c0 = Var::from_tensor(&t(&[1.5, 1.0, 0.8, 0.3, 2.5, 1.1], &[2, 3]))?;
    let low = Var::from_tensor(&t(&[-0.5, 0.0, 0.1, -1.0, -1.0, 0.0], &[2, 3]))?;
    let high = Var::from_tensor(&t(&[1.0, 2.0, 3.0, 0.99, 1.5, 1.0], &[2, 3]))?;
    let p = Beta::new(&c1, &c0)?;
    let kl = kl_divergence(&p, &Uniform::new(&low, &high)?)?;
    let v = host(&kl);
    let entropy = host(&p.entropy()?);
    let (lo, hi) = (host(&low), host(&high));
    let infinite = [false, false, true, true, false, false];
    for i in 0..6 {
        if infinite[i] {
            assert_eq!(v[i], f64::INFINITY, "element {i}: {v:?}");
        } else {
            let expected = (hi[i] - lo[i]).ln() - entropy[i];
            assert_all_close(
                "finite element",
                &v[i..=i],
                &[expected],
                Tol {
                    rtol: 1e-5,
                    atol: 1e-6,
                },
            );
        }
    }
    let grads = kl.sum_all()?.backward()?;
    for (name, var) in [("c1", &c1), ("c0", &c0), ("low", &low), ("high", &high)] {
        let g = host(grads.get(var.as_tensor()).expect("gradient"));
        assert!(g.iter().all(|x| x.is_finite()), "{name}: {g:?}");
        for i in (0..6).filter(|&i| infinite[i]) {
            assert_eq!(g[i], 0.0, "{name}[{i}] of an infinite element");
        }
    }
    // d/dhigh of ln(h − l) is 1/(h − l) where finite.
    let gh = host(grads.get(high.as_tensor()).expect("gradient"));
    assert_all_close(
        "d kl / d high",
        &gh[..2],
        &[1.0 / 1.5, 1.0 / 2.0],
        Tol {
            rtol: 1e-5,
            atol: 1e-6,
        },
    );
    Ok(())
}
vi_test::test_device!(beta_uniform_partly_infinite);

/// The pairs whose `q` never covers `p`'s support are +inf of the broadcast batch shape,
/// never NaN, and `kl.sum()` still differentiates (no gradient reaches a constant).
fn never_covered_is_infinite(device: &Device, dtype: DType) -> Res {
    let pos = |k: usize, s: &[usize]| positive(k, s, dtype, device);
    let (ps, qs): (&[usize], &[usize]) = (&[2, 1], &[3]);
    let beta = Beta::new(&pos(0, ps), &pos(1, ps))?;
    let exp = Exponential::new(&pos(2, ps))?;
    let gamma = Gamma::new(&pos(3, ps), &pos(4, ps))?;
    let q_beta = Beta::new(&pos(5, qs), &pos(6, qs))?;
    let q_pareto = Pareto::new(&pos(7, qs), &pos(8, qs))?;
    // Wide enough to cover (0, 1) but not a half-line.
    let q_uniform = Uniform::new(&pos(9, qs).neg()?, &(pos(10, qs) + 1.0)?)?;
    let pairs: Vec<(&str, &dyn Distribution, &dyn Distribution)> = vec![
        ("Beta||Pareto", &beta, &q_pareto),
        ("Exponential||Beta", &exp, &q_beta),
        ("Exponential||Pareto", &exp, &q_pareto),
        ("Exponential||Uniform", &exp, &q_uniform),
        ("Gamma||Beta", &gamma, &q_beta),
        ("Gamma||Pareto", &gamma, &q_pareto),
        ("Gamma||Uniform", &gamma, &q_uniform),
    ];
    for (name, p, q) in pairs {
        let kl = kl_divergence(p, q)?;
        assert_eq!(kl.dims(), &[2, 3], "{name}");
        assert_eq!(kl.dtype(), dtype, "{name}");
        assert!(host(&kl).iter().all(|&x| x == f64::INFINITY), "{name}");
        kl.sum_all()?.backward()?;
    }
    Ok(())
}
vi_test::test_device!(never_covered_is_infinite);

/// Parameters from 1e-3 to 1e3 (concentrations and rates; Normal/Gumbel scales 1e-1..1e1):
/// every finite pair stays finite, non-negative up to rounding, with finite gradients, and
/// f32 agrees with f64 up to its rounding of the large terms.
fn extreme_parameters(device: &Device, dtype: DType) -> Res {
    let grid = [1e-3, 1.0, 1e3];
    for pair in finite_pairs() {
        let n = pair.p_params + pair.q_params;
        // Every combination of grid values over p's and q's parameters.
        let count = grid.len().pow(n as u32);
        let mut cols: Vec<Vec<f64>> = vec![Vec::with_capacity(count); n];
        for c in 0..count {
            let mut c = c;
            for col in cols.iter_mut() {
                col.push(grid[c % grid.len()]);
                c /= grid.len();
            }
        }
        // q's Normal/Gumbel loc in [−1, 1] and scale in [0.1, 10], so that the Gumbel's
        // e^{μ/s} stays below f32's largest value.
        let q_tame = matches!(
            pair.name,
            "Beta||Normal"
                | "Exponential||Normal"
                | "Gamma||Normal"
                | "Exponential||Gumbel"
                | "Gamma||Gumbel"
        );
        if q_tame {
            for x in cols[pair.p_params].iter_mut() {
                *x = x.ln() / 1e3f64.ln();
            }
            for x in cols[pair.p_params + 1].iter_mut() {
                *x = x.powf(1.0 / 3.0);
            }
        }
        let run = |dt: DType| -> Result<ValuesAndGrads, Box<dyn std::error::Error>> {
            let vs = vars(
                &cols
                    .iter()
                    .map(|c| tensor(c, &[count], dt, device))
                    .collect::<Vec<_>>(),
            );
            let ts = as_tensors(&vs);
            let (p, q) = (pair.build)(&ts[..pair.p_params], &ts[pair.p_params..])?;
            let kl = kl_divergence(p.as_ref(), q.as_ref())?;
            let g = kl.sum_all()?.backward()?;
            let grads = vs
                .iter()
                .map(|v| host(g.get(v.as_tensor()).expect("gradient")))
                .collect();
            Ok((host(&kl), grads))
        };
        let (v, grads) = run(dtype)?;
        for (i, x) in v.iter().enumerate() {
            let params: Vec<f64> = cols.iter().map(|c| c[i]).collect();
            assert!(x.is_finite(), "{} at {params:?}: {x}", pair.name);
            assert!(
                *x >= -1e-3 * (1.0 + x.abs()),
                "{} at {params:?}: {x} < 0",
                pair.name
            );
            for (k, g) in grads.iter().enumerate() {
                assert!(g[i].is_finite(), "{} grad {k} at {params:?}", pair.name);
            }
        }
        if dtype == DType::F32 {
            let (v64, _) = run(DType::F64)?;
            // f32 rounds terms as large as ln Γ(1e3) ≈ 5.9e3 or 1e3·ln(1e6): an absolute
            // error of a few f32 ulps of those.
            assert_all_close(
                pair.name,
                &v,
                &v64,
                Tol {
                    rtol: 1e-4,
                    atol: 5e-2,
                },
            );
        }
    }
    Ok(())
}
vi_test::test_device!(extreme_parameters);

/// Identities between pairs, at ordinary and extreme parameters: Gamma(1, λ) is
/// Exponential(λ), Beta(a, b) is Dirichlet([a, b]), Beta(1, 1) has entropy 0, and the KL
/// of a distribution from itself is 0.
fn identities(device: &Device, dtype: DType) -> Res {
    let (rtol, atol) = match dtype {
        DType::F64 => (1e-10, 1e-10),
        _ => (1e-4, 2e-3),
    };
    let xs = [1e-3, 0.3, 1.0, 2.5, 1e3];
    let n = xs.len() * xs.len();
    let (a, b): (Vec<f64>, Vec<f64>) = (0..n).map(|i| (xs[i % 5], xs[i / 5])).unzip();
    let t = |v: &[f64]| tensor(v, &[v.len()], dtype, device);
    let (ta, tb) = (t(&a), t(&b));
    let ones = ta.ones_like()?;
    let rev = |v: &[f64]| t(&v.iter().rev().copied().collect::<Vec<_>>());
    let (ra, rb) = (rev(&a), rev(&b));

    // Gamma(1, λ) ‖ Gamma(α, β) = Exponential(λ) ‖ Gamma(α, β).
    let q = Gamma::new(&ta, &tb)?;
    let via_gamma = kl_divergence(&Gamma::new(&ones, &ra)?, &q)?;
    let via_exp = kl_divergence(&Exponential::new(&ra)?, &q)?;
    assert_all_close(
        "Exp‖Gamma",
        &host(&via_exp),
        &host(&via_gamma),
        Tol { rtol, atol },
    );
    // Gamma(1, λ) ‖ Exponential(μ) = Exponential(λ) ‖ Exponential(μ) = Exp(λ) ‖ Gamma(1, μ).
    let e1 = kl_divergence(&Gamma::new(&ones, &ta)?, &Exponential::new(&tb)?)?;
    let e2 = kl_divergence(&Exponential::new(&ta)?, &Exponential::new(&tb)?)?;
    let e3 = kl_divergence(&Exponential::new(&ta)?, &Gamma::new(&ones, &tb)?)?;
    assert_all_close("Gamma‖Exp", &host(&e1), &host(&e2), Tol { rtol, atol });
    assert_all_close("Exp‖Gamma(1)", &host(&e3), &host(&e2), Tol { rtol, atol });
    // Exponential ‖ Exponential = r − 1 − ln r, r = λq/λp, on the host.
    let by_hand: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(lp, lq)| {
            let r = lq / lp;
            r - 1.0 - r.ln()
        })
        .collect();
    assert_all_close("Exp‖Exp host", &host(&e2), &by_hand, Tol { rtol, atol });
    // Gamma(1, λ) ‖ Gumbel = Exponential(λ) ‖ Gumbel; Gamma(1, λ) ‖ Normal likewise.
    let scale = t(&a.iter().map(|x| x.powf(1.0 / 3.0)).collect::<Vec<_>>());
    let gumbel = Gumbel::new(&rb.log()?, &scale)?;
    let g1 = kl_divergence(&Gamma::new(&ones, &ta)?, &gumbel)?;
    let g2 = kl_divergence(&Exponential::new(&ta)?, &gumbel)?;
    assert_all_close("Gumbel", &host(&g1), &host(&g2), Tol { rtol, atol });
    let normal = Normal::new(&rb, &scale)?;
    let n1 = kl_divergence(&Gamma::new(&ones, &ta)?, &normal)?;
    let n2 = kl_divergence(&Exponential::new(&ta)?, &normal)?;
    assert_all_close("Normal", &host(&n1), &host(&n2), Tol { rtol, atol });

    // Beta(a, b) ‖ Beta(c, d) = Dirichlet([a, b]) ‖ Dirichlet([c, d]).
    let bb = kl_divergence(&Beta::new(&ta, &tb)?, &Beta::new(&ra, &rb)?)?;
    let stack = |x: &Tensor, y: &Tensor| Tensor::stack(&[x, y], 1);
    let dd = kl_divergence(
        &Dirichlet::new(&stack(&ta, &tb)?)?,
        &Dirichlet::new(&stack(&ra, &rb)?)?,
    )?;
    assert_all_close(
        "Beta‖Beta vs Dirichlet",
        &host(&bb),
        &host(&dd),
        Tol { rtol, atol },
    );
    // Beta(1, 1) ‖ Uniform(l, h) = ln(h − l).
    let low = ta.neg()?;
    let high = (&tb + 1.0)?;
    let bu = kl_divergence(&Beta::new(&ones, &ones)?, &Uniform::new(&low, &high)?)?;
    let by_hand: Vec<f64> = a.iter().zip(&b).map(|(l, h)| (1.0 + h + l).ln()).collect();
    assert_all_close(
        "Beta(1,1)‖Uniform",
        &host(&bu),
        &by_hand,
        Tol { rtol, atol },
    );

    // KL(p ‖ p) = 0 exactly for the same-family closed forms.
    let zero = |kl: Tensor, what: &str| {
        assert!(host(&kl).iter().all(|&x| x == 0.0), "{what}: {kl}");
    };
    zero(
        kl_divergence(&Gamma::new(&ta, &tb)?, &Gamma::new(&ta, &tb)?)?,
        "Gamma",
    );
    zero(
        kl_divergence(&Beta::new(&ta, &tb)?, &Beta::new(&ta, &tb)?)?,
        "Beta",
    );
    let d = Dirichlet::new(&stack(&ta, &tb)?)?;
    zero(kl_divergence(&d, &d)?, "Dirichlet");
    zero(
        kl_divergence(&Exponential::new(&ta)?, &Exponential::new(&ta)?)?,
        "Exponential",
    );
    Ok(())
}
vi_test::test_device!(identities);

/// Dirichlet concentrations spanning 1e-3..1e3 in one vector: finite KL and gradients.
fn dirichlet_extreme(device: &Device, dtype: DType) -> Res {
    let a = Var::from_tensor(&tensor(
        &[1e-3, 1e3, 1.0, 1e3, 1e-3, 1.0, 1e-3, 1e-3, 1e-3],
        &[3, 3],
        dtype,
        device,
    ))?;
    let b = Var::from_tensor(&tensor(&[1.0, 1e-3, 1e3], &[3], dtype, device))?;
    let kl = kl_divergence(&Dirichlet::new(&a)?, &Dirichlet::new(&b)?)?;
    let v = host(&kl);
    assert!(v.iter().all(|x| x.is_finite() && *x > 0.0), "{v:?}");
    let g = kl.sum_all()?.backward()?;
    for var in [&a, &b] {
        let gv = host(g.get(var.as_tensor()).expect("gradient"));
        assert!(gv.iter().all(|x| x.is_finite()), "{gv:?}");
    }
    if dtype == DType::F32 {
        let a64 = a.to_dtype(DType::F64)?;
        let b64 = b.to_dtype(DType::F64)?;
        let kl64 = kl_divergence(&Dirichlet::new(&a64)?, &Dirichlet::new(&b64)?)?;
        assert_all_close(
            "Dirichlet f32 vs f64",
            &v,
            &host(&kl64),
            Tol {
                rtol: 1e-4,
                atol: 5e-2,
            },
        );
    }
    Ok(())
}
vi_test::test_device!(dirichlet_extreme);

/// Autograd of `kl.sum()` against central differences, f64, on the flattened parameters.
fn check_finite_difference(
    params: &[(Vec<f64>, Vec<usize>)],
    kl: impl Fn(&[Tensor]) -> Tensor,
    what: &str,
) {
    let dev = Device::Cpu;
    let vs: Vec<Var> = params
        .iter()
        .map(|(v, s)| Var::from_tensor(&tensor(v, s, DType::F64, &dev)).unwrap())
        .collect();
    let grads = kl(&as_tensors(&vs)).sum_all().unwrap().backward().unwrap();
    let autograd: Vec<f64> = vs
        .iter()
        .flat_map(|v| host(grads.get(v.as_tensor()).expect("gradient")))
        .collect();
    let flat: Vec<f64> = params.iter().flat_map(|(v, _)| v.clone()).collect();
    let numeric = vi_test::finite_difference(&flat, 1e-6, |x| {
        let mut at = 0;
        let ts: Vec<Tensor> = params
            .iter()
            .map(|(v, s)| {
                let t = tensor(&x[at..at + v.len()], s, DType::F64, &dev);
                at += v.len();
                t
            })
            .collect();
        kl(&ts).sum_all().unwrap().to_scalar::<f64>().unwrap()
    });
    assert_all_close(
        what,
        &autograd,
        &numeric,
        Tol {
            rtol: 1e-6,
            atol: 1e-7,
        },
    );
}

/// Gamma‖Gamma's gradients (p batch [2,3] against q batch [3]) match finite differences.
#[test]
fn gamma_gamma_finite_difference() {
    check_finite_difference(
        &[
            (vec![0.3, 0.8, 1.7, 4.0, 0.05, 12.0], vec![2, 3]),
            (vec![1.2, 0.4, 2.5, 0.9, 3.0, 0.7], vec![2, 3]),
            (vec![0.6, 2.2, 1.1], vec![3]),
            (vec![0.5, 1.9, 0.8], vec![3]),
        ],
        |t| {
            let p = Gamma::new(&t[0], &t[1]).unwrap();
            let q = Gamma::new(&t[2], &t[3]).unwrap();
            kl_divergence(&p, &q).unwrap()
        },
        "Gamma||Gamma",
    );
}

/// Dirichlet‖Dirichlet's gradients (p batch [2] against q batch [], event 4) match finite
/// differences.
#[test]
fn dirichlet_dirichlet_finite_difference() {
    check_finite_difference(
        &[
            (vec![0.3, 1.2, 2.5, 0.7, 4.0, 0.1, 1.0, 1.6], vec![2, 4]),
            (vec![1.1, 0.5, 0.9, 3.0], vec![4]),
        ],
        |t| {
            let p = Dirichlet::new(&t[0]).unwrap();
            let q = Dirichlet::new(&t[1]).unwrap();
            kl_divergence(&p, &q).unwrap()
        },
        "Dirichlet||Dirichlet",
    );
}

/// Every pair of this group is registered, with a note, and the sums in Dirichlet‖Dirichlet
/// run over the event dim only.
#[test]
fn registered_pairs() {
    let pairs = KlRegistry::default().pairs();
    let expected = [
        ("Beta", "Beta"),
        ("Beta", "Exponential"),
        ("Beta", "Gamma"),
        ("Beta", "Normal"),
        ("Beta", "Pareto"),
        ("Beta", "Uniform"),
        ("Exponential", "Beta"),
        ("Exponential", "Exponential"),
        ("Exponential", "Gamma"),
        ("Exponential", "Gumbel"),
        ("Exponential", "Normal"),
        ("Exponential", "Pareto"),
        ("Exponential", "Uniform"),
        ("Gamma", "Beta"),
        ("Gamma", "Exponential"),
        ("Gamma", "Gamma"),
        ("Gamma", "Gumbel"),
        ("Gamma", "Normal"),
        ("Gamma", "Pareto"),
        ("Gamma", "Uniform"),
        ("Dirichlet", "Dirichlet"),
    ];
    for (p, q) in expected {
        let info = pairs.iter().find(|r| r.p == p && r.q == q);
        assert!(
            info.is_some_and(|r| !r.note.is_empty()),
            "{p}||{q}: {info:?}"
        );
    }
    // A Dirichlet with batch [2] and event [3]: one KL per batch element.
    let dev = Device::Cpu;
    let a = tensor(&[1.0, 2.0, 3.0, 0.5, 0.5, 0.5], &[2, 3], DType::F64, &dev);
    let b = tensor(&[1.0, 1.0, 1.0], &[3], DType::F64, &dev);
    let kl = kl_divergence(&Dirichlet::new(&a).unwrap(), &Dirichlet::new(&b).unwrap()).unwrap();
    assert_eq!(kl.dims(), &[2]);
    // Against the flat Dirichlet(1, 1, 1) (density Γ(3) = 2 on the simplex): KL = −H(p) − ln 2.
    let h = host(&Dirichlet::new(&a).unwrap().entropy().unwrap());
    let expected: Vec<f64> = h.iter().map(|h| -h - 2f64.ln()).collect();
    assert_all_close(
        "Dirichlet vs flat",
        &host(&kl),
        &expected,
        Tol {
            rtol: 1e-12,
            atol: 1e-12,
        },
    );
}
