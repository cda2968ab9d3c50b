//! The binomial distribution.

use candle_core::Tensor;
use rand::RngCore;
use rand_distr::Distribution as _;

use crate::broadcast::broadcast_params;
use crate::constraint::Constraint;
use crate::distribution::{Distribution, validate_param, validate_value};
use crate::error::{DistError, Result, located};
use crate::family::{dist_common, expand_param};
use crate::ops::{lgamma, softplus};
use crate::probs::{Form, bad_sampler_param, binary_log_kernel, enumerate_layout, float_value};
use crate::rng::{draw_each, to_host};

/// `Binomial(total_count, probs)`: the number of successes in `total_count` independent
/// trials of probability `probs`, as `torch.distributions.Binomial`.
///
/// `total_count` is a float tensor of non-negative integers that broadcasts with the other
/// parameter; it is data, not a differentiable parameter (it is detached). `log_prob` is
/// `k·l − ln k! − ln (n − k)! + ln n! − n·softplus(l)` with `l` the logits (stable for any
/// finite logit); from probabilities the logits are those of the clamped probabilities, as
/// torch. The entropy sums `−p ln p` over `0..=max(total_count)`, as torch (which also
/// enumerates), with the mass above each element's own count taken as zero, so it also holds
/// for a batch of different counts. Not reparameterisable.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Binomial, Distribution};
/// let n = Tensor::new(4.0f64, &Device::Cpu)?;
/// let d = Binomial::from_probs(&n, &Tensor::new(0.5f64, &Device::Cpu)?)?;
/// let lp = d.log_prob(&Tensor::new(2.0f64, &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp - (6.0f64 / 16.0).ln()).abs() < 1e-12);
/// assert_eq!(d.mean()?.to_scalar::<f64>()?, 2.0);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Binomial {
    total_count: Tensor,
    param: Tensor,
    form: Form,
    batch: Vec<usize>,
}

impl Binomial {
    /// Build from the number of trials (non-negative integers, as floats) and the log-odds of
    /// success; the two broadcast against each other.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Binomial, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = Binomial::from_logits(&Tensor::full(4.0f64, (2, 1), &cpu)?, &Tensor::zeros(3, DType::F64, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2, 3][..], &[][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn from_logits(total_count: &Tensor, logits: &Tensor) -> Result<Self> {
        located(|| Self::build(total_count, logits, Form::Logits))
    }

    /// Build from the number of trials (non-negative integers, as floats) and the probability
    /// of success in `[0, 1]`; the two broadcast against each other.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Binomial, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = Binomial::from_probs(&Tensor::full(4.0f64, (2, 1), &cpu)?, &Tensor::full(0.5f64, 3, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2, 3][..], &[][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn from_probs(total_count: &Tensor, probs: &Tensor) -> Result<Self> {
        located(|| Self::build(total_count, probs, Form::Probs))
    }

    fn build(total_count: &Tensor, param: &Tensor, form: Form) -> Result<Self> {
        let name = form.param_name();
        let ([total_count, param], batch) = broadcast_params(
            "Binomial",
            [("total_count", total_count, 0), (name, param, 0)],
        )?;
        let total_count = total_count.detach();
        validate_param(
            "Binomial",
            "total_count",
            &total_count,
            &Constraint::NonNegativeInteger,
        )?;
        validate_param("Binomial", name, &param, &form.binary_support())?;
        Ok(Self {
            total_count,
            param,
            form,
            batch,
        })
    }

    /// The number of trials, broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Binomial;
    /// let cpu = Device::Cpu;
    /// let d = Binomial::from_logits(&Tensor::full(4.0f64, (2, 1), &cpu)?, &Tensor::zeros(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.total_count().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn total_count(&self) -> &Tensor {
        &self.total_count
    }

    /// The log-odds of success, shape `batch`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Binomial;
    /// let cpu = Device::Cpu;
    /// let d = Binomial::from_logits(&Tensor::full(4.0f64, (2, 1), &cpu)?, &Tensor::zeros(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.logits()?.dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn logits(&self) -> Result<Tensor> {
        self.form.binary_logits(&self.param)
    }

    /// The probability of success, shape `batch`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Binomial;
    /// let cpu = Device::Cpu;
    /// let d = Binomial::from_logits(&Tensor::full(4.0f64, (2, 1), &cpu)?, &Tensor::zeros(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.probs()?.dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn probs(&self) -> Result<Tensor> {
        self.form.binary_probs(&self.param)
    }

    /// The values `0..=total_count` as Pyro's `enumerate_support`: shape `[n + 1] + batch` when
    /// `expand`, `[n + 1] + [1] * batch.len()` otherwise. As torch, every batch element must
    /// have the same `total_count` (else [`DistError::Invalid`]).
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::Binomial;
    /// let n = Tensor::new(&[3.0f32, 3.0], &Device::Cpu)?;
    /// let d = Binomial::from_logits(&n, &Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu)?)?;
    /// assert_eq!(d.enumerate_support(true)?.dims(), &[4, 2]);
    /// assert_eq!(d.enumerate_support(false)?.dims(), &[4, 1]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn enumerate_support(&self, expand: bool) -> Result<Tensor> {
        let counts = to_host(&self.total_count)?;
        let max = counts.iter().copied().fold(0.0, f64::max);
        let min = counts.iter().copied().fold(max, f64::min);
        if min != max {
            return Err(DistError::Invalid {
                dist: self.name(),
                msg: format!(
                    "enumerate_support needs one total_count for the whole batch, found {min} to {max}"
                ),
            });
        }
        enumerate_layout(self.count_values(max)?, &self.batch, expand)
    }

    /// `0, 1, …, n` in the distribution's dtype; an error for a count that `u32` indices
    /// cannot enumerate (or that is not a number, reachable with validation off).
    fn count_values(&self, n: f64) -> Result<Tensor> {
        if !(0.0..f64::from(u32::MAX)).contains(&n) {
            return Err(DistError::Invalid {
                dist: self.name(),
                msg: format!("cannot enumerate the values 0..={n} of total_count"),
            });
        }
        let n = n as u32;
        Ok(Tensor::arange(0u32, n + 1, self.param.device())?.to_dtype(self.dtype())?)
    }

    /// `log_prob` without the value checks: `k` broadcasts with the batch shape.
    fn log_prob_unchecked(&self, k: &Tensor) -> Result<Tensor> {
        let n = &self.total_count;
        let log_factorial = |x: &Tensor| lgamma(&x.affine(1.0, 1.0)?);
        let n_minus_k = n.broadcast_sub(k)?;
        let combinations = log_factorial(n)?
            .broadcast_sub(&log_factorial(k)?)?
            .broadcast_sub(&log_factorial(&n_minus_k)?)?;
        match self.form {
            Form::Logits => {
                // k·l − n·softplus(l): no cancellation for any l
                let logits = &self.param;
                Ok(k.broadcast_mul(logits)?
                    .broadcast_sub(&(n * softplus(logits)?)?)?
                    .broadcast_add(&combinations)?)
            }
            Form::Probs => {
                // k ln p + (n − k) ln(1 − p) from p itself (torch's clamped logits are off
                // for p below eps)
                let shape = combinations.dims();
                let p = self.param.broadcast_as(shape)?;
                let kernel = binary_log_kernel(
                    &k.broadcast_as(shape)?,
                    &n_minus_k.broadcast_as(shape)?,
                    &p,
                )?;
                Ok((kernel + combinations)?)
            }
        }
    }
}

