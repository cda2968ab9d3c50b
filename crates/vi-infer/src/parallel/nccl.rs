//! The NCCL backend: NCCL through candle's `nccl` feature (cudarc), one CUDA device per rank.

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::cuda::CudaDType;
use candle_core::cuda::cudarc::driver::{CudaSlice, DeviceRepr};
use candle_core::cuda::cudarc::nccl::{Comm, Id, NcclType, ReduceOp};
use candle_core::{CpuStorage, CudaStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};

use super::{Communicator, check_buffer, comm_error};
use crate::error::{InferError, Result};

/// Data-parallel SVI over NCCL: one process per GPU, each with its rank, the world size and
/// the same 128-byte NCCL id (made by rank 0 with [`Nccl::unique_id`] and handed to the
/// others out of band: a shared file, the launcher's environment, MPI).
///
/// Collectives run on the device's stream; the flat buffers stay on the GPU (the step's
/// description bytes and the loss travel through small device buffers). Unlike
/// [`Mpi`](super::Mpi), NCCL's collectives have no deadline here: a rank that dies leaves the
/// others waiting (NCCL's own watchdog, if set up, applies).
///
/// ```ignore
/// // Needs a CUDA build with the `nccl` feature and one GPU per rank.
/// use std::sync::Arc;
/// use vi_infer::parallel::Nccl;
/// let (rank, world) = (0, 2);
/// // Rank 0 makes the id; the others read it once it is there (a shared file here).
/// let path = "/shared/run-42.nccl-id";
/// let id: [u8; 128] = if rank == 0 {
///     let id = Nccl::unique_id()?;
///     std::fs::write(path, id)?;
///     id
/// } else {
///     std::fs::read(path)?.try_into().expect("128 bytes")
/// };
/// let device = candle_core::Device::new_cuda(rank)?;
/// let nccl = Arc::new(Nccl::new(&device, rank, world, &id)?);
/// ```
pub struct Nccl {
    comm: Mutex<Comm>,
    device: Device,
    rank: usize,
    world: usize,
}

// SAFETY: the NCCL communicator is only used under the mutex (one thread at a time), on the
// stream it was created with.
unsafe impl Send for Nccl {}
// SAFETY: as above.
unsafe impl Sync for Nccl {}

impl std::fmt::Debug for Nccl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nccl")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .finish()
    }
}

fn nccl_error(rank: usize, world: usize, what: &str, e: impl std::fmt::Debug) -> InferError {
    InferError::Communication {
        rank,
        world,
        msg: format!("NCCL {what}: {e:?}"),
    }
}

impl Nccl {
    /// A fresh NCCL id (`ncclGetUniqueId`), made on rank 0 and given to every rank.
    ///
    /// ```ignore
    /// // A `--features nccl` build on a machine with NCCL.
    /// let id = vi_infer::parallel::Nccl::unique_id()?;
    /// std::fs::write("/shared/run-42.nccl-id", id)?;
    /// ```
    pub fn unique_id() -> Result<[u8; 128]> {
        let id = Id::new().map_err(|e| nccl_error(0, 0, "unique id", e))?;
        Ok(id.internal().map(|c| c as u8))
    }

    /// Rank `rank` of `world` on the CUDA `device`, joining the communicator of `id`
    /// (`ncclCommInitRank`: it waits for every rank).
    ///
    /// ```ignore
    /// // A `--features nccl` build, one GPU per rank, `id` from rank 0's `unique_id`.
    /// let device = candle_core::Device::new_cuda(rank)?;
    /// let nccl = vi_infer::parallel::Nccl::new(&device, rank, world, &id)?;
    /// ```
    pub fn new(device: &Device, rank: usize, world: usize, id: &[u8; 128]) -> Result<Self> {
        let cuda = device
            .as_cuda_device()
            .map_err(|e| nccl_error(rank, world, "needs a CUDA device", e))?;
        let id = Id::uninit(id.map(|b| b as core::ffi::c_char));
        let comm = Comm::from_rank(cuda.cuda_stream(), rank, world, id)
            .map_err(|e| nccl_error(rank, world, "init", e))?;
        Ok(Self {
            comm: Mutex::new(comm),
            device: device.clone(),
            rank,
            world,
        })
    }

