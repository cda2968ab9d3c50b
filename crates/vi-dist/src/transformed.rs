//! `TransformedDistribution`: a base distribution pushed through a chain of transforms.

use std::sync::Arc;

use candle_core::Tensor;
use rand::RngCore;

use crate::broadcast::{broadcasts_to, sum_rightmost};
use crate::constraint::Constraint;
use crate::distribution::Distribution;
use crate::error::{DistError, Result, located};
use crate::family::check_expand;
use crate::transforms::{Affine, Compose, Identity, IndependentTransform, Transform};
use crate::wrappers::Independent;

const NAME: &str = "TransformedDistribution";

/// The law of `y = f_n(… f_1(x))` for `x` drawn from a base distribution, as
/// `torch.distributions.TransformedDistribution`:
/// `log p(y) = log p_base(x) − Σᵢ log |det ∂fᵢ|` with `x` and the intermediate values
/// recovered by the inverses, walking the chain backwards.
///
/// **Shapes** follow torch. The chain's input event dims (the most any transform needs) move
/// that many of the base's batch dims into its event (the base is wrapped in
/// [`Independent`]); a transform whose parameters broadcast the shape (an [`Affine`] with a
/// tensor `loc`) expands the base to match. The event dims of the result are the larger of
/// the chain's output event dims and the base's event dims moved through the chain; the rest
/// of the output shape is the batch. Each log-determinant is summed over the event dims that
/// are batch dims of its transform.
///
/// - `sample` / `rsample`: a base draw pushed forward (`rsample` where the base has one, so
///   gradients reach the base's parameters and the transforms' tensors);
/// - `support`: the last transform's codomain, made [`Constraint::independent`] over the
///   remaining event dims (the base's own support with no transform);
/// - `mean` and `variance`: pushed through a chain of affine maps ([`Affine`], [`Identity`],
///   [`Compose`] and [`IndependentTransform`] of them), else [`DistError::Undefined`]; so is
///   `entropy`, which for an affine chain is the base's plus the constant log-determinant.
///   torch defines none of the three.
///
/// The base must be continuous (a discrete base has no density for a Jacobian to correct)
/// and every transform [injective](Transform::injective); both are typed errors at
/// construction. `KL(TD(p, T) ‖ TD(q, T))` with the same chain `T` ([`Transform::same_as`])
/// is `KL(p ‖ q)` in `vi-kl`, as torch's rule.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use vi_dist::transforms::Exp;
/// use vi_dist::{Constraint, Distribution, LogNormal, Normal, TransformedDistribution};
/// let cpu = Device::Cpu;
/// let (loc, scale) = (Tensor::new(&[0.0f64, 1.0], &cpu)?, Tensor::new(&[1.0f64, 0.5], &cpu)?);
/// let d = TransformedDistribution::new(Box::new(Normal::new(&loc, &scale)?), vec![Box::new(Exp)])?;
/// assert_eq!((d.batch_shape(), d.event_shape()), (&[2][..], &[][..]));
/// assert!(d.support().same_as(&Constraint::Positive));
/// // the same law as LogNormal
/// let y = Tensor::new(&[0.5f64, 3.0], &cpu)?;
/// let (a, b) = (d.log_prob(&y)?.to_vec1::<f64>()?, LogNormal::new(&loc, &scale)?.log_prob(&y)?.to_vec1::<f64>()?);
/// assert!(a.iter().zip(&b).all(|(a, b)| (a - b).abs() < 1e-12));
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct TransformedDistribution {
    /// The base as the chain reads it: expanded and with batch dims reinterpreted as needed.
    base: Box<dyn Distribution>,
    transforms: Vec<Arc<dyn Transform>>,
    batch: Vec<usize>,
    event: Vec<usize>,
    /// For each transform, how many trailing dims of its log-determinant to sum (the event
    /// dims of the result that are batch dims of the transform).
    ladj_dims: Vec<usize>,
    /// How many trailing dims of the base's `log_prob` to sum.
    base_dims: usize,
}

