//! Data-parallel SVI in one process: with `SingleProcess` a step is exactly the plain step;
//! with a stand-in world of two (this process as rank 0, the other rank's collective
//! contributions mirrored or altered), the typed errors of an indivisible batch, of a site on
//! one rank only and of a failing rank. The real two-rank runs are `tests/mpi.rs`, under
//! `mpirun -np 2` (`.ci/mpi-tests`).

use std::sync::Arc;

use candle_core::Tensor;
use vi_infer::InferError;
use vi_infer::parallel::{Communicator, SingleProcess};

use crate::common::Res;
use crate::dp_scenario::{self, Variant, adam, flat_grads, max_rel, params};

#[test]
fn data_parallel_single_process_is_the_plain_step() -> Res {
    let v = Variant {
        batch: 8,
        net_init: 0.25,
        ..Default::default()
    };
    let (opt, plain_grads) = adam();
    let mut plain = dp_scenario::svi(v, opt)?;
    let (opt, dp_grads) = adam();
    let mut dp = dp_scenario::svi(v, opt)?.data_parallel(Arc::new(SingleProcess));
    for _ in 0..20 {
        let a = plain.step()?;
        let b = dp.step()?;
        assert_eq!(a.loss, b.loss);
        assert!(a.communication.is_none() && b.communication.is_some());
        for (x, y) in a.sites.iter().zip(&b.sites) {
            assert_eq!((&x.name, x.sum_f64()?), (&y.name, y.sum_f64()?));
        }
    }
    let (ga, gb) = flat_grads(&plain_grads, &dp_grads);
    assert_eq!(ga.len(), 20 * 10); // loc 3, scale 3, net.weight 3, net.bias 1
    assert_eq!(ga, gb);
    assert_eq!(params(plain.store()), params(dp.store()));
    assert_eq!(max_rel(&ga, &gb), 0.0);
    Ok(())
}

/// Rank 0 of a stand-in world of two: the other rank's all-gathered bytes are `other(own)`,
/// its all-reduce contribution equals this rank's.
#[derive(Debug)]
struct Mirror {
    other: fn(&[u8]) -> Vec<u8>,
}

impl Communicator for Mirror {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        2
    }
    fn all_reduce_sum(&self, buf: &Tensor) -> vi_infer::Result<Tensor> {
        Ok((buf * 2.0)?)
    }
    fn broadcast(&self, buf: &Tensor, _root: usize) -> vi_infer::Result<Tensor> {
        Ok(buf.clone())
    }
    fn all_gather_bytes(&self, bytes: &[u8]) -> vi_infer::Result<Vec<Vec<u8>>> {
        Ok(vec![bytes.to_vec(), (self.other)(bytes)])
    }
    fn name(&self) -> &str {
        "mirror"
    }
}

fn same(b: &[u8]) -> Vec<u8> {
    b.to_vec()
}

fn step_error(v: Variant, other: fn(&[u8]) -> Vec<u8>) -> InferError {
    let (opt, _) = adam();
    let mut svi = dp_scenario::svi(v, opt)
        .expect("scenario")
        .data_parallel(Arc::new(Mirror { other }));
    svi.step().expect_err("the step must fail")
}

#[test]
fn data_parallel_indivisible_batch() {
    let v = Variant {
        batch: 7,
        ..Default::default()
    };
    let e = step_error(v, same);
    assert!(
        matches!(&e, InferError::IndivisibleBatch { plate, batch: 7, world: 2 } if plate == "data"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "plate `data`: a batch of 7 does not split over 2 ranks (data-parallel SVI needs a multiple of the world size)"
    );
}

#[test]
fn data_parallel_site_on_one_rank_only() {
    fn with_extra(b: &[u8]) -> Vec<u8> {
        let mut s = String::from_utf8(b.to_vec()).unwrap();
        s.push_str("\nguide site\textra\t");
        s.into_bytes()
    }
    let v = Variant {
        batch: 8,
        ..Default::default()
    };
    let e = step_error(v, with_extra);
    assert!(
        matches!(&e, InferError::RankMismatch { world: 2, .. }),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "data-parallel ranks disagree (world size 2): guide site `extra` on rank 1 only"
    );
    fn other_size(b: &[u8]) -> Vec<u8> {
        String::from_utf8(b.to_vec())
            .unwrap()
            .replace("param\tloc\t[3]", "param\tloc\t[4]")
            .into_bytes()
    }
    let e = step_error(v, other_size);
    assert_eq!(
        e.to_string(),
        "data-parallel ranks disagree (world size 2): param `loc`: [3] on rank 0, [4] on rank 1"
    );
}

#[test]
fn data_parallel_failing_peer() {
    fn failed(_: &[u8]) -> Vec<u8> {
        b"error\tthe model failed".to_vec()
    }
    let v = Variant {
        batch: 8,
        ..Default::default()
    };
    let e = step_error(v, failed);
    assert!(
        matches!(&e, InferError::PeerFailed { rank: 1, world: 2, msg } if msg == "the model failed"),
        "{e:?}"
    );
}

/// The indices of a subsampled plate on rank 0 of two: the first half of what one process
/// draws for the whole batch, with drawn indices and with indices of one's own.
#[test]
fn data_parallel_rank_takes_its_share() -> Res {
    use vi_infer::Plate;
    use vi_infer::dist::Normal;
    use vi_infer::optim::{Adam, AdamOptions};
    use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
    let own = Tensor::new(&[9u32, 3, 7, 1, 0, 5, 2, 8], &candle_core::Device::Cpu)?;
    let indices = |world: Option<Arc<dyn Communicator>>,
                   given: bool|
     -> Res<(Vec<u32>, Vec<u32>)> {
        let (zero, one) = (crate::common::s(0.0), crate::common::s(1.0));
        let own = own.clone();
        let program = move |ctx: &mut Ctx<'_>| -> vi_infer::Result<()> {
            let plate = match given {
                true => Plate::new("data", 10).subsample(&own),
                false => Plate::new("data", 10).subsample_size(8),
            };
            ctx.plate_with(plate, |ctx, _| ctx.sample("z", Normal::new(&zero, &one)?))?;
            Ok(())
        };
        let adam = Adam::empty(AdamOptions::default())?;
        let mut svi = Svi::new(program.clone(), program, adam, TraceMeanFieldElbo::new()).seed(3);
        if let Some(c) = world {
            svi = svi.data_parallel(c);
        }
        let r = svi.evaluate_loss()?;
        let site = r.model_trace.get("data").expect("the plate's indices");
        let z = r.model_trace.get("z").expect("z");
        Ok((
            site.value.to_vec1::<u32>()?,
            z.value
                .to_dtype(candle_core::DType::F64)?
                .to_vec1::<f64>()?
                .iter()
                .map(|v| v.to_bits() as u32)
                .collect(),
        ))
    };
    for given in [false, true] {
        let (all, z_all) = indices(None, given)?;
        let (half, z_half) = indices(Some(Arc::new(Mirror { other: same })), given)?;
        assert_eq!(all.len(), 8);
        assert_eq!(half, all[..4], "given indices: {given}");
        // The local draws inside the shared plate are the rank's own, not the first half of
        // one process's.
        assert_eq!(z_half.len(), 4);
        assert_ne!(z_half, z_all[..4]);
    }
    Ok(())
}
