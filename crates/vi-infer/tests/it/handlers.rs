//! Effect handlers: what each one does to a site, how they stack, and three end-to-end uses
//! (trace a guide under a seed, replay the model against its trace, condition on data).

use candle_core::{DType, Device, Tensor};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vi_dist::{Bernoulli, Constraint, Normal};
use vi_infer::handlers::Block;
use vi_infer::{Ctx, Elbo, InferError, ParamStore, SiteKind, TermKind, TraceMeanFieldElbo};

use crate::common::{Res, assert_close, host, normal, normal_lp, run, scalar, tensor};

// ---------------------------------------------------------------------------------------
// trace

fn trace_records_every_site_in_order(dev: &Device, dt: DType) -> Res {
    let data = tensor(&[0.5, -1.0, 2.0], dev, dt)?;
    let one = scalar(1.0, dev, dt)?;
    let ((z, w, d), tr) = run(dev, dt, 0, |ctx| {
        ctx.trace(|ctx| {
            let w = ctx.param("w", &tensor(&[0.3, 0.7], dev, dt)?, Constraint::Positive)?;
            let z = ctx.sample("z", normal(0.0, 1.0, dev, dt)?)?;
            let d = ctx.deterministic("d", &(&z * 2.0)?)?;
            // A parameter read twice is one site.
            ctx.param("w", &tensor(&[9.0, 9.0], dev, dt)?, Constraint::Positive)?;
            ctx.plate_subsample("batch", 3, 3, |ctx, _| {
                ctx.observe("x", Normal::new(&z, &one)?, &data)
            })?;
            Ok((z, w, d))
        })
    })?;
    assert_eq!(
        tr.names().collect::<Vec<_>>(),
        ["w", "z", "d", "batch", "x"]
    );
    let kinds: Vec<SiteKind> = tr.sites().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [
            SiteKind::Param,
            SiteKind::Sample,
            SiteKind::Deterministic,
            SiteKind::Subsample,
            SiteKind::Sample
        ]
    );
    let observed: Vec<bool> = tr.sites().map(|s| s.is_observed).collect();
    assert_eq!(observed, [false, false, false, false, true]);
    let site = |n: &str| tr.get(n).unwrap();
    assert!(site("z").is_latent() && !site("z").is_observed_sample());
    assert!(site("x").is_observed_sample() && !site("x").is_latent());
    // Values: what the statements returned.
    assert_eq!(host(&site("w").value), host(&w));
    assert_close(&host(&w), &[0.3, 0.7], dt, "param value");
    assert_eq!(host(&site("z").value), host(&z));
    assert_eq!(host(&site("d").value), host(&d));
    assert_eq!(host(&d), [2.0 * host(&z)[0]]);
    assert_eq!(site("batch").value.to_vec1::<u32>()?, [0, 1, 2]);
    assert_eq!(host(&site("x").value), [0.5, -1.0, 2.0]);
    // Log-densities of the sample sites.
    let z0 = host(&z)[0];
    assert_close(
        &host(site("z").log_prob()?),
        &[normal_lp(z0, 0.0, 1.0)],
        dt,
        "z log_prob",
    );
    let want: Vec<f64> = [0.5, -1.0, 2.0]
        .iter()
        .map(|&x| normal_lp(x, z0, 1.0))
        .collect();
    assert_close(&host(site("x").log_prob()?), &want, dt, "x log_prob");
    let total = normal_lp(z0, 0.0, 1.0) + want.iter().sum::<f64>();
    assert_close(&host(&tr.log_prob_sum()?), &[total], dt, "log_prob_sum");
    Ok(())
}
vi_test::test_device!(trace_records_every_site_in_order);

