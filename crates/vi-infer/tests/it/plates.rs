//! Plates: dim allocation, broadcasting of a site's distribution to the plates' dims,
//! subsampling and its scaling, the frames recorded on sites, and `Trace::format_shapes`.

use candle_core::{DType, Device, Tensor};
use vi_dist::{Constraint, Distribution, Normal};
use vi_infer::{Ctx, InferError, PlateFrame, Site, Trace};

use crate::common::{Res, assert_close, host, normal, normal_lp, run, scalar, tensor};

/// Traces `f` in a fresh context.
fn trace(
    dev: &Device,
    dt: DType,
    f: impl FnOnce(&mut Ctx) -> vi_infer::Result<()>,
) -> vi_infer::Result<Trace> {
    Ok(run(dev, dt, 0, |ctx| ctx.trace(f))?.1)
}

/// `(name, dim)` of each plate active in `ctx`, outermost first.
fn dims(ctx: &Ctx) -> Vec<(String, isize)> {
    ctx.plates()
        .iter()
        .map(|p| (p.name.clone(), p.dim))
        .collect()
}

fn frame(name: &str, dim: isize, size: usize, subsample_size: usize) -> PlateFrame {
    PlateFrame {
        name: name.into(),
        dim,
        size,
        subsample_size,
    }
}

fn owned(v: &[(&str, isize)]) -> Vec<(String, isize)> {
    v.iter().map(|(n, d)| (n.to_string(), *d)).collect()
}

// ---------------------------------------------------------------------------------------
// dims

#[test]
fn dims_are_allocated_from_the_right() -> Res {
    let (dev, dt) = (Device::Cpu, DType::F64);
    let seen = run(&dev, dt, 0, |ctx| {
        let mut seen = Vec::new();
        ctx.plate("a", 2, |ctx| {
            seen.push(dims(ctx));
            ctx.plate("b", 3, |ctx| {
                seen.push(dims(ctx));
                ctx.plate("c", 4, |ctx| {
                    seen.push(dims(ctx));
                    Ok(())
                })
            })?;
            // A sibling of `b` takes the dim `b` gave back.
            ctx.plate("b2", 5, |ctx| {
                seen.push(dims(ctx));
                Ok(())
            })
        })?;
        ctx.plate("d", 6, |ctx| {
            seen.push(dims(ctx));
            Ok(())
        })?;
        seen.push(dims(ctx));
        Ok(seen)
    })?;
    assert_eq!(
        seen,
        [
            owned(&[("a", -1)]),
            owned(&[("a", -1), ("b", -2)]),
            owned(&[("a", -1), ("b", -2), ("c", -3)]),
            owned(&[("a", -1), ("b2", -2)]),
            owned(&[("d", -1)]),
            owned(&[]),
        ]
    );
    Ok(())
}

#[test]
fn explicit_dims_and_auto_allocation_around_them() -> Res {
    let (dev, dt) = (Device::Cpu, DType::F64);
    let seen = run(&dev, dt, 0, |ctx| {
        let mut seen = Vec::new();
        ctx.plate_dim("x", 3, -2, |ctx| {
            ctx.plate("y", 4, |ctx| {
                seen.push(dims(ctx));
                Ok(())
            })
        })?;
        ctx.plate_dim("x", 3, -1, |ctx| {
            ctx.plate("y", 4, |ctx| {
                seen.push(dims(ctx));
                Ok(())
            })
        })?;
        ctx.plate_dim("x", 3, -3, |ctx| {
            ctx.plate("y", 4, |ctx| {
                ctx.plate("z", 5, |ctx| {
                    ctx.plate("w", 6, |ctx| {
                        seen.push(dims(ctx));
                        Ok(())
                    })
                })
            })
        })?;
        // Explicit dims may leave gaps and nest in any order.
        ctx.plate_dim("x", 3, -1, |ctx| {
            ctx.plate_dim("y", 4, -4, |ctx| {
                seen.push(dims(ctx));
                Ok(())
            })
        })?;
        Ok(seen)
    })?;
    assert_eq!(
        seen,
        [
            owned(&[("x", -2), ("y", -1)]),
            owned(&[("x", -1), ("y", -2)]),
            owned(&[("x", -3), ("y", -1), ("z", -2), ("w", -4)]),
            owned(&[("x", -1), ("y", -4)]),
        ]
    );
    Ok(())
}

