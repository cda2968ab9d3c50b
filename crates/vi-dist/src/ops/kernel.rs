//! The engine under the fused ops: one pass over `NI` input tensors of one shape (any layout:
//! contiguous, broadcast, strided) writing `NO` contiguous outputs, in chunks small enough to
//! stay in L1, split across rayon's threads for large tensors, with the per-element body
//! inlined into loops compiled for AVX-512, AVX2+FMA or the portable target.

use std::mem::MaybeUninit;
use std::ops::{Add, Div, Mul, Neg, Sub};

use candle_core::{CpuStorage, Layout};
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::fastmath::Fma;
use super::fastmath::{self, Isa, Mode, Portable};

/// Elements per inner loop: the gathered inputs and scratch outputs of one chunk stay in L1.
const CHUNK: usize = 1024;
/// Below this many elements a fused op runs on the calling thread; from it on, it is split
/// across rayon's pool, the pool candle's own elementwise ops use from the same size
/// (`PAR_ELEMWISE_MIN` in candle-core 0.11), so a fused op uses threads exactly where the
/// candle ops it replaces did (and `RAYON_NUM_THREADS` governs both). Measured on 2 shared
/// vCPUs (AVX-512), f32 softplus forward: 16K 10 → 14 µs (split loses), 64K 40 → 29 µs,
/// 200K 121 → 84 µs; in forward + backward chains the split was within the noise of the
/// shared machine (±30 %) at 200K.
const PAR_MIN: usize = 64 * 1024;
/// Tasks per rayon thread when splitting, so an uneven thread still finds work.
const TASKS_PER_THREAD: usize = 2;

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

/// Where an input's elements come from, in the row-major order of the output.
pub(crate) enum Src<'a, T> {
    /// Exactly the output's elements, in order.
    Contig(&'a [T]),
    /// One value everywhere (a scalar broadcast).
    Scalar(T),
    /// Any other layout (broadcast rows or columns, transposes).
    Strided(Strided<'a, T>),
}

/// A strided view with size-1 dims dropped and mergeable neighbours merged.
pub(crate) struct Strided<'a, T> {
    data: &'a [T],
    dims: Vec<usize>,
    stride: Vec<usize>,
    offset: usize,
}

impl<'a, T: Real> Src<'a, T> {
    /// The elements of `data` that `layout` addresses; `None` if the layout reaches past the
    /// data (never for a layout candle built).
    pub(crate) fn new(data: &'a [T], layout: &Layout) -> Option<Self> {
        let n = layout.shape().elem_count();
        if n == 0 {
            return Some(Src::Contig(&[]));
        }
        if let Some((a, b)) = layout.contiguous_offsets() {
            return data.get(a..b).map(Src::Contig);
        }
        // Drop size-1 dims, then merge dim i into dim i+1 when stepping i is the same as
        // running through all of i+1 (contiguous runs, or broadcast blocks of stride 0).
        let mut dims: Vec<usize> = Vec::new();
        let mut stride: Vec<usize> = Vec::new();
        for (&d, &s) in layout.dims().iter().zip(layout.stride()) {
            if d == 1 {
                continue;
            }
            match (dims.last_mut(), stride.last_mut()) {
                (Some(ld), Some(ls)) if *ls == s * d => {
                    *ld *= d;
                    *ls = s;
                }
                _ => {
                    dims.push(d);
                    stride.push(s);
                }
            }
        }
        let offset = layout.start_offset();
        // The furthest element the layout reaches.
        let last = offset
            + dims
                .iter()
                .zip(&stride)
                .map(|(d, s)| (d - 1) * s)
                .sum::<usize>();
        if last >= data.len() {
            return None;
        }
        if stride.iter().all(|&s| s == 0) {
            return Some(Src::Scalar(data[offset]));
        }
        Some(Src::Strided(Strided {
            data,
            dims,
            stride,
            offset,
        }))
    }
}

impl<T: Real> Strided<'_, T> {
    /// Copy the elements at output positions `at .. at + buf.len()` into `buf`, a run of the
    /// innermost dim at a time (a slice copy for stride 1, a fill for stride 0).
    fn gather(&self, at: usize, buf: &mut [T]) {
        let r = self.dims.len();
        let (dims, stride, data) = (&self.dims, &self.stride, self.data);
        let mut idx = vec![0usize; r];
        let mut rem = at;
        let mut off = self.offset;
        for d in (0..r).rev() {
            idx[d] = rem % dims[d];
            rem /= dims[d];
            off += idx[d] * stride[d];
        }
        let (inner, s) = (dims[r - 1], stride[r - 1]);
        let mut filled = 0;
        while filled < buf.len() {
            let run = (inner - idx[r - 1]).min(buf.len() - filled);
            let dst = &mut buf[filled..filled + run];
            match s {
                0 => dst.fill(data[off]),
                1 => dst.copy_from_slice(&data[off..off + run]),
                _ => {
                    for (k, d) in dst.iter_mut().enumerate() {
                        *d = data[off + k * s];
                    }
                }
            }
            filled += run;
            idx[r - 1] += run;
            off += run * s;
            let mut d = r - 1;
            while d > 0 && idx[d] == dims[d] {
                off -= dims[d] * stride[d];
                idx[d] = 0;
                d -= 1;
                idx[d] += 1;
                off += stride[d];
            }
        }
    }
}

/// The output slices of one task (`None`: an output not wanted).
type Slots<'a, T, const NO: usize> = [Option<&'a mut [MaybeUninit<T>]>; NO];

/// A task's view of its inputs, one chunk at a time: contiguous inputs are sliced in place,
/// a scalar is filled into a buffer once, other layouts are gathered into a buffer per chunk.
struct Staged<T, const NI: usize> {
    bufs: [Vec<T>; NI],
}

impl<T: Real, const NI: usize> Staged<T, NI> {
    /// Buffers of `chunk` elements for the inputs that need one.
    fn new(srcs: &[Src<'_, T>; NI], chunk: usize) -> Self {
        Self {
            bufs: srcs.each_ref().map(|s| match s {
                Src::Contig(_) => Vec::new(),
                Src::Scalar(v) => vec![*v; chunk],
                Src::Strided(_) => vec![T::cst(0.0); chunk],
            }),
        }
    }

    /// The inputs at output positions `at .. at + m` (`m` at most the chunk).
    fn chunk<'s>(&'s mut self, srcs: &'s [Src<'_, T>; NI], at: usize, m: usize) -> [&'s [T]; NI] {
        for (src, buf) in srcs.iter().zip(self.bufs.iter_mut()) {
            if let Src::Strided(s) = src {
                s.gather(at, &mut buf[..m]);
            }
        }
        let bufs = &self.bufs;
        std::array::from_fn(|j| match &srcs[j] {
            Src::Contig(s) => &s[at..at + m],
            _ => &bufs[j][..m],
        })
    }
}

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

// ---------- reducing loops ----------

/// Accumulators of [`sum_f64`]: independent lanes, so the loop vectorises without
/// reassociating anything (two AVX-512 registers of f64).
const SUM_LANES: usize = 16;

/// Run the one-output `body` over `rows · m` elements of `srcs` (the row-major order of a
/// shape whose trailing dims hold `m` elements) and sum each run of `m` consecutive values:
/// `rows` results. The sums accumulate in f64 (16 interleaved lanes, then a pairwise sum of
/// the lanes) whatever `T` is, so an f32 sum of many terms carries only the rounding of its
/// terms. Split across rayon's threads by rows from [`PAR_MIN`] elements, like [`run`].
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
