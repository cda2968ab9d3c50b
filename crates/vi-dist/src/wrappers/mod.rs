//! Distributions built from another: `Independent` (to_event), `Expanded`, `Masked`,
//! `NoRsample`.

/// Trait methods a wrapper takes unchanged from its `base` field, by name:
/// `forward_to_base!(dtype, device, sample);` in its `impl Distribution`. `boxed` stands for
/// `clone_box` and `as_any`, which are the wrapper's own.
macro_rules! forward_to_base {
    ($($method:ident),+ $(,)?) => {
        $($crate::wrappers::forward_to_base!(@ $method);)+
    };
    (@ batch_shape) => {
        fn batch_shape(&self) -> &[usize] {
            self.base.batch_shape()
        }
    };
    (@ event_shape) => {
        fn event_shape(&self) -> &[usize] {
            self.base.event_shape()
        }
    };
    (@ dtype) => {
        fn dtype(&self) -> candle_core::DType {
            self.base.dtype()
        }
    };
    (@ device) => {
        fn device(&self) -> &candle_core::Device {
            self.base.device()
        }
    };
    (@ sample) => {
        fn sample(
            &self,
            sample_shape: &[usize],
            rng: &mut dyn rand::RngCore,
        ) -> $crate::Result<candle_core::Tensor> {
            self.base.sample(sample_shape, rng)
        }
    };
    (@ has_rsample) => {
        fn has_rsample(&self) -> bool {
            self.base.has_rsample()
        }
    };
    (@ rsample) => {
        fn rsample(
            &self,
            sample_shape: &[usize],
            rng: &mut dyn rand::RngCore,
        ) -> $crate::Result<candle_core::Tensor> {
            self.base.rsample(sample_shape, rng)
        }
    };
    (@ log_prob) => {
        fn log_prob(&self, value: &candle_core::Tensor) -> $crate::Result<candle_core::Tensor> {
            self.base.log_prob(value)
        }
    };
    (@ validate) => {
        fn validate(&self, value: &candle_core::Tensor) -> $crate::Result<Vec<usize>> {
            self.base.validate(value)
        }
    };
    (@ entropy) => {
        fn entropy(&self) -> $crate::Result<candle_core::Tensor> {
            self.base.entropy()
        }
    };
    (@ mean) => {
        fn mean(&self) -> $crate::Result<candle_core::Tensor> {
            self.base.mean()
        }
    };
    (@ variance) => {
        fn variance(&self) -> $crate::Result<candle_core::Tensor> {
            self.base.variance()
        }
    };
    (@ enumerate_support) => {
        fn has_enumerate_support(&self) -> bool {
            self.base.has_enumerate_support()
        }
        fn enumerate_support(&self, expand: bool) -> $crate::Result<candle_core::Tensor> {
            self.base.enumerate_support(expand)
        }
    };
    (@ feasible_like) => {
        fn feasible_like(
            &self,
            value: &candle_core::Tensor,
        ) -> $crate::Result<candle_core::Tensor> {
            self.base.feasible_like(value)
        }
    };
    (@ support) => {
        fn support(&self) -> $crate::Constraint {
            self.base.support()
        }
    };
    (@ boxed) => {
        fn clone_box(&self) -> Box<dyn $crate::Distribution> {
            Box::new(self.clone())
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    };
}
pub(crate) use forward_to_base;

/// `enumerate_support` of a wrapper whose batch shape is `batch` over a `base` with the same
/// events: the base's values (one of each, `expand = false`) laid out against `batch`.
pub(crate) fn enumerate_over(
    base: &dyn crate::Distribution,
    batch: &[usize],
    expand: bool,
) -> crate::Result<candle_core::Tensor> {
    let values = base.enumerate_support(false)?;
    let n = values.dims().first().copied().unwrap_or(1);
    let shape: Vec<usize> = std::iter::once(n)
        .chain(base.event_shape().iter().copied())
        .collect();
    crate::probs::enumerate_layout(values.reshape(shape)?, batch, expand)
}

mod expanded;
mod independent;
mod masked;
mod no_rsample;

pub use expanded::Expanded;
pub use independent::Independent;
pub use masked::Masked;
pub use no_rsample::NoRsample;
