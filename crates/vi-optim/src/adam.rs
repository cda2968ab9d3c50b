//! Adam (Kingma & Ba, 2015) as torch's `torch.optim.Adam`, with amsgrad (Reddi et al., 2018)
//! and L2 weight decay added to the gradient. The update kernel here is shared with
//! [`AdamW`](crate::AdamW), which differs only in how it decays the weights.

use std::marker::PhantomData;

use candle_core::{DType, Tensor};

use crate::error::{Check, Result};
use crate::optimizer_type::optimizer_type;
use crate::rule::{Real, Rule};

/// Options of [`Adam`], with torch's names and defaults.
///
/// | field | torch `Adam` | default |
/// |---|---|---|
/// | `lr` | `lr` | 1e-3 |
/// | `betas` | `betas` | (0.9, 0.999) |
/// | `eps` | `eps` | 1e-8 |
/// | `weight_decay` | `weight_decay` (L2: `g + wd·x`) | 0 |
/// | `amsgrad` | `amsgrad` | false |
///
/// Valid: `lr ≥ 0`, each beta in `[0, 1)`, `eps > 0`, `weight_decay ≥ 0`, all finite.
///
/// ```
/// let o = vi_optim::AdamOptions { lr: 0.01, amsgrad: true, ..Default::default() };
/// assert_eq!(o.betas, (0.9, 0.999));
/// ```
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AdamOptions {
    /// Learning rate.
    pub lr: f64,
    /// Decay rates of the first and second moment averages.
    pub betas: (f64, f64),
    /// Added to the denominator, after the bias correction.
    pub eps: f64,
    /// L2 penalty: `weight_decay · x` is added to the gradient.
    pub weight_decay: f64,
    /// Normalise by the running maximum of the second moment (AMSGrad).
    pub amsgrad: bool,
}

impl Default for AdamOptions {
    fn default() -> Self {
        AdamOptions {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
        }
    }
}

/// Adam, as torch's `torch.optim.Adam` (and Pyro's `pyro.optim.Adam`, which wraps it).
///
/// For each parameter `x` with gradient `g`, at its step `t`:
///
/// ```text
/// g ← g + weight_decay · x
/// m ← m + (1 − β₁)(g − m)                  (torch's lerp)
/// v ← β₂ v + (1 − β₂) g²
/// v̂ ← max(v̂, v) with amsgrad, else v
/// x ← x − lr / (1 − β₁ᵗ) · m / (√v̂ / √(1 − β₂ᵗ) + eps)
/// ```
///
/// Trajectories match torch's to float64 rounding (`reference/optim.json`). Contiguous
/// f32/f64 CPU parameters are updated in place by one loop; other devices and dtypes use
/// composed candle ops.
///
/// ```
/// use candle_core::{Device, Var};
/// use vi_optim::{Adam, AdamOptions, Optimizer};
///
/// let x = Var::new(&[3.0f32, -1.0], &Device::Cpu)?;
/// let mut opt = Adam::new([("x", x.clone())], AdamOptions { lr: 0.1, ..Default::default() })?;
/// for _ in 0..200 {
///     let loss = (x.as_tensor() - 1.0)?.sqr()?.sum_all()?;
///     opt.step(&loss.backward()?)?;
/// }
/// let x = x.as_tensor().to_vec1::<f32>()?;
/// assert!((x[0] - 1.0).abs() < 1e-2 && (x[1] - 1.0).abs() < 1e-2);
/// # Ok::<(), vi_optim::OptimError>(())
/// ```
pub struct Adam(crate::engine::Engine<AdamRule<AdamOptions>>);

optimizer_type!(Adam, AdamRule<AdamOptions>, AdamOptions);

/// The options of [`Adam`] and [`AdamW`](crate::AdamW), which have the same fields and
/// differ in where the weight decay goes.
pub(crate) trait AdamVariant: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// The optimizer's name, as torch spells it.
    const NAME: &'static str;
    /// Decoupled weight decay (AdamW's `x ← x(1 − lr·wd)` before the step) rather than an
    /// L2 term added to the gradient (Adam's).
    const DECOUPLED: bool;
    fn fields(&self) -> AdamFields;
}

