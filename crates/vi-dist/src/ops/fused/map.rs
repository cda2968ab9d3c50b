//! The engine under the fused ops: one pass over `NI` input tensors of one shape (any layout:
//! contiguous, broadcast, strided) writing `NO` contiguous outputs, in chunks small enough to
//! stay in L1, split across rayon's threads for large tensors, with the per-element body
//! inlined into loops compiled for AVX-512, AVX2+FMA or the portable target.

//!
//! This file holds the elementwise loops ([`run`]); [`super::sum`] the summing ones.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::element::{Body, Real};
use super::layout::{Src, Staged};
#[cfg(target_arch = "x86_64")]
use crate::ops::fastmath::Fma;
use crate::ops::fastmath::{Isa, Mode, Portable};

/// Elements per inner loop: the gathered inputs and scratch outputs of one chunk stay in L1.
pub(super) const CHUNK: usize = 1024;
/// Below this many elements a fused op runs on the calling thread; from it on, it is split
/// across rayon's pool, the pool candle's own elementwise ops use from the same size
/// (`PAR_ELEMWISE_MIN` in candle-core 0.11), so a fused op uses threads exactly where the
/// candle ops it replaces did (and `RAYON_NUM_THREADS` governs both). The measurements behind
/// it: docs/performance.md, "Threads".
pub(super) const PAR_MIN: usize = 64 * 1024;
/// Tasks per rayon thread when splitting, so an uneven thread still finds work.
pub(super) const TASKS_PER_THREAD: usize = 2;

/// The output slices of one task (`None`: an output not wanted).
type Slots<'a, T, const NO: usize> = [Option<&'a mut [MaybeUninit<T>]>; NO];

/// Run `body` over `n` elements of `srcs`, writing the outputs flagged in `want` one after the
/// other into one buffer (`want.count() · n` elements); outputs not wanted are computed into
/// scratch and dropped (cheaper than a loop per subset of outputs).
pub(crate) fn run<T: Real, B: Body<NI, NO>, const NI: usize, const NO: usize>(
    body: &B,
    srcs: &[Src<'_, T>; NI],
    n: usize,
    want: [bool; NO],
) -> Vec<T> {
    let k = want.iter().filter(|w| **w).count();
    let len = k * n;
    if len == 0 {
        return Vec::new();
    }
    // Every element is written below, so the output is not zero-filled first.
    let mut buf: Vec<T> = Vec::with_capacity(len);
    let isa = Isa::detected();
    let threads = rayon::current_num_threads();
    let task = if n >= PAR_MIN && threads > 1 {
        n.div_ceil(threads * TASKS_PER_THREAD)
            .next_multiple_of(CHUNK)
    } else {
        n
    };
    {
        let spare = &mut buf.spare_capacity_mut()[..len];
        let mut segments = spare.chunks_mut(n);
        let outs: [Option<&mut [MaybeUninit<T>]>; NO] =
            want.map(|w| if w { segments.next() } else { None });
        let mut tasks: Vec<(usize, Slots<'_, T, NO>)> = (0..n.div_ceil(task))
            .map(|i| (i * task, [const { None }; NO]))
            .collect();
        for (j, out) in outs.into_iter().enumerate() {
            if let Some(out) = out {
                for ((_, slots), part) in tasks.iter_mut().zip(out.chunks_mut(task)) {
                    slots[j] = Some(part);
                }
            }
        }
        if tasks.len() > 1 {
            tasks
                .into_par_iter()
                .for_each(|(start, slots)| run_task(isa, body, srcs, start, slots));
        } else {
            for (start, slots) in tasks {
                run_task(isa, body, srcs, start, slots);
            }
        }
    }
    // SAFETY: `spare[..len]` is split into `k` segments of `n`, each segment into tasks that
    // cover it, each task into chunks that cover it, and `lanes` writes every position of
    // every chunk of every output: all `len` elements are initialised.
    unsafe { buf.set_len(len) };
    buf
}

/// One task: output positions `start ..` as long as its output slices, chunk by chunk.
fn run_task<T: Real, B: Body<NI, NO>, const NI: usize, const NO: usize>(
    isa: Isa,
    body: &B,
    srcs: &[Src<'_, T>; NI],
    start: usize,
    mut slots: Slots<'_, T, NO>,
) {
    let len = slots.iter().flatten().map(|s| s.len()).next().unwrap_or(0);
    let chunk = CHUNK.min(len);
    let mut staged = Staged::new(srcs, chunk);
    let mut scratch: [Vec<MaybeUninit<T>>; NO] = slots.each_ref().map(|s| {
        if s.is_some() {
            Vec::new()
        } else {
            vec![MaybeUninit::uninit(); chunk]
        }
    });
    let mut c0 = 0;
    while c0 < len {
        let m = chunk.min(len - c0);
        let at = start + c0;
        let ins = staged.chunk(srcs, at, m);
        let mut scr = scratch.iter_mut();
        let mut outs: [&mut [MaybeUninit<T>]; NO] = slots.each_mut().map(|slot| {
            let spare = scr.next();
            match (slot, spare) {
                (Some(o), _) => &mut o[c0..c0 + m],
                (None, Some(v)) => &mut v[..m],
                (None, None) => Default::default(),
            }
        });
        lanes_dispatch(isa, body, &ins, &mut outs);
        c0 += m;
    }
}

/// The innermost loop, for the instruction set `isa` (which the CPU has: it comes from
/// [`Isa::detected`]).
fn lanes_dispatch<T: Real, B: Body<NI, NO>, const NI: usize, const NO: usize>(
    isa: Isa,
    body: &B,
    ins: &[&[T]; NI],
    outs: &mut [&mut [MaybeUninit<T>]; NO],
) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: `isa` is `Isa::detected()`, so the CPU has the features the loop needs.
        Isa::Avx512 => return unsafe { lanes_avx512(body, ins, outs) },
        // SAFETY: as above.
        Isa::Avx2Fma => return unsafe { lanes_avx2(body, ins, outs) },
        Isa::Portable => {}
    }
    let _ = isa;
    lanes::<T, Portable, B, NI, NO>(body, ins, outs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn lanes_avx512<T: Real, B: Body<NI, NO>, const NI: usize, const NO: usize>(
    body: &B,
    ins: &[&[T]; NI],
    outs: &mut [&mut [MaybeUninit<T>]; NO],
) {
    lanes::<T, Fma, B, NI, NO>(body, ins, outs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn lanes_avx2<T: Real, B: Body<NI, NO>, const NI: usize, const NO: usize>(
    body: &B,
    ins: &[&[T]; NI],
    outs: &mut [&mut [MaybeUninit<T>]; NO],
) {
    lanes::<T, Fma, B, NI, NO>(body, ins, outs)
}

#[inline(always)]
fn lanes<T: Real, M: Mode, B: Body<NI, NO>, const NI: usize, const NO: usize>(
    body: &B,
    ins: &[&[T]; NI],
    outs: &mut [&mut [MaybeUninit<T>]; NO],
) {
    let n = outs.first().map_or(0, |o| o.len());
    // Equal lengths, known to the optimiser: no bounds checks in the loop.
    let ins: [&[T]; NI] = ins.map(|s| &s[..n]);
    let mut outs: [&mut [MaybeUninit<T>]; NO] = outs.each_mut().map(|o| &mut o[..n]);
    for i in 0..n {
        let x: [T; NI] = std::array::from_fn(|j| ins[j][i]);
        let y = body.eval::<T, M>(x);
        for (o, v) in outs.iter_mut().zip(y) {
            o[i] = MaybeUninit::new(v);
        }
    }
}
