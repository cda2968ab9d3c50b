//! The stick-breaking map from `k − 1` reals onto the `k`-simplex.

use candle_core::{D, DType, Tensor};

use super::{Transform, check_rank, is};
use crate::constraint::Constraint;
use crate::error::{DistError, Result};
use crate::ops;

/// Stick breaking, real^(k−1) → simplex^k, as
/// `torch.distributions.transforms.StickBreakingTransform`.
///
/// With `x'ᵢ = xᵢ − ln(k − 1 − i)` and `zᵢ = sigmoid(x'ᵢ)` (i = 0 … k − 2), the output is
/// `yᵢ = zᵢ ∏_{j<i} (1 − zⱼ)` and `y_{k−1} = ∏_j (1 − zⱼ)`: each coordinate breaks a fraction
/// `zᵢ` off what is left of the stick. The offset `ln(k − 1 − i)` makes `x = 0` the uniform
/// simplex point. The Jacobian of the first `k − 1` outputs is triangular, so
/// `log |det J| = Σᵢ ln yᵢ + ln(1 − zᵢ)`.
///
/// Everything is computed in log space (`ln zᵢ = −softplus(−x'ᵢ)`,
/// `ln(1 − zᵢ) = −softplus(x'ᵢ)`), so large `|x|` gives no NaN.
/// The inverse divides each `yᵢ` by the mass after it, `Σ_{j>i} yⱼ` (a suffix sum rather
/// than torch's `1 − Σ_{j≤i} yⱼ`, which cancels), so an input that does not sum exactly to 1
/// maps back to its normalisation.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use vi_dist::transforms::{StickBreaking};
/// use vi_dist::{Transform};
/// let x = Tensor::zeros(3, DType::F64, &Device::Cpu)?;
/// let y = StickBreaking.forward(&x)?.to_vec1::<f64>()?;
/// assert!(y.iter().all(|v| (v - 0.25).abs() < 1e-15));
/// assert_eq!(StickBreaking.forward_shape(&[5, 3])?, vec![5, 4]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct StickBreaking;

/// `ln(n − i)` for `i = 0 … n − 1`, the offsets that centre the map at the uniform point.
fn log_offset(n: usize, like: &Tensor) -> Result<Tensor> {
    let i = Tensor::arange(0u32, n as u32, like.device())?.to_dtype(like.dtype())?;
    Ok(i.affine(-1.0, n as f64)?.log()?)
}

/// `(ln zᵢ + ln(1 − zᵢ), Lᵢ)` for `i < n` and `L_n`: the log fractions and the exclusive
/// cumulative sums `Lᵢ = Σ_{j<i} ln(1 − zⱼ)` (length `n + 1`), with `ln zᵢ` alone.
fn pieces(x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let n = x.dim(D::Minus1)?;
    let xs = x.broadcast_sub(&log_offset(n, x)?)?;
    let log_z = ops::softplus(&xs.neg()?)?.neg()?;
    let log_1mz = ops::softplus(&xs)?.neg()?;
    let last = x.rank() - 1;
    let cum = log_1mz.pad_with_zeros(last, 1, 0)?.cumsum(last)?;
    Ok((log_z, log_1mz, cum))
}

impl Transform for StickBreaking {
    fn name(&self) -> &'static str {
        "stick_breaking"
    }

    fn domain(&self) -> Constraint {
        Constraint::Real.independent(1)
    }

    fn codomain(&self) -> Constraint {
        Constraint::Simplex
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        check_rank("stick_breaking", x, 1)?;
        let (log_z, _, cum) = pieces(x)?;
        let last = x.rank() - 1;
        Ok((log_z.pad_with_zeros(last, 0, 1)? + cum)?.exp()?)
    }

    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        check_rank("stick_breaking", y, 1)?;
        let last = y.rank() - 1;
        let k = y.dim(last)?;
        if k == 0 {
            return Err(DistError::Transform {
                transform: "stick_breaking",
                msg: format!(
                    "a simplex needs at least one coordinate, got shape {:?}",
                    y.dims()
                ),
            });
        }
        let n = k - 1;
        let tiny = crate::finfo::tiny(y.dtype());
        // after[j, i] = 1 where j > i: y @ after gives the mass after coordinate i.
        let after = (Tensor::tril2(k, DType::F32, y.device())?
            - Tensor::eye(k, DType::F32, y.device())?)?
        .narrow(1, 0, n)?
        .to_dtype(y.dtype())?
        .contiguous()?;
        // one plain [B, k] @ [k, n] product (no broadcast batch), for every device's matmul
        let batch: Vec<usize> = y.dims()[..last].to_vec();
        let rows: usize = batch.iter().product();
        let mut rest_shape = batch;
        rest_shape.push(n);
        let rest = y
            .reshape((rows, k))?
            .matmul(&after)?
            .reshape(rest_shape)?
            .maximum(tiny)?;
        let head = y.narrow(last, 0, n)?.maximum(tiny)?;
        Ok((head.log()? - rest.log()?)?.broadcast_add(&log_offset(n, y)?)?)
    }

    fn log_abs_det_jacobian(&self, x: &Tensor, _y: &Tensor) -> Result<Tensor> {
        check_rank("stick_breaking", x, 1)?;
        let (log_z, log_1mz, cum) = pieces(x)?;
        let last = x.rank() - 1;
        let n = x.dim(last)?;
        // Σᵢ ln yᵢ + ln(1 − zᵢ) with ln yᵢ = ln zᵢ + Lᵢ, from x (no ln 0 when yᵢ underflows).
        let per = ((log_z + log_1mz)? + cum.narrow(last, 0, n)?)?;
        Ok(per.sum(last)?)
    }

    fn forward_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        let Some((n, batch)) = shape.split_last() else {
            return Err(DistError::Transform {
                transform: "stick_breaking",
                msg: "forward needs a vector event, got a scalar shape".to_string(),
            });
        };
        let mut out = batch.to_vec();
        out.push(n + 1);
        Ok(out)
    }

    fn inverse_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        match shape.split_last() {
            Some((&k, batch)) if k >= 1 => {
                let mut out = batch.to_vec();
                out.push(k - 1);
                Ok(out)
            }
            _ => Err(DistError::Transform {
                transform: "stick_breaking",
                msg: format!(
                    "inverse needs a simplex of at least one coordinate, got shape {shape:?}"
                ),
            }),
        }
    }

    fn same_as(&self, other: &dyn Transform) -> bool {
        is::<Self>(other)
    }
}