/// The plate error's plate name and message.
fn plate_err<T: std::fmt::Debug>(r: vi_infer::Result<T>) -> (String, String) {
    match r {
        Err(e @ InferError::Plate { .. }) => {
            let text = e.to_string();
            let InferError::Plate { plate, .. } = e else {
                unreachable!()
            };
            (plate, text)
        }
        other => panic!("expected InferError::Plate, got {other:?}"),
    }
}

#[test]
fn dim_collisions_and_bad_plates_are_errors() {
    let (dev, dt) = (Device::Cpu, DType::F64);
    let (plate, text) = plate_err(run(&dev, dt, 0, |ctx| {
        ctx.plate_dim("a", 2, -1, |ctx| ctx.plate_dim("b", 3, -1, |_| Ok(())))
    }));
    assert_eq!(plate, "b");
    assert!(
        text.contains("`b`") && text.contains("dim -1") && text.contains("`a`"),
        "{text}"
    );
    // An auto plate outside an explicit one at the same dim: the explicit one collides.
    let (plate, text) = plate_err(run(&dev, dt, 0, |ctx| {
        ctx.plate("a", 2, |ctx| ctx.plate_dim("b", 3, -1, |_| Ok(())))
    }));
    assert_eq!(plate, "b");
    assert!(text.contains("`a`"), "{text}");
    let (plate, text) = plate_err(run(&dev, dt, 0, |ctx| ctx.plate_dim("a", 2, 0, |_| Ok(()))));
    assert_eq!(plate, "a");
    assert!(text.contains("negative"), "{text}");
    let (plate, text) = plate_err(run(&dev, dt, 0, |ctx| {
        ctx.plate("a", 2, |ctx| ctx.plate("a", 2, |_| Ok(())))
    }));
    assert_eq!(plate, "a");
    assert!(text.contains("already active"), "{text}");
    for sub in [0, 6] {
        let (plate, text) = plate_err(run(&dev, dt, 0, |ctx| {
            ctx.plate_subsample("data", 5, sub, |_, _| Ok(()))
        }));
        assert_eq!(plate, "data");
        assert!(text.contains(&format!("subsample size {sub}")), "{text}");
    }
    // After a failed plate the context is clean: a plate at -1 works.
    let ok = run(&dev, dt, 0, |ctx| {
        let _ = ctx.plate_dim("a", 2, -1, |ctx| ctx.plate_dim("b", 3, -1, |_| Ok(())));
        assert!(ctx.plates().is_empty());
        ctx.plate("c", 2, |ctx| Ok(dims(ctx)))
    });
    assert_eq!(ok.unwrap(), owned(&[("c", -1)]));
}

// ---------------------------------------------------------------------------------------
// broadcasting

fn site_shapes(s: &Site) -> (Vec<usize>, Vec<usize>, Vec<usize>, Vec<usize>) {
    let d = s.dist.as_ref().unwrap();
    (
        d.batch_shape().to_vec(),
        d.event_shape().to_vec(),
        s.value.dims().to_vec(),
        s.log_prob().unwrap().dims().to_vec(),
    )
}