impl Distribution for Binomial {
    dist_common!("Binomial", param);

    fn has_enumerate_support(&self) -> bool {
        true
    }

    fn enumerate_support(&self, expand: bool) -> Result<Tensor> {
        Binomial::enumerate_support(self, expand)
    }

    fn sample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        let counts = to_host(&self.total_count)?;
        let probs = to_host(&self.probs()?)?;
        let samplers = counts
            .into_iter()
            .zip(probs)
            .map(|(n, p)| {
                if !(n >= 0.0 && n.fract() == 0.0 && n < u64::MAX as f64) {
                    return Err(bad_sampler_param(self.name(), "total_count", n));
                }
                rand_distr::Binomial::new(n as u64, p)
                    .map_err(|_| bad_sampler_param(self.name(), "probs", p))
            })
            .collect::<Result<Vec<_>>>()?;
        draw_each(self, &samplers, sample_shape, rng, |b, r| {
            b.sample(r) as f64
        })
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let value = float_value(value, self.dtype())?;
        validate_value(self, &value)?;
        self.log_prob_unchecked(&value)
    }

    fn entropy(&self) -> Result<Tensor> {
        if self.total_count.elem_count() == 0 {
            return Ok(self.total_count.zeros_like()?);
        }
        let max = to_host(&self.total_count.flatten_all()?.max(0)?)?
            .first()
            .copied()
            .unwrap_or(0.0);
        let k = enumerate_layout(self.count_values(max)?, &self.batch, false)?;
        // Values above an element's own count have probability 0: evaluate them at the count
        // (so every term stays finite, in value and gradient) and mask them out.
        let inside = k.broadcast_le(&self.total_count)?;
        let lp = self.log_prob_unchecked(&k.broadcast_minimum(&self.total_count)?)?;
        // p ln p with 0 ln 0 = 0 (a count of probability 0 has ln p = −∞)
        let impossible = lp.eq(f64::NEG_INFINITY)?;
        let lp_finite = impossible.where_cond(&lp.zeros_like()?, &lp)?;
        let plogp = (lp.exp()? * lp_finite)?;
        let plogp = inside.where_cond(&plogp, &plogp.zeros_like()?)?;
        Ok(plogp.sum(0)?.neg()?)
    }

    fn mean(&self) -> Result<Tensor> {
        Ok((&self.total_count * self.probs()?)?)
    }

    fn variance(&self) -> Result<Tensor> {
        let p = self.probs()?;
        Ok(((&self.total_count * &p)? * p.affine(-1.0, 1.0)?)?)
    }

    fn support(&self) -> Constraint {
        Constraint::IntegerInterval {
            low: 0.0.into(),
            high: (&self.total_count).into(),
        }
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            let e = |t: &Tensor| expand_param(self.name(), &self.batch, t, batch_shape, 0);
            Ok(Box::new(Binomial {
                total_count: e(&self.total_count)?,
                param: e(&self.param)?,
                form: self.form,
                batch: batch_shape.to_vec(),
            }))
        })
    }
}
