//! The gamma distribution, the reparameterised standard-gamma sampler that Beta, Dirichlet
//! and StudentT share, and small helpers of the Gamma-based families.

use candle_core::Tensor;
use rand::RngCore;
use rand_distr::Distribution as _;

use crate::broadcast::broadcast_params;
use crate::constraint::Constraint;
use crate::distribution::{Distribution, validate_param, validate_value};
use crate::error::{Result, located};
use crate::family::{dist_common, expand_param};
use crate::finfo::{max, tiny};
use crate::ops::{digamma, lgamma, reparameterize_standard_gamma, xlogy_torch_grad as xlogy};
use crate::rng::{draw_per_element, to_host};

/// Clamp the value of `t` to `[lo, hi]` while keeping its gradient (torch clamps a sample's
/// detached storage in place): `t + (clamp(sg(t)) − sg(t))`. Where nothing is clamped the
/// correction is exactly 0; where it is, `t` and the bound share a binade, so the sum is the
/// bound exactly.
pub(crate) fn clamp_keep_grad(t: &Tensor, lo: f64, hi: f64) -> Result<Tensor> {
    let d = t.detach();
    let shift = (d.clamp(lo, hi)? - &d)?;
    Ok((t + shift)?)
}

/// Draws `x ~ Gamma(α, 1)` on the host (rand_distr), one per element of
/// `sample_shape + alpha.shape`, clamped to `[tiny, largest]` of the dtype (so `ln x` and the
/// gradient stay finite even where a tiny `α` underflows); no gradient. A non-positive or NaN
/// `α` gives NaN.
pub(crate) fn draw_standard_gamma(
    alpha: &Tensor,
    sample_shape: &[usize],
    rng: &mut dyn RngCore,
) -> Result<Tensor> {
    let dtype = alpha.dtype();
    let (lo, hi) = (tiny(dtype), max(dtype));
    let params = to_host(alpha)?;
    let samplers: Vec<Option<rand_distr::Gamma<f64>>> = params
        .iter()
        .map(|&a| rand_distr::Gamma::new(a, 1.0).ok())
        .collect();
    draw_per_element(
        &samplers,
        sample_shape,
        alpha.dims(),
        dtype,
        alpha.device(),
        rng,
        |s, r| s.as_ref().map_or(f64::NAN, |g| g.sample(r).clamp(lo, hi)),
    )
}

/// Reparameterised draws `x ~ Gamma(α, 1)` of shape `sample_shape + alpha.shape`,
/// differentiable in `alpha` (torch's `_standard_gamma`).
///
/// The draws are made on the host from `rng` (rand_distr's Marsaglia–Tsang sampler), so the
/// same seed gives the same numbers on every device; they are clamped below by the dtype's
/// smallest normal number, as torch does. The gradient is the implicit reparameterisation
/// gradient [`ops::standard_gamma_grad`](crate::ops::standard_gamma_grad), attached by
/// [`ops::reparameterize_standard_gamma`](crate::ops::reparameterize_standard_gamma).
///
/// ```
/// use candle_core::{Device, Var};
/// use rand::SeedableRng;
/// let alpha = Var::new(&[0.5f64, 4.0], &Device::Cpu)?;
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let x = vi_dist::standard_gamma(alpha.as_tensor(), &[1000], &mut rng)?;
/// assert_eq!(x.dims(), &[1000, 2]);
/// let grads = x.sum_all()?.backward()?;
/// // E[dx/dα] = dE[x]/dα = 1 per draw.
/// let g = grads.get(alpha.as_tensor()).unwrap().to_vec1::<f64>()?;
/// assert!((g[1] / 1000.0 - 1.0).abs() < 0.1);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn standard_gamma(
    alpha: &Tensor,
    sample_shape: &[usize],
    rng: &mut dyn RngCore,
) -> Result<Tensor> {
    let x = draw_standard_gamma(alpha, sample_shape, rng)?;
    reparameterize_standard_gamma(alpha, &x)
}

