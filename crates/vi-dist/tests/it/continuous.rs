//! The continuous scalar families LogNormal, HalfNormal, HalfCauchy, Laplace, Cauchy, Uniform,
//! Exponential, Gumbel and Pareto: seeded sampler checks (moments, quantiles, KS against the
//! closed-form CDF), rsample gradients against the derivative of the sampling transform and
//! against finite differences of the seeded sampler, `expand`, and the typed errors.
//!
//! Each family is one row of [`FAMILIES`]; the checks loop over the rows and name the family
//! in every failure.

use std::f64::consts::PI;

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use statrs::function::erf::erf;
use vi_dist::{DistError, DistSpec, Distribution};
use vi_test::stats::{check_ks, check_moments};

use crate::common::{Res, host, vector};

type Error = Box<dyn std::error::Error>;
/// A function of the parameters (one setting) and a point: a CDF, quantile or density.
type AtPoint = fn(&[f64], f64) -> f64;
/// Closed-form (mean, variance) of one setting.
type Moments = fn(&[f64]) -> (f64, f64);
/// The sampling transform at a standard draw: the sample and d sample / d parameter.
type Transform = fn(&[f64], f64) -> (f64, Vec<f64>);

/// The standard draw a family's sampler transforms.
#[derive(Clone, Copy)]
enum Draw {
    /// `vi_dist::standard_normal`.
    Normal,
    /// `vi_dist::uniform_open01` (the same host stream as the inverse-CDF samplers).
    Uniform,
}

/// One family as the tests see it; parameter vectors are in the order of `params`.
struct Family {
    name: &'static str,
    /// Parameter names (torch's) and two settings each: a batch of 2 for the sampler checks.
    params: &'static [(&'static str, [f64; 2])],
    cdf: AtPoint,
    /// Closed-form (mean, variance), where both are finite.
    moments: Option<Moments>,
    /// Closed-form (quantile function, density) for the heavy-tailed families.
    quantiles: Option<(AtPoint, AtPoint)>,
    draw: Draw,
    transform: Transform,
    /// A value outside the support of the first setting.
    outside: f64,
    /// Parameter values outside their support (other parameters at the first setting).
    bad: &'static [(&'static str, f64)],
}

fn normal_cdf(z: f64) -> f64 {
    0.5 * (1.0 + erf(z / 2f64.sqrt()))
}

/// `tan(π (u − ½))`, the standard Cauchy at a uniform draw.
fn cauchy_at(u: f64) -> f64 {
    (PI * (u - 0.5)).tan()
}

