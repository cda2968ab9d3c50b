//! One elementwise `CustomOp1` that every scalar special function shares: a host kernel over
//! f32/f64 storage (any layout) and a backward pass given as a tensor expression.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, cpu_backend::unary_map};

/// The derivative of an elementwise function, as a tensor expression of the input `x` and the
/// forward result `y` (so `exp`-like functions can reuse `y`).
pub(crate) type Derivative = fn(x: &Tensor, y: &Tensor) -> candle_core::Result<Tensor>;

/// An elementwise function with a host kernel and a derivative.
pub(crate) struct Elementwise {
    pub(crate) name: &'static str,
    pub(crate) f64_fn: fn(f64) -> f64,
    pub(crate) f32_fn: fn(f32) -> f32,
    /// `None`: the op has no backward (a gradient through it is an error).
    pub(crate) derivative: Option<Derivative>,
}

impl CustomOp1 for Elementwise {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = match storage {
            CpuStorage::F64(v) => CpuStorage::F64(unary_map(v, layout, self.f64_fn)),
            CpuStorage::F32(v) => CpuStorage::F32(unary_map(v, layout, self.f32_fn)),
            other => candle_core::bail!("{}: no kernel for dtype {:?}", self.name, other.dtype()),
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        match self.derivative {
            Some(d) => Ok(Some(grad_res.mul(&d(arg, res)?)?)),
            None => Err(candle_core::Error::BackwardNotSupported { op: self.name }),
        }
    }
}
