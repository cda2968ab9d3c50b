//! Fused CPU kernels for the distribution math on the hot path of SVI: one pass forward, one
//! pass backward, each a candle `CustomOp`.
//!
//! Each function here is the value of a composed candle expression (in [`super::composed`])
//! computed in one loop over the (broadcast) inputs instead of one candle op per term, each
//! allocating its output. The backward pass is one loop too, and computes gradients only for
//! the inputs that track one (`Tensor::track_op`): a data input gets none. f32 runs on the
//! vectorised [`super::fastmath`]; f64 on `std`'s functions, so in f64 the fused and composed
//! values agree to rounding (tested to 1e-12).
//!
//! These functions need CPU tensors of one float dtype (f32 or f64) and are an error
//! otherwise; the dispatching versions in [`crate::ops`] ([`crate::ops::normal_log_prob`] and
//! the others) pick this path where it applies and the composed one elsewhere, and are what
//! the distributions call.
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use vi_dist::ops::{composed, fused};
//! let x = Var::new(&[-3.0f64, 0.5, 40.0], &Device::Cpu)?;
//! let a = fused::softplus(x.as_tensor())?;
//! let b = composed::softplus(x.as_tensor())?;
//! let (ga, gb) = (a.sum_all()?.backward()?, b.sum_all()?.backward()?);
//! let (ga, gb) = (ga.get(&x).unwrap().to_vec1::<f64>()?, gb.get(&x).unwrap().to_vec1::<f64>()?);
//! for i in 0..3 {
//!     assert!((ga[i] - gb[i]).abs() < 1e-15);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Device, Layout, Shape};
use candle_core::{Storage, Tensor};

use super::fastmath::Mode;
use super::kernel::{Body, Real, Src, run, run_sum};
use crate::broadcast::broadcast_shapes;
use crate::error::{DistError, Result};

/// ½ ln 2π.
const HALF_LN_2PI: f64 = 0.918_938_533_204_672_7;

// ---------- public functions ----------

/// Whether the fused kernels can run on `tensors`: all on the CPU, all of one dtype, f32 or
/// f64.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// let a = Tensor::zeros(3, DType::F32, &Device::Cpu)?;
/// let b = Tensor::zeros(3, DType::F64, &Device::Cpu)?;
/// assert!(vi_dist::ops::fused::is_supported(&[&a, &a]));
/// assert!(!vi_dist::ops::fused::is_supported(&[&a, &b]));
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn is_supported(tensors: &[&Tensor]) -> bool {
    let Some(first) = tensors.first() else {
        return false;
    };
    let dtype = first.dtype();
    matches!(dtype, DType::F32 | DType::F64)
        && tensors
            .iter()
            .all(|t| t.device().is_cpu() && t.dtype() == dtype)
}

/// `ln(1 + eˣ)`, fused; backward `g · σ(x)`. As [`crate::ops::softplus`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[1e4f32, -1e4, 0.0], &Device::Cpu)?;
/// let y = vi_dist::ops::fused::softplus(&x)?.to_vec1::<f32>()?;
/// assert_eq!(y[..2], [1e4, 0.0]);
/// assert!((y[2] - std::f32::consts::LN_2).abs() < 1e-7);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    apply(Softplus, [x])
}

/// `1 / (1 + e⁻ˣ)`, fused; backward `g · σ(x) σ(−x)`. As [`crate::ops::sigmoid`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[0.0f64, -1e4], &Device::Cpu)?;
/// assert_eq!(vi_dist::ops::fused::sigmoid(&x)?.to_vec1::<f64>()?, vec![0.5, 0.0]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    apply(Sigmoid, [x])
}

/// The normal log density `−½ z² − ln σ − ½ ln 2π`, `z = (v − μ)/σ`, of `value` under
/// `Normal(loc, scale)`, fused (the three broadcast together). Backward: `∂v = −z/σ`,
/// `∂μ = z/σ`, `∂σ = (z² − 1)/σ`, in one pass. As [`crate::ops::normal_log_prob`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// let cpu = Device::Cpu;
/// let v = Tensor::new(&[0.0f64, 1.0], &cpu)?;
/// let lp = vi_dist::ops::fused::normal_log_prob(&v, &Tensor::new(0.0f64, &cpu)?, &Tensor::new(1.0f64, &cpu)?)?;
/// let half_ln_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
/// assert!((lp.to_vec1::<f64>()?[1] + 0.5 + half_ln_2pi).abs() < 1e-15);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn normal_log_prob(value: &Tensor, loc: &Tensor, scale: &Tensor) -> Result<Tensor> {
    apply(NormalLogProb, [value, loc, scale])
}

