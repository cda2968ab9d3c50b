//! Data-parallel steps of an [`Svi`]: each rank its share of the plates' batch, the same
//! draws of the global latents, one all-reduce of the gradients, the same optimizer step.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use vi_optim::{Optimizer, StateDict};

use super::{StepReport, Svi, check_gradients, read_loss, touched};
use crate::ctx::Ctx;
use crate::elbo::{Elbo, ElboOutput};
use crate::error::{InferError, Result};
use crate::message::SiteKind;
use crate::parallel::{Communicator, comm_error, fuse, unfuse};

/// The communicator of a data-parallel [`Svi`], and what was last broadcast.
pub(crate) struct DataParallel {
    pub(crate) comm: Arc<dyn Communicator>,
    /// The stored tensors' names and shapes when rank 0's values were last broadcast (none
    /// yet: `None`).
    synced: Option<Vec<(String, Vec<usize>)>>,
}

impl DataParallel {
    pub(crate) fn new(comm: Arc<dyn Communicator>) -> Self {
        Self { comm, synced: None }
    }

    /// Rank 0's values are to be broadcast again before the next step (after a load).
    pub(crate) fn unsync(&mut self) {
        self.synced = None;
    }
}

/// What one rank computed for a step, before any exchange.
struct Local {
    out: ElboOutput,
    loss: f64,
    grads: Option<GradStore>,
    params: Vec<(String, Var)>,
}

/// The stored tensors (parameters unconstrained, module variables) by name, sorted.
fn store_layout<M, G, O, E>(svi: &Svi<M, G, O, E>) -> Vec<(String, Tensor)> {
    let mut all: Vec<(String, Tensor)> = svi.store.named_tensors().into_iter().collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

fn shapes(tensors: &[(String, Tensor)]) -> Vec<(String, Vec<usize>)> {
    tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.dims().to_vec()))
        .collect()
}

/// One rank's description of its step: each line `kind\tname\tvalue`, or `error\t…`.
fn describe(
    local: &Result<Local>,
    store: &[(String, Vec<usize>)],
    optim: &[(String, Vec<usize>)],
) -> String {
    let local = match local {
        Ok(l) => l,
        Err(e) => return format!("error\t{e}"),
    };
    let mut lines = Vec::new();
    for (tr, which) in [
        (&local.out.guide_trace, "guide"),
        (&local.out.model_trace, "model"),
    ] {
        for s in tr.sites() {
            let kind = match s.kind {
                SiteKind::Sample => "site",
                SiteKind::Subsample => "plate",
                _ => continue,
            };
            lines.push(format!("{which} {kind}\t{}\t", s.name));
        }
    }
    for t in &local.out.sites {
        lines.push(format!("term\t{}\t{:?}", t.name, t.kind));
    }
    for (n, v) in &local.params {
        lines.push(format!("param\t{n}\t{:?}", v.dims()));
    }
    for (n, s) in store {
        lines.push(format!("stored\t{n}\t{s:?}"));
    }
    for (n, s) in optim {
        lines.push(format!("optimizer state\t{n}\t{s:?}"));
    }
    lines.join("\n")
}

/// The first difference between the ranks' descriptions, in words ("site `z` on rank 1
/// only", "param `w`: [3] on rank 0, [4] on rank 1").
fn difference(descs: &[String]) -> String {
    let world = descs.len();
    let parsed: Vec<Vec<(&str, &str, &str)>> = descs
        .iter()
        .map(|d| {
            d.lines()
                .map(|l| {
                    let mut it = l.splitn(3, '\t');
                    (
                        it.next().unwrap_or(""),
                        it.next().unwrap_or(""),
                        it.next().unwrap_or(""),
                    )
                })
                .collect()
        })
        .collect();
    let ranks = |rs: &[usize]| {
        let v: Vec<String> = rs.iter().map(|r| r.to_string()).collect();
        match v.len() {
            1 => format!("rank {}", v[0]),
            _ => format!("ranks {}", v.join(", ")),
        }
    };
    for (r, entries) in parsed.iter().enumerate() {
        for &(kind, name, value) in entries {
            let having: Vec<usize> = (0..world)
                .filter(|&o| parsed[o].iter().any(|&(k, n, _)| k == kind && n == name))
                .collect();
            if having.len() < world {
                return format!("{kind} `{name}` on {} only", ranks(&having));
            }
            for (o, other) in parsed.iter().enumerate() {
                if let Some(&(_, _, v)) = other.iter().find(|&&(k, n, _)| k == kind && n == name)
                    && v != value
                {
                    return format!("{kind} `{name}`: {value} on rank {r}, {v} on rank {o}");
                }
            }
        }
    }
    "the same sites and parameters, in a different order".into()
}

