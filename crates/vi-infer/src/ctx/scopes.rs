//! Scopes: `f` run under one more effect handler (Pyro's `poutine`), and `with` for a
//! handler of one's own.

use std::any::Any;

use candle_core::Tensor;

use super::{Ctx, Handler, stack_changed};
use crate::error::Result;
use crate::handlers::{
    Block, BlockMessenger, ConditionMessenger, MaskMessenger, ReplayMessenger, ScaleMessenger,
    SeedMessenger, SubstituteMessenger, UnconditionMessenger,
};
use crate::messenger::Messenger;
use crate::trace::Trace;

impl Ctx<'_> {
    /// Runs `f` with `handler` pushed on the stack (innermost), and returns `f`'s value with
    /// the handler (e.g. to read what it recorded). The handler is popped even when `f` fails.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// use vi_infer::handlers::TraceMessenger;
    /// let (_, tracer) = ctx.with(TraceMessenger::new(), |ctx| {
    ///     ctx.sample("z", Normal::new(&zero, &one)?)
    /// })?;
    /// assert!(tracer.into_trace().contains("z"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with<H: Messenger, T>(
        &mut self,
        handler: H,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<(T, H)> {
        let (out, handler) = self.with_handler(Handler::Boxed(Box::new(handler)), f)?;
        let Handler::Boxed(handler) = handler else {
            return Err(stack_changed());
        };
        let handler: Box<dyn Any> = handler;
        let handler = handler.downcast::<H>().map_err(|_| stack_changed())?;
        Ok((out?, *handler))
    }

    /// Runs `f` and records its sites: `poutine.trace`.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let (_, tr) = ctx.trace(|ctx| ctx.sample("z", Normal::new(&zero, &one)?))?;
    /// assert_eq!(tr.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn trace<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<(T, Trace)> {
        let (out, trace) = self.trace_partial(f)?;
        Ok((out?, trace))
    }

    /// Runs `f` with the sample (and subsample) values of `trace` for the sites it has:
    /// `poutine.replay` (e.g. the model against the guide's trace).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let (z, guide) = ctx.trace(|ctx| ctx.sample("z", Normal::new(&zero, &one)?))?;
    /// let again = ctx.replay(&guide, |ctx| ctx.sample("z", Normal::new(&one, &one)?))?;
    /// assert_eq!(z.to_vec1::<f64>()?, again.to_vec1::<f64>()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn replay<T>(
        &mut self,
        trace: &Trace,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        self.with_handler(Handler::Replay(ReplayMessenger::new(trace)), f)?
            .0
    }

    /// Runs `f` with the named sample sites fixed to data and observed: `poutine.condition`.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let data = [("z".to_string(), one.clone())];
    /// let (_, tr) = ctx.trace(|ctx| {
    ///     ctx.condition(data, |ctx| ctx.sample("z", Normal::new(&zero, &one)?))
    /// })?;
    /// assert!(tr.get("z").unwrap().is_observed);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn condition<T>(
        &mut self,
        data: impl IntoIterator<Item = (String, Tensor)>,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        Ok(self.with(ConditionMessenger::new(data), f)?.0)
    }

    /// Runs `f` with the named parameters replaced by the given values: `poutine.substitute`.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let s = ctx.substitute([("s".to_string(), zero.clone())], |ctx| {
    ///     ctx.param("s", &one, Constraint::Positive)
    /// })?;
    /// assert_eq!(s.to_vec1::<f64>()?, vec![0.0; 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn substitute<T>(
        &mut self,
        data: impl IntoIterator<Item = (String, Tensor)>,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        Ok(self.with(SubstituteMessenger::new(data), f)?.0)
    }

    /// Runs `f` with its observed sites drawn from their distributions instead of scored
    /// against data: `poutine.uncondition` (see
    /// [`UnconditionMessenger`](crate::handlers::UnconditionMessenger)).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let (_, tr) = ctx.trace(|ctx| ctx.uncondition(|ctx| ctx.observe("x", Normal::new(&zero, &one)?, &one)))?;
    /// assert!(tr.get("x").unwrap().is_latent());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn uncondition<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        Ok(self.with(UnconditionMessenger::new(), f)?.0)
    }

    /// Runs `f` with some sites hidden from the handlers outside: `poutine.block`.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// use vi_infer::handlers::Block;
    /// let (_, tr) = ctx.trace(|ctx| {
    ///     ctx.block(Block::hide(["z"]), |ctx| ctx.sample("z", Normal::new(&zero, &one)?))
    /// })?;
    /// assert!(tr.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn block<T>(&mut self, which: Block, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        Ok(self.with(BlockMessenger::new(which), f)?.0)
    }

    /// Runs `f` with every log-density multiplied by `factor`: `poutine.scale`.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let (_, tr) = ctx.trace(|ctx| ctx.scale(0.5, |ctx| ctx.sample("z", Normal::new(&zero, &one)?)))?;
    /// assert_eq!(tr.get("z").unwrap().scale, 0.5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn scale<T>(&mut self, factor: f64, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        Ok(self.with(ScaleMessenger::new(factor)?, f)?.0)
    }

    /// Runs `f` with every log-density multiplied element-wise by `factor` (Pyro's
    /// `poutine.scale` with a tensor): positive and finite, broadcastable to the batch shape of
    /// each site inside without widening it.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let w = Tensor::new(&[1.0f64, 0.5, 2.0], &dev)?;
    /// let (_, tr) = ctx.trace(|ctx| ctx.scale_by(&w, |ctx| ctx.sample("z", Normal::new(&zero, &one)?)))?;
    /// let lp = tr.get("z").unwrap().log_prob()?.to_vec1::<f64>()?;
    /// let plain = Normal::new(&zero, &one)?.log_prob(&tr.get("z").unwrap().value)?.to_vec1::<f64>()?;
    /// assert_eq!(lp[2], 2.0 * plain[2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn scale_by<T>(
        &mut self,
        factor: &Tensor,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        Ok(self.with(ScaleMessenger::tensor(factor)?, f)?.0)
    }

    /// Runs `f` with log-densities counted only where `mask` is set: `poutine.mask`.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let m = Tensor::new(&[1u8, 0, 1], &dev)?;
    /// let (_, tr) = ctx.trace(|ctx| ctx.mask(&m, |ctx| ctx.sample("z", Normal::new(&zero, &one)?)))?;
    /// assert_eq!(tr.get("z").unwrap().log_prob()?.to_vec1::<f64>()?[1], 0.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn mask<T>(&mut self, mask: &Tensor, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        Ok(self.with(MaskMessenger::new(mask)?, f)?.0)
    }

    /// Runs `f` with its draws taken from a generator seeded with `seed`: `handlers.seed`. The
    /// same seed gives the same draws.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let a = ctx.seed(3, |ctx| ctx.sample("a", Normal::new(&zero, &one)?))?;
    /// let b = ctx.seed(3, |ctx| ctx.sample("b", Normal::new(&zero, &one)?))?;
    /// assert_eq!(a.to_vec1::<f64>()?, b.to_vec1::<f64>()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seed<T>(&mut self, seed: u64, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        Ok(self.with(SeedMessenger::new(seed), f)?.0)
    }
}