/// [`AdamVariant`] for an options struct with Adam's fields.
macro_rules! adam_variant {
    ($opts:ty, $name:literal, decoupled: $decoupled:literal) => {
        impl $crate::adam::AdamVariant for $opts {
            const NAME: &'static str = $name;
            const DECOUPLED: bool = $decoupled;

            fn fields(&self) -> $crate::adam::AdamFields {
                $crate::adam::AdamFields {
                    lr: self.lr,
                    betas: self.betas,
                    eps: self.eps,
                    weight_decay: self.weight_decay,
                    amsgrad: self.amsgrad,
                }
            }
        }
    };
}
pub(crate) use adam_variant;

/// The fields of Adam's options, and those ClippedAdam shares with them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdamFields {
    pub(crate) lr: f64,
    pub(crate) betas: (f64, f64),
    pub(crate) eps: f64,
    pub(crate) weight_decay: f64,
    pub(crate) amsgrad: bool,
}

impl AdamFields {
    /// torch's checks for Adam/AdamW, plus `eps > 0`.
    pub(crate) fn validate(&self, check: &Check) -> Result<()> {
        check.non_negative("lr", self.lr)?;
        check.below_one("betas.0", self.betas.0)?;
        check.below_one("betas.1", self.betas.1)?;
        check.positive("eps", self.eps)?;
        check.non_negative("weight_decay", self.weight_decay)
    }
}

adam_variant!(AdamOptions, "Adam", decoupled: false);

/// The update rule of Adam and AdamW, over their options.
pub(crate) struct AdamRule<O>(PhantomData<O>);

/// The scalars of one Adam/AdamW step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdamCoeffs {
    /// Multiplies `x` before the update (AdamW's `1 − lr·wd`; 1 for Adam).
    decay: f64,
    /// L2 weight decay added to the gradient (Adam; 0 for AdamW).
    l2: f64,
    /// `1 − β₁`, the lerp weight of the first moment.
    w1: f64,
    beta2: f64,
    bc2_sqrt: f64,
    eps: f64,
    /// `−lr / (1 − β₁ᵗ)`.
    neg_step: f64,
    amsgrad: bool,
}

impl AdamCoeffs {
    fn new(
        lr: f64,
        (beta1, beta2): (f64, f64),
        eps: f64,
        step: u64,
        amsgrad: bool,
        l2: f64,
        decay: f64,
    ) -> Self {
        // Python's `beta ** step` with a float step: pow.
        let t = step as f64;
        let bc1 = 1.0 - beta1.powf(t);
        let bc2 = 1.0 - beta2.powf(t);
        AdamCoeffs {
            decay,
            l2,
            w1: 1.0 - beta1,
            beta2,
            bc2_sqrt: bc2.sqrt(),
            eps,
            neg_step: -(lr / bc1),
            amsgrad,
        }
    }
}

impl<O: AdamVariant> Rule for AdamRule<O> {
    const NAME: &'static str = O::NAME;
    type Options = O;
    type Coeffs = AdamCoeffs;

    fn validate(o: &O, param: Option<&str>) -> Result<()> {
        o.fields().validate(&Check::new(O::NAME, param))
    }

    fn lr(o: &O) -> f64 {
        o.fields().lr
    }

