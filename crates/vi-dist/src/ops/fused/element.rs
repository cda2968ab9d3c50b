//! The element types the fused loops run in, and the per-element body they run.

use std::ops::{Add, Div, Mul, Neg, Sub};

use candle_core::CpuStorage;

use crate::ops::fastmath::{self, Mode};

/// A float type the fused kernels run in: f32 (with the vectorised [`fastmath`]) or f64 (with
/// `std`'s functions, so fused and composed paths agree to rounding).
pub(crate) trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    /// A constant (rounded from f64).
    fn cst(x: f64) -> Self;
    /// The value as f64 (exact).
    fn to_f64(self) -> f64;
    /// `xs` as f32s, if that is what they are (for the f32-only vector sums).
    fn as_f32s(xs: &[Self]) -> Option<&[f32]>;
    /// `ln x`.
    fn ln<M: Mode>(self) -> Self;
    /// `ln(1 + eˣ)`.
    fn softplus<M: Mode>(self) -> Self;
    /// `1 / (1 + e⁻ˣ)`.
    fn sigmoid<M: Mode>(self) -> Self;
    /// `σ(x) σ(−x)`, the derivative of the sigmoid.
    fn sigmoid_grad<M: Mode>(self) -> Self;
    /// The elements of `s` if it holds this type.
    fn slice(s: &CpuStorage) -> Option<&[Self]>;
    /// Wrap a buffer as storage.
    fn storage(v: Vec<Self>) -> CpuStorage;
}

impl Real for f32 {
    #[inline(always)]
    fn cst(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn as_f32s(xs: &[Self]) -> Option<&[f32]> {
        Some(xs)
    }
    #[inline(always)]
    fn ln<M: Mode>(self) -> Self {
        fastmath::ln::<M>(self)
    }
    #[inline(always)]
    fn softplus<M: Mode>(self) -> Self {
        fastmath::softplus::<M>(self)
    }
    #[inline(always)]
    fn sigmoid<M: Mode>(self) -> Self {
        fastmath::sigmoid::<M>(self)
    }
    #[inline(always)]
    fn sigmoid_grad<M: Mode>(self) -> Self {
        fastmath::sigmoid_grad::<M>(self)
    }
    fn slice(s: &CpuStorage) -> Option<&[Self]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn storage(v: Vec<Self>) -> CpuStorage {
        CpuStorage::F32(v)
    }
}

impl Real for f64 {
    #[inline(always)]
    fn cst(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn as_f32s(_: &[Self]) -> Option<&[f32]> {
        None
    }
    #[inline(always)]
    fn ln<M: Mode>(self) -> Self {
        self.ln()
    }
    #[inline(always)]
    fn softplus<M: Mode>(self) -> Self {
        self.max(0.0) + (-self.abs()).exp().ln_1p()
    }
    #[inline(always)]
    fn sigmoid<M: Mode>(self) -> Self {
        let e = (-self.abs()).exp();
        let r = 1.0 / (1.0 + e);
        if self >= 0.0 { r } else { e * r }
    }
    #[inline(always)]
    fn sigmoid_grad<M: Mode>(self) -> Self {
        let e = (-self.abs()).exp();
        let r = 1.0 / (1.0 + e);
        e * r * r
    }
    fn slice(s: &CpuStorage) -> Option<&[Self]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn storage(v: Vec<Self>) -> CpuStorage {
        CpuStorage::F64(v)
    }
}

/// The per-element body of a fused loop: `NO` results from `NI` arguments.
pub(crate) trait Body<const NI: usize, const NO: usize>: Sync {
    /// One element.
    fn eval<T: Real, M: Mode>(&self, x: [T; NI]) -> [T; NO];
}
