//! The multivariate normal distribution, parameterised by a lower Cholesky factor.

use std::f64::consts::PI;

use candle_core::{D, Tensor};
use rand::RngCore;

use crate::broadcast::broadcast_params;
use crate::constraint::Constraint;
use crate::distribution::{Distribution, validate_param, validate_value};
use crate::error::{DistError, Result, located};
use crate::family::{dist_common, expand_param, sample_by_rsample};
use crate::ops;
use crate::rng::standard_normal;

const NAME: &str = "MultivariateNormal";

/// The matrix the user gave, kept so that `covariance()` / `precision()` return it (and its
/// gradient path) rather than a round trip through the Cholesky factor.
#[derive(Clone, Debug)]
enum Given {
    ScaleTril,
    Covariance(Tensor),
    Precision(Tensor),
    DiagScale(Tensor),
}

/// `MultivariateNormal(loc, Σ)` over vectors of size `n`, as
/// `torch.distributions.MultivariateNormal`: density
/// `exp(−½ (x − μ)ᵀ Σ⁻¹ (x − μ)) / √((2π)ⁿ det Σ)`.
///
/// Stored as `loc` and the lower Cholesky factor `L` of `Σ = L Lᵀ`; built with a named
/// constructor for each parameterisation, so a scale is never passed where a covariance
/// belongs: [`from_scale_tril`](Self::from_scale_tril),
/// [`from_covariance`](Self::from_covariance), [`from_precision`](Self::from_precision),
/// [`from_diag_scale`](Self::from_diag_scale). Batch dims of `loc` and of the matrix
/// broadcast. Reparameterised: `loc + L ε`, `ε ~ N(0, I)`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Distribution, MultivariateNormal};
/// let loc = Tensor::zeros(2, candle_core::DType::F64, &Device::Cpu)?;
/// let cov = Tensor::new(&[[4.0f64, 2.0], [2.0, 5.0]], &Device::Cpu)?;
/// let d = MultivariateNormal::from_covariance(&loc, &cov)?;
/// assert_eq!(d.scale_tril().to_vec2::<f64>()?, vec![vec![2.0, 0.0], vec![1.0, 2.0]]);
/// assert_eq!(d.variance()?.to_vec1::<f64>()?, vec![4.0, 5.0]);
/// let lp = d.log_prob(&loc)?.to_scalar::<f64>()?;
/// assert!((lp + (2.0 * std::f64::consts::PI).ln() + 0.5 * 16f64.ln()).abs() < 1e-12);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct MultivariateNormal {
    loc: Tensor,
    scale_tril: Tensor,
    given: Given,
    batch: Vec<usize>,
    event: Vec<usize>,
}

/// Check that `loc` is `[.., n]` and `matrix` is `[.., n, n]`; returns `n`.
fn event_size(loc: &Tensor, param: &'static str, matrix: &Tensor) -> Result<usize> {
    let md = matrix.dims();
    let r = md.len();
    if r < 2 || md[r - 1] != md[r - 2] {
        return Err(DistError::ParamShape {
            dist: NAME,
            param,
            expected: "square matrices [.., n, n]".to_string(),
            found: md.to_vec(),
        });
    }
    let n = md[r - 1];
    if loc.dims().last() != Some(&n) {
        return Err(DistError::ParamShape {
            dist: NAME,
            param: "loc",
            expected: format!("[.., {n}] to match {param} of shape {md:?}"),
            found: loc.dims().to_vec(),
        });
    }
    Ok(n)
}

/// Name the distribution and parameter in a factorisation error.
fn in_param(param: &'static str, e: DistError) -> DistError {
    e.in_context(&format!("{NAME} `{param}`"))
}

