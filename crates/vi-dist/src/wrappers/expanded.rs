//! `Expanded`: a distribution broadcast to a larger batch shape (Pyro's
//! `ExpandedDistribution`), for types that cannot expand their parameters themselves.

use candle_core::Tensor;
use rand::RngCore;

use crate::broadcast::broadcast_shapes;
use crate::distribution::{Distribution, validate_wrapped, value_batch_shape};
use crate::error::{Result, located};
use crate::family::check_expand;

/// `base` broadcast to `batch_shape`: every new or size-1 batch dim holds independent copies.
///
/// The families in this crate expand natively (their parameters are broadcast as views); this
/// wrapper serves user types and `Delta`-like distributions, and is what KL rules see when a
/// user wraps explicitly.
///
/// ```
/// use candle_core::{Device, Tensor, DType};
/// use vi_dist::{Distribution, Expanded, Normal};
/// let n = Normal::new(&Tensor::zeros(1, DType::F64, &Device::Cpu)?,
///                     &Tensor::ones(1, DType::F64, &Device::Cpu)?)?;
/// let e = Expanded::new(Box::new(n), &[2, 3])?;
/// assert_eq!(e.batch_shape(), &[2, 3]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Expanded {
    base: Box<dyn Distribution>,
    batch: Vec<usize>,
}

impl Expanded {
    /// Broadcast `base` to `batch_shape` (torch's `expand` rule: size-1 dims grow, new dims
    /// are added on the left).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{DistError, Distribution, Expanded, Normal};
    /// let n = Normal::new(&Tensor::zeros(3, DType::F64, &Device::Cpu)?,
    ///                     &Tensor::ones(3, DType::F64, &Device::Cpu)?)?;
    /// assert_eq!(Expanded::new(n.clone_box(), &[2, 3])?.batch_shape(), &[2, 3]);
    /// let err = Expanded::new(n.clone_box(), &[2]).unwrap_err();
    /// assert!(matches!(err.kind(), DistError::Expand { .. }));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn new(base: Box<dyn Distribution>, batch_shape: &[usize]) -> Result<Self> {
        located(|| {
            check_expand(base.name(), base.batch_shape(), batch_shape)?;
            // Expanding an expansion expands the original.
            let base = match base.as_any().downcast_ref::<Expanded>() {
                Some(inner) => inner.base.clone(),
                None => base,
            };
            Ok(Self {
                base,
                batch: batch_shape.to_vec(),
            })
        })
    }

    /// The wrapped distribution.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Distribution, Expanded, Normal};
    /// let n = Normal::new(&Tensor::zeros(1, DType::F64, &Device::Cpu)?,
    ///                     &Tensor::ones(1, DType::F64, &Device::Cpu)?)?;
    /// assert_eq!(Expanded::new(Box::new(n), &[4])?.base().batch_shape(), &[1]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn base(&self) -> &dyn Distribution {
        self.base.as_ref()
    }

    /// Draw from the base with the expanded dims as extra sample dims, then move them into
    /// place, so every expanded element is an independent draw.
    fn draw(&self, sample_shape: &[usize], rng: &mut dyn RngCore, reparam: bool) -> Result<Tensor> {
        let base_batch = self.base.batch_shape();
        let lead = self.batch.len() - base_batch.len();
        // Positions (in the expanded batch) of base dims that grow from 1.
        let grown: Vec<usize> = (0..base_batch.len())
            .filter(|&i| base_batch[i] == 1 && self.batch[lead + i] != 1)
            .collect();
        let mut shape: Vec<usize> = sample_shape.to_vec();
        shape.extend_from_slice(&self.batch[..lead]);
        shape.extend(grown.iter().map(|&i| self.batch[lead + i]));
        let x = if reparam {
            self.base.rsample(&shape, rng)?
        } else {
            self.base.sample(&shape, rng)?
        };
        // x: [S, L, G.., base_batch.., event..]; move each G next to its size-1 base dim.
        let s = sample_shape.len();
        let g0 = s + lead;
        let b0 = g0 + grown.len();
        let rank = x.rank();
        let mut perm: Vec<usize> = (0..g0).collect();
        for i in 0..base_batch.len() {
            match grown.iter().position(|&g| g == i) {
                Some(k) => perm.push(g0 + k),
                None => perm.push(b0 + i),
            }
        }
        // the size-1 base dims that were grown go last (they are squeezed by the reshape)
        perm.extend(grown.iter().map(|&i| b0 + i));
        perm.extend(b0 + base_batch.len()..rank);
        let x = x.permute(perm)?;
        let out = self.extended_shape(sample_shape);
        Ok(x.contiguous()?.reshape(out)?)
    }
}

impl Distribution for Expanded {
    fn name(&self) -> &'static str {
        "Expanded"
    }
    forward_to_base! { event_shape, dtype, device, has_rsample, support, feasible_like, boxed }
    fn batch_shape(&self) -> &[usize] {
        &self.batch
    }
    fn sample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        self.draw(sample_shape, rng, false)
    }
    fn rsample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        self.draw(sample_shape, rng, true)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        // Shapes against the expanded batch here; the base checks the support.
        let out_shape = value_batch_shape(self, value)?;
        let lp = self.base.log_prob(value)?;
        let target = broadcast_shapes(&[lp.dims(), &out_shape]).unwrap_or(out_shape);
        Ok(lp.broadcast_as(target)?)
    }
    fn entropy(&self) -> Result<Tensor> {
        Ok(self.base.entropy()?.broadcast_as(self.batch.as_slice())?)
    }
    fn mean(&self) -> Result<Tensor> {
        Ok(self.base.mean()?.broadcast_as(self.extended_shape(&[]))?)
    }
    fn variance(&self) -> Result<Tensor> {
        Ok(self
            .base
            .variance()?
            .broadcast_as(self.extended_shape(&[]))?)
    }
    fn validate(&self, value: &Tensor) -> Result<Vec<usize>> {
        validate_wrapped(self, self.base.as_ref(), value)
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            check_expand(self.name(), &self.batch, batch_shape)?;
            Ok(Box::new(Expanded::new(self.base.clone(), batch_shape)?))
        })
    }
    fn has_enumerate_support(&self) -> bool {
        self.base.has_enumerate_support()
    }
    fn enumerate_support(&self, expand: bool) -> Result<Tensor> {
        super::enumerate_over(self.base.as_ref(), &self.batch, expand)
    }
    fn describe(&self) -> String {
        format!("Expanded({}, {:?})", self.base.describe(), self.batch)
    }
}
