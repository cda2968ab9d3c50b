//! Every registered pair against the Monte Carlo estimate: on random parameters (seeded per
//! pair), the closed form lies within 4 standard errors of `kl_monte_carlo_with_error`, and
//! it is `+inf` exactly where the estimate is (a draw of p outside q's support).

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vi_dist::transforms::{Affine, Exp};
use vi_dist::{
    Bernoulli, Beta, Binomial, Categorical, Cauchy, Dirichlet, Distribution, Exponential, Gamma,
    Geometric, Gumbel, HalfNormal, Laplace, LogNormal, LowRankMultivariateNormal,
    MultivariateNormal, Normal, OneHotCategorical, Pareto, Poisson, TransformedDistribution,
    Uniform,
};
use vi_kl::{KlRegistry, kl_divergence, kl_monte_carlo_with_error};

const SAMPLES: usize = 20_000;
/// Batch size of the scalar families' draws.
const B: usize = 3;
/// Event size of the vector families.
const D: usize = 3;

type Dist = Box<dyn Distribution>;

struct Gen {
    rng: ChaCha8Rng,
    dtype: DType,
    dev: Device,
}

impl Gen {
    fn tensor(&self, v: Vec<f64>, shape: &[usize]) -> Tensor {
        Tensor::from_vec(v, shape, &self.dev)
            .unwrap()
            .to_dtype(self.dtype)
            .unwrap()
    }
    /// Uniform draws in [lo, hi), shape `shape`.
    fn u(&mut self, lo: f64, hi: f64, shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        let v = (0..n).map(|_| self.rng.random_range(lo..hi)).collect();
        self.tensor(v, shape)
    }
    fn b(&mut self, lo: f64, hi: f64) -> Tensor {
        self.u(lo, hi, &[B])
    }
    /// A random lower-triangular factor with a positive diagonal, [D, D].
    fn scale_tril(&mut self) -> Tensor {
        let mut v = vec![0.0; D * D];
        for i in 0..D {
            for j in 0..=i {
                v[i * D + j] = if i == j {
                    self.rng.random_range(0.6..1.4)
                } else {
                    self.rng.random_range(-0.4..0.4)
                };
            }
        }
        self.tensor(v, &[D, D])
    }
}

/// A random member of `family` with parameter ranges that keep the log-ratio's variance
/// finite (and its standard error meaningful) against the other families.
fn family(name: &str, g: &mut Gen) -> Option<Dist> {
    Some(match name {
        "Normal" => Box::new(Normal::new(&g.b(-1.0, 1.0), &g.b(0.5, 1.0)).ok()?),
        "Laplace" => Box::new(Laplace::new(&g.b(-1.0, 1.0), &g.b(0.5, 1.0)).ok()?),
        "Cauchy" => Box::new(Cauchy::new(&g.b(-1.0, 1.0), &g.b(0.5, 1.5)).ok()?),
        "Gumbel" => Box::new(Gumbel::new(&g.b(-1.0, 1.0), &g.b(1.0, 1.5)).ok()?),
        "LogNormal" => Box::new(LogNormal::new(&g.b(-0.5, 0.5), &g.b(0.3, 0.8)).ok()?),
        "HalfNormal" => Box::new(HalfNormal::new(&g.b(0.5, 2.0)).ok()?),
        "Exponential" => Box::new(Exponential::new(&g.b(0.5, 2.0)).ok()?),
        "Gamma" => Box::new(Gamma::new(&g.b(1.5, 4.0), &g.b(0.5, 2.0)).ok()?),
        "Beta" => Box::new(Beta::new(&g.b(1.5, 4.0), &g.b(1.5, 4.0)).ok()?),
        "Uniform" => {
            let low = g.b(-1.0, 0.0);
            let high = (&low + g.b(0.5, 1.5)).ok()?;
            Box::new(Uniform::new(&low, &high).ok()?)
        }
        "Pareto" => Box::new(Pareto::new(&g.b(0.5, 1.5), &g.b(6.0, 10.0)).ok()?),
        "Dirichlet" => Box::new(Dirichlet::new(&g.u(1.0, 4.0, &[B, D])).ok()?),
        "Bernoulli" => Box::new(Bernoulli::from_logits(&g.b(-2.0, 2.0)).ok()?),
        "Binomial" => {
            let n = g.tensor(vec![5.0; B], &[B]);
            Box::new(Binomial::from_logits(&n, &g.b(-1.0, 1.0)).ok()?)
        }
        "Categorical" => Box::new(Categorical::from_logits(&g.u(-1.0, 1.0, &[B, 4])).ok()?),
        "OneHotCategorical" => {
            Box::new(OneHotCategorical::from_logits(&g.u(-1.0, 1.0, &[B, 4])).ok()?)
        }
        "Geometric" => Box::new(Geometric::from_probs(&g.b(0.2, 0.7)).ok()?),
        "Poisson" => Box::new(Poisson::new(&g.b(0.5, 3.0)).ok()?),
        "MultivariateNormal" => Box::new(
            MultivariateNormal::from_scale_tril(&g.u(-1.0, 1.0, &[D]), &g.scale_tril()).ok()?,
        ),
        "LowRankMultivariateNormal" => Box::new(
            LowRankMultivariateNormal::new(
                &g.u(-1.0, 1.0, &[D]),
                &g.u(-0.5, 0.5, &[D, 2]),
                &g.u(0.5, 1.5, &[D]),
            )
            .ok()?,
        ),
        // A normal through the same fixed chain on either side (the rule needs equal chains).
        "TransformedDistribution" => Box::new(
            TransformedDistribution::new(
                Box::new(Normal::new(&g.b(-0.5, 0.5), &g.b(0.3, 0.8)).ok()?),
                vec![Box::new(Affine::new(0.5, 2.0)), Box::new(Exp)],
            )
            .ok()?,
        ),
        // A diagonal Normal with batch [B] and event [D].
        "Independent" => Box::new(
            Normal::new(&g.u(-1.0, 1.0, &[B, D]), &g.u(0.6, 1.4, &[B, D]))
                .ok()?
                .to_event(1)
                .ok()?,
        ),
        _ => return None,
    })
}