fn trace_rejects_a_name_used_twice(dev: &Device, dt: DType) -> Res {
    let dup = |f: &dyn Fn(&mut Ctx) -> vi_infer::Result<()>| -> String {
        match run(dev, dt, 0, |ctx| ctx.trace(|ctx| f(ctx))) {
            Err(InferError::DuplicateSite { site }) => site,
            other => panic!("expected DuplicateSite, got {other:?}"),
        }
    };
    let n = || normal(0.0, 1.0, dev, dt);
    let x = scalar(0.5, dev, dt)?;
    assert_eq!(
        dup(&|ctx| {
            ctx.sample("z", n()?)?;
            ctx.sample("z", n()?)?;
            Ok(())
        }),
        "z"
    );
    assert_eq!(
        dup(&|ctx| {
            ctx.param("z", &x, Constraint::Real)?;
            ctx.sample("z", n()?)?;
            Ok(())
        }),
        "z"
    );
    assert_eq!(
        dup(&|ctx| {
            ctx.observe("x", n()?, &x)?;
            ctx.sample("x", n()?)?;
            Ok(())
        }),
        "x"
    );
    assert_eq!(
        dup(&|ctx| {
            ctx.deterministic("d", &x)?;
            ctx.deterministic("d", &x)?;
            Ok(())
        }),
        "d"
    );
    assert_eq!(
        dup(&|ctx| {
            ctx.plate_subsample("p", 4, 2, |ctx, _| ctx.sample("p", n()?))?;
            Ok(())
        }),
        "p"
    );
    Ok(())
}
vi_test::test_device!(trace_rejects_a_name_used_twice);

// ---------------------------------------------------------------------------------------
// replay

fn replay_takes_latents_and_indices_from_the_trace(dev: &Device, dt: DType) -> Res {
    // The "guide": z, a subsampled plate with a local latent, and a latent `x`.
    let ((), guide) = run(dev, dt, 1, |ctx| {
        ctx.trace(|ctx| {
            ctx.sample("z", normal(0.0, 1.0, dev, dt)?)?;
            ctx.plate_subsample("batch", 10, 4, |ctx, _| {
                ctx.sample("local", normal(0.0, 1.0, dev, dt)?)?;
                ctx.sample("x", normal(0.0, 1.0, dev, dt)?)
            })?;
            Ok(())
        })
    })?;
    let data = tensor(&[1.0, 2.0, 3.0, 4.0], dev, dt)?;
    // The "model", on a context with another generator.
    let (idx, model) = run(dev, dt, 2, |ctx| {
        ctx.trace(|ctx| {
            ctx.replay(&guide, |ctx| {
                ctx.sample("z", normal(1.0, 2.0, dev, dt)?)?;
                let idx = ctx.plate_subsample("batch", 10, 4, |ctx, idx| {
                    ctx.sample("local", normal(0.0, 1.0, dev, dt)?)?;
                    ctx.observe("x", normal(0.0, 1.0, dev, dt)?, &data)?;
                    Ok(idx.clone())
                })?;
                ctx.sample("fresh", normal(0.0, 1.0, dev, dt)?)?;
                Ok(idx)
            })
        })
    })?;
    let g = |n: &str| guide.get(n).unwrap();
    let m = |n: &str| model.get(n).unwrap();
    // Latent values and subsample indices are the guide's.
    assert_eq!(host(&m("z").value), host(&g("z").value));
    assert_eq!(host(&m("local").value), host(&g("local").value));
    assert_eq!(idx.to_vec1::<u32>()?, g("batch").value.to_vec1::<u32>()?);
    assert_eq!(
        m("batch").value.to_vec1::<u32>()?,
        g("batch").value.to_vec1::<u32>()?
    );
    // ... scored under the model's own distribution.
    let z = host(&g("z").value)[0];
    assert_close(
        &host(m("z").log_prob()?),
        &[normal_lp(z, 1.0, 2.0)],
        dt,
        "replayed z scored by the model",
    );
    assert!(!m("z").is_observed);
    // Observed sites keep their data, even when the trace has a value for them.
    assert!(m("x").is_observed);
    assert_eq!(host(&m("x").value), [1.0, 2.0, 3.0, 4.0]);
    // A site the trace lacks is drawn.
    assert!(!guide.contains("fresh"));
    assert_eq!(m("fresh").value.dims(), &[] as &[usize]);
    assert!(host(&m("fresh").value)[0].is_finite());
    Ok(())
}
vi_test::test_device!(replay_takes_latents_and_indices_from_the_trace);

// ---------------------------------------------------------------------------------------
// condition

