//! The `Distribution` trait that every family and wrapper implements.

use std::any::Any;
use std::fmt::Debug;

use candle_core::{DType, Device, Tensor};
use rand::RngCore;

use crate::constraint::Constraint;
use crate::error::{BadValue, DistError, Result, kind_of};
use crate::wrappers::{Independent, Masked, NoRsample};

/// A batch of probability distributions over tensor-valued events, as
/// `torch.distributions.Distribution`.
///
/// Shapes follow torch: a draw has shape `sample_shape + batch_shape + event_shape`;
/// `log_prob` of such a value has shape `sample_shape + batch_shape`. The trait is object safe
/// so that a trace can hold any distribution as `Box<dyn Distribution>`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use rand::SeedableRng;
/// use vi_dist::{Distribution, Normal};
/// let loc = Tensor::zeros(3, candle_core::DType::F64, &Device::Cpu)?;
/// let scale = Tensor::ones(3, candle_core::DType::F64, &Device::Cpu)?;
/// let d = Normal::new(&loc, &scale)?.to_event(1)?;
/// assert_eq!((d.batch_shape(), d.event_shape()), (&[][..], &[3][..]));
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let x = d.rsample(&[5], &mut rng)?;
/// assert_eq!(x.dims(), &[5, 3]);
/// assert_eq!(d.log_prob(&x)?.dims(), &[5]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub trait Distribution: Debug + Send + Sync + 'static {
    /// The family name, as torch spells it (`"Normal"`, `"Independent"`, …).
    fn name(&self) -> &'static str;

    /// The shape of the batch of independent, non-identical distributions.
    fn batch_shape(&self) -> &[usize];

    /// The shape of one event (a single draw of one distribution of the batch).
    fn event_shape(&self) -> &[usize];

    /// The dtype of draws and of `log_prob`.
    fn dtype(&self) -> DType;

    /// The device the parameters live on.
    fn device(&self) -> &Device;

    /// Draw `sample_shape` samples without gradient.
    fn sample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor>;

    /// Whether [`rsample`](Self::rsample) is available.
    fn has_rsample(&self) -> bool {
        false
    }

    /// Draw `sample_shape` reparameterised samples: differentiable in the parameters.
    fn rsample(&self, _sample_shape: &[usize], _rng: &mut dyn RngCore) -> Result<Tensor> {
        Err(DistError::NoRsample { dist: self.name() })
    }

    /// Log density (or mass) of `value`, whose shape must end in `event_shape` and broadcast
    /// with `batch_shape`; the result has the broadcast batch shape.
    fn log_prob(&self, value: &Tensor) -> Result<Tensor>;

    /// `log_prob(value)` summed over the rightmost `dims` batch dims in one op, for a family
    /// that has such a fused path; `None` (the default) when it has none, and the caller sums
    /// [`log_prob`](Self::log_prob) itself. [`Independent::log_prob`](Independent) asks its
    /// base for this first (with `dims` ≥ 1, after checking the value's shape against the
    /// wrapper), so a family with a fused summed density only overrides this method.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Distribution, Gamma, Normal};
    /// let t = Tensor::ones((2, 3), DType::F64, &Device::Cpu)?;
    /// let x = Tensor::zeros((2, 3), DType::F64, &Device::Cpu)?;
    /// let summed = Normal::new(&x, &t)?.log_prob_summed(&x, 1).expect("Normal has one")?;
    /// assert_eq!(summed.dims(), &[2]);
    /// assert!(Gamma::new(&t, &t)?.log_prob_summed(&t, 1).is_none());
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    fn log_prob_summed(&self, _value: &Tensor, _dims: usize) -> Option<Result<Tensor>> {
        None
    }

    /// Whether the support is finite and [`enumerate_support`](Self::enumerate_support) lists
    /// it (Bernoulli, Categorical, OneHotCategorical, Binomial, and the wrappers around them
    /// that keep their events): Pyro's `has_enumerate_support`, what marks a site as one that
    /// inference can sum out.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Bernoulli, Distribution, Normal};
    /// let t = Tensor::zeros(3, DType::F64, &Device::Cpu)?;
    /// assert!(Bernoulli::from_logits(&t)?.has_enumerate_support());
    /// assert!(!Normal::new(&t, &t.ones_like()?)?.has_enumerate_support());
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    fn has_enumerate_support(&self) -> bool {
        false
    }

    /// Every value of a finite support, along a new leftmost dim, as torch's
    /// `enumerate_support(expand)`: shape `[n] + batch_shape + event_shape` when `expand`,
    /// `[n] + [1] * batch_shape.len() + event_shape` otherwise (the values broadcast against
    /// the batch). A distribution without a finite support is [`DistError::NotEnumerable`].
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Categorical, DistError, Distribution, Normal};
    /// let logits = Tensor::zeros((2, 3), DType::F64, &Device::Cpu)?;
    /// let d: Box<dyn Distribution> = Box::new(Categorical::from_logits(&logits)?);
    /// assert_eq!(d.enumerate_support(false)?.dims(), &[3, 1]);
    /// assert_eq!(d.enumerate_support(true)?.dims(), &[3, 2]);
    /// let n = Normal::new(&logits, &logits.ones_like()?)?;
    /// assert!(matches!(n.enumerate_support(false), Err(DistError::NotEnumerable { .. })));
    /// # Ok::<(), DistError>(())
    /// ```
    fn enumerate_support(&self, _expand: bool) -> Result<Tensor> {
        Err(DistError::NotEnumerable {
            dist: self.describe(),
        })
    }

    /// `log_prob` of the whole support at once, for a family that can read it off its
    /// parameters without materialising the broadcast: `value` is the support as
    /// enumeration lays it out (`enumerate_support(false)` with its values along `dim`,
    /// negative: shape `[n] + [1] * (|dim| − 1) + event_shape`), and the result equals
    /// `log_prob(value)`. `None` (the default, and for a `value` of another shape) when there
    /// is no such path; the caller then calls `log_prob`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Categorical, Distribution};
    /// let logits = Tensor::new(&[[0.1f64, 0.5, -0.2], [1.0, 0.0, 0.3]], &Device::Cpu)?;
    /// let d = Categorical::from_logits(&logits)?; // batch [2], 3 classes
    /// let values = d.enumerate_support(false)?.reshape((3, 1, 1))?; // along dim -3
    /// let fast = d.log_prob_enumerated(&values, -3).expect("Categorical has one")?;
    /// assert_eq!(fast.dims(), &[3, 1, 2]);
    /// let slow = d.log_prob(&values)?;
    /// assert_eq!(fast.flatten_all()?.to_vec1::<f64>()?, slow.flatten_all()?.to_vec1::<f64>()?);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    fn log_prob_enumerated(&self, _value: &Tensor, _dim: isize) -> Option<Result<Tensor>> {
        None
    }

    /// Entropy, shape `batch_shape`.
    fn entropy(&self) -> Result<Tensor>;

    /// Mean, shape `batch_shape + event_shape` (may be `inf`/`nan` where undefined, as torch).
    fn mean(&self) -> Result<Tensor>;

    /// Variance, shape `batch_shape + event_shape`.
    fn variance(&self) -> Result<Tensor>;

    /// The set draws lie in.
    fn support(&self) -> Constraint;

    /// The same family with batch shape broadcast to `batch_shape` (parameters are views).
    /// `#[track_caller]`: implementations attach the caller's location to their errors
    /// ([`DistError::at`]).
    #[track_caller]
    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>>;

    /// A boxed copy (cheap: tensors share storage).
    fn clone_box(&self) -> Box<dyn Distribution>;

    /// For KL dispatch on the concrete type.
    fn as_any(&self) -> &dyn Any;

    /// Reinterpret the rightmost `n` batch dims as event dims, as Pyro's `.to_event(n)`.
    #[track_caller]
    fn to_event(&self, n: usize) -> Result<Independent> {
        Independent::new(self.clone_box(), n)
    }

    /// Mask `log_prob` with a boolean (`u8`) tensor broadcastable to the batch shape, as
    /// Pyro's `.mask(m)`: masked-out elements contribute 0.
    #[track_caller]
    fn mask(&self, mask: &Tensor) -> Result<Masked> {
        Masked::new(self.clone_box(), mask)
    }

    /// Checks `value` before [`log_prob`](Self::log_prob) as [`validate_value`] does (kind and
    /// shape always, support with validation on) and returns the shape of its log-density.
    /// Wrappers that count only some elements ([`Masked`]) check the support only there, so a
    /// placeholder (NaN for missing data) where the mask is clear passes.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::{Distribution, Normal};
    /// let d = Normal::new(&Tensor::zeros(3, candle_core::DType::F64, &Device::Cpu)?, &Tensor::ones(3, candle_core::DType::F64, &Device::Cpu)?)?;
    /// let x = Tensor::new(&[0.5f64, f64::NAN, 1.0], &Device::Cpu)?;
    /// assert!(d.validate(&x).is_err()); // NaN is outside `real`
    /// let keep = Tensor::new(&[1u8, 0, 1], &Device::Cpu)?;
    /// assert_eq!(d.mask(&keep)?.validate(&x)?, vec![3]); // ... unless masked out
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    fn validate(&self, value: &Tensor) -> Result<Vec<usize>> {
        validate_value(self, value)
    }

    /// A point of the support with the dtype and device of `value` and its shape (broadcast
    /// with the distribution's where they differ): what [`Masked`] puts in place of masked-out
    /// values, so that a placeholder there (NaN for missing data) neither fails a check nor
    /// makes a gradient NaN. The default is [`Constraint::feasible_like`] of
    /// [`support`](Self::support); a distribution whose support is narrower than the
    /// constraint it reports overrides it ([`TransformedDistribution`](crate::TransformedDistribution)
    /// pushes a point of its base's support through its transforms), and the wrappers ask
    /// their base.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::transforms::Exp;
    /// use vi_dist::{Distribution, TransformedDistribution, Uniform};
    /// let cpu = Device::Cpu;
    /// let u = Uniform::new(&Tensor::new(&[1.0f64], &cpu)?, &Tensor::new(&[2.0f64], &cpu)?)?;
    /// let d = TransformedDistribution::new(Box::new(u), vec![Box::new(Exp)])?;
    /// // support `positive`, but the law lives on (e, e²): e^1.5, not 1
    /// let x = d.feasible_like(&Tensor::zeros(1, DType::F64, &cpu)?)?.to_vec1::<f64>()?;
    /// assert!((x[0] - 1.5f64.exp()).abs() < 1e-12);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    fn feasible_like(&self, value: &Tensor) -> Result<Tensor> {
        self.support().feasible_like(value)
    }

    /// The same distribution without its reparameterised sampler (Pyro's
    /// `.has_rsample_(False)`): inference then takes the score-function path at its sites.
    fn without_rsample(&self) -> NoRsample {
        NoRsample::new(self.clone_box())
    }

    /// `sample_shape + batch_shape + event_shape`.
    fn extended_shape(&self, sample_shape: &[usize]) -> Vec<usize> {
        crate::broadcast::extended_shape(sample_shape, self.batch_shape(), self.event_shape())
    }

    /// The name with its wrappers, as error messages print it: the family's
    /// [`name`](Self::name) by default; a wrapper names its base, e.g.
    /// `Independent(Normal, 1)`, `Expanded(Normal, [4, 3])`, `Masked(Normal)`,
    /// `NoRsample(Normal)`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Distribution, Normal};
    /// let t = Tensor::ones((2, 3), DType::F32, &Device::Cpu)?;
    /// let d = Normal::new(&t, &t)?;
    /// assert_eq!(d.describe(), "Normal");
    /// assert_eq!(d.to_event(1)?.describe(), "Independent(Normal, 1)");
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    fn describe(&self) -> String {
        self.name().to_string()
    }
}

