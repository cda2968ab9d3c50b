//! Build a distribution from its torch name, parameterisation and named parameter tensors:
//! how the conformance tests read `reference/*.json`, and a way to describe a distribution as
//! data.

use std::collections::BTreeMap;

use candle_core::Tensor;

use crate::distribution::Distribution;
use crate::error::{DistError, Result};
use crate::*;

/// A distribution described as data: torch's class name, the parameterisation (`form`), the
/// parameters by torch's names, and how many batch dims become event dims (`to_event`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::DistSpec;
/// let spec = DistSpec::new("Normal")
///     .param("loc", Tensor::new(&[0.0f64, 1.0], &Device::Cpu)?)
///     .param("scale", Tensor::new(&[1.0f64, 2.0], &Device::Cpu)?)
///     .event_dims(1);
/// let d = spec.build()?;
/// assert_eq!(d.event_shape(), &[2]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
pub struct DistSpec {
    /// torch's class name, e.g. `"MultivariateNormal"`.
    pub family: String,
    /// The parameterisation where a family has several: `"probs"` (Bernoulli, Categorical,
    /// …), `"covariance"`, `"precision"` (MultivariateNormal); `None` is torch's default
    /// (`logits`, `scale_tril`).
    /// Geometric is the exception: `None` takes `probs` (as the reference figures give it) and
    /// `"logits"` takes `logits`. Binomial takes `total_count` with either form.
    pub form: Option<String>,
    /// Parameters by torch's names.
    pub params: BTreeMap<String, Tensor>,
    /// `to_event(event_dims)` applied after building, when > 0.
    pub event_dims: usize,
}