fn condition_fixes_the_value_and_marks_it_observed(dev: &Device, dt: DType) -> Res {
    let half = scalar(0.5, dev, dt)?;
    let data = [("z".to_string(), half.clone()), ("p".to_string(), half)];
    let (((z, p), rng_word), tr) = run(dev, dt, 0, |ctx| {
        let out = ctx.trace(|ctx| {
            ctx.condition(data, |ctx| {
                let z = ctx.sample("z", normal(1.0, 2.0, dev, dt)?)?;
                // `condition` fixes sample sites only: a parameter of that name is untouched.
                let p = ctx.param("p", &scalar(3.0, dev, dt)?, Constraint::Real)?;
                Ok((z, p))
            })
        })?;
        // The conditioned site drew nothing from the context's generator.
        let word = ctx.rng().next_u64();
        Ok(((out.0, word), out.1))
    })?;
    assert_eq!(host(&z), [0.5]);
    assert_eq!(host(&p), [3.0]);
    assert_eq!(rng_word, ChaCha8Rng::seed_from_u64(0).next_u64());
    let site = tr.get("z").unwrap();
    assert_eq!(site.kind, SiteKind::Sample);
    assert!(site.is_observed && site.is_observed_sample());
    assert_eq!(host(&site.value), [0.5]);
    assert_close(
        &host(site.log_prob()?),
        &[normal_lp(0.5, 1.0, 2.0)],
        dt,
        "conditioned log_prob",
    );
    Ok(())
}
vi_test::test_device!(condition_fixes_the_value_and_marks_it_observed);

fn conditioned_site_is_a_likelihood_term_of_the_elbo(dev: &Device, dt: DType) -> Res {
    let data = tensor(&[0.3, -0.4, 1.1], dev, dt)?;
    let one = scalar(1.0, dev, dt)?;
    let model_body = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        let z = ctx.sample("z", normal(0.0, 1.0, dev, dt)?)?;
        ctx.plate("data", 3, |ctx| ctx.sample("x", Normal::new(&z, &one)?))?;
        Ok(())
    };
    let mut model =
        |ctx: &mut Ctx| ctx.condition([("x".to_string(), data.clone())], |ctx| model_body(ctx));
    let mut guide = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.sample("z", normal(0.2, 0.5, dev, dt)?)?;
        Ok(())
    };
    let mut store = ParamStore::new(dev, dt);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let out = TraceMeanFieldElbo::new().compute(&mut model, &mut guide, &mut store, &mut rng)?;
    let kinds: Vec<(&str, TermKind)> = out.sites.iter().map(|t| (&*t.name, t.kind)).collect();
    assert_eq!(
        kinds,
        [("z", TermKind::KlAnalytic), ("x", TermKind::LogLikelihood)]
    );
    let z = host(&out.guide_trace.get("z").unwrap().value)[0];
    let loglik: f64 = [0.3, -0.4, 1.1].iter().map(|&x| normal_lp(x, z, 1.0)).sum();
    assert_close(&host(&out.sites[1].sum), &[loglik], dt, "x term");
    // KL(N(0.2, 0.5²) ‖ N(0, 1)).
    let kl = (1.0f64 / 0.5).ln() + (0.25 + 0.04) / 2.0 - 0.5;
    assert_close(&host(&out.sites[0].sum), &[kl], dt, "z term");
    assert_close(&host(&out.loss), &[kl - loglik], dt, "loss");
    // Without the condition, `x` is a latent the guide lacks.
    let mut unconditioned = model_body;
    let err = TraceMeanFieldElbo::new()
        .compute(&mut unconditioned, &mut guide, &mut store, &mut rng)
        .unwrap_err();
    assert!(
        matches!(&err, InferError::LatentNotInGuide { site } if site == "x"),
        "{err}"
    );
    Ok(())
}
vi_test::test_device!(conditioned_site_is_a_likelihood_term_of_the_elbo);

// ---------------------------------------------------------------------------------------
// substitute

