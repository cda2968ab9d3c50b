//! [`optimizer_type!`]: the public side of every optimizer (constructors, accessors, the
//! [`Optimizer`](crate::Optimizer) and `candle_nn::Optimizer` impls) over an
//! [`Engine`](crate::engine::Engine) of its rule, written once.

/// The public optimizer types: constructors, accessors, and the [`Optimizer`] and
/// `candle_nn::Optimizer` impls over an [`Engine`].
macro_rules! optimizer_type {
    ($ty:ident, $rule:ty, $opts:ident) => {
        impl $ty {
            #[doc = concat!("A ", stringify!($ty), " over the named parameters `params`, all with `options`.")]
            ///
            /// ```
            /// use candle_core::{Device, Var};
            #[doc = concat!("use vi_optim::{", stringify!($ty), ", ", stringify!($opts), "};")]
            ///
            /// let w = Var::new(&[1.0f32, 2.0], &Device::Cpu)?;
            #[doc = concat!("let opt = ", stringify!($ty), "::new([(\"w\", w)], ", stringify!($opts), "::default())?;")]
            /// # Ok::<(), vi_optim::OptimError>(())
            /// ```
            pub fn new<S: Into<String>>(
                params: impl IntoIterator<Item = (S, candle_core::Var)>,
                options: $opts,
            ) -> $crate::error::Result<Self> {
                let params = params.into_iter().map(|(n, v)| (n.into(), v)).collect();
                Ok($ty($crate::engine::Engine::new(params, options, None)?))
            }

            #[doc = concat!("A ", stringify!($ty), " with no parameters yet: add them with [`add_param`](crate::Optimizer::add_param) or pass them to [`step_params`](crate::Optimizer::step_params).")]
            ///
            /// ```
            #[doc = concat!("use vi_optim::{", stringify!($ty), ", ", stringify!($opts), ", Optimizer};")]
            ///
            #[doc = concat!("let opt = ", stringify!($ty), "::empty(", stringify!($opts), "::default())?;")]
            /// assert!(opt.params().is_empty());
            /// # Ok::<(), vi_optim::OptimError>(())
            /// ```
            pub fn empty(options: $opts) -> $crate::error::Result<Self> {
                Ok($ty($crate::engine::Engine::new(Vec::new(), options, None)?))
            }

            /// Per-parameter options, as Pyro's callable `optim_args`: `options(name, &defaults)`
            /// gives each parameter's options when the parameter is first seen (here, or later
            /// through `add_param`/`step_params`), and they stay with it.
            ///
            /// ```
            /// use candle_core::{Device, Var};
            #[doc = concat!("use vi_optim::{", stringify!($ty), ", ", stringify!($opts), ", Optimizer};")]
            ///
            /// let w = Var::new(&[1.0f32], &Device::Cpu)?;
            /// let b = Var::new(&[0.0f32], &Device::Cpu)?;
            #[doc = concat!("let opt = ", stringify!($ty), "::with_param_options(")]
            ///     [("enc.w", w), ("dec.b", b)],
            #[doc = concat!("    ", stringify!($opts), "::default(),")]
            #[doc = concat!("    |name, d| if name.starts_with(\"enc.\") { ", stringify!($opts), " { lr: 0.5, ..d.clone() } } else { d.clone() },")]
            /// )?;
            /// assert_eq!(opt.param_options("enc.w").map(|o| o.lr), Some(0.5));
            /// # Ok::<(), vi_optim::OptimError>(())
            /// ```
            pub fn with_param_options<S: Into<String>>(
                params: impl IntoIterator<Item = (S, candle_core::Var)>,
                defaults: $opts,
                options: impl Fn(&str, &$opts) -> $opts + Send + Sync + 'static,
            ) -> $crate::error::Result<Self> {
                let params = params.into_iter().map(|(n, v)| (n.into(), v)).collect();
                Ok($ty($crate::engine::Engine::new(
                    params,
                    defaults,
                    Some(std::sync::Arc::new(options)),
                )?))
            }

            /// The default options.
            ///
            /// ```
            #[doc = concat!("use vi_optim::{", stringify!($ty), ", ", stringify!($opts), "};")]
            ///
            #[doc = concat!("let opt = ", stringify!($ty), "::empty(", stringify!($opts), " { lr: 0.1, ..Default::default() })?;")]
            /// assert_eq!(opt.options().lr, 0.1);
            /// # Ok::<(), vi_optim::OptimError>(())
            /// ```
            pub fn options(&self) -> &$opts {
                self.0.defaults()
            }

            /// The options of the parameter `name`, once it has been seen.
            ///
            /// ```
            /// use candle_core::{Device, Var};
            #[doc = concat!("use vi_optim::{", stringify!($ty), ", ", stringify!($opts), "};")]
            ///
            /// let w = Var::new(&[1.0f32], &Device::Cpu)?;
            #[doc = concat!("let opt = ", stringify!($ty), "::new([(\"w\", w)], ", stringify!($opts), "::default())?;")]
            /// assert!(opt.param_options("w").is_some());
            /// assert!(opt.param_options("v").is_none());
            /// # Ok::<(), vi_optim::OptimError>(())
            /// ```
            pub fn param_options(&self, name: &str) -> Option<&$opts> {
                self.0.param_options(name)
            }

            /// How many steps the parameter `name` has taken (torch's `state["step"]`).
            ///
            /// ```
            /// use candle_core::{Device, Var};
            #[doc = concat!("use vi_optim::{", stringify!($ty), ", ", stringify!($opts), ", Optimizer};")]
            ///
            /// let w = Var::new(&[1.0f32], &Device::Cpu)?;
            #[doc = concat!("let mut opt = ", stringify!($ty), "::new([(\"w\", w.clone())], ", stringify!($opts), "::default())?;")]
            /// opt.step(&w.as_tensor().sqr()?.sum_all()?.backward()?)?;
            /// assert_eq!(opt.step_count("w"), Some(1));
            /// # Ok::<(), vi_optim::OptimError>(())
            /// ```
            pub fn step_count(&self, name: &str) -> Option<u64> {
                self.0.step_count(name)
            }

            /// Whether contiguous f32/f64 parameters on the CPU are updated in place by one
            /// fused loop (the default, `true`) or by composed candle ops like every other
            /// device. Both give the same trajectory up to rounding.
            ///
            /// ```
            #[doc = concat!("use vi_optim::{", stringify!($ty), ", ", stringify!($opts), "};")]
            ///
            #[doc = concat!("let mut opt = ", stringify!($ty), "::empty(", stringify!($opts), "::default())?;")]
            /// opt.set_cpu_fast_path(false);
            /// # Ok::<(), vi_optim::OptimError>(())
            /// ```
            pub fn set_cpu_fast_path(&mut self, on: bool) {
                self.0.set_fast_path(on)
            }
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("options", self.0.defaults())
                    .field("params", &self.0.params().iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>())
                    .field("lr_transform", &self.0.transform())
                    .finish()
            }
        }

        impl $crate::optimizer::Optimizer for $ty {
            fn name(&self) -> &'static str {
                <$rule as $crate::rule::Rule>::NAME
            }
            fn step_params(
                &mut self,
                params: &[(&str, &candle_core::Var)],
                grads: &candle_core::backprop::GradStore,
            ) -> $crate::error::Result<()> {
                self.0.step_params(params, grads)
            }
            fn step(&mut self, grads: &candle_core::backprop::GradStore) -> $crate::error::Result<()> {
                self.0.step(grads)
            }
            fn add_param(&mut self, name: &str, var: candle_core::Var) -> $crate::error::Result<()> {
                self.0.add_param(name, var)
            }
            fn params(&self) -> &[(String, candle_core::Var)] {
                self.0.params()
            }
            fn learning_rate(&self) -> f64 {
                self.0.learning_rate()
            }
            fn max_learning_rate(&self) -> f64 {
                self.0.max_learning_rate()
            }
            fn lr_transform(&self) -> $crate::lr_transform::LrTransform {
                self.0.transform()
            }
            fn set_lr_transform(&mut self, transform: $crate::lr_transform::LrTransform) {
                self.0.set_transform(transform)
            }
            fn state_dict(&self) -> $crate::error::Result<$crate::state::StateDict> {
                self.0.state_dict()
            }
            fn load_state_dict(&mut self, state: &$crate::state::StateDict) -> $crate::error::Result<()> {
                self.0.load_state_dict(state)
            }
        }

        /// For plain candle code: parameters are named by position (`"0"`, `"1"`, …) and
        /// `set_learning_rate` sets every parameter's rate.
        impl candle_nn::Optimizer for $ty {
            type Config = $opts;

            fn new(vars: Vec<candle_core::Var>, config: $opts) -> candle_core::Result<Self> {
                Ok($ty::new(
                    vars.into_iter().enumerate().map(|(i, v)| (i.to_string(), v)),
                    config,
                )?)
            }
            fn step(&mut self, grads: &candle_core::backprop::GradStore) -> candle_core::Result<()> {
                Ok(self.0.step(grads)?)
            }
            fn learning_rate(&self) -> f64 {
                self.0.learning_rate()
            }
            fn set_learning_rate(&mut self, lr: f64) {
                self.0.set_transform($crate::lr_transform::LrTransform::constant(lr))
            }
        }
    };
}
pub(crate) use optimizer_type;
