//! The builder methods every automatic guide shares, as a macro (their examples name the
//! guide).

/// The builder methods every automatic guide shares (`new`, `init`, `block`, `prefix`, `seed`,
/// `as_fn`), with examples that name the guide.
macro_rules! builder_methods {
    ($guide:ident) => {
        impl<'m> $guide<'m> {
            #[doc = concat!("The ", stringify!($guide), " of `model` (it keeps a copy of the model closure: see the")]
            #[doc = "[module](super) docs), with [`Init::median`](super::Init::median)."]
            #[doc = ""]
            #[doc = "```"]
            #[doc = "# use vi_infer::candle::{Device, Tensor};"]
            #[doc = "# use vi_infer::dist::Normal;"]
            #[doc = "# use vi_infer::Ctx;"]
            #[doc = "# let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);"]
            #[doc = "let model = |ctx: &mut Ctx| ctx.sample(\"z\", Normal::new(&zero, &one)?);"]
            #[doc = concat!("let guide = vi_infer::autoguide::", stringify!($guide), "::new(model);")]
            #[doc = "# Ok::<(), Box<dyn std::error::Error>>(())"]
            #[doc = "```"]
            pub fn new<M, T>(model: M) -> Self
            where
                M: FnMut(&mut $crate::Ctx<'_>) -> $crate::Result<T> + 'm,
            {
                Self::from_core($crate::autoguide::Core::new(stringify!($guide), model))
            }

            #[doc = "The initialisation strategy (set before the first call)."]
            #[doc = ""]
            #[doc = "```"]
            #[doc = "# use vi_infer::candle::{Device, Tensor};"]
            #[doc = "# use vi_infer::dist::Normal;"]
            #[doc = "# use vi_infer::Ctx;"]
            #[doc = "# let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);"]
            #[doc = "# let model = |ctx: &mut Ctx| ctx.sample(\"z\", Normal::new(&zero, &one)?);"]
            #[doc = "use vi_infer::autoguide::Init;"]
            #[doc = concat!("let guide = vi_infer::autoguide::", stringify!($guide), "::new(model).init(Init::Feasible);")]
            #[doc = "# Ok::<(), Box<dyn std::error::Error>>(())"]
            #[doc = "```"]
            pub fn init(self, init: $crate::autoguide::Init) -> Self {
                self.core.set(|s| s.init = init);
                self
            }

            #[doc = "Guides only the sites `which` leaves visible, as Pyro's guide of"]
            #[doc = "`poutine.block(model, …)`: a part of an [`AutoGuideList`](super::AutoGuideList)."]
            #[doc = ""]
            #[doc = "```"]
            #[doc = "# use vi_infer::candle::{Device, Tensor};"]
            #[doc = "# use vi_infer::dist::Normal;"]
            #[doc = "# use vi_infer::Ctx;"]
            #[doc = "# let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);"]
            #[doc = "# let model = |ctx: &mut Ctx| ctx.sample(\"z\", Normal::new(&zero, &one)?);"]
            #[doc = "use vi_infer::handlers::Block;"]
            #[doc = concat!("let guide = vi_infer::autoguide::", stringify!($guide), "::new(model).block(Block::expose([\"z\"]));")]
            #[doc = "# Ok::<(), Box<dyn std::error::Error>>(())"]
            #[doc = "```"]
            pub fn block(self, which: $crate::handlers::Block) -> Self {
                self.core.set(|s| s.block = Some(which));
                self
            }

            #[doc = concat!("The prefix of its parameters' names (default `", stringify!($guide), "`), to keep two")]
            #[doc = "guides of one kind apart in one store."]
            #[doc = ""]
            #[doc = "```"]
            #[doc = "# use vi_infer::candle::{Device, Tensor};"]
            #[doc = "# use vi_infer::dist::Normal;"]
            #[doc = "# use vi_infer::Ctx;"]
            #[doc = "# let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);"]
            #[doc = "# let model = |ctx: &mut Ctx| ctx.sample(\"z\", Normal::new(&zero, &one)?);"]
            #[doc = concat!("let guide = vi_infer::autoguide::", stringify!($guide), "::new(model).prefix(\"globals\");")]
            #[doc = "# Ok::<(), Box<dyn std::error::Error>>(())"]
            #[doc = "```"]
            pub fn prefix(self, prefix: &str) -> Self {
                self.core.set(|s| s.prefix = prefix.to_string());
                self
            }

            #[doc = "The seed of the initialisation's draws (default 0)."]
            #[doc = ""]
            #[doc = "```"]
            #[doc = "# use vi_infer::candle::{Device, Tensor};"]
            #[doc = "# use vi_infer::dist::Normal;"]
            #[doc = "# use vi_infer::Ctx;"]
            #[doc = "# let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);"]
            #[doc = "# let model = |ctx: &mut Ctx| ctx.sample(\"z\", Normal::new(&zero, &one)?);"]
            #[doc = concat!("let guide = vi_infer::autoguide::", stringify!($guide), "::new(model).seed(3);")]
            #[doc = "# Ok::<(), Box<dyn std::error::Error>>(())"]
            #[doc = "```"]
            pub fn seed(self, seed: u64) -> Self {
                self.core.set(|s| s.seed = seed);
                self
            }

            #[doc = "The guide as `Svi` takes it: a closure over a handle to this guide (clones of a"]
            #[doc = "guide share its state)."]
            #[doc = ""]
            #[doc = "```"]
            #[doc = "# use vi_infer::candle::{Device, Tensor};"]
            #[doc = "# use vi_infer::dist::Normal;"]
            #[doc = "# use vi_infer::Ctx;"]
            #[doc = "# let (zero, one) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(1.0f64, &Device::Cpu)?);"]
            #[doc = "# let model = |ctx: &mut Ctx| ctx.sample(\"z\", Normal::new(&zero, &one)?);"]
            #[doc = "use vi_infer::autoguide::AutoGuide;"]
            #[doc = concat!("let guide = vi_infer::autoguide::", stringify!($guide), "::new(model);")]
            #[doc = "let (mut store, mut rng) = vi_infer::doc_support::store_and_rng();"]
            #[doc = "let (_, tr) = Ctx::new(&mut store, &mut rng).trace(guide.as_fn())?;"]
            #[doc = "assert!(tr.contains(\"z\") && guide.latent_sites() == [\"z\"]);"]
            #[doc = "# Ok::<(), Box<dyn std::error::Error>>(())"]
            #[doc = "```"]
            pub fn as_fn(&self) -> impl FnMut(&mut $crate::Ctx<'_>) -> $crate::Result<()> + 'm {
                $crate::autoguide::guide_fn(self.clone())
            }
        }

        impl std::fmt::Debug for $guide<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                use $crate::autoguide::AutoGuide;
                f.debug_struct(stringify!($guide))
                    .field("sites", &self.latent_sites())
                    .finish()
            }
        }
    };
}
pub(crate) use builder_methods;
