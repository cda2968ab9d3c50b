//! Fused CPU kernels for the distribution math on the hot path of SVI: one pass forward, one
//! pass backward, each a candle `CustomOp`.
//!
//! Each function here is the value of a composed candle expression (in [`crate::ops::composed`])
//! computed in one loop over the (broadcast) inputs instead of one candle op per term, each
//! allocating its output. The backward pass is one loop too, and computes gradients only for
//! the inputs that track one (`Tensor::track_op`): a data input gets none. f32 runs on the
//! vectorised [`crate::ops::fastmath`]; f64 on `std`'s functions, so in f64 the fused and composed
//! values agree to rounding (tested to 1e-12).
//!
//! These functions need CPU tensors of one float dtype (f32 or f64) and are an error
//! otherwise; the dispatching versions in [`crate::ops`] ([`crate::ops::normal_log_prob`] and
//! the others) pick this path where it applies and the composed one elsewhere, and are what
//! the distributions call.
//!
//! Inside, a formula (`formulas.rs`: the value and the gradients at one element) runs as a
//! candle custom op (`custom_op.rs`) whose forward and backward are loops over the broadcast
//! inputs (`map.rs`; `sum.rs` for the summed ops), which read inputs of any layout
//! (`layout.rs`) in f32 or f64 (`element.rs`).
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

mod custom_op;
mod element;
mod formulas;
mod layout;
mod map;
mod sum;

use candle_core::{DType, Tensor};

use self::custom_op::FusedOp;
use self::formulas::{
    BernoulliLogProb, Elem, KlNormal, NormalLogProb, NormalRsample, Sigmoid, Softplus,
};
use crate::broadcast::broadcast_shapes;
use crate::error::{DistError, Result};

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

// ---------- running a formula as an op ----------

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
