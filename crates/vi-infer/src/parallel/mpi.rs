//! The MPI backend: the system's MPI (Open MPI, MPICH) through the `mpi` crate.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use candle_core::{CpuStorage, DType, Device, Storage, Tensor};
use mpi::Threading;
use mpi::datatype::Equivalence;
use mpi::environment::Universe;
use mpi::request::{Request, StaticScope};
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator as _, CommunicatorCollectives, Root};

use super::{Communicator, check_buffer, comm_error};
use crate::error::{InferError, Result};

/// Data-parallel SVI over MPI (`MPI_COMM_WORLD`): launch the program with
/// `mpirun -np N …`. Owns MPI's initialisation; MPI is finalised when it is dropped (on the
/// thread that created it: keep it there).
///
/// Every collective is non-blocking, polled against a deadline ([`timeout`](Mpi::timeout),
/// 120 s by default): a rank that hangs or no longer steps gives the others
/// [`InferError::CollectiveTimeout`] rather than a hang. After a timeout the communicator
/// refuses further collectives. (A rank that dies outright ends the whole job: `mpirun`
/// terminates the others.)
///
/// ```no_run
/// use std::sync::Arc;
/// use vi_infer::parallel::{Communicator, Mpi};
/// let mpi = Arc::new(Mpi::init()?);
/// println!("rank {} of {}", mpi.rank(), mpi.world_size());
/// // let svi = Svi::new(model, guide, adam, elbo).data_parallel(mpi.clone());
/// # Ok::<(), vi_infer::InferError>(())
/// ```
pub struct Mpi {
    inner: Mutex<Inner>,
    rank: usize,
    world: usize,
    /// The deadline of a collective, in nanoseconds.
    timeout: AtomicU64,
}

struct Inner {
    world: SimpleCommunicator,
    /// Why the communicator is unusable (a collective that timed out is still posted).
    poisoned: Option<String>,
    // Declared last: finalises MPI after the communicator is gone.
    _universe: Universe,
}

// SAFETY: MPI is initialised with at least `MPI_THREAD_SERIALIZED` (checked in `init`), and
// every MPI call goes through the mutex: one thread at a time.
unsafe impl Send for Mpi {}
// SAFETY: as above.
unsafe impl Sync for Mpi {}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mpi")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("timeout", &self.deadline())
            .finish()
    }
}

impl Mpi {
    /// Initialises MPI (once per process) and takes `MPI_COMM_WORLD`.
    ///
    /// ```no_run
    /// let mpi = vi_infer::parallel::Mpi::init()?;
    /// # Ok::<(), vi_infer::InferError>(())
    /// ```
    pub fn init() -> Result<Self> {
        let fail = |msg: String| InferError::Communication {
            rank: 0,
            world: 0,
            msg,
        };
        let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| fail("MPI is already initialised in this process".into()))?;
        if threading < Threading::Serialized {
            return Err(fail(format!(
                "this MPI provides thread level {threading:?}; data-parallel SVI needs Serialized"
            )));
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        Ok(Self {
            inner: Mutex::new(Inner {
                world,
                poisoned: None,
                _universe: universe,
            }),
            rank,
            world: size,
            timeout: AtomicU64::new(120_000_000_000),
        })
    }

    /// The deadline of every collective (120 s by default).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let mpi = vi_infer::parallel::Mpi::init()?.timeout(Duration::from_secs(10));
    /// # Ok::<(), vi_infer::InferError>(())
    /// ```
    pub fn timeout(self, timeout: Duration) -> Self {
        self.set_timeout(timeout);
        self
    }

    /// Sets the deadline of every later collective.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let mpi = vi_infer::parallel::Mpi::init()?;
    /// mpi.set_timeout(Duration::from_secs(600)); // a slow first step ahead
    /// # Ok::<(), vi_infer::InferError>(())
    /// ```
    pub fn set_timeout(&self, timeout: Duration) {
        let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        self.timeout.store(nanos, Ordering::Relaxed);
    }

    fn deadline(&self) -> Duration {
        Duration::from_nanos(self.timeout.load(Ordering::Relaxed))
    }

