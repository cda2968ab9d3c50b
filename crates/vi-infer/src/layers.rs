//! Layers whose backward pass computes only the gradients someone asked for.
//!
//! [`Linear`] is a drop-in for [`candle_nn::Linear`]: same constructors, same variable names
//! and initialisation ([`linear`], [`linear_no_bias`], [`linear_b`]), same shapes and values.
//! The difference is the backward pass. candle's matmul always differentiates both operands,
//! so the first layer of a network also computes the gradient of its *input*: for a data batch
//! that is a full GEMM (and a zero-filled buffer) per step whose result nobody reads. On the CPU
//! in f32/f64, [`Linear`] runs as one candle custom op (GEMM, then the bias added in the same
//! pass over the output) whose backward skips every input that does not track gradients:
//! a data input gets no gradient at all, a frozen weight none either.
//! [`Linear::forward_softplus`] also applies softplus in that output pass (the VAE's hidden
//! layers), its backward reading the derivative off the output.
//!
//! On other devices and dtypes it composes candle ops as `candle_nn::Linear` does, with the
//! same results.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Module, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use vi_dist::ops::fastmath::{self, Func};

/// A fully connected layer `y = x Wᵀ + b` (torch's `nn.Linear`), a drop-in for
/// [`candle_nn::Linear`] whose backward pass skips inputs that track no gradient.
///
/// `weight` has shape `[out, in]`, `bias` (optional) `[out]`; the input `x` has shape
/// `[..., in]` with any number of leading dimensions (none included), the output
/// `[..., out]`.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use candle_nn::Module;
/// use vi_infer::layers::Linear;
/// let dev = Device::Cpu;
/// let w = Var::new(&[[1f64, 2.], [3., 4.], [5., 6.]], &dev)?;
/// let b = Var::new(&[0.5f64, 0.0, -0.5], &dev)?;
/// let layer = Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
/// let x = Tensor::new(&[[10f64, 100.]], &dev)?; // data: no gradient wanted
/// let y = layer.forward(&x)?;
/// assert_eq!(y.to_vec2::<f64>()?, [[210.5, 430.0, 649.5]]);
/// let grads = y.sum_all()?.backward()?;
/// assert_eq!(grads.get(&w).map(|g| g.dims().to_vec()), Some(vec![3, 2]));
/// assert!(grads.get(&x).is_none()); // candle_nn::Linear would have computed it
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// A layer from its weight `[out, in]` and optional bias `[out]`, as
    /// [`candle_nn::Linear::new`].
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use candle_nn::Module;
    /// use vi_infer::layers::Linear;
    /// let w = Tensor::new(&[[1f32, 2.], [3., 4.], [5., 6.]], &Device::Cpu)?;
    /// let layer = Linear::new(w, None);
    /// let y = layer.forward(&Tensor::new(&[[10f32, 100.]], &Device::Cpu)?)?;
    /// assert_eq!(y.to_vec2::<f32>()?, [[210.0, 430.0, 650.0]]);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// The weight, shape `[out, in]`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_infer::layers::Linear;
    /// let layer = Linear::new(Tensor::zeros((3, 2), DType::F32, &Device::Cpu)?, None);
    /// assert_eq!(layer.weight().dims(), &[3, 2]);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, shape `[out]`, if the layer has one.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_infer::layers::Linear;
    /// let dev = Device::Cpu;
    /// let layer = Linear::new(
    ///     Tensor::zeros((3, 2), DType::F32, &dev)?,
    ///     Some(Tensor::zeros(3, DType::F32, &dev)?),
    /// );
    /// assert_eq!(layer.bias().map(|b| b.dims().to_vec()), Some(vec![3]));
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The kernel's operands when the fused CPU op applies: CPU storage, f32/f64 throughout,
    /// a `[out, in]` weight matching `x`'s last dimension, a `[out]` bias, nothing empty.
    fn fused_inputs(&self, x: &Tensor) -> Option<Tensor> {
        let w = &self.weight;
        let dtype = x.dtype();
        let on_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == dtype;
        if !matches!(dtype, DType::F32 | DType::F64) || !on_cpu(x) || !on_cpu(w) {
            return None;
        }
        let (&k, &[n, wk]) = (x.dims().last()?, w.dims()) else {
            return None;
        };
        if k != wk || x.elem_count() == 0 || w.elem_count() == 0 {
            return None;
        }
        if let Some(b) = &self.bias
            && (!on_cpu(b) || b.dims() != [n])
        {
            return None;
        }
        // The kernel reads a rank-1 or rank-2 input through its strides; higher ranks are
        // flattened to rows, which needs contiguous data.
        if x.rank() > 2 && !x.is_contiguous() {
            x.contiguous().ok()
        } else {
            Some(x.clone())
        }
    }

    /// `candle_nn::Linear`'s composition: one matmul on the flattened rows when possible,
    /// a broadcast matmul otherwise, then a broadcast bias add.
    fn composed(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let wt = self.weight.t()?;
        let y = match x.dims() {
            [k] => x.reshape((1, *k))?.matmul(&wt)?.squeeze(0)?,
            [_, _] => x.matmul(&wt)?,
            [lead @ .., k] if x.is_contiguous() => {
                let rows = lead.iter().product::<usize>();
                let mut out = lead.to_vec();
                out.push(self.weight.dim(0)?);
                x.reshape((rows, *k))?.matmul(&wt)?.reshape(out)?
            }
            _ => x.broadcast_matmul(&wt)?,
        };
        match &self.bias {
            None => Ok(y),
            Some(b) => y.broadcast_add(b),
        }
    }
}

