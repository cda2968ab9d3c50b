//! What every optimizer plugs into the shared machinery: its update [`Rule`], the form its
//! buffers take ([`Moments`]), and the float types of the in-place path ([`Real`]).
//!
//! The bottom of the optimizer modules: `inplace.rs`, `state.rs` and `engine.rs` build on
//! these, and the public types (`Adam`, …) wrap the engine of their rule. The engine runs a
//! rule's update either over host memory (the in-place path) or in candle ops.

use candle_core::{CpuStorage, Tensor};

use crate::error::Result;

/// One optimizer's update rule: its options, the per-step coefficients, the names of its
/// buffers, and the element-wise update written twice (host loop and tensor ops).
pub(crate) trait Rule: 'static {
    /// The optimizer's name, as torch/Pyro spell it.
    const NAME: &'static str;
    type Options: Clone + std::fmt::Debug + Send + Sync + 'static;
    /// Per-step scalars, computed in f64 once per parameter and step.
    type Coeffs: Copy + Send + Sync;
    /// Whether the rule counts every call that lists a parameter, gradient or not (Pyro's
    /// `ClippedAdam` decays a parameter's learning rate on each call of its optimizer before
    /// it looks at the gradient). The count is saved as `state.<param>.lr_decays`.
    const COUNTS_CALLS: bool = false;

    fn validate(options: &Self::Options, param: Option<&str>) -> Result<()>;
    /// The configured learning rate.
    fn lr(options: &Self::Options) -> f64;
    /// The rate the update uses on the `calls`-th call (see
    /// [`COUNTS_CALLS`](Rule::COUNTS_CALLS)) at the scheduled rate `lr`; `lr` itself unless
    /// the rule decays it.
    fn decayed_lr(_options: &Self::Options, lr: f64, _calls: u64) -> f64 {
        lr
    }
    /// The buffers this configuration keeps, under torch's names.
    fn buffers(options: &Self::Options) -> &'static [&'static str];
    /// The scalars of step `step` (1 for the first) at learning rate `lr` (already through the
    /// scheduler's map and [`decayed_lr`](Rule::decayed_lr)).
    fn coeffs(options: &Self::Options, lr: f64, step: u64) -> Self::Coeffs;
    /// The update over contiguous host memory: `x` and `bufs` in place.
    fn host<T: Real>(c: &Self::Coeffs, x: &mut [T], g: &[T], bufs: &mut [&mut [T]]);
    /// The same update in candle ops: replaces `bufs`, returns the new `x`.
    fn composed(
        c: &Self::Coeffs,
        x: &Tensor,
        g: &Tensor,
        bufs: &mut [Tensor],
    ) -> candle_core::Result<Tensor>;
}

/// A parameter's buffers, in the form its update path needs.
pub(crate) enum Moments {
    /// All zeros, not yet allocated.
    Zero,
    F32(Vec<Vec<f32>>),
    F64(Vec<Vec<f64>>),
    /// On the parameter's device (composed path), or loaded and not yet placed.
    Tensors(Vec<Tensor>),
}

/// A float type of the CPU fast path (f32, f64).
pub(crate) trait Real: candle_core::WithDType {
    fn sqrt(self) -> Self;
    fn wrap(bufs: Vec<Vec<Self>>) -> Moments;
    fn storage_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
}

macro_rules! real {
    ($t:ty, $variant:ident) => {
        impl Real for $t {
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn wrap(bufs: Vec<Vec<Self>>) -> Moments {
                Moments::$variant(bufs)
            }
            fn storage_mut(s: &mut CpuStorage) -> Option<&mut [Self]> {
                match s {
                    CpuStorage::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}
real!(f32, F32);
real!(f64, F64);