const FAMILIES: &[Family] = &[
    Family {
        name: "LogNormal",
        params: &[("loc", [0.2, -0.5]), ("scale", [0.3, 0.5])],
        cdf: |p, x| normal_cdf((x.ln() - p[0]) / p[1]),
        moments: Some(|p| {
            let s2 = p[1] * p[1];
            (
                (p[0] + s2 / 2.0).exp(),
                s2.exp_m1() * (2.0 * p[0] + s2).exp(),
            )
        }),
        quantiles: None,
        draw: Draw::Normal,
        transform: |p, e| {
            let x = (p[0] + p[1] * e).exp();
            (x, vec![x, x * e])
        },
        outside: -1.0,
        bad: &[
            ("loc", f64::NAN),
            ("scale", 0.0),
            ("scale", -1.0),
            ("scale", f64::NAN),
        ],
    },
    Family {
        name: "HalfNormal",
        params: &[("scale", [0.7, 2.0])],
        cdf: |p, x| erf(x / (p[0] * 2f64.sqrt())),
        moments: Some(|p| (p[0] * (2.0 / PI).sqrt(), p[0] * p[0] * (1.0 - 2.0 / PI))),
        quantiles: None,
        draw: Draw::Normal,
        transform: |p, e| (p[0] * e.abs(), vec![e.abs()]),
        outside: -0.5,
        bad: &[("scale", 0.0), ("scale", -2.0), ("scale", f64::NAN)],
    },
    Family {
        name: "HalfCauchy",
        params: &[("scale", [0.5, 3.0])],
        cdf: |p, x| 2.0 / PI * (x / p[0]).atan(),
        moments: None,
        quantiles: Some((
            |p, q| p[0] * (PI * q / 2.0).tan(),
            |p, x| 2.0 / (PI * p[0] * (1.0 + (x / p[0]).powi(2))),
        )),
        draw: Draw::Uniform,
        transform: |p, u| (p[0] * cauchy_at(u).abs(), vec![cauchy_at(u).abs()]),
        outside: -0.5,
        bad: &[("scale", 0.0), ("scale", -2.0), ("scale", f64::NAN)],
    },
    Family {
        name: "Laplace",
        params: &[("loc", [0.5, -1.0]), ("scale", [1.0, 0.3])],
        cdf: |p, x| {
            let z = (x - p[0]) / p[1];
            if z < 0.0 {
                0.5 * z.exp()
            } else {
                1.0 - 0.5 * (-z).exp()
            }
        },
        moments: Some(|p| (p[0], 2.0 * p[1] * p[1])),
        quantiles: None,
        draw: Draw::Uniform,
        transform: |p, u| {
            let e = if u < 0.5 {
                (2.0 * u).ln()
            } else {
                -(2.0 * (1.0 - u)).ln()
            };
            (p[0] + p[1] * e, vec![1.0, e])
        },
        outside: f64::NAN,
        bad: &[
            ("loc", f64::NAN),
            ("scale", 0.0),
            ("scale", -1.0),
            ("scale", f64::NAN),
        ],
    },
    Family {
        name: "Cauchy",
        params: &[("loc", [0.5, -2.0]), ("scale", [1.0, 0.2])],
        cdf: |p, x| 0.5 + ((x - p[0]) / p[1]).atan() / PI,
        moments: None,
        quantiles: Some((
            |p, q| p[0] + p[1] * cauchy_at(q),
            |p, x| 1.0 / (PI * p[1] * (1.0 + ((x - p[0]) / p[1]).powi(2))),
        )),
        draw: Draw::Uniform,
        transform: |p, u| (p[0] + p[1] * cauchy_at(u), vec![1.0, cauchy_at(u)]),
        outside: f64::NAN,
        bad: &[
            ("loc", f64::NAN),
            ("scale", 0.0),
            ("scale", -1.0),
            ("scale", f64::NAN),
        ],
    },
    Family {
        name: "Uniform",
        params: &[("low", [-1.0, 2.0]), ("high", [3.0, 2.5])],
        cdf: |p, x| ((x - p[0]) / (p[1] - p[0])).clamp(0.0, 1.0),
        moments: Some(|p| ((p[0] + p[1]) / 2.0, (p[1] - p[0]).powi(2) / 12.0)),
        quantiles: None,
        draw: Draw::Uniform,
        transform: |p, u| (p[0] + u * (p[1] - p[0]), vec![1.0 - u, u]),
        outside: 3.5,
        // low == high, low > high, and NaN bounds.
        bad: &[
            ("low", 3.0),
            ("low", 4.0),
            ("low", f64::NAN),
            ("high", f64::NAN),
            ("high", -1.0),
        ],
    },
    Family {
        name: "Exponential",
        params: &[("rate", [0.5, 3.0])],
        cdf: |p, x| if x < 0.0 { 0.0 } else { -(-p[0] * x).exp_m1() },
        moments: Some(|p| (1.0 / p[0], 1.0 / (p[0] * p[0]))),
        quantiles: None,
        draw: Draw::Uniform,
        transform: |p, u| {
            let e = -u.ln();
            (e / p[0], vec![-e / (p[0] * p[0])])
        },
        outside: -0.1,
        bad: &[("rate", 0.0), ("rate", -1.0), ("rate", f64::NAN)],
    },
    Family {
        name: "Gumbel",
        params: &[("loc", [0.5, -1.0]), ("scale", [2.0, 0.5])],
        cdf: |p, x| (-(-(x - p[0]) / p[1]).exp()).exp(),
        moments: Some(|p| {
            let euler = 0.577_215_664_901_532_9;
            (p[0] + p[1] * euler, PI * PI / 6.0 * p[1] * p[1])
        }),
        quantiles: None,
        draw: Draw::Uniform,
        transform: |p, u| {
            let e = -(-u.ln()).ln();
            (p[0] + p[1] * e, vec![1.0, e])
        },
        outside: f64::NAN,
        bad: &[
            ("loc", f64::NAN),
            ("scale", 0.0),
            ("scale", -1.0),
            ("scale", f64::NAN),
        ],
    },
    Family {
        name: "Pareto",
        params: &[("scale", [1.0, 0.5]), ("alpha", [6.0, 8.0])],
        cdf: |p, x| {
            if x < p[0] {
                0.0
            } else {
                1.0 - (p[0] / x).powf(p[1])
            }
        },
        moments: Some(|p| {
            let (s, a) = (p[0], p[1]);
            (
                a * s / (a - 1.0),
                s * s * a / ((a - 1.0).powi(2) * (a - 2.0)),
            )
        }),
        quantiles: None,
        draw: Draw::Uniform,
        transform: |p, u| {
            let e = -u.ln();
            let x = p[0] * (e / p[1]).exp();
            (x, vec![x / p[0], -x * e / (p[1] * p[1])])
        },
        outside: 0.9,
        bad: &[
            ("scale", 0.0),
            ("scale", f64::NAN),
            ("alpha", 0.0),
            ("alpha", -1.0),
        ],
    },
];

