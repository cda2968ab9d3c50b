//! The categorical distribution over one-hot vectors.

use candle_core::{D, DType, Tensor};
use rand::RngCore;

use crate::categorical::Categorical;
use crate::constraint::Constraint;
use crate::distribution::{Distribution, validate_value};
use crate::error::{Result, located};
use crate::family::dist_common;
use crate::probs::{Form, enumerate_layout, float_value};

/// `OneHotCategorical(probs)`: a [`Categorical`] whose draws are one-hot vectors of length
/// `k`, as `torch.distributions.OneHotCategorical`. Event shape `[k]`.
///
/// `log_prob(x)` is the categorical `log_prob` of the index of the 1 in `x` (the arg-max of
/// the last dim, as torch); `mean` is `probs`, `variance` is `probs·(1 − probs)`. Values may
/// be floats or integer tensors. Not reparameterisable.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Distribution, OneHotCategorical};
/// let d = OneHotCategorical::from_probs(&Tensor::new(&[0.2f64, 0.3, 0.5], &Device::Cpu)?)?;
/// assert_eq!(d.event_shape(), &[3]);
/// let x = Tensor::new(&[0.0f64, 0.0, 1.0], &Device::Cpu)?;
/// assert!((d.log_prob(&x)?.to_scalar::<f64>()? - 0.5f64.ln()).abs() < 1e-12);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct OneHotCategorical {
    categorical: Categorical,
    batch: Vec<usize>,
    event: Vec<usize>,
}

impl OneHotCategorical {
    /// Build from unnormalised log-probabilities, shape `batch + [k]` (`k >= 1`, no NaN).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{OneHotCategorical, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = OneHotCategorical::from_logits(&Tensor::zeros((2, 4), DType::F64, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2][..], &[4][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn from_logits(logits: &Tensor) -> Result<Self> {
        located(|| {
            Ok(Self::wrap(Categorical::build(
                "OneHotCategorical",
                logits,
                Form::Logits,
            )?))
        })
    }

    /// Build from non-negative weights, shape `batch + [k]`, normalised over the last dim.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{OneHotCategorical, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = OneHotCategorical::from_probs(&Tensor::ones((2, 4), DType::F64, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2][..], &[4][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn from_probs(probs: &Tensor) -> Result<Self> {
        located(|| {
            Ok(Self::wrap(Categorical::build(
                "OneHotCategorical",
                probs,
                Form::Probs,
            )?))
        })
    }

    fn wrap(categorical: Categorical) -> Self {
        Self {
            batch: categorical.batch_shape().to_vec(),
            event: vec![categorical.num_classes()],
            categorical,
        }
    }

    /// The number of classes `k`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::OneHotCategorical;
    /// let cpu = Device::Cpu;
    /// let d = OneHotCategorical::from_logits(&Tensor::zeros((2, 4), DType::F64, &cpu)?)?;
    /// assert_eq!(d.num_classes(), 4);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn num_classes(&self) -> usize {
        self.categorical.num_classes()
    }

    /// The categorical distribution of the index of the 1.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{OneHotCategorical, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = OneHotCategorical::from_logits(&Tensor::zeros((2, 4), DType::F64, &cpu)?)?;
    /// assert_eq!(d.categorical().batch_shape(), &[2]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn categorical(&self) -> &Categorical {
        &self.categorical
    }

    /// The normalised log-probabilities, shape `batch + [k]`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::OneHotCategorical;
    /// let cpu = Device::Cpu;
    /// let d = OneHotCategorical::from_logits(&Tensor::zeros((2, 4), DType::F64, &cpu)?)?;
    /// assert_eq!(d.logits()?.dims(), &[2, 4]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn logits(&self) -> Result<Tensor> {
        self.categorical.logits()
    }

    /// The probabilities, shape `batch + [k]`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::OneHotCategorical;
    /// let cpu = Device::Cpu;
    /// let d = OneHotCategorical::from_logits(&Tensor::zeros((2, 4), DType::F64, &cpu)?)?;
    /// assert_eq!(d.probs()?.dims(), &[2, 4]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn probs(&self) -> Result<Tensor> {
        self.categorical.probs()
    }

    /// The `k` one-hot vectors as Pyro's `enumerate_support`: shape `[k] + batch + [k]` when
    /// `expand`, `[k] + [1] * batch.len() + [k]` otherwise.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::OneHotCategorical;
    /// let logits = Tensor::zeros((2, 4), candle_core::DType::F32, &Device::Cpu)?;
    /// let d = OneHotCategorical::from_logits(&logits)?;
    /// assert_eq!(d.enumerate_support(true)?.dims(), &[4, 2, 4]);
    /// assert_eq!(d.enumerate_support(false)?.dims(), &[4, 1, 4]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn enumerate_support(&self, expand: bool) -> Result<Tensor> {
        let k = self.num_classes();
        let eye = Tensor::eye(k, self.dtype(), self.device())?;
        enumerate_layout(eye, &self.batch, expand)
    }
}

impl Distribution for OneHotCategorical {
    dist_common!("OneHotCategorical", categorical, event);

    fn has_enumerate_support(&self) -> bool {
        true
    }

    fn enumerate_support(&self, expand: bool) -> Result<Tensor> {
        OneHotCategorical::enumerate_support(self, expand)
    }

    fn sample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        let k = self.num_classes();
        let indices = self.categorical.sample_host(sample_shape, rng)?;
        let mut data = vec![0.0; indices.len() * k];
        for (row, &i) in data.chunks_mut(k).zip(&indices) {
            if let Some(x) = row.get_mut(i as usize) {
                *x = 1.0;
            }
        }
        let shape = self.extended_shape(sample_shape);
        crate::rng::from_host(data, &shape, self.dtype(), self.device())
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let value = float_value(value, self.dtype())?;
        let out = validate_value(self, &value)?;
        if value.elem_count() == 0 {
            // An empty batch or sample (candle cannot reduce it).
            return Ok(Tensor::zeros(out, self.dtype(), self.device())?);
        }
        let indices = value.argmax(D::Minus1)?.to_dtype(DType::U32)?;
        self.categorical.log_prob_indices(&indices, &out)
    }

    fn log_prob_enumerated(&self, value: &Tensor, dim: isize) -> Option<Result<Tensor>> {
        // The one-hot rows in class order: the categorical's layout with the event dim.
        let dims = value.dims();
        if dims.last() != Some(&self.num_classes()) {
            return None;
        }
        self.categorical
            .log_probs_along(&dims[..dims.len() - 1], dim)
    }

    fn entropy(&self) -> Result<Tensor> {
        self.categorical.entropy()
    }

    fn mean(&self) -> Result<Tensor> {
        self.probs()
    }

    fn variance(&self) -> Result<Tensor> {
        let p = self.probs()?;
        Ok((p.affine(-1.0, 1.0)? * p)?)
    }

    fn support(&self) -> Constraint {
        Constraint::OneHot
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            let categorical = self.categorical.expand_to(batch_shape)?;
            Ok(Box::new(Self::wrap(categorical)))
        })
    }
}
