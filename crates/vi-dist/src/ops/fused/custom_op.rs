//! A formula as a candle custom op (`CustomOp1`/`2`/`3`, by how many inputs carry
//! gradients): the forward and backward passes over CPU storage, in f32 or f64.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Device, Layout, Shape};
use candle_core::{Storage, Tensor};

use super::element::Real;
use super::formulas::{Elem, Fwd};
use super::layout::Src;
use super::map::run;
use super::sum::run_sum;

/// A fused op over `N` inputs broadcast to one shape; `args` are the inputs candle passes (and
/// differentiates), the others are read from `inputs` directly. With `sum_dims > 0` the op's
/// value is summed over the trailing `sum_dims` dims of that shape (its output has the
/// leading dims), and its backward broadcasts the incoming gradient back over them.
pub(super) struct FusedOp<E, const N: usize> {
    pub(super) elem: E,
    pub(super) inputs: [Tensor; N],
    pub(super) args: Vec<usize>,
    pub(super) sum_dims: usize,
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