impl Linear {
    /// `softplus(x Wᵀ + b)` = `ln(1 + e^{x Wᵀ + b})`: the same values as
    /// `vi_dist::ops::softplus(&layer.forward(x)?)`, in one CPU op whose output pass adds the
    /// bias and applies softplus, and whose backward reads the activation's derivative off
    /// the output (`softplus′(z) = σ(z) = 1 − e^{−y}`), with no intermediate `z` kept.
    ///
    /// The backward pass is first order (the derivative of the activation is not itself
    /// differentiated). Other devices and dtypes compose [`Module::forward`] and
    /// `vi_dist::ops::softplus`.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_infer::layers::Linear;
    /// let dev = Device::Cpu;
    /// let layer = Linear::new(
    ///     Tensor::new(&[[1f64, 0.], [0., 1.]], &dev)?,
    ///     Some(Tensor::new(&[0f64, -1000.], &dev)?),
    /// );
    /// let y = layer.forward_softplus(&Tensor::new(&[[0f64, 0.]], &dev)?)?;
    /// assert_eq!(y.to_vec2::<f64>()?, [[std::f64::consts::LN_2, 0.0]]);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn forward_softplus(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.fused_inputs(x) {
            Some(x) => self.apply(&x, Act::Softplus),
            None => vi_dist::ops::softplus(&self.composed(x)?).map_err(candle_core::Error::wrap),
        }
    }

    fn apply(&self, x: &Tensor, act: Act) -> candle_core::Result<Tensor> {
        let op = LinearOp { act };
        match &self.bias {
            Some(b) => x.apply_op3(&self.weight, b, op),
            None => x.apply_op2(&self.weight, op),
        }
    }
}

impl Module for Linear {
    /// `x Wᵀ + b` over the last dimension of `x`; see [`Linear`].
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.fused_inputs(x) {
            Some(x) => self.apply(&x, Act::Identity),
            None => self.composed(x),
        }
    }
}

impl From<candle_nn::Linear> for Linear {
    /// The same weight and bias tensors (no copy), with this crate's backward pass.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_infer::layers::Linear;
    /// let w = Tensor::zeros((3, 2), DType::F32, &Device::Cpu)?;
    /// let layer = Linear::from(candle_nn::Linear::new(w, None));
    /// assert_eq!(layer.weight().dims(), &[3, 2]);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    fn from(layer: candle_nn::Linear) -> Self {
        Self::new(layer.weight().clone(), layer.bias().cloned())
    }
}

impl From<Linear> for candle_nn::Linear {
    /// The same weight and bias tensors (no copy), with candle-nn's forward pass.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_infer::layers::Linear;
    /// let w = Tensor::zeros((3, 2), DType::F32, &Device::Cpu)?;
    /// let layer = candle_nn::Linear::from(Linear::new(w, None));
    /// assert_eq!(layer.weight().dims(), &[3, 2]);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    fn from(layer: Linear) -> Self {
        candle_nn::Linear::new(layer.weight, layer.bias)
    }
}

