//! Named learnable parameters: constrained values over unconstrained storage, and the
//! variables of candle-nn modules.

mod files;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use vi_dist::{Constraint, Transform, transform_to};

use crate::error::{InferError, Result};
use crate::finite::{finite_mask, first_bad};

/// One constrained parameter: its unconstrained `Var`, and the constraint with its bijection
/// (absent for a value loaded from bare tensors until a model names the constraint again).
#[derive(Debug)]
struct Param {
    unconstrained: Var,
    constraint: Option<(Constraint, Box<dyn Transform>)>,
    /// Loaded from a file and not read by a `param` call since: the first call checks the
    /// loaded shape against its initial value's.
    loaded: bool,
    /// Read since the last step as the `Var`'s own storage (the identity bijection of
    /// `real`): [`ParamStore::renew_shared`] gives it fresh storage before the optimizer
    /// writes, so what was read keeps its values.
    shared: bool,
}

/// The learnable parameters of a model and guide, on one device and dtype: Pyro's
/// `ParamStore`, passed explicitly rather than global.
///
/// - Constrained parameters (`ctx.param(name, init, constraint)`) are stored unconstrained,
///   through [`transform_to`]: the optimizer moves the unconstrained `Var`, the model reads
///   `transform.forward(var)`, which is always inside the constraint.
/// - Modules (candle-nn layers) are built from [`var_builder`](ParamStore::var_builder): their
///   variables live here under `prefix.name`, unchanged.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use vi_dist::Constraint;
/// use vi_infer::ParamStore;
/// let mut store = ParamStore::new(&Device::Cpu, DType::F64);
/// let init = Tensor::new(&[0.5f64, 2.0], &Device::Cpu)?;
/// let scale = store.param("scale", || Ok(init.clone()), &Constraint::Positive)?;
/// assert_eq!(scale.to_vec1::<f64>()?, vec![0.5, 2.0]);
/// // Stored as log(0.5), log(2.0).
/// let raw = store.unconstrained("scale").unwrap().as_tensor().to_vec1::<f64>()?;
/// assert!((raw[0] - 0.5f64.ln()).abs() < 1e-12);
/// // The init is used only the first time.
/// let again = store.param("scale", || Ok(init.zeros_like()?), &Constraint::Positive)?;
/// assert_eq!(again.to_vec1::<f64>()?, vec![0.5, 2.0]);
/// # Ok::<(), vi_infer::InferError>(())
/// ```
///
/// [`ParamStore::default`] is a store that adopts the device and dtype of its first
/// parameter.
pub struct ParamStore {
    /// Fixed by `new`, or adopted from the first parameter (`default`).
    kind: Option<(Device, DType)>,
    params: BTreeMap<String, Param>,
    modules: VarMap,
}

impl Default for ParamStore {
    fn default() -> Self {
        Self {
            kind: None,
            params: BTreeMap::new(),
            modules: VarMap::new(),
        }
    }
}

impl std::fmt::Debug for ParamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParamStore")
            .field("device", &self.kind.as_ref().map(|(d, _)| d.location()))
            .field("dtype", &self.kind.as_ref().map(|(_, t)| *t))
            .field("params", &self.param_names())
            .field("module_vars", &self.module_vars("").len())
            .finish()
    }
}

/// A stored parameter's constrained value, once `constraint` is checked against (or, for a
/// parameter loaded without one, set as) the one it was created with. A parameter loaded from
/// a file has its shape checked against `init`'s at its first read.
fn read(
    p: &mut Param,
    name: &str,
    constraint: &Constraint,
    init: impl FnOnce() -> candle_core::Result<Tensor>,
) -> Result<Tensor> {
    let bad = |msg: String| InferError::Param {
        name: name.to_string(),
        msg,
    };
    match &p.constraint {
        Some((c, _)) if !c.same_as(constraint) => {
            return Err(bad(format!(
                "used with constraint {constraint}, created (or loaded) with {c}"
            )));
        }
        Some(_) => {}
        None => p.constraint = Some((constraint.clone(), transform_to(constraint)?)),
    }
    let Some((_, t)) = &p.constraint else {
        return Err(bad("has no constraint".into()));
    };
    let value = t.forward(p.unconstrained.as_tensor())?;
    if p.loaded {
        let init = init()?;
        if init.dims() != value.dims() {
            return Err(bad(format!(
                "loaded from a checkpoint with shape {:?}, but the program now initialises it with shape {:?}",
                value.dims(),
                init.dims()
            )));
        }
        p.loaded = false;
    }
    // A value that is the `Var`'s own storage (the identity bijection of `real`) would see
    // the optimizer's in-place update: marked, so that the step moves the `Var` to fresh
    // storage first (no copy in the graph).
    if value.id() == p.unconstrained.as_tensor().id() {
        p.shared = true;
    }
    // The bijection into the constraint put the value there (`positive` through an exp
    // raised to the smallest positive number, intervals clamped): distributions built from
    // it need not read it back to check it.
    vi_dist::assume_in_support(&value, constraint);
    Ok(value)
}

