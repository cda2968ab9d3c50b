//! The geometric distribution (failures before the first success).

use candle_core::Tensor;
use rand::RngCore;
use rand_distr::Distribution as _;

use crate::constraint::Constraint;
use crate::distribution::{Distribution, validate_param, validate_value};
use crate::error::{Result, located};
use crate::family::{dist_common, expand_param};
use crate::ops::{log1p, softplus};
use crate::probs::{Form, binary_param, float_value, host_samplers};
use crate::rng::draw_each;

/// `Geometric(probs)`: the number of failures before the first success in trials of success
/// probability `probs`, on `0, 1, 2, …`, as `torch.distributions.Geometric`:
/// `P(k) = (1 − p)ᵏ p`.
///
/// From probabilities (in `(0, 1]`), `log_prob(k) = k·ln(1 − p) + ln p` with
/// `P(0) = 1` when `p = 1`, as torch; from logits `l`, the same in the stable form
/// `−k·softplus(l) − softplus(−l)`. `mean = 1/p − 1`, `variance = (1/p − 1)/p`. Values may be
/// floats holding integers or integer tensors. Not reparameterisable.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Distribution, Geometric};
/// let d = Geometric::from_probs(&Tensor::new(0.25f64, &Device::Cpu)?)?;
/// let lp = d.log_prob(&Tensor::new(2.0f64, &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp - (0.75f64 * 0.75 * 0.25).ln()).abs() < 1e-12);
/// assert_eq!(d.mean()?.to_scalar::<f64>()?, 3.0);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Geometric {
    param: Tensor,
    form: Form,
    batch: Vec<usize>,
}

impl Geometric {
    /// Build from the probability of success of each trial, in `(0, 1]`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Geometric, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = Geometric::from_probs(&Tensor::full(0.5f64, (2, 3), &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2, 3][..], &[][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn from_probs(probs: &Tensor) -> Result<Self> {
        located(|| {
            let (param, batch) = binary_param("Geometric", probs, Form::Probs)?;
            // torch also rejects 0: the number of failures would be infinite.
            validate_param("Geometric", "probs", &param, &Constraint::Positive)?;
            Ok(Self {
                param,
                form: Form::Probs,
                batch,
            })
        })
    }

    /// Build from the log-odds of success of each trial (any real, not NaN).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Geometric, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = Geometric::from_logits(&Tensor::zeros((2, 3), DType::F64, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2, 3][..], &[][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn from_logits(logits: &Tensor) -> Result<Self> {
        located(|| {
            let (param, batch) = binary_param("Geometric", logits, Form::Logits)?;
            Ok(Self {
                param,
                form: Form::Logits,
                batch,
            })
        })
    }

    /// The log-odds of success, shape `batch`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Geometric;
    /// let cpu = Device::Cpu;
    /// let d = Geometric::from_probs(&Tensor::full(0.5f64, (2, 3), &cpu)?)?;
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
    /// use vi_dist::Geometric;
    /// let cpu = Device::Cpu;
    /// let d = Geometric::from_probs(&Tensor::full(0.5f64, (2, 3), &cpu)?)?;
    /// assert_eq!(d.probs()?.dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn probs(&self) -> Result<Tensor> {
        self.form.binary_probs(&self.param)
    }
}

impl Distribution for Geometric {
    dist_common!("Geometric", param);

    fn sample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        let samplers = host_samplers(
            self.name(),
            "probs",
            &self.probs()?,
            rand_distr::Geometric::new,
        )?;
        draw_each(
            self,
            &samplers,
            sample_shape,
            rng,
            // rand_distr returns u64::MAX for p = 0 (never a success).
            |g, r| match g.sample(r) {
                u64::MAX => f64::INFINITY,
                k => k as f64,
            },
        )
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let value = float_value(value, self.dtype())?;
        let out = validate_value(self, &value)?;
        let k = value.broadcast_as(out.as_slice())?;
        match self.form {
            Form::Logits => {
                let l = self.param.broadcast_as(out.as_slice())?;
                Ok(((&k * softplus(&l)?)? + softplus(&l.neg()?)?)?.neg()?)
            }
            Form::Probs => {
                let p = self.param.broadcast_as(out.as_slice())?;
                // k·ln(1 − p) is 0·(−inf) at p = 1, k = 0: use p = 0 there (the term is 0).
                let certain = (p.eq(1.0)? * k.eq(0.0)?)?;
                let p_safe = certain.where_cond(&p.zeros_like()?, &p)?;
                Ok(((&k * log1p(&p_safe.neg()?)?)? + p.log()?)?)
            }
        }
    }

    fn entropy(&self) -> Result<Tensor> {
        // binary cross-entropy of p against itself, divided by p: (softplus(l) − p·l) / p.
        let logits = self.logits()?;
        let p = self.probs()?;
        Ok(((softplus(&logits)? - (&p * logits)?)? / p)?)
    }

    fn mean(&self) -> Result<Tensor> {
        Ok(self.probs()?.recip()?.affine(1.0, -1.0)?)
    }

    fn variance(&self) -> Result<Tensor> {
        let p = self.probs()?;
        Ok((p.recip()?.affine(1.0, -1.0)? / p)?)
    }

    fn support(&self) -> Constraint {
        Constraint::NonNegativeInteger
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            Ok(Box::new(Geometric {
                param: expand_param(self.name(), &self.batch, &self.param, batch_shape, 0)?,
                form: self.form,
                batch: batch_shape.to_vec(),
            }))
        })
    }
}
