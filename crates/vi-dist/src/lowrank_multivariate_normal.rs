//! The multivariate normal with low-rank-plus-diagonal covariance.

use std::f64::consts::PI;

use candle_core::{D, Tensor};
use rand::RngCore;

use crate::broadcast::broadcast_params;
use crate::constraint::Constraint;
use crate::distribution::{Distribution, validate_param, validate_value};
use crate::error::{DistError, Result, located};
use crate::family::{dist_common, expand_param, sample_by_rsample};
use crate::multivariate_normal::mahalanobis;
use crate::ops;
use crate::rng::standard_normal;

const NAME: &str = "LowRankMultivariateNormal";

/// `LowRankMultivariateNormal(loc, W, D)`: the normal with covariance `Σ = W Wᵀ + diag(D)`,
/// `W [.., n, r]`, `D [.., n] > 0`, as `torch.distributions.LowRankMultivariateNormal`.
///
/// `log_prob` and `entropy` never form `Σ`: with the capacitance matrix
/// `C = I + Wᵀ D⁻¹ W` (`r × r`) and its Cholesky factor `L_C`, Woodbury's identity gives
/// `xᵀ Σ⁻¹ x = xᵀ D⁻¹ x − ‖L_C⁻¹ Wᵀ D⁻¹ x‖²` and the determinant lemma
/// `ln det Σ = 2 Σ ln diag L_C + Σ ln D`. Reparameterised: `loc + W ε₁ + √D ε₂`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Distribution, LowRankMultivariateNormal};
/// let loc = Tensor::zeros(3, candle_core::DType::F64, &Device::Cpu)?;
/// let w = Tensor::new(&[[1.0f64], [0.0], [2.0]], &Device::Cpu)?;
/// let d = Tensor::new(&[1.0f64, 1.0, 1.0], &Device::Cpu)?;
/// let mvn = LowRankMultivariateNormal::new(&loc, &w, &d)?;
/// assert_eq!(mvn.variance()?.to_vec1::<f64>()?, vec![2.0, 1.0, 5.0]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct LowRankMultivariateNormal {
    loc: Tensor,
    cov_factor: Tensor,
    cov_diag: Tensor,
    /// Cholesky factor of the capacitance matrix `I + Wᵀ D⁻¹ W`, `batch + [r, r]`.
    capacitance_tril: Tensor,
    batch: Vec<usize>,
    event: Vec<usize>,
}

impl LowRankMultivariateNormal {
    /// Build from `loc [.., n]`, `cov_factor [.., n, r]` and `cov_diag [.., n]` (> 0); batch
    /// dims broadcast.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::LowRankMultivariateNormal;
    /// let loc = Tensor::zeros(3, DType::F64, &Device::Cpu)?;
    /// let w = Tensor::zeros((2, 1), DType::F64, &Device::Cpu)?; // wrong n
    /// let d = Tensor::ones(3, DType::F64, &Device::Cpu)?;
    /// assert!(LowRankMultivariateNormal::new(&loc, &w, &d).is_err());
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn new(loc: &Tensor, cov_factor: &Tensor, cov_diag: &Tensor) -> Result<Self> {
        located(|| {
            let Some(&n) = loc.dims().last() else {
                return Err(DistError::ParamShape {
                    dist: NAME,
                    param: "loc",
                    expected: "a vector [.., n]".to_string(),
                    found: vec![],
                });
            };
            let wd = cov_factor.dims();
            if wd.len() < 2 || wd[wd.len() - 2] != n {
                return Err(DistError::ParamShape {
                    dist: NAME,
                    param: "cov_factor",
                    expected: format!("[.., {n}, r] to match loc of shape {:?}", loc.dims()),
                    found: wd.to_vec(),
                });
            }
            if cov_diag.dims().last() != Some(&n) {
                return Err(DistError::ParamShape {
                    dist: NAME,
                    param: "cov_diag",
                    expected: format!("[.., {n}] to match loc of shape {:?}", loc.dims()),
                    found: cov_diag.dims().to_vec(),
                });
            }
            let ([loc, cov_factor, cov_diag], batch) = broadcast_params(
                NAME,
                [
                    ("loc", loc, 1),
                    ("cov_factor", cov_factor, 2),
                    ("cov_diag", cov_diag, 1),
                ],
            )?;
            validate_param(NAME, "loc", &loc, &Constraint::Real)?;
            validate_param(NAME, "cov_factor", &cov_factor, &Constraint::Real)?;
            validate_param(NAME, "cov_diag", &cov_diag, &Constraint::Positive)?;
            let capacitance_tril = capacitance_tril(&cov_factor, &cov_diag)?;
            Ok(Self {
                loc,
                cov_factor,
                cov_diag,
                capacitance_tril,
                batch,
                event: vec![n],
            })
        })
    }

