//! The half-Cauchy distribution.

use std::f64::consts::PI;

use candle_core::Tensor;
use rand::RngCore;

use crate::broadcast::{broadcast_params, full};
use crate::cauchy::{cauchy_log_prob, standard_cauchy};
use crate::constraint::Constraint;
use crate::distribution::{Distribution, validate_param, validate_value};
use crate::error::{Result, located};
use crate::family::{dist_common, expand_param, sample_by_rsample};
use crate::halfnormal::fold_log_prob;

/// `HalfCauchy(scale)`: the law of `|y|` for `y ~ Cauchy(0, scale)`, as
/// `torch.distributions.HalfCauchy`. Density `2 / (π scale (1 + (x / scale)²))` on `x ≥ 0`;
/// `log_prob` is `−inf` for `x < 0` (when validation is off). Mean and variance are `inf`, as
/// torch. Reparameterised: `scale · |tan(π (u − ½))|`, `u ~ U(0, 1)`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Distribution, HalfCauchy};
/// let d = HalfCauchy::new(&Tensor::new(1.0f64, &Device::Cpu)?)?;
/// let lp = d.log_prob(&Tensor::new(0.0f64, &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp - (2.0 / std::f64::consts::PI).ln()).abs() < 1e-12);
/// assert_eq!(d.mean()?.to_scalar::<f64>()?, f64::INFINITY);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct HalfCauchy {
    scale: Tensor,
    batch: Vec<usize>,
}

impl HalfCauchy {
    /// Build from `scale` (> 0), the scale of the Cauchy that is folded.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{HalfCauchy, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = HalfCauchy::new(&Tensor::ones((2, 3), DType::F64, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2, 3][..], &[][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn new(scale: &Tensor) -> Result<Self> {
        located(|| {
            let ([scale], batch) = broadcast_params("HalfCauchy", [("scale", scale, 0)])?;
            validate_param("HalfCauchy", "scale", &scale, &Constraint::Positive)?;
            Ok(Self { scale, batch })
        })
    }

    /// The scale of the folded Cauchy (its median), shape `batch`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::HalfCauchy;
    /// let cpu = Device::Cpu;
    /// let d = HalfCauchy::new(&Tensor::ones((2, 3), DType::F64, &cpu)?)?;
    /// assert_eq!(d.scale().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn scale(&self) -> &Tensor {
        &self.scale
    }
}

impl Distribution for HalfCauchy {
    dist_common!("HalfCauchy", scale);

    sample_by_rsample!();

    fn rsample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        let shape = self.extended_shape(sample_shape);
        let eps = standard_cauchy(&shape, &self.scale, rng)?.abs()?;
        Ok(eps.broadcast_mul(&self.scale)?)
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        validate_value(self, value)?;
        fold_log_prob(&cauchy_log_prob(&value.abs()?, &self.scale)?, value)
    }

    fn entropy(&self) -> Result<Tensor> {
        // The Cauchy's ln(4π scale) less ln 2.
        Ok(self.scale.log()?.affine(1.0, (2.0 * PI).ln())?)
    }

    fn mean(&self) -> Result<Tensor> {
        full(f64::INFINITY, &self.batch, &self.scale)
    }

    fn variance(&self) -> Result<Tensor> {
        full(f64::INFINITY, &self.batch, &self.scale)
    }

    fn support(&self) -> Constraint {
        Constraint::NonNegative
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            Ok(Box::new(HalfCauchy {
                scale: expand_param(self.name(), &self.batch, &self.scale, batch_shape, 0)?,
                batch: batch_shape.to_vec(),
            }))
        })
    }
}