/// A [`Linear`] layer with a bias, its variables `weight` `[out, in]` and `bias` `[out]`
/// fetched or created through `vb` with [`candle_nn::linear`]'s initialisation (Kaiming
/// normal weight, bias uniform in `±1/√in`): a drop-in for [`candle_nn::linear`].
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use candle_nn::Module;
/// use vi_infer::ParamStore;
/// let store = ParamStore::new(&Device::Cpu, DType::F32);
/// let fc = vi_infer::layers::linear(4, 2, store.var_builder("enc")?.pp("fc1"))?;
/// let y = fc.forward(&Tensor::ones((5, 4), DType::F32, &Device::Cpu)?)?;
/// assert_eq!(y.dims(), &[5, 2]);
/// assert_eq!(store.module_vars("enc").len(), 2); // enc.fc1.weight, enc.fc1.bias
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> candle_core::Result<Linear> {
    candle_nn::linear(in_dim, out_dim, vb).map(Linear::from)
}

/// A [`Linear`] layer without bias, its variable `weight` `[out, in]` fetched or created
/// through `vb` as [`candle_nn::linear_no_bias`] does.
///
/// ```
/// use candle_core::{DType, Device};
/// use vi_infer::ParamStore;
/// let store = ParamStore::new(&Device::Cpu, DType::F64);
/// let fc = vi_infer::layers::linear_no_bias(4, 2, store.var_builder("enc")?)?;
/// assert!(fc.bias().is_none());
/// assert_eq!(fc.weight().dims(), &[2, 4]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn linear_no_bias(
    in_dim: usize,
    out_dim: usize,
    vb: VarBuilder,
) -> candle_core::Result<Linear> {
    candle_nn::linear_no_bias(in_dim, out_dim, vb).map(Linear::from)
}

/// [`linear`] when `bias` is true, [`linear_no_bias`] otherwise, as [`candle_nn::linear_b`].
///
/// ```
/// use candle_core::{DType, Device};
/// use vi_infer::ParamStore;
/// let store = ParamStore::new(&Device::Cpu, DType::F32);
/// let fc = vi_infer::layers::linear_b(4, 2, false, store.var_builder("enc")?)?;
/// assert!(fc.bias().is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn linear_b(
    in_dim: usize,
    out_dim: usize,
    bias: bool,
    vb: VarBuilder,
) -> candle_core::Result<Linear> {
    if bias {
        linear(in_dim, out_dim, vb)
    } else {
        linear_no_bias(in_dim, out_dim, vb)
    }
}

// ---------- the CPU op ----------

/// `act(x Wᵀ (+ b))` on host storage: `CustomOp2(x, w)` without bias, `CustomOp3(x, w, b)`
/// with.
#[derive(Clone, Copy, Debug)]
struct LinearOp {
    act: Act,
}

/// The activation applied in the output pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    Identity,
    Softplus,
}

/// The host element types of the kernel.
trait Elem: Copy + Send + Sync + std::ops::AddAssign {
    /// `ln(1 + eˣ)` over a slice, in place (`vi_dist::ops::softplus`'s function: the
    /// vectorised kernel of `vi_dist::ops::fastmath` in f32, std's `exp`/`ln_1p` in f64).
    fn softplus_slice(xs: &mut [Self]);
    /// `gs[i] ← gs[i] · softplus′(z)` from `ys[i] = softplus(z)`: `g · (1 − e^{−y})`.
    fn softplus_back_slice(gs: &mut [Self], ys: &[Self]);
}

impl Elem for f32 {
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
    let wt = wl.transpose(0, 1)?;
    let mut out = xs.matmul(ws, (1, m, n, k), &x2, &wt)?;
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
    let dx = if x.track_op() {
        Some(g2.matmul(w)?.reshape(x.shape())?)
    } else {
        None
    };
    let dw = if w.track_op() {
        let x2 = match x.rank() {
            2 => x.clone(),
            _ => x.reshape(((), k))?,
        };
        Some(g2.t()?.matmul(&x2)?)
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