    /// The mean vector, shape `batch + [n]`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::LowRankMultivariateNormal;
    /// let cpu = Device::Cpu;
    /// let d = LowRankMultivariateNormal::new(&Tensor::zeros((2, 3), DType::F64, &cpu)?, &Tensor::zeros((3, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.loc().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn loc(&self) -> &Tensor {
        &self.loc
    }

    /// The low-rank factor `W`, shape `batch + [n, r]`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::LowRankMultivariateNormal;
    /// let cpu = Device::Cpu;
    /// let d = LowRankMultivariateNormal::new(&Tensor::zeros((2, 3), DType::F64, &cpu)?, &Tensor::zeros((3, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.cov_factor().dims(), &[2, 3, 1]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn cov_factor(&self) -> &Tensor {
        &self.cov_factor
    }

    /// The diagonal part `D` of the covariance, shape `batch + [n]`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::LowRankMultivariateNormal;
    /// let cpu = Device::Cpu;
    /// let d = LowRankMultivariateNormal::new(&Tensor::zeros((2, 3), DType::F64, &cpu)?, &Tensor::zeros((3, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.cov_diag().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn cov_diag(&self) -> &Tensor {
        &self.cov_diag
    }

    /// The covariance matrix `W Wᵀ + diag(D)`, shape `batch + [n, n]`.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::LowRankMultivariateNormal;
    /// let loc = Tensor::zeros(2, candle_core::DType::F64, &Device::Cpu)?;
    /// let w = Tensor::new(&[[1.0f64], [2.0]], &Device::Cpu)?;
    /// let d = Tensor::new(&[1.0f64, 1.0], &Device::Cpu)?;
    /// let mvn = LowRankMultivariateNormal::new(&loc, &w, &d)?;
    /// assert_eq!(mvn.covariance()?.to_vec2::<f64>()?, vec![vec![2.0, 2.0], vec![2.0, 5.0]]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn covariance(&self) -> Result<Tensor> {
        let w = &self.cov_factor;
        Ok((ops::batch_matmul(w, &w.t()?)? + ops::diag_embed(&self.cov_diag)?)?)
    }

    /// The lower Cholesky factor of [`covariance`](Self::covariance).
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::LowRankMultivariateNormal;
    /// let loc = Tensor::zeros(2, candle_core::DType::F64, &Device::Cpu)?;
    /// let w = Tensor::new(&[[0.0f64], [0.0]], &Device::Cpu)?;
    /// let d = Tensor::new(&[4.0f64, 9.0], &Device::Cpu)?;
    /// let l = LowRankMultivariateNormal::new(&loc, &w, &d)?.scale_tril()?;
    /// assert_eq!(l.to_vec2::<f64>()?, vec![vec![2.0, 0.0], vec![0.0, 3.0]]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn scale_tril(&self) -> Result<Tensor> {
        ops::cholesky(&self.covariance()?)
    }
}

/// Cholesky factor of `I + Wᵀ D⁻¹ W` (torch's `_batch_capacitance_tril`).
fn capacitance_tril(w: &Tensor, d: &Tensor) -> Result<Tensor> {
    let r = w.dims()[w.rank() - 1];
    let wt_dinv = wt_dinv(w, d)?;
    let k = ops::batch_matmul(&wt_dinv, w)?;
    let k = k.broadcast_add(&Tensor::eye(r, w.dtype(), w.device())?)?;
    ops::cholesky(&k).map_err(|e| e.in_context(&format!("{NAME} capacitance matrix I + Wᵀ D⁻¹ W")))
}

