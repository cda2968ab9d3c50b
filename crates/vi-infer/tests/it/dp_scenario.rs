//! The data-parallel scenario shared by the `it` tests (one process) and the `mpi` test
//! binary (run under `mpirun -np 2`): a regression with a global latent `w`, a module `net`
//! and a subsampled data plate, in f64, and an optimizer that records the gradients it is
//! given.

use std::sync::{Arc, Mutex};

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Init, Module};
use vi_infer::dist::{Constraint, Distribution, Normal};
use vi_infer::optim::{Adam, AdamOptions, LrTransform, Optimizer, StateDict};
use vi_infer::{Ctx, InferError, ParamStore, Svi, TraceMeanFieldElbo};

/// The plate's size.
pub const N: usize = 64;

/// Each step's gradients as the optimizer received them: (parameter, values) in order.
pub type Grads = Arc<Mutex<Vec<Vec<(String, Vec<f64>)>>>>;

/// An optimizer that records the gradients it is given, then steps `O`.
pub struct Recording<O> {
    pub inner: O,
    pub grads: Grads,
}

impl<O: Optimizer> Optimizer for Recording<O> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn step_params(
        &mut self,
        params: &[(&str, &Var)],
        grads: &GradStore,
    ) -> vi_infer::optim::Result<()> {
        let mut step = Vec::new();
        for (n, v) in params {
            if let Some(g) = grads.get(v.as_tensor()) {
                step.push((n.to_string(), g.flatten_all()?.to_vec1::<f64>()?));
            }
        }
        self.grads.lock().unwrap().push(step);
        self.inner.step_params(params, grads)
    }
    fn step(&mut self, grads: &GradStore) -> vi_infer::optim::Result<()> {
        self.inner.step(grads)
    }
    fn add_param(&mut self, name: &str, var: Var) -> vi_infer::optim::Result<()> {
        self.inner.add_param(name, var)
    }
    fn params(&self) -> &[(String, Var)] {
        self.inner.params()
    }
    fn learning_rate(&self) -> f64 {
        self.inner.learning_rate()
    }
    fn lr_transform(&self) -> LrTransform {
        self.inner.lr_transform()
    }
    fn set_lr_transform(&mut self, transform: LrTransform) {
        self.inner.set_lr_transform(transform)
    }
    fn state_dict(&self) -> vi_infer::optim::Result<StateDict> {
        self.inner.state_dict()
    }
    fn load_state_dict(&mut self, state: &StateDict) -> vi_infer::optim::Result<()> {
        self.inner.load_state_dict(state)
    }
}

/// A recording Adam and its record.
pub fn adam() -> (Recording<Adam>, Grads) {
    let grads = Grads::default();
    let opt = Adam::empty(AdamOptions {
        lr: 0.05,
        ..Default::default()
    })
    .expect("Adam");
    (
        Recording {
            inner: opt,
            grads: grads.clone(),
        },
        grads,
    )
}

/// How a run of the scenario differs from the plain one.
#[derive(Clone, Copy, Debug, Default)]
pub struct Variant {
    /// The world's batch of the data plate.
    pub batch: usize,
    /// The value every variable of the module `net` starts at (ranks may differ: rank 0's
    /// is broadcast).
    pub net_init: f64,
    /// An extra latent site `extra` in model and guide.
    pub extra_site: bool,
    /// The model fails after its plate.
    pub fail: bool,
}

/// The data: x (N × 3), y (N), fixed.
fn data(dev: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    let x: Vec<f64> = (0..N * 3).map(|i| ((i as f64) * 0.37).sin()).collect();
    let y: Vec<f64> = (0..N)
        .map(|i| {
            0.8 * x[3 * i] - 0.5 * x[3 * i + 1]
                + 0.3 * x[3 * i + 2]
                + 0.1 * ((i as f64) * 1.3).cos()
        })
        .collect();
    Ok((
        Tensor::from_vec(x, (N, 3), dev)?,
        Tensor::from_vec(y, N, dev)?,
    ))
}