/// Random p and q for a pair, with the adjustments some pairs need for a finite KL.
fn pair(p: &str, q: &str, g: &mut Gen) -> Option<(Dist, Dist)> {
    let uniform = |low: Tensor, width: Tensor| -> Option<Dist> {
        let high = (&low + width).ok()?;
        Some(Box::new(Uniform::new(&low, &high).ok()?))
    };
    Some(match (p, q) {
        ("Uniform", "Uniform") => {
            let (low, width) = (g.b(-1.0, 0.0), g.b(0.5, 1.5));
            let q_low = (&low - g.b(0.1, 0.5)).ok()?;
            let q_width = (&width + g.b(0.2, 1.0)).ok()?;
            (uniform(low, width)?, uniform(q_low, q_width)?)
        }
        ("Uniform", "Beta") => (uniform(g.b(0.1, 0.3), g.b(0.3, 0.6))?, family(q, g)?),
        ("Uniform", "Exponential" | "Gamma") => {
            (uniform(g.b(0.1, 0.5), g.b(0.5, 1.0))?, family(q, g)?)
        }
        ("Uniform", "Pareto") => {
            let scale = g.b(0.5, 1.0);
            let low = (&scale + g.b(0.0, 0.5)).ok()?;
            let q: Dist = Box::new(Pareto::new(&scale, &g.b(1.0, 3.0)).ok()?);
            (uniform(low, g.b(0.5, 1.0))?, q)
        }
        ("Pareto", "Pareto") => {
            let scale = g.b(0.5, 1.5);
            let q_scale = (&scale * g.b(0.5, 0.9)).ok()?;
            (
                Box::new(Pareto::new(&scale, &g.b(3.0, 6.0)).ok()?),
                Box::new(Pareto::new(&q_scale, &g.b(1.0, 4.0)).ok()?),
            )
        }
        ("Beta", "Uniform") => (family(p, g)?, uniform(g.b(-0.5, 0.0), g.b(1.5, 2.0))?),
        ("Binomial", "Binomial") => {
            let n = g.tensor(vec![5.0, 7.0, 3.0], &[B]);
            (
                Box::new(Binomial::from_logits(&n, &g.b(-1.0, 1.0)).ok()?),
                Box::new(Binomial::from_logits(&n, &g.b(-1.0, 1.0)).ok()?),
            )
        }
        ("Poisson", "Binomial") => {
            let n = g.tensor(vec![5.0; B], &[B]);
            (
                family(p, g)?,
                Box::new(Binomial::from_logits(&n, &g.b(-1.0, 1.0)).ok()?),
            )
        }
        _ => (family(p, g)?, family(q, g)?),
    })
}