/// The reparameterised normal draw `loc + scale · eps`, fused (the three broadcast together).
/// Backward: `∂loc = g` (the incoming gradient itself, no pass), `∂scale = g · eps`,
/// `∂eps = g · scale`. As [`crate::ops::normal_rsample`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// let cpu = Device::Cpu;
/// let eps = Tensor::new(&[-1.0f32, 2.0], &cpu)?;
/// let z = vi_dist::ops::fused::normal_rsample(&Tensor::new(1.0f32, &cpu)?, &Tensor::new(0.5f32, &cpu)?, &eps)?;
/// assert_eq!(z.to_vec1::<f32>()?, vec![0.5, 2.0]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn normal_rsample(loc: &Tensor, scale: &Tensor, eps: &Tensor) -> Result<Tensor> {
    apply(NormalRsample, [loc, scale, eps])
}

/// The Bernoulli log mass `v · l − softplus(l)` of `value` with log-odds `logits`, fused
/// (torch's `−binary_cross_entropy_with_logits`). Backward: `∂l = v − σ(l)`, `∂v = l`.
/// As [`crate::ops::bernoulli_log_prob`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// let cpu = Device::Cpu;
/// let lp = vi_dist::ops::fused::bernoulli_log_prob(&Tensor::new(&[1.0f64, 0.0], &cpu)?, &Tensor::new(0.0f64, &cpu)?)?;
/// assert!(lp.to_vec1::<f64>()?.iter().all(|x| (x - 0.5f64.ln()).abs() < 1e-15));
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn bernoulli_log_prob(value: &Tensor, logits: &Tensor) -> Result<Tensor> {
    apply(BernoulliLogProb, [value, logits])
}

/// `KL(N(μp, σp²) ‖ N(μq, σq²)) = ½ (r + d² − 1 − ln r)`, `r = (σp/σq)²`, `d = (μp − μq)/σq`,
/// fused (the four broadcast together). Backward: `∂μp = d/σq = −∂μq`, `∂σp = (r − 1)/σp`,
/// `∂σq = (1 − r − d²)/σq`, in one pass. As [`crate::ops::kl_normal_normal`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// let cpu = Device::Cpu;
/// let (zero, one) = (Tensor::new(0.0f64, &cpu)?, Tensor::new(1.0f64, &cpu)?);
/// let kl = vi_dist::ops::fused::kl_normal_normal(&one, &one, &zero, &one)?;
/// assert!((kl.to_scalar::<f64>()? - 0.5).abs() < 1e-15);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn kl_normal_normal(
    loc_p: &Tensor,
    scale_p: &Tensor,
    loc_q: &Tensor,
    scale_q: &Tensor,
) -> Result<Tensor> {
    kl_normal_normal_sum(loc_p, scale_p, loc_q, scale_q, 0)
}

/// [`normal_log_prob`] summed over the trailing `dims` dims of the broadcast shape, inside
/// the op: `Independent(Normal, dims).log_prob`. The sum runs in f64 whatever the dtype. The
/// backward reads the gradient of the summed value and broadcasts it over the summed dims in
/// the same pass that computes the input gradients (no `sum` node, no full-shape gradient
/// between the two). An error when `dims` exceeds the broadcast rank.
/// As [`crate::ops::normal_log_prob_sum`].
///
/// ```
/// use candle_core::{DType, Device, Tensor, D};
/// use vi_dist::ops::fused;
/// let cpu = Device::Cpu;
/// let v = Tensor::new(&[[0.0f64, 1.0, -2.0], [0.5, 0.25, 3.0]], &cpu)?;
/// let (loc, scale) = (Tensor::new(0.5f64, &cpu)?, Tensor::new(&[1.0f64, 2.0, 0.5], &cpu)?);
/// let lp = fused::normal_log_prob_sum(&v, &loc, &scale, 1)?;
/// let want = fused::normal_log_prob(&v, &loc, &scale)?.sum(D::Minus1)?;
/// assert_eq!(lp.dims(), &[2]);
/// assert!((lp - want)?.abs()?.max_all()?.to_scalar::<f64>()? < 1e-14);
/// assert!(fused::normal_log_prob_sum(&v, &loc, &scale, 3).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn normal_log_prob_sum(
    value: &Tensor,
    loc: &Tensor,
    scale: &Tensor,
    dims: usize,
) -> Result<Tensor> {
    apply_sum(NormalLogProb, [value, loc, scale], dims)
}

