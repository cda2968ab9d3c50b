//! `vi_infer::layers::Linear` against `candle_nn::Linear`: the same values and gradients on
//! every shape, layout and dtype; no gradient for inputs that track none; finite differences;
//! the `ParamStore::var_builder` / `Ctx::module` flow.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Module, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution as _, StandardNormal};
use vi_infer::layers::{self, Linear};

use crate::common::{Res, assert_close_tensors, assert_close_tol, host};

fn randn(rng: &mut ChaCha8Rng, dims: &[usize], dtype: DType, dev: &Device) -> Res<Tensor> {
    let n = dims.iter().product::<usize>();
    let v: Vec<f64> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
    Ok(Tensor::from_vec(v, dims, &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(dev)?)
}

fn tol(dtype: DType) -> f64 {
    if dtype == DType::F64 { 1e-12 } else { 1e-5 }
}

fn grad<'a>(grads: &'a GradStore, v: &Var, what: &str) -> Res<&'a Tensor> {
    grads
        .get(v.as_tensor())
        .ok_or_else(|| format!("no gradient for {what}").into())
}

/// Both layers on the same weight/bias variables and the same input; the loss `Σ r ⊙ y` with
/// a random `r`; values and gradients (weight, bias, and the input when it is a `Var`) agree.
fn compare(
    x: &Tensor,
    x_var: Option<&Var>,
    w: &Var,
    b: Option<&Var>,
    r_seed: u64,
    what: &str,
) -> Res {
    let ours = Linear::new(w.as_tensor().clone(), b.map(|b| b.as_tensor().clone()));
    let theirs = candle_nn::Linear::new(w.as_tensor().clone(), b.map(|b| b.as_tensor().clone()));
    let y = ours.forward(x)?;
    let y_ref = theirs.forward(x)?;
    let tol = tol(x.dtype());
    assert_close_tensors(&y, &y_ref, tol, &format!("{what}: y"));
    let mut rng = ChaCha8Rng::seed_from_u64(r_seed);
    let r = randn(&mut rng, y.dims(), y.dtype(), y.device())?;
    let g = (&y * &r)?.sum_all()?.backward()?;
    let g_ref = (&y_ref * &r)?.sum_all()?.backward()?;
    if !x.track_op() && x.device().is_cpu() {
        // The fused op ran: candle-nn's path differentiates its input whatever it is (a
        // 2-D one directly, a higher-rank one through its reshaped copy).
        assert!(g.get(x).is_none(), "{what}: the data input got a gradient");
        if x.rank() == 2 {
            assert!(g_ref.get(x).is_some());
        }
    }
    let dw = grad(&g, w, "w")?;
    assert_close_tensors(dw, grad(&g_ref, w, "w")?, tol, &format!("{what}: dW"));
    if let Some(b) = b {
        assert_close_tensors(
            grad(&g, b, "b")?,
            grad(&g_ref, b, "b")?,
            tol,
            &format!("{what}: db"),
        );
    }
    if let Some(xv) = x_var {
        assert_close_tensors(
            grad(&g, xv, "x")?,
            grad(&g_ref, xv, "x")?,
            tol,
            &format!("{what}: dx"),
        );
    }
    Ok(())
}

/// 2-D, 3-D and 4-D inputs, with and without bias, data input and `Var` input.
fn same_as_candle_nn(dev: &Device, dtype: DType) -> Res {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (k, n) = (13, 9);
    let w = Var::from_tensor(&randn(&mut rng, &[n, k], dtype, dev)?)?;
    let b = Var::from_tensor(&randn(&mut rng, &[n], dtype, dev)?)?;
    for (i, lead) in [vec![6], vec![3, 5], vec![2, 3, 4]].iter().enumerate() {
        let mut dims = lead.clone();
        dims.push(k);
        let x = randn(&mut rng, &dims, dtype, dev)?;
        let xv = Var::from_tensor(&x)?;
        for bias in [Some(&b), None] {
            let what = format!("{dims:?}, bias {}", bias.is_some());
            compare(&x, None, &w, bias, i as u64, &format!("{what}, data x"))?;
            compare(
                xv.as_tensor(),
                Some(&xv),
                &w,
                bias,
                i as u64,
                &format!("{what}, var x"),
            )?;
        }
    }
    Ok(())
}
vi_test::test_device!(same_as_candle_nn);

