//! Pyro's `ClippedAdam`: Adam with each gradient element clamped and the learning rate
//! decayed geometrically, with Pyro's own placement of eps and of the bias correction.

use candle_core::Tensor;

use crate::adam::AdamFields;
use crate::error::{Check, Result};
use crate::optimizer_type::optimizer_type;
use crate::rule::{Real, Rule};

/// Options of [`ClippedAdam`], with Pyro's names and defaults.
///
/// | field | Pyro `ClippedAdam` | default |
/// |---|---|---|
/// | `lr` | `lr` | 1e-3 |
/// | `betas` | `betas` | (0.9, 0.999) |
/// | `eps` | `eps` | 1e-8 |
/// | `weight_decay` | `weight_decay` (L2, after clipping) | 0 |
/// | `clip_norm` | `clip_norm` | 10 |
/// | `lrd` | `lrd` | 1 |
///
/// Valid: `lr ≥ 0`, each beta in `[0, 1)`, `eps > 0`, `weight_decay ≥ 0`, `clip_norm > 0`,
/// `lrd > 0`, all finite.
///
/// ```
/// let o = vi_optim::ClippedAdamOptions { lrd: 0.999, ..Default::default() };
/// assert_eq!(o.clip_norm, 10.0);
/// ```
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ClippedAdamOptions {
    /// Learning rate before any decay.
    pub lr: f64,
    /// Decay rates of the first and second moment averages.
    pub betas: (f64, f64),
    /// Added to `√v` before the bias correction (Pyro's placement, unlike torch's Adam).
    pub eps: f64,
    /// L2 penalty: `weight_decay · x` is added to the clipped gradient.
    pub weight_decay: f64,
    /// Each gradient element is clamped to `[−clip_norm, clip_norm]` (element-wise, despite
    /// the name: not a norm clip).
    pub clip_norm: f64,
    /// The learning rate is multiplied by `lrd` on every call that lists the parameter,
    /// before the gradient is looked at: the `n`-th such call steps with `lr · lrdⁿ`.
    pub lrd: f64,
}

impl Default for ClippedAdamOptions {
    fn default() -> Self {
        ClippedAdamOptions {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            clip_norm: 10.0,
            lrd: 1.0,
        }
    }
}

/// Pyro's `pyro.optim.ClippedAdam`, the optimizer of Pyro's VAE and many of its examples.
///
/// At a parameter's step `t` (1 for the first), on the `n`-th call that lists it:
///
/// ```text
/// lrₙ = lr · lrdⁿ                            (Pyro multiplies the group's lr on every call)
/// g ← clamp(g, −clip_norm, clip_norm) + weight_decay · x
/// m ← β₁ m + (1 − β₁) g
/// v ← β₂ v + (1 − β₂) g²
/// x ← x − lrₙ · √(1 − β₂ᵗ) / (1 − β₁ᵗ) · m / (√v + eps)
/// ```
///
/// The decay is counted per parameter, as Pyro gives each parameter its own optimizer
/// instance: a parameter first seen late starts at `lr`. Pyro's `step` multiplies the rate
/// by `lrd` before it skips parameters without a gradient, so a call that lists a parameter
/// without a gradient decays its rate without stepping it (`n` counts calls, `t` steps; the
/// count is saved as `state.<name>.lr_decays`). `lrdⁿ` is computed in closed form where Pyro
/// multiplies repeatedly (the last bits may differ). A scheduler's map applies to `lr`
/// before the decay, and [`learning_rate`](crate::Optimizer::learning_rate) reports the
/// rate before the decay. Unlike Pyro, the gradient itself is not modified (Pyro clamps
/// `p.grad` in place).
///
/// ```
/// use candle_core::{Device, Var};
/// use vi_optim::{ClippedAdam, ClippedAdamOptions, Optimizer};
///
/// let x = Var::new(&[100.0f64], &Device::Cpu)?;
/// let opts = ClippedAdamOptions { lr: 1.0, clip_norm: 1.0, ..Default::default() };
/// let mut opt = ClippedAdam::new([("x", x.clone())], opts)?;
/// // The first step of Adam moves each element by about lr, whatever the gradient's size.
/// opt.step(&x.as_tensor().sqr()?.sum_all()?.backward()?)?;
/// assert!((x.as_tensor().to_vec1::<f64>()?[0] - 99.0).abs() < 1e-6);
/// # Ok::<(), vi_optim::OptimError>(())
/// ```
pub struct ClippedAdam(crate::engine::Engine<ClippedAdamRule>);