/// [`bernoulli_log_prob`] summed over the trailing `dims` dims of the broadcast shape, inside
/// the op (f64 accumulation, one-pass backward, as [`normal_log_prob_sum`]):
/// `Independent(Bernoulli, dims).log_prob`, the VAE's likelihood.
/// As [`crate::ops::bernoulli_log_prob_sum`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// let cpu = Device::Cpu;
/// let x = Tensor::new(&[[1.0f32, 0.0], [1.0, 1.0]], &cpu)?;
/// let lp = vi_dist::ops::fused::bernoulli_log_prob_sum(&x, &Tensor::new(0.0f32, &cpu)?, 1)?;
/// assert_eq!(lp.dims(), &[2]);
/// assert!(lp.to_vec1::<f32>()?.iter().all(|v| (v - 2.0 * 0.5f32.ln()).abs() < 1e-6));
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn bernoulli_log_prob_sum(value: &Tensor, logits: &Tensor, dims: usize) -> Result<Tensor> {
    apply_sum(BernoulliLogProb, [value, logits], dims)
}

/// [`kl_normal_normal`] summed over the trailing `dims` dims of the broadcast shape, inside
/// the op (f64 accumulation, one-pass backward, as [`normal_log_prob_sum`]):
/// `KL(Independent(Normal, dims) ‖ Independent(Normal, dims))`.
/// As [`crate::ops::kl_normal_normal_sum`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// let cpu = Device::Cpu;
/// let (zero, one) = (Tensor::new(0.0f64, &cpu)?, Tensor::new(1.0f64, &cpu)?);
/// let loc = Tensor::new(&[[1.0f64, 1.0, 1.0]], &cpu)?;
/// let kl = vi_dist::ops::fused::kl_normal_normal_sum(&loc, &one, &zero, &one, 1)?;
/// assert_eq!(kl.dims(), &[1]);
/// assert!((kl.to_vec1::<f64>()?[0] - 1.5).abs() < 1e-15);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn kl_normal_normal_sum(
    loc_p: &Tensor,
    scale_p: &Tensor,
    loc_q: &Tensor,
    scale_q: &Tensor,
    dims: usize,
) -> Result<Tensor> {
    let all = [loc_p, scale_p, loc_q, scale_q];
    if all.iter().all(|t| t.track_op()) {
        // A custom op takes at most three tensors that carry gradients: fold the two locs
        // into their difference (candle's subtraction routes its gradient to both).
        check(KlNormal::NAME, &all)?;
        let diff = loc_p.broadcast_sub(loc_q)?;
        let zero = Tensor::zeros((), loc_p.dtype(), loc_p.device())?;
        return apply_sum(KlNormal, [&diff, scale_p, &zero, scale_q], dims);
    }
    apply_sum(KlNormal, all, dims)
}

// ---------- the kernels ----------

/// The math of one fused op with `N` inputs: its value and its gradients at one element.
trait Elem<const N: usize>: Copy + Send + Sync + 'static {
    /// The custom op's name.
    const NAME: &'static str;
    /// Inputs whose gradient is the incoming gradient itself (no pass needed).
    const PASS_GRAD: [bool; N] = [false; N];
    /// The value.
    fn value<T: Real, M: Mode>(x: [T; N]) -> T;
    /// `g · ∂value/∂xᵢ` for every input.
    fn grad<T: Real, M: Mode>(x: [T; N], g: T) -> [T; N];
    /// Run the backward loop over the inputs then the incoming gradient (`N + 1` sources),
    /// keeping the gradients flagged in `want`.
    fn backward<T: Real>(self, srcs: Vec<Src<'_, T>>, n: usize, want: [bool; N]) -> Vec<T>;
}

