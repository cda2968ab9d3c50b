//! Student's t distribution.

use std::f64::consts::PI;

use candle_core::Tensor;
use rand::RngCore;

use crate::broadcast::{broadcast_params, full_like};
use crate::cauchy::ln_one_plus_ratio_sq;
use crate::constraint::Constraint;
use crate::distribution::{Distribution, validate_param, validate_value};
use crate::error::{Result, located};
use crate::family::{dist_common, expand_param, sample_by_rsample};
use crate::finfo::{max, tiny};
use crate::gamma::{clamp_keep_grad, draw_standard_gamma, standard_gamma};
use crate::ops::{digamma, lgamma};
use crate::rng::standard_normal;

/// `StudentT(df, loc, scale)`: density
/// `Γ((ν+1)/2) / (Γ(ν/2) √(νπ) σ) · (1 + ((x − μ)/σ)² / ν)^(−(ν+1)/2)` with ν = df,
/// μ = loc, σ = scale, as `torch.distributions.StudentT`. Mean `loc` for ν > 1 (NaN
/// otherwise); variance `σ² ν/(ν − 2)` for ν > 2, `∞` for 1 < ν ≤ 2, NaN for ν ≤ 1.
/// Reparameterised as torch: `loc + scale · ε / √(χ²/ν)` with `ε ~ N(0, 1)` and
/// `χ² ~ Gamma(ν/2, rate ½)` (differentiable in ν by the implicit gamma gradient).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::{Distribution, StudentT};
/// let t = |v: f64| Tensor::new(v, &Device::Cpu);
/// let d = StudentT::new(&t(1.0)?, &t(0.0)?, &t(1.0)?)?;
/// // df = 1 is the standard Cauchy: density 1/π at 0
/// let lp = d.log_prob(&t(0.0)?)?.to_scalar::<f64>()?;
/// assert!((lp + std::f64::consts::PI.ln()).abs() < 1e-12);
/// assert!(d.mean()?.to_scalar::<f64>()?.is_nan());
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct StudentT {
    df: Tensor,
    loc: Tensor,
    scale: Tensor,
    batch: Vec<usize>,
}

impl StudentT {
    /// Build from `df` (ν > 0), `loc` and `scale` (> 0); the three broadcast.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{StudentT, Distribution};
    /// let cpu = Device::Cpu;
    /// let d = StudentT::new(&Tensor::ones((2, 1), DType::F64, &cpu)?, &Tensor::zeros(3, DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[2, 3][..], &[][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn new(df: &Tensor, loc: &Tensor, scale: &Tensor) -> Result<Self> {
        located(|| {
            let ([df, loc, scale], batch) = broadcast_params(
                "StudentT",
                [("df", df, 0), ("loc", loc, 0), ("scale", scale, 0)],
            )?;
            validate_param("StudentT", "df", &df, &Constraint::Positive)?;
            validate_param("StudentT", "loc", &loc, &Constraint::Real)?;
            validate_param("StudentT", "scale", &scale, &Constraint::Positive)?;
            Ok(Self {
                df,
                loc,
                scale,
                batch,
            })
        })
    }

    /// Degrees of freedom ν, broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::StudentT;
    /// let cpu = Device::Cpu;
    /// let d = StudentT::new(&Tensor::ones((2, 1), DType::F64, &cpu)?, &Tensor::zeros(3, DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.df().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn df(&self) -> &Tensor {
        &self.df
    }

    /// Location μ, broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::StudentT;
    /// let cpu = Device::Cpu;
    /// let d = StudentT::new(&Tensor::ones((2, 1), DType::F64, &cpu)?, &Tensor::zeros(3, DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.loc().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn loc(&self) -> &Tensor {
        &self.loc
    }

    /// Scale σ, broadcast to the batch shape.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::StudentT;
    /// let cpu = Device::Cpu;
    /// let d = StudentT::new(&Tensor::ones((2, 1), DType::F64, &cpu)?, &Tensor::zeros(3, DType::F64, &cpu)?, &Tensor::ones(3, DType::F64, &cpu)?)?;
    /// assert_eq!(d.scale().dims(), &[2, 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn scale(&self) -> &Tensor {
        &self.scale
    }

    fn draw(&self, sample_shape: &[usize], rng: &mut dyn RngCore, grad: bool) -> Result<Tensor> {
        let dtype = self.dtype();
        let shape = self.extended_shape(sample_shape);
        let eps = standard_normal(&shape, dtype, self.device(), rng)?;
        // χ²(ν) = Gamma(ν/2, rate ½) = 2 · Gamma(ν/2, 1), clamped below as torch's Gamma.
        let half_df = self.df.affine(0.5, 0.0)?;
        let g = if grad {
            standard_gamma(&half_df, sample_shape, rng)?
        } else {
            draw_standard_gamma(&half_df, sample_shape, rng)?
        };
        let chi2 = clamp_keep_grad(&g.affine(2.0, 0.0)?, tiny(dtype), max(dtype))?;
        let y = (eps / chi2.broadcast_div(&self.df)?.sqrt()?)?;
        Ok(y.broadcast_mul(&self.scale)?.broadcast_add(&self.loc)?)
    }
}

