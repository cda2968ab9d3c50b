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

mod op;

use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;

use op::{Act, LinearOp};

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
/// fetched or created through `vb` with [`candle_nn::linear()`]'s initialisation (Kaiming
/// normal weight, bias uniform in `±1/√in`): a drop-in for [`candle_nn::linear()`].
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
