//! What `TraceGraphElbo`'s graph walk costs: its `Svi::step` against `TraceElbo`'s on the
//! same models, f32 on the CPU, in one run (the target: at most 1.2 × `TraceElbo`).
//!
//! - `plate`: 100 Bernoulli latents in a vectorised plate, `z_i ~ Bernoulli(0.5)`,
//!   `x_i ~ Normal(z_i, 1)`; the guide `Bernoulli(σ(l_i))`, `l [100]` a parameter.
//! - `separate`: the same 100 latents and observations written as separate sites (`z0`,
//!   `x0`, `z1`, …), the guide's `l_i` read from one parameter `l [100]`.
//!
//! Each model runs under `TraceElbo`, `TraceGraphElbo`, and `TraceGraphElbo` with a
//! decaying-average baseline on every guide site (`ctx.sample_with`; `TraceElbo` reads no
//! baseline). Adam at lr 0.01, one particle, value validation off. The sides alternate one
//! step at a time, the order rotating each round; the bench prints, per model,
//! `model=<name> trace_us=A tracegraph_us=B ratio=B/A tracegraph_baseline_us=C ratio_baseline=C/A`
//! (medians of single steps). `ELBOS_STEPS=<n>` sets the timed steps of each side (default
//! 400). `examples/vae/compare/elbo_compare.py` times the same in Pyro.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use vi_dist::{Bernoulli, Constraint, Normal};
use vi_infer::{Baseline, Ctx, Elbo, SiteOptions, Svi, TraceElbo, TraceGraphElbo};
use vi_optim::{Adam, AdamOptions};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const N: usize = 100;
const DTYPE: DType = DType::F32;

/// The observations: 100 fixed values in [−1, 1.2].
fn data(dev: &Device) -> Tensor {
    let xs: Vec<f32> = (0..N).map(|i| ((i * 37) % 11) as f32 / 5.0 - 1.0).collect();
    Tensor::from_vec(xs, N, dev).unwrap()
}

/// One `Svi::step` of `model`/`guide` under `elbo`, as a closure returning the loss.
fn stepper<E: Elbo + 'static>(plate: bool, baseline: bool, elbo: E) -> Box<dyn FnMut() -> f64> {
    let dev = Device::Cpu;
    let x = data(&dev);
    let half = Tensor::new(0.5f32, &dev).unwrap();
    let one = Tensor::new(1.0f32, &dev).unwrap();
    let (xm, half_m, one_m) = (x.clone(), half.clone(), one.clone());
    let model = move |ctx: &mut Ctx<'_>| -> vi_infer::Result<()> {
        if plate {
            ctx.plate("data", N, |ctx| {
                let z = ctx.sample("z", Bernoulli::from_probs(&half_m)?)?;
                ctx.observe("x", Normal::new(&z, &one_m)?, &xm)
            })?;
        } else {
            for i in 0..N {
                let z = ctx.sample(&format!("z{i}"), Bernoulli::from_probs(&half_m)?)?;
                ctx.observe(&format!("x{i}"), Normal::new(&z, &one_m)?, &xm.get(i)?)?;
            }
        }
        Ok(())
    };
    let guide = move |ctx: &mut Ctx<'_>| -> vi_infer::Result<()> {
        let l = ctx.param(
            "l",
            &Tensor::zeros(N, DTYPE, &Device::Cpu)?,
            Constraint::Real,
        )?;
        let opts = || -> vi_infer::Result<SiteOptions> {
            Ok(if baseline {
                SiteOptions::new().baseline(Baseline::decaying_average(0.9)?)
            } else {
                SiteOptions::new()
            })
        };
        if plate {
            let o = opts()?;
            ctx.plate("data", N, |ctx| {
                ctx.sample_with("z", Bernoulli::from_logits(&l)?, o)
            })?;
        } else {
            for i in 0..N {
                ctx.sample_with(
                    &format!("z{i}"),
                    Bernoulli::from_logits(&l.get(i)?)?,
                    opts()?,
                )?;
            }
        }
        Ok(())
    };
    let adam = Adam::empty(AdamOptions {
        lr: 1e-2,
        ..Default::default()
    })
    .unwrap();
    let mut svi = Svi::new(model, guide, adam, elbo).seed(7);
    Box::new(move || svi.step().unwrap().loss)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Medians in µs of single steps of the sides, one step each in turn, the order rotating
/// each round.
fn paired(sides: &mut [Box<dyn FnMut() -> f64>], steps: usize) -> Vec<f64> {
    for _ in 0..(steps / 10).max(5) {
        for s in sides.iter_mut() {
            s();
        }
    }
    let n = sides.len();
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(steps); n];
    for round in 0..steps {
        for k in 0..n {
            let i = (k + round) % n;
            let t = Instant::now();
            std::hint::black_box((sides[i])());
            times[i].push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    times.iter_mut().map(|t| median(t)).collect()
}

fn main() {
    vi_dist::set_validation(false);
    let steps = std::env::var("ELBOS_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    for (name, plate) in [("plate", true), ("separate", false)] {
        let mut sides = vec![
            stepper(plate, false, TraceElbo::new()),
            stepper(plate, false, TraceGraphElbo::new()),
            stepper(plate, true, TraceGraphElbo::new()),
        ];
        let med = paired(&mut sides, steps);
        println!(
            "model={name} trace_us={:.1} tracegraph_us={:.1} ratio={:.3} \
             tracegraph_baseline_us={:.1} ratio_baseline={:.3}",
            med[0],
            med[1],
            med[1] / med[0],
            med[2],
            med[2] / med[0]
        );
    }
}
