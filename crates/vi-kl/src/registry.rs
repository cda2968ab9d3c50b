//! The KL registry: closed forms keyed by the pair of concrete distribution types, and the
//! structural rules for the wrappers.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use candle_core::Tensor;
use vi_dist::Distribution;

use crate::error::{KlError, Result};
use crate::util::{check_pair, describe, no_closed_form};

/// A rule's function on trait objects: KL(p ‖ q), with the registry for recursive calls.
type RuleFn =
    dyn Fn(&dyn Distribution, &dyn Distribution, &KlRegistry) -> Result<Tensor> + Send + Sync;

/// A rule's summed variant on trait objects: KL(p ‖ q) summed over the trailing `dims` batch
/// dims in one op.
type SummedFn = dyn Fn(&dyn Distribution, &dyn Distribution, usize) -> Result<Tensor> + Send + Sync;

#[derive(Clone)]
struct Rule {
    info: PairInfo,
    f: Arc<RuleFn>,
    /// The same KL summed over trailing dims in one op, for `Independent ‖ Independent` of
    /// this pair. Part of the rule: replacing the rule (a user's `register`) drops it.
    summed: Option<Arc<SummedFn>>,
}

/// One registered pair, as listed by [`KlRegistry::pairs`] (and the table in `docs/kl.md`).
///
/// ```
/// let reg = vi_kl::KlRegistry::default();
/// let normal = reg.pairs().into_iter().find(|r| r.p == "Normal" && r.q == "Normal").unwrap();
/// assert_eq!(normal.p, "Normal");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PairInfo {
    /// Short type name of `p` (e.g. `Normal`).
    pub p: &'static str,
    /// Short type name of `q`.
    pub q: &'static str,
    /// What the rule computes, in a few words (empty for a user's rule).
    pub note: &'static str,
}

/// A set of KL rules keyed by the pair of concrete types `(P, Q)`.
///
/// [`KlRegistry::default`] holds every closed form this crate ships (the table in
/// `docs/kl.md`); [`KlRegistry::empty`] holds none. Besides the registered pairs, dispatch
/// applies the structural rules for the wrappers, in this order, when no pair matches
/// exactly:
///
/// 1. `Masked` on either side: the KL of the bases, zero where either mask is clear;
/// 2. `Expanded` on either side: the KL of the bases, broadcast to the batch shape;
/// 3. `Independent` on both sides: the KL of the bases with the reinterpreted dims both
///    share removed, summed over those dims (Pyro's rule: unequal counts are peeled; torch
///    requires equal counts); with equal counts, in one op where the bases' rule has a
///    summed variant (this crate's `Normal ‖ Normal`, also for `Expanded` Normals);
/// 4. a point mass `p` (`Delta`, or `Independent` of one):
///    `p.log_prob(v) − q.log_prob(v)` = `log_density − log q(v)` (Pyro drops the
///    `log_density`; we keep it), `+inf` where `v` is outside `q`'s support.
///
/// Anything else is [`KlError::NoClosedForm`].
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use vi_dist::Normal;
/// use vi_kl::KlRegistry;
/// let reg = KlRegistry::default();
/// let zero = Tensor::zeros(3, DType::F64, &Device::Cpu)?;
/// let one = Tensor::ones(3, DType::F64, &Device::Cpu)?;
/// let p = Normal::new(&zero, &one)?;
/// let q = Normal::new(&one, &one)?;
/// let kl = reg.kl(&p, &q)?; // 0.5 * (mu_p - mu_q)^2 / sigma_q^2
/// assert_eq!(kl.to_vec1::<f64>()?, vec![0.5; 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct KlRegistry {
    rules: HashMap<(TypeId, TypeId), Rule>,
}

impl Default for KlRegistry {
    fn default() -> Self {
        Self::with_defaults()
    }
}

impl std::fmt::Debug for KlRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KlRegistry")
            .field("pairs", &self.pairs())
            .finish()
    }
}

/// The key of the pair of concrete types of `p` and `q`.
fn type_pair(p: &dyn Distribution, q: &dyn Distribution) -> (TypeId, TypeId) {
    (Any::type_id(p.as_any()), Any::type_id(q.as_any()))
}

