//! Drawing on the host from a seeded RNG and moving the draws to the device, so the same seed
//! gives the same numbers on every device and in every dtype.

use candle_core::{DType, Device, Tensor};
use rand::RngCore;
use rand_distr::{Distribution as _, StandardNormal};

use crate::distribution::Distribution;
use crate::error::Result;

/// A tensor of `shape` filled by `draw` (called once per element, row-major) from `rng`,
/// built as f64 on the host, then cast to `dtype` and moved to `device`.
///
/// ```
/// use rand::SeedableRng;
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let t = vi_dist::host_tensor(&[2, 3], candle_core::DType::F32, &candle_core::Device::Cpu,
///     &mut rng, |_| 1.5)?;
/// assert_eq!(t.dims(), &[2, 3]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn host_tensor(
    shape: &[usize],
    dtype: DType,
    device: &Device,
    rng: &mut dyn RngCore,
    mut draw: impl FnMut(&mut dyn RngCore) -> f64,
) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let data: Vec<f64> = (0..n).map(|_| draw(rng)).collect();
    from_host(data, shape, dtype, device)
}

/// `rounds` draws from every sampler on the host, round by round (each round draws once from
/// each sampler, in order), so one sampler per batch element lays the draws out row-major as
/// `[rounds] + batch`: the loop every per-element host sampler shares.
pub(crate) fn draw_rounds<S>(
    samplers: &[S],
    rounds: usize,
    rng: &mut dyn RngCore,
    draw: impl Fn(&S, &mut dyn RngCore) -> f64,
) -> Vec<f64> {
    let mut data = Vec::with_capacity(rounds * samplers.len());
    for _ in 0..rounds {
        for s in samplers {
            data.push(draw(s, rng));
        }
    }
    data
}

/// Draw `sample_shape` values from one host sampler per batch element ([`draw_rounds`]) and
/// build the tensor of shape `sample_shape + batch` in `dtype` on `device`.
pub(crate) fn draw_per_element<S>(
    samplers: &[S],
    sample_shape: &[usize],
    batch: &[usize],
    dtype: DType,
    device: &Device,
    rng: &mut dyn RngCore,
    draw: impl Fn(&S, &mut dyn RngCore) -> f64,
) -> Result<Tensor> {
    let data = draw_rounds(samplers, sample_shape.iter().product(), rng, draw);
    let shape = crate::broadcast::extended_shape(sample_shape, batch, &[]);
    from_host(data, &shape, dtype, device)
}

/// [`draw_per_element`] for a scalar family `d` with one sampler per batch element: a tensor
/// of shape `sample_shape + batch_shape` in `d`'s dtype on its device.
pub(crate) fn draw_each<D: Distribution + ?Sized, S>(
    d: &D,
    samplers: &[S],
    sample_shape: &[usize],
    rng: &mut dyn RngCore,
    draw: impl Fn(&S, &mut dyn RngCore) -> f64,
) -> Result<Tensor> {
    let (batch, dtype, device) = (d.batch_shape(), d.dtype(), d.device());
    draw_per_element(samplers, sample_shape, batch, dtype, device, rng, draw)
}

/// Build a tensor from host f64 data in `dtype` on `device`.
pub(crate) fn from_host(
    data: Vec<f64>,
    shape: &[usize],
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let t = Tensor::from_vec(data, shape, &Device::Cpu)?;
    let t = if dtype == DType::F64 {
        t
    } else {
        t.to_dtype(dtype)?
    };
    Ok(if device.is_cpu() {
        t
    } else {
        t.to_device(device)?
    })
}

/// Standard normal draws of `shape`.
///
/// ```
/// use rand::SeedableRng;
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let e = vi_dist::standard_normal(&[1000], candle_core::DType::F64, &candle_core::Device::Cpu, &mut rng)?;
/// let m = e.mean_all()?.to_scalar::<f64>()?;
/// assert!(m.abs() < 0.15);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn standard_normal(
    shape: &[usize],
    dtype: DType,
    device: &Device,
    rng: &mut dyn RngCore,
) -> Result<Tensor> {
    host_tensor(shape, dtype, device, rng, |r| StandardNormal.sample(r))
}

/// Uniform draws on the open interval (0, 1) (never exactly 0 or 1, so `ln u` is finite).
///
/// ```
/// use rand::SeedableRng;
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let u = vi_dist::uniform_open01(&[100], candle_core::DType::F64, &candle_core::Device::Cpu, &mut rng)?;
/// assert!(u.min_all()?.to_scalar::<f64>()? > 0.0);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
pub fn uniform_open01(
    shape: &[usize],
    dtype: DType,
    device: &Device,
    rng: &mut dyn RngCore,
) -> Result<Tensor> {
    // The largest value below 1 that survives the cast to `dtype`.
    let top = crate::finfo::below_one(dtype);
    host_tensor(shape, dtype, device, rng, |r| {
        let u: f64 = rand_distr::Open01.sample(r);
        u.min(top)
    })
}

/// Read a tensor back to the host as f64, row-major (a device sync).
pub(crate) fn to_host(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
}

/// Draws of a parameter-free standard variate by inversion: uniforms on (0, 1) drawn on the
/// host (the same stream as [`uniform_open01`] in f64), mapped through `icdf` in f64, then
/// cast to `dtype` and moved to `device`, so the tails keep f64 precision in f32 too.
pub(crate) fn uniform_inverse(
    shape: &[usize],
    dtype: DType,
    device: &Device,
    rng: &mut dyn RngCore,
    icdf: impl Fn(f64) -> f64,
) -> Result<Tensor> {
    host_tensor(shape, dtype, device, rng, |r| {
        let u: f64 = rand_distr::Open01.sample(r);
        icdf(u)
    })
}