fn substitute_replaces_params_and_leaves_the_store_alone(dev: &Device, dt: DType) -> Res {
    let mut store = ParamStore::new(dev, dt);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut ctx = Ctx::new(&mut store, &mut rng);
    let one = scalar(1.0, dev, dt)?;
    ctx.param("w", &one, Constraint::Positive)?;
    let data = [
        ("w".to_string(), scalar(5.0, dev, dt)?),
        ("u".to_string(), scalar(3.0, dev, dt)?),
        ("z".to_string(), scalar(7.0, dev, dt)?),
    ];
    let ((w, u, v, z), tr) = ctx.trace(|ctx| {
        ctx.substitute(data, |ctx| {
            let w = ctx.param("w", &one, Constraint::Positive)?;
            let u = ctx.param("u", &one, Constraint::Real)?;
            let v = ctx.param("v", &scalar(2.0, dev, dt)?, Constraint::Real)?;
            // Sample sites are not parameters: `substitute` leaves them alone.
            let z = ctx.sample("z", normal(0.0, 1.0, dev, dt)?)?;
            Ok((w, u, v, z))
        })
    })?;
    assert_eq!(host(&w), [5.0]);
    assert_eq!(host(&u), [3.0]);
    assert_eq!(host(&v), [2.0]);
    assert_ne!(host(&z), [7.0]);
    assert_eq!(host(&tr.get("w").unwrap().value), [5.0]);
    assert_eq!(tr.get("w").unwrap().kind, SiteKind::Param);
    // The store keeps its value for `w`, never creates `u`, and creates `v` as usual.
    assert_close(
        &host(&ctx.store().get("w")?.unwrap()),
        &[1.0],
        dt,
        "stored w",
    );
    assert!(ctx.store().get("u")?.is_none());
    assert_eq!(host(&ctx.store().get("v")?.unwrap()), [2.0]);
    let mut names = ctx.store().param_names();
    names.sort();
    assert_eq!(names, ["v", "w"]);
    Ok(())
}
vi_test::test_device!(substitute_replaces_params_and_leaves_the_store_alone);

// ---------------------------------------------------------------------------------------
// block

/// Two latents and a parameter.
fn abp(ctx: &mut Ctx, dev: &Device, dt: DType) -> vi_infer::Result<Vec<f64>> {
    let a = ctx.sample("a", normal(0.0, 1.0, dev, dt)?)?;
    let b = ctx.sample("b", normal(0.0, 1.0, dev, dt)?)?;
    ctx.param("p", &scalar(0.25, dev, dt)?, Constraint::Real)?;
    Ok([host(&a), host(&b)].concat())
}

fn block_hides_sites_from_outer_handlers(dev: &Device, dt: DType) -> Res {
    let plain = run(dev, dt, 0, |ctx| abp(ctx, dev, dt))?;
    for (which, visible) in [
        (Block::hide(["a"]), vec!["b", "p"]),
        (Block::expose(["a"]), vec!["a"]),
        (Block::All, vec![]),
    ] {
        let (values, outer, inner, stored) = run(dev, dt, 0, |ctx| {
            let ((values, inner), outer) = ctx
                .trace(|ctx| ctx.block(which.clone(), |ctx| ctx.trace(|ctx| abp(ctx, dev, dt))))?;
            Ok((values, outer, inner, ctx.store().get("p")?))
        })?;
        assert_eq!(outer.names().collect::<Vec<_>>(), visible, "{which:?}");
        // Handlers inside the block see everything.
        assert_eq!(
            inner.names().collect::<Vec<_>>(),
            ["a", "b", "p"],
            "{which:?}"
        );
        // Hidden sites still run: the same draws as without the block, the param is created.
        assert_eq!(values, plain, "{which:?}");
        assert_eq!(host(&inner.get("a").unwrap().value), [values[0]]);
        assert_eq!(host(&stored.unwrap()), [0.25]);
    }
    Ok(())
}
vi_test::test_device!(block_hides_sites_from_outer_handlers);

// ---------------------------------------------------------------------------------------
// scale