/// `p` and `q` as the concrete types of a rule, or [`KlError::NoClosedForm`].
fn concrete<'a, P: 'static, Q: 'static>(
    p: &'a dyn Distribution,
    q: &'a dyn Distribution,
) -> Result<(&'a P, &'a Q)> {
    match (
        p.as_any().downcast_ref::<P>(),
        q.as_any().downcast_ref::<Q>(),
    ) {
        (Some(p), Some(q)) => Ok((p, q)),
        _ => Err(no_closed_form(p, q)),
    }
}

/// The last segment of a type's path: `vi_dist::normal::Normal` → `Normal`.
fn short_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let head = full.split('<').next().unwrap_or(full);
    head.rsplit("::").next().unwrap_or(head)
}

impl KlRegistry {
    /// A registry with no pairs: only the structural wrapper rules apply.
    ///
    /// ```
    /// let reg = vi_kl::KlRegistry::empty();
    /// assert!(reg.pairs().is_empty());
    /// ```
    pub fn empty() -> Self {
        Self {
            rules: HashMap::new(),
        }
    }

    /// Every closed form this crate ships (the same as [`KlRegistry::default`]).
    ///
    /// ```
    /// assert!(vi_kl::KlRegistry::with_defaults().pairs().len() > 50);
    /// ```
    pub fn with_defaults() -> Self {
        let mut reg = Self::empty();
        crate::pairs::register(&mut reg);
        reg
    }

    /// Registers (or replaces) the rule for the pair `(P, Q)` of concrete types.
    ///
    /// The rule receives both distributions and this registry (for recursive calls, e.g. a
    /// wrapper of your own that defers to its base). It must return a tensor of the
    /// broadcast batch shape (or one that broadcasts to it); shapes, dtypes and devices of
    /// `p` and `q` have been checked before it runs. Returns the rule it replaced, if any.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Cauchy, Normal};
    /// use vi_kl::KlRegistry;
    /// let mut reg = KlRegistry::default();
    /// // A made-up rule, to show the mechanics.
    /// reg.register(|p: &Normal, _q: &Cauchy, _reg: &KlRegistry| Ok(p.loc().zeros_like()?));
    /// let t = Tensor::ones(2, DType::F32, &Device::Cpu)?;
    /// let kl = reg.kl(&Normal::new(&t, &t)?, &Cauchy::new(&t, &t)?)?;
    /// assert_eq!(kl.to_vec1::<f32>()?, vec![0.0, 0.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn register<P, Q, F>(&mut self, f: F) -> Option<PairInfo>
    where
        P: Distribution + 'static,
        Q: Distribution + 'static,
        F: Fn(&P, &Q, &KlRegistry) -> Result<Tensor> + Send + Sync + 'static,
    {
        self.insert_rule("", f, None)
    }