impl MultivariateNormal {
    /// Build from `loc [.., n]` and a lower-triangular `scale_tril [.., n, n]` with positive
    /// diagonal (`Σ = L Lᵀ`), as torch's `scale_tril=`.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::{Distribution, MultivariateNormal};
    /// let loc = Tensor::zeros((4, 2), candle_core::DType::F64, &Device::Cpu)?;
    /// let l = Tensor::new(&[[1.0f64, 0.0], [0.5, 2.0]], &Device::Cpu)?;
    /// let d = MultivariateNormal::from_scale_tril(&loc, &l)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[4][..], &[2][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn from_scale_tril(loc: &Tensor, scale_tril: &Tensor) -> Result<Self> {
        located(|| {
            let n = event_size(loc, "scale_tril", scale_tril)?;
            let ([loc, l], batch) =
                broadcast_params(NAME, [("loc", loc, 1), ("scale_tril", scale_tril, 2)])?;
            validate_param(NAME, "loc", &loc, &Constraint::Real)?;
            validate_param(NAME, "scale_tril", scale_tril, &Constraint::LowerCholesky)?;
            Ok(Self::build(loc, l, Given::ScaleTril, batch, n))
        })
    }

    /// Build from `loc [.., n]` and a symmetric positive-definite `covariance [.., n, n]`, as
    /// torch's `covariance_matrix=`: `L = cholesky(Σ)`. A matrix without a Cholesky factor is
    /// an error even with validation off.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::MultivariateNormal;
    /// let loc = Tensor::zeros(2, candle_core::DType::F64, &Device::Cpu)?;
    /// let bad = Tensor::new(&[[1.0f64, 2.0], [2.0, 1.0]], &Device::Cpu)?;
    /// assert!(MultivariateNormal::from_covariance(&loc, &bad).is_err());
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn from_covariance(loc: &Tensor, covariance: &Tensor) -> Result<Self> {
        located(|| {
            let n = event_size(loc, "covariance_matrix", covariance)?;
            let ([loc, cov], batch) = broadcast_params(
                NAME,
                [("loc", loc, 1), ("covariance_matrix", covariance, 2)],
            )?;
            validate_param(NAME, "loc", &loc, &Constraint::Real)?;
            validate_param(
                NAME,
                "covariance_matrix",
                covariance,
                &Constraint::PositiveDefinite,
            )?;
            // Factor before broadcasting: one factorisation per distinct matrix.
            let l = ops::cholesky(covariance).map_err(|e| in_param("covariance_matrix", e))?;
            let l = l.broadcast_as(cov.dims())?;
            Ok(Self::build(loc, l, Given::Covariance(cov), batch, n))
        })
    }

    /// Build from `loc [.., n]` and a symmetric positive-definite `precision [.., n, n]`
    /// (`Σ⁻¹`), as torch's `precision_matrix=`: `L` from
    /// [`ops::precision_to_scale_tril`] (a Cholesky factor of the flipped precision and a
    /// triangular inverse, never the inverse of `P` itself).
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::{Distribution, MultivariateNormal};
    /// let loc = Tensor::zeros(2, candle_core::DType::F64, &Device::Cpu)?;
    /// let p = Tensor::new(&[[4.0f64, 0.0], [0.0, 0.25]], &Device::Cpu)?;
    /// let d = MultivariateNormal::from_precision(&loc, &p)?;
    /// assert_eq!(d.variance()?.to_vec1::<f64>()?, vec![0.25, 4.0]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn from_precision(loc: &Tensor, precision: &Tensor) -> Result<Self> {
        located(|| {
            let n = event_size(loc, "precision_matrix", precision)?;
            let ([loc, prec], batch) =
                broadcast_params(NAME, [("loc", loc, 1), ("precision_matrix", precision, 2)])?;
            validate_param(NAME, "loc", &loc, &Constraint::Real)?;
            validate_param(
                NAME,
                "precision_matrix",
                precision,
                &Constraint::PositiveDefinite,
            )?;
            let l = ops::precision_to_scale_tril(precision)
                .map_err(|e| in_param("precision_matrix", e))?;
            let l = l.broadcast_as(prec.dims())?;
            Ok(Self::build(loc, l, Given::Precision(prec), batch, n))
        })
    }

    /// Build from `loc [.., n]` and a vector of standard deviations `scale [.., n]` (> 0):
    /// `Σ = diag(scale²)`. The same distribution as `Normal(loc, scale).to_event(1)`; the
    /// name says *scale*, so a variance is not passed by mistake.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::{Distribution, MultivariateNormal};
    /// let loc = Tensor::zeros(2, candle_core::DType::F64, &Device::Cpu)?;
    /// let scale = Tensor::new(&[1.0f64, 3.0], &Device::Cpu)?;
    /// let d = MultivariateNormal::from_diag_scale(&loc, &scale)?;
    /// assert_eq!(d.variance()?.to_vec1::<f64>()?, vec![1.0, 9.0]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn from_diag_scale(loc: &Tensor, scale: &Tensor) -> Result<Self> {
        located(|| {
            let n = loc.dims().last().copied();
            if scale.rank() == 0 || scale.dims().last().copied() != n {
                return Err(DistError::ParamShape {
                    dist: NAME,
                    param: "scale",
                    expected: match n {
                        Some(n) => format!("[.., {n}] to match loc of shape {:?}", loc.dims()),
                        None => "a vector [.., n] (and loc [.., n])".to_string(),
                    },
                    found: scale.dims().to_vec(),
                });
            }
            let n = scale.dims()[scale.rank() - 1];
            let ([loc, scale], batch) =
                broadcast_params(NAME, [("loc", loc, 1), ("scale", scale, 1)])?;
            validate_param(NAME, "loc", &loc, &Constraint::Real)?;
            validate_param(NAME, "scale", &scale, &Constraint::Positive)?;
            let l = ops::diag_embed(&scale)?;
            Ok(Self::build(loc, l, Given::DiagScale(scale), batch, n))
        })
    }

    fn build(loc: Tensor, scale_tril: Tensor, given: Given, batch: Vec<usize>, n: usize) -> Self {
        Self {
            loc,
            scale_tril,
            given,
            batch,
            event: vec![n],
        }
    }

    /// The mean vector, shape `batch + [n]`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::MultivariateNormal;
    /// let cpu = Device::Cpu;
    /// let d = MultivariateNormal::from_diag_scale(&Tensor::zeros((2, 3), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.loc().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn loc(&self) -> &Tensor {
        &self.loc
    }

    /// The lower Cholesky factor `L` of the covariance, shape `batch + [n, n]`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::MultivariateNormal;
    /// let cpu = Device::Cpu;
    /// let d = MultivariateNormal::from_diag_scale(&Tensor::zeros((2, 3), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.scale_tril().dims(), &[2, 3, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn scale_tril(&self) -> &Tensor {
        &self.scale_tril
    }

    /// The covariance matrix `Σ = L Lᵀ` (the given one when built from a covariance), shape
    /// `batch + [n, n]`.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::MultivariateNormal;
    /// let loc = Tensor::zeros(2, candle_core::DType::F64, &Device::Cpu)?;
    /// let l = Tensor::new(&[[1.0f64, 0.0], [1.0, 1.0]], &Device::Cpu)?;
    /// let d = MultivariateNormal::from_scale_tril(&loc, &l)?;
    /// assert_eq!(d.covariance()?.to_vec2::<f64>()?, vec![vec![1.0, 1.0], vec![1.0, 2.0]]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn covariance(&self) -> Result<Tensor> {
        match &self.given {
            Given::Covariance(c) => Ok(c.clone()),
            Given::DiagScale(s) => Ok(ops::diag_embed(&s.sqr()?)?),
            _ => {
                let l = &self.scale_tril;
                ops::batch_matmul(l, &l.t()?)
            }
        }
    }

    /// The precision matrix `Σ⁻¹ = L⁻ᵀ L⁻¹` (the given one when built from a precision),
    /// shape `batch + [n, n]`.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::MultivariateNormal;
    /// let loc = Tensor::zeros(2, candle_core::DType::F64, &Device::Cpu)?;
    /// let cov = Tensor::new(&[[4.0f64, 0.0], [0.0, 16.0]], &Device::Cpu)?;
    /// let d = MultivariateNormal::from_covariance(&loc, &cov)?;
    /// assert_eq!(d.precision()?.to_vec2::<f64>()?, vec![vec![0.25, 0.0], vec![0.0, 0.0625]]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn precision(&self) -> Result<Tensor> {
        match &self.given {
            Given::Precision(p) => Ok(p.clone()),
            Given::DiagScale(s) => Ok(ops::diag_embed(&s.sqr()?.recip()?)?),
            _ => {
                let inv = ops::triangular_inverse(&self.scale_tril.contiguous()?, true)?;
                ops::batch_matmul(&inv.t()?, &inv)
            }
        }
    }

    /// The event size `n`.
    fn n(&self) -> usize {
        self.event[0]
    }
}