impl TransformedDistribution {
    /// `base` pushed through `transforms`, applied in order (an empty chain is the base
    /// itself).
    ///
    /// Errors ([`DistError::At`] the caller's line): [`DistError::Invalid`] for a discrete
    /// base or a base with fewer dims than the chain's input event dims;
    /// [`DistError::Transform`] for a transform that is not injective or whose parameters do
    /// not broadcast with the base's shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::transforms::{Affine, StickBreaking};
    /// use vi_dist::{DistError, Distribution, Normal, TransformedDistribution};
    /// let cpu = Device::Cpu;
    /// let n = Normal::new(&Tensor::zeros((4, 2), DType::F64, &cpu)?, &Tensor::ones((4, 2), DType::F64, &cpu)?)?;
    /// // stick breaking needs a vector event: the base's last batch dim becomes one
    /// let d = TransformedDistribution::new(Box::new(n.clone()), vec![Box::new(StickBreaking)])?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[4][..], &[3][..]));
    /// // an affine map whose loc does not broadcast with the base's shape [4, 2]
    /// let loc = Tensor::zeros(3, DType::F64, &cpu)?;
    /// let err = TransformedDistribution::new(Box::new(n), vec![Box::new(Affine::new(loc, 1.0))]).unwrap_err();
    /// assert!(matches!(err.kind(), DistError::Transform { transform: "affine", .. }));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn new(base: Box<dyn Distribution>, transforms: Vec<Box<dyn Transform>>) -> Result<Self> {
        located(|| Self::build(base, transforms.into_iter().map(Arc::from).collect()))
    }

    /// [`new`](Self::new) with transforms that are shared (cheap to clone: a guide can build
    /// the distribution at every step from the same chain).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Constraint, Distribution, Normal, Transform, TransformedDistribution, biject_to};
    /// let cpu = Device::Cpu;
    /// let to_unit: Arc<dyn Transform> = Arc::from(biject_to(&Constraint::interval(0.0, 2.0))?);
    /// let n = Normal::new(&Tensor::zeros(3, DType::F32, &cpu)?, &Tensor::ones(3, DType::F32, &cpu)?)?;
    /// let d = TransformedDistribution::with_shared(Box::new(n), vec![to_unit.clone()])?;
    /// assert_eq!(d.support().to_string(), "interval(0, 2)");
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn with_shared(
        base: Box<dyn Distribution>,
        transforms: Vec<Arc<dyn Transform>>,
    ) -> Result<Self> {
        located(|| Self::build(base, transforms))
    }

    /// The body of the constructors: torch's `TransformedDistribution.__init__`.
    fn build(base: Box<dyn Distribution>, transforms: Vec<Arc<dyn Transform>>) -> Result<Self> {
        let support = base.support();
        if support.is_discrete() {
            return Err(DistError::Invalid {
                dist: NAME,
                msg: format!(
                    "the base {} is discrete (support {support}): it has no density for a \
                     transform's Jacobian to correct",
                    base.describe()
                ),
            });
        }
        if let Some(t) = transforms.iter().find(|t| !t.injective()) {
            return Err(DistError::Transform {
                transform: t.name(),
                msg: "is not one-to-one on its domain, so the law of its image has no density \
                      of the form base density minus log-determinant"
                    .to_string(),
            });
        }
        let refs: Vec<&dyn Transform> = transforms.iter().map(|t| t.as_ref()).collect();
        let (domain_dims, codomain_dims) = crate::transforms::chain_event_dims(&refs);
        let base_shape = base.extended_shape(&[]);
        let base_event = base.event_shape().len();
        if base_shape.len() < domain_dims {
            return Err(DistError::Invalid {
                dist: NAME,
                msg: format!(
                    "the transforms ({}) need at least {domain_dims} dims per draw, the base {} \
                     has shape {base_shape:?} (batch {:?}, event {:?})",
                    names(&transforms),
                    base.describe(),
                    base.batch_shape(),
                    base.event_shape()
                ),
            });
        }
        let forward = chain_shape(&transforms, &base_shape, true)?;
        let expanded = chain_shape(&transforms, &forward, false)?;
        let mut base = base;
        if expanded != base_shape {
            let split = expanded.len().saturating_sub(base_event);
            base = base.expand(&expanded[..split])?;
        }
        if domain_dims > base_event {
            base = Box::new(Independent::new(base, domain_dims - base_event)?);
        }
        let event_dims = (base_event + codomain_dims)
            .saturating_sub(domain_dims)
            .max(codomain_dims);
        if forward.len() < event_dims {
            return Err(DistError::Invalid {
                dist: NAME,
                msg: format!(
                    "the transforms ({}) map shape {base_shape:?} to {forward:?}, fewer than \
                     the {event_dims} event dims of the result",
                    names(&transforms)
                ),
            });
        }
        let cut = forward.len() - event_dims;
        // The event dims of each transform's input, walking back from the output (torch's
        // `log_prob` loop), and what is left for the base.
        let mut ladj_dims = vec![0; transforms.len()];
        let mut e = event_dims;
        for (t, k) in transforms.iter().zip(ladj_dims.iter_mut()).rev() {
            e = (e + t.event_dim()).saturating_sub(t.codomain_event_dim());
            *k = e.saturating_sub(t.event_dim());
        }
        let base_dims = e.saturating_sub(base.event_shape().len());
        Ok(Self {
            base,
            transforms,
            batch: forward[..cut].to_vec(),
            event: forward[cut..].to_vec(),
            ladj_dims,
            base_dims,
        })
    }

    /// The base distribution as the chain reads it (torch's `base_dist`): expanded where a
    /// transform broadcasts the shape, and [`Independent`] where the chain needs more event
    /// dims than the base has.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::transforms::StickBreaking;
    /// use vi_dist::{Distribution, Normal, TransformedDistribution};
    /// let t = Tensor::zeros(3, DType::F64, &Device::Cpu)?;
    /// let d = TransformedDistribution::new(Box::new(Normal::new(&t, &t.ones_like()?)?), vec![Box::new(StickBreaking)])?;
    /// assert_eq!(d.base().describe(), "Independent(Normal, 1)");
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn base(&self) -> &dyn Distribution {
        self.base.as_ref()
    }

    /// The transforms, in the order they are applied.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::transforms::{Affine, Exp};
    /// use vi_dist::{Normal, TransformedDistribution};
    /// let t = Tensor::zeros(3, DType::F64, &Device::Cpu)?;
    /// let d = TransformedDistribution::new(
    ///     Box::new(Normal::new(&t, &t.ones_like()?)?),
    ///     vec![Box::new(Exp), Box::new(Affine::new(1.0, 2.0))],
    /// )?;
    /// let names: Vec<_> = d.transforms().iter().map(|t| t.name()).collect();
    /// assert_eq!(names, ["exp", "affine"]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn transforms(&self) -> &[Arc<dyn Transform>] {
        &self.transforms
    }

    /// Whether every transform is an affine map (so mean, variance and entropy have closed
    /// forms).
    fn affine_chain(&self) -> bool {
        self.transforms.iter().all(|t| is_affine(t.as_ref()))
    }

    /// [`DistError::Undefined`] for `what`.
    fn undefined(&self, what: &'static str) -> DistError {
        DistError::Undefined { dist: NAME, what }
    }
}