fn sites_broadcast_to_their_plates(dev: &Device, dt: DType) -> Res {
    let locs = tensor(&[0.0, 10.0, 20.0, 30.0], dev, dt)?;
    let ones4 = tensor(&[1.0; 4], dev, dt)?;
    let one = scalar(1.0, dev, dt)?;
    let tr = trace(dev, dt, |ctx| {
        ctx.plate("n", 4, |ctx| {
            ctx.sample("scalar", normal(0.0, 1.0, dev, dt)?)?;
            ctx.sample("already", Normal::new(&locs, &ones4)?)?;
            ctx.sample(
                "size1",
                Normal::new(&tensor(&[5.0], dev, dt)?, &tensor(&[1.0], dev, dt)?)?,
            )?;
            let ev = Normal::new(&tensor(&[0.0, 1.0], dev, dt)?, &tensor(&[1.0; 2], dev, dt)?)?;
            ctx.sample("event", ev.to_event(1)?)?;
            ctx.observe("obs", Normal::new(&one, &one)?, &ones4)?;
            ctx.plate("m", 3, |ctx| {
                ctx.sample("nested", normal(0.0, 1.0, dev, dt)?)?;
                ctx.sample("nested_vec", Normal::new(&locs, &ones4)?)
            })?;
            Ok(())
        })?;
        // A distribution with batch [4] at dim -1, inside a plate at dim -2.
        ctx.plate_dim("rows", 3, -2, |ctx| {
            ctx.sample("rows_vec", Normal::new(&locs, &ones4)?)
        })?;
        Ok(())
    })?;
    let s = |n: &str| tr.get(n).unwrap();
    let shapes = |n: &str| site_shapes(s(n));
    assert_eq!(shapes("scalar"), (vec![4], vec![], vec![4], vec![4]));
    assert_eq!(shapes("already"), (vec![4], vec![], vec![4], vec![4]));
    assert_eq!(shapes("size1"), (vec![4], vec![], vec![4], vec![4]));
    assert_eq!(shapes("event"), (vec![4], vec![2], vec![4, 2], vec![4]));
    assert_eq!(shapes("obs"), (vec![4], vec![], vec![4], vec![4]));
    assert_eq!(
        shapes("nested"),
        (vec![3, 4], vec![], vec![3, 4], vec![3, 4])
    );
    assert_eq!(
        shapes("nested_vec"),
        (vec![3, 4], vec![], vec![3, 4], vec![3, 4])
    );
    assert_eq!(
        shapes("rows_vec"),
        (vec![3, 4], vec![], vec![3, 4], vec![3, 4])
    );
    // Parameters keep their values: a dist already of size 4 is unchanged, size 1 repeats.
    let mean = |n: &str| host(&s(n).dist.as_ref().unwrap().mean().unwrap());
    assert_eq!(mean("already"), [0.0, 10.0, 20.0, 30.0]);
    assert_eq!(mean("size1"), [5.0; 4]);
    assert_eq!(mean("nested_vec"), [0.0, 10.0, 20.0, 30.0].repeat(3));
    assert_eq!(mean("rows_vec"), [0.0, 10.0, 20.0, 30.0].repeat(3));
    // Expanded before drawing: every element is its own draw.
    for n in ["scalar", "size1", "nested"] {
        let mut v = host(&s(n).value);
        let len = v.len();
        v.sort_by(f64::total_cmp);
        v.dedup();
        assert_eq!(v.len(), len, "{n}: independent draws");
    }
    // The log-density is the elementwise one.
    let v = host(&s("already").value);
    let want: Vec<f64> = (0..4)
        .map(|i| normal_lp(v[i], 10.0 * i as f64, 1.0))
        .collect();
    assert_close(&host(s("already").log_prob()?), &want, dt, "already");
    Ok(())
}
vi_test::test_device!(sites_broadcast_to_their_plates);

fn plate_size_mismatch_is_an_error(dev: &Device, dt: DType) -> Res {
    let three = Normal::new(&tensor(&[0.0; 3], dev, dt)?, &tensor(&[1.0; 3], dev, dt)?)?;
    let err = run(dev, dt, 0, |ctx| {
        ctx.plate("n", 4, |ctx| ctx.sample("z", three.clone()))
    })
    .unwrap_err();
    match &err {
        InferError::PlateSize {
            site,
            plate,
            size,
            dim,
            batch,
            ..
        } => {
            assert_eq!(
                (site.as_str(), plate.as_str(), *size, *dim),
                ("z", "n", 4, -1)
            );
            assert_eq!(&**batch, &[3]);
        }
        other => panic!("expected PlateSize, got {other:?}"),
    }
    Ok(())
}
vi_test::test_device!(plate_size_mismatch_is_an_error);

