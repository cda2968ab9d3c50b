//! One SVI step of the mixture (`TraceEnumElbo` over the assignments, the Delta guide, Adam)
//! against the same MAP objective written directly in candle ([`crate::plain`]), alternated
//! step by step on the same data from the same parameters: `N` points from `K` well separated
//! components, f32 on the CPU.

use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_infer::candle::{DType, Device, Tensor, Var};
use vi_infer::optim::Optimizer;

use crate::{Init, adam, svi};

/// Median milliseconds per step of each side.
pub struct Report {
    /// N, K.
    pub n: usize,
    pub k: usize,
    /// vi's step (median ms), and the range of the per-step times.
    pub svi_ms: f64,
    /// The plain candle step (median ms).
    pub plain_ms: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GMM N = {}, K = {}: vi TraceEnumElbo {:.3} ms/step, plain candle {:.3} ms/step, ratio {:.2}",
            self.n,
            self.k,
            self.svi_ms,
            self.plain_ms,
            self.svi_ms / self.plain_ms
        )
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// `n` points, cycling through `k` components at `0, 5, 10, …` with unit noise (seeded).
pub fn data(n: usize, k: usize, seed: u64) -> Vec<f64> {
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
            let u2: f64 = rng.random();
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            5.0 * (i % k) as f64 + z
        })
        .collect()
}

/// Times `steps` steps of each side, alternating, after two warm-up steps each.
pub fn run(n: usize, k: usize, steps: usize) -> vi_infer::Result<Report> {
    let xs = data(n, k, 0);
    let dev = Device::Cpu;
    let x = Tensor::new(xs.as_slice(), &dev)?.to_dtype(DType::F32)?;
    let init = Init::draw(&xs, k, &mut ChaCha8Rng::seed_from_u64(1));
    let mut s = svi(&x, k, init.clone())?.seed(0);
    let logits = Var::zeros(k, DType::F32, &dev)?;
    let log_scale = Var::from_tensor(&Tensor::new(init.scale.ln() as f32, &dev)?)?;
    let locs = Var::from_tensor(&Tensor::new(init.locs.as_slice(), &dev)?.to_dtype(DType::F32)?)?;
    let mut opt = adam()?;
    let params = [
        ("weights_logits", logits.clone()),
        ("scale", log_scale.clone()),
        ("locs", locs.clone()),
    ];
    let mut plain_step = || -> vi_infer::Result<()> {
        let loss = crate::plain::loss(
            logits.as_tensor(),
            log_scale.as_tensor(),
            locs.as_tensor(),
            &x,
        )?;
        let grads = loss.backward()?;
        let refs: Vec<(&str, &Var)> = params.iter().map(|(n, v)| (*n, v)).collect();
        opt.step_params(&refs, &grads)?;
        Ok(())
    };
    for _ in 0..2 {
        s.step()?;
        plain_step()?;
    }
    let (mut a, mut b) = (Vec::with_capacity(steps), Vec::with_capacity(steps));
    for _ in 0..steps {
        let c = Instant::now();
        s.step()?;
        a.push(c.elapsed().as_secs_f64() * 1e3);
        let c = Instant::now();
        plain_step()?;
        b.push(c.elapsed().as_secs_f64() * 1e3);
    }
    Ok(Report {
        n,
        k,
        svi_ms: median(a),
        plain_ms: median(b),
    })
}
