//! The categorical distribution over class indices.

use candle_core::{D, DType, Tensor};
use rand::RngCore;
use rand_distr::Distribution as _;
use rand_distr::weighted::WeightedIndex;

use crate::broadcast::{broadcast_params, full};
use crate::constraint::Constraint;
use crate::distribution::{Distribution, validate_param, validate_value};
use crate::error::{DistError, Result, located};
use crate::family::{dist_common, expand_param};
use crate::probs::{
    Form, categorical_logits, enumerate_layout, exact_log_probs, float_value, log_softmax,
};
use crate::rng::{draw_rounds, to_host};
use crate::validation::validation_enabled;

/// `Categorical(probs)` over the class indices `0..k`, as `torch.distributions.Categorical`:
/// the last dim of the parameter holds the `k` classes, the others are the batch.
///
/// [`from_logits`](Self::from_logits) normalises the logits (`l − logsumexp(l)`), and
/// `log_prob` picks the normalised logit of the class (a log-softmax, stable for any finite
/// logits); [`from_probs`](Self::from_probs) normalises the probabilities to sum to 1 and
/// takes logs of them clamped to `[eps, 1 − eps]`, as torch. The event shape is `[]`: values
/// are indices, given as floats holding integers (what [`sample`](Distribution::sample)
/// returns) or as an integer tensor (`u8`, `u32`, `i64`). `mean` and `variance` are NaN, as
/// torch. Not reparameterisable.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Categorical, Distribution};
/// let d = Categorical::from_probs(&Tensor::new(&[0.2f64, 0.3, 0.5], &Device::Cpu)?)?;
/// let lp = d.log_prob(&Tensor::new(&[2u32, 0], &Device::Cpu)?)?.to_vec1::<f64>()?;
/// assert!((lp[0] - 0.5f64.ln()).abs() < 1e-12 && (lp[1] - 0.2f64.ln()).abs() < 1e-12);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Categorical {
    /// Normalised logits or probabilities, shape `batch + [k]`.
    param: Tensor,
    form: Form,
    batch: Vec<usize>,
}

