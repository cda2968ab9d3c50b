//! The framework's bookkeeping shortcuts keep their guarantees: large traces find every site
//! and still refuse a duplicate name, nested traces each get every site, and a value that
//! `ctx.observe` checked is checked again when a handler replaced it afterwards.

use candle_core::{DType, Device, Tensor};
use vi_dist::{Constraint, Exponential, Normal};
use vi_infer::{InferError, Message, Messenger, SiteKind};

use crate::common::{Res, host, run};

/// Traces of 1 to 40 sites (across the size from which a trace indexes its names) find each
/// site by name, keep the order, and refuse a sample name seen twice.
#[test]
fn traces_of_every_size_find_sites_and_refuse_duplicates() -> Res {
    let dev = Device::Cpu;
    let (zero, one) = (Tensor::new(0f64, &dev)?, Tensor::new(1f64, &dev)?);
    run(&dev, DType::F64, 0, |ctx| {
        for n in 1..=40usize {
            let names: Vec<String> = (0..n).map(|i| format!("z{i}")).collect();
            let ((), tr) = ctx.trace(|ctx| {
                for (i, name) in names.iter().enumerate() {
                    // Every third site a parameter, read twice (recorded once).
                    if i % 3 == 2 {
                        ctx.param(name, &one, Constraint::Positive)?;
                        ctx.param(name, &one, Constraint::Positive)?;
                    } else {
                        ctx.sample(name, Normal::new(&zero, &one)?)?;
                    }
                }
                Ok(())
            })?;
            assert_eq!(tr.len(), n);
            assert!(tr.names().eq(names.iter().map(String::as_str)));
            for (i, name) in names.iter().enumerate() {
                let site = tr.get(name).unwrap();
                assert_eq!(&site.name, name);
                let kind = if i % 3 == 2 {
                    SiteKind::Param
                } else {
                    SiteKind::Sample
                };
                assert_eq!(site.kind, kind);
            }
            assert!(!tr.contains("nope") && tr.get("nope").is_none());
            // The first sample name again, at the end: refused.
            let err = ctx
                .trace(|ctx| {
                    for name in &names {
                        if !name.ends_with('2') || name.len() > 2 {
                            ctx.sample(name, Normal::new(&zero, &one)?)?;
                        }
                    }
                    ctx.sample("z0", Normal::new(&zero, &one)?)
                })
                .unwrap_err();
            assert!(
                matches!(&err, InferError::DuplicateSite { site } if site == "z0"),
                "{n}: {err}"
            );
        }
        Ok(())
    })?;
    Ok(())
}

/// Two nested traces each record every site of the inner block, with the same values, and
/// the outer one also the sites outside it.
#[test]
fn nested_traces_each_record_every_site() -> Res {
    let dev = Device::Cpu;
    let (zero, one) = (Tensor::new(0f64, &dev)?, Tensor::new(1f64, &dev)?);
    let data = Tensor::new(&[0.5f64, 1.5, 2.5], &dev)?;
    let (inner, outer) = run(&dev, DType::F64, 1, |ctx| {
        ctx.trace(|ctx| {
            let s = ctx.param("s", &one, Constraint::Positive)?;
            let ((), inner) = ctx.trace(|ctx| {
                let z = ctx.sample("z", Normal::new(&zero, &s)?)?;
                ctx.plate("data", 3, |ctx| {
                    ctx.observe("x", Normal::new(&z, &one)?, &data)
                })?;
                Ok(())
            })?;
            ctx.sample("w", Normal::new(&zero, &one)?)?;
            Ok(inner)
        })
    })?;
    assert_eq!(inner.names().collect::<Vec<_>>(), ["z", "x"]);
    assert_eq!(outer.names().collect::<Vec<_>>(), ["s", "z", "x", "w"]);
    for name in ["z", "x"] {
        let (a, b) = (inner.get(name).unwrap(), outer.get(name).unwrap());
        assert_eq!(a.value.dims(), b.value.dims());
        assert_eq!(host(&a.value), host(&b.value));
        assert_eq!(a.plates, b.plates);
        assert_eq!(host(a.log_prob()?), host(b.log_prob()?));
    }
    assert_eq!(outer.get("x").unwrap().plates[0].name, "data");
    Ok(())
}

/// Swaps the value of the observed site `x` for its own, after `ctx.observe` checked the
/// original.
struct Swap(Tensor);

impl Messenger for Swap {
    fn process(&mut self, msg: &mut Message) -> vi_infer::Result<()> {
        if msg.name == "x" {
            msg.value = Some(self.0.clone());
        }
        Ok(())
    }
}

/// With validation on, an observed value outside the support is an error at `ctx.observe`;
/// one that a handler put in after that check is an error when its log-density is computed
/// (the check `ctx.observe` made is not taken for it); a value that passed is scored.
#[test]
fn observed_values_are_checked_once_but_never_skipped() -> Res {
    vi_dist::with_validation(true, || -> Res {
        let dev = Device::Cpu;
        let rate = Tensor::new(&[1f64, 2.0], &dev)?;
        let good = Tensor::new(&[0.5f64, 1.0], &dev)?;
        let bad = Tensor::new(&[0.5f64, -1.0], &dev)?;
        run(&dev, DType::F64, 2, |ctx| {
            let err = ctx
                .observe("x", Exponential::new(&rate)?, &bad)
                .unwrap_err();
            assert!(matches!(&err, InferError::Observed { site, .. } if site == "x"));

            let ((), tr) = ctx.trace(|ctx| {
                ctx.observe("x", Exponential::new(&rate)?, &good)?;
                Ok(())
            })?;
            let lp = tr.get("x").unwrap().log_prob()?.to_vec1::<f64>()?;
            assert!((lp[0] - (-0.5)).abs() < 1e-12 && (lp[1] - (2f64.ln() - 2.0)).abs() < 1e-12);

            let ((), tr) = ctx.trace(|ctx| {
                ctx.with(Swap(bad.clone()), |ctx| {
                    ctx.observe("x", Exponential::new(&rate)?, &good)
                })?;
                Ok(())
            })?;
            let site = tr.get("x").unwrap();
            assert_eq!(site.value.to_vec1::<f64>()?, [0.5, -1.0]);
            let err = site.log_prob().unwrap_err();
            assert!(
                matches!(&err, InferError::Observed { site, .. } if site == "x"),
                "{err}"
            );
            Ok(())
        })?;
        Ok(())
    })
}