optimizer_type!(ClippedAdam, ClippedAdamRule, ClippedAdamOptions);

pub(crate) struct ClippedAdamRule;

/// The scalars of one ClippedAdam step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClippedAdamCoeffs {
    clip: f64,
    weight_decay: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    /// `−lrₜ · √(1 − β₂ᵗ) / (1 − β₁ᵗ)`.
    neg_step: f64,
}

impl Rule for ClippedAdamRule {
    const NAME: &'static str = "ClippedAdam";
    type Options = ClippedAdamOptions;
    type Coeffs = ClippedAdamCoeffs;

    fn validate(o: &ClippedAdamOptions, param: Option<&str>) -> Result<()> {
        let check = Check::new(Self::NAME, param);
        let adam = AdamFields {
            lr: o.lr,
            betas: o.betas,
            eps: o.eps,
            weight_decay: o.weight_decay,
            amsgrad: false,
        };
        adam.validate(&check)?;
        let clip = o.clip_norm;
        check.holds(
            "clip_norm",
            clip,
            clip > 0.0 && !clip.is_nan(),
            "a value > 0",
        )?;
        check.positive("lrd", o.lrd)
    }

    fn lr(o: &ClippedAdamOptions) -> f64 {
        o.lr
    }

    fn buffers(_: &ClippedAdamOptions) -> &'static [&'static str] {
        &["exp_avg", "exp_avg_sq"]
    }

    const COUNTS_CALLS: bool = true;

    /// Pyro multiplies the rate by `lrd` on every call, before it looks at the gradient.
    fn decayed_lr(o: &ClippedAdamOptions, lr: f64, calls: u64) -> f64 {
        lr * o.lrd.powf(calls as f64)
    }

    fn coeffs(o: &ClippedAdamOptions, lr: f64, step: u64) -> ClippedAdamCoeffs {
        let t = step as f64;
        let (beta1, beta2) = o.betas;
        let bc1 = 1.0 - beta1.powf(t);
        let bc2 = 1.0 - beta2.powf(t);
        ClippedAdamCoeffs {
            clip: o.clip_norm,
            weight_decay: o.weight_decay,
            beta1,
            beta2,
            eps: o.eps,
            neg_step: -(lr * bc2.sqrt() / bc1),
        }
    }

    fn host<T: Real>(c: &ClippedAdamCoeffs, x: &mut [T], g: &[T], bufs: &mut [&mut [T]]) {
        let f = T::from_f64;
        let (hi, lo, wd) = (f(c.clip), f(-c.clip), f(c.weight_decay));
        let (b1, c1, b2, c2) = (f(c.beta1), f(1.0 - c.beta1), f(c.beta2), f(1.0 - c.beta2));
        let (eps, neg_step) = (f(c.eps), f(c.neg_step));
        let with_wd = c.weight_decay != 0.0;
        let [m, v] = bufs else {
            return;
        };
        for (((x, &g), m), v) in x.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            // torch.clamp: a NaN stays NaN.
            let g = if g < lo {
                lo
            } else if g > hi {
                hi
            } else {
                g
            };
            let g = if with_wd { g + wd * *x } else { g };
            *m = *m * b1 + c1 * g;
            *v = *v * b2 + c2 * g * g;
            *x += (neg_step * *m) / (v.sqrt() + eps);
        }
    }

    fn composed(
        c: &ClippedAdamCoeffs,
        x: &Tensor,
        g: &Tensor,
        bufs: &mut [Tensor],
    ) -> candle_core::Result<Tensor> {
        let g = g.clamp(-c.clip, c.clip)?;
        let g = if c.weight_decay != 0.0 {
            (g + x.affine(c.weight_decay, 0.0)?)?
        } else {
            g
        };
        let [m, v] = bufs else {
            candle_core::bail!("ClippedAdam: expected the exp_avg and exp_avg_sq buffers")
        };
        *m = (m.affine(c.beta1, 0.0)? + g.affine(1.0 - c.beta1, 0.0)?)?;
        *v = (v.affine(c.beta2, 0.0)? + g.sqr()?.affine(1.0 - c.beta2, 0.0)?)?;
        let denom = (v.sqrt()? + c.eps)?;
        x + (m.affine(c.neg_step, 0.0)? / denom)?
    }
}