/// The forward loop body of an [`Elem`].
struct Fwd<E>(E);

impl<E: Elem<N>, const N: usize> Body<N, 1> for Fwd<E> {
    #[inline(always)]
    fn eval<T: Real, M: Mode>(&self, x: [T; N]) -> [T; 1] {
        [E::value::<T, M>(x)]
    }
}

/// The backward loop body of an [`Elem`]: inputs then the incoming gradient.
struct Bwd<E>(E);

/// `Body<N + 1, N>` for `Bwd<E: Elem<N>>`, and the `Elem::backward` that runs it, spelled out
/// per arity (stable Rust has no `N + 1` in generic const arguments).
macro_rules! arity {
    ($n:literal) => {
        impl<E: Elem<$n>> Body<{ $n + 1 }, $n> for Bwd<E> {
            #[inline(always)]
            fn eval<T: Real, M: Mode>(&self, x: [T; $n + 1]) -> [T; $n] {
                E::grad::<T, M>(std::array::from_fn(|i| x[i]), x[$n])
            }
        }
    };
}
arity!(1);
arity!(2);
arity!(3);
arity!(4);

macro_rules! backward_via_bwd {
    ($n:literal) => {
        fn backward<T: Real>(self, srcs: Vec<Src<'_, T>>, n: usize, want: [bool; $n]) -> Vec<T> {
            match <[Src<'_, T>; $n + 1]>::try_from(srcs) {
                Ok(srcs) => run(&Bwd(self), &srcs, n, want),
                Err(_) => Vec::new(),
            }
        }
    };
}

#[derive(Clone, Copy)]
struct Softplus;

impl Elem<1> for Softplus {
    const NAME: &'static str = "fused-softplus";
    #[inline(always)]
    fn value<T: Real, M: Mode>([x]: [T; 1]) -> T {
        x.softplus::<M>()
    }
    #[inline(always)]
    fn grad<T: Real, M: Mode>([x]: [T; 1], g: T) -> [T; 1] {
        [g * x.sigmoid::<M>()]
    }
    backward_via_bwd!(1);
}

#[derive(Clone, Copy)]
struct Sigmoid;

impl Elem<1> for Sigmoid {
    const NAME: &'static str = "fused-sigmoid";
    #[inline(always)]
    fn value<T: Real, M: Mode>([x]: [T; 1]) -> T {
        x.sigmoid::<M>()
    }
    #[inline(always)]
    fn grad<T: Real, M: Mode>([x]: [T; 1], g: T) -> [T; 1] {
        [g * x.sigmoid_grad::<M>()]
    }
    backward_via_bwd!(1);
}

#[derive(Clone, Copy)]
struct NormalLogProb;

impl Elem<3> for NormalLogProb {
    const NAME: &'static str = "fused-normal-log-prob";
    #[inline(always)]
    fn value<T: Real, M: Mode>([v, m, s]: [T; 3]) -> T {
        let z = (v - m) / s;
        // the order of the composed path: (−½ z² − ½ ln 2π) − ln σ
        z * z * T::cst(-0.5) + T::cst(-HALF_LN_2PI) - s.ln::<M>()
    }
    #[inline(always)]
    fn grad<T: Real, M: Mode>([v, m, s]: [T; 3], g: T) -> [T; 3] {
        let z = (v - m) / s;
        let gz = g * z / s;
        [-gz, gz, g * (z * z - T::cst(1.0)) / s]
    }
    backward_via_bwd!(3);
}

#[derive(Clone, Copy)]
struct NormalRsample;

impl Elem<3> for NormalRsample {
    const NAME: &'static str = "fused-normal-rsample";
    const PASS_GRAD: [bool; 3] = [true, false, false];
    #[inline(always)]
    fn value<T: Real, M: Mode>([m, s, e]: [T; 3]) -> T {
        e * s + m
    }
    #[inline(always)]
    fn grad<T: Real, M: Mode>([_, s, e]: [T; 3], g: T) -> [T; 3] {
        [g, g * e, g * s]
    }
    backward_via_bwd!(3);
}