fn scale_multiplies_log_densities(dev: &Device, dt: DType) -> Res {
    let x = scalar(0.7, dev, dt)?;
    let ((), tr) = run(dev, dt, 0, |ctx| {
        ctx.trace(|ctx| {
            ctx.scale(2.5, |ctx| {
                ctx.observe("once", normal(0.0, 1.0, dev, dt)?, &x)
            })?;
            ctx.scale(2.0, |ctx| {
                ctx.scale(3.0, |ctx| {
                    ctx.observe("nested", normal(0.0, 1.0, dev, dt)?, &x)
                })
            })?;
            ctx.scale(3.0, |ctx| {
                ctx.plate_subsample("batch", 10, 5, |ctx, _| {
                    ctx.sample("in_plate", normal(0.0, 1.0, dev, dt)?)
                })
            })?;
            ctx.scale(4.0, |ctx| {
                ctx.sample("latent", normal(0.0, 1.0, dev, dt)?)?;
                ctx.param("p", &x, Constraint::Real)
            })?;
            Ok(())
        })
    })?;
    let lp = normal_lp(0.7, 0.0, 1.0);
    let s = |n: &str| tr.get(n).unwrap();
    assert_eq!(s("once").scale, 2.5);
    assert_close(&host(s("once").log_prob()?), &[2.5 * lp], dt, "scale");
    assert_eq!(s("nested").scale, 6.0);
    assert_close(&host(s("nested").log_prob()?), &[6.0 * lp], dt, "nested");
    assert_eq!(s("in_plate").scale, 6.0);
    let want: Vec<f64> = host(&s("in_plate").value)
        .iter()
        .map(|&v| 6.0 * normal_lp(v, 0.0, 1.0))
        .collect();
    assert_close(&host(s("in_plate").log_prob()?), &want, dt, "scale x plate");
    let v = host(&s("latent").value)[0];
    assert_close(
        &host(s("latent").log_prob()?),
        &[4.0 * normal_lp(v, 0.0, 1.0)],
        dt,
        "latent",
    );
    // Unscaled log-density is still there.
    assert_close(
        &host(&s("nested").unscaled_log_prob()?),
        &[lp],
        dt,
        "unscaled",
    );
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let r = run(dev, dt, 0, |ctx| ctx.scale(bad, |_| Ok(())));
        assert!(matches!(r, Err(InferError::Invalid(_))), "scale {bad}");
    }
    Ok(())
}
vi_test::test_device!(scale_multiplies_log_densities);

// ---------------------------------------------------------------------------------------
// mask

fn mask_zeroes_masked_elements_and_nested_masks_and(dev: &Device, dt: DType) -> Res {
    let x = tensor(&[0.1, -0.2, 0.3], dev, dt)?;
    let lp: Vec<f64> = [0.1, -0.2, 0.3]
        .iter()
        .map(|&v| normal_lp(v, 0.0, 1.0))
        .collect();
    let m101 = tensor(&[2.0, 0.0, -1.0], dev, dt)?; // any nonzero counts
    let m110 = Tensor::new(&[1u8, 1, 0], dev)?;
    let (_, tr) = run(dev, dt, 0, |ctx| {
        ctx.trace(|ctx| {
            ctx.plate("data", 3, |ctx| {
                ctx.mask(&m101, |ctx| {
                    ctx.observe("one", normal(0.0, 1.0, dev, dt)?, &x)?;
                    ctx.sample("latent", normal(0.0, 1.0, dev, dt)?)
                })?;
                ctx.mask(&m110, |ctx| {
                    ctx.mask(&m101, |ctx| {
                        ctx.observe("two", normal(0.0, 1.0, dev, dt)?, &x)
                    })
                })?;
                ctx.mask(&Tensor::new(&[0u8], dev)?, |ctx| {
                    ctx.observe("none", normal(0.0, 1.0, dev, dt)?, &x)
                })
            })
        })
    })?;
    let s = |n: &str| tr.get(n).unwrap();
    assert_close(
        &host(s("one").log_prob()?),
        &[lp[0], 0.0, lp[2]],
        dt,
        "mask",
    );
    assert_close(
        &host(s("two").log_prob()?),
        &[lp[0], 0.0, 0.0],
        dt,
        "nested masks",
    );
    assert_close(&host(s("none").log_prob()?), &[0.0; 3], dt, "all masked");
    // A masked latent is still drawn in full.
    let v = host(&s("latent").value);
    assert_eq!(v.len(), 3);
    assert!(v.iter().all(|x| x.is_finite() && *x != 0.0));
    assert_close(
        &host(s("latent").log_prob()?),
        &[normal_lp(v[0], 0.0, 1.0), 0.0, normal_lp(v[2], 0.0, 1.0)],
        dt,
        "masked latent",
    );
    let total = 2.0 * lp[0] + lp[2] + normal_lp(v[0], 0.0, 1.0) + normal_lp(v[2], 0.0, 1.0);
    assert_close(&host(&tr.log_prob_sum()?), &[total], dt, "log_prob_sum");
    Ok(())
}
vi_test::test_device!(mask_zeroes_masked_elements_and_nested_masks_and);

// ---------------------------------------------------------------------------------------
// seed