    /// Aborts every rank of the job with `code` (`MPI_Abort`): for a program that cannot go
    /// on after an error on some ranks.
    ///
    /// ```no_run
    /// let mpi = vi_infer::parallel::Mpi::init()?;
    /// mpi.abort(1);
    /// # Ok::<(), vi_infer::InferError>(())
    /// ```
    pub fn abort(&self, code: i32) -> ! {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.world.abort(code)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(why) = &inner.poisoned {
            return Err(comm_error(
                self,
                format!("the communicator is unusable: {why}"),
            ));
        }
        Ok(inner)
    }

    /// Polls `req` until it completes or the deadline passes; then the request is left
    /// posted (its buffers leaked) and the communicator poisoned.
    fn wait<R: ?Sized>(
        &self,
        inner: &mut Inner,
        op: &str,
        mut req: Request<'static, R, StaticScope>,
    ) -> Result<()> {
        let (start, deadline) = (Instant::now(), self.deadline());
        let mut polls = 0u32;
        loop {
            match req.test() {
                Ok(_) => return Ok(()),
                Err(r) => req = r,
            }
            if start.elapsed() > deadline {
                std::mem::forget(req);
                inner.poisoned = Some(format!("the {op} timed out"));
                return Err(InferError::CollectiveTimeout {
                    rank: self.rank,
                    world: self.world,
                    op: op.to_string(),
                    seconds: deadline.as_secs_f64(),
                });
            }
            // Poll hard at first (a collective between ranks in step takes microseconds),
            // then yield, then sleep: a rank that waits long (for a slower rank, or while
            // another works alone) leaves its core to others.
            polls += 1;
            if start.elapsed() > Duration::from_millis(20) {
                std::thread::sleep(Duration::from_micros(200));
            } else if polls > 1000 {
                std::thread::yield_now();
            }
        }
    }

    fn all_reduce_vec<T: Equivalence + Copy + Default + 'static>(
        &self,
        op: &str,
        send: Vec<T>,
    ) -> Result<Vec<T>> {
        let mut inner = self.lock()?;
        let n = send.len();
        let send: &'static mut [T] = Box::leak(send.into_boxed_slice());
        let recv: &'static mut [T] = Box::leak(vec![T::default(); n].into_boxed_slice());
        let (sp, rp) = (send.as_mut_ptr(), recv.as_mut_ptr());
        let req = inner.world.immediate_all_reduce_into(
            StaticScope,
            &*send,
            recv,
            mpi::collective::SystemOperation::sum(),
        );
        self.wait(&mut inner, op, req)?;
        // SAFETY: the request completed, so MPI no longer reads `send` nor writes `recv`; both
        // were leaked from boxes of `n` elements above and are not referenced elsewhere.
        unsafe {
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(sp, n)));
            Ok(Box::from_raw(std::ptr::slice_from_raw_parts_mut(rp, n)).into_vec())
        }
    }

    fn broadcast_vec<T: Equivalence + Copy + 'static>(
        &self,
        op: &str,
        buf: Vec<T>,
        root: usize,
    ) -> Result<Vec<T>> {
        let mut inner = self.lock()?;
        let n = buf.len();
        let buf: &'static mut [T] = Box::leak(buf.into_boxed_slice());
        let p = buf.as_mut_ptr();
        let req = inner
            .world
            .process_at_rank(root as i32)
            .immediate_broadcast_into(StaticScope, buf);
        self.wait(&mut inner, op, req)?;
        // SAFETY: as in `all_reduce_vec`.
        unsafe { Ok(Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, n)).into_vec()) }
    }

    fn all_gather_vec<T: Equivalence + Copy + Default + 'static>(
        &self,
        op: &str,
        send: Vec<T>,
    ) -> Result<Vec<T>> {
        let mut inner = self.lock()?;
        let n = send.len();
        let send: &'static mut [T] = Box::leak(send.into_boxed_slice());
        let recv: &'static mut [T] =
            Box::leak(vec![T::default(); n * self.world].into_boxed_slice());
        let (sp, rp) = (send.as_mut_ptr(), recv.as_mut_ptr());
        let req = inner
            .world
            .immediate_all_gather_into(StaticScope, &*send, recv);
        self.wait(&mut inner, op, req)?;
        // SAFETY: as in `all_reduce_vec`.
        unsafe {
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(sp, n)));
            Ok(Box::from_raw(std::ptr::slice_from_raw_parts_mut(rp, n * self.world)).into_vec())
        }
    }
}

