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