/// FNV-1a of the pair's names: a seed per pair, independent of the registry's order.
fn seed(p: &str, q: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in p.bytes().chain([b'|']).chain(q.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn check_pair(p_name: &str, q_name: &str, dev: &Device) -> Result<String, String> {
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(seed(p_name, q_name)),
        dtype: DType::F64,
        dev: dev.clone(),
    };
    let (p, q) = pair(p_name, q_name, &mut g)
        .ok_or_else(|| format!("no generator for {p_name} ‖ {q_name}: add one to pair()"))?;
    let kl = kl_divergence(p.as_ref(), q.as_ref()).map_err(|e| format!("kl: {e}"))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed(q_name, p_name));
    let mc = kl_monte_carlo_with_error(p.as_ref(), q.as_ref(), SAMPLES, &mut rng)
        .map_err(|e| format!("monte carlo: {e}"))?;
    let kl = vi_test::to_vec(&kl).map_err(|e| e.to_string())?;
    let est = vi_test::to_vec(&mc.estimate).map_err(|e| e.to_string())?;
    let se = vi_test::to_vec(&mc.std_error).map_err(|e| e.to_string())?;
    let mut worst = 0f64;
    for ((k, m), s) in kl.iter().zip(&est).zip(&se) {
        if k.is_infinite() || m.is_infinite() {
            if *k != f64::INFINITY || *m != f64::INFINITY {
                return Err(format!("closed form {kl:?}, Monte Carlo {est:?}"));
            }
            continue;
        }
        let z = (k - m).abs() / (s + 1e-12);
        if z.is_nan() || z > 4.0 {
            return Err(format!(
                "closed form {kl:?}, Monte Carlo {est:?} ± {se:?} ({z:.1} standard errors)"
            ));
        }
        worst = worst.max(z);
    }
    Ok(if kl.iter().all(|k| k.is_infinite()) {
        "+inf, as the estimate".to_string()
    } else {
        format!("within {worst:.2} standard errors")
    })
}

#[test]
fn every_pair_matches_monte_carlo() {
    let pairs = KlRegistry::default().pairs();
    assert!(!pairs.is_empty());
    for dev in vi_test::devices!() {
        let mut failures = vec![];
        for info in &pairs {
            match check_pair(info.p, info.q, &dev) {
                Ok(msg) => println!("{} ‖ {}: {msg}", info.p, info.q),
                Err(e) => failures.push(format!("{} ‖ {}: {e}", info.p, info.q)),
            }
        }
        // The wrappers' structural rules, on the same footing.
        for (p, q) in [("Independent", "Independent")] {
            if let Err(e) = check_pair(p, q, &dev) {
                failures.push(format!("{p} ‖ {q}: {e}"));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} pairs disagree with Monte Carlo:\n{}",
            failures.len(),
            pairs.len() + 1,
            failures.join("\n")
        );
    }
}

#[test]
fn monte_carlo_is_reproducible_and_differentiable() {
    let dev = Device::Cpu;
    let loc = candle_core::Var::new(&[0.3f64, -0.2], &dev).unwrap();
    let p = Normal::new(&loc, &Tensor::new(&[1.0f64, 0.5], &dev).unwrap()).unwrap();
    let q = Normal::new(
        &Tensor::new(&[0.0f64, 0.0], &dev).unwrap(),
        &Tensor::new(&[1.0f64, 1.0], &dev).unwrap(),
    )
    .unwrap();
    let run = |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        vi_kl::kl_monte_carlo(&p, &q, 1000, &mut rng).unwrap()
    };
    let (a, b) = (run(7), run(7));
    assert_eq!(vi_test::to_vec(&a).unwrap(), vi_test::to_vec(&b).unwrap());
    assert_ne!(
        vi_test::to_vec(&a).unwrap(),
        vi_test::to_vec(&run(8)).unwrap()
    );
    // Reparameterised: d/d loc of E[log p - log q] = loc / sigma_q^2 for Normal p
    // (the log p term's pathwise gradient vanishes in expectation; with many draws the
    // estimate is close).
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let est = vi_kl::kl_monte_carlo(&p, &q, 50_000, &mut rng).unwrap();
    let g = est.sum_all().unwrap().backward().unwrap();
    let g = vi_test::to_vec(g.get(&loc).unwrap()).unwrap();
    assert!(
        (g[0] - 0.3).abs() < 0.03 && (g[1] + 0.2).abs() < 0.03,
        "{g:?}"
    );
    // Zero samples is a typed error.
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    assert!(matches!(
        vi_kl::kl_monte_carlo(&p, &q, 0, &mut rng),
        Err(vi_kl::KlError::Invalid(_))
    ));
}