#[derive(Clone, Copy)]
struct BernoulliLogProb;

impl Elem<2> for BernoulliLogProb {
    const NAME: &'static str = "fused-bernoulli-log-prob";
    #[inline(always)]
    fn value<T: Real, M: Mode>([v, l]: [T; 2]) -> T {
        v * l - l.softplus::<M>()
    }
    #[inline(always)]
    fn grad<T: Real, M: Mode>([v, l]: [T; 2], g: T) -> [T; 2] {
        [g * l, g * (v - l.sigmoid::<M>())]
    }
    backward_via_bwd!(2);
}

#[derive(Clone, Copy)]
struct KlNormal;

impl Elem<4> for KlNormal {
    const NAME: &'static str = "fused-kl-normal-normal";
    #[inline(always)]
    fn value<T: Real, M: Mode>([mp, sp, mq, sq]: [T; 4]) -> T {
        let a = sp / sq;
        let r = a * a;
        let d = (mp - mq) / sq;
        // the order of the composed path: ½ (((r + d²) − ln r) − 1)
        (r + d * d - r.ln::<M>() - T::cst(1.0)) * T::cst(0.5)
    }
    #[inline(always)]
    fn grad<T: Real, M: Mode>([mp, sp, mq, sq]: [T; 4], g: T) -> [T; 4] {
        let a = sp / sq;
        let r = a * a;
        let d = (mp - mq) / sq;
        let gd = g * d / sq;
        [
            gd,
            g * (r - T::cst(1.0)) / sp,
            -gd,
            g * (T::cst(1.0) - r - d * d) / sq,
        ]
    }
    backward_via_bwd!(4);
}

// ---------- the custom op ----------

fn op_error(op: &'static str, msg: impl Into<String>) -> DistError {
    DistError::Op {
        op,
        msg: msg.into(),
    }
}

fn check(op: &'static str, inputs: &[&Tensor]) -> Result<()> {
    if is_supported(inputs) {
        return Ok(());
    }
    let kinds: Vec<String> = inputs
        .iter()
        .map(|t| format!("{:?} on {:?}", t.dtype(), t.device().location()))
        .collect();
    Err(op_error(
        op,
        format!("needs CPU tensors of one dtype, f32 or f64; got {kinds:?}"),
    ))
}

/// Broadcast `inputs` together and run `elem` over them as one custom op.
fn apply<E: Elem<N>, const N: usize>(elem: E, inputs: [&Tensor; N]) -> Result<Tensor> {
    apply_sum(elem, inputs, 0)
}

/// [`apply`], the result summed over its trailing `sum_dims` dims inside the op.
fn apply_sum<E: Elem<N>, const N: usize>(
    elem: E,
    inputs: [&Tensor; N],
    sum_dims: usize,
) -> Result<Tensor> {
    check(E::NAME, &inputs)?;
    let dims: Vec<&[usize]> = inputs.iter().map(|t| t.dims()).collect();
    let shape = broadcast_shapes(&dims)
        .ok_or_else(|| op_error(E::NAME, format!("shapes {dims:?} do not broadcast")))?;
    if sum_dims > shape.len() {
        return Err(op_error(
            E::NAME,
            format!("cannot sum {sum_dims} trailing dims of shape {shape:?}"),
        ));
    }
    let mut full = Vec::with_capacity(N);
    for t in inputs {
        full.push(if t.dims() == shape.as_slice() {
            t.clone()
        } else {
            t.broadcast_as(shape.as_slice())?
        });
    }
    let inputs: [Tensor; N] = full.try_into().map_err(|_| op_error(E::NAME, "arity"))?;
    // The custom op's arguments: every input when there are at most three, else the ones that
    // track a gradient (the rest are read directly and get none).
    let args: Vec<usize> = if N <= 3 {
        (0..N).collect()
    } else {
        let tracked: Vec<usize> = (0..N).filter(|&i| inputs[i].track_op()).collect();
        if tracked.len() > 3 {
            return Err(op_error(E::NAME, "more than three inputs need gradients"));
        }
        if tracked.is_empty() { vec![0] } else { tracked }
    };
    let a: Vec<Tensor> = args.iter().map(|&i| inputs[i].clone()).collect();
    let op = FusedOp {
        elem,
        inputs,
        args,
        sum_dims,
    };
    Ok(match a.as_slice() {
        [x] => x.apply_op1(op)?,
        [x, y] => x.apply_op2(y, op)?,
        [x, y, z] => x.apply_op3(y, z, op)?,
        _ => return Err(op_error(E::NAME, "no arguments")),
    })
}

