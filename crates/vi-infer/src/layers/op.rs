//! The CPU op behind `Linear`: the GEMM through candle, the bias and activation in the
//! output pass, and a backward pass that computes only the gradients asked for.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;
use vi_dist::ops::fastmath::{self, Func};

/// `act(x Wᵀ (+ b))` on host storage: `CustomOp2(x, w)` without bias, `CustomOp3(x, w, b)`
/// with.
#[derive(Clone, Copy, Debug)]
pub(super) struct LinearOp {
    pub(super) act: Act,
}

/// The activation applied in the output pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Act {
    Identity,
    Softplus,
}

/// The host element types of the kernel.
trait Elem: Copy + Send + Sync + std::ops::AddAssign + 'static {
    /// 0 and 1, for the GEMM's `alpha` and `beta`.
    const ZERO: Self;
    const ONE: Self;
    /// `ln(1 + eˣ)` over a slice, in place (`vi_dist::ops::softplus`'s function: the
    /// vectorised kernel of `vi_dist::ops::fastmath` in f32, std's `exp`/`ln_1p` in f64).
    fn softplus_slice(xs: &mut [Self]);
    /// `gs[i] ← gs[i] · softplus′(z)` from `ys[i] = softplus(z)`: `g · (1 − e^{−y})`.
    fn softplus_back_slice(gs: &mut [Self], ys: &[Self]);
}

impl Elem for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
    fn softplus_slice(xs: &mut [Self]) {
        fastmath::apply(Func::Softplus, xs);
    }
    fn softplus_back_slice(gs: &mut [Self], ys: &[Self]) {
        // e^{−y} by the vectorised exp, a chunk at a time (stays in cache); where y is
        // small, 1 − e^{−y} cancels, so it is taken from its series there instead
        // (y − y²/2 + y³/6 − y⁴/24, relative error below y⁴/120 < 1e-10 for y < 0.01).
        let mut e = [0f32; 256];
        for (g, y) in gs.chunks_mut(256).zip(ys.chunks(256)) {
            let e = &mut e[..g.len()];
            for (e, y) in e.iter_mut().zip(y) {
                *e = -*y;
            }
            fastmath::apply(Func::Exp, e);
            for ((g, e), y) in g.iter_mut().zip(e.iter()).zip(y) {
                let series = *y * (1.0 - *y * (0.5 - *y * (1.0 / 6.0 - *y * (1.0 / 24.0))));
                let d = if *y < 0.01 { series } else { 1.0 - *e };
                *g *= d;
            }
        }
    }
}

impl Elem for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
    fn softplus_slice(xs: &mut [Self]) {
        for x in xs {
            *x = x.max(0.0) + (-x.abs()).exp().ln_1p();
        }
    }
    fn softplus_back_slice(gs: &mut [Self], ys: &[Self]) {
        for (g, y) in gs.iter_mut().zip(ys) {
            *g *= -(-*y).exp_m1();
        }
    }
}

/// From this many elements a transcendental pass is split across rayon's threads (the pool
/// candle's GEMM and vi-dist's fused kernels run on; the threshold of both).
const PAR_MIN: usize = 64 * 1024;

/// Runs `f(offset, chunk)` over `out` split at multiples of `unit` elements, across rayon's
/// threads (a few chunks per thread), or in one call when `out` is small or `parallel` is
/// false.
fn for_chunks<T: Send>(
    out: &mut [T],
    unit: usize,
    parallel: bool,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let threads = rayon::current_num_threads();
    if !parallel || threads < 2 || out.len() < PAR_MIN || unit == 0 {
        f(0, out);
        return;
    }
    let per = (out.len() / unit).div_ceil(threads * 4).max(1) * unit;
    out.par_chunks_mut(per)
        .enumerate()
        .for_each(|(i, chunk)| f(i * per, chunk));
}

/// `x`'s layout as a `(rows, in)` matrix: a rank-1 or rank-2 input keeps its strides (the
/// GEMM reads any strides), a higher-rank one must be contiguous and is flattened.
fn rows_layout(x: &Layout, k: usize) -> candle_core::Result<(usize, Layout)> {
    match (x.dims(), x.stride()) {
        ([_], [s]) => Ok((
            1,
            Layout::new((1, k).into(), vec![k * s, *s], x.start_offset()),
        )),
        ([m, _], _) => Ok((*m, x.clone())),
        _ if x.is_contiguous() => {
            let m = x.shape().elem_count() / k.max(1);
            Ok((m, Layout::contiguous_with_offset((m, k), x.start_offset())))
        }
        _ => candle_core::bail!("linear: non-contiguous input of shape {:?}", x.dims()),
    }
}

