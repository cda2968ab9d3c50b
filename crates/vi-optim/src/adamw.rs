//! AdamW (Loshchilov & Hutter, 2019) as torch's `torch.optim.AdamW`: Adam whose weight decay
//! shrinks the parameter directly instead of entering the gradient.

use crate::adam::{AdamRule, adam_variant};
use crate::optimizer_type::optimizer_type;

/// Options of [`AdamW`], with torch's names and defaults (note `weight_decay` = 0.01).
///
/// | field | torch `AdamW` | default |
/// |---|---|---|
/// | `lr` | `lr` | 1e-3 |
/// | `betas` | `betas` | (0.9, 0.999) |
/// | `eps` | `eps` | 1e-8 |
/// | `weight_decay` | `weight_decay` (decoupled: `x ← x(1 − lr·wd)`) | 1e-2 |
/// | `amsgrad` | `amsgrad` | false |
///
/// Valid: `lr ≥ 0`, each beta in `[0, 1)`, `eps > 0`, `weight_decay ≥ 0`, all finite.
///
/// ```
/// assert_eq!(vi_optim::AdamWOptions::default().weight_decay, 0.01);
/// ```
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AdamWOptions {
    /// Learning rate.
    pub lr: f64,
    /// Decay rates of the first and second moment averages.
    pub betas: (f64, f64),
    /// Added to the denominator, after the bias correction.
    pub eps: f64,
    /// Decoupled decay: each step first multiplies the parameter by `1 − lr · weight_decay`.
    pub weight_decay: f64,
    /// Normalise by the running maximum of the second moment (AMSGrad).
    pub amsgrad: bool,
}

impl Default for AdamWOptions {
    fn default() -> Self {
        AdamWOptions {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
            amsgrad: false,
        }
    }
}

/// AdamW, as torch's `torch.optim.AdamW` (Pyro's `pyro.optim.AdamW` wraps it).
///
/// Each step first decays the parameter, `x ← x · (1 − lr · weight_decay)`, then takes
/// [`Adam`](crate::Adam)'s step without L2 term, with the decayed `x`. The learning rate in
/// the decay is the scheduled one, as in torch.
///
/// ```
/// use candle_core::{Device, Var};
/// use vi_optim::{AdamW, AdamWOptions, Optimizer};
///
/// // With a zero gradient only the decay acts: x ← x (1 − 0.1 · 0.5).
/// let x = Var::new(&[2.0f64], &Device::Cpu)?;
/// let mut opt = AdamW::new([("x", x.clone())], AdamWOptions { lr: 0.1, weight_decay: 0.5, ..Default::default() })?;
/// let mut grads = candle_core::backprop::GradStore::default();
/// grads.insert(x.as_tensor(), x.as_tensor().zeros_like()?);
/// opt.step(&grads)?;
/// assert!((x.as_tensor().to_vec1::<f64>()?[0] - 1.9).abs() < 1e-12);
/// # Ok::<(), vi_optim::OptimError>(())
/// ```
pub struct AdamW(crate::engine::Engine<AdamRule<AdamWOptions>>);

optimizer_type!(AdamW, AdamRule<AdamWOptions>, AdamWOptions);

adam_variant!(AdamWOptions, "AdamW", decoupled: true);