    /// [`register`](Self::register) with a note for the table of pairs.
    pub(crate) fn insert<P, Q, F>(&mut self, note: &'static str, f: F) -> Option<PairInfo>
    where
        P: Distribution + 'static,
        Q: Distribution + 'static,
        F: Fn(&P, &Q, &KlRegistry) -> Result<Tensor> + Send + Sync + 'static,
    {
        self.insert_rule(note, f, None)
    }

    /// [`insert`](Self::insert) with the rule's summed variant: `sum(f(p, q), dims)` in one
    /// op, which `Independent ‖ Independent` of the pair (equal reinterpreted counts, either
    /// base possibly `Expanded`) takes instead of the KL of the bases then `sum`.
    pub(crate) fn insert_with_sum<P, Q, F, S>(
        &mut self,
        note: &'static str,
        f: F,
        summed: S,
    ) -> Option<PairInfo>
    where
        P: Distribution + 'static,
        Q: Distribution + 'static,
        F: Fn(&P, &Q, &KlRegistry) -> Result<Tensor> + Send + Sync + 'static,
        S: Fn(&P, &Q, usize) -> Result<Tensor> + Send + Sync + 'static,
    {
        let summed = move |p: &dyn Distribution, q: &dyn Distribution, dims: usize| {
            let (p, q) = concrete::<P, Q>(p, q)?;
            summed(p, q, dims)
        };
        self.insert_rule(note, f, Some(Arc::new(summed)))
    }

    /// [`insert`](Self::insert) of a rule with an optional summed variant.
    fn insert_rule<P, Q, F>(
        &mut self,
        note: &'static str,
        f: F,
        summed: Option<Arc<SummedFn>>,
    ) -> Option<PairInfo>
    where
        P: Distribution + 'static,
        Q: Distribution + 'static,
        F: Fn(&P, &Q, &KlRegistry) -> Result<Tensor> + Send + Sync + 'static,
    {
        let info = PairInfo {
            p: short_name::<P>(),
            q: short_name::<Q>(),
            note,
        };
        let f = move |p: &dyn Distribution, q: &dyn Distribution, reg: &KlRegistry| {
            let (p, q) = concrete::<P, Q>(p, q)?;
            f(p, q, reg)
        };
        self.rules
            .insert(
                (TypeId::of::<P>(), TypeId::of::<Q>()),
                Rule {
                    info,
                    f: Arc::new(f),
                    summed,
                },
            )
            .map(|r| r.info)
    }

    /// Whether a rule is registered for exactly the pair `(P, Q)` (wrapper rules aside).
    ///
    /// ```
    /// use vi_dist::{Cauchy, Normal};
    /// let reg = vi_kl::KlRegistry::default();
    /// assert!(reg.contains::<Normal, Normal>());
    /// assert!(!reg.contains::<Normal, Cauchy>());
    /// ```
    pub fn contains<P: 'static, Q: 'static>(&self) -> bool {
        self.rules
            .contains_key(&(TypeId::of::<P>(), TypeId::of::<Q>()))
    }

    /// KL(p ‖ q) summed over the trailing `dims` batch dims in one op, by the summed variant
    /// of the rule [`kl`](Self::kl) would apply to the pair: the pair's own rule, or, where
    /// the `Expanded` wrapper rule applies, the rule of the bases (each expanded natively to
    /// its wrapper's batch shape). `None` when that rule has no summed variant (a user's rule,
    /// most families): the caller sums the KL itself.
    pub(crate) fn kl_summed(
        &self,
        p: &dyn Distribution,
        q: &dyn Distribution,
        dims: usize,
    ) -> Result<Option<Tensor>> {
        match self.rules.get(&type_pair(p, q)) {
            Some(rule) => rule.summed.as_ref().map(|s| s(p, q, dims)).transpose(),
            None => crate::wrappers::expanded_summed(p, q, self, dims),
        }
    }

    /// Whether the pair of these types has a rule with a summed variant.
    pub(crate) fn has_summed(&self, p: TypeId, q: TypeId) -> bool {
        self.rules.get(&(p, q)).is_some_and(|r| r.summed.is_some())
    }

    /// The registered pairs, sorted by `(p, q)`.
    ///
    /// ```
    /// let pairs = vi_kl::KlRegistry::default().pairs();
    /// assert!(pairs.windows(2).all(|w| (w[0].p, w[0].q) < (w[1].p, w[1].q)));
    /// ```
    pub fn pairs(&self) -> Vec<PairInfo> {
        let mut v: Vec<PairInfo> = self.rules.values().map(|r| r.info.clone()).collect();
        v.sort();
        v
    }

    /// The registered pairs as a Markdown table (`| p | q | rule |`), sorted: what
    /// `docs/kl.md` holds between its `kl-table` markers (a test keeps the two in sync).
    ///
    /// ```
    /// let table = vi_kl::KlRegistry::default().markdown_table();
    /// assert!(table.lines().any(|l| l.starts_with("| Normal | Normal |")));
    /// ```
    pub fn markdown_table(&self) -> String {
        let mut s = String::from("| p | q | rule |\n|---|---|---|\n");
        for r in self.pairs() {
            let note = if r.note.is_empty() {
                "user rule"
            } else {
                r.note
            };
            s.push_str(&format!("| {} | {} | {} |\n", r.p, r.q, note));
        }
        s
    }

    /// KL(p ‖ q), of shape `broadcast(p.batch_shape, q.batch_shape)`, differentiable in the
    /// parameters of both.
    ///
    /// Errors: [`KlError::NoClosedForm`] when no rule covers the pair;
    /// [`KlError::EventShape`], [`KlError::BatchShape`] or [`KlError::Kind`] when the two
    /// cannot be compared.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Distribution, Gamma};
    /// let reg = vi_kl::KlRegistry::default();
    /// let dev = Device::Cpu;
    /// // p batch [2, 1] against q batch [3]: the KL has shape [2, 3].
    /// let p = Gamma::new(&Tensor::ones((2, 1), DType::F32, &dev)?, &Tensor::ones((2, 1), DType::F32, &dev)?)?;
    /// let q = Gamma::new(&Tensor::new(&[1.0f32, 2.0, 3.0], &dev)?, &Tensor::ones(3, DType::F32, &dev)?)?;
    /// assert_eq!(reg.kl(&p, &q)?.dims(), &[2, 3]);
    /// // Different event shapes cannot be compared.
    /// let r = Gamma::new(&Tensor::ones(3, DType::F32, &dev)?, &Tensor::ones(3, DType::F32, &dev)?)?;
    /// let err = reg.kl(&p.to_event(1)?, &r.to_event(1)?).unwrap_err();
    /// assert!(matches!(err, vi_kl::KlError::EventShape { .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn kl(&self, p: &dyn Distribution, q: &dyn Distribution) -> Result<Tensor> {
        // Which rule applies decides first: a pair of families without one is
        // `NoClosedForm` whatever the shapes (Dirichlet ‖ Categorical, say).
        let rule = self.rules.get(&type_pair(p, q));
        let structural = match rule {
            Some(_) => None,
            None => crate::wrappers::structural_rule(p, q),
        };
        if rule.is_none() && structural.is_none() {
            return Err(no_closed_form(p, q));
        }
        let batch = check_pair(p, q)?;
        let kl = match (rule, structural) {
            (Some(rule), _) => (rule.f)(p, q, self)?,
            (None, Some(s)) => crate::wrappers::apply(s, p, q, self)?,
            (None, None) => return Err(no_closed_form(p, q)),
        };
        if kl.dims() == batch.as_slice() {
            Ok(kl)
        } else if vi_dist::broadcasts_to(kl.dims(), &batch) {
            Ok(kl.broadcast_as(batch)?)
        } else {
            Err(KlError::RuleShape {
                p: describe(p),
                q: describe(q),
                found: kl.dims().to_vec(),
                expected: batch,
            })
        }
    }

