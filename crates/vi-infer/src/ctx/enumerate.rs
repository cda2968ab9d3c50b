//! Enumeration statements: sites marked for it, `config_enumerate` over a block, and
//! `markov` chains.

use std::any::Any;

use candle_core::Tensor;
use vi_dist::Distribution;

use super::statements::draw;
use super::{Ctx, Handler, stack_changed};
use crate::enumerate::{ConfigEnumerate, MarkovMessenger};
use crate::error::Result;
use crate::message::{Message, SiteKind};

impl Ctx<'_> {
    /// A latent discrete site marked for parallel enumeration (Pyro's
    /// `pyro.sample(name, dist, infer={"enumerate": "parallel"})`): under
    /// [`TraceEnumElbo`](crate::TraceEnumElbo) (in the model, when the guide does not sample
    /// it, or in the guide) or [`InferDiscrete`](crate::InferDiscrete), the value is every
    /// value of `dist`'s finite support along a dim of its own left of the plates, and the
    /// site is summed out exactly; elsewhere it is drawn as by [`sample`](Ctx::sample).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Categorical;
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let probs = Tensor::new(&[0.2f64, 0.8], &dev)?;
    /// let z = ctx.sample_enum("z", Categorical::from_probs(&probs)?)?;
    /// assert_eq!(z.dims(), &[] as &[usize]); // drawn: no enumerating handler here
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sample_enum(&mut self, name: &str, dist: impl Distribution) -> Result<Tensor> {
        let mut msg = Message::new(name, SiteKind::Sample);
        msg.dist = Some(Box::new(dist));
        msg.infer.enumerate = true;
        self.apply(msg, draw)
    }

    /// Runs `f` with every latent site whose distribution has a finite support marked for
    /// parallel enumeration (Pyro's `config_enumerate`; [`config_enumerate`](crate::config_enumerate)
    /// wraps a whole program).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Bernoulli;
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let p = Tensor::new(0.5f64, &dev)?;
    /// let (_, tr) = ctx.trace(|ctx| ctx.config_enumerate(|ctx| ctx.sample("z", Bernoulli::from_probs(&p)?)))?;
    /// assert!(tr.get("z").unwrap().infer.enumerate);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn config_enumerate<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        Ok(self.with(ConfigEnumerate, f)?.0)
    }

    /// A Markov chain: runs `f` for each step (Pyro's `for t in pyro.markov(steps)`), each
    /// step's sites seeing only those of the step before it, so that enumeration recycles
    /// their dims: a chain of `T` enumerated steps of `K` values costs `O(T·K²)`, not `K^T`.
    /// A site must depend only on the sites of its own step and of the one before (and on
    /// sites outside the chain); [`markov_history`](Ctx::markov_history) widens the window.
    /// Returns each step's value.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Categorical, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// // A two-state hidden Markov model.
    /// let trans = Tensor::new(&[[0.9f64, 0.1], [0.2, 0.8]], &dev)?;
    /// let locs = Tensor::new(&[-1.0f64, 1.0], &dev)?;
    /// let ys = [0.8f64, 1.1, -0.9];
    /// let mut x = Tensor::new(0.0f64, &dev)?;
    /// let states = ctx.markov(0..ys.len(), |ctx, t| {
    ///     let probs = vi_infer::vindex(&trans, &[&x])?;
    ///     x = ctx.sample_enum(&format!("x_{t}"), Categorical::from_probs(&probs)?)?;
    ///     let loc = vi_infer::vindex(&locs, &[&x])?;
    ///     let y = Tensor::new(ys[t], &dev)?;
    ///     ctx.observe(&format!("y_{t}"), Normal::new(&loc, &Tensor::new(0.5f64, &dev)?)?, &y)?;
    ///     Ok(x.clone())
    /// })?;
    /// assert_eq!(states.len(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn markov<I, T>(
        &mut self,
        steps: impl IntoIterator<Item = I>,
        f: impl FnMut(&mut Self, I) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.markov_history(1, steps, f)
    }

    /// [`markov`](Ctx::markov) whose steps see the `history` steps before them (Pyro's
    /// `pyro.markov(steps, history=…)`): a chain of order `history`. `history = 0` makes the
    /// steps independent given what is outside the chain.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Bernoulli;
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let p = Tensor::new(0.5f64, &dev)?;
    /// let xs = ctx.markov_history(2, 0..5, |ctx, t| ctx.sample_enum(&format!("x{t}"), Bernoulli::from_probs(&p)?))?;
    /// assert_eq!(xs.len(), 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn markov_history<I, T>(
        &mut self,
        history: usize,
        steps: impl IntoIterator<Item = I>,
        mut f: impl FnMut(&mut Self, I) -> Result<T>,
    ) -> Result<Vec<T>> {
        let handler = Handler::Boxed(Box::new(MarkovMessenger::new(history)));
        self.with_handler(handler, |ctx| {
            let at = ctx.stack.len() - 1;
            let mut out = Vec::new();
            for (i, step) in steps.into_iter().enumerate() {
                if i > 0 {
                    ctx.markov_at(at)?.next_step();
                }
                out.push(f(ctx, step)?);
            }
            Ok(out)
        })?
        .0
    }

    /// One Markov context (Pyro's `with pyro.markov():`): the sites inside see the sites of
    /// the contexts around it, and their dims are recycled once it closes. For recursive
    /// models (a tree or chain built by recursion, each level in its own context).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Bernoulli;
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let p = Tensor::new(0.5f64, &dev)?;
    /// let z = ctx.markov_context(|ctx| ctx.sample_enum("z", Bernoulli::from_probs(&p)?))?;
    /// assert_eq!(z.rank(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn markov_context<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        Ok(self.with(MarkovMessenger::new(1), f)?.0)
    }

    /// The markov handler at `at` on the stack.
    fn markov_at(&mut self, at: usize) -> Result<&mut MarkovMessenger> {
        match self.stack.get_mut(at) {
            Some(Handler::Boxed(h)) => {
                let any: &mut dyn Any = h.as_mut();
                any.downcast_mut::<MarkovMessenger>()
                    .ok_or_else(stack_changed)
            }
            _ => Err(stack_changed()),
        }
    }
}