/// `Gamma(concentration, rate)`: density `rate^α x^(α−1) e^(−rate·x) / Γ(α)` on `x ≥ 0`
/// (α = concentration), as `torch.distributions.Gamma`. Reparameterised: a host standard
/// gamma draw made differentiable in α by the implicit gradient
/// ([`standard_gamma`]), divided by `rate`, clamped below by the dtype's smallest normal
/// number.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Distribution, Gamma};
/// let d = Gamma::new(&Tensor::new(2.0f64, &Device::Cpu)?, &Tensor::new(3.0f64, &Device::Cpu)?)?;
/// // log(9 · 0.5 · e^{-1.5})
/// let lp = d.log_prob(&Tensor::new(0.5f64, &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp - (4.5f64.ln() - 1.5)).abs() < 1e-12);
/// assert_eq!(d.mean()?.to_scalar::<f64>()?, 2.0 / 3.0);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Gamma {
    concentration: Tensor,
    rate: Tensor,
    batch: Vec<usize>,
}

impl Gamma {
    /// Build from `concentration` (shape α > 0) and `rate` (> 0); they broadcast.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Gamma, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = Gamma::new(&Tensor::ones((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2, 3][..], &[][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn new(concentration: &Tensor, rate: &Tensor) -> Result<Self> {
        located(|| {
            let ([concentration, rate], batch) = broadcast_params(
                "Gamma",
                [("concentration", concentration, 0), ("rate", rate, 0)],
            )?;
            validate_param(
                "Gamma",
                "concentration",
                &concentration,
                &Constraint::Positive,
            )?;
            validate_param("Gamma", "rate", &rate, &Constraint::Positive)?;
            Ok(Self {
                concentration,
                rate,
                batch,
            })
        })
    }

    /// The shape parameter α, broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Gamma;
    /// let cpu = Device::Cpu;
    /// let d = Gamma::new(&Tensor::ones((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.concentration().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn concentration(&self) -> &Tensor {
        &self.concentration
    }

    /// The rate (inverse scale), broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Gamma;
    /// let cpu = Device::Cpu;
    /// let d = Gamma::new(&Tensor::ones((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.rate().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn rate(&self) -> &Tensor {
        &self.rate
    }

    fn finish(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = self.dtype();
        clamp_keep_grad(&x.broadcast_div(&self.rate)?, tiny(dtype), max(dtype))
    }
}

impl Distribution for Gamma {
    dist_common!("Gamma", concentration);

    fn sample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        let x = draw_standard_gamma(&self.concentration, sample_shape, rng)?;
        Ok(self.finish(&x)?.detach())
    }

    fn has_rsample(&self) -> bool {
        true
    }

    fn rsample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        let x = standard_gamma(&self.concentration, sample_shape, rng)?;
        self.finish(&x)
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        validate_value(self, value)?;
        let c = &self.concentration;
        // α ln(rate) − ln Γ(α) + (α − 1) ln x − rate · x
        let norm = ((c * self.rate.log()?)? - lgamma(c)?)?;
        let lp = (xlogy(&c.affine(1.0, -1.0)?, value)? - value.broadcast_mul(&self.rate)?)?;
        Ok(lp.broadcast_add(&norm)?)
    }

    fn entropy(&self) -> Result<Tensor> {
        let c = &self.concentration;
        // α − ln(rate) + ln Γ(α) + (1 − α) ψ(α)
        let h = ((c - self.rate.log()?)? + lgamma(c)?)?;
        Ok((h + (c.affine(-1.0, 1.0)? * digamma(c)?)?)?)
    }

    fn mean(&self) -> Result<Tensor> {
        Ok((&self.concentration / &self.rate)?)
    }

    fn variance(&self) -> Result<Tensor> {
        Ok((&self.concentration / self.rate.sqr()?)?)
    }

    fn support(&self) -> Constraint {
        Constraint::NonNegative
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            let e = |t: &Tensor| expand_param(self.name(), &self.batch, t, batch_shape, 0);
            Ok(Box::new(Gamma {
                concentration: e(&self.concentration)?,
                rate: e(&self.rate)?,
                batch: batch_shape.to_vec(),
            }))
        })
    }
}
