//! [`Plate`]: the settings of a plate for [`Ctx::plate_with`](crate::Ctx::plate_with).

use candle_core::{DType, Tensor};

use crate::error::{InferError, Result};

/// A plate's settings, as the arguments of Pyro's `pyro.plate`: a name and a size, and
/// optionally a subsample size, indices of one's own, and the batch dim (negative, from the
/// right; by default the rightmost dim no enclosing plate uses).
///
/// ```
/// use vi_infer::Plate;
/// let p = Plate::new("data", 60_000).subsample_size(256).dim(-1);
/// assert_eq!((p.name(), p.size()), ("data", 60_000));
/// ```
#[derive(Clone, Debug)]
pub struct Plate<'t> {
    pub(crate) name: &'t str,
    pub(crate) size: usize,
    pub(crate) subsample_size: Option<usize>,
    pub(crate) subsample: Option<&'t Tensor>,
    pub(crate) dim: Option<isize>,
}

impl<'t> Plate<'t> {
    /// A plate of `size` elements, not subsampled.
    ///
    /// ```
    /// let p = vi_infer::Plate::new("data", 10);
    /// assert_eq!(p.size(), 10);
    /// ```
    pub fn new(name: &'t str, size: usize) -> Self {
        Self {
            name,
            size,
            subsample_size: None,
            subsample: None,
            dim: None,
        }
    }

    /// Draws `n` distinct indices in `0..size` each run (replayed into the model from the
    /// guide) and scales log-densities by `size / n`.
    ///
    /// ```
    /// let p = vi_infer::Plate::new("data", 1000).subsample_size(100);
    /// ```
    pub fn subsample_size(mut self, n: usize) -> Self {
        self.subsample_size = Some(n);
        self
    }

    /// Uses the given indices (1-D, an integer dtype, each below `size`) instead of drawing
    /// them: Pyro's `subsample=`. Log-densities are scaled by `size / len(indices)`.
    ///
    /// ```
    /// let idx = candle_core::Tensor::new(&[3u32, 1, 4], &candle_core::Device::Cpu)?;
    /// let p = vi_infer::Plate::new("data", 10).subsample(&idx);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn subsample(mut self, indices: &'t Tensor) -> Self {
        self.subsample = Some(indices);
        self
    }

    /// The batch dim the plate occupies (negative, counted from the right).
    ///
    /// ```
    /// let p = vi_infer::Plate::new("rows", 5).dim(-2);
    /// ```
    pub fn dim(mut self, dim: isize) -> Self {
        self.dim = Some(dim);
        self
    }

    /// The plate's name.
    ///
    /// ```
    /// assert_eq!(vi_infer::Plate::new("data", 3).name(), "data");
    /// ```
    pub fn name(&self) -> &str {
        self.name
    }

    /// The plate's full size.
    ///
    /// ```
    /// assert_eq!(vi_infer::Plate::new("data", 3).size(), 3);
    /// ```
    pub fn size(&self) -> usize {
        self.size
    }
}

/// Indices given to a plate, checked and as u32: 1-D, non-empty, an integer dtype, of
/// `subsample_size` elements when that is given too, each below `size` (with validation on:
/// one host read).
pub(crate) fn own_indices(
    name: &str,
    size: usize,
    subsample_size: Option<usize>,
    idx: &Tensor,
) -> Result<Tensor> {
    let bad = |msg: String| InferError::Plate {
        plate: name.to_string(),
        msg,
    };
    if idx.rank() != 1 || idx.dims()[0] == 0 {
        return Err(bad(format!(
            "subsample indices must be a non-empty 1-D tensor, got shape {:?}",
            idx.dims()
        )));
    }
    if !matches!(idx.dtype(), DType::U8 | DType::U32 | DType::I64) {
        return Err(bad(format!(
            "subsample indices must be integers, got {:?}",
            idx.dtype()
        )));
    }
    let n = idx.dims()[0];
    if let Some(m) = subsample_size
        && m != n
    {
        return Err(bad(format!(
            "subsample_size {m} and {n} subsample indices disagree"
        )));
    }
    if n > size {
        return Err(bad(format!(
            "{n} subsample indices for a plate of size {size}"
        )));
    }
    if vi_dist::validation_enabled() {
        let values = idx.to_dtype(DType::I64)?.to_vec1::<i64>()?;
        if let Some((i, v)) = values
            .iter()
            .enumerate()
            .find(|(_, v)| **v < 0 || **v as u64 >= size as u64)
        {
            return Err(bad(format!(
                "subsample index {v} (at {i}) is outside 0..{size}"
            )));
        }
    }
    Ok(idx.to_dtype(DType::U32)?)
}