/// Parameter `i` of `f` for a batch of `n`, cycling through the two settings.
fn param_values(f: &Family, i: usize, n: usize) -> Vec<f64> {
    (0..n).map(|j| f.params[i].1[j % 2]).collect()
}

/// Build `f` through `DistSpec` with the given parameter tensors (in `f.params` order).
fn build(f: &Family, params: &[Tensor]) -> vi_dist::Result<Box<dyn Distribution>> {
    f.params
        .iter()
        .zip(params)
        .fold(DistSpec::new(f.name), |s, ((name, _), t)| {
            s.param(name, t.clone())
        })
        .build()
}

/// `f` with a batch of `n` (settings cycled), parameters as `Var`s.
fn build_vars(
    f: &Family,
    n: usize,
    dtype: DType,
    device: &Device,
) -> Result<(Box<dyn Distribution>, Vec<Var>), Error> {
    let vars = (0..f.params.len())
        .map(|i| Var::from_tensor(&vector(&param_values(f, i, n), dtype, device)))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    Ok((build(f, &ts)?, vars))
}

/// The settings of column `j` of the batch of 2.
fn setting(f: &Family, j: usize) -> Vec<f64> {
    f.params.iter().map(|(_, v)| v[j]).collect()
}

/// Sample quantiles at `p` against the closed form, within `z` standard errors
/// `√(p (1 − p) / n) / density(q)`.
fn check_quantiles(
    xs: &[f64],
    quantile: impl Fn(f64) -> f64,
    density: impl Fn(f64) -> f64,
    z: f64,
) -> Result<(), String> {
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    for p in [0.1, 0.25, 0.5, 0.75, 0.9] {
        let q = quantile(p);
        let got = s[(p * n) as usize];
        let se = (p * (1.0 - p) / n).sqrt() / density(q);
        if (got - q).abs() > z * se {
            return Err(format!(
                "quantile {p}: {got} vs {q} ({:.1} SE)",
                (got - q).abs() / se
            ));
        }
    }
    Ok(())
}