    /// Whether [`kl`](Self::kl) has a rule for this pair of distributions (a registered
    /// pair or a wrapper rule). A wrapper rule may still find no rule for the bases.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::{Cauchy, Normal};
    /// let t = Tensor::ones(2, DType::F32, &Device::Cpu)?;
    /// let reg = vi_kl::KlRegistry::default();
    /// assert!(reg.has_rule(&Normal::new(&t, &t)?, &Normal::new(&t, &t)?));
    /// assert!(!reg.has_rule(&Normal::new(&t, &t)?, &Cauchy::new(&t, &t)?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn has_rule(&self, p: &dyn Distribution, q: &dyn Distribution) -> bool {
        self.rules.contains_key(&type_pair(p, q))
            || crate::wrappers::structural_rule(p, q).is_some()
    }
}

fn global() -> &'static RwLock<Arc<KlRegistry>> {
    static GLOBAL: OnceLock<RwLock<Arc<KlRegistry>>> = OnceLock::new();
    GLOBAL.get_or_init(|| RwLock::new(Arc::new(KlRegistry::with_defaults())))
}

/// The process-wide registry that [`kl_divergence`] uses: the defaults plus whatever
/// [`register_kl`] added. A snapshot: later registrations do not change it.
///
/// ```
/// assert!(vi_kl::global_registry().contains::<vi_dist::Normal, vi_dist::Normal>());
/// ```
pub fn global_registry() -> Arc<KlRegistry> {
    let guard = global().read().unwrap_or_else(|e| e.into_inner());
    Arc::clone(&guard)
}

