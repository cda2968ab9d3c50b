//! Gradients of the ELBOs against closed forms: `TraceMeanFieldElbo` with fixed draws equals
//! the exact ELBO's gradient; `TraceElbo` agrees with it in expectation (pathwise and score
//! function).

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_dist::{Bernoulli, Constraint, Distribution, Independent, Normal};
use vi_infer::{Ctx, Elbo, Message, Messenger, ParamStore, TraceElbo, TraceMeanFieldElbo};
use vi_test::stats::mean_var;

use crate::common::{BoxedProgram, Res};

/// Sets the guide's draw of `z` to `loc + scale · eps` (a fixed reparameterised draw).
struct FixedNoise(Tensor);

impl Messenger for FixedNoise {
    fn process(&mut self, msg: &mut Message) -> vi_infer::Result<()> {
        if msg.name != "z" || msg.value.is_some() {
            return Ok(());
        }
        let d = msg.dist.as_ref().expect("z has a distribution");
        let ind = d
            .as_any()
            .downcast_ref::<Independent>()
            .expect("Independent");
        let n = ind
            .base()
            .as_any()
            .downcast_ref::<Normal>()
            .expect("Normal");
        msg.value = Some((n.loc() + n.scale().mul(&self.0)?)?);
        Ok(())
    }
}

const N: usize = 5;
const SIGMA: f64 = 0.7;
const MU0: [f64; 2] = [0.3, -0.4];
const TAU0: [f64; 2] = [1.5, 0.8];
const X: [[f64; 2]; N] = [
    [0.9, -0.2],
    [1.3, 0.1],
    [0.4, -0.6],
    [1.1, 0.0],
    [0.7, -0.3],
];
const M: [f64; 2] = [0.5, -0.1];
const S: [f64; 2] = [0.6, 0.9];

/// The exact gradient of the loss −ELBO w.r.t. (loc, log scale), per dim:
/// ELBO = Σᵢ E_q log N(xᵢ; z, σ) − KL(N(m, s) ‖ N(μ₀, τ₀)).
fn exact_grad() -> (Vec<f64>, Vec<f64>) {
    let mut gm = vec![];
    let mut gu = vec![];
    for j in 0..2 {
        let (m, s) = (M[j], S[j]);
        let dl_dm = X.iter().map(|x| (x[j] - m) / (SIGMA * SIGMA)).sum::<f64>()
            - (m - MU0[j]) / (TAU0[j] * TAU0[j]);
        let dl_ds = -(N as f64) * s / (SIGMA * SIGMA) + 1.0 / s - s / (TAU0[j] * TAU0[j]);
        gm.push(-dl_dm);
        gu.push(-dl_ds * s);
    }
    (gm, gu)
}

fn normal_model(dev: &Device) -> (BoxedProgram<'static>, BoxedProgram<'static>) {
    let d = dev.clone();
    let model = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let prior = Normal::new(&Tensor::new(&MU0, &d)?, &Tensor::new(&TAU0, &d)?)?;
        let z = ctx.sample("z", prior.to_event(1)?)?;
        let x = Tensor::new(&X, &d)?;
        let sigma = Tensor::new(SIGMA, &d)?;
        ctx.plate("data", N, |ctx| {
            ctx.observe("x", Normal::new(&z, &sigma)?.to_event(1)?, &x)
        })?;
        Ok(())
    };
    let d = dev.clone();
    let guide = move |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let loc = ctx.param("loc", &Tensor::new(&M, &d)?, Constraint::Real)?;
        let scale = ctx.param("scale", &Tensor::new(&S, &d)?, Constraint::Positive)?;
        ctx.sample("z", Normal::new(&loc, &scale)?.to_event(1)?)?;
        Ok(())
    };
    (Box::new(model), Box::new(guide))
}

/// The gradient of one ELBO estimate w.r.t. (loc, unconstrained scale).
fn grad_once(
    elbo: &dyn Elbo,
    model: &mut BoxedProgram<'_>,
    guide: &mut BoxedProgram<'_>,
    store: &mut ParamStore,
    rng: &mut ChaCha8Rng,
) -> vi_infer::Result<(Vec<f64>, Vec<f64>)> {
    let out = elbo.compute(model.as_mut(), guide.as_mut(), store, rng)?;
    let g = out.surrogate.backward()?;
    let get = |v: &Var| -> vi_infer::Result<Vec<f64>> {
        Ok(g.get(v.as_tensor()).expect("gradient").to_vec1::<f64>()?)
    };
    Ok((
        get(store.unconstrained("loc").expect("loc"))?,
        get(store.unconstrained("scale").expect("scale"))?,
    ))
}

