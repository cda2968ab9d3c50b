//! Reading the inputs of a fused loop in the output's row-major order, whatever their layout:
//! contiguous slices in place, broadcast scalars once, other layouts (broadcast rows or
//! columns, transposes) gathered a run at a time.

use candle_core::Layout;

use super::element::Real;

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

/// A task's view of its inputs, one chunk at a time: contiguous inputs are sliced in place,
/// a scalar is filled into a buffer once, other layouts are gathered into a buffer per chunk.
pub(super) struct Staged<T, const NI: usize> {
    bufs: [Vec<T>; NI],
}

impl<T: Real, const NI: usize> Staged<T, NI> {
    /// Buffers of `chunk` elements for the inputs that need one.
    pub(super) fn new(srcs: &[Src<'_, T>; NI], chunk: usize) -> Self {
        Self {
            bufs: srcs.each_ref().map(|s| match s {
                Src::Contig(_) => Vec::new(),
                Src::Scalar(v) => vec![*v; chunk],
                Src::Strided(_) => vec![T::cst(0.0); chunk],
            }),
        }
    }

    /// The inputs at output positions `at .. at + m` (`m` at most the chunk).
    pub(super) fn chunk<'s>(
        &'s mut self,
        srcs: &'s [Src<'_, T>; NI],
        at: usize,
        m: usize,
    ) -> [&'s [T]; NI] {
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
