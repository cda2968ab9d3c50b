//! The VAE of Pyro's tutorial, as a model and a guide over `vi-infer`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vi_infer::candle::{DType, Device, Module, Tensor};
use vi_infer::dist::{Bernoulli, Distribution, Normal};
use vi_infer::layers::{Linear, linear};
use vi_infer::nn::VarBuilder;
use vi_infer::{Ctx, ParamStore, Plate, Result};

/// Sizes of the network: `784 → hidden → latent` and back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// Width of the hidden layer (400 in Pyro's tutorial).
    pub hidden: usize,
    /// Dimension of the latent `z` (50 in Pyro's tutorial).
    pub latent: usize,
}

impl Default for Sizes {
    fn default() -> Self {
        Self {
            hidden: 400,
            latent: 50,
        }
    }
}

/// Pixels per image.
pub const PIXELS: usize = 784;

/// `x → (loc, scale)` of `q(z | x)`: `softplus(fc1 x)`, then `fc21 h` and `exp(fc22 h)`.
#[derive(Debug, Clone)]
pub struct Encoder {
    fc1: Linear,
    fc21: Linear,
    fc22: Linear,
}

impl Encoder {
    /// The layers, with their variables under `vb` (`fc1`, `fc21`, `fc22`).
    pub fn new(vb: VarBuilder, sizes: Sizes) -> Result<Self> {
        Ok(Self {
            fc1: linear(PIXELS, sizes.hidden, vb.pp("fc1"))?,
            fc21: linear(sizes.hidden, sizes.latent, vb.pp("fc21"))?,
            fc22: linear(sizes.hidden, sizes.latent, vb.pp("fc22"))?,
        })
    }

    /// `(loc, scale)`, each `[batch, latent]`.
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = self.fc1.forward_softplus(x)?;
        Ok((self.fc21.forward(&h)?, self.fc22.forward(&h)?.exp()?))
    }
}

/// `z → logits of p(x | z)`: `softplus(fc1 z)`, then `fc21 h` (the tutorial's sigmoid is the
/// Bernoulli's `from_logits`).
#[derive(Debug, Clone)]
pub struct Decoder {
    fc1: Linear,
    fc21: Linear,
}

impl Decoder {
    /// The layers, with their variables under `vb` (`fc1`, `fc21`).
    pub fn new(vb: VarBuilder, sizes: Sizes) -> Result<Self> {
        Ok(Self {
            fc1: linear(sizes.latent, sizes.hidden, vb.pp("fc1"))?,
            fc21: linear(sizes.hidden, PIXELS, vb.pp("fc21"))?,
        })
    }

    /// The pixels' logits, `[batch, 784]`.
    pub fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let h = self.fc1.forward_softplus(z)?;
        Ok(self.fc21.forward(&h)?)
    }
}

/// The VAE: an encoder (the guide's network) and a decoder (the model's), their variables
/// in a [`ParamStore`] under `encoder.` and `decoder.`.
#[derive(Debug, Clone)]
pub struct Vae {
    /// The guide's network.
    pub encoder: Encoder,
    /// The model's network.
    pub decoder: Decoder,
    sizes: Sizes,
    prior_loc: Tensor,
    prior_scale: Tensor,
}

impl Vae {
    /// Builds the networks in `store` and initialises every weight and bias from a generator
    /// seeded with `seed`, uniform in `±1/√fan_in` (torch's `nn.Linear` default), so that the
    /// same seed gives the same network on every device.
    pub fn new(store: &mut ParamStore, sizes: Sizes, seed: u64) -> Result<Self> {
        let encoder = Encoder::new(store.var_builder("encoder")?, sizes)?;
        let decoder = Decoder::new(store.var_builder("decoder")?, sizes)?;
        let (device, dtype) = match (store.device(), store.dtype()) {
            (Some(d), Some(t)) => (d.clone(), t),
            _ => (Device::Cpu, DType::F32),
        };
        init_uniform(store, seed)?;
        Ok(Self {
            encoder,
            decoder,
            sizes,
            prior_loc: Tensor::zeros(sizes.latent, dtype, &device)?,
            prior_scale: Tensor::ones(sizes.latent, dtype, &device)?,
        })
    }

    /// The network sizes.
    pub fn sizes(&self) -> Sizes {
        self.sizes
    }

    /// The model: `z ~ Normal(0, 1).to_event(1)` and `x ~ Bernoulli(decoder(z)).to_event(1)`
    /// for each image of the batch `x` (`[batch, 784]`), in the plate `data`.
    pub fn model(&self, ctx: &mut Ctx, x: &Tensor) -> Result<()> {
        let decoder = ctx.module("decoder", &self.decoder)?;
        let batch = x.dims()[0];
        ctx.plate("data", batch, |ctx| {
            let prior = Normal::new(&self.prior_loc, &self.prior_scale)?.to_event(1)?;
            let z = ctx.sample("z", prior)?;
            let logits = decoder.forward(&z)?;
            ctx.observe("x", Bernoulli::from_logits(&logits)?.to_event(1)?, x)
        })?;
        Ok(())
    }

