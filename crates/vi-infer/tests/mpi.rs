//! Data-parallel SVI over MPI. Run under `mpirun -np 2` (`.ci/mpi-tests`); alone it is a
//! world of one. Every rank runs every check; each prints its failures and the process exits
//! non-zero if any check failed, so `mpirun` does too.
//!
//! - equivalence: N ranks on shares of a batch equal one process on the whole batch (loss,
//!   every gradient, the parameters after 20 steps; 1e-6 relative in f64), and every rank
//!   holds the same parameters;
//! - a checkpoint written by the world resumes identically in one process and in N;
//! - an indivisible batch, a site on one rank only and a failing rank are typed errors on
//!   every rank (no hang);
//! - last, a rank that stops stepping gives the others `CollectiveTimeout` (3 s deadline).

#[path = "it/dp_scenario.rs"]
mod dp_scenario;

use std::sync::Arc;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use dp_scenario::{Variant, adam, flat_grads, max_rel, params};
use vi_infer::InferError;
use vi_infer::parallel::{Communicator, Mpi};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

const TOL: f64 = 1e-6;

/// One group of checks: it pushes its failures, or returns an error.
type Check = fn(&Arc<Mpi>, &mut Vec<String>) -> Res;

fn check(name: &str, ok: bool, detail: String, failures: &mut Vec<String>) {
    if !ok {
        failures.push(format!("{name}: {detail}"));
    }
}

/// The world's run against one process's, on rank 0; every rank's parameters against rank 0's.
fn equivalence(mpi: &Arc<Mpi>, failures: &mut Vec<String>) -> Res {
    let (rank, world) = (mpi.rank(), mpi.world_size());
    let batch = 4 * world;
    // Each rank's module starts elsewhere: rank 0's is broadcast.
    let v = Variant {
        batch,
        net_init: 0.25 + rank as f64,
        ..Default::default()
    };
    let (opt, dp_grads) = adam();
    let mut dp = dp_scenario::svi(v, opt)?.data_parallel(mpi.clone());
    let mut dp_loss = Vec::new();
    let mut comm = Duration::ZERO;
    for _ in 0..20 {
        let r = dp.step()?;
        dp_loss.push(r.loss);
        comm += r.communication.unwrap_or_default();
    }
    // Every rank holds rank 0's parameters, bit for bit.
    let mine: Vec<f64> = params(dp.store())
        .into_iter()
        .flat_map(|(_, v)| v)
        .collect();
    let n = mine.len();
    let ours = Tensor::from_vec(mine.clone(), n, &Device::Cpu)?;
    let zeros = Tensor::zeros(n, DType::F64, &Device::Cpu)?;
    let root = mpi.broadcast(if rank == 0 { &ours } else { &zeros }, 0)?;
    check(
        "equivalence: parameters equal rank 0's",
        root.to_vec1::<f64>()? == mine,
        format!("rank {rank} differs"),
        failures,
    );
    if rank == 0 {
        let v = Variant {
            batch,
            net_init: 0.25,
            ..Default::default()
        };
        let (opt, one_grads) = adam();
        let mut one = dp_scenario::svi(v, opt)?;
        let mut one_loss = Vec::new();
        for _ in 0..20 {
            one_loss.push(one.step()?.loss);
        }
        let loss = max_rel(&dp_loss, &one_loss);
        let (ga, gb) = flat_grads(&dp_grads, &one_grads);
        let grads = max_rel(&ga, &gb);
        let pa: Vec<f64> = params(one.store())
            .into_iter()
            .flat_map(|(_, v)| v)
            .collect();
        let p = max_rel(&mine, &pa);
        println!(
            "equivalence ({world} ranks x batch {} vs 1 process x batch {batch}, 20 steps, f64): \
             max relative difference: loss {loss:.2e}, gradients {grads:.2e} ({} values), \
             parameters {p:.2e}; time in collectives {:.1} ms",
            batch / world,
            ga.len(),
            comm.as_secs_f64() * 1e3
        );
        check(
            "equivalence: loss",
            loss <= TOL,
            format!("{loss:e}"),
            failures,
        );
        check(
            "equivalence: gradients",
            grads <= TOL,
            format!("{grads:e}"),
            failures,
        );
        check(
            "equivalence: parameters",
            p <= TOL,
            format!("{p:e}"),
            failures,
        );
        // The check must be able to fail: the world's loss is not one rank's share alone.
        if world > 1 {
            let (opt, _) = adam();
            let half = Variant {
                batch: batch / world,
                net_init: 0.25,
                ..Default::default()
            };
            let mut alone = dp_scenario::svi(half, opt)?;
            let l = alone.step()?.loss;
            check(
                "equivalence: a share alone differs",
                (l - one_loss[0]).abs() > 1e-3 * one_loss[0].abs(),
                format!("{l} vs {}", one_loss[0]),
                failures,
            );
        }
    }
    Ok(())
}

