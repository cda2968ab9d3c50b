//! The same VAE and loss written in plain candle, as a user without `vi-infer` would: the
//! baseline of the `bench` subcommand.
//!
//! The layers are `candle_nn::Linear`s over `Var`s of their own, copied from a
//! [`ParamStore`] that [`Vae::new`](crate::model::Vae::new) initialised, so both start from
//! the same weights. One [`step`](PlainVae::step):
//!
//! - encoder: `h = softplus(fc1 x)`, `loc = fc21 h`, `scale = exp(fc22 h)`;
//! - `z = loc + scale · ε` with `ε ~ N(0, 1)` drawn by `vi_dist::standard_normal` from a
//!   ChaCha8 generator seeded as `Svi::seed` seeds its own, so both draw the same `ε`;
//! - `KL(N(loc, scale) ‖ N(0, 1)) = ½ (scale² + loc² − 1 − 2 ln scale)`, summed over the
//!   latent dims and the batch;
//! - decoder: `logits = fc21 softplus(fc1 z)`, Bernoulli log-likelihood
//!   `x · logits − softplus(logits)` summed over the pixels and the batch;
//! - `loss = KL − log-likelihood` (the sum over the batch, as `TraceMeanFieldElbo`'s loss),
//!   one backward pass and one step of the same `vi_optim::Adam` (lr 1e-3).
//!
//! candle has no softplus: both versions use `vi_dist::ops::softplus`, the same kernel, so
//! the comparison measures the framework and not two softplus implementations.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_infer::candle::{DType, Module, Tensor, Var};
use vi_infer::dist::ops::softplus;
use vi_infer::nn::Linear;
use vi_infer::optim::{Adam, AdamOptions, Optimizer};
use vi_infer::{InferError, ParamStore, Result};

use crate::model::Sizes;

/// The VAE in plain candle: five `Linear` layers, their `Var`s, an Adam and a generator.
pub struct PlainVae {
    enc_fc1: Linear,
    enc_fc21: Linear,
    enc_fc22: Linear,
    dec_fc1: Linear,
    dec_fc21: Linear,
    latent: usize,
    opt: Adam,
    rng: ChaCha8Rng,
}

impl std::fmt::Debug for PlainVae {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainVae")
            .field("latent", &self.latent)
            .finish_non_exhaustive()
    }
}

impl PlainVae {
    /// Copies the weights of the VAE in `store` (the variables `encoder.fc1.weight`, …, that
    /// [`Vae::new`](crate::model::Vae::new) built) into `Var`s of its own, with an Adam of
    /// learning rate `lr` over them and a generator seeded with `seed` for `ε`.
    ///
    /// ```
    /// use vae::model::{Sizes, Vae};
    /// use vae::plain::PlainVae;
    /// use vi_infer::ParamStore;
    /// use vi_infer::candle::{DType, Device, Tensor};
    /// let sizes = Sizes { hidden: 8, latent: 2 };
    /// let mut store = ParamStore::new(&Device::Cpu, DType::F32);
    /// let _vae = Vae::new(&mut store, sizes, 0)?;
    /// let mut plain = PlainVae::from_store(&store, sizes, 1e-3, 0)?;
    /// let x = Tensor::full(0.5f32, (4, 784), &Device::Cpu)?;
    /// assert!(plain.step(&x)?.is_finite());
    /// # Ok::<(), vi_infer::InferError>(())
    /// ```
    pub fn from_store(store: &ParamStore, sizes: Sizes, lr: f64, seed: u64) -> Result<Self> {
        let mut vars: Vec<(String, Var)> = Vec::new();
        let mut layer = |name: &str| -> Result<Linear> {
            let mut copy = |part: &str| -> Result<Var> {
                let key = format!("{name}.{part}");
                let Some(t) = store.get(&key)? else {
                    return Err(InferError::Param {
                        name: key,
                        msg: "not in the store: build the VAE with Vae::new first".into(),
                    });
                };
                // A fresh variable: `detach` then `from_tensor` copies the storage.
                let v = Var::from_tensor(&t.detach())?;
                vars.push((key, v.clone()));
                Ok(v)
            };
            let w = copy("weight")?;
            let b = copy("bias")?;
            Ok(Linear::new(
                w.as_tensor().clone(),
                Some(b.as_tensor().clone()),
            ))
        };
        let enc_fc1 = layer("encoder.fc1")?;
        let enc_fc21 = layer("encoder.fc21")?;
        let enc_fc22 = layer("encoder.fc22")?;
        let dec_fc1 = layer("decoder.fc1")?;
        let dec_fc21 = layer("decoder.fc21")?;
        let opt = Adam::new(
            vars,
            AdamOptions {
                lr,
                ..Default::default()
            },
        )?;
        Ok(Self {
            enc_fc1,
            enc_fc21,
            enc_fc22,
            dec_fc1,
            dec_fc21,
            latent: sizes.latent,
            opt,
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }

    /// The loss of the batch `x` (`[batch, 784]`) and its graph, drawing `ε` from the
    /// generator.
    pub fn loss(&mut self, x: &Tensor) -> Result<Tensor> {
        // Encoder.
        let h = softplus(&self.enc_fc1.forward(x)?)?;
        let loc = self.enc_fc21.forward(&h)?;
        let log_scale = self.enc_fc22.forward(&h)?;
        let scale = log_scale.exp()?;
        // z = loc + scale · ε
        let eps = vi_infer::dist::standard_normal(
            &[x.dims()[0], self.latent],
            x.dtype(),
            x.device(),
            &mut self.rng,
        )?;
        let z = (eps * &scale)?.add(&loc)?;
        // KL(N(loc, scale) ‖ N(0, 1)) = ½ (scale² + loc² − 1 − 2 ln scale)
        let kl = ((scale.sqr()? + loc.sqr()?)? - log_scale.affine(2.0, 1.0)?)?;
        let kl = (kl.sum_all()? * 0.5)?;
        // Decoder and the Bernoulli log-likelihood from the logits.
        let logits = self
            .dec_fc21
            .forward(&softplus(&self.dec_fc1.forward(&z)?)?)?;
        let ll = ((x * &logits)? - softplus(&logits)?)?.sum_all()?;
        Ok((kl - ll)?)
    }

    /// One training step on the batch `x`: the loss, one backward pass, one Adam step.
    /// Returns the loss read back as `f64`, as `Svi::step` does.
    pub fn step(&mut self, x: &Tensor) -> Result<f64> {
        let loss = self.loss(x)?;
        let grads = loss.backward()?;
        self.opt.step(&grads)?;
        Ok(loss.to_dtype(DType::F64)?.to_scalar::<f64>()?)
    }
}