/// A fused op over `N` inputs broadcast to one shape; `args` are the inputs candle passes (and
/// differentiates), the others are read from `inputs` directly. With `sum_dims > 0` the op's
/// value is summed over the trailing `sum_dims` dims of that shape (its output has the
/// leading dims), and its backward broadcasts the incoming gradient back over them.
struct FusedOp<E, const N: usize> {
    elem: E,
    inputs: [Tensor; N],
    args: Vec<usize>,
    sum_dims: usize,
}

/// The CPU storage of a tensor (an error for any other device).
fn cpu_storage(s: &Storage) -> candle_core::Result<&CpuStorage> {
    match s {
        Storage::Cpu(c) => Ok(c),
        _ => candle_core::bail!("fused op: tensor is not on the CPU"),
    }
}

/// Sources over `views` as `T` (an error for any other dtype).
fn sources<'a, T: Real>(
    name: &str,
    views: &[(&'a CpuStorage, &'a Layout)],
) -> candle_core::Result<Vec<Src<'a, T>>> {
    views
        .iter()
        .map(|(s, l)| {
            let data = T::slice(s)
                .ok_or_else(|| candle_core::Error::Msg(format!("{name}: mixed dtypes")))?;
            Src::new(data, l)
                .ok_or_else(|| candle_core::Error::Msg(format!("{name}: layout out of range")))
        })
        .collect()
}

impl<E: Elem<N>, const N: usize> FusedOp<E, N> {
    /// The leading dims of the inputs' shape, which the output keeps, and how many elements
    /// the trailing `sum_dims` dims hold.
    fn split(&self) -> (&[usize], usize) {
        let dims = self.inputs[0].dims();
        let lead = dims.len() - self.sum_dims.min(dims.len());
        (&dims[..lead], dims[lead..].iter().product())
    }

    fn forward(&self, args: &[(&CpuStorage, &Layout)]) -> candle_core::Result<(CpuStorage, Shape)> {
        let shape = self.inputs[0].shape().clone();
        let n = shape.elem_count();
        let guards: Vec<_> = (0..N)
            .filter(|i| !self.args.contains(i))
            .map(|i| (i, self.inputs[i].storage_and_layout()))
            .collect();
        let mut views = Vec::with_capacity(N);
        for i in 0..N {
            match self.args.iter().position(|&a| a == i) {
                Some(p) => views.push(args[p]),
                None => {
                    for (j, (s, l)) in &guards {
                        if *j == i {
                            views.push((cpu_storage(s)?, *l));
                        }
                    }
                }
            }
        }
        let out = match views.first().map(|v| v.0.dtype()) {
            Some(DType::F32) => f32::storage(self.forward_typed::<f32>(&views, n)?),
            Some(DType::F64) => f64::storage(self.forward_typed::<f64>(&views, n)?),
            other => candle_core::bail!("{}: no kernel for {other:?}", E::NAME),
        };
        if self.sum_dims == 0 {
            return Ok((out, shape));
        }
        Ok((out, Shape::from(self.split().0)))
    }