/// A scalar Normal, a Bernoulli (no rsample), a plate of Normals and subsample indices.
fn draws(ctx: &mut Ctx, dev: &Device, dt: DType) -> vi_infer::Result<Vec<f64>> {
    let a = ctx.sample("a", normal(0.0, 1.0, dev, dt)?)?;
    let b = ctx.sample("b", Bernoulli::from_probs(&tensor(&[0.5; 8], dev, dt)?)?)?;
    let c = ctx.plate("p", 4, |ctx| ctx.sample("c", normal(0.0, 1.0, dev, dt)?))?;
    let idx = ctx.plate_subsample("data", 1000, 5, |_, idx| Ok(idx.clone()))?;
    let idx: Vec<f64> = idx.to_vec1::<u32>()?.into_iter().map(f64::from).collect();
    Ok([host(&a), host(&b), host(&c), idx].concat())
}

fn seed_fixes_the_draws(dev: &Device, dt: DType) -> Res {
    let seeded = |rng_seed, seed| {
        run(dev, dt, rng_seed, |ctx| {
            ctx.seed(seed, |ctx| draws(ctx, dev, dt))
        })
    };
    let first = seeded(0, 7)?;
    assert_eq!(first.len(), 1 + 8 + 4 + 5);
    // Same seed, same draws, whatever the context's generator.
    assert_eq!(seeded(0, 7)?, first);
    assert_eq!(seeded(12345, 7)?, first);
    // Another seed, other draws (site by site).
    let other = seeded(0, 8)?;
    assert_ne!(other[0], first[0]);
    assert_ne!(other[1..9], first[1..9]);
    assert_ne!(other[9..13], first[9..13]);
    assert_ne!(other[13..], first[13..]);
    // Unseeded draws come from the context's generator and differ from the seeded ones.
    assert_ne!(run(dev, dt, 0, |ctx| draws(ctx, dev, dt))?, first);
    // The seed restarts each time it is entered, and leaves the context's generator alone.
    let (again, word) = run(dev, dt, 0, |ctx| {
        ctx.seed(7, |ctx| draws(ctx, dev, dt))?;
        let again = ctx.seed(7, |ctx| draws(ctx, dev, dt))?;
        Ok((again, ctx.rng().next_u64()))
    })?;
    assert_eq!(again, first);
    assert_eq!(word, ChaCha8Rng::seed_from_u64(0).next_u64());
    // Subsample indices under a seed: distinct, in range.
    let mut idx = first[13..].to_vec();
    idx.sort_by(f64::total_cmp);
    idx.dedup();
    assert_eq!(idx.len(), 5);
    assert!(idx.iter().all(|&i| (0.0..1000.0).contains(&i)));
    Ok(())
}
vi_test::test_device!(seed_fixes_the_draws);

fn seed_inside_a_plate_draws_the_whole_batch(dev: &Device, dt: DType) -> Res {
    // The plate expands the site before the seeded draw, wherever the seed sits.
    let inside = run(dev, dt, 0, |ctx| {
        ctx.plate("p", 5, |ctx| {
            ctx.seed(3, |ctx| ctx.sample("z", normal(0.0, 1.0, dev, dt)?))
        })
    })?;
    let outside = run(dev, dt, 0, |ctx| {
        ctx.seed(3, |ctx| {
            ctx.plate("p", 5, |ctx| ctx.sample("z", normal(0.0, 1.0, dev, dt)?))
        })
    })?;
    assert_eq!(inside.dims(), &[5]);
    assert_eq!(host(&inside), host(&outside));
    let mut v = host(&inside);
    v.sort_by(f64::total_cmp);
    v.dedup();
    assert_eq!(v.len(), 5, "independent draws per element");
    Ok(())
}
vi_test::test_device!(seed_inside_a_plate_draws_the_whole_batch);

// ---------------------------------------------------------------------------------------
// stack order

