//! Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight
//! decay, as torch's `torch.optim.SGD`.

use candle_core::Tensor;

use crate::error::{Check, OptimError, Result};
use crate::optimizer_type::optimizer_type;
use crate::rule::{Real, Rule};

/// Options of [`Sgd`], with torch's names and defaults.
///
/// | field | torch `SGD` | default |
/// |---|---|---|
/// | `lr` | `lr` | 1e-3 |
/// | `momentum` | `momentum` | 0 |
/// | `dampening` | `dampening` | 0 |
/// | `weight_decay` | `weight_decay` (L2: `g + wd·x`) | 0 |
/// | `nesterov` | `nesterov` | false |
///
/// Valid: `lr ≥ 0`, `momentum ≥ 0`, `weight_decay ≥ 0`, all finite; `nesterov` needs
/// `momentum > 0` and `dampening = 0` (as torch).
///
/// ```
/// let o = vi_optim::SgdOptions { lr: 0.1, momentum: 0.9, nesterov: true, ..Default::default() };
/// assert_eq!(o.dampening, 0.0);
/// ```
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SgdOptions {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor (0: plain gradient descent, no buffer).
    pub momentum: f64,
    /// The buffer takes `(1 − dampening) · g` after its first step.
    pub dampening: f64,
    /// L2 penalty: `weight_decay · x` is added to the gradient.
    pub weight_decay: f64,
    /// Nesterov momentum: step along `g + momentum · buffer`.
    pub nesterov: bool,
}

impl Default for SgdOptions {
    fn default() -> Self {
        SgdOptions {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

/// SGD, as torch's `torch.optim.SGD` (Pyro's `pyro.optim.SGD` wraps it).
///
/// ```text
/// g ← g + weight_decay · x
/// b ← g at the first step, else momentum · b + (1 − dampening) · g     (momentum > 0)
/// g ← g + momentum · b with nesterov, else b                          (momentum > 0)
/// x ← x − lr · g
/// ```
///
/// ```
/// use candle_core::{Device, Var};
/// use vi_optim::{Optimizer, Sgd, SgdOptions};
///
/// let x = Var::new(&[4.0f64], &Device::Cpu)?;
/// let mut opt = Sgd::new([("x", x.clone())], SgdOptions { lr: 0.1, momentum: 0.5, ..Default::default() })?;
/// for _ in 0..100 {
///     opt.step(&x.as_tensor().sqr()?.sum_all()?.backward()?)?;
/// }
/// assert!(x.as_tensor().to_vec1::<f64>()?[0].abs() < 1e-6);
/// # Ok::<(), vi_optim::OptimError>(())
/// ```
pub struct Sgd(crate::engine::Engine<SgdRule>);

optimizer_type!(Sgd, SgdRule, SgdOptions);

pub(crate) struct SgdRule;

/// The scalars of one SGD step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SgdCoeffs {
    neg_lr: f64,
    momentum: f64,
    /// `1 − dampening`.
    keep: f64,
    weight_decay: f64,
    nesterov: bool,
    /// The first step copies the gradient into the buffer (torch's `clone(grad)`).
    first: bool,
}

impl Rule for SgdRule {
    const NAME: &'static str = "SGD";
    type Options = SgdOptions;
    type Coeffs = SgdCoeffs;

    fn validate(o: &SgdOptions, param: Option<&str>) -> Result<()> {
        let name = Self::NAME;
        let check = Check::new(name, param);
        check.non_negative("lr", o.lr)?;
        check.non_negative("momentum", o.momentum)?;
        let d = o.dampening;
        check.holds("dampening", d, d.is_finite(), "a finite value")?;
        check.non_negative("weight_decay", o.weight_decay)?;
        if o.nesterov && (o.momentum <= 0.0 || o.dampening != 0.0) {
            return Err(OptimError::IncompatibleOptions {
                optimizer: name,
                message: format!(
                    "nesterov needs momentum > 0 and dampening = 0 (momentum {}, dampening {}){}",
                    o.momentum,
                    o.dampening,
                    param
                        .map(|p| format!(" for parameter `{p}`"))
                        .unwrap_or_default()
                ),
            });
        }
        Ok(())
    }

    fn lr(o: &SgdOptions) -> f64 {
        o.lr
    }

    fn buffers(o: &SgdOptions) -> &'static [&'static str] {
        if o.momentum != 0.0 {
            &["momentum_buffer"]
        } else {
            &[]
        }
    }

    fn coeffs(o: &SgdOptions, lr: f64, step: u64) -> SgdCoeffs {
        SgdCoeffs {
            neg_lr: -lr,
            momentum: o.momentum,
            keep: 1.0 - o.dampening,
            weight_decay: o.weight_decay,
            nesterov: o.nesterov,
            first: step == 1,
        }
    }

    fn host<T: Real>(c: &SgdCoeffs, x: &mut [T], g: &[T], bufs: &mut [&mut [T]]) {
        let f = T::from_f64;
        let (neg_lr, momentum, keep, wd) =
            (f(c.neg_lr), f(c.momentum), f(c.keep), f(c.weight_decay));
        let with_wd = c.weight_decay != 0.0;
        match bufs {
            [] => {
                for (x, &g) in x.iter_mut().zip(g) {
                    let g = if with_wd { g + wd * *x } else { g };
                    *x += neg_lr * g;
                }
            }
            [b] => {
                for ((x, &g), b) in x.iter_mut().zip(g).zip(b.iter_mut()) {
                    let g = if with_wd { g + wd * *x } else { g };
                    *b = if c.first { g } else { *b * momentum + keep * g };
                    let d = if c.nesterov { g + momentum * *b } else { *b };
                    *x += neg_lr * d;
                }
            }
            _ => {}
        }
    }

    fn composed(
        c: &SgdCoeffs,
        x: &Tensor,
        g: &Tensor,
        bufs: &mut [Tensor],
    ) -> candle_core::Result<Tensor> {
        let g = if c.weight_decay != 0.0 {
            (g + x.affine(c.weight_decay, 0.0)?)?
        } else {
            g.clone()
        };
        let d = match bufs {
            [] => g,
            [b] => {
                *b = if c.first {
                    g.clone()
                } else {
                    (b.affine(c.momentum, 0.0)? + g.affine(c.keep, 0.0)?)?
                };
                if c.nesterov {
                    (g + b.affine(c.momentum, 0.0)?)?
                } else {
                    b.clone()
                }
            }
            _ => candle_core::bail!("SGD: expected at most one buffer"),
        };
        x + d.affine(c.neg_lr, 0.0)?
    }
}
