//! The in-place CPU fast path: a candle `InplaceOp2` over a parameter's contiguous f32/f64
//! storage that reads the gradient and updates the host-side buffers in the same pass, so a
//! step is one loop per parameter with no allocation.
//!
//! The moment buffers live in host vectors rather than candle tensors because an in-place
//! op can write only one tensor (its destination); keeping them on the host lets one op
//! update the parameter and every buffer together.

use std::cell::RefCell;

use candle_core::{CpuStorage, InplaceOp2, Layout};

use crate::rule::{Real, Rule};

/// The in-place fast path: one pass over the parameter's contiguous CPU storage, reading the
/// gradient and updating the host buffers alongside.
pub(crate) struct HostStep<'a, R: Rule, T: Real> {
    coeffs: R::Coeffs,
    bufs: RefCell<&'a mut Vec<Vec<T>>>,
}

impl<'a, R: Rule, T: Real> HostStep<'a, R, T> {
    pub(crate) fn new(coeffs: R::Coeffs, bufs: &'a mut Vec<Vec<T>>) -> Self {
        HostStep {
            coeffs,
            bufs: RefCell::new(bufs),
        }
    }
}

impl<R: Rule, T: Real> InplaceOp2 for HostStep<'_, R, T> {
    fn name(&self) -> &'static str {
        R::NAME
    }

    fn cpu_fwd(
        &self,
        x: &mut CpuStorage,
        xl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<()> {
        let (Some((x0, x1)), Some((g0, g1))) = (xl.contiguous_offsets(), gl.contiguous_offsets())
        else {
            candle_core::bail!("{}: in-place step needs contiguous tensors", R::NAME)
        };
        let x = T::storage_mut(x)
            .ok_or_else(|| candle_core::Error::Msg(format!("{}: parameter dtype", R::NAME)))?;
        let g = T::cpu_storage_as_slice(g)?;
        let mut bufs = self.bufs.borrow_mut();
        let (x, g) = (&mut x[x0..x1], &g[g0..g1]);
        if g.len() != x.len() || bufs.iter().any(|b| b.len() != x.len()) {
            candle_core::bail!("{}: in-place step over buffers of unequal lengths", R::NAME)
        }
        R::host::<T>(&self.coeffs, x, g, bufs.as_mut_slice());
        Ok(())
    }
}
