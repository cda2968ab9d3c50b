//! The Dirichlet distribution.

use candle_core::Tensor;
use rand::RngCore;

use crate::broadcast::broadcast_params;
use crate::constraint::Constraint;
use crate::distribution::{Distribution, validate_param, validate_value};
use crate::error::{Result, located};
use crate::family::{dist_common, expand_param};
use crate::finfo::{below_one, tiny};
use crate::gamma::{clamp_keep_grad, draw_standard_gamma, standard_gamma};
use crate::ops::{digamma, lgamma, xlogy_torch_grad as xlogy};

/// Draws from `Dirichlet(concentration)` (last dim the categories) of shape
/// `sample_shape + concentration.shape`: normalised standard gamma draws, clamped to
/// `[tiny, largest below 1]` of the dtype as torch does. With `grad`, differentiable in the
/// concentration through the gammas' implicit gradients and the normalisation.
pub(crate) fn dirichlet_draw(
    concentration: &Tensor,
    sample_shape: &[usize],
    rng: &mut dyn RngCore,
    grad: bool,
) -> Result<Tensor> {
    let g = if grad {
        standard_gamma(concentration, sample_shape, rng)?
    } else {
        draw_standard_gamma(concentration, sample_shape, rng)?
    };
    let last = g.rank().saturating_sub(1);
    let x = g.broadcast_div(&g.sum_keepdim(last)?)?;
    let dtype = x.dtype();
    clamp_keep_grad(&x, tiny(dtype), below_one(dtype))
}

/// `Dirichlet(concentration)` on the probability simplex of the last dim (size `k`): density
/// `Γ(Σα) / Π Γ(αᵢ) · Π xᵢ^(αᵢ−1)`, as `torch.distributions.Dirichlet`. Event shape `[k]`.
/// Reparameterised: normalised standard gamma draws, each differentiable in its `αᵢ` by the
/// implicit gradient.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Dirichlet, Distribution};
/// let d = Dirichlet::new(&Tensor::new(&[1.0f64, 1.0, 1.0], &Device::Cpu)?)?;
/// assert_eq!(d.event_shape(), &[3]);
/// // uniform on the 2-simplex: density Γ(3) = 2
/// let lp = d.log_prob(&Tensor::new(&[0.2f64, 0.3, 0.5], &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp - 2f64.ln()).abs() < 1e-12);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Dirichlet {
    concentration: Tensor,
    batch: Vec<usize>,
    event: Vec<usize>,
}

impl Dirichlet {
    /// Build from `concentration` (> 0) of shape `batch + [k]`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Dirichlet, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = Dirichlet::new(&Tensor::ones((2, 3), DType::F64, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2][..], &[3][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn new(concentration: &Tensor) -> Result<Self> {
        located(|| {
            let ([concentration], batch) =
                broadcast_params("Dirichlet", [("concentration", concentration, 1)])?;
            validate_param(
                "Dirichlet",
                "concentration",
                &concentration,
                &Constraint::Positive,
            )?;
            let event = vec![concentration.dims()[concentration.rank() - 1]];
            Ok(Self {
                concentration,
                batch,
                event,
            })
        })
    }

    /// The concentration, shape `batch + [k]`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Dirichlet;
    /// let cpu = Device::Cpu;
    /// let d = Dirichlet::new(&Tensor::ones((2, 3), DType::F64, &cpu)?)?;
    /// assert_eq!(d.concentration().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn concentration(&self) -> &Tensor {
        &self.concentration
    }

    fn last(&self) -> usize {
        self.concentration.rank() - 1
    }

    /// `Σα`, keeping the last dim.
    fn total(&self) -> Result<Tensor> {
        Ok(self.concentration.sum_keepdim(self.last())?)
    }
}

impl Distribution for Dirichlet {
    dist_common!("Dirichlet", concentration, event);

    fn sample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        Ok(dirichlet_draw(&self.concentration, sample_shape, rng, false)?.detach())
    }

    fn has_rsample(&self) -> bool {
        true
    }

    fn rsample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        dirichlet_draw(&self.concentration, sample_shape, rng, true)
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        validate_value(self, value)?;
        let c = &self.concentration;
        let last = self.last();
        // Σ (αᵢ − 1) ln xᵢ + ln Γ(Σα) − Σ ln Γ(αᵢ)
        let norm = (lgamma(&c.sum(last)?)? - lgamma(c)?.sum(last)?)?;
        let terms = xlogy(&c.affine(1.0, -1.0)?, value)?;
        let lp = terms.sum(terms.rank() - 1)?;
        Ok(lp.broadcast_add(&norm)?)
    }

    fn entropy(&self) -> Result<Tensor> {
        let c = &self.concentration;
        let last = self.last();
        let k = self.event[0] as f64;
        let a0 = c.sum(last)?;
        // Σ ln Γ(αᵢ) − ln Γ(α₀) − (k − α₀) ψ(α₀) − Σ (αᵢ − 1) ψ(αᵢ)
        let h = (lgamma(c)?.sum(last)? - lgamma(&a0)?)?;
        let h = (h - (a0.affine(-1.0, k)? * digamma(&a0)?)?)?;
        Ok((h - (c.affine(1.0, -1.0)? * digamma(c)?)?.sum(last)?)?)
    }

    fn mean(&self) -> Result<Tensor> {
        Ok(self.concentration.broadcast_div(&self.total()?)?)
    }

    fn variance(&self) -> Result<Tensor> {
        // αᵢ (α₀ − αᵢ) / (α₀² (α₀ + 1))
        let c = &self.concentration;
        let a0 = self.total()?;
        let num = c.broadcast_mul(&a0)?.sub(&c.sqr()?)?;
        let den = (a0.sqr()? * a0.affine(1.0, 1.0)?)?;
        Ok(num.broadcast_div(&den)?)
    }

    fn support(&self) -> Constraint {
        Constraint::Simplex
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            let c = expand_param(
                self.name(),
                &self.batch,
                &self.concentration,
                batch_shape,
                1,
            )?;
            Ok(Box::new(Dirichlet {
                concentration: c,
                batch: batch_shape.to_vec(),
                event: self.event.clone(),
            }))
        })
    }
}
