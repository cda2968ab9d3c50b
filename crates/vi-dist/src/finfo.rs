//! Limits of the float dtypes, as `torch.finfo`: one table for every family, transform and
//! sampler that clamps into a dtype's range.

use candle_core::DType;

/// The gap between 1 and the next larger number (`torch.finfo(dtype).eps`).
pub(crate) fn eps(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => f64::EPSILON,
        DType::F16 => 9.765_625e-4,
        DType::BF16 => 7.812_5e-3,
        _ => f64::from(f32::EPSILON),
    }
}

/// The smallest positive normal number (`torch.finfo(dtype).tiny`).
pub(crate) fn tiny(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => f64::MIN_POSITIVE,
        DType::F16 => 6.103_515_625e-5,
        // bf16 has f32's exponent range
        _ => f64::from(f32::MIN_POSITIVE),
    }
}

/// The largest finite number (`torch.finfo(dtype).max`).
pub(crate) fn max(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => f64::MAX,
        DType::F16 => 65_504.0,
        DType::BF16 => 3.389_531_389_251_535_5e38,
        _ => f64::from(f32::MAX),
    }
}

/// The most negative finite number (`torch.finfo(dtype).min`).
pub(crate) fn min(dtype: DType) -> f64 {
    -max(dtype)
}

/// The largest number below 1, `1 − eps / 2`.
pub(crate) fn below_one(dtype: DType) -> f64 {
    1.0 - eps(dtype) / 2.0
}