/// A matrix read in place: its elements, the offset of its first one, and its row and column
/// strides.
#[derive(Clone, Copy)]
struct Mat<'a, T> {
    data: &'a [T],
    start: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// `rows × cols` read from `layout` (2-D) over `data`; an error if the layout reaches
    /// past the data.
    fn new(data: &'a [T], layout: &Layout, rows: usize, cols: usize) -> candle_core::Result<Self> {
        let [rs, cs] = layout.stride() else {
            candle_core::bail!("linear: expected a matrix, got dims {:?}", layout.dims());
        };
        let (rs, cs, start) = (*rs, *cs, layout.start_offset());
        let last = start + rows.saturating_sub(1) * rs + cols.saturating_sub(1) * cs;
        if rows > 0 && cols > 0 && last >= data.len() {
            candle_core::bail!(
                "linear: layout {layout:?} reaches past {} elements",
                data.len()
            );
        }
        Ok(Self {
            data,
            start,
            rs,
            cs,
        })
    }

    fn t(self) -> Self {
        Self {
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// `lhs (m × k) · rhs (k × n)`, row-major, into a new buffer that the GEMM writes without
/// reading (candle's matmul zero-fills its output first), split across rayon's current pool
/// as candle does.
fn gemm_fresh<T: Elem>(m: usize, n: usize, k: usize, lhs: Mat<'_, T>, rhs: Mat<'_, T>) -> Vec<T> {
    if m == 0 || n == 0 || k == 0 {
        return vec![T::ZERO; m * n];
    }
    let parallelism = match rayon::current_num_threads() {
        0 | 1 => gemm::Parallelism::None,
        t => gemm::Parallelism::Rayon(t),
    };
    let mut dst: Vec<T> = Vec::with_capacity(m * n);
    // SAFETY: `Mat::new` checked that every element the strides reach lies inside its slice;
    // `dst` has room for the m × n row-major result (column stride 1, row stride n), which
    // gemm writes whole (`read_dst` false: alpha · dst is not formed, nothing is read), so
    // every element is initialised before `set_len`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.data.as_ptr().add(lhs.start),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr().add(rhs.start),
            rhs.cs as isize,
            rhs.rs as isize,
            T::ZERO,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
        dst.set_len(m * n);
    }
    dst
}

/// `a (m × k) · b (k × n)` for 2-D f32/f64 CPU tensors through [`gemm_fresh`]; `None`
/// elsewhere (the caller uses candle's matmul).
fn host_matmul(a: &Tensor, b: &Tensor) -> candle_core::Result<Option<Tensor>> {
    let (Ok((m, k)), Ok((k2, n))) = (a.dims2(), b.dims2()) else {
        return Ok(None);
    };
    if k != k2 || !a.device().is_cpu() || a.dtype() != b.dtype() {
        return Ok(None);
    }
    let (sa, la) = a.storage_and_layout();
    let (sb, lb) = b.storage_and_layout();
    let out = match (&*sa, &*sb) {
        (
            candle_core::Storage::Cpu(CpuStorage::F32(x)),
            candle_core::Storage::Cpu(CpuStorage::F32(y)),
        ) => CpuStorage::F32(gemm_fresh(
            m,
            n,
            k,
            Mat::new(x, la, m, k)?,
            Mat::new(y, lb, k, n)?,
        )),
        (
            candle_core::Storage::Cpu(CpuStorage::F64(x)),
            candle_core::Storage::Cpu(CpuStorage::F64(y)),
        ) => CpuStorage::F64(gemm_fresh(
            m,
            n,
            k,
            Mat::new(x, la, m, k)?,
            Mat::new(y, lb, k, n)?,
        )),
        _ => return Ok(None),
    };
    drop((sa, sb));
    let t = match out {
        CpuStorage::F32(v) => Tensor::from_vec(v, (m, n), a.device())?,
        CpuStorage::F64(v) => Tensor::from_vec(v, (m, n), a.device())?,
        _ => return Ok(None),
    };
    Ok(Some(t))
}

/// The output pass over the row-major `out` (rows of `n`): adds `bias` to every row and
/// applies `act`, split across threads when the activation makes it worth it.
fn output_pass<T: Elem>(out: &mut [T], bias: Option<&[T]>, n: usize, act: Act) {
    for_chunks(out, n, act != Act::Identity, |_, rows| {
        for row in rows.chunks_exact_mut(n) {
            if let Some(bias) = bias {
                for (o, b) in row.iter_mut().zip(bias) {
                    *o += *b;
                }
            }
            if act == Act::Softplus {
                T::softplus_slice(row);
            }
        }
    });
}

/// `g · softplus′(z)` from the op's output `y = softplus(z)`, on the host: one pass.
struct SoftplusBack;

fn softplus_back<T: Elem + candle_core::WithDType>(
    g: &[T],
    gl: &Layout,
    y: &[T],
    yl: &Layout,
) -> Vec<T> {
    match (gl.contiguous_offsets(), yl.contiguous_offsets()) {
        (Some((g0, g1)), Some((y0, _))) => {
            let (g, y) = (&g[g0..g1], &y[y0..]);
            let mut out = g.to_vec();
            for_chunks(&mut out, 1, true, |offset, chunk| {
                T::softplus_back_slice(chunk, &y[offset..offset + chunk.len()]);
            });
            out
        }
        _ => candle_core::cpu_backend::binary_map(gl, yl, g, y, |g, y| {
            let mut g = [g];
            T::softplus_back_slice(&mut g, &[y]);
            g[0]
        }),
    }
}

impl CustomOp2 for SoftplusBack {
    fn name(&self) -> &'static str {
        "linear-softplus-back"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = match (gs, ys) {
            (CpuStorage::F32(g), CpuStorage::F32(y)) => {
                CpuStorage::F32(softplus_back(g, gl, y, yl))
            }
            (CpuStorage::F64(g), CpuStorage::F64(y)) => {
                CpuStorage::F64(softplus_back(g, gl, y, yl))
            }
            _ => candle_core::bail!("linear: no softplus backward for dtype {:?}", gs.dtype()),
        };
        Ok((out, gl.shape().clone()))
    }
}