impl Distribution for StudentT {
    dist_common!("StudentT", df);

    sample_by_rsample!(draw);

    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        validate_value(self, value)?;
        let df = &self.df;
        let a = value.broadcast_sub(&self.loc)?.abs()?;
        // ln σ + ½ ln ν + ½ ln π + ln Γ(ν/2) − ln Γ((ν+1)/2)
        let z = (self.scale.log()? + df.log()?.affine(0.5, 0.5 * PI.ln())?)?;
        let z = ((z + lgamma(&df.affine(0.5, 0.0)?)?)? - lgamma(&df.affine(0.5, 0.5)?)?)?;
        // −(ν+1)/2 · ln(1 + y²/ν) − Z, with y²/ν = (a / (σ √ν))² kept from overflowing
        let core = ln_one_plus_ratio_sq(&a, &(&self.scale * df.sqrt()?)?)?;
        let lp = core.broadcast_mul(&df.affine(-0.5, -0.5)?)?;
        Ok(lp.broadcast_sub(&z)?)
    }

    fn entropy(&self) -> Result<Tensor> {
        let df = &self.df;
        let half = df.affine(0.5, 0.0)?;
        let half_plus = df.affine(0.5, 0.5)?;
        // ln B(ν/2, ½) = ln Γ(ν/2) + ln Γ(½) − ln Γ((ν+1)/2)
        let lbeta = ((lgamma(&half)? - lgamma(&half_plus)?)?).affine(1.0, 0.5 * PI.ln())?;
        let dpsi = (digamma(&half_plus)? - digamma(&half)?)?;
        let h = (self.scale.log()? + (half_plus * dpsi)?)?;
        Ok(((h + df.log()?.affine(0.5, 0.0)?)? + lbeta)?)
    }

    fn mean(&self) -> Result<Tensor> {
        let defined = self.df.gt(1.0)?;
        Ok(defined.where_cond(&self.loc, &full_like(f64::NAN, &self.loc)?)?)
    }

    fn variance(&self) -> Result<Tensor> {
        let df = &self.df;
        let finite = df.gt(2.0)?;
        // ν/(ν − 2) only where ν > 2; a safe ν elsewhere keeps gradients finite.
        let df_safe = finite.where_cond(df, &full_like(3.0, df)?)?;
        let ratio = (&df_safe / df_safe.affine(1.0, -2.0)?)?;
        let var = (self.scale.sqr()? * ratio)?;
        let undefined = df
            .gt(1.0)?
            .where_cond(&full_like(f64::INFINITY, df)?, &full_like(f64::NAN, df)?)?;
        Ok(finite.where_cond(&var, &undefined)?)
    }

    fn support(&self) -> Constraint {
        Constraint::Real
    }

    fn expand(&self, batch_shape: &[usize]) -> Result<Box<dyn Distribution>> {
        located(|| -> Result<Box<dyn Distribution>> {
            let e = |t: &Tensor| expand_param(self.name(), &self.batch, t, batch_shape, 0);
            Ok(Box::new(StudentT {
                df: e(&self.df)?,
                loc: e(&self.loc)?,
                scale: e(&self.scale)?,
                batch: batch_shape.to_vec(),
            }))
        })
    }
}