/// `Wᵀ D⁻¹`, shape `batch + [r, n]`.
fn wt_dinv(w: &Tensor, d: &Tensor) -> Result<Tensor> {
    Ok(w.broadcast_div(&d.unsqueeze(D::Minus1)?)?.t()?)
}

impl Distribution for LowRankMultivariateNormal {
    dist_common!("LowRankMultivariateNormal", loc, event);

    sample_by_rsample!();

    fn rsample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        let wd = self.cov_factor.dims();
        let rank = wd[wd.len() - 1];
        let w_shape: Vec<usize> = sample_shape
            .iter()
            .chain(&self.batch)
            .copied()
            .chain([rank])
            .collect();
        let eps_w = standard_normal(&w_shape, self.dtype(), self.device(), rng)?;
        let eps_d = standard_normal(
            &self.extended_shape(sample_shape),
            self.dtype(),
            self.device(),
            rng,
        )?;
        let cols = ops::fold_leading(&eps_w, sample_shape.len())?;
        let wy = ops::batch_matmul(&self.cov_factor, &cols)?;
        let wy = ops::unfold_leading(&wy, sample_shape)?;
        let dy = eps_d.broadcast_mul(&self.cov_diag.sqrt()?)?;
        Ok((wy + dy)?.broadcast_add(&self.loc)?)
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let out = validate_value(self, value)?;
        let n = self.event[0];
        let lead = &out[..out.len() - self.batch.len()];
        let full: Vec<usize> = out.iter().copied().chain([n]).collect();
        let diff = value.broadcast_sub(&self.loc)?.broadcast_as(full)?;
        // xᵀ D⁻¹ x − ‖L_C⁻¹ Wᵀ D⁻¹ x‖²
        let diag_term = diff.sqr()?.broadcast_div(&self.cov_diag)?.sum(D::Minus1)?;
        let wt_dinv = wt_dinv(&self.cov_factor, &self.cov_diag)?;
        let cols = ops::fold_leading(&diff, lead.len())?;
        let v = ops::batch_matmul(&wt_dinv, &cols)?;
        let v = ops::unfold_leading(&v, lead)?;
        let low_rank_term = mahalanobis(&self.capacitance_tril, &v, lead)?;
        let m = (diag_term - low_rank_term)?;
        let logdet = self.logdet()?;
        let c = -0.5 * n as f64 * (2.0 * PI).ln();
        Ok(m.affine(-0.5, c)?
            .broadcast_sub(&logdet.affine(0.5, 0.0)?)?)
    }

    fn entropy(&self) -> Result<Tensor> {
        let n = self.event[0] as f64;
        Ok(self
            .logdet()?
            .affine(0.5, 0.5 * n * (1.0 + (2.0 * PI).ln()))?)
    }

    fn mean(&self) -> Result<Tensor> {
        Ok(self.loc.clone())
    }

    fn variance(&self) -> Result<Tensor> {
        Ok((self.cov_factor.sqr()?.sum(D::Minus1)? + &self.cov_diag)?)
    }

    fn support(&self) -> Constraint {
        Constraint::Real.independent(1)
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            let e = |t: &Tensor, rank| expand_param(NAME, &self.batch, t, batch_shape, rank);
            Ok(Box::new(Self {
                loc: e(&self.loc, 1)?,
                cov_factor: e(&self.cov_factor, 2)?,
                cov_diag: e(&self.cov_diag, 1)?,
                capacitance_tril: e(&self.capacitance_tril, 2)?,
                batch: batch_shape.to_vec(),
                event: self.event.clone(),
            }))
        })
    }
}

impl LowRankMultivariateNormal {
    /// `ln det Σ = 2 Σ ln diag L_C + Σ ln D`, shape `batch`.
    fn logdet(&self) -> Result<Tensor> {
        let cap = ops::triangular_logdet(&self.capacitance_tril)?;
        Ok((cap.affine(2.0, 0.0)? + self.cov_diag.log()?.sum(D::Minus1)?)?)
    }
}