/// Moments (or quantiles) and KS of 20 000 seeded draws per setting.
fn samplers(device: &Device, dtype: DType) -> Res {
    const N: usize = 20_000;
    for (k, f) in FAMILIES.iter().enumerate() {
        let (d, _) = build_vars(f, 2, dtype, device)?;
        let mut rng = ChaCha8Rng::seed_from_u64(1_000 + k as u64);
        let x = d.sample(&[N], &mut rng)?;
        assert_eq!(x.dims(), &[N, 2], "{}", f.name);
        let x = host(&x);
        for j in 0..2 {
            let p = setting(f, j);
            let xs: Vec<f64> = x.iter().skip(j).step_by(2).copied().collect();
            let at = |e: String| format!("{} {p:?} {dtype:?}: {e}", f.name);
            if let Some(moments) = f.moments {
                let (m, v) = moments(&p);
                check_moments(&xs, m, v, 5.0).map_err(at)?;
            }
            if let Some((quantile, density)) = f.quantiles {
                check_quantiles(&xs, |q| quantile(&p, q), |x| density(&p, x), 5.0).map_err(at)?;
            }
            check_ks(&xs, |x| (f.cdf)(&p, x), 1e-3).map_err(at)?;
        }
    }
    Ok(())
}
vi_test::test_device!(samplers);

/// The standard draws behind a seeded `rsample` of `n` elements, reproduced in f64.
fn standard_draws(draw: Draw, n: usize, seed: u64) -> Result<Vec<f64>, Error> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let t = match draw {
        Draw::Normal => vi_dist::standard_normal(&[n], DType::F64, &Device::Cpu, &mut rng)?,
        Draw::Uniform => vi_dist::uniform_open01(&[n], DType::F64, &Device::Cpu, &mut rng)?,
    };
    Ok(host(&t))
}

fn close(a: f64, b: f64, rtol: f64) -> bool {
    (a - b).abs() <= rtol * b.abs().max(1.0)
}

/// `rsample` is the sampling transform of the seeded standard draws, and its gradient with
/// respect to every parameter is the transform's derivative at the same draw (elementwise:
/// a batch of 16, no sample dims, so `d Σx / dθ_j = dx_j / dθ_j`).
fn rsample_gradients(device: &Device, dtype: DType) -> Res {
    const N: usize = 16;
    let rtol = if dtype == DType::F64 { 1e-8 } else { 1e-4 };
    for (k, f) in FAMILIES.iter().enumerate() {
        let seed = 2_000 + k as u64;
        let (d, vars) = build_vars(f, N, dtype, device)?;
        assert!(d.has_rsample(), "{}", f.name);
        let x = d.rsample(&[], &mut ChaCha8Rng::seed_from_u64(seed))?;
        let grads = x.sum_all()?.backward()?;
        let x = host(&x);
        let draws = standard_draws(f.draw, N, seed)?;
        for j in 0..N {
            let p: Vec<f64> = (0..f.params.len()).map(|i| f.params[i].1[j % 2]).collect();
            let (want, dwant) = (f.transform)(&p, draws[j]);
            assert!(
                close(x[j], want, rtol),
                "{} x[{j}] = {} vs {want}",
                f.name,
                x[j]
            );
            for (i, var) in vars.iter().enumerate() {
                let g = host(grads.get(var.as_tensor()).ok_or("no gradient")?);
                assert!(
                    close(g[j], dwant[i], rtol),
                    "{} {dtype:?} d x[{j}] / d {}: autograd {} vs transform {}",
                    f.name,
                    f.params[i].0,
                    g[j],
                    dwant[i]
                );
            }
        }
    }
    Ok(())
}
vi_test::test_device!(rsample_gradients);