/// The `n` values of a rank-1 tensor's storage, read through its layout.
fn bias_values<T: Copy>(data: &[T], layout: &Layout, n: usize) -> candle_core::Result<Vec<T>> {
    let (start, step) = (layout.start_offset(), layout.stride().first().copied());
    (0..n)
        .map(|j| {
            data.get(start + j * step.unwrap_or(1))
                .copied()
                .ok_or_else(|| candle_core::Error::Msg("linear: bias out of its storage".into()))
        })
        .collect()
}

fn cpu_linear(
    x: (&CpuStorage, &Layout),
    w: (&CpuStorage, &Layout),
    b: Option<(&CpuStorage, &Layout)>,
    act: Act,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (xs, xl) = x;
    let (ws, wl) = w;
    let (n, k) = wl.shape().dims2()?;
    let (m, x2) = rows_layout(xl, k)?;
    // W is read transposed through its strides: no copy.
    let mut out = match (xs, ws) {
        (CpuStorage::F32(x), CpuStorage::F32(w)) => CpuStorage::F32(gemm_fresh(
            m,
            n,
            k,
            Mat::new(x, &x2, m, k)?,
            Mat::new(w, wl, n, k)?.t(),
        )),
        (CpuStorage::F64(x), CpuStorage::F64(w)) => CpuStorage::F64(gemm_fresh(
            m,
            n,
            k,
            Mat::new(x, &x2, m, k)?,
            Mat::new(w, wl, n, k)?.t(),
        )),
        _ => xs.matmul(ws, (1, m, n, k), &x2, &wl.transpose(0, 1)?)?,
    };
    match (&mut out, b) {
        (CpuStorage::F32(o), None) => output_pass(o, None, n, act),
        (CpuStorage::F64(o), None) => output_pass(o, None, n, act),
        (CpuStorage::F32(o), Some((CpuStorage::F32(bv), bl))) => {
            output_pass(o, Some(&bias_values(bv, bl, n)?), n, act)
        }
        (CpuStorage::F64(o), Some((CpuStorage::F64(bv), bl))) => {
            output_pass(o, Some(&bias_values(bv, bl, n)?), n, act)
        }
        (o, _) => candle_core::bail!("linear: no kernel for dtype {:?}", o.dtype()),
    }
    let mut dims = xl.dims()[..xl.dims().len() - 1].to_vec();
    dims.push(n);
    Ok((out, Shape::from(dims)))
}

