//! The summing loops of the fused ops: a formula's values summed over runs of trailing
//! elements as they are computed, in f64 whatever the element type.

use rayon::prelude::*;

use super::element::{Body, Real};
use super::layout::{Src, Staged};
use super::map::{CHUNK, PAR_MIN, TASKS_PER_THREAD};
#[cfg(target_arch = "x86_64")]
use crate::ops::fastmath::Fma;
use crate::ops::fastmath::{Isa, Mode, Portable};

/// Accumulators of [`sum_f64`]: independent lanes, so the loop vectorises without
/// reassociating anything (two AVX-512 registers of f64).
const SUM_LANES: usize = 16;

/// Run the one-output `body` over `rows · m` elements of `srcs` (the row-major order of a
/// shape whose trailing dims hold `m` elements) and sum each run of `m` consecutive values:
/// `rows` results. The sums accumulate in f64 (16 interleaved lanes, then a pairwise sum of
/// the lanes) whatever `T` is, so an f32 sum of many terms carries only the rounding of its
/// terms. Split across rayon's threads by rows from [`PAR_MIN`] elements, like [`super::map::run`].
pub(crate) fn run_sum<T: Real, B: Body<NI, 1>, const NI: usize>(
    body: &B,
    srcs: &[Src<'_, T>; NI],
    rows: usize,
    m: usize,
) -> Vec<T> {
    let mut out = vec![T::cst(0.0); rows];
    if rows == 0 || m == 0 {
        return out;
    }
    let isa = Isa::detected();
    let threads = rayon::current_num_threads();
    let task_rows = if rows * m >= PAR_MIN && threads > 1 {
        rows.div_ceil(threads * TASKS_PER_THREAD)
    } else {
        rows
    };
    if task_rows < rows {
        out.par_chunks_mut(task_rows)
            .enumerate()
            .for_each(|(i, o)| sum_task(isa, body, srcs, i * task_rows, m, o));
    } else {
        sum_task(isa, body, srcs, 0, m, &mut out);
    }
    out
}

/// The running sums of one task of [`run_sum`]: values arrive in order, `m` to a row, and
/// each full row's f64 sum is written to `out`.
struct RowSums<'a, T> {
    out: &'a mut [T],
    m: usize,
    row: usize,
    in_row: usize,
    acc: f64,
}

impl<T: Real> RowSums<'_, T> {
    /// Add the next values (they may end or start rows anywhere), each run summed by `sum`.
    #[inline(always)]
    fn add(&mut self, mut vals: &[T], sum: impl Fn(&[T]) -> f64) {
        while !vals.is_empty() {
            let take = (self.m - self.in_row).min(vals.len());
            let (now, rest) = vals.split_at(take);
            self.acc += sum(now);
            self.in_row += take;
            if self.in_row == self.m {
                if let Some(o) = self.out.get_mut(self.row) {
                    *o = T::cst(self.acc);
                }
                self.row += 1;
                self.in_row = 0;
                self.acc = 0.0;
            }
            vals = rest;
        }
    }
}

/// One task of [`run_sum`]: rows `row0 .. row0 + out.len()`, in chunks of [`CHUNK`] values
/// that need not follow row boundaries (so the vector loop runs over whole chunks, not over
/// rows that leave a scalar remainder each).
fn sum_task<T: Real, B: Body<NI, 1>, const NI: usize>(
    isa: Isa,
    body: &B,
    srcs: &[Src<'_, T>; NI],
    row0: usize,
    m: usize,
    out: &mut [T],
) {
    let len = out.len() * m;
    let start = row0 * m;
    let chunk = CHUNK.min(len);
    let zero = T::cst(0.0);
    let mut staged = Staged::new(srcs, chunk);
    let mut vals = vec![zero; chunk];
    let mut rows = RowSums {
        out,
        m,
        row: 0,
        in_row: 0,
        acc: 0.0,
    };
    let mut c0 = 0;
    while c0 < len {
        let n = chunk.min(len - c0);
        let at = start + c0;
        let ins = staged.chunk(srcs, at, n);
        sums_dispatch(isa, body, &ins, &mut vals[..n], &mut rows);
        c0 += n;
    }
}

/// The values of one chunk ([`values`]) added to the row sums, compiled for the instruction
/// set `isa` (which the CPU has: it comes from [`Isa::detected`]).
fn sums_dispatch<T: Real, B: Body<NI, 1>, const NI: usize>(
    isa: Isa,
    body: &B,
    ins: &[&[T]; NI],
    vals: &mut [T],
    rows: &mut RowSums<'_, T>,
) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: `isa` is `Isa::detected()`, so the CPU has the features the loop needs.
        Isa::Avx512 => return unsafe { sums_avx512(body, ins, vals, rows) },
        // SAFETY: as above.
        Isa::Avx2Fma => return unsafe { sums_avx2(body, ins, vals, rows) },
        Isa::Portable => {}
    }
    let _ = isa;
    values::<T, Portable, B, NI>(body, ins, vals);
    rows.add(vals, sum_f64);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn sums_avx512<T: Real, B: Body<NI, 1>, const NI: usize>(
    body: &B,
    ins: &[&[T]; NI],
    vals: &mut [T],
    rows: &mut RowSums<'_, T>,
) {
    values::<T, Fma, B, NI>(body, ins, vals);
    rows.add(vals, |xs| match T::as_f32s(xs) {
        Some(f) => sum_f32_avx512(f),
        None => sum_f64(xs),
    });
}