/// Registers (or replaces) the process-wide rule for `(P, Q)`, used by [`kl_divergence`]
/// from then on (and so by the ELBOs of `vi-infer`). Returns the rule it replaced.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use vi_dist::{Distribution, Normal};
/// use vi_kl::{KlRegistry, kl_divergence, register_kl};
///
/// // Your own distribution type...
/// #[derive(Clone, Debug)]
/// struct Unit(Normal);
/// impl Distribution for Unit {
///     fn name(&self) -> &'static str { "Unit" }
///     fn batch_shape(&self) -> &[usize] { self.0.batch_shape() }
///     fn event_shape(&self) -> &[usize] { self.0.event_shape() }
///     fn dtype(&self) -> candle_core::DType { self.0.dtype() }
///     fn device(&self) -> &candle_core::Device { self.0.device() }
///     fn sample(&self, s: &[usize], rng: &mut dyn rand::RngCore) -> vi_dist::Result<Tensor> {
///         self.0.sample(s, rng)
///     }
///     fn log_prob(&self, x: &Tensor) -> vi_dist::Result<Tensor> { self.0.log_prob(x) }
///     fn entropy(&self) -> vi_dist::Result<Tensor> { self.0.entropy() }
///     fn mean(&self) -> vi_dist::Result<Tensor> { self.0.mean() }
///     fn variance(&self) -> vi_dist::Result<Tensor> { self.0.variance() }
///     fn support(&self) -> vi_dist::Constraint { self.0.support() }
///     fn expand(&self, b: &[usize]) -> vi_dist::Result<Box<dyn Distribution>> {
///         self.0.expand(b)
///     }
///     fn clone_box(&self) -> Box<dyn Distribution> { Box::new(self.clone()) }
///     fn as_any(&self) -> &dyn std::any::Any { self }
/// }
/// // ...and its KL against a Normal, deferring to the registry for the inner pair.
/// register_kl(|p: &Unit, q: &Normal, reg: &KlRegistry| reg.kl(&p.0, q));
///
/// let t = Tensor::ones(2, DType::F64, &Device::Cpu)?;
/// let n = Normal::new(&t, &t)?;
/// let kl = kl_divergence(&Unit(n.clone()), &n)?;
/// assert_eq!(kl.to_vec1::<f64>()?, vec![0.0, 0.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn register_kl<P, Q, F>(f: F) -> Option<PairInfo>
where
    P: Distribution + 'static,
    Q: Distribution + 'static,
    F: Fn(&P, &Q, &KlRegistry) -> Result<Tensor> + Send + Sync + 'static,
{
    let mut guard = global().write().unwrap_or_else(|e| e.into_inner());
    let mut reg = KlRegistry::clone(&guard);
    let old = reg.register(f);
    *guard = Arc::new(reg);
    old
}

/// KL(p ‖ q) by the process-wide registry: shape `broadcast(p.batch_shape, q.batch_shape)`,
/// differentiable in every parameter of both.
///
/// The seed question — a mean-field guide `Normal(loc, scale).to_event(1)` against a
/// `MultivariateNormal` prior — works in both directions and agrees with the diagonal MVN:
///
/// ```
/// use candle_core::{DType, Device, Tensor, Var};
/// use vi_dist::{Distribution, MultivariateNormal, Normal};
/// use vi_kl::kl_divergence;
/// let dev = Device::Cpu;
/// let loc = Var::new(&[0.5f64, -1.0], &dev)?;
/// let scale = Var::new(&[0.8f64, 1.5], &dev)?;
/// let prior = MultivariateNormal::from_covariance(
///     &Tensor::zeros(2, DType::F64, &dev)?,
///     &Tensor::new(&[[2.0f64, 0.3], [0.3, 1.0]], &dev)?,
/// )?;
/// let guide = Normal::new(&loc, &scale)?.to_event(1)?;
/// let kl = kl_divergence(&guide, &prior)?;
/// // The same distribution as a diagonal MVN: pass the scale, not the variance.
/// let diag = MultivariateNormal::from_diag_scale(&loc, &scale)?;
/// let kl_mvn = kl_divergence(&diag, &prior)?;
/// let (a, b) = (kl.to_scalar::<f64>()?, kl_mvn.to_scalar::<f64>()?);
/// assert!((a - b).abs() < 1e-12);
/// // The other direction has a closed form too.
/// let back = kl_divergence(&prior, &guide)?;
/// assert!(back.to_scalar::<f64>()? > 0.0);
/// // And gradients reach the guide's parameters.
/// let grads = kl.backward()?;
/// assert!(grads.get(&scale).is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn kl_divergence(p: &dyn Distribution, q: &dyn Distribution) -> Result<Tensor> {
    global_registry().kl(p, q)
}