impl DistSpec {
    /// A spec for `family` with no parameters yet.
    ///
    /// ```
    /// use vi_dist::DistSpec;
    /// let spec = DistSpec::new("Poisson");
    /// assert_eq!((spec.family.as_str(), spec.params.len()), ("Poisson", 0));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn new(family: &str) -> Self {
        Self {
            family: family.to_string(),
            form: None,
            params: BTreeMap::new(),
            event_dims: 0,
        }
    }

    /// Set the parameterisation.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::{DistSpec, Distribution};
    /// let d = DistSpec::new("Bernoulli")
    ///     .form("probs")
    ///     .param("probs", Tensor::new(&[0.25f64], &Device::Cpu)?)
    ///     .build()?;
    /// assert_eq!(d.mean()?.to_vec1::<f64>()?, vec![0.25]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn form(mut self, form: &str) -> Self {
        self.form = Some(form.to_string());
        self
    }

    /// Add a parameter.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::DistSpec;
    /// let spec = DistSpec::new("Exponential").param("rate", Tensor::new(&[2.0f64], &Device::Cpu)?);
    /// assert!(spec.params.contains_key("rate"));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn param(mut self, name: &str, value: Tensor) -> Self {
        self.params.insert(name.to_string(), value);
        self
    }

    /// Set the number of reinterpreted batch dims.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{DistSpec, Distribution};
    /// let d = DistSpec::new("Exponential")
    ///     .param("rate", Tensor::ones((2, 3), DType::F64, &Device::Cpu)?)
    ///     .event_dims(2)
    ///     .build()?;
    /// assert_eq!((d.batch_shape(), d.event_shape()), (&[][..], &[2, 3][..]));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn event_dims(mut self, n: usize) -> Self {
        self.event_dims = n;
        self
    }

    fn get(&self, name: &'static str) -> Result<&Tensor> {
        self.params.get(name).ok_or_else(|| DistError::Invalid {
            dist: "DistSpec",
            msg: format!(
                "{} needs parameter `{name}`, given {:?}",
                self.family,
                self.params.keys().collect::<Vec<_>>()
            ),
        })
    }

    /// Build the distribution.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::{DistError, DistSpec};
    /// let missing = DistSpec::new("Normal").param("loc", Tensor::new(0.0f64, &Device::Cpu)?).build();
    /// assert!(matches!(missing.map_err(DistError::into_kind), Err(DistError::Invalid { .. })));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    #[track_caller]
    pub fn build(&self) -> Result<Box<dyn Distribution>> {
        crate::error::located(|| self.build_here())
    }

    fn build_here(&self) -> Result<Box<dyn Distribution>> {
        let p = |n| self.get(n);
        let form = self.form.as_deref();
        let d: Box<dyn Distribution> = match (self.family.as_str(), form) {
            ("Normal", None) => Box::new(Normal::new(p("loc")?, p("scale")?)?),
            ("LogNormal", None) => Box::new(LogNormal::new(p("loc")?, p("scale")?)?),
            ("HalfNormal", None) => Box::new(HalfNormal::new(p("scale")?)?),
            ("Cauchy", None) => Box::new(Cauchy::new(p("loc")?, p("scale")?)?),
            ("HalfCauchy", None) => Box::new(HalfCauchy::new(p("scale")?)?),
            ("Laplace", None) => Box::new(Laplace::new(p("loc")?, p("scale")?)?),
            ("Uniform", None) => Box::new(Uniform::new(p("low")?, p("high")?)?),
            ("Exponential", None) => Box::new(Exponential::new(p("rate")?)?),
            ("Gumbel", None) => Box::new(Gumbel::new(p("loc")?, p("scale")?)?),
            ("Pareto", None) => Box::new(Pareto::new(p("scale")?, p("alpha")?)?),
            ("Delta", None) => Box::new(Delta::new(p("v")?, self.params.get("log_density"), 0)?),
            ("Bernoulli", None) => Box::new(Bernoulli::from_logits(p("logits")?)?),
            ("Bernoulli", Some("probs")) => Box::new(Bernoulli::from_probs(p("probs")?)?),
            ("Categorical", None) => Box::new(Categorical::from_logits(p("logits")?)?),
            ("Categorical", Some("probs")) => Box::new(Categorical::from_probs(p("probs")?)?),
            ("OneHotCategorical", None) => Box::new(OneHotCategorical::from_logits(p("logits")?)?),
            ("OneHotCategorical", Some("probs")) => {
                Box::new(OneHotCategorical::from_probs(p("probs")?)?)
            }
            ("Poisson", None) => Box::new(Poisson::new(p("rate")?)?),
            ("Binomial", None) => Box::new(Binomial::from_logits(p("total_count")?, p("logits")?)?),
            ("Binomial", Some("probs")) => {
                Box::new(Binomial::from_probs(p("total_count")?, p("probs")?)?)
            }
            ("Geometric", None) => Box::new(Geometric::from_probs(p("probs")?)?),
            ("Geometric", Some("logits")) => Box::new(Geometric::from_logits(p("logits")?)?),
            ("MultivariateNormal", None) => Box::new(MultivariateNormal::from_scale_tril(
                p("loc")?,
                p("scale_tril")?,
            )?),
            ("MultivariateNormal", Some("covariance")) => Box::new(
                MultivariateNormal::from_covariance(p("loc")?, p("covariance_matrix")?)?,
            ),
            ("MultivariateNormal", Some("precision")) => Box::new(
                MultivariateNormal::from_precision(p("loc")?, p("precision_matrix")?)?,
            ),
            ("LowRankMultivariateNormal", None) => Box::new(LowRankMultivariateNormal::new(
                p("loc")?,
                p("cov_factor")?,
                p("cov_diag")?,
            )?),
            ("Gamma", None) => Box::new(Gamma::new(p("concentration")?, p("rate")?)?),
            ("Beta", None) => Box::new(Beta::new(p("concentration1")?, p("concentration0")?)?),
            ("Dirichlet", None) => Box::new(Dirichlet::new(p("concentration")?)?),
            ("StudentT", None) => Box::new(StudentT::new(p("df")?, p("loc")?, p("scale")?)?),
            (family, form) => {
                return Err(DistError::Invalid {
                    dist: "DistSpec",
                    msg: format!("no family `{family}` with form {form:?}"),
                });
            }
        };
        if self.event_dims > 0 {
            Ok(Box::new(d.to_event(self.event_dims)?))
        } else {
            Ok(d)
        }
    }
}