// ---------------------------------------------------------------------------------------
// subsampling

fn subsampled_plates_scale_log_densities(dev: &Device, dt: DType) -> Res {
    let data: Vec<f64> = (0..100).map(|i| f64::from(i) / 50.0 - 1.0).collect();
    let data_t = tensor(&data, dev, dt)?;
    let (idx, tr) = run(dev, dt, 0, |ctx| {
        ctx.trace(|ctx| {
            let idx = ctx.plate_subsample("data", 100, 10, |ctx, idx| {
                let batch = data_t.index_select(idx, 0)?;
                ctx.observe("x", normal(0.0, 1.0, dev, dt)?, &batch)?;
                ctx.plate_subsample("inner", 6, 3, |ctx, _| {
                    ctx.sample("both", normal(0.0, 1.0, dev, dt)?)
                })?;
                Ok(idx.clone())
            })?;
            ctx.plate_subsample("full", 5, 5, |ctx, _| {
                ctx.sample("full_z", normal(0.0, 1.0, dev, dt)?)
            })?;
            ctx.plate("plain", 5, |ctx| {
                ctx.sample("plain_z", normal(0.0, 1.0, dev, dt)?)
            })?;
            Ok(idx)
        })
    })?;
    let s = |n: &str| tr.get(n).unwrap();
    let idx = idx.to_vec1::<u32>()?;
    assert_eq!(s("x").scale, 10.0);
    let want: Vec<f64> = idx
        .iter()
        .map(|&i| 10.0 * normal_lp(data[i as usize], 0.0, 1.0))
        .collect();
    assert_close(&host(s("x").log_prob()?), &want, dt, "subsampled log_prob");
    let picked: Vec<f64> = idx.iter().map(|&i| data[i as usize]).collect();
    assert_close(&host(&s("x").value), &picked, dt, "subsampled data");
    // Nested subsampling multiplies the scales: 100/10 · 6/3.
    assert_eq!(s("both").scale, 20.0);
    assert_eq!(s("both").value.dims(), &[3, 10]);
    let v = host(&s("both").value);
    let want: Vec<f64> = v.iter().map(|&x| 20.0 * normal_lp(x, 0.0, 1.0)).collect();
    assert_close(&host(s("both").log_prob()?), &want, dt, "nested subsample");
    // No subsampling, no scaling; the full "subsample" is 0..size in order.
    assert_eq!(s("full_z").scale, 1.0);
    assert_eq!(s("plain_z").scale, 1.0);
    assert_eq!(s("full").value.to_vec1::<u32>()?, [0, 1, 2, 3, 4]);
    Ok(())
}
vi_test::test_device!(subsampled_plates_scale_log_densities);

fn subsample_indices(dev: &Device, dt: DType) -> Res {
    let draw = |seed: Option<u64>| -> vi_infer::Result<Tensor> {
        run(dev, dt, 0, |ctx| {
            let f = |ctx: &mut Ctx| ctx.plate_subsample("data", 50, 20, |_, idx| Ok(idx.clone()));
            match seed {
                Some(s) => ctx.seed(s, f),
                None => f(ctx),
            }
        })
    };
    let idx = draw(Some(5))?;
    assert_eq!(idx.dtype(), DType::U32);
    assert!(idx.device().same_device(dev));
    let v = idx.to_vec1::<u32>()?;
    assert_eq!(v.len(), 20);
    assert!(v.iter().all(|&i| i < 50), "{v:?}");
    let mut sorted = v.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 20, "distinct: {v:?}");
    // Reproducible under a seed, another seed gives another subsample.
    assert_eq!(draw(Some(5))?.to_vec1::<u32>()?, v);
    assert_ne!(draw(Some(6))?.to_vec1::<u32>()?, v);
    Ok(())
}
vi_test::test_device!(subsample_indices);