/// Strided views: a transposed 2-D input, a permuted 3-D input, a transposed weight, a bias
/// read with a stride and an offset.
fn non_contiguous(dev: &Device, dtype: DType) -> Res {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (k, n) = (7, 5);
    let w = Var::from_tensor(&randn(&mut rng, &[n, k], dtype, dev)?)?;
    let b = Var::from_tensor(&randn(&mut rng, &[n], dtype, dev)?)?;
    // x[6, k] as the transpose of a [k, 6] variable.
    let xt = Var::from_tensor(&randn(&mut rng, &[k, 6], dtype, dev)?)?;
    let x = xt.as_tensor().t()?;
    assert!(!x.is_contiguous());
    compare(&x, None, &w, Some(&b), 1, "transposed x")?;
    let g = Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()))
        .forward(&x)?
        .sum_all()?
        .backward()?;
    let g_ref = candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()))
        .forward(&x)?
        .sum_all()?
        .backward()?;
    assert_close_tensors(
        grad(&g, &xt, "xt")?,
        grad(&g_ref, &xt, "xt")?,
        tol(dtype),
        "transposed x: dx",
    );
    // x[2, 3, k] as a permutation of a [k, 2, 3] tensor.
    let x3 = randn(&mut rng, &[k, 2, 3], dtype, dev)?.permute((1, 2, 0))?;
    assert!(!x3.is_contiguous());
    compare(&x3, None, &w, Some(&b), 2, "permuted 3-D x")?;
    compare(&x3, None, &w, None, 3, "permuted 3-D x, no bias")?;
    // The weight and bias themselves strided views of variables.
    let wt = Var::from_tensor(&randn(&mut rng, &[k, n], dtype, dev)?)?;
    let bm = Var::from_tensor(&randn(&mut rng, &[n, 3], dtype, dev)?)?;
    let layer = Linear::new(
        wt.as_tensor().t()?,
        Some(bm.as_tensor().narrow(1, 1, 1)?.squeeze(1)?),
    );
    let reference: candle_nn::Linear = layer.clone().into();
    let x = randn(&mut rng, &[4, k], dtype, dev)?;
    let (y, y_ref) = (layer.forward(&x)?, reference.forward(&x)?);
    assert_close_tensors(&y, &y_ref, tol(dtype), "strided w, b: y");
    let (g, g_ref) = (y.sum_all()?.backward()?, y_ref.sum_all()?.backward()?);
    assert_close_tensors(
        grad(&g, &wt, "wt")?,
        grad(&g_ref, &wt, "wt")?,
        tol(dtype),
        "dW",
    );
    assert_close_tensors(
        grad(&g, &bm, "bm")?,
        grad(&g_ref, &bm, "bm")?,
        tol(dtype),
        "db",
    );
    Ok(())
}
vi_test::test_device!(non_contiguous);

/// A data input gets no gradient entry (candle-nn computes one); a frozen weight neither.
#[test]
fn no_gradient_for_untracked_inputs() -> Res {
    let dev = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let w = Var::from_tensor(&randn(&mut rng, &[4, 8], DType::F32, &dev)?)?;
    let b = Var::from_tensor(&randn(&mut rng, &[4], DType::F32, &dev)?)?;
    let x = randn(&mut rng, &[16, 8], DType::F32, &dev)?;
    let ours = Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
    let theirs: candle_nn::Linear = ours.clone().into();

    let g = ours.forward(&x)?.sum_all()?.backward()?;
    assert!(g.get(&x).is_none(), "data input got a gradient");
    assert!(g.get(&w).is_some() && g.get(&b).is_some());
    let g_ref = theirs.forward(&x)?.sum_all()?.backward()?;
    assert!(
        g_ref.get(&x).is_some(),
        "candle-nn computes the data's gradient"
    );

    // Frozen weight and bias (detached), input a variable: only the input's gradient.
    let xv = Var::from_tensor(&x)?;
    let frozen = Linear::new(w.as_tensor().detach(), Some(b.as_tensor().detach()));
    let g = frozen.forward(xv.as_tensor())?.sum_all()?.backward()?;
    assert!(g.get(&xv).is_some());
    assert!(g.get(&w).is_none() && g.get(&b).is_none());
    assert!(g.get(frozen.weight()).is_none());
    Ok(())
}