/// The same gradients against central differences of the seeded sampler (f64 on the CPU).
#[test]
fn rsample_gradients_finite_difference() -> Res {
    const N: usize = 16;
    for (k, f) in FAMILIES.iter().enumerate() {
        let seed = 3_000 + k as u64;
        let (d, vars) = build_vars(f, N, DType::F64, &Device::Cpu)?;
        let grads = d
            .rsample(&[], &mut ChaCha8Rng::seed_from_u64(seed))?
            .sum_all()?
            .backward()?;
        for (i, var) in vars.iter().enumerate() {
            let auto = host(grads.get(var.as_tensor()).ok_or("no gradient")?);
            let base = param_values(f, i, N);
            // Σ_j x_j as a function of parameter i (the others fixed, same seed).
            let sum_of_draws = |theta: &[f64]| -> f64 {
                let run = || -> Result<f64, Error> {
                    let mut ps = Vec::new();
                    for m in 0..f.params.len() {
                        let v = if m == i {
                            theta.to_vec()
                        } else {
                            param_values(f, m, N)
                        };
                        ps.push(vector(&v, DType::F64, &Device::Cpu));
                    }
                    let x = build(f, &ps)?.rsample(&[], &mut ChaCha8Rng::seed_from_u64(seed))?;
                    Ok(x.sum_all()?.to_scalar::<f64>()?)
                };
                run().unwrap_or(f64::NAN)
            };
            let fd = vi_test::finite_difference(&base, 1e-6, sum_of_draws);
            for j in 0..N {
                assert!(
                    close(auto[j], fd[j], 1e-8),
                    "{} d x[{j}] / d {}: autograd {} vs finite difference {}",
                    f.name,
                    f.params[i].0,
                    auto[j],
                    fd[j]
                );
            }
        }
    }
    Ok(())
}

/// `expand` broadcasts the batch shape, keeps `log_prob`, and refuses shapes it cannot reach.
fn expand(device: &Device, dtype: DType) -> Res {
    for f in FAMILIES {
        let (d, _) = build_vars(f, 3, dtype, device)?;
        let e = d.expand(&[2, 3])?;
        assert_eq!(e.batch_shape(), &[2, 3], "{}", f.name);
        assert_eq!(e.event_shape(), &[] as &[usize], "{}", f.name);
        let x = d.sample(&[2], &mut ChaCha8Rng::seed_from_u64(4))?;
        let (a, b) = (host(&d.log_prob(&x)?), host(&e.log_prob(&x)?));
        assert_eq!(a.len(), 6, "{}", f.name);
        assert_eq!(a, b, "{}: log_prob changed under expand", f.name);
        assert_eq!(
            e.rsample(&[4], &mut ChaCha8Rng::seed_from_u64(5))?.dims(),
            &[4, 2, 3]
        );
        for m in [e.mean()?, e.variance()?] {
            assert_eq!(m.dims(), &[2, 3], "{}", f.name);
        }
        assert_eq!(e.entropy()?.dims(), &[2, 3], "{}", f.name);
        assert!(
            matches!(
                d.expand(&[4]).map_err(DistError::into_kind),
                Err(DistError::Expand { .. })
            ),
            "{}: expand [3] to [4] must fail",
            f.name
        );
    }
    Ok(())
}
vi_test::test_device!(expand);

/// A parameter outside its support is a `ParamSupport` naming it with validation on, and is
/// not checked with validation off.
fn invalid_parameters(device: &Device, dtype: DType) -> Res {
    for f in FAMILIES {
        for &(name, bad) in f.bad {
            let ps = f
                .params
                .iter()
                .map(|(n, v)| vector(&[if *n == name { bad } else { v[0] }], dtype, device))
                .collect::<Vec<_>>();
            match build(f, &ps).map_err(DistError::into_kind) {
                Err(DistError::ParamSupport { dist, param, .. }) => {
                    assert_eq!(dist, f.name);
                    // Uniform reports low >= high as `high` whichever bound was moved.
                    let low_high = f.name == "Uniform" && param == "high";
                    assert!(param == name || low_high, "{}: {param} for {name}", f.name);
                }
                other => panic!(
                    "{} {name} = {bad}: expected ParamSupport, got {other:?}",
                    f.name
                ),
            }
            let unchecked = vi_dist::with_validation(false, || build(f, &ps));
            assert!(
                unchecked.is_ok(),
                "{} {name} = {bad}: checked with validation off",
                f.name
            );
        }
    }
    // low >= high names `high` and the bound it must exceed.
    let t = |v: &[f64]| vector(v, dtype, device);
    match vi_dist::Uniform::new(&t(&[0.0, 2.0]), &t(&[1.0, 2.0])).map_err(DistError::into_kind) {
        Err(DistError::ParamSupport {
            param, constraint, ..
        }) => assert_eq!(
            (param, constraint.as_str()),
            ("high", "greater_than(tensor[2])")
        ),
        other => panic!("Uniform low == high: expected ParamSupport, got {other:?}"),
    }
    Ok(())
}
vi_test::test_device!(invalid_parameters);