// ---------------------------------------------------------------------------------------
// frames on sites

#[test]
fn sites_record_their_plates_outermost_first() -> Res {
    let (dev, dt) = (Device::Cpu, DType::F64);
    let tr = trace(&dev, dt, |ctx| {
        ctx.sample("global", normal(0.0, 1.0, &dev, dt)?)?;
        ctx.plate("outer", 4, |ctx| {
            ctx.sample("o", normal(0.0, 1.0, &dev, dt)?)?;
            ctx.plate_subsample("inner", 10, 2, |ctx, _| {
                ctx.sample("oi", normal(0.0, 1.0, &dev, dt)?)?;
                ctx.plate_dim("deep", 3, -4, |ctx| {
                    ctx.sample("oid", normal(0.0, 1.0, &dev, dt)?)
                })
            })?;
            // Parameters and deterministic sites carry no plates.
            ctx.param("p", &scalar(1.0, &dev, dt)?, Constraint::Real)?;
            ctx.deterministic("d", &scalar(1.0, &dev, dt)?)
        })?;
        Ok(())
    })?;
    let plates = |n: &str| tr.get(n).unwrap().plates.clone();
    let outer = frame("outer", -1, 4, 4);
    let inner = frame("inner", -2, 10, 2);
    let deep = frame("deep", -4, 3, 3);
    assert_eq!(plates("global"), []);
    assert_eq!(plates("o"), std::slice::from_ref(&outer));
    assert_eq!(plates("oi"), [outer.clone(), inner.clone()]);
    assert_eq!(plates("oid"), [outer, inner, deep]);
    assert_eq!(plates("p"), []);
    assert_eq!(plates("d"), []);
    assert_eq!(tr.get("oid").unwrap().value.dims(), &[3, 1, 2, 4]);
    assert_eq!(tr.get("oid").unwrap().scale, 5.0);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// format_shapes

#[test]
fn format_shapes_of_a_nested_model() -> Res {
    let (dev, dt) = (Device::Cpu, DType::F32);
    let data = Tensor::zeros((2, 3), dt, &dev)?;
    let tr = trace(&dev, dt, |ctx| {
        let loc = ctx.param("loc", &Tensor::zeros(3, dt, &dev)?, Constraint::Real)?;
        ctx.plate("outer", 3, |ctx| {
            let a = ctx.sample("a", Normal::new(&loc, &Tensor::ones(3, dt, &dev)?)?)?;
            ctx.plate_subsample("inner", 10, 2, |ctx, _| {
                let b = Normal::new(&Tensor::zeros(4, dt, &dev)?, &Tensor::ones(4, dt, &dev)?)?;
                ctx.sample("b", b.to_event(1)?)?;
                ctx.observe("x", Normal::new(&a, &Tensor::ones(3, dt, &dev)?)?, &data)
            })
        })?;
        ctx.deterministic("d", &Tensor::zeros((2, 3), dt, &dev)?)?;
        Ok(())
    })?;
    let got = tr.format_shapes()?;
    let want = [
        "Trace Shapes:",
        " Param Sites:",
        "          loc   3",
        "Sample Sites:",
        "  outer plate   3 |",
        "       a dist   3 |",
        "        value   3 |",
        "     log_prob   3 |",
        "  inner plate   2 |",
        "       b dist 2 3 | 4",
        "        value 2 3 | 4",
        "     log_prob 2 3 |",
        "       x dist 2 3 |",
        "        value 2 3 |",
        "     log_prob 2 3 |",
        "      d value 2 3",
    ];
    let lines: Vec<&str> = got.lines().collect();
    for (i, (g, w)) in lines.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "line {i} of\n{got}");
    }
    assert_eq!(lines.len(), want.len(), "{got}");
    Ok(())
}
