//! The half-normal distribution, and the folding shared with the half-Cauchy.

use std::f64::consts::{LN_2, PI};

use candle_core::Tensor;
use rand::RngCore;

use crate::broadcast::{broadcast_params, full_like};
use crate::constraint::Constraint;
use crate::distribution::{Distribution, validate_param, validate_value};
use crate::error::{Result, located};
use crate::family::{dist_common, expand_param, sample_by_rsample};
use crate::rng::standard_normal;

/// `HalfNormal(scale)`: the law of `|y|` for `y ~ Normal(0, scale)`, as
/// `torch.distributions.HalfNormal`. Density `2 · N(x; 0, scale)` on `x ≥ 0`; `log_prob` is
/// `−inf` for `x < 0` (when validation is off). Reparameterised: `scale · |ε|`, `ε ~ N(0, 1)`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Distribution, HalfNormal};
/// let d = HalfNormal::new(&Tensor::new(1.0f64, &Device::Cpu)?)?;
/// let lp = d.log_prob(&Tensor::new(0.0f64, &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp - (2.0 / std::f64::consts::PI).sqrt().ln()).abs() < 1e-12);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct HalfNormal {
    scale: Tensor,
    batch: Vec<usize>,
}

impl HalfNormal {
    /// Build from `scale` (> 0), the standard deviation of the normal that is folded.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{HalfNormal, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = HalfNormal::new(&Tensor::ones((2, 3), DType::F64, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2, 3][..], &[][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn new(scale: &Tensor) -> Result<Self> {
        located(|| {
            let ([scale], batch) = broadcast_params("HalfNormal", [("scale", scale, 0)])?;
            validate_param("HalfNormal", "scale", &scale, &Constraint::Positive)?;
            Ok(Self { scale, batch })
        })
    }

    /// The scale of the folded normal, shape `batch`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::HalfNormal;
    /// let cpu = Device::Cpu;
    /// let d = HalfNormal::new(&Tensor::ones((2, 3), DType::F64, &cpu)?)?;
    /// assert_eq!(d.scale().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn scale(&self) -> &Tensor {
        &self.scale
    }
}

/// The log density of `|y|` from the log density `base` of a law symmetric about 0, as torch's
/// HalfNormal/HalfCauchy: `base + ln 2` where `value ≥ 0`, `−inf` elsewhere (a `where`, so the
/// `−inf` branch sends no gradient to the parameters).
pub(crate) fn fold_log_prob(base: &Tensor, value: &Tensor) -> Result<Tensor> {
    let shape = base.shape();
    let inside = value.ge(0.0)?.broadcast_as(shape)?;
    let outside = full_like(f64::NEG_INFINITY, base)?;
    Ok(inside.where_cond(&base.affine(1.0, LN_2)?, &outside)?)
}

impl Distribution for HalfNormal {
    dist_common!("HalfNormal", scale);

    sample_by_rsample!();

    fn rsample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        let shape = self.extended_shape(sample_shape);
        let eps = standard_normal(&shape, self.dtype(), self.device(), rng)?.abs()?;
        Ok(eps.broadcast_mul(&self.scale)?)
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        validate_value(self, value)?;
        let zero = Tensor::zeros((), self.dtype(), self.device())?;
        fold_log_prob(
            &crate::ops::normal_log_prob(value, &zero, &self.scale)?,
            value,
        )
    }

    fn entropy(&self) -> Result<Tensor> {
        // ½ ln(π scale² / 2) + ½
        Ok(self.scale.log()?.affine(1.0, 0.5 * (PI / 2.0).ln() + 0.5)?)
    }

    fn mean(&self) -> Result<Tensor> {
        Ok(self.scale.affine((2.0 / PI).sqrt(), 0.0)?)
    }

    fn variance(&self) -> Result<Tensor> {
        Ok(self.scale.sqr()?.affine(1.0 - 2.0 / PI, 0.0)?)
    }

    fn support(&self) -> Constraint {
        Constraint::NonNegative
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            Ok(Box::new(HalfNormal {
                scale: expand_param(self.name(), &self.batch, &self.scale, batch_shape, 0)?,
                batch: batch_shape.to_vec(),
            }))
        })
    }
}