/// `Σ xs` in f64 for f32 `xs` with AVX-512: eight f32s at a time widened to f64 into four
/// independent vector accumulators, which are then added together, the tail last.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn sum_f32_avx512(xs: &[f32]) -> f64 {
    use std::arch::x86_64::{
        _mm256_loadu_ps, _mm512_add_pd, _mm512_cvtps_pd, _mm512_reduce_add_pd, _mm512_setzero_pd,
    };
    let mut acc = [_mm512_setzero_pd(); 4];
    let mut it = xs.chunks_exact(32);
    for c in &mut it {
        for (k, a) in acc.iter_mut().enumerate() {
            // SAFETY: `c` holds 32 f32s, so `c[8k .. 8k + 8]` is in bounds (k < 4); the load
            // is unaligned.
            let v = unsafe { _mm256_loadu_ps(c.as_ptr().add(8 * k)) };
            *a = _mm512_add_pd(*a, _mm512_cvtps_pd(v));
        }
    }
    let total = _mm512_add_pd(_mm512_add_pd(acc[0], acc[1]), _mm512_add_pd(acc[2], acc[3]));
    it.remainder()
        .iter()
        .fold(_mm512_reduce_add_pd(total), |s, &x| s + f64::from(x))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sums_avx2<T: Real, B: Body<NI, 1>, const NI: usize>(
    body: &B,
    ins: &[&[T]; NI],
    vals: &mut [T],
    rows: &mut RowSums<'_, T>,
) {
    values::<T, Fma, B, NI>(body, ins, vals);
    rows.add(vals, sum_f64);
}

/// The values of `body` over one chunk into `vals`.
#[inline(always)]
fn values<T: Real, M: Mode, B: Body<NI, 1>, const NI: usize>(
    body: &B,
    ins: &[&[T]; NI],
    vals: &mut [T],
) {
    let n = vals.len();
    // Equal lengths, known to the optimiser, and an index loop (as in `lanes`): no bounds
    // checks, and no scalar tail for a chunk whose length is a multiple of the vector width.
    let ins: [&[T]; NI] = ins.map(|s| &s[..n]);
    let out = &mut vals[..n];
    for i in 0..n {
        let x: [T; NI] = std::array::from_fn(|j| ins[j][i]);
        let [y] = body.eval::<T, M>(x);
        out[i] = y;
    }
}

/// `Σ xs` in f64: [`SUM_LANES`] interleaved partial sums (a vector loop), then the lanes
/// added pairwise and the remainder last.
#[inline(always)]
fn sum_f64<T: Real>(xs: &[T]) -> f64 {
    let mut lanes = [0.0f64; SUM_LANES];
    let mut it = xs.chunks_exact(SUM_LANES);
    for c in &mut it {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += x.to_f64();
        }
    }
    let mut w = SUM_LANES / 2;
    while w > 0 {
        for j in 0..w {
            lanes[j] += lanes[j + w];
        }
        w /= 2;
    }
    it.remainder().iter().fold(lanes[0], |s, x| s + x.to_f64())
}