fn replay_and_seed_commute(dev: &Device, dt: DType) -> Res {
    let ((), guide) = run(dev, dt, 9, |ctx| {
        ctx.trace(|ctx| {
            ctx.sample("z", normal(0.0, 1.0, dev, dt)?)?;
            Ok(())
        })
    })?;
    let model = |ctx: &mut Ctx| -> vi_infer::Result<(f64, f64)> {
        let z = ctx.sample("z", normal(0.0, 1.0, dev, dt)?)?;
        let w = ctx.sample("w", normal(0.0, 1.0, dev, dt)?)?;
        Ok((host(&z)[0], host(&w)[0]))
    };
    let w_alone = run(dev, dt, 0, |ctx| {
        ctx.seed(3, |ctx| ctx.sample("w", normal(0.0, 1.0, dev, dt)?))
    })?;
    let w_alone = host(&w_alone)[0];
    let z = host(&guide.get("z").unwrap().value)[0];
    // replay inside seed: the replayed site takes no draw from the seed.
    let a = run(dev, dt, 0, |ctx| {
        ctx.seed(3, |ctx| ctx.replay(&guide, model))
    })?;
    // seed inside replay: the same.
    let b = run(dev, dt, 0, |ctx| {
        ctx.replay(&guide, |ctx| ctx.seed(3, model))
    })?;
    assert_eq!(a, (z, w_alone));
    assert_eq!(b, (z, w_alone));
    // Conditioned sites likewise, inside or outside the seed.
    let zc = [("z".to_string(), scalar(0.5, dev, dt)?)];
    let c = run(dev, dt, 0, |ctx| {
        ctx.seed(3, |ctx| ctx.condition(zc.clone(), model))
    })?;
    let d = run(dev, dt, 0, |ctx| {
        ctx.condition(zc.clone(), |ctx| ctx.seed(3, model))
    })?;
    assert_eq!(c, (0.5, w_alone));
    assert_eq!(d, (0.5, w_alone));
    // Nested seeds: the innermost one draws.
    let e = run(dev, dt, 0, |ctx| {
        ctx.seed(1, |ctx| {
            ctx.seed(3, |ctx| ctx.sample("w", normal(0.0, 1.0, dev, dt)?))
        })
    })?;
    assert_eq!(host(&e), [w_alone]);
    Ok(())
}
vi_test::test_device!(replay_and_seed_commute);

