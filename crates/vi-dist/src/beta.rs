//! The beta distribution.

use candle_core::Tensor;
use rand::RngCore;

use crate::broadcast::broadcast_params;
use crate::constraint::Constraint;
use crate::dirichlet::dirichlet_draw;
use crate::distribution::{Distribution, validate_param, validate_value};
use crate::error::{Result, located};
use crate::family::{dist_common, expand_param, sample_by_rsample};
use crate::ops::{digamma, lgamma, xlogy_torch_grad as xlogy};

/// `Beta(concentration1, concentration0)` on `[0, 1]`: density
/// `x^(α−1) (1 − x)^(β−1) / B(α, β)` with α = concentration1, β = concentration0, as
/// `torch.distributions.Beta`. Reparameterised: `g₁ / (g₁ + g₀)` with `gᵢ ~ Gamma(αᵢ, 1)`
/// drawn on the host and differentiable by the implicit gradient, clamped to the open
/// interval `(0, 1)` of the dtype.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Beta, Distribution};
/// let d = Beta::new(&Tensor::new(2.0f64, &Device::Cpu)?, &Tensor::new(1.0f64, &Device::Cpu)?)?;
/// // density 2x
/// let lp = d.log_prob(&Tensor::new(0.25f64, &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp - 0.5f64.ln()).abs() < 1e-12);
/// assert!((d.mean()?.to_scalar::<f64>()? - 2.0 / 3.0).abs() < 1e-15);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Beta {
    concentration1: Tensor,
    concentration0: Tensor,
    batch: Vec<usize>,
}

impl Beta {
    /// Build from `concentration1` (α > 0, the exponent of `x`) and `concentration0`
    /// (β > 0, the exponent of `1 − x`); they broadcast.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Beta, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = Beta::new(&Tensor::ones((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2, 3][..], &[][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn new(concentration1: &Tensor, concentration0: &Tensor) -> Result<Self> {
        located(|| {
            let ([concentration1, concentration0], batch) = broadcast_params(
                "Beta",
                [
                    ("concentration1", concentration1, 0),
                    ("concentration0", concentration0, 0),
                ],
            )?;
            validate_param(
                "Beta",
                "concentration1",
                &concentration1,
                &Constraint::Positive,
            )?;
            validate_param(
                "Beta",
                "concentration0",
                &concentration0,
                &Constraint::Positive,
            )?;
            Ok(Self {
                concentration1,
                concentration0,
                batch,
            })
        })
    }

    /// α, the exponent of `x`, broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Beta;
    /// let cpu = Device::Cpu;
    /// let d = Beta::new(&Tensor::ones((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.concentration1().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn concentration1(&self) -> &Tensor {
        &self.concentration1
    }

    /// β, the exponent of `1 − x`, broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Beta;
    /// let cpu = Device::Cpu;
    /// let d = Beta::new(&Tensor::ones((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.concentration0().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn concentration0(&self) -> &Tensor {
        &self.concentration0
    }

    fn total(&self) -> Result<Tensor> {
        Ok((&self.concentration1 + &self.concentration0)?)
    }

    /// A Dirichlet draw over `[α, β]` (last dim), keeping the first coordinate.
    fn draw(&self, sample_shape: &[usize], rng: &mut dyn RngCore, grad: bool) -> Result<Tensor> {
        let r = self.batch.len();
        let stacked = Tensor::stack(&[&self.concentration1, &self.concentration0], r)?;
        let x = dirichlet_draw(&stacked, sample_shape, rng, grad)?;
        let last = x.rank() - 1;
        Ok(x.narrow(last, 0, 1)?.squeeze(last)?)
    }
}

impl Distribution for Beta {
    dist_common!("Beta", concentration1);

    sample_by_rsample!(draw);

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        validate_value(self, value)?;
        let (a, b) = (&self.concentration1, &self.concentration0);
        // (α − 1) ln x + (β − 1) ln(1 − x) + ln Γ(α + β) − ln Γ(α) − ln Γ(β)
        let norm = ((lgamma(&self.total()?)? - lgamma(a)?)? - lgamma(b)?)?;
        let lp = (xlogy(&a.affine(1.0, -1.0)?, value)?
            + xlogy(&b.affine(1.0, -1.0)?, &value.affine(-1.0, 1.0)?)?)?;
        Ok(lp.broadcast_add(&norm)?)
    }

    fn entropy(&self) -> Result<Tensor> {
        let (a, b) = (&self.concentration1, &self.concentration0);
        let t = self.total()?;
        // ln B(α, β) − (α − 1) ψ(α) − (β − 1) ψ(β) + (α + β − 2) ψ(α + β)
        let h = ((lgamma(a)? + lgamma(b)?)? - lgamma(&t)?)?;
        let h = (h - (a.affine(1.0, -1.0)? * digamma(a)?)?)?;
        let h = (h - (b.affine(1.0, -1.0)? * digamma(b)?)?)?;
        Ok((h + (t.affine(1.0, -2.0)? * digamma(&t)?)?)?)
    }

    fn mean(&self) -> Result<Tensor> {
        Ok((&self.concentration1 / self.total()?)?)
    }

    fn variance(&self) -> Result<Tensor> {
        // αβ / ((α + β)² (α + β + 1))
        let t = self.total()?;
        let num = (&self.concentration1 * &self.concentration0)?;
        Ok((num / (t.sqr()? * t.affine(1.0, 1.0)?)?)?)
    }

    fn support(&self) -> Constraint {
        Constraint::UnitInterval
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            let e = |t: &Tensor| expand_param(self.name(), &self.batch, t, batch_shape, 0);
            Ok(Box::new(Beta {
                concentration1: e(&self.concentration1)?,
                concentration0: e(&self.concentration0)?,
                batch: batch_shape.to_vec(),
            }))
        })
    }
}
