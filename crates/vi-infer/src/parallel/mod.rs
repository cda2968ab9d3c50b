//! Data-parallel SVI (Pyro's `HorovodOptimizer`): the communicator a data-parallel
//! [`Svi`](crate::Svi) exchanges its gradients through.
//!
//! Every rank runs the same model and guide with the same generator: the guide's draws of
//! global latents agree, and a subsampled plate's indices are drawn for the whole world and
//! split by rank ([`Svi::data_parallel`](crate::Svi::data_parallel)). The gradients are
//! averaged by one all-reduce of one fused buffer, and every rank takes the same optimizer
//! step. The communication is an existing engine's:
//!
//! - [`SingleProcess`] (always there): a world of one, which changes nothing;
//! - `Mpi` (feature `mpi`): the system's MPI through the `mpi` crate, for CPU nodes;
//! - `Nccl` (feature `nccl`): NCCL through candle's `nccl` feature (cudarc), for GPUs.

#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "nccl")]
mod nccl;

#[cfg(feature = "mpi")]
pub use self::mpi::Mpi;
#[cfg(feature = "nccl")]
pub use self::nccl::Nccl;

use candle_core::{DType, Tensor};

use crate::error::{InferError, Result};

/// What a data-parallel [`Svi`](crate::Svi) needs from a communication engine: its rank and
/// world size, a sum over ranks of one flat buffer, a broadcast from one rank, and an
/// all-gather of a few bytes (the ranks' descriptions of their step, compared before any
/// gradient is exchanged). Every rank calls the same collectives in the same order.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_infer::parallel::{Communicator, SingleProcess};
/// let comm = SingleProcess;
/// assert_eq!((comm.rank(), comm.world_size()), (0, 1));
/// let g = Tensor::new(&[1.0f64, 2.0], &Device::Cpu)?;
/// assert_eq!(comm.all_reduce_sum(&g)?.to_vec1::<f64>()?, [1.0, 2.0]);
/// assert_eq!(comm.all_gather_bytes(b"ok")?, vec![b"ok".to_vec()]);
/// # Ok::<(), vi_infer::InferError>(())
/// ```
pub trait Communicator: Send + Sync + std::fmt::Debug {
    /// This process's rank, in `0..world_size()`.
    fn rank(&self) -> usize;

    /// The number of ranks.
    fn world_size(&self) -> usize;

    /// The element-wise sum over the ranks of `buf` (1-D, `f32` or `f64`, the same length on
    /// every rank), on every rank, on `buf`'s device.
    fn all_reduce_sum(&self, buf: &Tensor) -> Result<Tensor>;

    /// The element-wise sum over the ranks of `tensors` (each any shape, all of one dtype,
    /// `f32` or `f64`) fused into one flat buffer, in order: one collective for all of them.
    /// The default fuses them with one copy and calls
    /// [`all_reduce_sum`](Communicator::all_reduce_sum); a backend may gather them into its
    /// own buffer directly.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_infer::parallel::{Communicator, SingleProcess};
    /// let a = Tensor::new(&[[1.0f32, 2.0]], &Device::Cpu)?;
    /// let b = Tensor::new(&[3.0f32], &Device::Cpu)?;
    /// let sum = SingleProcess.all_reduce_sum_fused(&[a, b])?;
    /// assert_eq!(sum.to_vec1::<f32>()?, [1.0, 2.0, 3.0]);
    /// # Ok::<(), vi_infer::InferError>(())
    /// ```
    fn all_reduce_sum_fused(&self, tensors: &[Tensor]) -> Result<Tensor> {
        let dtype = tensors.first().map_or(DType::F32, |t| t.dtype());
        self.all_reduce_sum(&fuse(tensors, dtype)?)
    }

    /// Rank `root`'s `buf` (1-D, `f32` or `f64`), on every rank; the other ranks' `buf` gives
    /// the length and dtype, which must agree with the root's.
    fn broadcast(&self, buf: &Tensor, root: usize) -> Result<Tensor>;

    /// Every rank's `bytes`, by rank (their lengths may differ).
    fn all_gather_bytes(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>>;

    /// The engine, in words (`"MPI"`, `"NCCL"`, `"single process"`).
    fn name(&self) -> &str;

    /// Waits until every rank has reached this call (an all-gather of nothing).
    ///
    /// ```
    /// use vi_infer::parallel::{Communicator, SingleProcess};
    /// SingleProcess.barrier()?;
    /// # Ok::<(), vi_infer::InferError>(())
    /// ```
    fn barrier(&self) -> Result<()> {
        self.all_gather_bytes(&[]).map(|_| ())
    }
}

/// A world of one process: every collective returns its input. The default of a
/// non-distributed run; [`Svi::data_parallel`](crate::Svi::data_parallel) with it steps
/// exactly as without it.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_infer::parallel::{Communicator, SingleProcess};
/// let x = Tensor::new(&[3.0f32], &Device::Cpu)?;
/// assert_eq!(SingleProcess.broadcast(&x, 0)?.to_vec1::<f32>()?, [3.0]);
/// assert_eq!(SingleProcess.name(), "single process");
/// # Ok::<(), vi_infer::InferError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn world_size(&self) -> usize {
        1
    }

    fn all_reduce_sum(&self, buf: &Tensor) -> Result<Tensor> {
        check_buffer(self, buf)?;
        Ok(buf.clone())
    }

    fn broadcast(&self, buf: &Tensor, root: usize) -> Result<Tensor> {
        check_buffer(self, buf)?;
        if root != 0 {
            return Err(comm_error(
                self,
                format!("broadcast from rank {root} in a world of 1"),
            ));
        }
        Ok(buf.clone())
    }

    fn all_gather_bytes(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        Ok(vec![bytes.to_vec()])
    }

    fn name(&self) -> &str {
        "single process"
    }
}

/// [`InferError::Communication`] on `comm`'s rank.
pub(crate) fn comm_error(comm: &(impl Communicator + ?Sized), msg: String) -> InferError {
    InferError::Communication {
        rank: comm.rank(),
        world: comm.world_size(),
        msg,
    }
}

/// A buffer a collective takes: 1-D, `f32` or `f64`.
pub(crate) fn check_buffer(comm: &(impl Communicator + ?Sized), buf: &Tensor) -> Result<()> {
    if buf.rank() != 1 || !matches!(buf.dtype(), DType::F32 | DType::F64) {
        return Err(comm_error(
            comm,
            format!(
                "a collective takes a 1-D f32 or f64 buffer, got {:?} of shape {:?}",
                buf.dtype(),
                buf.dims()
            ),
        ));
    }
    Ok(())
}

/// The tensors flattened, cast to `dtype` and concatenated: one buffer for one collective.
pub(crate) fn fuse(tensors: &[Tensor], dtype: DType) -> Result<Tensor> {
    let flat = tensors
        .iter()
        .map(|t| t.flatten_all()?.to_dtype(dtype))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(Tensor::cat(&flat, 0)?)
}

/// [`fuse`] undone: the buffer cut into the shapes and dtypes of `like`.
pub(crate) fn unfuse(buf: &Tensor, like: &[Tensor]) -> Result<Vec<Tensor>> {
    let mut out = Vec::with_capacity(like.len());
    let mut at = 0;
    for t in like {
        let n = t.elem_count();
        out.push(
            buf.narrow(0, at, n)?
                .reshape(t.shape())?
                .to_dtype(t.dtype())?,
        );
        at += n;
    }
    Ok(out)
}