/// The tensors' elements, in order, in one vector: each CPU tensor's storage read in place
/// (`slice` picks the storage of the element type), copied once.
fn host_concat<T: Copy>(
    tensors: &[Tensor],
    slice: impl Fn(&CpuStorage) -> Option<&Vec<T>>,
) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(tensors.iter().map(|t| t.elem_count()).sum());
    for t in tensors {
        let t = t.contiguous()?;
        let (storage, layout) = t.storage_and_layout();
        let (Storage::Cpu(cpu), Some((a, b))) = (&*storage, layout.contiguous_offsets()) else {
            return Err(InferError::Invalid(
                "host_concat: a CPU tensor's storage".into(),
            ));
        };
        let Some(v) = slice(cpu) else {
            return Err(InferError::Invalid(
                "host_concat: tensors of one dtype".into(),
            ));
        };
        out.extend_from_slice(&v[a..b]);
    }
    Ok(out)
}

impl Communicator for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn all_reduce_sum(&self, buf: &Tensor) -> Result<Tensor> {
        check_buffer(self, buf)?;
        let (n, dev) = (buf.elem_count(), buf.device());
        let op = "all-reduce";
        Ok(match buf.dtype() {
            DType::F64 => {
                Tensor::from_vec(self.all_reduce_vec(op, buf.to_vec1::<f64>()?)?, n, dev)?
            }
            _ => Tensor::from_vec(self.all_reduce_vec(op, buf.to_vec1::<f32>()?)?, n, dev)?,
        })
    }

    fn all_reduce_sum_fused(&self, tensors: &[Tensor]) -> Result<Tensor> {
        // CPU tensors of one dtype: copied straight into MPI's send buffer (one copy, no
        // fused tensor first).
        let dtype = tensors.first().map_or(DType::F32, |t| t.dtype());
        let on_cpu = tensors
            .iter()
            .all(|t| t.device().is_cpu() && t.dtype() == dtype);
        let op = "all-reduce";
        match (on_cpu, dtype) {
            (true, DType::F32) => {
                let send = host_concat::<f32>(tensors, |s| match s {
                    CpuStorage::F32(v) => Some(v),
                    _ => None,
                })?;
                let n = send.len();
                Ok(Tensor::from_vec(
                    self.all_reduce_vec(op, send)?,
                    n,
                    &Device::Cpu,
                )?)
            }
            (true, DType::F64) => {
                let send = host_concat::<f64>(tensors, |s| match s {
                    CpuStorage::F64(v) => Some(v),
                    _ => None,
                })?;
                let n = send.len();
                Ok(Tensor::from_vec(
                    self.all_reduce_vec(op, send)?,
                    n,
                    &Device::Cpu,
                )?)
            }
            _ => self.all_reduce_sum(&super::fuse(tensors, dtype)?),
        }
    }

    fn broadcast(&self, buf: &Tensor, root: usize) -> Result<Tensor> {
        check_buffer(self, buf)?;
        if root >= self.world {
            return Err(comm_error(
                self,
                format!("broadcast from rank {root} in a world of {}", self.world),
            ));
        }
        let (n, dev) = (buf.elem_count(), buf.device());
        let op = "broadcast";
        Ok(match buf.dtype() {
            DType::F64 => {
                Tensor::from_vec(self.broadcast_vec(op, buf.to_vec1::<f64>()?, root)?, n, dev)?
            }
            _ => Tensor::from_vec(self.broadcast_vec(op, buf.to_vec1::<f32>()?, root)?, n, dev)?,
        })
    }

    fn all_gather_bytes(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        // The lengths, then every buffer padded to the longest.
        let lens = self.all_gather_vec("all-gather", vec![bytes.len() as u64])?;
        // At least one byte: an empty buffer's dangling address of a `u8` is 1, which Open
        // MPI reads as `MPI_IN_PLACE`.
        let longest = (lens.iter().copied().max().unwrap_or(0) as usize).max(1);
        let mut padded = bytes.to_vec();
        padded.resize(longest, 0);
        let all = self.all_gather_vec("all-gather", padded)?;
        Ok(lens
            .iter()
            .enumerate()
            .map(|(r, &len)| all[r * longest..r * longest + len as usize].to_vec())
            .collect())
    }

    fn name(&self) -> &str {
        "MPI"
    }
}