    fn buffers(o: &O) -> &'static [&'static str] {
        if o.fields().amsgrad {
            &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
        } else {
            &["exp_avg", "exp_avg_sq"]
        }
    }

    fn coeffs(o: &O, lr: f64, step: u64) -> AdamCoeffs {
        let f = o.fields();
        // Adam adds `wd·x` to the gradient; AdamW multiplies `x` by `1 − lr·wd` first.
        let (l2, decay) = if O::DECOUPLED {
            (0.0, 1.0 - lr * f.weight_decay)
        } else {
            (f.weight_decay, 1.0)
        };
        AdamCoeffs::new(lr, f.betas, f.eps, step, f.amsgrad, l2, decay)
    }

    fn host<T: Real>(c: &AdamCoeffs, x: &mut [T], g: &[T], bufs: &mut [&mut [T]]) {
        let f = T::from_f64;
        // torch's lerp takes the weight in the tensor's precision and forms `1 − w` there.
        let (decay, l2, w1) = (f(c.decay), f(c.l2), f(c.w1));
        let one_minus_w1 = f(1.0) - w1;
        let (b2, c2, bc2_sqrt, eps, neg_step) = (
            f(c.beta2),
            f(1.0 - c.beta2),
            f(c.bc2_sqrt),
            f(c.eps),
            f(c.neg_step),
        );
        let low = c.w1 < 0.5;
        let (decoupled, with_l2) = (c.decay != 1.0, c.l2 != 0.0);
        // The moments and the parameter's decayed value and gradient, for one element.
        let moments = |x: T, g: T, m: &mut T, v: &mut T| {
            let x = if decoupled { x * decay } else { x };
            let g = if with_l2 { g + l2 * x } else { g };
            *m = lerp(*m, g, w1, one_minus_w1, low);
            *v = *v * b2 + c2 * g * g;
            x
        };
        match bufs {
            [m, v] => {
                for (((x, &g), m), v) in x.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    let x0 = moments(*x, g, m, v);
                    *x = x0 + (neg_step * *m) / (v.sqrt() / bc2_sqrt + eps);
                }
            }
            [m, v, vmax] => {
                let iter = x.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut());
                for ((((x, &g), m), v), u) in iter.zip(vmax.iter_mut()) {
                    let x0 = moments(*x, g, m, v);
                    // torch.maximum: a NaN in `v` propagates.
                    *u = if *u >= *v { *u } else { *v };
                    *x = x0 + (neg_step * *m) / (u.sqrt() / bc2_sqrt + eps);
                }
            }
            _ => {}
        }
    }

    fn composed(
        c: &AdamCoeffs,
        x: &Tensor,
        g: &Tensor,
        bufs: &mut [Tensor],
    ) -> candle_core::Result<Tensor> {
        let x = if c.decay != 1.0 {
            x.affine(c.decay, 0.0)?
        } else {
            x.clone()
        };
        let g = if c.l2 != 0.0 {
            (g + x.affine(c.l2, 0.0)?)?
        } else {
            g.clone()
        };
        let (m, v) = match bufs {
            [m, v, ..] => (&*m, &*v),
            _ => candle_core::bail!("Adam: expected the exp_avg and exp_avg_sq buffers"),
        };
        let m = if c.w1 < 0.5 {
            (m + (&g - m)?.affine(c.w1, 0.0)?)?
        } else {
            // `1 − w` formed in the tensor's precision, as torch's lerp (f32 for half types).
            let w = match g.dtype() {
                DType::F64 => c.w1,
                _ => c.w1 as f32 as f64,
            };
            (&g - (&g - m)?.affine(1.0 - w, 0.0)?)?
        };
        let v = (v.affine(c.beta2, 0.0)? + g.sqr()?.affine(1.0 - c.beta2, 0.0)?)?;
        let v_hat = match bufs {
            [_, _, vmax] if c.amsgrad => {
                *vmax = vmax.maximum(&v)?;
                vmax.clone()
            }
            _ => v.clone(),
        };
        let denom = v_hat.sqrt()?.affine(1.0 / c.bc2_sqrt, c.eps)?;
        let x = (x + (m.affine(c.neg_step, 0.0)? / denom)?)?;
        if let [m0, v0, ..] = bufs {
            (*m0, *v0) = (m, v);
        }
        Ok(x)
    }
}

/// torch's `lerp(a, b, w)`: the form that is exact at whichever end `w` is nearer.
#[inline(always)]
fn lerp<T: Real>(a: T, b: T, w: T, one_minus_w: T, low: bool) -> T {
    if low {
        a + w * (b - a)
    } else {
        b - (b - a) * one_minus_w
    }
}