#[test]
fn mean_field_gradient_equals_exact_with_fixed_draws() -> Res {
    let dev = Device::Cpu;
    let (mut model, mut inner) = normal_model(&dev);
    let mut store = ParamStore::new(&dev, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (want_m, want_u) = exact_grad();
    // Draws ε = +1 and −1 per dim: their mean is 0 and their mean square 1, so the average
    // of the single-draw gradients is the exact gradient (it is affine in ε and ε²).
    let mut sum_m = vec![0.0; 2];
    let mut sum_u = vec![0.0; 2];
    for sign in [1.0, -1.0] {
        let eps = Tensor::new(&[sign, sign], &dev)?;
        let mut guide: BoxedProgram<'_> = Box::new(|ctx: &mut Ctx| {
            ctx.with(FixedNoise(eps.clone()), |ctx| inner(ctx))
                .map(|_| ())
        });
        let (gm, gu) = grad_once(
            &TraceMeanFieldElbo::new(),
            &mut model,
            &mut guide,
            &mut store,
            &mut rng,
        )?;
        for j in 0..2 {
            sum_m[j] += gm[j] / 2.0;
            sum_u[j] += gu[j] / 2.0;
        }
    }
    for j in 0..2 {
        assert!(
            (sum_m[j] - want_m[j]).abs() < 1e-6,
            "loc: {sum_m:?} vs {want_m:?}"
        );
        assert!(
            (sum_u[j] - want_u[j]).abs() < 1e-6,
            "scale: {sum_u:?} vs {want_u:?}"
        );
    }
    Ok(())
}

/// Mean and standard error of each component over draws.
fn mean_se(samples: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let n = samples.len() as f64;
    (0..samples[0].len())
        .map(|j| {
            let column: Vec<f64> = samples.iter().map(|s| s[j]).collect();
            let (mean, var) = mean_var(&column);
            (mean, (var / n).sqrt())
        })
        .unzip()
}