/// `dW`, `db`, `dx` of `L = Σ (r ⊙ forward(layer, x))²` against central finite differences,
/// in f64: `w [n, k]`, `b [n]`, `x [batch.., k]` and `r [batch.., n]` drawn in that order from
/// a generator seeded with `seed`.
fn check_finite_differences(
    seed: u64,
    (k, n): (usize, usize),
    batch: &[usize],
    forward: impl Fn(&Linear, &Tensor) -> candle_core::Result<Tensor>,
) -> Res {
    let dev = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x_dims: Vec<usize> = batch.iter().copied().chain([k]).collect();
    let r_dims: Vec<usize> = batch.iter().copied().chain([n]).collect();
    let w0 = randn(&mut rng, &[n, k], DType::F64, &dev)?;
    let b0 = randn(&mut rng, &[n], DType::F64, &dev)?;
    let x0 = randn(&mut rng, &x_dims, DType::F64, &dev)?;
    let r = randn(&mut rng, &r_dims, DType::F64, &dev)?;
    let loss = |x: &Tensor, w: &Tensor, b: &Tensor| -> Res<Tensor> {
        let y = forward(&Linear::new(w.clone(), Some(b.clone())), x)?;
        Ok((&y * &r)?.sqr()?.sum_all()?)
    };
    let (x, w, b) = (
        Var::from_tensor(&x0)?,
        Var::from_tensor(&w0)?,
        Var::from_tensor(&b0)?,
    );
    let g = loss(x.as_tensor(), w.as_tensor(), b.as_tensor())?.backward()?;
    let eval = |xs: &Tensor, ws: &Tensor, bs: &Tensor| -> f64 {
        loss(xs, ws, bs)
            .and_then(|l| Ok(l.to_scalar::<f64>()?))
            .unwrap_or(f64::NAN)
    };
    // The finite differences of `L` in one argument `t0`, the others held.
    let fd = |t0: &Tensor, at: &dyn Fn(&Tensor) -> f64| {
        vi_test::finite_difference(&host(t0), 1e-6, |v| {
            Tensor::from_slice(v, t0.dims(), &dev).map_or(f64::NAN, |t| at(&t))
        })
    };
    let fd_w = fd(&w0, &|t| eval(&x0, t, &b0));
    let fd_b = fd(&b0, &|t| eval(&x0, &w0, t));
    let fd_x = fd(&x0, &|t| eval(t, &w0, &b0));
    for (what, v, fd) in [("w", &w, fd_w), ("b", &b, fd_b), ("x", &x, fd_x)] {
        assert_close_tol(&host(grad(&g, v, what)?), &fd, 1e-6, &format!("d{what}"));
    }
    Ok(())
}

/// `forward`'s `dW`, `db`, `dx` against central finite differences, in f64.
#[test]
fn finite_differences() -> Res {
    check_finite_differences(5, (4, 3), &[2, 3], |layer, x| layer.forward(x))
}

/// A rank-1 input is one row (candle-nn's `Linear` rejects it); other dtypes (f16) and
/// mismatched dtypes go through candle-nn's composition, with its results and errors.
#[test]
fn other_inputs() -> Res {
    let dev = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let w = randn(&mut rng, &[3, 5], DType::F64, &dev)?;
    let b = randn(&mut rng, &[3], DType::F64, &dev)?;
    let layer = Linear::new(w.clone(), Some(b.clone()));
    let x = randn(&mut rng, &[5], DType::F64, &dev)?;
    let y = layer.forward(&x)?;
    assert_eq!(y.dims(), &[3]);
    assert_close_tensors(
        &y,
        &layer.forward(&x.unsqueeze(0)?)?.squeeze(0)?,
        0.0,
        "rank 1",
    );

    let (w16, b16) = (w.to_dtype(DType::F16)?, b.to_dtype(DType::F16)?);
    let x16 = randn(&mut rng, &[4, 5], DType::F16, &dev)?;
    let ours = Linear::new(w16.clone(), Some(b16.clone())).forward(&x16)?;
    let theirs = candle_nn::Linear::new(w16, Some(b16)).forward(&x16)?;
    assert_close_tensors(&ours, &theirs, 0.0, "f16");

    let x32 = randn(&mut rng, &[4, 5], DType::F32, &dev)?;
    assert!(layer.forward(&x32).is_err());
    assert!(candle_nn::Linear::new(w, Some(b)).forward(&x32).is_err());
    // A wrong input width is an error too.
    assert!(
        layer
            .forward(&randn(&mut rng, &[4, 6], DType::F64, &dev)?)
            .is_err()
    );
    Ok(())
}

