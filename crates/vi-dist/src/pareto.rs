//! The Pareto (type I) distribution.

use candle_core::Tensor;
use rand::RngCore;

use crate::broadcast::{broadcast_params, full_like};
use crate::constraint::{Bound, Constraint};
use crate::distribution::{Distribution, validate_param, validate_value};
use crate::error::{Result, located};
use crate::exponential::standard_exponential;
use crate::family::{dist_common, expand_param, sample_by_rsample};

/// `Pareto(scale, alpha)`: density `alpha · scale^alpha / x^{alpha + 1}` on `x ≥ scale`, as
/// `torch.distributions.Pareto` (the law of `scale · e^{E}` for `E ~ Exponential(alpha)`;
/// like torch, `log_prob` does not mask `x < scale` when validation is off). The mean is `inf`
/// for `alpha ≤ 1` and the variance `inf` for `alpha ≤ 2`, as torch.
/// Reparameterised: `scale · exp(ε / alpha)`, `ε = −ln u`, `u ~ U(0, 1)`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Distribution, Pareto};
/// let d = Pareto::new(&Tensor::new(1.0f64, &Device::Cpu)?, &Tensor::new(3.0f64, &Device::Cpu)?)?;
/// let lp = d.log_prob(&Tensor::new(2.0f64, &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp - (3f64.ln() - 4.0 * 2f64.ln())).abs() < 1e-12);
/// assert_eq!(d.mean()?.to_scalar::<f64>()?, 1.5);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Pareto {
    scale: Tensor,
    alpha: Tensor,
    batch: Vec<usize>,
}

impl Pareto {
    /// Build from `scale` (> 0, the lower end of the support) and `alpha` (> 0, the tail
    /// index), in torch's order; the two broadcast against each other.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Pareto, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = Pareto::new(&Tensor::ones((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2, 3][..], &[][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn new(scale: &Tensor, alpha: &Tensor) -> Result<Self> {
        located(|| {
            let ([scale, alpha], batch) =
                broadcast_params("Pareto", [("scale", scale, 0), ("alpha", alpha, 0)])?;
            validate_param("Pareto", "scale", &scale, &Constraint::Positive)?;
            validate_param("Pareto", "alpha", &alpha, &Constraint::Positive)?;
            Ok(Self {
                scale,
                alpha,
                batch,
            })
        })
    }

    /// The lower end of the support, broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Pareto;
    /// let cpu = Device::Cpu;
    /// let d = Pareto::new(&Tensor::ones((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.scale().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn scale(&self) -> &Tensor {
        &self.scale
    }

    /// The tail index, broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Pareto;
    /// let cpu = Device::Cpu;
    /// let d = Pareto::new(&Tensor::ones((2, 1), DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.alpha().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn alpha(&self) -> &Tensor {
        &self.alpha
    }
}

impl Distribution for Pareto {
    dist_common!("Pareto", scale);

    sample_by_rsample!();

    fn rsample(&self, sample_shape: &[usize], rng: &mut dyn RngCore) -> Result<Tensor> {
        let shape = self.extended_shape(sample_shape);
        let eps = standard_exponential(&shape, &self.scale, rng)?;
        Ok(eps
            .broadcast_div(&self.alpha)?
            .exp()?
            .broadcast_mul(&self.scale)?)
    }

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        validate_value(self, value)?;
        // With t = ln(x / scale): ln alpha − (alpha + 1) t − ln scale (the exponential's log
        // density at t, less the Jacobians of exp and of the scaling, as torch's transforms).
        // t is ln x − ln scale, not ln(x / scale): the quotient overflows for x far above a
        // small scale (x = 1e300, scale = 1e-10) where the log density is finite.
        let t = value.log()?.broadcast_sub(&self.scale.log()?)?;
        let rest = (self.alpha.log()? - self.scale.log()?)?;
        Ok(rest.broadcast_sub(&t.broadcast_mul(&self.alpha.affine(1.0, 1.0)?)?)?)
    }

    fn entropy(&self) -> Result<Tensor> {
        // ln(scale / alpha) + 1 + 1 / alpha
        let log_ratio = (self.scale.log()? - self.alpha.log()?)?;
        Ok((log_ratio + self.alpha.recip()?.affine(1.0, 1.0)?)?)
    }

    fn mean(&self) -> Result<Tensor> {
        // alpha · scale / (alpha − 1) where alpha > 1, inf elsewhere (torch). The formula sees
        // a safe alpha where it is not selected, so no 0 · ∞ reaches the gradients.
        let defined = self.alpha.gt(1.0)?;
        let a = defined.where_cond(&self.alpha, &full_like(2.0, &self.alpha)?)?;
        let m = ((&a * &self.scale)? / a.affine(1.0, -1.0)?)?;
        Ok(defined.where_cond(&m, &full_like(f64::INFINITY, &m)?)?)
    }

    fn variance(&self) -> Result<Tensor> {
        // scale² alpha / ((alpha − 1)² (alpha − 2)) where alpha > 2, inf elsewhere (torch),
        // with the same safe-branch guard as the mean.
        let defined = self.alpha.gt(2.0)?;
        let a = defined.where_cond(&self.alpha, &full_like(3.0, &self.alpha)?)?;
        let den = (a.affine(1.0, -1.0)?.sqr()? * a.affine(1.0, -2.0)?)?;
        let v = ((self.scale.sqr()? * a)? / den)?;
        Ok(defined.where_cond(&v, &full_like(f64::INFINITY, &v)?)?)
    }

    fn support(&self) -> Constraint {
        Constraint::GreaterThanEq(Bound::Tensor(self.scale.clone()))
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            let e = |t: &Tensor| expand_param(self.name(), &self.batch, t, batch_shape, 0);
            Ok(Box::new(Pareto {
                scale: e(&self.scale)?,
                alpha: e(&self.alpha)?,
                batch: batch_shape.to_vec(),
            }))
        })
    }
}
