//! `Masked`: zero the `log_prob` of masked-out batch elements (Pyro's `.mask(m)`).

use candle_core::{DType, Tensor};

use crate::broadcast::{broadcast_shapes, full_like};
use crate::distribution::{Distribution, discrete_value_as_float, value_batch_shape, value_kind};
use crate::error::{DistError, Result, located};
use crate::family::check_expand;

/// `base` with `log_prob` set to 0 where `mask` is 0, as Pyro's `MaskedDistribution`.
///
/// The batch shape is the broadcast of the base's batch shape and the mask's shape. Sampling,
/// mean, variance and entropy are the base's (broadcast); only scores are masked. Masked-out
/// values are replaced by a point of the support
/// ([`Constraint::feasible_like`](crate::Constraint::feasible_like)) before the base scores
/// them, as NumPyro does ([`Distribution::feasible_like`] of the base, which is the support's
/// point for the families): missing data may hold any placeholder (NaN), which neither fails
/// validation nor makes the gradients NaN.
///
/// ```
/// use candle_core::{Device, Tensor, DType};
/// use vi_dist::{Distribution, Normal};
/// let n = Normal::new(&Tensor::zeros(2, DType::F64, &Device::Cpu)?,
///                     &Tensor::ones(2, DType::F64, &Device::Cpu)?)?;
/// let m = n.mask(&Tensor::new(&[1u8, 0], &Device::Cpu)?)?;
/// let lp = m.log_prob(&Tensor::zeros(2, DType::F64, &Device::Cpu)?)?.to_vec1::<f64>()?;
/// assert_eq!(lp[1], 0.0);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Masked {
    base: Box<dyn Distribution>,
    mask: Tensor,
    batch: Vec<usize>,
}

impl Masked {
    /// Mask `base` with `mask` (any dtype; nonzero means keep).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Distribution, Masked, Normal};
    /// let n = Normal::new(&Tensor::zeros(3, DType::F64, &Device::Cpu)?,
    ///                     &Tensor::ones(3, DType::F64, &Device::Cpu)?)?;
    /// // a mask of shape [2, 1] broadcasts the batch shape to [2, 3]
    /// let m = Masked::new(Box::new(n), &Tensor::new(&[[1u8], [0]], &Device::Cpu)?)?;
    /// assert_eq!(m.batch_shape(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn new(base: Box<dyn Distribution>, mask: &Tensor) -> Result<Self> {
        located(|| {
            let batch = broadcast_shapes(&[base.batch_shape(), mask.dims()]).ok_or_else(|| {
                DistError::MaskShape {
                    dist: base.name(),
                    mask: mask.dims().to_vec(),
                    batch: base.batch_shape().to_vec(),
                }
            })?;
            if !mask.device().same_device(base.device()) {
                return Err(DistError::Invalid {
                    dist: "Masked",
                    msg: format!(
                        "mask is on {}, the distribution on {}",
                        crate::error::device_name(mask.device()),
                        crate::error::device_name(base.device())
                    ),
                });
            }
            let mask = if mask.dtype() == DType::U8 {
                mask.clone()
            } else {
                mask.ne(0.0)?
            };
            let base = if base.batch_shape() == batch.as_slice() {
                base
            } else {
                base.expand(&batch)?
            };
            Ok(Self { base, mask, batch })
        })
    }

    /// The wrapped distribution.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Distribution, Normal};
    /// let n = Normal::new(&Tensor::zeros(3, DType::F64, &Device::Cpu)?,
    ///                     &Tensor::ones(3, DType::F64, &Device::Cpu)?)?;
    /// let m = n.mask(&Tensor::new(&[[1u8], [0]], &Device::Cpu)?)?;
    /// // the base is expanded to the masked batch shape
    /// assert_eq!(m.base().batch_shape(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn base(&self) -> &dyn Distribution {
        self.base.as_ref()
    }

    /// The mask (`u8`, broadcastable to the batch shape).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Distribution, Normal};
    /// let n = Normal::new(&Tensor::zeros(2, DType::F64, &Device::Cpu)?,
    ///                     &Tensor::ones(2, DType::F64, &Device::Cpu)?)?;
    /// let m = n.mask(&Tensor::new(&[2.0f64, 0.0], &Device::Cpu)?)?;
    /// assert_eq!(m.mask_tensor().to_vec1::<u8>()?, vec![1, 0]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn mask_tensor(&self) -> &Tensor {
        &self.mask
    }

    /// Zero `t` (shape `.. + batch_shape`) where the mask is 0.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Distribution, Normal};
    /// let n = Normal::new(&Tensor::zeros(2, DType::F64, &Device::Cpu)?,
    ///                     &Tensor::ones(2, DType::F64, &Device::Cpu)?)?;
    /// let m = n.mask(&Tensor::new(&[1u8, 0], &Device::Cpu)?)?;
    /// let t = Tensor::new(&[[1.0f64, 2.0], [3.0, 4.0]], &Device::Cpu)?;
    /// assert_eq!(m.apply(&t)?.to_vec2::<f64>()?, vec![vec![1.0, 0.0], vec![3.0, 0.0]]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn apply(&self, t: &Tensor) -> Result<Tensor> {
        let mask = self.mask.broadcast_as(t.shape())?;
        Ok(mask.where_cond(t, &full_like(0.0, t)?)?)
    }
}

impl Masked {
    /// `value` broadcast to the log-density's shape, with masked-out elements replaced by a
    /// point of the support (NumPyro's MaskedDistribution), so that a placeholder there (NaN
    /// for missing data) neither fails the support check nor sends 0 · NaN into the
    /// gradients.
    fn fill_masked(&self, value: &Tensor) -> Result<Tensor> {
        let out = value_batch_shape(self, value)?;
        let event = self.event_shape();
        let full = crate::broadcast::extended_shape(&[], &out, event);
        let value = value.broadcast_as(full.as_slice())?;
        let feasible = self.base.feasible_like(&value)?;
        let mask_dims: Vec<usize> = self
            .mask
            .dims()
            .iter()
            .copied()
            .chain(event.iter().map(|_| 1))
            .collect();
        let keep = self
            .mask
            .reshape(mask_dims)?
            .broadcast_as(full.as_slice())?;
        Ok(keep.where_cond(&value, &feasible.broadcast_as(full.as_slice())?)?)
    }
}

impl Distribution for Masked {
    fn name(&self) -> &'static str {
        "Masked"
    }
    forward_to_base! {
        event_shape, dtype, device, sample, has_rsample, rsample,
        entropy, mean, variance, support, feasible_like, boxed
    }
    fn batch_shape(&self) -> &[usize] {
        &self.batch
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let value = discrete_value_as_float(self, value)?;
        self.apply(&self.base.log_prob(&self.fill_masked(&value)?)?)
    }
    fn validate(&self, value: &Tensor) -> Result<Vec<usize>> {
        value_kind(self, value)?;
        let out = value_batch_shape(self, value)?;
        let value = discrete_value_as_float(self, value)?;
        self.base.validate(&self.fill_masked(&value)?)?;
        Ok(out)
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            check_expand(self.name(), &self.batch, batch_shape)?;
            Ok(Box::new(Masked::new(
                self.base.expand(batch_shape)?,
                &self.mask,
            )?))
        })
    }
    fn has_enumerate_support(&self) -> bool {
        self.base.has_enumerate_support()
    }
    fn enumerate_support(&self, expand: bool) -> Result<Tensor> {
        super::enumerate_over(self.base.as_ref(), &self.batch, expand)
    }
    fn describe(&self) -> String {
        format!("Masked({})", self.base.describe())
    }
}