/// A value outside the support is a `ValueSupport` with validation on; with validation off
/// it is not checked.
fn value_outside_support(device: &Device, dtype: DType) -> Res {
    for f in FAMILIES {
        let (d, _) = build_vars(f, 1, dtype, device)?;
        let x = vector(&[f.outside], dtype, device);
        match d.log_prob(&x) {
            Err(DistError::ValueSupport { dist, .. }) => assert_eq!(dist, f.name),
            other => panic!(
                "{} at {}: expected ValueSupport, got {other:?}",
                f.name, f.outside
            ),
        }
        let lp = vi_dist::with_validation(false, || d.log_prob(&x))?;
        assert_eq!(lp.dims(), &[1], "{}", f.name);
    }
    Ok(())
}
vi_test::test_device!(value_outside_support);

/// Without validation, the families that torch masks give `−inf` outside the support (with
/// a finite gradient); the density is 0 at Uniform's `high`, as torch.
fn masked_outside_support(device: &Device, dtype: DType) -> Res {
    for name in ["HalfNormal", "HalfCauchy", "Uniform"] {
        let f = FAMILIES
            .iter()
            .find(|f| f.name == name)
            .ok_or("no family")?;
        let (d, vars) = build_vars(f, 1, dtype, device)?;
        let x = vector(&[f.outside], dtype, device);
        let lp = vi_dist::with_validation(false, || d.log_prob(&x))?;
        assert_eq!(host(&lp), vec![f64::NEG_INFINITY], "{name}");
        let grads = lp.sum_all()?.backward()?;
        for v in &vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                assert!(
                    host(g).iter().all(|g| g.is_finite()),
                    "{name}: gradient {g}"
                );
            }
        }
    }
    let u = vi_dist::Uniform::new(
        &vector(&[0.0], dtype, device),
        &vector(&[2.0], dtype, device),
    )?;
    let lp = host(&u.log_prob(&vector(&[0.0, 2.0], dtype, device))?);
    assert_eq!(lp[1], f64::NEG_INFINITY);
    assert!((lp[0] + 2f64.ln()).abs() < 1e-6);
    Ok(())
}
vi_test::test_device!(masked_outside_support);

/// Parameter shapes that do not broadcast are a `Broadcast` error; values whose shape does
/// not broadcast with the batch shape are a `ValueShape` error.
fn shape_errors(device: &Device, dtype: DType) -> Res {
    for f in FAMILIES {
        if f.params.len() == 2 {
            let a = vector(&[f.params[0].1[0]; 2], dtype, device);
            let b = vector(&[f.params[1].1[0]; 3], dtype, device);
            match build(f, &[a, b]).map_err(DistError::into_kind) {
                Err(DistError::Broadcast { dist, .. }) => assert_eq!(dist, f.name),
                other => panic!("{}: expected Broadcast, got {other:?}", f.name),
            }
        }
        let (d, _) = build_vars(f, 3, dtype, device)?;
        let x = d.sample(&[4], &mut ChaCha8Rng::seed_from_u64(6))?;
        let wrong = x.narrow(1, 0, 2)?; // [4, 2] against batch [3]
        match d.log_prob(&wrong) {
            Err(DistError::ValueShape { dist, .. }) => assert_eq!(dist, f.name),
            other => panic!("{}: expected ValueShape, got {other:?}", f.name),
        }
        // A value of shape [4, 1] broadcasts: one value per draw against the whole batch.
        let column = x.narrow(1, 0, 1)?;
        let lp = vi_dist::with_validation(false, || d.log_prob(&column))?;
        assert_eq!(lp.dims(), &[4, 3], "{}", f.name);
    }
    Ok(())
}
vi_test::test_device!(shape_errors);