    fn forward_typed<T: Real>(
        &self,
        views: &[(&CpuStorage, &Layout)],
        n: usize,
    ) -> candle_core::Result<Vec<T>> {
        let srcs: [Src<'_, T>; N] = sources(E::NAME, views)?
            .try_into()
            .map_err(|_| candle_core::Error::Msg(format!("{}: arity", E::NAME)))?;
        if self.sum_dims == 0 {
            return Ok(run(&Fwd(self.elem), &srcs, n, [true]));
        }
        let (lead, m) = self.split();
        Ok(run_sum(&Fwd(self.elem), &srcs, lead.iter().product(), m))
    }

    /// Gradients of every input (`None` for those that track none), in one pass.
    fn backward(&self, grad: &Tensor) -> candle_core::Result<[Option<Tensor>; N]> {
        let shape = self.inputs[0].shape().clone();
        // A summed op gets the gradient of its output: every element of a summed run gets
        // its row's (a stride-0 view, which the loop reads in place).
        let full;
        let grad = if self.sum_dims == 0 {
            grad
        } else {
            let (lead, _) = self.split();
            let mut kept: Vec<usize> = lead.to_vec();
            kept.resize(shape.rank(), 1);
            full = grad.reshape(kept)?.broadcast_as(&shape)?;
            &full
        };
        let mut out: [Option<Tensor>; N] = [const { None }; N];
        let mut want = [false; N];
        for i in 0..N {
            if self.args.contains(&i) && self.inputs[i].track_op() {
                if E::PASS_GRAD[i] {
                    out[i] = Some(grad.clone());
                } else {
                    want[i] = true;
                }
            }
        }
        let k = want.iter().filter(|w| **w).count();
        if k == 0 {
            return Ok(out);
        }
        let n = shape.elem_count();
        let buf = {
            let guards: Vec<_> = self
                .inputs
                .iter()
                .chain(std::iter::once(grad))
                .map(|t| t.storage_and_layout())
                .collect();
            let mut views = Vec::with_capacity(N + 1);
            for (s, l) in &guards {
                views.push((cpu_storage(s)?, *l));
            }
            match grad.dtype() {
                DType::F32 => f32::storage(self.elem.backward(sources(E::NAME, &views)?, n, want)),
                DType::F64 => f64::storage(self.elem.backward(sources(E::NAME, &views)?, n, want)),
                other => candle_core::bail!("{}: no kernel for {other:?}", E::NAME),
            }
        };
        let grads = cpu_tensor(buf, (k, n))?;
        let mut j = 0;
        for (slot, w) in out.iter_mut().zip(want) {
            if w {
                *slot = Some(grads.get(j)?.reshape(&shape)?);
                j += 1;
            }
        }
        Ok(out)
    }

    /// The gradients of the custom op's arguments, in argument order.
    fn arg_grads(&self, grad: &Tensor) -> candle_core::Result<Vec<Option<Tensor>>> {
        let mut all = self.backward(grad)?;
        Ok(self.args.iter().map(|&i| all[i].take()).collect())
    }
}

impl<E: Elem<N>, const N: usize> CustomOp1 for FusedOp<E, N> {
    fn name(&self) -> &'static str {
        E::NAME
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.forward(&[(s, l)])
    }
    fn bwd(&self, _: &Tensor, _: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(self.arg_grads(grad)?.into_iter().next().flatten())
    }
}

impl<E: Elem<N>, const N: usize> CustomOp2 for FusedOp<E, N> {
    fn name(&self) -> &'static str {
        E::NAME
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.forward(&[(s1, l1), (s2, l2)])
    }
    fn bwd(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let mut g = self.arg_grads(grad)?.into_iter();
        Ok((g.next().flatten(), g.next().flatten()))
    }
}

impl<E: Elem<N>, const N: usize> CustomOp3 for FusedOp<E, N> {
    fn name(&self) -> &'static str {
        E::NAME
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.forward(&[(s1, l1), (s2, l2), (s3, l3)])
    }
    fn bwd(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let mut g = self.arg_grads(grad)?.into_iter();
        Ok((g.next().flatten(), g.next().flatten(), g.next().flatten()))
    }
}

/// A CPU tensor of shape `shape` that owns `storage`, with no gradient history.
fn cpu_tensor(storage: CpuStorage, shape: (usize, usize)) -> candle_core::Result<Tensor> {
    match storage {
        CpuStorage::F32(v) => Tensor::from_vec(v, shape, &Device::Cpu),
        CpuStorage::F64(v) => Tensor::from_vec(v, shape, &Device::Cpu),
        other => candle_core::bail!("fused op: no kernel for {:?}", other.dtype()),
    }
}