fn block_stops_outer_handlers_but_not_inner_ones(dev: &Device, dt: DType) -> Res {
    let (inner, outer) = run(dev, dt, 0, |ctx| {
        ctx.trace(|ctx| {
            ctx.scale(10.0, |ctx| {
                ctx.block(Block::hide(["a"]), |ctx| {
                    ctx.scale(2.0, |ctx| {
                        let ((), inner) = ctx.trace(|ctx| {
                            ctx.sample("a", normal(0.0, 1.0, dev, dt)?)?;
                            ctx.sample("b", normal(0.0, 1.0, dev, dt)?)?;
                            Ok(())
                        })?;
                        Ok(inner)
                    })
                })
            })
        })
    })?;
    // Inside the block: `a` got the inner scale only, `b` both.
    assert_eq!(inner.names().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(inner.get("a").unwrap().scale, 2.0);
    assert_eq!(inner.get("b").unwrap().scale, 20.0);
    // Outside: `a` is invisible.
    assert_eq!(outer.names().collect::<Vec<_>>(), ["b"]);
    assert_eq!(outer.get("b").unwrap().scale, 20.0);
    Ok(())
}
vi_test::test_device!(block_stops_outer_handlers_but_not_inner_ones);

// ---------------------------------------------------------------------------------------
// end to end

/// A guide: `z ~ Normal(loc, scale)` over a plate of 2, with learnable loc and scale.
fn guide(ctx: &mut Ctx, dev: &Device, dt: DType) -> vi_infer::Result<()> {
    let loc = ctx.param("loc", &tensor(&[0.5, -0.5], dev, dt)?, Constraint::Real)?;
    let scale = ctx.param(
        "scale",
        &tensor(&[1.0, 2.0], dev, dt)?,
        Constraint::Positive,
    )?;
    ctx.plate("data", 2, |ctx| ctx.sample("z", Normal::new(&loc, &scale)?))?;
    Ok(())
}

/// The model: `z ~ Normal(0, 1)`, `x ~ Normal(z, 1)` over a plate of 2, `x` observed.
fn model(ctx: &mut Ctx, x: &Tensor, dev: &Device, dt: DType) -> vi_infer::Result<()> {
    ctx.plate("data", 2, |ctx| {
        let z = ctx.sample("z", normal(0.0, 1.0, dev, dt)?)?;
        ctx.observe("x", Normal::new(&z, &scalar(1.0, dev, dt)?)?, x)
    })?;
    Ok(())
}

fn guide_traced_under_seed_3(dev: &Device, dt: DType) -> Res {
    let traced = |rng_seed| {
        run(dev, dt, rng_seed, |ctx| {
            Ok(ctx.trace(|ctx| ctx.seed(3, |ctx| guide(ctx, dev, dt)))?.1)
        })
    };
    let tr = traced(0)?;
    assert_eq!(tr.names().collect::<Vec<_>>(), ["loc", "scale", "z"]);
    let z = tr.get("z").unwrap();
    assert_eq!(z.value.dims(), &[2]);
    assert_eq!(z.plates.len(), 1);
    assert_eq!((z.plates[0].name.as_str(), z.plates[0].dim), ("data", -1));
    let v = host(&z.value);
    assert_close(
        &host(z.log_prob()?),
        &[normal_lp(v[0], 0.5, 1.0), normal_lp(v[1], -0.5, 2.0)],
        dt,
        "guide log_prob",
    );
    // Another context generator: the same trace.
    let again = traced(99)?;
    assert_eq!(host(&again.get("z").unwrap().value), v);
    Ok(())
}
vi_test::test_device!(guide_traced_under_seed_3);

fn model_replayed_against_the_guide_trace(dev: &Device, dt: DType) -> Res {
    let x = tensor(&[1.5, -0.5], dev, dt)?;
    let (g, m) = run(dev, dt, 0, |ctx| {
        let ((), g) = ctx.trace(|ctx| ctx.seed(3, |ctx| guide(ctx, dev, dt)))?;
        let ((), m) = ctx.trace(|ctx| ctx.replay(&g, |ctx| model(ctx, &x, dev, dt)))?;
        Ok((g, m))
    })?;
    assert_eq!(m.names().collect::<Vec<_>>(), ["z", "x"]);
    let z = host(&g.get("z").unwrap().value);
    assert_eq!(host(&m.get("z").unwrap().value), z);
    let log_p: f64 = (0..2)
        .map(|i| normal_lp(z[i], 0.0, 1.0) + normal_lp([1.5, -0.5][i], z[i], 1.0))
        .sum();
    assert_close(&host(&m.log_prob_sum()?), &[log_p], dt, "model log p");
    let log_q = normal_lp(z[0], 0.5, 1.0) + normal_lp(z[1], -0.5, 2.0);
    let elbo = (m.log_prob_sum()? - g.log_prob_sum()?)?;
    assert_close(&host(&elbo), &[log_p - log_q], dt, "elbo estimate");
    Ok(())
}
vi_test::test_device!(model_replayed_against_the_guide_trace);

fn condition_on_data(dev: &Device, dt: DType) -> Res {
    let x = tensor(&[0.25, 0.75], dev, dt)?;
    // The model with `x` latent, then conditioned on the data.
    let latent_model = |ctx: &mut Ctx| -> vi_infer::Result<()> {
        ctx.plate("data", 2, |ctx| {
            let z = ctx.sample("z", normal(0.0, 1.0, dev, dt)?)?;
            ctx.sample("x", Normal::new(&z, &scalar(1.0, dev, dt)?)?)
        })?;
        Ok(())
    };
    let ((), tr) = run(dev, dt, 0, |ctx| {
        ctx.trace(|ctx| ctx.condition([("x".to_string(), x.clone())], latent_model))
    })?;
    let site = tr.get("x").unwrap();
    assert!(site.is_observed);
    assert_eq!(host(&site.value), [0.25, 0.75]);
    assert!(tr.get("z").unwrap().is_latent());
    let z = host(&tr.get("z").unwrap().value);
    assert_close(
        &host(site.log_prob()?),
        &[normal_lp(0.25, z[0], 1.0), normal_lp(0.75, z[1], 1.0)],
        dt,
        "likelihood",
    );
    // The same log-density as the model that observes `x` itself.
    let ((), observed) = run(dev, dt, 0, |ctx| ctx.trace(|ctx| model(ctx, &x, dev, dt)))?;
    assert_eq!(host(&observed.get("z").unwrap().value), z);
    assert_close(
        &host(&observed.log_prob_sum()?),
        &host(&tr.log_prob_sum()?),
        dt,
        "condition == observe",
    );
    Ok(())
}
vi_test::test_device!(condition_on_data);