    /// The guide: `z ~ Normal(encoder(x)).to_event(1)` for each image, in the plate `data`.
    pub fn guide(&self, ctx: &mut Ctx, x: &Tensor) -> Result<()> {
        let encoder = ctx.module("encoder", &self.encoder)?;
        let batch = x.dims()[0];
        ctx.plate("data", batch, |ctx| {
            let (loc, scale) = encoder.forward(x)?;
            ctx.sample("z", Normal::new(&loc, &scale)?.to_event(1)?)
        })?;
        Ok(())
    }

    /// [`model`](Vae::model) on the images `plate`'s indices pick from `images` (all of
    /// them, `[N, 784]`), `plate` being `Plate::new("data", N)` with a subsample size or
    /// indices of its own, `batch` of them: in data-parallel SVI each rank takes its share
    /// of the batch. The log-densities are scaled by `batch / N` on top of the plate's
    /// `N / share`, so the loss is the batch's sum, as [`model`](Vae::model)'s on those
    /// images (the world's, averaged over the ranks).
    pub fn model_indexed(
        &self,
        ctx: &mut Ctx,
        images: &Tensor,
        plate: Plate<'_>,
        batch: usize,
    ) -> Result<()> {
        let decoder = ctx.module("decoder", &self.decoder)?;
        let n = images.dims()[0];
        ctx.scale(batch as f64 / n as f64, |ctx| {
            ctx.plate_with(plate, |ctx, idx| {
                let x = images.index_select(idx, 0)?;
                let prior = Normal::new(&self.prior_loc, &self.prior_scale)?.to_event(1)?;
                let z = ctx.sample("z", prior)?;
                let logits = decoder.forward(&z)?;
                ctx.observe("x", Bernoulli::from_logits(&logits)?.to_event(1)?, &x)
            })
        })?;
        Ok(())
    }

    /// [`guide`](Vae::guide) on the images `plate`'s indices pick, as
    /// [`model_indexed`](Vae::model_indexed).
    pub fn guide_indexed(
        &self,
        ctx: &mut Ctx,
        images: &Tensor,
        plate: Plate<'_>,
        batch: usize,
    ) -> Result<()> {
        let encoder = ctx.module("encoder", &self.encoder)?;
        let n = images.dims()[0];
        ctx.scale(batch as f64 / n as f64, |ctx| {
            ctx.plate_with(plate, |ctx, idx| {
                let x = images.index_select(idx, 0)?;
                let (loc, scale) = encoder.forward(&x)?;
                ctx.sample("z", Normal::new(&loc, &scale)?.to_event(1)?)
            })
        })?;
        Ok(())
    }

    /// Reconstructions of `x`: the decoder's pixel probabilities at the encoder's mean.
    pub fn reconstruct(&self, x: &Tensor) -> Result<Tensor> {
        let (loc, _) = self.encoder.forward(x)?;
        Ok(vi_infer::dist::ops::sigmoid(&self.decoder.forward(&loc)?)?)
    }

    /// `n` images decoded from draws of the prior: pixel probabilities, `[n, 784]`.
    pub fn sample_prior(&self, n: usize, rng: &mut dyn rand::RngCore) -> Result<Tensor> {
        let prior = Normal::new(&self.prior_loc, &self.prior_scale)?;
        let z = prior.sample(&[n], rng)?;
        Ok(vi_infer::dist::ops::sigmoid(&self.decoder.forward(&z)?)?)
    }
}

/// Sets every module variable in `store` to uniform draws in `±1/√fan_in` from a generator
/// seeded with `seed`, visiting the variables in name order (so the result does not depend
/// on the order the layers were built in).
fn init_uniform(store: &mut ParamStore, seed: u64) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let vars = store.module_vars("");
    let mut new = std::collections::HashMap::new();
    for (name, var) in vars {
        let dims = var.dims().to_vec();
        // A weight is [out, in]; its bias [out] takes the weight's fan-in.
        let fan_in = if dims.len() == 2 {
            dims[1]
        } else {
            let weight = name.trim_end_matches("bias").to_string() + "weight";
            store
                .module_vars("")
                .iter()
                .find(|(n, _)| *n == weight)
                .map_or(dims[0], |(_, w)| w.dims()[1])
        };
        let bound = 1.0 / (fan_in as f64).sqrt();
        let n: usize = dims.iter().product();
        let values: Vec<f64> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
        let t = Tensor::from_vec(values, dims.as_slice(), &Device::Cpu)?;
        new.insert(name, t);
    }
    store.load_tensors(&new)
}