/// Built from a `ParamStore`'s `var_builder`: the same variables (names, shapes) as
/// `candle_nn::linear`, and the encoder's input (the data) never gets a gradient. The guide's
/// miniature VAE (`guide::modules`) trains with these layers through `ctx.module`.
#[test]
fn in_a_param_store() -> Res {
    use vi_infer::ParamStore;

    let dev = Device::Cpu;
    let a = ParamStore::new(&dev, DType::F32);
    let b = ParamStore::new(&dev, DType::F32);
    layers::linear(6, 4, a.var_builder("enc")?.pp("fc"))?;
    candle_nn::linear(6, 4, b.var_builder("enc")?.pp("fc"))?;
    let shapes = |s: &ParamStore| -> Vec<(String, Vec<usize>)> {
        s.module_vars("enc")
            .into_iter()
            .map(|(n, v)| (n, v.dims().to_vec()))
            .collect()
    };
    assert_eq!(shapes(&a), shapes(&b));
    layers::linear_b(6, 4, false, a.var_builder("nobias")?)?;
    assert_eq!(a.module_vars("nobias").len(), 1);

    let images = Tensor::new(
        &[[1f32, 1., 0., 0., 1., 0.], [0., 1., 1., 0., 0., 1.]],
        &dev,
    )?;
    let encoder = layers::linear(6, 4, a.var_builder("encoder")?)?;
    let g = encoder.forward(&images)?.sum_all()?.backward()?;
    assert!(g.get(&images).is_none());
    // Both of the encoder's variables do get one.
    for (name, var) in a.module_vars("encoder") {
        assert!(g.get(var.as_tensor()).is_some(), "{name}");
    }
    Ok(())
}

/// `forward_softplus` against candle-nn's layer followed by `vi_dist::ops::softplus`: values
/// and gradients, 2-D and 3-D, with and without bias, data and `Var` inputs, large `|z|`.
fn softplus_same_as_composed(dev: &Device, dtype: DType) -> Res {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let (k, n) = (11, 6);
    // Scaled so that z reaches ±40 (softplus saturates, its derivative underflows).
    let w = Var::from_tensor(&(randn(&mut rng, &[n, k], dtype, dev)? * 8.0)?)?;
    let b = Var::from_tensor(&randn(&mut rng, &[n], dtype, dev)?)?;
    // The last one (18 000 outputs) splits its passes across threads.
    for (i, dims) in [vec![40, k], vec![3, 50, k], vec![3000, k]]
        .iter()
        .enumerate()
    {
        let x = randn(&mut rng, dims, dtype, dev)?;
        let xv = Var::from_tensor(&x)?;
        for bias in [Some(&b), None] {
            let ours = Linear::new(w.as_tensor().clone(), bias.map(|b| b.as_tensor().clone()));
            let theirs: candle_nn::Linear = ours.clone().into();
            for input in [&x, xv.as_tensor()] {
                let what = format!(
                    "{dims:?}, bias {}, var x {}",
                    bias.is_some(),
                    input.track_op()
                );
                let y = ours.forward_softplus(input)?;
                let y_ref = vi_infer::dist::ops::softplus(&theirs.forward(input)?)?;
                assert_close_tensors(&y, &y_ref, tol(dtype), &format!("{what}: y"));
                let r = randn(&mut rng, y.dims(), dtype, dev)?;
                let g = (&y * &r)?.sum_all()?.backward()?;
                let g_ref = (&y_ref * &r)?.sum_all()?.backward()?;
                let mut pairs = vec![("w", &w)];
                pairs.extend(bias.map(|b| ("b", b)));
                if input.track_op() {
                    pairs.push(("x", &xv));
                } else if dev.is_cpu() {
                    assert!(g.get(input).is_none(), "{what}: data input got a gradient");
                }
                for (name, v) in pairs {
                    assert_close_tensors(
                        grad(&g, v, name)?,
                        grad(&g_ref, v, name)?,
                        tol(dtype),
                        &format!("{what} ({i}): d{name}"),
                    );
                }
            }
        }
    }
    Ok(())
}
vi_test::test_device!(softplus_same_as_composed);

/// `forward_softplus`'s gradients against central finite differences, in f64.
#[test]
fn softplus_finite_differences() -> Res {
    check_finite_differences(23, (3, 4), &[5], |layer, x| layer.forward_softplus(x))
}