/// The gradients of `y = act(z)`, `z = x Wᵀ + b`, given the output's gradient: `g = ∂L/∂z`
/// (read off `y` for the activation), then `dW = gᵀ x`, `db = Σ g` over the leading
/// dimensions, `dx = g W`; each only for an input that tracks gradients.
fn backward(
    act: Act,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    y: &Tensor,
    grad: &Tensor,
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let (n, k) = w.dims2()?;
    let g = match act {
        Act::Identity => grad.clone(),
        Act::Softplus => grad.apply_op2_no_bwd(y, &SoftplusBack)?,
    };
    let g2 = match g.rank() {
        2 => g,
        _ => g.reshape(((), n))?,
    };
    // On the CPU the products go through `host_matmul`: no zero fill of their outputs.
    let matmul = |a: &Tensor, b: &Tensor| -> candle_core::Result<Tensor> {
        match host_matmul(a, b)? {
            Some(t) => Ok(t),
            None => a.matmul(b),
        }
    };
    let dx = if x.track_op() {
        Some(matmul(&g2, w)?.reshape(x.shape())?)
    } else {
        None
    };
    let dw = if w.track_op() {
        let x2 = match x.rank() {
            2 => x.clone(),
            _ => x.reshape(((), k))?,
        };
        Some(matmul(&g2.t()?, &x2)?)
    } else {
        None
    };
    let db = match b {
        Some(b) if b.track_op() => Some(match g2.device() {
            // candle's `sum(0)` walks the columns with a stride; this adds whole rows.
            candle_core::Device::Cpu => g2.apply_op1_no_bwd(&RowSum)?,
            _ => g2.sum(0)?,
        }),
        _ => None,
    };
    Ok((dx, dw, db))
}

/// `Σᵢ g[i, ·]` of a matrix on the host: the bias gradient, adding whole rows (contiguous,
/// vectorised) into one accumulator row.
struct RowSum;

fn row_sum<T: Copy + Default + std::ops::AddAssign>(g: &[T], l: &Layout) -> Vec<T> {
    let (m, n) = match l.dims() {
        [m, n] => (*m, *n),
        _ => (1, l.shape().elem_count()),
    };
    let mut out = vec![T::default(); n];
    match l.contiguous_offsets() {
        Some((o0, o1)) => {
            for row in g[o0..o1].chunks_exact(n.max(1)) {
                for (o, v) in out.iter_mut().zip(row) {
                    *o += *v;
                }
            }
        }
        None => {
            let (s0, s1) = match l.stride() {
                [s0, s1] => (*s0, *s1),
                _ => (n, 1),
            };
            for i in 0..m {
                for (j, o) in out.iter_mut().enumerate() {
                    *o += g[l.start_offset() + i * s0 + j * s1];
                }
            }
        }
    }
    out
}

impl candle_core::CustomOp1 for RowSum {
    fn name(&self) -> &'static str {
        "linear-bias-grad"
    }

    fn cpu_fwd(&self, gs: &CpuStorage, gl: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let n = match gl.dims() {
            [_, n] => *n,
            _ => candle_core::bail!("linear: bias gradient of a rank-{} tensor", gl.dims().len()),
        };
        let out = match gs {
            CpuStorage::F32(g) => CpuStorage::F32(row_sum(g, gl)),
            CpuStorage::F64(g) => CpuStorage::F64(row_sum(g, gl)),
            _ => candle_core::bail!("linear: no bias gradient for dtype {:?}", gs.dtype()),
        };
        Ok((out, Shape::from(n)))
    }
}

impl CustomOp2 for LinearOp {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        cpu_linear((xs, xl), (ws, wl), None, self.act)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = backward(self.act, x, w, None, res, grad)?;
        Ok((dx, dw))
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        cpu_linear((xs, xl), (ws, wl), Some((bs, bl)), self.act)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        backward(self.act, x, w, Some(b), res, grad)
    }
}
