//! Plates: batch dims of conditionally independent elements, full or subsampled.

use candle_core::{DType, Tensor};

use super::{Ctx, Handler};
use crate::error::{InferError, Result};
use crate::handlers::PlateMessenger;
use crate::message::{Message, PlateFrame, SequentialFrame, SiteKind, Subsample};
use crate::messenger::Messenger;
use crate::plate::Plate;

use super::statements::{draw, draw_share};

impl Ctx<'_> {
    /// Picks the plate's dim: the given one, or the rightmost batch dim no enclosing plate
    /// uses (as Pyro).
    fn plate_frame(
        &self,
        name: &str,
        size: usize,
        subsample_size: usize,
        dim: Option<isize>,
    ) -> Result<PlateFrame> {
        let bad = |msg: String| InferError::Plate {
            plate: name.to_string(),
            msg,
        };
        if self.active_plates().any(|p| p.name == name) {
            return Err(bad("is already active (plates are named uniquely)".into()));
        }
        let dim = match dim {
            Some(d) if d >= 0 => {
                return Err(bad(format!(
                    "dim must be negative (from the right), got {d}"
                )));
            }
            Some(d) => {
                if let Some(p) = self.active_plates().find(|p| p.dim == d) {
                    return Err(bad(format!(
                        "dim {d} is already used by plate `{}`",
                        p.name
                    )));
                }
                d
            }
            None => {
                let mut d = -1;
                while self.active_plates().any(|p| p.dim == d) {
                    d -= 1;
                }
                d
            }
        };
        Ok(PlateFrame {
            name: name.to_string(),
            dim,
            size,
            subsample_size,
        })
    }

    fn in_plate<T>(
        &mut self,
        frame: PlateFrame,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        if !self.entered.contains(&frame.name) {
            self.entered.push(frame.name.clone());
        }
        self.with_handler(Handler::Plate(PlateMessenger::new(frame)), f)?
            .0
    }

    /// Runs `f` in a plate of `size` conditionally independent elements (`pyro.plate`):
    /// sample sites inside are expanded to the plate's batch dim, the rightmost dim no
    /// enclosing plate uses. Plates nest.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let z = ctx.plate("data", 5, |ctx| ctx.sample("z", Normal::new(&zero, &one)?.to_event(1)?))?;
    /// assert_eq!(z.dims(), &[5, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn plate<T>(
        &mut self,
        name: &str,
        size: usize,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let frame = self.plate_frame(name, size, size, None)?;
        self.in_plate(frame, f)
    }

    /// A sequential plate (Pyro's `for i in pyro.plate(name, size)`): runs `f` once per index
    /// `0..size`, one after another, and returns what each run returned. The sites of
    /// different iterations are conditionally independent (their names must differ, e.g.
    /// `format!("z_{i}")`); unlike [`plate`](Ctx::plate) there is no batch dim. The
    /// independence matters to [`TraceGraphElbo`](crate::TraceGraphElbo): a
    /// non-reparameterised site's score multiplies only the costs of its own iteration and of
    /// what comes after the plate, not those of the other iterations (the other ELBOs read it
    /// as a loop). No subsampling: use [`plate_subsample`](Ctx::plate_subsample) for that.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let (zs, tr) = ctx.trace(|ctx| {
    ///     ctx.plate_seq("data", 4, |ctx, i| ctx.sample(&format!("z_{i}"), Normal::new(&zero, &one)?))
    /// })?;
    /// assert_eq!(zs.len(), 4);
    /// assert_eq!(tr.get("z_2").unwrap().sequential[0].index, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn plate_seq<T>(
        &mut self,
        name: &str,
        size: usize,
        mut f: impl FnMut(&mut Self, usize) -> Result<T>,
    ) -> Result<Vec<T>> {
        if self.active_plates().any(|p| p.name == name) {
            return Err(InferError::Plate {
                plate: name.to_string(),
                msg: "is already active as a vectorised plate (plates are named uniquely)".into(),
            });
        }
        let mut out = Vec::with_capacity(size);
        for index in 0..size {
            let frame = SequentialFrame {
                name: name.to_string(),
                index,
            };
            let handler = Handler::Boxed(Box::new(SequentialPlateMessenger { frame }));
            out.push(self.with_handler(handler, |ctx| f(ctx, index))?.0?);
        }
        Ok(out)
    }

    /// [`plate`](Ctx::plate) at a given batch dim (negative, counted from the right).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let z = ctx.plate_dim("rows", 2, -2, |ctx| ctx.sample("z", Normal::new(&zero, &one)?))?;
    /// assert_eq!(z.dims(), &[2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn plate_dim<T>(
        &mut self,
        name: &str,
        size: usize,
        dim: isize,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let frame = self.plate_frame(name, size, size, Some(dim))?;
        self.in_plate(frame, f)
    }

    /// A subsampled plate: `f` receives `subsample_size` distinct indices in `0..size` (drawn
    /// from the seeded generator, or replayed), sites inside get a batch dim of
    /// `subsample_size`, and their log-densities are scaled by `size / subsample_size`, so
    /// the ELBO stays unbiased. The indices are recorded as a `Subsample` site under the
    /// plate's name.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    /// let n = ctx.plate_subsample("data", 10, 4, |ctx, idx| {
    ///     assert!(idx.to_vec1::<u32>()?.iter().all(|&i| i < 10));
    ///     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
    ///     assert_eq!(z.dims(), &[4]);
    ///     Ok(idx.dims()[0])
    /// })?;
    /// assert_eq!(n, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn plate_subsample<T>(
        &mut self,
        name: &str,
        size: usize,
        subsample_size: usize,
        f: impl FnOnce(&mut Self, &Tensor) -> Result<T>,
    ) -> Result<T> {
        self.plate_with(Plate::new(name, size).subsample_size(subsample_size), f)
    }

    /// A plate with every option of Pyro's `pyro.plate(name, size, subsample_size=…,
    /// subsample=…, dim=…)` (see [`Plate`]): `f` receives the plate's indices. A subsampled
    /// plate records its indices as a `Subsample` site under its name (replayed into the
    /// model from the guide) and scales log-densities by `size / subsample_size`; entering it
    /// again in the same run reuses the same indices (other sizes are an error). Indices of
    /// one's own (`subsample`) are taken as given: 1-D, integer, each below `size` (checked
    /// with validation on).
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Distribution, Normal};
    /// # use vi_infer::{Ctx, ParamStore};
    /// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
    /// # let mut ctx = Ctx::new(&mut store, &mut rng);
    /// use vi_infer::Plate;
    /// let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    /// let (_, tr) = ctx.trace(|ctx| {
    ///     let rows = Plate::new("rows", 10).subsample_size(4).dim(-2);
    ///     let a = ctx.plate_with(rows.clone(), |ctx, idx| {
    ///         ctx.sample("a", Normal::new(&zero, &one)?)?;
    ///         Ok(idx.to_vec1::<u32>()?)
    ///     })?;
    ///     // The same plate again: the same four rows.
    ///     let b = ctx.plate_with(rows, |_, idx| Ok(idx.to_vec1::<u32>()?))?;
    ///     assert_eq!(a, b);
    ///     // Indices of one's own.
    ///     let mine = Tensor::new(&[7u32, 2], &dev)?;
    ///     ctx.plate_with(Plate::new("cols", 10).subsample(&mine), |ctx, idx| {
    ///         assert_eq!(idx.to_vec1::<u32>()?, [7, 2]);
    ///         ctx.sample("c", Normal::new(&zero, &one)?)
    ///     })
    /// })?;
    /// assert_eq!(tr.get("a").unwrap().value.dims(), &[4, 1]);
    /// assert_eq!(tr.get("c").unwrap().scale, 5.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn plate_with<T>(
        &mut self,
        plate: Plate<'_>,
        f: impl FnOnce(&mut Self, &Tensor) -> Result<T>,
    ) -> Result<T> {
        let Plate {
            name,
            size,
            subsample_size,
            subsample,
            dim,
        } = plate;
        let bad = |msg: String| InferError::Plate {
            plate: name.to_string(),
            msg,
        };
        let device = self
            .store
            .device()
            .cloned()
            .unwrap_or(candle_core::Device::Cpu);
        let given = match subsample {
            Some(idx) => Some(crate::plate::own_indices(name, size, subsample_size, idx)?),
            None => None,
        };
        // Data-parallel: indices of one's own are the world's batch (the same on every
        // rank); this rank takes its contiguous share of them.
        let given = match (given, self.shard) {
            (Some(idx), Some((rank, world))) if world > 1 => {
                let n = idx.dims()[0];
                if !n.is_multiple_of(world) {
                    return Err(InferError::IndivisibleBatch {
                        plate: name.to_string(),
                        batch: n,
                        world,
                    });
                }
                if !self.sharded.iter().any(|p| p == name) {
                    self.sharded.push(name.to_string());
                }
                let b = n / world;
                Some(idx.narrow(0, rank * b, b)?)
            }
            (given, _) => given,
        };
        let n = match (&given, subsample_size) {
            (Some(idx), _) => idx.dims()[0],
            (None, Some(n)) if n == 0 || n > size => {
                return Err(bad(format!("subsample size {n} is not in 1..={size}")));
            }
            (None, Some(n)) => n,
            (None, None) => {
                // A plain plate: no indices to record.
                let frame = self.plate_frame(name, size, size, dim)?;
                let idx = Tensor::arange(0u32, size as u32, &device)?;
                return self.in_plate(frame, |ctx| f(ctx, &idx));
            }
        };
        // Data-parallel: the plate's batch is the world's; this rank takes its share of it.
        let (n_world, share) = match self.shard {
            Some((rank, world)) if world > 1 && given.is_none() => {
                if !n.is_multiple_of(world) {
                    return Err(InferError::IndivisibleBatch {
                        plate: name.to_string(),
                        batch: n,
                        world,
                    });
                }
                (n, Some((rank, world)))
            }
            _ => (n, None),
        };
        let n = share.map_or(n, |(_, world)| n / world);
        let frame = self.plate_frame(name, size, n, dim)?;
        let idx = match self.subsampled.iter().find(|(p, ..)| p == name) {
            Some((_, s, m, idx)) if (*s, *m) == (size, n) => idx.clone(),
            Some((_, s, m, _)) => {
                return Err(bad(format!(
                    "entered again with size {size} and subsample size {n}, first with {s} and {m}"
                )));
            }
            None => {
                let mut msg = Message::new(name, SiteKind::Subsample);
                msg.subsample = Some(Subsample {
                    size,
                    subsample_size: n,
                    device,
                });
                let own = given.clone();
                msg.value = given;
                let idx = match share {
                    Some((rank, _)) => {
                        if !self.sharded.iter().any(|p| p == name) {
                            self.sharded.push(name.to_string());
                        }
                        self.apply(msg, |msg, _, rng| draw_share(msg, rng, n_world, rank))?
                    }
                    None => self.apply(msg, draw)?,
                };
                if idx.dims() != [n] {
                    return Err(bad(format!(
                        "subsample indices have shape {:?}, expected [{n}]",
                        idx.dims()
                    )));
                }
                // Indices of one's own that a handler replaced (the model replayed against a
                // guide that drew others): the guide's local sites belong to other elements
                // than the model's data (Pyro's bug pyro#3468). An error, never a number.
                if let Some(own) = own
                    && own.id() != idx.id()
                {
                    let (a, b) = (
                        own.to_vec1::<u32>()?,
                        idx.to_dtype(DType::U32)?.to_vec1::<u32>()?,
                    );
                    if a != b {
                        return Err(bad(format!(
                            "the program passes its own subsample indices {a:?}, but the trace it \
                             is replayed against (the guide's) drew {b:?}: enter the plate with the \
                             same indices in the guide (an autoguide does so itself)"
                        )));
                    }
                }
                self.subsampled
                    .push((name.to_string(), size, n, idx.clone()));
                idx
            }
        };
        self.in_plate(frame, |ctx| f(ctx, &idx))
    }
}

/// Marks the sites of one iteration of a sequential plate.
struct SequentialPlateMessenger {
    frame: SequentialFrame,
}

impl Messenger for SequentialPlateMessenger {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if msg.sequential.iter().any(|f| f.name == self.frame.name) {
            return Err(InferError::Plate {
                plate: self.frame.name.clone(),
                msg: format!(
                    "the sequential plate is nested in itself (at site `{}`)",
                    msg.name
                ),
            });
        }
        if msg.plates.iter().any(|p| p.name == self.frame.name) {
            return Err(InferError::Plate {
                plate: self.frame.name.clone(),
                msg: format!(
                    "is both a sequential and a vectorised plate at site `{}`",
                    msg.name
                ),
            });
        }
        // Outermost first: handlers further in have seen the message already.
        msg.sequential.insert(0, self.frame.clone());
        Ok(())
    }
}
