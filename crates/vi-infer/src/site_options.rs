//! Per-site options (Pyro's `infer={...}` dict of `pyro.sample`): what an ELBO should do
//! with one site beyond its distribution and value. Today: the site's baseline.

use candle_core::{Module, Tensor};

use crate::error::{InferError, Result};

/// The options of one sample site, given with [`Ctx::sample_with`](crate::Ctx::sample_with)
/// and recorded on its [`Site`](crate::Site) (Pyro's `infer=` argument of `pyro.sample`).
/// ELBOs read the options that concern them and pass over the others.
///
/// ```
/// use vi_infer::{Baseline, SiteOptions};
/// let opts = SiteOptions::new().baseline(Baseline::decaying_average(0.9)?);
/// assert!(opts.baseline.is_some());
/// assert!(SiteOptions::default().baseline.is_none());
/// # Ok::<(), vi_infer::InferError>(())
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SiteOptions {
    /// The baseline of the site's score-function term (read by
    /// [`TraceGraphElbo`](crate::TraceGraphElbo) on guide sites without `rsample`; Pyro's
    /// `infer={"baseline": {...}}`).
    pub baseline: Option<Baseline>,
}

impl SiteOptions {
    /// No options: what [`Ctx::sample`](crate::Ctx::sample) records.
    ///
    /// ```
    /// assert!(vi_infer::SiteOptions::new().baseline.is_none());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the site's baseline.
    ///
    /// ```
    /// use vi_infer::{Baseline, SiteOptions};
    /// let b = Baseline::fixed(candle_core::Tensor::new(-3.0f64, &candle_core::Device::Cpu)?);
    /// let opts = SiteOptions::new().baseline(b);
    /// assert!(matches!(opts.baseline, Some(Baseline::Fixed(_))));
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn baseline(mut self, baseline: Baseline) -> Self {
        self.baseline = Some(baseline);
        self
    }
}

/// A baseline for a non-reparameterised guide site: a quantity `b` that does not depend on
/// the site's draw, subtracted from the cost its score multiplies, `∇log q(z) · (cost − b)`,
/// which leaves the gradient's expectation as it is and can shrink its variance a great deal
/// (Mnih & Gregor 2014, "Neural variational inference and learning in belief networks").
/// [`TraceGraphElbo`](crate::TraceGraphElbo) reads it; other ELBOs pass over it.
///
/// | Pyro's `infer={"baseline": ...}` | vi |
/// |---|---|
/// | `{"use_decaying_avg_baseline": True, "baseline_beta": 0.95}` | `Baseline::decaying_average(0.95)?` |
/// | `{"nn_baseline": net, "nn_baseline_input": x}` | `Baseline::neural(ctx.module("baseline", &net)?, &x)?` |
/// | `{"baseline_value": b}` (a tensor trained by its own loss) | `Baseline::learned(b)` |
/// | (a constant) | `Baseline::fixed(Tensor::new(-100.0f64, &dev)?)` |
///
/// A learned baseline is trained by the term `(cost − b)²` (summed over the site's
/// elements) that the ELBO adds to its surrogate, as Pyro's baseline loss: its parameters
/// must reach the optimizer, so build a network from the store and mark it with
/// [`Ctx::module`](crate::Ctx::module) in the guide (or read a parameter with
/// [`Ctx::param`](crate::Ctx::param)). Its value must not depend on the site's draw nor
/// share parameters with the guide's distributions (the baseline loss would pull on them):
/// [`Baseline::neural`] detaches the network's input to keep the guide's gradients out.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use vi_dist::{Bernoulli, Constraint};
/// use vi_infer::{Baseline, Ctx, ParamStore, SiteOptions};
/// let dev = Device::Cpu;
/// let logits = Tensor::new(0.3f64, &dev)?;
/// let mut guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
///     let avg = SiteOptions::new().baseline(Baseline::decaying_average(0.9)?);
///     ctx.sample_with("c", Bernoulli::from_logits(&logits)?, avg)?;
///     // A baseline of its own, trained by its loss term: a parameter read in the guide.
///     let b = ctx.param("c2_baseline", &Tensor::new(0.0f64, &dev)?, Constraint::Real)?;
///     ctx.sample_with("c2", Bernoulli::from_logits(&logits)?, SiteOptions::new().baseline(Baseline::learned(b)))?;
///     Ok(())
/// };
/// # let (mut store, mut rng) = vi_infer::doc_support::store_and_rng();
/// # let mut ctx = Ctx::new(&mut store, &mut rng);
/// let ((), tr) = ctx.trace(|ctx| guide(ctx))?;
/// assert!(matches!(tr.get("c").unwrap().options.baseline, Some(Baseline::DecayingAverage { beta }) if beta == 0.9));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Baseline {
    /// An exponentially decaying average of the site's past costs, kept by the ELBO:
    /// `avg ← beta · avg + (1 − beta) · cost` after each use, starting from 0 (Pyro's
    /// `use_decaying_avg_baseline` with `baseline_beta`). `beta` in `[0, 1)`; Pyro's default
    /// is 0.9.
    DecayingAverage {
        /// How much of the old average stays at each update.
        beta: f64,
    },
    /// A value computed in the guide (a network's output, a parameter), subtracted from the
    /// cost and trained by the loss term `(cost − b)²` (Pyro's `nn_baseline` /
    /// `baseline_value`). Its shape must broadcast to the site's batch shape.
    Learned(Tensor),
    /// A constant subtracted from the cost (detached, not trained). Its shape must broadcast
    /// to the site's batch shape.
    Fixed(Tensor),
}

