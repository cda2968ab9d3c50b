//! Initialisation strategies: where an automatic guide starts, as Pyro's
//! `pyro.infer.autoguide.initialization`.

use std::collections::HashMap;

use candle_core::{DType, Tensor};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vi_dist::{Constraint, Distribution, biject_to};

use crate::error::{InferError, Result};
use crate::message::{Message, SiteKind};
use crate::messenger::Messenger;

/// Where an automatic guide starts: the value each latent site takes in the prototype run of
/// the model, from which the guide's initial parameters follow (its location, in the
/// unconstrained space through `biject_to(support)`). Pyro's `init_to_*` functions.
///
/// Every value is checked: outside the site's support, or mapped to a non-finite point of
/// the unconstrained space (a closed end of an interval), it is
/// [`InferError::AutoGuide`] naming the site, never a NaN later.
///
/// ```
/// use std::collections::HashMap;
/// use vi_infer::autoguide::Init;
/// let default = Init::default(); // the prior's median, as Init::median()
/// let values = HashMap::from([("sigma".to_string(), vi_infer::candle::Tensor::new(0.5f64, &vi_infer::candle::Device::Cpu)?)]);
/// let given = Init::value(values); // `sigma` at 0.5, every other site as Init::uniform(2.0)
/// # let _ = (default, given);
/// # Ok::<(), vi_infer::candle::Error>(())
/// ```
#[derive(Clone, Debug)]
pub enum Init {
    /// `init_to_feasible`: the image of 0 under `biject_to(support)` (0 for reals, 1 for
    /// positive values, ½ on the unit interval, the centre of the simplex).
    Feasible,
    /// `init_to_median`: the elementwise median of `num_samples` draws from the prior, falling
    /// back to [`Feasible`](Init::Feasible) where it is NaN or outside the support (as for
    /// the elementwise median of a simplex).
    Median {
        /// Draws from the prior (Pyro: 15).
        num_samples: usize,
    },
    /// `init_to_mean`: the prior's mean, falling back to [`median`](Init::median) where it is
    /// undefined or infinite (Cauchy, StudentT with few degrees of freedom).
    Mean,
    /// `init_to_sample`: one draw from the prior.
    Sample,
    /// `init_to_uniform`: a uniform draw in `(−radius, radius)` of the unconstrained space,
    /// mapped onto the support.
    Uniform {
        /// Half the width of the box (Pyro: 2).
        radius: f64,
    },
    /// `init_to_value`: the given value at the sites it names (its shape the site's, inside
    /// its support, else an error naming the site), `fallback` at the others.
    Value {
        /// Site name → constrained value.
        values: HashMap<String, Tensor>,
        /// The strategy for the sites not in `values` (Pyro: `init_to_uniform`).
        fallback: Box<Init>,
    },
}

impl Default for Init {
    /// [`Init::median`], the default of every automatic guide here.
    fn default() -> Self {
        Init::median()
    }
}

impl Init {
    /// `init_to_median` with Pyro's 15 draws.
    ///
    /// ```
    /// assert!(matches!(vi_infer::autoguide::Init::median(), vi_infer::autoguide::Init::Median { num_samples: 15 }));
    /// ```
    pub fn median() -> Self {
        Init::Median { num_samples: 15 }
    }

    /// `init_to_uniform(radius)`.
    ///
    /// ```
    /// let _u = vi_infer::autoguide::Init::uniform(2.0);
    /// ```
    pub fn uniform(radius: f64) -> Self {
        Init::Uniform { radius }
    }

    /// `init_to_value(values)`, the other sites as `init_to_uniform(2)` (Pyro's fallback).
    ///
    /// ```
    /// let _v = vi_infer::autoguide::Init::value(std::collections::HashMap::new());
    /// ```
    pub fn value(values: HashMap<String, Tensor>) -> Self {
        Init::Value {
            values,
            fallback: Box::new(Init::uniform(2.0)),
        }
    }

    /// The name Pyro gives the strategy, for messages.
    fn pyro_name(&self) -> &'static str {
        match self {
            Init::Feasible => "init_to_feasible",
            Init::Median { .. } => "init_to_median",
            Init::Mean => "init_to_mean",
            Init::Sample => "init_to_sample",
            Init::Uniform { .. } => "init_to_uniform",
            Init::Value { .. } => "init_to_value",
        }
    }
}

/// The error of an automatic guide at a site.
pub(crate) fn site_error(guide: &str, site: &str, msg: impl Into<String>) -> InferError {
    InferError::AutoGuide {
        guide: guide.to_string(),
        site: site.to_string(),
        msg: msg.into(),
    }
}