/// torch's conventions for moments that do not exist, and the supports with tensor bounds.
fn moments_and_supports(device: &Device, dtype: DType) -> Res {
    let t = |v: &[f64]| vector(v, dtype, device);
    let p = vi_dist::Pareto::new(&t(&[1.0, 1.0, 1.0, 2.0]), &t(&[0.5, 1.0, 1.5, 3.0]))?;
    let inf = f64::INFINITY;
    assert_eq!(host(&p.mean()?)[..3], [inf, inf, 3.0]);
    assert!((host(&p.mean()?)[3] - 3.0).abs() < 1e-6);
    assert_eq!(host(&p.variance()?)[..3], [inf, inf, inf]);
    assert!((host(&p.variance()?)[3] - 3.0).abs() < 1e-5);
    assert_eq!(p.support().to_string(), "greater_than_eq(tensor[4])");

    let c = vi_dist::Cauchy::new(&t(&[0.0, 1.0]), &t(&[1.0]))?;
    assert!(host(&c.mean()?).iter().all(|m| m.is_nan()));
    assert_eq!(host(&c.variance()?), vec![inf, inf]);
    let h = vi_dist::HalfCauchy::new(&t(&[1.0, 2.0]))?;
    assert_eq!(host(&h.mean()?), vec![inf, inf]);

    let u = vi_dist::Uniform::new(&t(&[0.0, 1.0]), &t(&[1.0, 3.0]))?;
    assert_eq!(u.support().to_string(), "interval(tensor[2], tensor[2])");
    let inside = u.support().check(&t(&[0.5, 0.5]))?.to_vec1::<u8>()?;
    assert_eq!(inside, vec![1, 0]);
    Ok(())
}
vi_test::test_device!(moments_and_supports);

/// `Normal::log_prob` with a scale broadcast from fewer dims (a view with stride 0, as a plate
/// expands a prior): the same values, and the same gradients to that scale and to the value, as
/// with the scale materialised.
fn normal_log_prob_broadcast_scale(device: &Device, dtype: DType) -> Res {
    let scale = Var::from_tensor(&vector(&[0.5, 1.0, 2.0], dtype, device))?;
    let value = Var::from_tensor(
        &Tensor::from_vec(
            vec![0.1, -0.4, 1.3, 2.0, 0.0, -1.5, 0.7, 0.2],
            (4, 1, 2),
            &Device::Cpu,
        )?
        .to_dtype(dtype)?
        .to_device(device)?,
    )?;
    let loc = vector(&[0.3, -0.2], dtype, device);
    // (log_prob, gradient to the scale, gradient to the value)
    type Out = (Vec<f64>, Vec<f64>, Vec<f64>);
    let run = |materialise: bool| -> Result<Out, Error> {
        // scale [3] → [3, 1] → broadcast to the batch [3, 2]
        let s = scale.as_tensor().reshape((3, 1))?.broadcast_as((3, 2))?;
        let s = if materialise { s.contiguous()? } else { s };
        let d = vi_dist::Normal::new(&loc, &s)?;
        let lp = d.log_prob(value.as_tensor())?;
        assert_eq!(lp.dims(), &[4, 3, 2]);
        let w = Tensor::arange(0u32, 24, &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(device)?
            .reshape((4, 3, 2))?;
        let g = (&lp * &w)?.sum_all()?.backward()?;
        let gs = host(g.get(scale.as_tensor()).ok_or("no scale gradient")?);
        let gv = host(g.get(value.as_tensor()).ok_or("no value gradient")?);
        Ok((host(&lp), gs, gv))
    };
    let (a, b) = (run(false)?, run(true)?);
    let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
    for (x, y) in [(&a.0, &b.0), (&a.1, &b.1), (&a.2, &b.2)] {
        for (p, q) in x.iter().zip(y) {
            assert!((p - q).abs() <= tol * q.abs().max(1.0), "{x:?} vs {y:?}");
        }
    }
    Ok(())
}
vi_test::test_device!(normal_log_prob_broadcast_scale);
