//! The in-place CPU fast path: a candle `InplaceOp2` over a parameter's contiguous f32/f64
//! storage that reads the gradient and updates the host-side buffers in the same pass, so a
//! step is one pass per parameter with no allocation of tensors. A large parameter's pass is
//! split into contiguous shares run on rayon's current pool; the rule is element-wise, so
//! the result does not depend on the split.
//!
//! The moment buffers live in host vectors rather than candle tensors because an in-place
//! op can write only one tensor (its destination); keeping them on the host lets one op
//! update the parameter and every buffer together.

use std::cell::RefCell;

use candle_core::{CpuStorage, InplaceOp2, Layout};
use rayon::prelude::*;

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
        let threads = rayon::current_num_threads();
        if threads < 2 || x.len() < PARALLEL_MIN {
            let mut slices: Vec<&mut [T]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
            R::host::<T>(&self.coeffs, x, g, &mut slices);
            return Ok(());
        }
        // The update is element-wise, so contiguous shares give the same numbers as one pass;
        // a share per thread of the current pool, cut at a multiple of 64 elements.
        let share = x.len().div_ceil(threads).next_multiple_of(64);
        let mut buf_shares: Vec<_> = bufs.iter_mut().map(|b| b.chunks_mut(share)).collect();
        let tasks: Vec<Share<'_, T>> = x
            .chunks_mut(share)
            .zip(g.chunks(share))
            .map(|(x, g)| {
                let b = buf_shares.iter_mut().filter_map(Iterator::next).collect();
                (x, g, b)
            })
            .collect();
        let coeffs = &self.coeffs;
        tasks
            .into_par_iter()
            .for_each(|(x, g, mut b)| R::host::<T>(coeffs, x, g, &mut b));
        Ok(())
    }
}

/// One share of a split step: the parameter's elements, their gradient, and each buffer's.
type Share<'a, T> = (&'a mut [T], &'a [T], Vec<&'a mut [T]>);

/// Parameters of fewer elements than this are updated in one pass on the calling thread:
/// below it, handing shares to the pool costs more than it saves.
const PARALLEL_MIN: usize = 1 << 15;