impl Baseline {
    /// [`Baseline::DecayingAverage`] with `beta` checked: in `[0, 1)`, else
    /// [`InferError::Invalid`].
    ///
    /// ```
    /// use vi_infer::Baseline;
    /// assert!(Baseline::decaying_average(0.95).is_ok());
    /// assert!(Baseline::decaying_average(1.0).is_err());
    /// ```
    pub fn decaying_average(beta: f64) -> Result<Self> {
        check_beta(beta).map_err(InferError::Invalid)?;
        Ok(Baseline::DecayingAverage { beta })
    }

    /// [`Baseline::Learned`]: the output of `module` on `input` with the input detached from
    /// the graph that computed it, so that the baseline's loss trains the module alone
    /// (Pyro's `nn_baseline` with `nn_baseline_input`). An output whose last dim is 1 (a
    /// `Linear` to one unit: `[n, 1]` for `n` inputs) loses that dim, to fit a site in a plate
    /// of `n`. Mark the module with [`Ctx::module`](crate::Ctx::module) so the optimizer
    /// steps it.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_infer::{Baseline, ParamStore};
    /// let store = ParamStore::new(&Device::Cpu, DType::F32);
    /// let net = candle_nn::linear(4, 1, store.var_builder("baseline")?)?;
    /// let x = Tensor::ones((3, 4), DType::F32, &Device::Cpu)?;
    /// let b = Baseline::neural(&net, &x)?; // [3]: one baseline per element of a plate of 3
    /// assert!(matches!(b, Baseline::Learned(t) if t.dims() == [3]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn neural<M: Module>(module: &M, input: &Tensor) -> Result<Self> {
        let out = module.forward(&input.detach())?;
        let out = match out.dims().last() {
            Some(1) => out.squeeze(out.rank() - 1)?,
            _ => out,
        };
        Ok(Baseline::Learned(out))
    }

    /// [`Baseline::Learned`] from a value computed in the guide.
    ///
    /// ```
    /// let b = vi_infer::Baseline::learned(candle_core::Tensor::new(0.0f32, &candle_core::Device::Cpu)?);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn learned(value: Tensor) -> Self {
        Baseline::Learned(value)
    }

    /// [`Baseline::Fixed`]: a constant, whose shape broadcasts to the site's batch shape (cast
    /// to the site's dtype where it is used).
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_infer::Baseline;
    /// let b = Baseline::fixed(Tensor::new(-250.0f64, &Device::Cpu)?);
    /// let per_item = Baseline::fixed(Tensor::new(&[-1.0f64, -2.0], &Device::Cpu)?);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn fixed(value: Tensor) -> Self {
        Baseline::Fixed(value)
    }
}

/// `beta` is in `[0, 1)`: the message otherwise.
pub(crate) fn check_beta(beta: f64) -> std::result::Result<(), String> {
    if (0.0..1.0).contains(&beta) {
        Ok(())
    } else {
        Err(format!(
            "a decaying-average baseline's beta must be in [0, 1), got {beta}"
        ))
    }
}