/// The initial value of a latent site whose prior is `dist`, by `init`, checked against the
/// support (and its image in the unconstrained space finite).
pub(crate) fn init_value(
    init: &Init,
    guide: &str,
    site: &str,
    dist: &dyn Distribution,
    rng: &mut dyn RngCore,
) -> Result<Tensor> {
    let support = dist.support();
    if support.is_discrete() {
        return Err(site_error(
            guide,
            site,
            format!(
                "its support {support} is discrete: automatic guides cover continuous latent \
                 sites; hide it from this guide (`.block(Block::hide([..]))`) and guide it by \
                 hand in an AutoGuideList"
            ),
        ));
    }
    let transform = biject_to(&support).map_err(|e| {
        site_error(
            guide,
            site,
            format!("no bijection onto its support {support}: {e}"),
        )
    })?;
    let shape = dist.extended_shape(&[]);
    let (dtype, device) = (dist.dtype(), dist.device().clone());
    let unconstrained_shape = transform.inverse_shape(&shape)?;
    let value = match init {
        Init::Feasible => transform.forward(&Tensor::zeros(
            unconstrained_shape.as_slice(),
            dtype,
            &device,
        )?)?,
        Init::Uniform { radius } => {
            if !(radius.is_finite() && *radius > 0.0) {
                return Err(site_error(
                    guide,
                    site,
                    format!("init_to_uniform needs a finite radius > 0, got {radius}"),
                ));
            }
            let r = *radius;
            let u = vi_dist::host_tensor(&unconstrained_shape, dtype, &device, rng, |g| {
                g.random_range(-r..r)
            })?;
            transform.forward(&u)?
        }
        Init::Sample => dist.sample(&[], rng)?.detach(),
        Init::Median { num_samples } => {
            return median_or_feasible(*num_samples, guide, site, dist, rng);
        }
        Init::Mean => {
            let mean = dist.mean().ok().map(|m| m.detach());
            match mean {
                Some(m) if m.dims() == shape.as_slice() && in_support(&support, &m)? => m,
                _ => return median_or_feasible(15, guide, site, dist, rng),
            }
        }
        Init::Value { values, fallback } => match values.get(site) {
            Some(v) => {
                if v.dims() != shape.as_slice() {
                    return Err(site_error(
                        guide,
                        site,
                        format!(
                            "init_to_value gives a value of shape {:?}, the site's is {shape:?}",
                            v.dims()
                        ),
                    ));
                }
                v.to_dtype(dtype)?.to_device(&device)?
            }
            None => return init_value(fallback, guide, site, dist, rng),
        },
    };
    check_init(init, guide, site, &support, &value)?;
    Ok(value)
}

/// Whether every element of `value` lies in `support` and is finite.
fn in_support(support: &Constraint, value: &Tensor) -> Result<bool> {
    Ok(crate::finite::all_finite(value)? && support.all(value)?)
}

/// The initial value inside the support, with a finite image in the unconstrained space.
fn check_init(
    init: &Init,
    guide: &str,
    site: &str,
    support: &Constraint,
    value: &Tensor,
) -> Result<()> {
    let strategy = init.pyro_name();
    if !in_support(support, value)? {
        return Err(site_error(
            guide,
            site,
            format!("the initial value ({strategy}) lies outside its support {support}"),
        ));
    }
    let transform = biject_to(support)?;
    if !crate::finite::all_finite(&transform.inverse(value)?)? {
        return Err(site_error(
            guide,
            site,
            format!(
                "the initial value ({strategy}) lies on the edge of its support {support}: its \
                 image in the unconstrained space is not finite"
            ),
        ));
    }
    Ok(())
}

/// The elementwise median of `n` draws, or the feasible point where it is NaN or outside the
/// support.
fn median_or_feasible(
    n: usize,
    guide: &str,
    site: &str,
    dist: &dyn Distribution,
    rng: &mut dyn RngCore,
) -> Result<Tensor> {
    let support = dist.support();
    if let Ok(draws) = dist.sample(&[n.max(1)], rng) {
        let m = elementwise_median(&draws)?;
        if in_support(&support, &m)?
            && crate::finite::all_finite(&biject_to(&support)?.inverse(&m)?)?
        {
            return Ok(m);
        }
    }
    init_value(&Init::Feasible, guide, site, dist, rng)
}

/// The median over dim 0, computed on the host (once per site, at the prototype).
fn elementwise_median(draws: &Tensor) -> Result<Tensor> {
    let n = draws.dims()[0];
    let shape = &draws.dims()[1..];
    let m: usize = shape.iter().product();
    let host = draws
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let mut out = Vec::with_capacity(m);
    let mut col = Vec::with_capacity(n);
    for j in 0..m {
        col.clear();
        col.extend((0..n).map(|i| host[i * m + j]));
        col.sort_by(f64::total_cmp);
        out.push(if n % 2 == 1 {
            col[n / 2]
        } else {
            0.5 * (col[n / 2 - 1] + col[n / 2])
        });
    }
    Ok(Tensor::from_vec(out, shape, &candle_core::Device::Cpu)?
        .to_dtype(draws.dtype())?
        .to_device(draws.device())?)
}

/// Gives each latent sample site without a value its initial value (Pyro's
/// `InitMessenger`): the handler of the prototype run.
pub(crate) struct InitMessenger {
    init: Init,
    guide: String,
    rng: ChaCha8Rng,
}

impl InitMessenger {
    pub(crate) fn new(init: Init, guide: &str, seed: u64) -> Self {
        Self {
            init,
            guide: guide.to_string(),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl Messenger for InitMessenger {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if msg.kind != SiteKind::Sample || msg.is_observed || msg.value.is_some() {
            return Ok(());
        }
        let Some(dist) = &msg.dist else {
            return Ok(());
        };
        let value = init_value(
            &self.init,
            &self.guide,
            &msg.name,
            dist.as_ref(),
            &mut self.rng,
        )?;
        msg.value = Some(value);
        Ok(())
    }
}
