//! `AutoGuideList`: automatic guides and guides by hand, each over its own sites.

use std::cell::RefCell;
use std::rc::Rc;

use rand::RngCore;

use super::{AutoGuide, Values};
use crate::ctx::Ctx;
use crate::error::{InferError, Result};
use crate::param_store::ParamStore;

/// A guide by hand, as a part of an [`AutoGuideList`].
type Part<'m> = Box<dyn FnMut(&mut Ctx<'_>) -> Result<()> + 'm>;

/// One part: an automatic guide, or a guide by hand.
enum Entry<'m> {
    Auto(Box<dyn AutoGuide + 'm>),
    Custom(Part<'m>),
}

/// Several guides run one after the other, each over the sites it owns (Pyro's
/// `AutoGuideList`): automatic guides built over the model with the other parts' sites hidden
/// (`.block(Block::hide([..]))` or `Block::expose([..])` on each), and guides by hand for the
/// sites no automatic guide fits (a discrete site, a structured local guide). No two parts may
/// sample one site: the first call checks the automatic parts against each other, and a
/// site sampled twice in a step is [`InferError::DuplicateSite`].
///
/// `median`, `quantiles` and `sample_posterior` gather the automatic parts' sites; the parts by
/// hand have none.
///
/// ```
/// use vi_infer::autoguide::{AutoDelta, AutoGuide, AutoGuideList, AutoNormal};
/// use vi_infer::candle::{Device, Tensor};
/// use vi_infer::dist::{Constraint, Normal};
/// use vi_infer::handlers::Block;
/// use vi_infer::Ctx;
/// let dev = Device::Cpu;
/// let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
/// let model = |ctx: &mut Ctx| {
///     let a = ctx.sample("a", Normal::new(&zero, &one)?)?;
///     let b = ctx.sample("b", Normal::new(&a, &one)?)?;
///     ctx.sample("c", Normal::new(&b, &one)?)
/// };
/// let guide = AutoGuideList::new()
///     .push(AutoDelta::new(model).block(Block::expose(["a"])))
///     .push(AutoNormal::new(model).block(Block::expose(["b"])))
///     .push_fn(|ctx: &mut Ctx| {
///         let loc = ctx.param("c_loc", &zero, Constraint::Real)?;
///         ctx.sample("c", Normal::new(&loc, &one)?)
///     });
/// let (mut store, mut rng) = vi_infer::doc_support::store_and_rng();
/// let (_, tr) = Ctx::new(&mut store, &mut rng).trace(guide.as_fn())?;
/// assert_eq!(tr.get("a").unwrap().dist.as_ref().unwrap().name(), "Delta");
/// assert!(tr.contains("b") && tr.contains("c"));
/// assert_eq!(guide.latent_sites(), ["a", "b"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct AutoGuideList<'m> {
    parts: Rc<RefCell<Vec<Entry<'m>>>>,
    checked: Rc<RefCell<bool>>,
}

impl std::fmt::Debug for AutoGuideList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoGuideList")
            .field("parts", &self.parts.borrow().len())
            .field("sites", &self.latent_sites())
            .finish()
    }
}

impl<'m> AutoGuideList<'m> {
    /// An empty list.
    ///
    /// ```
    /// let guide = vi_infer::autoguide::AutoGuideList::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an automatic guide (built with `.block(..)` over its sites).
    ///
    /// ```
    /// # use vi_infer::candle::{Device, Tensor};
    /// # use vi_infer::dist::Normal;
    /// # use vi_infer::Ctx;
    /// # let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);
    /// # let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
    /// use vi_infer::autoguide::{AutoGuideList, AutoNormal};
    /// let guide = AutoGuideList::new().push(AutoNormal::new(model));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push(self, guide: impl AutoGuide + 'm) -> Self {
        self.parts.borrow_mut().push(Entry::Auto(Box::new(guide)));
        self
    }

    /// Adds a guide by hand (Pyro's `AutoCallable`).
    ///
    /// ```
    /// # use vi_infer::candle::{Device, Tensor};
    /// # use vi_infer::dist::Normal;
    /// # use vi_infer::Ctx;
    /// # let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);
    /// use vi_infer::autoguide::AutoGuideList;
    /// let guide = AutoGuideList::new().push_fn(|ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push_fn<T>(self, mut guide: impl FnMut(&mut Ctx<'_>) -> Result<T> + 'm) -> Self {
        let part: Part<'m> = Box::new(move |ctx: &mut Ctx<'_>| guide(ctx).map(|_| ()));
        self.parts.borrow_mut().push(Entry::Custom(part));
        self
    }

    /// The guide as `Svi` takes it: a closure over a handle to this list.
    ///
    /// ```
    /// # use vi_infer::candle::{Device, Tensor};
    /// # use vi_infer::dist::Normal;
    /// # use vi_infer::Ctx;
    /// # let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);
    /// # let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&zero, &one)?);
    /// let guide = vi_infer::autoguide::AutoGuideList::new().push(vi_infer::autoguide::AutoDelta::new(model));
    /// let mut f = guide.as_fn();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn as_fn(&self) -> impl FnMut(&mut Ctx<'_>) -> Result<()> + 'm {
        super::guide_fn(self.clone())
    }

    /// Each automatic part's values, gathered.
    fn gather(&self, f: impl Fn(&dyn AutoGuide) -> Result<Values>) -> Result<Values> {
        let mut out = Values::new();
        for part in self.parts.borrow().iter() {
            if let Entry::Auto(g) = part {
                out.extend(f(g.as_ref())?);
            }
        }
        Ok(out)
    }
}

impl AutoGuide for AutoGuideList<'_> {
    fn call(&self, ctx: &mut Ctx<'_>) -> Result<()> {
        let mut parts = self.parts.try_borrow_mut().map_err(|_| {
            InferError::Invalid("AutoGuideList: the guide was called from within itself".into())
        })?;
        for part in parts.iter_mut() {
            match part {
                Entry::Auto(g) => g.call(ctx)?,
                Entry::Custom(f) => f(ctx)?,
            }
        }
        if !*self.checked.borrow() {
            let mut seen: Vec<String> = Vec::new();
            for part in parts.iter() {
                if let Entry::Auto(g) = part {
                    for s in g.latent_sites() {
                        if seen.contains(&s) {
                            return Err(InferError::AutoGuide {
                                guide: "AutoGuideList".into(),
                                site: s,
                                msg: "two parts guide it: block it in all but one (`.block(..)`)"
                                    .into(),
                            });
                        }
                        seen.push(s);
                    }
                }
            }
            *self.checked.borrow_mut() = true;
        }
        Ok(())
    }

    fn median(&self, store: &ParamStore) -> Result<Values> {
        self.gather(|g| g.median(store))
    }

    fn quantiles(&self, store: &ParamStore, qs: &[f64]) -> Result<Values> {
        self.gather(|g| g.quantiles(store, qs))
    }

    fn sample_posterior(
        &self,
        store: &ParamStore,
        n: usize,
        rng: &mut dyn RngCore,
    ) -> Result<Values> {
        let mut out = Values::new();
        for part in self.parts.borrow().iter() {
            if let Entry::Auto(g) = part {
                out.extend(g.sample_posterior(store, n, rng)?);
            }
        }
        Ok(out)
    }

    fn latent_sites(&self) -> Vec<String> {
        let mut out = Vec::new();
        for part in self.parts.borrow().iter() {
            if let Entry::Auto(g) = part {
                out.extend(g.latent_sites());
            }
        }
        out
    }
}
