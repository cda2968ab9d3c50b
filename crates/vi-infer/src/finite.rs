//! Finding non-finite values (NaN, ±inf) and saying where they are: for the checks on the
//! loss, the gradients and parameters' initial values.

use candle_core::{CpuStorage, DType, Layout, Storage, Tensor};

use crate::error::Result;

/// `NaN`, `inf`, `-inf`, or the number.
pub(crate) fn describe(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "inf".into()
    } else if v == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        format!("{v}")
    }
}

/// 1 where `t` is finite, 0 where it is NaN or infinite (`0 · t` is 0 exactly for finite
/// values and NaN otherwise).
pub(crate) fn finite_mask(t: &Tensor) -> Result<Tensor> {
    Ok(t.affine(0.0, 0.0)?.eq(0.0)?)
}

/// The multi-dim index of flat position `i` in `dims`.
fn unravel(mut i: usize, dims: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; dims.len()];
    for (k, &d) in dims.iter().enumerate().rev() {
        if d > 0 {
            idx[k] = i % d;
            i /= d;
        }
    }
    idx
}

/// Where `ok` (a u8 tensor of `t`'s shape: 1 for a good element) first fails, in words:
/// `: NaN at [1, 2]` (or `: NaN` for a scalar), and an empty string where every element is
/// good. One host read.
pub(crate) fn first_bad(t: &Tensor, ok: impl Fn(&Tensor) -> Result<Tensor>) -> Result<String> {
    let mask = ok(t)?
        .broadcast_as(t.shape())?
        .flatten_all()?
        .to_vec1::<u8>()?;
    let Some(i) = mask.iter().position(|&m| m == 0) else {
        return Ok(String::new());
    };
    let v = t
        .flatten_all()?
        .get(i)?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    Ok(if t.rank() == 0 {
        format!(": {}", describe(v))
    } else {
        format!(": {} at {:?}", describe(v), unravel(i, t.dims()))
    })
}

/// Whether every element of `t` is finite: a scan of the host memory for contiguous f32/f64
/// CPU tensors, `0 · t` summed and read back otherwise (one host read).
pub(crate) fn all_finite(t: &Tensor) -> Result<bool> {
    let (storage, layout) = t.storage_and_layout();
    if let Storage::Cpu(cpu) = &*storage
        && let Some(ok) = scan(cpu, layout)
    {
        return Ok(ok);
    }
    drop(storage);
    let s = t
        .affine(0.0, 0.0)?
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    Ok(s == 0.0)
}

fn scan(cpu: &CpuStorage, layout: &Layout) -> Option<bool> {
    let (start, end) = layout.contiguous_offsets()?;
    // Chunks keep the loop branch-free (it vectorises) and still stop early.
    Some(match cpu {
        CpuStorage::F32(v) => v[start..end]
            .chunks(4096)
            .all(|c| c.iter().fold(true, |a, x| a & x.is_finite())),
        CpuStorage::F64(v) => v[start..end]
            .chunks(4096)
            .all(|c| c.iter().fold(true, |a, x| a & x.is_finite())),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn finds_the_first_bad_element() -> Result<()> {
        let t = Tensor::new(&[[1.0f64, 2.0], [f64::NAN, f64::INFINITY]], &Device::Cpu)?;
        assert_eq!(first_bad(&t, finite_mask)?, ": NaN at [1, 0]");
        assert!(!all_finite(&t)?);
        assert!(!all_finite(&t.to_dtype(DType::F32)?)?);
        assert!(!all_finite(&t.t()?)?); // not contiguous: the generic path
        let good = Tensor::new(&[1.0f32, -3.0], &Device::Cpu)?;
        assert_eq!(first_bad(&good, finite_mask)?, "");
        assert!(all_finite(&good)?);
        let neg = Tensor::new(f64::NEG_INFINITY, &Device::Cpu)?;
        assert_eq!(first_bad(&neg, finite_mask)?, ": -inf");
        Ok(())
    }
}
