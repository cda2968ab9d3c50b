//! `Distribution::enumerate_support` through the trait: the finite families and the wrappers
//! around them list their supports (normalised: the masses over the listed values sum to one),
//! the others are `NotEnumerable`.

use candle_core::{DType, Device, Tensor};
use vi_dist::{
    Bernoulli, Binomial, Categorical, DistError, Distribution, Expanded, Normal, OneHotCategorical,
    Poisson,
};
use vi_test::test_device;

use super::{Res, check_normalised, host, vector};

/// The four finite families, boxed, with batch shape `[2]`.
fn finite(dtype: DType, device: &Device) -> vi_dist::Result<Vec<Box<dyn Distribution>>> {
    let p = vector(&[0.2, 0.7], dtype, device);
    let logits = vector(&[0.1, -0.4, 1.2, 0.3, 0.0, -2.0], dtype, device).reshape((2, 3))?;
    let n = vector(&[3.0, 3.0], dtype, device);
    Ok(vec![
        Box::new(Bernoulli::from_probs(&p)?),
        Box::new(Categorical::from_logits(&logits)?),
        Box::new(OneHotCategorical::from_logits(&logits)?),
        Box::new(Binomial::from_probs(&n, &p)?),
    ])
}

fn families_list_their_supports(device: &Device, dtype: DType) -> Res {
    for d in finite(dtype, device)? {
        assert!(d.has_enumerate_support(), "{}", d.name());
        let narrow = d.enumerate_support(false)?;
        let wide = d.enumerate_support(true)?;
        let n = narrow.dims()[0];
        let event = d.event_shape().to_vec();
        let with = |batch: &[usize]| -> Vec<usize> {
            std::iter::once(n)
                .chain(batch.iter().copied())
                .chain(event.iter().copied())
                .collect()
        };
        assert_eq!(narrow.dims(), with(&[1]).as_slice(), "{}", d.name());
        assert_eq!(wide.dims(), with(&[2]).as_slice(), "{}", d.name());
        check_normalised(d.as_ref(), &wide, dtype)?;
        check_normalised(d.as_ref(), &narrow, dtype)?;
        // Wrappers that keep the events list the same values against their own batch.
        let expanded = Expanded::new(d.clone_box(), &[4, 2])?;
        assert!(expanded.has_enumerate_support());
        assert_eq!(
            expanded.enumerate_support(false)?.dims(),
            with(&[1, 1]).as_slice()
        );
        assert_eq!(
            expanded.enumerate_support(true)?.dims(),
            with(&[4, 2]).as_slice()
        );
        check_normalised(&expanded, &expanded.enumerate_support(true)?, dtype)?;
        let mask = Tensor::new(&[1u8, 0], device)?.reshape((2,))?;
        let masked = d.mask(&mask)?;
        assert!(masked.has_enumerate_support());
        assert_eq!(host(&masked.enumerate_support(true)?), host(&wide));
        let plain = d.without_rsample();
        assert_eq!(host(&plain.enumerate_support(false)?), host(&narrow));
        // Reinterpreted dims make the events a product: not listed (as torch).
        let independent = d.to_event(1)?;
        assert!(!independent.has_enumerate_support());
        let r = independent.enumerate_support(false);
        assert!(matches!(r, Err(DistError::NotEnumerable { .. })), "{r:?}");
    }
    Ok(())
}
test_device!(families_list_their_supports);

/// The values themselves, as torch lists them: Bernoulli `0, 1`, Categorical `0..k`,
/// OneHotCategorical the rows of the identity, Binomial `0..=n`.
#[test]
fn values_are_torchs() -> Res {
    let ds = finite(DType::F64, &Device::Cpu)?;
    let values: Vec<Vec<f64>> = ds
        .iter()
        .map(|d| d.enumerate_support(false).map(|v| host(&v)))
        .collect::<vi_dist::Result<_>>()?;
    assert_eq!(values[0], [0.0, 1.0]);
    assert_eq!(values[1], [0.0, 1.0, 2.0]);
    assert_eq!(values[2], [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    assert_eq!(values[3], [0.0, 1.0, 2.0, 3.0]);
    Ok(())
}

/// Infinite or continuous supports are typed errors naming the distribution.
#[test]
fn infinite_supports_are_not_enumerable() -> Res {
    let one = Tensor::new(&[1.0f64], &Device::Cpu)?;
    let normal = Normal::new(&one, &one)?;
    let poisson = Poisson::new(&one)?;
    for d in [&normal as &dyn Distribution, &poisson] {
        assert!(!d.has_enumerate_support());
        let e = d.enumerate_support(true).unwrap_err();
        assert!(
            matches!(&e, DistError::NotEnumerable { dist } if dist == d.name()),
            "{e:?}"
        );
        assert!(e.to_string().contains("no finite support"), "{e}");
    }
    Ok(())
}

/// `log_prob_enumerated` of a `Categorical` equals `log_prob` of the same values, with the
/// values' dim left of the batch or on a size-1 dim of it, and reaches rank 8 (candle's CPU
/// kernels' limit) without a wider view: the backward pass through it runs.
#[test]
fn categorical_log_prob_enumerated() -> Res {
    let dev = Device::Cpu;
    let logits = Tensor::new(&[0.3f64, -1.0, 0.5], &dev)?;
    // (batch shape, dim of the values)
    for (batch, dim) in [
        (vec![], -1isize),
        (vec![2], -2),
        (vec![1, 2], -2),
        (vec![2, 1], -1),
        (vec![1, 1, 2], -3),
    ] {
        let shape: Vec<usize> = batch.iter().copied().chain([3]).collect();
        let d = Categorical::from_logits(&logits.broadcast_as(shape.as_slice())?.contiguous()?)?;
        let values = Tensor::new(&[0.0f64, 1.0, 2.0], &dev)?.reshape(
            std::iter::once(3)
                .chain(std::iter::repeat_n(1, dim.unsigned_abs() - 1))
                .collect::<Vec<_>>(),
        )?;
        let fast = d.log_prob_enumerated(&values, dim).expect("a fast path")?;
        let slow = d.log_prob(&values)?;
        assert_eq!(fast.dims(), slow.dims(), "{batch:?} at {dim}");
        assert_eq!(host(&fast), host(&slow), "{batch:?} at {dim}");
    }
    // Batch of rank 7, values along dim -8: every view stays at rank 8.
    let var = candle_core::Var::from_tensor(&logits)?;
    let probs = var.as_tensor().reshape(vec![1, 1, 1, 1, 1, 1, 1, 3])?;
    let d = Categorical::from_logits(&probs)?;
    let values = Tensor::new(&[0.0f64, 1.0, 2.0], &dev)?.reshape(vec![3, 1, 1, 1, 1, 1, 1, 1])?;
    let lp = d.log_prob_enumerated(&values, -8).expect("a fast path")?;
    assert_eq!(lp.dims(), &[3, 1, 1, 1, 1, 1, 1, 1]);
    let g = lp.sum_all()?.backward()?;
    assert!(g.get(var.as_tensor()).is_some());
    Ok(())
}