/// `‖L⁻¹ d‖²` for `d` of shape `lead + batch' + [n]` (batch' the broadcast of the value's
/// batch dims with `L`'s), batched: every leading index becomes a column of one solve.
pub(crate) fn mahalanobis(l: &Tensor, diff: &Tensor, lead: &[usize]) -> Result<Tensor> {
    let r = diff.rank();
    let n = diff.dims()[r - 1];
    let inner: Vec<usize> = diff.dims()[lead.len()..r - 1].to_vec();
    let l = l.broadcast_as(inner.iter().copied().chain([n, n]).collect::<Vec<_>>())?;
    let cols = ops::fold_leading(diff, lead.len())?;
    let z = ops::solve_triangular(&l, &cols, true)?;
    let m = z.sqr()?.sum_keepdim(D::Minus2)?;
    Ok(ops::unfold_leading(&m, lead)?.squeeze(D::Minus1)?)
}

impl Distribution for MultivariateNormal {
    dist_common!("MultivariateNormal", loc, event);

    sample_by_rsample!();

    fn rsample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        let shape = self.extended_shape(sample_shape);
        let eps = standard_normal(&shape, self.dtype(), self.device(), rng)?;
        let cols = ops::fold_leading(&eps, sample_shape.len())?;
        let y = ops::batch_matmul(&self.scale_tril, &cols)?;
        let y = ops::unfold_leading(&y, sample_shape)?;
        Ok(y.broadcast_add(&self.loc)?)
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let out = validate_value(self, value)?;
        let n = self.n();
        let lead = &out[..out.len() - self.batch.len()];
        let full: Vec<usize> = out.iter().copied().chain([n]).collect();
        let diff = value.broadcast_sub(&self.loc)?.broadcast_as(full)?;
        let m = mahalanobis(&self.scale_tril, &diff, lead)?;
        let half_logdet = ops::triangular_logdet(&self.scale_tril)?;
        let c = -0.5 * n as f64 * (2.0 * PI).ln();
        Ok(m.affine(-0.5, c)?.broadcast_sub(&half_logdet)?)
    }

    fn entropy(&self) -> Result<Tensor> {
        let n = self.n() as f64;
        let half_logdet = ops::triangular_logdet(&self.scale_tril)?;
        Ok(half_logdet.affine(1.0, 0.5 * n * (1.0 + (2.0 * PI).ln()))?)
    }

    fn mean(&self) -> Result<Tensor> {
        Ok(self.loc.clone())
    }

    fn variance(&self) -> Result<Tensor> {
        match &self.given {
            Given::DiagScale(s) => Ok(s.sqr()?),
            _ => Ok(self.scale_tril.sqr()?.sum(D::Minus1)?),
        }
    }

    fn support(&self) -> Constraint {
        Constraint::Real.independent(1)
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            let e = |t: &Tensor, rank| expand_param(NAME, &self.batch, t, batch_shape, rank);
            let given = match &self.given {
                Given::ScaleTril => Given::ScaleTril,
                Given::Covariance(c) => Given::Covariance(e(c, 2)?),
                Given::Precision(p) => Given::Precision(e(p, 2)?),
                Given::DiagScale(s) => Given::DiagScale(e(s, 1)?),
            };
            Ok(Box::new(Self {
                loc: e(&self.loc, 1)?,
                scale_tril: e(&self.scale_tril, 2)?,
                given,
                batch: batch_shape.to_vec(),
                event: self.event.clone(),
            }))
        })
    }
}