/// A checkpoint of the world, resumed in one process (rank 0) and in the world.
fn checkpoint(mpi: &Arc<Mpi>, failures: &mut Vec<String>) -> Res {
    let (rank, world) = (mpi.rank(), mpi.world_size());
    let batch = 4 * world;
    let path = std::env::temp_dir().join(format!("vi-infer-mpi-test-{world}.safetensors"));
    let v = Variant {
        batch,
        net_init: 0.25 + rank as f64,
        ..Default::default()
    };
    let (opt, _) = adam();
    let mut dp = dp_scenario::svi(v, opt)?.data_parallel(mpi.clone());
    for _ in 0..10 {
        dp.step()?;
    }
    dp.save(&path)?;
    let mut cont = Vec::new();
    for _ in 0..5 {
        cont.push(dp.step()?.loss);
    }
    // In the world again, from modules that start elsewhere.
    let v = Variant {
        batch,
        net_init: 5.0 + rank as f64,
        ..Default::default()
    };
    let (opt, _) = adam();
    let mut again = dp_scenario::svi(v, opt)?.data_parallel(mpi.clone());
    again.load(&path)?;
    let mut resumed = Vec::new();
    for _ in 0..5 {
        resumed.push(again.step()?.loss);
    }
    let d = max_rel(&cont, &resumed);
    check(
        &format!("checkpoint: resumed in {world} ranks"),
        d <= TOL,
        format!("{d:e} (rank {rank})"),
        failures,
    );
    if rank == 0 {
        let v = Variant {
            batch,
            net_init: 9.0,
            ..Default::default()
        };
        let (opt, _) = adam();
        let mut one = dp_scenario::svi(v, opt)?;
        one.load(&path)?;
        let mut resumed = Vec::new();
        for _ in 0..5 {
            resumed.push(one.step()?.loss);
        }
        let d1 = max_rel(&cont, &resumed);
        println!(
            "checkpoint of {world} ranks: 5 steps resumed in {world} ranks differ by {d:.2e}, in 1 process by {d1:.2e}"
        );
        check(
            "checkpoint: resumed in 1 process",
            d1 <= TOL,
            format!("{d1:e}"),
            failures,
        );
    }
    mpi.barrier()?;
    if rank == 0 {
        std::fs::remove_file(&path).ok();
    }
    Ok(())
}

/// The step error of variant `v` on this rank.
fn step_error(mpi: &Arc<Mpi>, v: Variant) -> Res<InferError> {
    let (opt, _) = adam();
    let mut svi = dp_scenario::svi(v, opt)?.data_parallel(mpi.clone());
    match svi.step() {
        Ok(_) => Err("the step succeeded".into()),
        Err(e) => Ok(e),
    }
}

fn errors(mpi: &Arc<Mpi>, failures: &mut Vec<String>) -> Res {
    let (rank, world) = (mpi.rank(), mpi.world_size());
    if world < 2 {
        return Ok(());
    }
    let batch = 4 * world + 1;
    let e = step_error(
        mpi,
        Variant {
            batch,
            ..Default::default()
        },
    )?;
    check(
        "indivisible batch",
        matches!(&e, InferError::IndivisibleBatch { plate, batch: b, world: w } if plate == "data" && *b == batch && *w == world),
        format!("{e}"),
        failures,
    );
    let v = Variant {
        batch: 4 * world,
        extra_site: rank == 1,
        ..Default::default()
    };
    let e = step_error(mpi, v)?;
    check(
        "site on rank 1 only",
        matches!(&e, InferError::RankMismatch { .. })
            && e.to_string().contains("guide site `extra` on rank 1 only"),
        format!("{e}"),
        failures,
    );
    let v = Variant {
        batch: 4 * world,
        fail: rank == 1,
        ..Default::default()
    };
    let e = step_error(mpi, v)?;
    let ok = if rank == 1 {
        matches!(e.root(), InferError::Invalid(m) if m.contains("fails on purpose"))
    } else {
        matches!(&e, InferError::PeerFailed { rank: 1, msg, .. } if msg.contains("fails on purpose"))
    };
    check("failing rank", ok, format!("{e}"), failures);
    if rank == 0 {
        println!(
            "typed errors on every rank: indivisible batch, site on one rank only, failing rank"
        );
    }
    Ok(())
}

/// Rank 1 stops stepping: the others' step times out (the communicator is unusable after).
fn timeout(mpi: &Arc<Mpi>, failures: &mut Vec<String>) -> Res {
    let (rank, world) = (mpi.rank(), mpi.world_size());
    if world < 2 {
        return Ok(());
    }
    mpi.set_timeout(Duration::from_secs(3));
    if rank == 1 {
        return Ok(());
    }
    let v = Variant {
        batch: 4 * world,
        ..Default::default()
    };
    let e = step_error(mpi, v)?;
    check(
        "a rank that stops stepping",
        matches!(&e, InferError::CollectiveTimeout { .. }),
        format!("{e}"),
        failures,
    );
    if rank == 0 {
        println!("a rank that stops stepping: {e}");
    }
    Ok(())
}

fn main() {
    let mpi = match Mpi::init() {
        Ok(m) => Arc::new(m.timeout(Duration::from_secs(60))),
        Err(e) => {
            eprintln!("MPI: {e}");
            std::process::exit(2);
        }
    };
    let (rank, world) = (mpi.rank(), mpi.world_size());
    let mut failures = Vec::new();
    // The timeout last: it leaves the communicator unusable.
    let runs: [(&str, Check); 4] = [
        ("equivalence", equivalence),
        ("checkpoint", checkpoint),
        ("errors", errors),
        ("timeout", timeout),
    ];
    for (name, run) in runs {
        if let Err(e) = run(&mpi, &mut failures) {
            failures.push(format!("{name}: {e}"));
        }
    }
    for f in &failures {
        eprintln!("rank {rank} of {world}: FAILED {f}");
    }
    if rank == 0 && failures.is_empty() {
        println!("mpi tests: ok on rank 0 of {world}");
    }
    let code = i32::from(!failures.is_empty());
    drop(mpi);
    std::process::exit(code);
}