impl Clone for Box<dyn Distribution> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// Check a value against a distribution before `log_prob`, as torch's `_validate_sample`:
/// it must have the distribution's dtype and device, its trailing dims must equal the event
/// shape and the rest must broadcast with the batch shape (always checked, no device sync);
/// with validation on, it must lie in the support. (Discrete families convert integer values
/// to their dtype before calling this.)
///
/// Returns the shape of the result of `log_prob` (`broadcast(value batch dims, batch_shape)`).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use vi_dist::{Distribution, Normal, validate_value};
/// let loc = Tensor::zeros(3, DType::F64, &Device::Cpu)?;
/// let d = Normal::new(&loc, &loc.ones_like()?)?;
/// let value = Tensor::zeros((5, 1), DType::F64, &Device::Cpu)?;
/// assert_eq!(validate_value(&d, &value)?, vec![5, 3]);
/// assert!(validate_value(&d, &Tensor::zeros(2, DType::F64, &Device::Cpu)?).is_err());
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn validate_value<D: Distribution + ?Sized>(d: &D, value: &Tensor) -> Result<Vec<usize>> {
    value_kind(d, value)?;
    let out = value_batch_shape(d, value)?;
    if crate::validation::validation_enabled() {
        let support = d.support();
        if crate::validation::known_in(value, &support) {
            return Ok(out);
        }
        let as_float = discrete_value_as_float(d, value)?;
        if !support.all(&as_float)? {
            return Err(value_support_error(d.name(), &support, &as_float));
        }
        crate::validation::remember_in(value, &support);
    }
    Ok(out)
}

