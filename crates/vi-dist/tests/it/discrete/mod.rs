//! The discrete families: seeded samplers against their moments and pmf, `enumerate_support`
//! summing to one, the two parameterisations agreeing, and typed errors for bad parameters,
//! values outside the support and shapes that do not fit.

mod categorical;
mod counts;
mod enumerate;

use candle_core::{DType, IndexOp, Tensor};
use vi_dist::{DistError, Distribution};
use vi_test::stats::{check_chi_square, check_moments};

pub(crate) use crate::common::{Res, host, rng, vector};

pub(crate) const N: usize = 40_000;
pub(crate) const Z: f64 = 5.0;
pub(crate) const ALPHA: f64 = 1e-3;

/// Column `j` of draws of shape `[n, b]` (batch of `b` scalar distributions).
pub(crate) fn column(x: &Tensor, j: usize) -> candle_core::Result<Vec<f64>> {
    Ok(host(&x.i((.., j))?))
}

/// Check draws of a scalar-event distribution of batch `[b]`: moments against `mean`/`var` and
/// a chi-square test against `pmf(j, k)` on `0..support`.
pub(crate) fn check_sampler(
    d: &dyn Distribution,
    mean: &[f64],
    var: &[f64],
    support: usize,
    pmf: impl Fn(usize, usize) -> f64,
    seed: u64,
) -> Res {
    let x = d.sample(&[N], &mut rng(seed))?;
    assert_eq!(x.dims(), &[N, mean.len()]);
    assert_eq!(x.dtype(), d.dtype());
    for j in 0..mean.len() {
        let xs = column(&x, j)?;
        check_moments(&xs, mean[j], var[j], Z).map_err(|e| format!("column {j}: {e}"))?;
        check_chi_square(&xs, support, |k| pmf(j, k), ALPHA)
            .map_err(|e| format!("column {j}: {e}"))?;
    }
    Ok(())
}

/// `log Σ_x exp(log_prob(x))` over the enumerated support (dim 0) is 0 for every batch element.
pub(crate) fn check_normalised(d: &dyn Distribution, support: &Tensor, dtype: DType) -> Res {
    let lp = d.log_prob(support)?.to_dtype(DType::F64)?;
    let total = lp.exp()?.sum(0)?.log()?;
    let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
    for (i, v) in host(&total).iter().enumerate() {
        assert!(v.abs() < tol, "element {i}: log Σ p = {v}");
    }
    Ok(())
}

/// Every quantity of two distributions that should be the same one.
pub(crate) fn check_same(
    a: &dyn Distribution,
    b: &dyn Distribution,
    values: &Tensor,
    dtype: DType,
) -> Res {
    let tol = if dtype == DType::F64 { 1e-9 } else { 1e-4 };
    let close = |x: Tensor, y: Tensor, what: &str| -> Res {
        let (x, y) = (host(&x), host(&y));
        assert_eq!(x.len(), y.len(), "{what}");
        for (i, (p, q)) in x.iter().zip(&y).enumerate() {
            let ok = (p.is_nan() && q.is_nan()) || (p - q).abs() <= tol * (1.0 + q.abs());
            assert!(ok, "{what} element {i}: {p} vs {q}");
        }
        Ok(())
    };
    close(a.log_prob(values)?, b.log_prob(values)?, "log_prob")?;
    close(a.entropy()?, b.entropy()?, "entropy")?;
    close(a.mean()?, b.mean()?, "mean")?;
    close(a.variance()?, b.variance()?, "variance")?;
    Ok(())
}

pub(crate) fn is_param_support<T: std::fmt::Debug>(r: vi_dist::Result<T>) -> bool {
    matches!(
        r.map_err(DistError::into_kind),
        Err(DistError::ParamSupport { .. })
    )
}

pub(crate) fn is_value_support<T: std::fmt::Debug>(r: vi_dist::Result<T>) -> bool {
    matches!(
        r.map_err(DistError::into_kind),
        Err(DistError::ValueSupport { .. })
    )
}

pub(crate) fn is_value_shape<T: std::fmt::Debug>(r: vi_dist::Result<T>) -> bool {
    matches!(
        r.map_err(DistError::into_kind),
        Err(DistError::ValueShape { .. })
    )
}

pub(crate) fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

/// Check that `d.expand(batch)` has that batch shape and a `log_prob` of that shape.
pub(crate) fn check_expand(d: &dyn Distribution, batch: &[usize], value: &Tensor) -> Res {
    let e = d.expand(batch)?;
    assert_eq!(e.batch_shape(), batch);
    assert_eq!(e.event_shape(), d.event_shape());
    assert_eq!(e.log_prob(value)?.dims(), batch);
    assert!(matches!(
        d.expand(&[7]).map_err(DistError::into_kind),
        Err(DistError::Expand { .. })
    ));
    Ok(())
}