#[test]
fn trace_elbo_gradient_agrees_in_expectation() -> Res {
    let dev = Device::Cpu;
    let (mut model, mut guide) = normal_model(&dev);
    let mut store = ParamStore::new(&dev, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (want_m, want_u) = exact_grad();
    let mut gms = vec![];
    let mut gus = vec![];
    for _ in 0..2000 {
        let (gm, gu) = grad_once(
            &TraceElbo::new(),
            &mut model,
            &mut guide,
            &mut store,
            &mut rng,
        )?;
        gms.push(gm);
        gus.push(gu);
    }
    for (samples, want, what) in [(&gms, &want_m, "loc"), (&gus, &want_u, "scale")] {
        let (mean, se) = mean_se(samples);
        for j in 0..2 {
            let z = (mean[j] - want[j]).abs() / se[j];
            assert!(
                z < 4.0,
                "{what}[{j}]: {} ± {} vs exact {} ({z:.1} SE)",
                mean[j],
                se[j],
                want[j]
            );
        }
    }
    Ok(())
}

/// A discrete latent per data point, scored by the score-function term: z_i ~ Bernoulli(0.3),
/// x_i ~ N(z_i, 1); guide z_i ~ Bernoulli(sigmoid(l_i)). The exact ELBO enumerates z_i.
#[test]
fn trace_elbo_score_function_agrees_with_enumeration() -> Res {
    let dev = Device::Cpu;
    let x = [0.9f64, -0.2, 1.4];
    let l0 = [0.3f64, -0.5, 1.0];
    let xt = Tensor::new(&x, &dev)?;
    let mut model: BoxedProgram<'_> = Box::new(|ctx: &mut Ctx| {
        let prior = Bernoulli::from_probs(&Tensor::new(0.3f64, &dev)?)?;
        ctx.plate("data", 3, |ctx| {
            let z = ctx.sample("z", prior.clone())?;
            ctx.observe("x", Normal::new(&z, &Tensor::new(1.0f64, &dev)?)?, &xt)
        })?;
        Ok(())
    });
    let mut guide: BoxedProgram<'_> = Box::new(|ctx: &mut Ctx| {
        let l = ctx.param("logits", &Tensor::new(&l0, &dev)?, Constraint::Real)?;
        ctx.plate("data", 3, |ctx| {
            ctx.sample("z", Bernoulli::from_logits(&l)?)
        })?;
        Ok(())
    });
    // The exact gradient, by enumeration, through autograd of an independent expression.
    let lv = Var::new(&l0, &dev)?;
    let q1 = candle_nn::ops::sigmoid(lv.as_tensor())?;
    let q0 = (1.0 - &q1)?;
    let lognorm = |z: f64| -> Vec<f64> {
        x.iter()
            .map(|xi| -0.5 * (xi - z).powi(2) - 0.5 * (2.0 * std::f64::consts::PI).ln())
            .collect()
    };
    let term = |q: &Tensor, prior: f64, z: f64| -> candle_core::Result<Tensor> {
        let lp = Tensor::new(lognorm(z).as_slice(), &dev)?;
        let inner = ((lp + prior.ln())? - q.log()?)?;
        q.mul(&inner)
    };
    let elbo = (term(&q1, 0.3, 1.0)? + term(&q0, 0.7, 0.0)?)?.sum_all()?;
    let exact = (elbo * -1.0)?.backward()?;
    let want = exact.get(lv.as_tensor()).unwrap().to_vec1::<f64>()?;

    let mut store = ParamStore::new(&dev, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut grads = vec![];
    let elbo = TraceElbo::new();
    for _ in 0..4000 {
        let out = elbo.compute(model.as_mut(), guide.as_mut(), &mut store, &mut rng)?;
        let g = out.surrogate.backward()?;
        let v = store.unconstrained("logits").unwrap();
        grads.push(g.get(v.as_tensor()).unwrap().to_vec1::<f64>()?);
    }
    let (mean, se) = mean_se(&grads);
    for j in 0..3 {
        let z = (mean[j] - want[j]).abs() / se[j];
        assert!(
            z < 4.0,
            "logits[{j}]: {} ± {} vs exact {} ({z:.1} SE)",
            mean[j],
            se[j],
            want[j]
        );
    }
    // The score-function term is what carries the gradient: its estimate is not zero.
    assert!(mean.iter().any(|m| m.abs() > 4.0 * se[0]));
    Ok(())
}

/// Vectorised particles: the loss is the mean over particles of each particle's −ELBO,
/// computed here by hand from the particles' draws.
#[test]
fn vectorized_particles_average_the_particles() -> Res {
    let dev = Device::Cpu;
    let (mut model, mut guide) = normal_model(&dev);
    let mut store = ParamStore::new(&dev, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let p = 7;
    let elbo = TraceMeanFieldElbo::new()
        .num_particles(p)
        .vectorize_particles(true);
    let out = elbo.compute(model.as_mut(), guide.as_mut(), &mut store, &mut rng)?;
    // The particle plate sits outside the model's data plate (dim -1): z is [P, 1, 2].
    let z = &out.guide_trace.get("z").unwrap().value;
    assert_eq!(z.dims(), &[p, 1, 2]);
    let z = z.reshape((p, 2))?.to_vec2::<f64>()?;
    let kl: f64 = (0..2)
        .map(|j| {
            (TAU0[j] / S[j]).ln()
                + (S[j] * S[j] + (M[j] - MU0[j]).powi(2)) / (2.0 * TAU0[j] * TAU0[j])
                - 0.5
        })
        .sum();
    let mut total = 0.0;
    for zp in &z {
        let mut ll = 0.0;
        for x in X {
            for j in 0..2 {
                ll += -0.5 * ((x[j] - zp[j]) / SIGMA).powi(2)
                    - SIGMA.ln()
                    - 0.5 * (2.0 * std::f64::consts::PI).ln();
            }
        }
        total += kl - ll;
    }
    let want = total / p as f64;
    let got = out.loss.to_scalar::<f64>()?;
    assert!((got - want).abs() < 1e-10 * want.abs(), "{got} vs {want}");
    // The report's KL of z is per particle; its sum is the per-particle average.
    let term = out.sites.iter().find(|t| t.name == "z").unwrap();
    assert_eq!(term.value.dims(), &[p, 1]);
    assert!((term.sum.to_scalar::<f64>()? - kl).abs() < 1e-10);
    Ok(())
}