impl ParamStore {
    /// An empty store whose parameters live on `device` in `dtype`.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Constraint;
    /// # use vi_infer::ParamStore;
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F64);
    /// assert_eq!(store.dtype(), Some(DType::F64));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(device: &Device, dtype: DType) -> Self {
        Self {
            kind: Some((device.clone(), dtype)),
            params: BTreeMap::new(),
            modules: VarMap::new(),
        }
    }

    /// The device parameters live on (`None` for a default store before its first
    /// parameter).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Constraint;
    /// # use vi_infer::ParamStore;
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F64);
    /// assert!(store.device().unwrap().is_cpu());
    /// assert!(ParamStore::default().device().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn device(&self) -> Option<&Device> {
        self.kind.as_ref().map(|(d, _)| d)
    }

    /// The dtype of the parameters (`None` for a default store before its first parameter).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Constraint;
    /// # use vi_infer::ParamStore;
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F64);
    /// assert_eq!(store.dtype(), Some(DType::F64));
    /// // A default store adopts the first parameter's dtype.
    /// let mut lazy = ParamStore::default();
    /// lazy.param("w", || Tensor::zeros(2, DType::F32, &dev), &Constraint::Real)?;
    /// assert_eq!(lazy.dtype(), Some(DType::F32));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dtype(&self) -> Option<DType> {
        self.kind.as_ref().map(|(_, t)| *t)
    }

    /// The constrained value of parameter `name`: created from `init()` (which must lie
    /// inside `constraint`) the first time, read from the store afterwards. Differentiable
    /// in the unconstrained `Var`.
    ///
    /// Errors: `init` on another device or dtype than the store's, outside the constraint,
    /// or a later call with another constraint than the first one.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Constraint;
    /// # use vi_infer::ParamStore;
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F64);
    /// let p = store.param("p", || Tensor::new(&[0.2f64, 0.7], &dev), &Constraint::UnitInterval)?;
    /// assert!(Constraint::UnitInterval.all(&p)?);
    /// // The same name with another constraint is a typed error.
    /// assert!(store.param("p", || Tensor::new(&[0.5f64], &dev), &Constraint::Positive).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn param(
        &mut self,
        name: &str,
        init: impl FnOnce() -> candle_core::Result<Tensor>,
        constraint: &Constraint,
    ) -> Result<Tensor> {
        let bad = |msg: String| InferError::Param {
            name: name.to_string(),
            msg,
        };
        if self.has_module_var(name) {
            return Err(bad("a module variable already has this name".into()));
        }
        // The common case, every step after the first: one lookup.
        if let Some(p) = self.params.get_mut(name) {
            return read(p, name, constraint, init);
        }
        let init = init()?;
        let (device, dtype) = self
            .kind
            .get_or_insert_with(|| (init.device().clone(), init.dtype()));
        if init.dtype() != *dtype || !init.device().same_device(device) {
            return Err(bad(format!(
                "init is {:?} on {:?}, the store holds {:?} on {:?}",
                init.dtype(),
                init.device().location(),
                dtype,
                device.location()
            )));
        }
        if vi_dist::validation_enabled() && !constraint.all(&init)? {
            return Err(bad(format!(
                "init lies outside the constraint {constraint}{}",
                first_bad(&init, |t| Ok(constraint.check(t)?))?
            )));
        }
        let transform = transform_to(constraint)?;
        let raw = transform.inverse(&init.detach())?;
        // A parameter is a point the optimizer moves: its unconstrained value must be finite
        // (an init of inf, or 0 for `positive`, would give a NaN gradient at the first step).
        let finite = first_bad(&raw, finite_mask)?;
        if !finite.is_empty() {
            return Err(bad(format!(
                "init is not finite in the unconstrained space of {constraint}{finite}"
            )));
        }
        let p = self.params.entry(name.to_string()).or_insert(Param {
            unconstrained: Var::from_tensor(&raw)?,
            constraint: Some((constraint.clone(), transform)),
            loaded: false,
            shared: false,
        });
        read(p, name, constraint, || Ok(init))
    }

    /// The constrained value of a parameter (or a module variable), `None` if there is none
    /// by that name. A parameter loaded from bare tensors ([`load_tensors`] of values without
    /// their constraints) has no constraint until a `param` call names it: reading it before
    /// is an error, never the unconstrained storage. Checkpoints written by [`save`] and
    /// `Svi::save` carry the constraints.
    ///
    /// [`load_tensors`]: ParamStore::load_tensors
    /// [`save`]: ParamStore::save
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Constraint;
    /// # use vi_infer::ParamStore;
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F64);
    /// store.param("s", || Tensor::new(&[2.0f64], &dev), &Constraint::Positive)?;
    /// assert_eq!(store.get("s")?.unwrap().to_vec1::<f64>()?, vec![2.0]);
    /// assert!(store.get("missing")?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, name: &str) -> Result<Option<Tensor>> {
        match self.params.get(name) {
            Some(Param {
                unconstrained,
                constraint: Some((_, t)),
                ..
            }) => Ok(Some(t.forward(unconstrained.as_tensor())?)),
            Some(Param {
                constraint: None, ..
            }) => Err(InferError::Param {
                name: name.to_string(),
                msg: "was loaded without its constraint, so its constrained value is unknown: \
                      run the program once (its `param` call names the constraint) or read \
                      the raw storage with `unconstrained`"
                    .into(),
            }),
            None => Ok(self.module_var(name).map(|v| v.as_tensor().clone())),
        }
    }

    /// Gives every parameter read as its `Var`'s own storage since the last call a new `Var`
    /// holding the same values (moving its gradient in `grads` to it), so that the optimizer's
    /// in-place update leaves what the step's traces hold as it was. One copy per such
    /// parameter and step; the optimizer's state is keyed by name and carries over.
    pub(crate) fn renew_shared(
        &mut self,
        grads: &mut candle_core::backprop::GradStore,
    ) -> Result<()> {
        for p in self.params.values_mut().filter(|p| p.shared) {
            let old = p.unconstrained.as_tensor().clone();
            let new = Var::from_tensor(&old.detach())?;
            if let Some(g) = grads.remove(&old) {
                grads.insert(new.as_tensor(), g);
            }
            p.unconstrained = new;
            p.shared = false;
        }
        Ok(())
    }

    /// The unconstrained `Var` of a constrained parameter (what the optimizer moves). A `real`
    /// parameter's `Var` is replaced by a copy at each step that read it (so that the step's
    /// traces keep the values they used): read it again after a step rather than keeping it.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Constraint;
    /// # use vi_infer::ParamStore;
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F64);
    /// store.param("s", || Tensor::new(&[1.0f64], &dev), &Constraint::Positive)?;
    /// // log 1 = 0
    /// assert_eq!(store.unconstrained("s").unwrap().as_tensor().to_vec1::<f64>()?, vec![0.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unconstrained(&self, name: &str) -> Option<&Var> {
        self.params.get(name).map(|p| &p.unconstrained)
    }

    /// A candle-nn `VarBuilder` whose variables live in this store under `prefix.`; build
    /// modules (`candle_nn::linear(…, store.var_builder("encoder").pp("fc1"))`) once, outside
    /// the model, and mark them used with `ctx.module("encoder", &m)` inside it.
    ///
    /// Errors on a default store that has no device and dtype yet: build it with
    /// [`ParamStore::new`].
    ///
    /// ```
    /// use candle_core::{DType, Device};
    /// use vi_infer::ParamStore;
    /// let store = ParamStore::new(&Device::Cpu, DType::F32);
    /// let fc = candle_nn::linear(3, 2, store.var_builder("enc")?.pp("fc"))?;
    /// let names: Vec<String> = store.module_vars("enc").into_iter().map(|(n, _)| n).collect();
    /// assert_eq!(names, vec!["enc.fc.bias", "enc.fc.weight"]);
    /// # let _ = fc;
    /// # Ok::<(), vi_infer::InferError>(())
    /// ```
    pub fn var_builder(&self, prefix: &str) -> Result<VarBuilder<'static>> {
        let Some((device, dtype)) = &self.kind else {
            return Err(InferError::Param {
                name: prefix.to_string(),
                msg: "the store has no device and dtype yet: build it with ParamStore::new".into(),
            });
        };
        Ok(VarBuilder::from_varmap(&self.modules, *dtype, device).pp(prefix))
    }

    /// Whether some module variable lives under `prefix` (is named `prefix` or
    /// `prefix.<…>`), without collecting them.
    pub(crate) fn has_module(&self, prefix: &str) -> bool {
        let data = self
            .modules
            .data()
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        data.keys().any(|k| {
            prefix.is_empty()
                || k.strip_prefix(prefix)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
    }

    /// Whether a module variable is named `name`.
    fn has_module_var(&self, name: &str) -> bool {
        let data = self
            .modules
            .data()
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        data.contains_key(name)
    }

    fn module_var(&self, name: &str) -> Option<Var> {
        let data = self
            .modules
            .data()
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        data.get(name).cloned()
    }

    /// The module variables under `prefix` (`prefix.*`), sorted by name.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Constraint;
    /// # use vi_infer::ParamStore;
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F64);
    /// let _fc = candle_nn::linear(2, 2, store.var_builder("dec")?.pp("fc"))?;
    /// assert_eq!(store.module_vars("dec").len(), 2);
    /// assert!(store.module_vars("enc").is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn module_vars(&self, prefix: &str) -> Vec<(String, Var)> {
        let data = self
            .modules
            .data()
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let dotted = format!("{prefix}.");
        let mut v: Vec<(String, Var)> = data
            .iter()
            .filter(|(k, _)| prefix.is_empty() || k.starts_with(&dotted) || *k == prefix)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The names of the constrained parameters, sorted.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::Constraint;
    /// # use vi_infer::ParamStore;
    /// let dev = Device::Cpu;
    /// let mut store = ParamStore::new(&dev, DType::F64);
    /// store.param("b", || Tensor::new(&[1.0f64], &dev), &Constraint::Real)?;
    /// store.param("a", || Tensor::new(&[1.0f64], &dev), &Constraint::Real)?;
    /// assert_eq!(store.param_names(), ["a", "b"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn param_names(&self) -> Vec<String> {
        self.params.keys().cloned().collect()
    }
}