/// The transforms' names, comma separated, for messages.
fn names(transforms: &[Arc<dyn Transform>]) -> String {
    transforms
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `shape` through the chain's `forward_shape` (or backwards through `inverse_shape`).
fn chain_shape(
    transforms: &[Arc<dyn Transform>],
    shape: &[usize],
    forward: bool,
) -> Result<Vec<usize>> {
    let mut s = shape.to_vec();
    if forward {
        for t in transforms {
            s = t.forward_shape(&s)?;
        }
    } else {
        for t in transforms.iter().rev() {
            s = t.inverse_shape(&s)?;
        }
    }
    Ok(s)
}

/// Whether `t` is an affine map: [`Affine`], [`Identity`], or a [`Compose`] or
/// [`IndependentTransform`] of affine maps.
fn is_affine(t: &dyn Transform) -> bool {
    use crate::transforms::{downcast, is};
    if is::<Affine>(t) || is::<Identity>(t) {
        return true;
    }
    if let Some(c) = downcast::<Compose>(t) {
        return c.parts().iter().all(|p| is_affine(p.as_ref()));
    }
    downcast::<IndependentTransform>(t).is_some_and(|i| is_affine(i.base()))
}

/// The variance of `t(x)` from the variance `v` of `x`, for an affine `t` (elementwise:
/// `scale² · v`); `None` for any other transform.
fn push_variance(t: &dyn Transform, v: &Tensor) -> Option<Result<Tensor>> {
    use crate::transforms::{downcast, is};
    if is::<Identity>(t) {
        return Some(Ok(v.clone()));
    }
    if let Some(a) = downcast::<Affine>(t) {
        return Some((|| Ok(v.broadcast_mul(&a.scale().to_tensor(v)?.sqr()?)?))());
    }
    if let Some(c) = downcast::<Compose>(t) {
        let mut v = v.clone();
        for p in c.parts() {
            v = match push_variance(p.as_ref(), &v)? {
                Ok(v) => v,
                Err(e) => return Some(Err(e)),
            };
        }
        return Some(Ok(v));
    }
    downcast::<IndependentTransform>(t).and_then(|i| push_variance(i.base(), v))
}

/// `t` to `shape` where it broadcasts there (a parameter-free result such as the Jacobian of a
/// scalar affine map may be smaller), else an error naming both shapes.
fn to_shape(t: Tensor, shape: &[usize], what: &str) -> Result<Tensor> {
    if t.dims() == shape {
        Ok(t)
    } else if broadcasts_to(t.dims(), shape) {
        Ok(t.broadcast_as(shape)?)
    } else {
        Err(DistError::Invalid {
            dist: NAME,
            msg: format!("{what} has shape {:?}, expected {shape:?}", t.dims()),
        })
    }
}

impl Distribution for TransformedDistribution {
    fn name(&self) -> &'static str {
        NAME
    }

    fn batch_shape(&self) -> &[usize] {
        &self.batch
    }

    fn event_shape(&self) -> &[usize] {
        &self.event
    }

    fn dtype(&self) -> candle_core::DType {
        self.base.dtype()
    }

    fn device(&self) -> &candle_core::Device {
        self.base.device()
    }

    fn sample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        let mut x = self.base.sample(sample_shape, rng)?;
        for t in &self.transforms {
            x = t.forward(&x)?;
        }
        Ok(x.detach())
    }

    fn has_rsample(&self) -> bool {
        self.base.has_rsample()
    }

    fn rsample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        if !self.base.has_rsample() {
            return Err(DistError::NoRsample { dist: NAME });
        }
        let mut x = self.base.rsample(sample_shape, rng)?;
        for t in &self.transforms {
            x = t.forward(&x)?;
        }
        Ok(x)
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let out = self.validate(value)?;
        let mut y = value.clone();
        let mut log_det: Option<Tensor> = None;
        for (t, &k) in self.transforms.iter().zip(&self.ladj_dims).rev() {
            let x = t.inverse(&y)?;
            let term = sum_rightmost(&t.log_abs_det_jacobian(&x, &y)?, k)?;
            log_det = Some(match log_det {
                Some(acc) => acc.broadcast_add(&term)?,
                None => term,
            });
            y = x;
        }
        let lp = sum_rightmost(&self.base.log_prob(&y)?, self.base_dims)?;
        let lp = match log_det {
            Some(j) => lp.broadcast_sub(&j)?,
            None => lp,
        };
        to_shape(lp, &out, "log_prob")
    }

    fn entropy(&self) -> Result<Tensor> {
        if !self.affine_chain() {
            return Err(self.undefined("entropy"));
        }
        // H(f(X)) = H(X) + E log |det J| and the Jacobian of an affine map is constant:
        // evaluate it anywhere (at 0).
        let mut x = Tensor::zeros(
            self.base.extended_shape(&[]),
            self.base.dtype(),
            self.base.device(),
        )?;
        let mut h = self.base.entropy()?;
        for (t, &k) in self.transforms.iter().zip(&self.ladj_dims) {
            let y = t.forward(&x)?;
            h = h.broadcast_add(&sum_rightmost(&t.log_abs_det_jacobian(&x, &y)?, k)?)?;
            x = y;
        }
        to_shape(h, &self.batch, "entropy")
    }

    fn mean(&self) -> Result<Tensor> {
        if !self.affine_chain() {
            return Err(self.undefined("mean"));
        }
        let mut m = self.base.mean()?;
        for t in &self.transforms {
            m = t.forward(&m)?;
        }
        to_shape(m, &self.extended_shape(&[]), "mean")
    }

    fn variance(&self) -> Result<Tensor> {
        if !self.affine_chain() {
            return Err(self.undefined("variance"));
        }
        let mut v = self.base.variance()?;
        for t in &self.transforms {
            v = push_variance(t.as_ref(), &v).ok_or_else(|| self.undefined("variance"))??;
        }
        to_shape(v, &self.extended_shape(&[]), "variance")
    }

    fn support(&self) -> Constraint {
        match self.transforms.last() {
            None => self.base.support(),
            Some(t) => {
                let c = t.codomain();
                let extra = self.event.len().saturating_sub(c.event_dim());
                c.independent(extra)
            }
        }
    }

    /// The image of a point of the base's support (the codomain may be larger than the
    /// law's support: `Uniform(1, 2)` through exp lives on (e, e²), not on all of
    /// `positive`), broadcast to `value`'s shape; no gradient.
    fn feasible_like(&self, value: &Tensor) -> Result<Tensor> {
        let shape = crate::broadcast::broadcast_shapes(&[value.dims(), &self.extended_shape(&[])])
            .unwrap_or_else(|| value.dims().to_vec());
        let x_shape = chain_shape(&self.transforms, &shape, false)?;
        let like = Tensor::zeros(x_shape, value.dtype(), value.device())?;
        let mut x = self.base.feasible_like(&like)?;
        for t in &self.transforms {
            x = t.forward(&x)?;
        }
        to_shape(x.detach(), &shape, "a point of the support")
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            check_expand(NAME, &self.batch, batch_shape)?;
            let expand_error = || DistError::Expand {
                dist: NAME,
                from: self.batch.clone(),
                to: batch_shape.to_vec(),
            };
            let shape: Vec<usize> = batch_shape.iter().chain(&self.event).copied().collect();
            let shape = chain_shape(&self.transforms, &shape, false)?;
            let split = shape
                .len()
                .checked_sub(self.base.event_shape().len())
                .ok_or_else(expand_error)?;
            let base = self
                .base
                .expand(&shape[..split])
                .map_err(|_| expand_error())?;
            Ok(Box::new(TransformedDistribution {
                base,
                transforms: self.transforms.clone(),
                batch: batch_shape.to_vec(),
                event: self.event.clone(),
                ladj_dims: self.ladj_dims.clone(),
                base_dims: self.base_dims,
            }))
        })
    }

    fn clone_box(&self) -> Box<dyn Distribution> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    /// `TransformedDistribution(BASE, [t1, t2, …])`, the base with its wrappers.
    fn describe(&self) -> String {
        format!(
            "{NAME}({}, [{}])",
            self.base.describe(),
            names(&self.transforms)
        )
    }
}