/// The scenario's `Svi` (seed 7), not yet data-parallel.
#[allow(clippy::type_complexity)]
pub fn svi<O: Optimizer>(
    v: Variant,
    opt: O,
) -> Result<
    Svi<
        impl FnMut(&mut Ctx<'_>) -> vi_infer::Result<()>,
        impl FnMut(&mut Ctx<'_>) -> vi_infer::Result<()>,
        O,
        TraceMeanFieldElbo,
    >,
    InferError,
> {
    let dev = Device::Cpu;
    let (x, y) = data(&dev)?;
    let store = ParamStore::new(&dev, DType::F64);
    let vb = store.var_builder("net")?;
    let w = vb.get_with_hints((1, 3), "weight", Init::Const(v.net_init))?;
    let b = vb.get_with_hints(1, "bias", Init::Const(v.net_init))?;
    let net = candle_nn::Linear::new(w, Some(b));
    let zeros = Tensor::zeros(3, DType::F64, &dev)?;
    let ones = Tensor::ones(3, DType::F64, &dev)?;
    let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    let noise = Tensor::new(0.5f64, &dev)?;
    let (zeros_m, ones_m, zero_m, one_m) = (zeros.clone(), ones.clone(), zero.clone(), one.clone());
    let model = move |ctx: &mut Ctx<'_>| -> vi_infer::Result<()> {
        let w = ctx.sample("w", Normal::new(&zeros_m, &ones_m)?.to_event(1)?)?;
        if v.extra_site {
            ctx.sample("extra", Normal::new(&zero_m, &one_m)?)?;
        }
        let net = ctx.module("net", &net)?;
        ctx.plate_subsample("data", N, v.batch, |ctx, idx| {
            let xb = x.index_select(idx, 0)?;
            let yb = y.index_select(idx, 0)?;
            let mean =
                (xb.matmul(&w.unsqueeze(1)?)?.squeeze(1)? + net.forward(&xb)?.squeeze(1)?)?;
            ctx.observe("y", Normal::new(&mean, &noise)?, &yb)
        })?;
        if v.fail {
            return Err(InferError::Invalid(
                "this rank's model fails on purpose".into(),
            ));
        }
        Ok(())
    };
    let guide = move |ctx: &mut Ctx<'_>| -> vi_infer::Result<()> {
        let init = Tensor::new(&[0.1f64, -0.2, 0.3], zeros.device())?;
        let loc = ctx.param("loc", &init, Constraint::Real)?;
        let scale = ctx.param("scale", &(&ones * 0.5)?, Constraint::Positive)?;
        ctx.sample("w", Normal::new(&loc, &scale)?.to_event(1)?)?;
        if v.extra_site {
            ctx.sample("extra", Normal::new(&zero, &one)?)?;
        }
        Ok(())
    };
    Ok(Svi::new(model, guide, opt, TraceMeanFieldElbo::new())
        .with_store(store)
        .seed(7))
}

/// The store's tensors by name, sorted, as f64 vectors.
pub fn params(store: &ParamStore) -> Vec<(String, Vec<f64>)> {
    let mut v: Vec<(String, Vec<f64>)> = store
        .named_tensors()
        .into_iter()
        .map(|(n, t)| {
            (
                n,
                t.flatten_all()
                    .and_then(|t| t.to_vec1::<f64>())
                    .expect("f64"),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The largest relative difference of two equally long sequences (relative to the larger
/// magnitude, absolute below 1e-12).
pub fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / x.abs().max(y.abs()).max(1e-12))
        .fold(0.0, f64::max)
}

/// The gradients of every step flattened into one sequence (names checked equal).
pub fn flat_grads(a: &Grads, b: &Grads) -> (Vec<f64>, Vec<f64>) {
    let (a, b) = (a.lock().unwrap(), b.lock().unwrap());
    assert_eq!(a.len(), b.len(), "number of steps");
    let (mut fa, mut fb) = (Vec::new(), Vec::new());
    for (sa, sb) in a.iter().zip(b.iter()) {
        let na: Vec<&String> = sa.iter().map(|(n, _)| n).collect();
        let nb: Vec<&String> = sb.iter().map(|(n, _)| n).collect();
        assert_eq!(na, nb, "parameters of a step");
        for ((_, ga), (_, gb)) in sa.iter().zip(sb) {
            fa.extend(ga);
            fb.extend(gb);
        }
    }
    (fa, fb)
}