    fn run(&self, buf: &Tensor, op: Op) -> Result<Tensor> {
        let comm = self.comm.lock().unwrap_or_else(|e| e.into_inner());
        let on_device = buf.to_device(&self.device)?;
        let out = on_device.apply_op1_no_bwd(&Collective { comm: &comm, op })?;
        Ok(out.to_device(buf.device())?)
    }
}

#[derive(Clone, Copy)]
enum Op {
    AllReduceSum,
    Broadcast(usize),
    AllGather(usize),
}

/// One NCCL collective as a candle op on a contiguous CUDA buffer.
struct Collective<'a> {
    comm: &'a Comm,
    op: Op,
}

impl Collective<'_> {
    fn apply<T: CudaDType + DeviceRepr + NcclType>(
        &self,
        s: &CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let fail = |e| candle_core::Error::Cuda(format!("NCCL: {e:?}").into());
        let Some((start, end)) = l.contiguous_offsets() else {
            return Err(candle_core::Error::Cuda(
                "NCCL collectives take contiguous buffers".into(),
            ));
        };
        let src = s.as_cuda_slice::<T>()?.slice(start..end);
        let n = end - start;
        let out_len = match self.op {
            Op::AllGather(world) => n * world,
            _ => n,
        };
        // SAFETY: every element is written by the collective before it is read.
        let mut dst: CudaSlice<T> = unsafe { s.device.alloc::<T>(out_len)? };
        match self.op {
            Op::AllReduceSum => self.comm.all_reduce(&src, &mut dst, &ReduceOp::Sum),
            Op::Broadcast(root) => self.comm.broadcast(Some(&src), &mut dst, root as i32),
            Op::AllGather(_) => self.comm.all_gather(&src, &mut dst),
        }
        .map_err(fail)?;
        Ok((
            CudaStorage::wrap_cuda_slice(dst, s.device.clone()),
            Shape::from(out_len),
        ))
    }
}

impl CustomOp1 for Collective<'_> {
    fn name(&self) -> &'static str {
        "nccl-collective"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        Err(candle_core::Error::Msg(
            "NCCL collectives run on CUDA buffers".into(),
        ))
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        match s.dtype() {
            DType::F32 => self.apply::<f32>(s, l),
            DType::F64 => self.apply::<f64>(s, l),
            DType::U8 => self.apply::<u8>(s, l),
            DType::U32 => self.apply::<u32>(s, l),
            dt => Err(candle_core::Error::Msg(format!(
                "no NCCL collective for {dt:?} here"
            ))),
        }
    }
}

impl Communicator for Nccl {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn all_reduce_sum(&self, buf: &Tensor) -> Result<Tensor> {
        check_buffer(self, buf)?;
        self.run(buf, Op::AllReduceSum)
    }

    fn broadcast(&self, buf: &Tensor, root: usize) -> Result<Tensor> {
        check_buffer(self, buf)?;
        if root >= self.world {
            return Err(comm_error(
                self,
                format!("broadcast from rank {root} in a world of {}", self.world),
            ));
        }
        self.run(buf, Op::Broadcast(root))
    }

    fn all_gather_bytes(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        let len = Tensor::new(&[bytes.len() as u32], &self.device)?;
        let lens = self
            .run(&len, Op::AllGather(self.world))?
            .to_vec1::<u32>()?;
        let longest = lens.iter().copied().max().unwrap_or(0) as usize;
        if longest == 0 {
            return Ok(vec![Vec::new(); self.world]);
        }
        let mut padded = bytes.to_vec();
        padded.resize(longest, 0);
        let padded = Tensor::from_vec(padded, longest, &self.device)?;
        let all = self
            .run(&padded, Op::AllGather(self.world))?
            .to_vec1::<u8>()?;
        Ok(lens
            .iter()
            .enumerate()
            .map(|(r, &len)| all[r * longest..r * longest + len as usize].to_vec())
            .collect())
    }

    fn name(&self) -> &str {
        "NCCL"
    }
}