impl Categorical {
    /// Build from unnormalised log-probabilities, shape `batch + [k]` (`k >= 1`, no NaN).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Categorical, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = Categorical::from_logits(&Tensor::zeros((2, 4), DType::F64, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2][..], &[][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn from_logits(logits: &Tensor) -> Result<Self> {
        located(|| Self::build("Categorical", logits, Form::Logits))
    }

    /// Build from non-negative weights, shape `batch + [k]` (`k >= 1`), normalised to sum to 1
    /// over the last dim.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Categorical, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = Categorical::from_probs(&Tensor::ones((2, 4), DType::F64, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2][..], &[][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn from_probs(probs: &Tensor) -> Result<Self> {
        located(|| Self::build("Categorical", probs, Form::Probs))
    }

    /// Check, normalise and keep `param` (in `form`); errors name `dist` (`OneHotCategorical`
    /// builds its inner categorical here).
    pub(crate) fn build(dist: &'static str, param: &Tensor, form: Form) -> Result<Self> {
        let name = form.param_name();
        let ([param], batch) = broadcast_params(dist, [(name, param, 1)])?;
        if param.dims().last().copied().unwrap_or(0) == 0 {
            return Err(DistError::ParamShape {
                dist,
                param: name,
                expected: "[.., k] with k >= 1 classes".to_string(),
                found: param.dims().to_vec(),
            });
        }
        let param = match form {
            Form::Logits => {
                validate_param(dist, name, &param, &Constraint::Real)?;
                log_softmax(&param)?
            }
            Form::Probs => {
                let probs = param.broadcast_div(&param.sum_keepdim(D::Minus1)?)?;
                validate_param(dist, name, &probs, &Constraint::Simplex)?;
                probs
            }
        };
        Ok(Self { param, form, batch })
    }

    /// The same distribution with batch shape broadcast to `batch_shape`.
    pub(crate) fn expand_to(&self, batch_shape: &[usize]) -> Result<Self> {
        Ok(Categorical {
            param: expand_param(self.name(), &self.batch, &self.param, batch_shape, 1)?,
            form: self.form,
            batch: batch_shape.to_vec(),
        })
    }

    /// The number of classes `k`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Categorical;
    /// let cpu = Device::Cpu;
    /// let d = Categorical::from_logits(&Tensor::zeros((2, 4), DType::F64, &cpu)?)?;
    /// assert_eq!(d.num_classes(), 4);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn num_classes(&self) -> usize {
        self.param.dims().last().copied().unwrap_or(0)
    }

    /// The normalised log-probabilities, shape `batch + [k]` (for the `probs` form, the logs of
    /// the clamped probabilities).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Categorical;
    /// let cpu = Device::Cpu;
    /// let d = Categorical::from_logits(&Tensor::zeros((2, 4), DType::F64, &cpu)?)?;
    /// assert_eq!(d.logits()?.dims(), &[2, 4]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn logits(&self) -> Result<Tensor> {
        match self.form {
            Form::Logits => Ok(self.param.clone()),
            Form::Probs => categorical_logits(&self.param),
        }
    }

    /// The probabilities, shape `batch + [k]` (summing to 1 over the last dim).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Categorical;
    /// let cpu = Device::Cpu;
    /// let d = Categorical::from_logits(&Tensor::zeros((2, 4), DType::F64, &cpu)?)?;
    /// assert_eq!(d.probs()?.dims(), &[2, 4]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn probs(&self) -> Result<Tensor> {
        match self.form {
            Form::Logits => Ok(self.param.exp()?),
            Form::Probs => Ok(self.param.clone()),
        }
    }

    /// The class indices `0..k` as Pyro's `enumerate_support`: shape `[k] + batch` when
    /// `expand`, `[k] + [1] * batch.len()` otherwise, as floats of the distribution's dtype.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::Categorical;
    /// let d = Categorical::from_logits(&Tensor::zeros((2, 4), candle_core::DType::F32, &Device::Cpu)?)?;
    /// assert_eq!(d.enumerate_support(true)?.dims(), &[4, 2]);
    /// assert_eq!(d.enumerate_support(false)?.dims(), &[4, 1]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn enumerate_support(&self, expand: bool) -> Result<Tensor> {
        let k = self.num_classes() as u32;
        let values = Tensor::arange(0u32, k, self.param.device())?.to_dtype(self.dtype())?;
        enumerate_layout(values, &self.batch, expand)
    }

    /// The normalised log-probabilities (`batch + [k]`) laid against the values of the whole
    /// support along `dim` (see [`Distribution::log_prob_enumerated`]): the class dim moved
    /// to `dim`, a view where it can be. `None` when `shape` (the value's shape) is not that
    /// layout, or when the batch varies along `dim`.
    pub(crate) fn log_probs_along(&self, shape: &[usize], dim: isize) -> Option<Result<Tensor>> {
        let k = self.num_classes();
        let r = dim.unsigned_abs();
        let layout =
            r >= 1 && shape.len() == r && shape[0] == k && shape[1..].iter().all(|&n| n == 1);
        let b = self.batch.len();
        let rank = r.max(b);
        let pos = rank - r;
        if !layout || (pos >= rank - b && self.batch[pos - (rank - b)] != 1) {
            return None;
        }
        Some((|| -> Result<Tensor> {
            let mut lp = match self.form {
                Form::Logits => self.param.clone(),
                Form::Probs => exact_log_probs(&self.param)?,
            };
            // The class dim moved to `pos` by views that never exceed rank `rank` (candle's
            // CPU kernels take at most 8 dims, and the backward pass visits every view).
            if pos >= rank - b {
                // Into the batch's size-1 dim at `pos`, which is dropped.
                let q = pos - (rank - b);
                lp = lp.transpose(q, b)?.squeeze(b)?;
            } else {
                // Left of the batch: `[k, batch..]`, then size-1 dims between and before.
                let perm: Vec<usize> = std::iter::once(b).chain(0..b).collect();
                lp = lp.permute(perm)?;
                for _ in pos + 1..rank - b {
                    lp = lp.unsqueeze(1)?;
                }
            }
            while lp.rank() < rank {
                lp = lp.unsqueeze(0)?;
            }
            Ok(lp)
        })())
    }

    /// `log p(index)` for `u32` indices known to be in `0..k`, broadcast to `out` (the batch
    /// shape of the result); shared with `OneHotCategorical`.
    pub(crate) fn log_prob_indices(&self, indices: &Tensor, out: &[usize]) -> Result<Tensor> {
        let k = self.num_classes();
        let full: Vec<usize> = out.iter().copied().chain([k]).collect();
        // From the probabilities themselves where given (ln 0 = −∞; torch's logits are those of
        // probabilities clamped to eps).
        let log_probs = match self.form {
            Form::Logits => self.param.clone(),
            Form::Probs => exact_log_probs(&self.param)?,
        };
        let logits = log_probs.broadcast_as(full)?.contiguous()?;
        let idx = indices
            .broadcast_as(out)?
            .unsqueeze(D::Minus1)?
            .contiguous()?;
        Ok(logits.gather(&idx, D::Minus1)?.squeeze(D::Minus1)?)
    }

    /// Draw class indices on the host, shape `sample_shape + batch`, as `f64`.
    pub(crate) fn sample_host(
        &self,
        sample_shape: &[usize],
        rng: &mut dyn RngCore,
    ) -> Result<Vec<f64>> {
        let k = self.num_classes();
        let probs = to_host(&self.probs()?)?;
        let samplers = probs
            .chunks(k.max(1))
            .map(|row| {
                WeightedIndex::new(row).map_err(|e| DistError::Invalid {
                    dist: self.name(),
                    msg: format!("cannot sample with probs {row:?}: {e}"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let rounds = sample_shape.iter().product();
        Ok(draw_rounds(&samplers, rounds, rng, |s, r| {
            s.sample(r) as f64
        }))
    }
}

impl Distribution for Categorical {
    dist_common!("Categorical", param);

    fn has_enumerate_support(&self) -> bool {
        true
    }

    fn enumerate_support(&self, expand: bool) -> Result<Tensor> {
        Categorical::enumerate_support(self, expand)
    }

    fn sample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        let data = self.sample_host(sample_shape, rng)?;
        let shape = self.extended_shape(sample_shape);
        crate::rng::from_host(data, &shape, self.dtype(), self.device())
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let value = float_value(value, self.dtype())?;
        let out = validate_value(self, &value)?;
        // Indices outside 0..k would make `gather` fail or read garbage (on some devices):
        // check the range even with validation off (the support check covers it when on).
        if !validation_enabled() {
            let range = Constraint::HalfOpenInterval {
                low: 0.0.into(),
                high: (self.num_classes() as f64).into(),
            };
            if !range.all(&value)? {
                return Err(crate::distribution::value_support_error(
                    self.name(),
                    &range,
                    &value,
                ));
            }
        }
        self.log_prob_indices(&value.to_dtype(DType::U32)?, &out)
    }

    fn log_prob_enumerated(&self, value: &Tensor, dim: isize) -> Option<Result<Tensor>> {
        self.log_probs_along(value.dims(), dim)
    }

    fn entropy(&self) -> Result<Tensor> {
        // −Σ p·l, with −inf logits raised to the most negative finite number so that a class
        // of probability 0 adds 0·(finite) = 0, as torch.
        let logits = self.logits()?.maximum(crate::finfo::min(self.dtype()))?;
        Ok((logits * self.probs()?)?.sum(D::Minus1)?.neg()?)
    }

    fn mean(&self) -> Result<Tensor> {
        // NaN of the batch shape, as torch.
        full(f64::NAN, &self.batch, &self.param)
    }

    fn variance(&self) -> Result<Tensor> {
        full(f64::NAN, &self.batch, &self.param)
    }

    fn support(&self) -> Constraint {
        Constraint::IntegerInterval {
            low: 0.0.into(),
            high: (self.num_classes() as f64 - 1.0).into(),
        }
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> { Ok(Box::new(self.expand_to(batch_shape)?)) })
    }
}
