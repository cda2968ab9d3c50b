//! `Unit`: a distribution over nothing that carries a log-weight (Pyro's `Unit`, behind
//! `pyro.factor`).

use candle_core::Tensor;
use rand::RngCore;

use crate::constraint::Constraint;
use crate::distribution::{Distribution, validate_value};
use crate::error::{DistError, Result, located};
use crate::family::{dist_common, expand_param};

/// A factor in a joint density: `log_prob` of any value is `log_factor` (broadcast to the
/// value's batch shape), so observing it adds `log_factor` to a model's log-density. Its one
/// "value" is a zero; it has no entropy, mean or variance.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Distribution, Unit};
/// let w = Tensor::new(&[-1.5f64, 0.25], &Device::Cpu)?;
/// let d = Unit::new(&w)?;
/// assert_eq!(d.batch_shape(), &[2]);
/// let lp = d.log_prob(&Tensor::zeros(2, candle_core::DType::F64, &Device::Cpu)?)?;
/// assert_eq!(lp.to_vec1::<f64>()?, vec![-1.5, 0.25]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Unit {
    log_factor: Tensor,
    batch: Vec<usize>,
}

impl Unit {
    /// The factor `exp(log_factor)`; its shape is the batch shape.
    ///
    /// ```
    /// let d = vi_dist::Unit::new(&candle_core::Tensor::new(0.5f32, &candle_core::Device::Cpu)?)?;
    /// assert!(vi_dist::Distribution::batch_shape(&d).is_empty());
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn new(log_factor: &Tensor) -> Result<Self> {
        located(|| {
            if !log_factor.dtype().is_float() {
                return Err(DistError::Invalid {
                    dist: "Unit",
                    msg: format!(
                        "log_factor must be a float tensor, got {:?}",
                        log_factor.dtype()
                    ),
                });
            }
            Ok(Self {
                log_factor: log_factor.clone(),
                batch: log_factor.dims().to_vec(),
            })
        })
    }

    /// The log-weight.
    ///
    /// ```
    /// let w = candle_core::Tensor::new(0.5f32, &candle_core::Device::Cpu)?;
    /// assert_eq!(vi_dist::Unit::new(&w)?.log_factor().to_scalar::<f32>()?, 0.5);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn log_factor(&self) -> &Tensor {
        &self.log_factor
    }
}

impl Distribution for Unit {
    dist_common!("Unit", log_factor);

    fn sample(&self, sample_shape: &[usize], _rng: &mut dyn RngCore) -> Result<Tensor> {
        Ok(Tensor::zeros(
            self.extended_shape(sample_shape),
            self.dtype(),
            self.device(),
        )?)
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let shape = validate_value(self, value)?;
        Ok(self.log_factor.broadcast_as(shape)?)
    }

    fn entropy(&self) -> Result<Tensor> {
        Err(DistError::Undefined {
            dist: "Unit",
            what: "entropy",
        })
    }

    fn mean(&self) -> Result<Tensor> {
        Err(DistError::Undefined {
            dist: "Unit",
            what: "mean",
        })
    }

    fn variance(&self) -> Result<Tensor> {
        Err(DistError::Undefined {
            dist: "Unit",
            what: "variance",
        })
    }

    fn support(&self) -> Constraint {
        Constraint::Real
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        Ok(Box::new(Unit {
            log_factor: expand_param(self.name(), &self.batch, &self.log_factor, batch_shape, 0)?,
            batch: batch_shape.to_vec(),
        }))
    }
}