impl<M, G, O, E, TM, TG> Svi<M, G, O, E>
where
    M: FnMut(&mut Ctx<'_>) -> Result<TM>,
    G: FnMut(&mut Ctx<'_>) -> Result<TG>,
    O: Optimizer,
    E: Elbo,
{
    fn comm(&self) -> Result<Arc<dyn Communicator>> {
        self.parallel
            .as_ref()
            .map(|p| p.comm.clone())
            .ok_or_else(|| InferError::Invalid("not a data-parallel Svi".into()))
    }

    /// This rank's part of a step: the ELBO of its share, and with `backward` its gradients.
    fn local(&mut self, backward: bool) -> Result<Local> {
        let out = self.compute()?;
        let loss = read_loss(&out)?;
        if !backward {
            return Ok(Local {
                out,
                loss,
                grads: None,
                params: Vec::new(),
            });
        }
        // The surrogate over the world size: the sum of the ranks' gradients is then their
        // mean, with no pass over the fused buffer to divide it.
        let world = self.parallel.as_ref().map_or(1, |p| p.comm.world_size());
        let mut grads = match world {
            1 => out.surrogate.backward()?,
            w => (&out.surrogate / w as f64)?.backward()?,
        };
        self.store.renew_shared(&mut grads)?;
        let modules = self.module_vars(&out);
        let params = touched(&self.store, &out, &modules);
        if vi_dist::validation_enabled() {
            check_gradients(&params, &grads)?;
        }
        let params = params
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        Ok(Local {
            out,
            loss,
            grads: Some(grads),
            params,
        })
    }

    /// A step (or with `backward` false, a loss evaluation) of a data-parallel `Svi`.
    pub(super) fn step_parallel(&mut self, backward: bool) -> Result<StepReport> {
        let comm = self.comm()?;
        let world = comm.world_size();
        let mut waited = Duration::ZERO;
        let mut synced_now = false;
        loop {
            let rng = self.rng.clone();
            let local = self.local(backward);
            let store = store_layout(self);
            let layout = shapes(&store);
            let needs_sync =
                self.parallel.as_ref().and_then(|p| p.synced.as_deref()) != Some(&layout[..]);
            // The optimizer's state only when rank 0's is about to be broadcast (reading it
            // copies its moments).
            // (An error here, as one of the step's, goes to the other ranks as this rank's
            // failure: every rank joins the all-gather below.)
            let (local, optim) = match (local, needs_sync) {
                (Ok(l), true) => match self.optimizer.state_dict() {
                    Ok(state) => {
                        let mut v: Vec<(String, Vec<usize>)> = state
                            .iter()
                            .map(|(k, t)| (k.to_string(), t.dims().to_vec()))
                            .collect();
                        v.sort();
                        (Ok(l), v)
                    }
                    Err(e) => (Err(InferError::from(e)), Vec::new()),
                },
                (local, _) => (local, Vec::new()),
            };
            let desc = describe(&local, &layout, &optim);
            let t = Instant::now();
            let all = comm.all_gather_bytes(desc.as_bytes())?;
            waited += t.elapsed();
            let descs: Vec<String> = all
                .into_iter()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .collect();
            let local = local?;
            if let Some((r, d)) = descs
                .iter()
                .enumerate()
                .find(|(_, d)| d.starts_with("error\t"))
            {
                return Err(InferError::PeerFailed {
                    rank: r,
                    world,
                    msg: d["error\t".len()..].to_string(),
                });
            }
            if descs.iter().any(|d| *d != desc) {
                return Err(InferError::RankMismatch {
                    world,
                    what: difference(&descs),
                });
            }
            if needs_sync {
                if synced_now {
                    return Err(comm_error(
                        comm.as_ref(),
                        "the stored parameters changed again after rank 0's were broadcast".into(),
                    ));
                }
                // New parameters (the first step, or ones created lazily): rank 0's values,
                // optimizer state and generator everywhere, then the step again from the
                // generator's state before it.
                self.rng = rng;
                let t = Instant::now();
                self.broadcast_state(comm.as_ref(), &store)?;
                waited += t.elapsed();
                if let Some(p) = self.parallel.as_mut() {
                    p.synced = Some(layout);
                }
                synced_now = true;
                continue;
            }
            return self.exchange(comm.as_ref(), local, waited);
        }
    }

    /// Rank 0's stored tensors, optimizer state and generator, on every rank.
    fn broadcast_state(
        &mut self,
        comm: &dyn Communicator,
        store: &[(String, Tensor)],
    ) -> Result<()> {
        let optim = self.optimizer.state_dict()?;
        let mut optim: Vec<(String, Tensor)> = optim
            .iter()
            .map(|(k, t)| (k.to_string(), t.clone()))
            .collect();
        optim.sort_by(|a, b| a.0.cmp(&b.0));
        let device = self.store.device().cloned().unwrap_or(Device::Cpu);
        let tensors: Vec<Tensor> = store
            .iter()
            .chain(optim.iter())
            .map(|(_, t)| t.clone())
            .collect();
        if !tensors.is_empty() {
            // f64: exact for f32 values and for integer state (step counts).
            let on_device = tensors
                .iter()
                .map(|t| t.to_device(&device))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let buf = comm.broadcast(&fuse(&on_device, DType::F64)?, 0)?;
            let parts = unfuse(&buf, &on_device)?;
            let (values, states) = parts.split_at(store.len());
            let values: HashMap<String, Tensor> = store
                .iter()
                .zip(values)
                .map(|((n, _), t)| (n.clone(), t.clone()))
                .collect();
            self.store.load_tensors(&values)?;
            let mut state = StateDict::new();
            for ((k, orig), t) in optim.iter().zip(states) {
                state.insert(k.clone(), t.to_device(orig.device())?);
            }
            if !state.is_empty() {
                self.optimizer.load_state_dict(&state)?;
            }
        }
        let rng = super::checkpoint::rng_bytes(&self.rng);
        let all = comm.all_gather_bytes(&rng)?;
        self.rng = super::checkpoint::rng_from_bytes(&all[0])?;
        Ok(())
    }

    /// The exchange: one all-reduce of the fused gradients, one of the loss and the site
    /// terms; the averages replace this rank's, and the optimizer steps.
    fn exchange(
        &mut self,
        comm: &dyn Communicator,
        local: Local,
        mut waited: Duration,
    ) -> Result<StepReport> {
        let w = comm.world_size() as f64;
        let Local {
            mut out,
            loss,
            grads,
            params,
        } = local;
        // The loss and each site's term, averaged in f64.
        let mut stats = vec![loss];
        for t in &out.sites {
            stats.push(t.sum_f64()?);
        }
        let n = stats.len();
        let stats = Tensor::from_vec(stats, n, &Device::Cpu)?;
        let t = Instant::now();
        let stats = (comm.all_reduce_sum(&stats)? / w)?.to_vec1::<f64>()?;
        waited += t.elapsed();
        for (term, v) in out.sites.iter_mut().zip(&stats[1..]) {
            term.sum = Tensor::new(*v, &Device::Cpu)?
                .to_dtype(term.sum.dtype())?
                .to_device(term.sum.device())?;
        }
        let loss = stats[0];
        if let Some(mut grads) = grads {
            if !params.is_empty() {
                let like: Vec<Tensor> = params
                    .iter()
                    .map(|(_, v)| match grads.get(v.as_tensor()) {
                        Some(g) => Ok(g.clone()),
                        None => v.as_tensor().zeros_like(),
                    })
                    .collect::<candle_core::Result<_>>()?;
                let dtype = like[0].dtype();
                let like = like
                    .into_iter()
                    .map(|g| g.to_dtype(dtype))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                let t = Instant::now();
                let sum = comm
                    .all_reduce_sum_fused(&like)?
                    .to_device(like[0].device())?;
                waited += t.elapsed();
                // The gradients were of the surrogate over the world size: the sum is the mean.
                for ((_, v), g) in params.iter().zip(unfuse(&sum, &like)?) {
                    grads.insert(v.as_tensor(), g);
                }
            }
            let borrowed: Vec<(&str, &Var)> = params.iter().map(|(n, v)| (n.as_str(), v)).collect();
            self.optimizer.step_params(&borrowed, &grads)?;
        }
        let mut report = StepReport::new(loss, out);
        report.communication = Some(waited);
        Ok(report)
    }
}