/// Whether `dtype` is one of candle's integer dtypes.
fn is_integer(dtype: candle_core::DType) -> bool {
    use candle_core::DType;
    matches!(dtype, DType::U8 | DType::U32 | DType::I64)
}

/// An integer-typed value of a distribution with a discrete support (a count, an index, a
/// 0/1 outcome: torch and Pyro take these as integer tensors, and the discrete families'
/// `log_prob` does) as the distribution's float dtype, for the support check; any other value
/// as it is.
pub(crate) fn discrete_value_as_float<D: Distribution + ?Sized>(
    d: &D,
    value: &Tensor,
) -> Result<Tensor> {
    if is_integer(value.dtype()) && value.dtype() != d.dtype() && d.support().is_discrete() {
        Ok(value.to_dtype(d.dtype())?)
    } else {
        Ok(value.clone())
    }
}

/// The dtype and device part of [`validate_value`]: the distribution's dtype, or an integer
/// dtype where the support is discrete.
pub(crate) fn value_kind<D: Distribution + ?Sized>(d: &D, value: &Tensor) -> Result<()> {
    let dtype_ok =
        value.dtype() == d.dtype() || (is_integer(value.dtype()) && d.support().is_discrete());
    if !dtype_ok || !value.device().same_device(d.device()) {
        return Err(DistError::ValueKind {
            dist: d.name(),
            expected: kind_of(d.dtype(), d.device()),
            found: kind_of(value.dtype(), value.device()),
        });
    }
    Ok(())
}

