//! Details of torch's and Pyro's updates that the reference trajectories do not pin.

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use vi_optim::{Adam, AdamOptions, Optimizer};

/// torch's `lerp` computes `1 − weight` in the tensor's precision: with `β₁ ≤ 0.5` (the
/// `weight ≥ 0.5` branch) an f32 `exp_avg` is `g − (g − m)·(1 − w)` with `w` rounded to f32
/// first, `1 − w` exact in f32. (Three elements take torch's scalar loop; its vectorised
/// loop over longer tensors uses the same coefficient with a fused multiply-add.)
#[test]
fn adam_lerp_in_f32_as_torch() -> Result<(), Box<dyn std::error::Error>> {
    let beta1 = 0.4f64;
    let w = (1.0 - beta1) as f32;
    let one_minus_w = 1.0f32 - w;
    assert_ne!(one_minus_w, beta1 as f32, "this β₁ does not tell the two roundings apart");
    let grads = [[0.3f32, -1.7, 2.9], [1.1, 0.7, -0.2]];
    for fast in [true, false] {
        let x = Var::new(&[0.5f32, 0.25, -1.0], &Device::Cpu)?;
        let mut opt = Adam::new(
            [("x", x.clone())],
            AdamOptions {
                lr: 0.01,
                betas: (beta1, 0.9),
                ..Default::default()
            },
        )?;
        opt.set_cpu_fast_path(fast);
        let mut m = [0.0f32; 3];
        for g in grads {
            let mut store = GradStore::default();
            store.insert(x.as_tensor(), Tensor::new(&g, &Device::Cpu)?);
            opt.step(&store)?;
            for (m, g) in m.iter_mut().zip(g) {
                *m = g - (g - *m) * one_minus_w;
            }
        }
        let state = opt.state_dict()?;
        let got = state.get("state.x.exp_avg").ok_or("no exp_avg")?;
        assert_eq!(got.to_vec1::<f32>()?, m, "fast path {fast}");
    }
    Ok(())
}
