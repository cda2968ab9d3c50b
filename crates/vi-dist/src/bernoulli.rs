//! The Bernoulli distribution.

use candle_core::Tensor;
use rand::RngCore;
use rand_distr::Distribution as _;

use crate::constraint::Constraint;
use crate::distribution::{Distribution, validate_value};
use crate::error::{Result, located};
use crate::family::{dist_common, expand_param};
use crate::probs::{
    Form, binary_log_kernel, binary_param, enumerate_layout, float_value, host_samplers,
};
use crate::rng::draw_each;

/// `Bernoulli(probs)` on {0, 1}: `P(1) = p`, as `torch.distributions.Bernoulli`.
///
/// Built from log-odds ([`from_logits`](Self::from_logits)) or probabilities
/// ([`from_probs`](Self::from_probs)); the other parameter is computed when asked, with
/// probabilities clamped to `[eps, 1 − eps]` before taking logs, as torch. `log_prob` is
/// `x·logits − softplus(logits)` (torch's `−binary_cross_entropy_with_logits`), finite for
/// every finite logit. Not reparameterisable: [`sample`](Distribution::sample) draws without
/// gradient.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Bernoulli, Distribution};
/// let d = Bernoulli::from_probs(&Tensor::new(&[0.25f64, 0.5], &Device::Cpu)?)?;
/// let lp = d.log_prob(&Tensor::new(&[1.0f64, 0.0], &Device::Cpu)?)?.to_vec1::<f64>()?;
/// assert!((lp[0] - 0.25f64.ln()).abs() < 1e-12 && (lp[1] - 0.5f64.ln()).abs() < 1e-12);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Bernoulli {
    param: Tensor,
    form: Form,
    batch: Vec<usize>,
}

impl Bernoulli {
    /// Build from log-odds `logits = ln(p / (1 − p))` (any real, not NaN).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Bernoulli, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = Bernoulli::from_logits(&Tensor::zeros((2, 3), DType::F64, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2, 3][..], &[][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn from_logits(logits: &Tensor) -> Result<Self> {
        located(|| Self::build(logits, Form::Logits))
    }

    /// Build from probabilities of 1, in `[0, 1]`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Bernoulli, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = Bernoulli::from_probs(&Tensor::full(0.5f64, (2, 3), &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2, 3][..], &[][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn from_probs(probs: &Tensor) -> Result<Self> {
        located(|| Self::build(probs, Form::Probs))
    }

    fn build(param: &Tensor, form: Form) -> Result<Self> {
        let (param, batch) = binary_param("Bernoulli", param, form)?;
        Ok(Self { param, form, batch })
    }

    /// The log-odds, shape `batch` (the parameter itself, or `ln p − ln(1 − p)` of the clamped
    /// probabilities).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Bernoulli;
    /// let cpu = Device::Cpu;
    /// let d = Bernoulli::from_logits(&Tensor::zeros((2, 3), DType::F64, &cpu)?)?;
    /// assert_eq!(d.logits()?.dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn logits(&self) -> Result<Tensor> {
        self.form.binary_logits(&self.param)
    }

    /// The probabilities of 1, shape `batch` (the parameter itself, or `sigmoid(logits)`).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Bernoulli;
    /// let cpu = Device::Cpu;
    /// let d = Bernoulli::from_logits(&Tensor::zeros((2, 3), DType::F64, &cpu)?)?;
    /// assert_eq!(d.probs()?.dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn probs(&self) -> Result<Tensor> {
        self.form.binary_probs(&self.param)
    }

    /// The support `{0, 1}` as Pyro's `enumerate_support`: shape `[2] + batch` when `expand`,
    /// `[2] + [1] * batch.len()` otherwise, in the distribution's dtype.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::Bernoulli;
    /// let d = Bernoulli::from_logits(&Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu)?)?;
    /// assert_eq!(d.enumerate_support(true)?.dims(), &[2, 3]);
    /// assert_eq!(d.enumerate_support(false)?.dims(), &[2, 1]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn enumerate_support(&self, expand: bool) -> Result<Tensor> {
        let values = Tensor::arange(0u32, 2, self.param.device())?.to_dtype(self.dtype())?;
        enumerate_layout(values, &self.batch, expand)
    }
}

impl Bernoulli {
    /// `x ln p + (1 − x) ln(1 − p)` from the probabilities themselves (exact for `p` below
    /// eps, where the logits torch derives from clamped probabilities are not).
    /// `out` is the broadcast shape [`validate_value`] returned.
    fn probs_log_prob(&self, value: &Tensor, out: &[usize]) -> Result<Tensor> {
        let k = value.broadcast_as(out)?;
        let p = self.param.broadcast_as(out)?;
        binary_log_kernel(&k, &k.affine(-1.0, 1.0)?, &p)
    }
}

impl Distribution for Bernoulli {
    dist_common!("Bernoulli", param);

    fn has_enumerate_support(&self) -> bool {
        true
    }

    fn enumerate_support(&self, expand: bool) -> Result<Tensor> {
        Bernoulli::enumerate_support(self, expand)
    }

    fn sample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        let samplers = host_samplers(
            self.name(),
            "probs",
            &self.probs()?,
            rand_distr::Bernoulli::new,
        )?;
        draw_each(self, &samplers, sample_shape, rng, |b, r| {
            f64::from(u8::from(b.sample(r)))
        })
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let value = float_value(value, self.dtype())?;
        let out = validate_value(self, &value)?;
        match self.form {
            Form::Logits => crate::ops::bernoulli_log_prob(&value, &self.param),
            Form::Probs => self.probs_log_prob(&value, &out),
        }
    }

    fn log_prob_summed(&self, value: &Tensor, dims: usize) -> Option<Result<Tensor>> {
        let summed = || {
            let value = float_value(value, self.dtype())?;
            let out = validate_value(self, &value)?;
            match self.form {
                Form::Logits => crate::ops::bernoulli_log_prob_sum(&value, &self.param, dims),
                Form::Probs => {
                    crate::broadcast::sum_rightmost(&self.probs_log_prob(&value, &out)?, dims)
                }
            }
        };
        Some(summed())
    }

    fn entropy(&self) -> Result<Tensor> {
        // binary cross-entropy of p against itself, from the logits: softplus(l) − p·l.
        let logits = self.logits()?;
        Ok((crate::ops::softplus(&logits)? - (self.probs()? * logits)?)?)
    }

    fn mean(&self) -> Result<Tensor> {
        self.probs()
    }

    fn variance(&self) -> Result<Tensor> {
        let p = self.probs()?;
        Ok((p.affine(-1.0, 1.0)? * p)?)
    }

    fn support(&self) -> Constraint {
        Constraint::Boolean
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            Ok(Box::new(Bernoulli {
                param: expand_param(self.name(), &self.batch, &self.param, batch_shape, 0)?,
                form: self.form,
                batch: batch_shape.to_vec(),
            }))
        })
    }
}