impl Ctx<'_> {
    /// A Markov chain with its steps after the first written once, vectorized in a plate over
    /// time (Pyro's `pyro.vectorized_markov`): `body` runs twice, first for step 0 with no
    /// previous state (`prev` is `None`, `steps` is `[0]`), then for steps `1..size` at once
    /// inside a plate named `name` of `size − 1` elements, with `prev` the value the first call
    /// returned (its enumerated states) standing for the state at the step before each step, and
    /// `steps` the indices `1..size` (to select the observations of those steps). The sites of
    /// the first call are renamed `x[0]`, those of the second `x[1..size]`. Under
    /// [`TraceEnumElbo`](crate::TraceEnumElbo) the states enumerated in both calls (the same
    /// site name) form the chain, contracted by a parallel scan over the plate: `log2(size)`
    /// rounds of batched products, where [`markov`](Ctx::markov) takes `size` steps of small
    /// ones. Every site of the vectorized steps that depends on an enumerated variable must
    /// depend on the chain's states alone (an error names it otherwise); states enumerated in
    /// the guide and [`infer_discrete`](Ctx::infer_discrete) are not supported here (use
    /// [`markov`](Ctx::markov)). Returns the values of the two calls (one when `size` is 1).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Categorical, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// use vi_infer::vindex;
    /// let init = Tensor::new(&[0.5f64, 0.5], &dev)?;
    /// let trans = Tensor::new(&[[0.9f64, 0.1], [0.2, 0.8]], &dev)?;
    /// let locs = Tensor::new(&[-1.0f64, 1.0], &dev)?;
    /// let ys = Tensor::new(&[0.8f64, 1.1, -0.9, -1.2], &dev)?;
    /// let (_, tr) = ctx.trace(|ctx| {
    ///     ctx.vectorized_markov("time", 4, |ctx, prev: Option<&Tensor>, steps| {
    ///         let probs = match prev {
    ///             None => init.clone(),
    ///             Some(x) => vindex(&trans, &[x])?,
    ///         };
    ///         let x = ctx.sample_enum("x", Categorical::from_probs(&probs)?)?;
    ///         let y = ys.index_select(steps, 0)?;
    ///         ctx.observe("y", Normal::new(&vindex(&locs, &[&x])?, &one.get(0)?)?, &y)?;
    ///         Ok(x)
    ///     })
    /// })?;
    /// assert_eq!(tr.get("y[1..4]").unwrap().value.dims(), &[3]);
    /// assert!(tr.contains("x[0]"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn vectorized_markov<S>(
        &mut self,
        name: &str,
        size: usize,
        mut body: impl FnMut(&mut Self, Option<&S>, &Tensor) -> Result<S>,
    ) -> Result<Vec<S>> {
        if size == 0 {
            return Err(crate::InferError::Plate {
                plate: name.to_string(),
                msg: "a vectorized markov chain needs at least one step".into(),
            });
        }
        let device = self
            .store
            .device()
            .cloned()
            .unwrap_or(candle_core::Device::Cpu);
        let first_steps = Tensor::new(&[0u32], &device)?;
        let (first, names) = self
            .with(crate::enumerate::vectorized::StepNames::first(), |ctx| {
                body(ctx, None, &first_steps)
            })?;
        if size == 1 {
            return Ok(vec![first]);
        }
        let steps = Tensor::arange(1u32, size as u32, &device)?;
        let rest_names = crate::enumerate::vectorized::StepNames::rest(name, size, names.firsts);
        let (rest, _) = self.with(rest_names, |ctx| {
            ctx.plate(name, size - 1, |ctx| body(ctx, Some(&first), &steps))
        })?;
        Ok(vec![first, rest])
    }
}
