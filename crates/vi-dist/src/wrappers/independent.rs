//! `Independent`: reinterpret batch dims as event dims (Pyro's `.to_event(n)`).

use candle_core::Tensor;

use crate::broadcast::sum_rightmost;
use crate::constraint::Constraint;
use crate::distribution::{Distribution, validate_wrapped, value_batch_shape};
use crate::error::{DistError, Result, located};

/// The rightmost `reinterpreted_batch_ndims` batch dims of `base` treated as one event:
/// `log_prob` sums over them, as `torch.distributions.Independent`.
///
/// Nested wrappers collapse: `Independent(Independent(d, m), n)` is `Independent(d, m + n)`.
///
/// `log_prob` takes the base's [`log_prob_summed`](Distribution::log_prob_summed) where it has
/// one, an op that sums over the event dims itself (`Normal` and `Bernoulli`:
/// [`crate::ops::normal_log_prob_sum`], [`crate::ops::bernoulli_log_prob_sum`], fused on the
/// CPU with f64 accumulation); other bases sum their `log_prob` with candle's `sum`.
///
/// ```
/// use candle_core::{Device, Tensor, DType};
/// use vi_dist::{Distribution, Normal};
/// let n = Normal::new(&Tensor::zeros((4, 3), DType::F64, &Device::Cpu)?,
///                     &Tensor::ones((4, 3), DType::F64, &Device::Cpu)?)?;
/// let d = n.to_event(1)?;
/// assert_eq!(d.batch_shape(), &[4]);
/// assert_eq!(d.event_shape(), &[3]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Independent {
    base: Box<dyn Distribution>,
    reinterpreted: usize,
    batch: Vec<usize>,
    event: Vec<usize>,
}

impl Independent {
    /// Wrap `base`, moving its last `reinterpreted_batch_ndims` batch dims into the event.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{DistError, Distribution, Independent, Normal};
    /// let n = Normal::new(&Tensor::zeros((4, 3), DType::F64, &Device::Cpu)?,
    ///                     &Tensor::ones((4, 3), DType::F64, &Device::Cpu)?)?;
    /// let d = Independent::new(n.clone_box(), 2)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[][..], &[4, 3][..]));
    /// let err = Independent::new(n.clone_box(), 3).unwrap_err();
    /// assert!(matches!(err.kind(), DistError::ToEvent { .. }));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn new(base: Box<dyn Distribution>, reinterpreted_batch_ndims: usize) -> Result<Self> {
        located(|| {
            let n = reinterpreted_batch_ndims;
            let base_batch = base.batch_shape();
            if n > base_batch.len() {
                return Err(DistError::ToEvent {
                    dist: base.name(),
                    n,
                    batch: base_batch.to_vec(),
                });
            }
            // Flatten nested wrappers so KL rules see one level.
            let (base, n) = match base.as_any().downcast_ref::<Independent>() {
                Some(inner) => (inner.base.clone(), inner.reinterpreted + n),
                None => (base, n),
            };
            let base_batch = base.batch_shape();
            let split = base_batch.len() - n;
            let batch = base_batch[..split].to_vec();
            let event = base_batch[split..]
                .iter()
                .chain(base.event_shape())
                .copied()
                .collect();
            Ok(Self {
                base,
                reinterpreted: n,
                batch,
                event,
            })
        })
    }

    /// The wrapped distribution.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Distribution, Normal};
    /// let n = Normal::new(&Tensor::zeros((4, 3), DType::F64, &Device::Cpu)?,
    ///                     &Tensor::ones((4, 3), DType::F64, &Device::Cpu)?)?;
    /// // nested wrappers collapse: the base is the Normal itself
    /// assert_eq!(n.to_event(1)?.to_event(1)?.base().name(), "Normal");
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn base(&self) -> &dyn Distribution {
        self.base.as_ref()
    }

    /// How many of the base's batch dims are reinterpreted as event dims.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Normal;
    /// let n = Normal::new(&Tensor::zeros((4, 3), DType::F64, &Device::Cpu)?,
    ///                     &Tensor::ones((4, 3), DType::F64, &Device::Cpu)?)?;
    /// use vi_dist::Distribution;
    /// assert_eq!(n.to_event(1)?.to_event(1)?.reinterpreted_batch_ndims(), 2);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn reinterpreted_batch_ndims(&self) -> usize {
        self.reinterpreted
    }
}

impl Distribution for Independent {
    fn name(&self) -> &'static str {
        "Independent"
    }
    forward_to_base! {
        dtype, device, sample, has_rsample, rsample, mean, variance, feasible_like, boxed
    }
    fn batch_shape(&self) -> &[usize] {
        &self.batch
    }
    fn event_shape(&self) -> &[usize] {
        &self.event
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        // The event shape is checked here: the base alone would accept a value that only
        // broadcasts against the reinterpreted dims. The base checks the support.
        value_batch_shape(self, value)?;
        // A family with a fused summed density sums inside its op: no separate `sum` node,
        // whose backward would build a full-shape gradient.
        let k = self.reinterpreted;
        if k > 0
            && let Some(summed) = self.base.log_prob_summed(value, k)
        {
            return summed;
        }
        sum_rightmost(&self.base.log_prob(value)?, k)
    }
    fn entropy(&self) -> Result<Tensor> {
        sum_rightmost(&self.base.entropy()?, self.reinterpreted)
    }
    fn support(&self) -> Constraint {
        self.base.support().independent(self.reinterpreted)
    }
    fn validate(&self, value: &Tensor) -> Result<Vec<usize>> {
        validate_wrapped(self, self.base.as_ref(), value)
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            let split = self.base.batch_shape().len() - self.reinterpreted;
            let base_shape: Vec<usize> = batch_shape
                .iter()
                .chain(&self.base.batch_shape()[split..])
                .copied()
                .collect();
            let base = self
                .base
                .expand(&base_shape)
                .map_err(|_| DistError::Expand {
                    dist: self.name(),
                    from: self.batch.clone(),
                    to: batch_shape.to_vec(),
                })?;
            Ok(Box::new(Independent::new(base, self.reinterpreted)?))
        })
    }
    /// The support of the events is a product of the reinterpreted dims' supports: not listed
    /// (as torch), unless no dim is reinterpreted.
    fn has_enumerate_support(&self) -> bool {
        self.reinterpreted == 0 && self.base.has_enumerate_support()
    }
    fn enumerate_support(&self, expand: bool) -> Result<Tensor> {
        if self.reinterpreted > 0 {
            return Err(DistError::NotEnumerable {
                dist: self.describe(),
            });
        }
        self.base.enumerate_support(expand)
    }
    fn describe(&self) -> String {
        format!(
            "Independent({}, {})",
            self.base.describe(),
            self.reinterpreted
        )
    }
}