/// The [`DistError::ValueSupport`] of `value` outside `support`, naming its first offending
/// element (read back to the host: the failure path only).
pub(crate) fn value_support_error(
    dist: &'static str,
    support: &Constraint,
    value: &Tensor,
) -> DistError {
    DistError::ValueSupport {
        dist,
        constraint: support.to_string(),
        shape: value.dims().to_vec(),
        found: violation(support, value),
    }
}

/// The first element of `value` outside `constraint` and its index, for a message; a
/// generic description if it cannot be found (it always can once a check has failed).
fn violation(constraint: &Constraint, value: &Tensor) -> Box<BadValue> {
    let (index, value) = match crate::constraint::first_violation(constraint, value) {
        Ok(Some(v)) => v,
        _ => (Vec::new(), "an element outside it".to_string()),
    };
    Box::new(BadValue { value, index })
}

/// `validate` for a wrapper whose shapes are not its base's: the shapes against the wrapper
/// ([`value_batch_shape`]), the support by the base (a masked base checks only the elements it
/// counts).
pub(crate) fn validate_wrapped(
    wrapper: &dyn Distribution,
    base: &dyn Distribution,
    value: &Tensor,
) -> Result<Vec<usize>> {
    let out = value_batch_shape(wrapper, value)?;
    base.validate(value)?;
    Ok(out)
}

/// The shape part of [`validate_value`] (no support check, no device sync): for wrappers,
/// whose base checks the support.
pub(crate) fn value_batch_shape<D: Distribution + ?Sized>(
    d: &D,
    value: &Tensor,
) -> Result<Vec<usize>> {
    let event = d.event_shape();
    let batch = d.batch_shape();
    let dims = value.dims();
    let shape_err = || DistError::ValueShape {
        dist: d.name(),
        value: dims.to_vec(),
        batch: batch.to_vec(),
        event: event.to_vec(),
    };
    if dims.len() < event.len() || &dims[dims.len() - event.len()..] != event {
        return Err(shape_err());
    }
    let value_batch = &dims[..dims.len() - event.len()];
    crate::broadcast::broadcast_shapes(&[value_batch, batch]).ok_or_else(shape_err)
}

/// With validation on, check that a parameter lies in `constraint` (one host sync; a failure
/// reads the parameter back once more to name its first offending element).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Constraint, DistError, validate_param};
/// let rate = Tensor::new(&[1.0f64, -1.0], &Device::Cpu)?;
/// let r = validate_param("MyFamily", "rate", &rate, &Constraint::Positive);
/// assert!(matches!(r, Err(DistError::ParamSupport { param: "rate", .. })));
/// assert_eq!(
///     r.unwrap_err().to_string(),
///     "MyFamily: parameter `rate` (shape [2]) is outside its support positive: -1.0 at [1]"
/// );
/// assert!(vi_dist::with_validation(false, || validate_param("MyFamily", "rate", &rate, &Constraint::Positive)).is_ok());
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn validate_param(
    dist: &'static str,
    param: &'static str,
    value: &Tensor,
    constraint: &Constraint,
) -> Result<()> {
    if !crate::validation::validation_enabled() || crate::validation::known_in(value, constraint) {
        return Ok(());
    }
    if !constraint.all(value)? {
        return Err(DistError::ParamSupport {
            dist,
            param,
            constraint: constraint.to_string(),
            shape: value.dims().to_vec(),
            found: violation(constraint, value),
        });
    }
    crate::validation::remember_in(value, constraint);
    Ok(())
}
