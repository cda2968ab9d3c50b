//! Checkpoints of an [`Svi`]: the store, the optimizer's state and the generator's state in
//! one safetensors file.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vi_optim::{Optimizer, StateDict};

use super::Svi;
use crate::ctx::Ctx;
use crate::elbo::Elbo;
use crate::error::{InferError, Result};

impl<M, G, O, E, TM, TG> Svi<M, G, O, E>
where
    M: FnMut(&mut Ctx<'_>) -> Result<TM>,
    G: FnMut(&mut Ctx<'_>) -> Result<TG>,
    O: Optimizer,
    E: Elbo,
{
    /// Writes a checkpoint: the store's tensors, the optimizer's state and the generator's
    /// state, in one safetensors file. [`load`](Svi::load) then continues bit-identically.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Normal};
    /// # use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
    /// # use vi_optim::{Adam, AdamOptions};
    /// # let dev = Device::Cpu;
    /// # let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    /// # let model = |ctx: &mut Ctx| {
    /// #     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
    /// #     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// # };
    /// # let guide = |ctx: &mut Ctx| {
    /// #     let loc = ctx.param("loc", &zero, Constraint::Real)?;
    /// #     ctx.sample("z", Normal::new(&loc, &one)?)
    /// # };
    /// # let adam = Adam::empty(AdamOptions::default())?;
    /// let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new()).seed(0);
    /// svi.step()?;
    /// let path = std::env::temp_dir().join("vi_infer_doc_save.safetensors");
    /// svi.save(&path)?;
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        // Data-parallel: every rank holds the same state; rank 0 writes, the others wait.
        if let Some(p) = &self.parallel {
            let written = if p.comm.rank() == 0 {
                self.save_here(path.as_ref())
            } else {
                Ok(())
            };
            let status = match &written {
                Ok(()) => Vec::new(),
                Err(e) => e.to_string().into_bytes(),
            };
            let all = p.comm.all_gather_bytes(&status)?;
            written?;
            if !all[0].is_empty() {
                return Err(InferError::PeerFailed {
                    rank: 0,
                    world: p.comm.world_size(),
                    msg: String::from_utf8_lossy(&all[0]).into_owned(),
                });
            }
            return Ok(());
        }
        self.save_here(path.as_ref())
    }

    fn save_here(&self, path: &Path) -> Result<()> {
        let mut all: HashMap<String, Tensor> = HashMap::new();
        for (k, v) in self.store.state()? {
            all.insert(format!("param/{k}"), v);
        }
        for (k, v) in self.optimizer.state_dict()?.prefixed("optim/").iter() {
            all.insert(k.to_string(), v.clone());
        }
        for (k, v) in rng_state(&self.rng)? {
            all.insert(format!("rng/{k}"), v);
        }
        crate::checkpoint::save(&all, path)
    }

    /// Reads a checkpoint written by [`save`](Svi::save): parameters, optimizer state and
    /// generator state.
    ///
    /// ```
    /// # use candle_core::{DType, Device, Tensor};
    /// # use vi_dist::{Constraint, Normal};
    /// # use vi_infer::{Ctx, Svi, TraceMeanFieldElbo};
    /// # use vi_optim::{Adam, AdamOptions};
    /// # let dev = Device::Cpu;
    /// # let (zero, one) = (Tensor::new(0.0f64, &dev)?, Tensor::new(1.0f64, &dev)?);
    /// # let model = |ctx: &mut Ctx| {
    /// #     let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
    /// #     ctx.observe("x", Normal::new(&z, &one)?, &one)
    /// # };
    /// # let guide = |ctx: &mut Ctx| {
    /// #     let loc = ctx.param("loc", &zero, Constraint::Real)?;
    /// #     ctx.sample("z", Normal::new(&loc, &one)?)
    /// # };
    /// # let adam = Adam::empty(AdamOptions::default())?;
    /// let mut svi = Svi::new(model, guide, adam, TraceMeanFieldElbo::new()).seed(0);
    /// svi.step()?;
    /// let path = std::env::temp_dir().join("vi_infer_doc_load.safetensors");
    /// svi.save(&path)?;
    /// let next = svi.step()?.loss;
    /// svi.load(&path)?; // back to the saved state
    /// assert_eq!(svi.step()?.loss, next); // the same step again, bit for bit
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let device = self.store.device().cloned().unwrap_or(Device::Cpu);
        let all = crate::checkpoint::load(path.as_ref(), &device)?;
        let mut params = HashMap::new();
        let mut optim = StateDict::new();
        let mut rng = HashMap::new();
        for (k, v) in all {
            if let Some(name) = k.strip_prefix("param/") {
                params.insert(name.to_string(), v);
            } else if k.starts_with("optim/") {
                optim.insert(k, v);
            } else if let Some(name) = k.strip_prefix("rng/") {
                rng.insert(name.to_string(), v);
            }
        }
        let rng = rng_from_state(&rng)?;
        self.store.load_tensors(&params)?;
        self.optimizer
            .load_state_dict(&optim.strip_prefix("optim/"))?;
        self.rng = rng;
        // Data-parallel: rank 0's state is broadcast again before the next step.
        if let Some(p) = &mut self.parallel {
            p.unsync();
        }
        Ok(())
    }
}

/// The generator's state as 56 bytes: seed, stream, word position (little-endian).
pub(super) fn rng_bytes(rng: &ChaCha8Rng) -> Vec<u8> {
    let mut out = rng.get_seed().to_vec();
    out.extend(rng.get_stream().to_le_bytes());
    out.extend(rng.get_word_pos().to_le_bytes());
    out
}

/// [`rng_bytes`] read back.
pub(super) fn rng_from_bytes(bytes: &[u8]) -> Result<ChaCha8Rng> {
    let bad = || {
        InferError::Invalid(format!(
            "a generator state of {} bytes, not 56",
            bytes.len()
        ))
    };
    let seed: [u8; 32] = bytes
        .get(..32)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let stream: [u8; 8] = bytes
        .get(32..40)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let pos: [u8; 16] = bytes
        .get(40..56)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let mut rng = ChaCha8Rng::from_seed(seed);
    rng.set_stream(u64::from_le_bytes(stream));
    rng.set_word_pos(u128::from_le_bytes(pos));
    Ok(rng)
}

/// The generator's seed, stream and word position as tensors (u8 seed; the u64/u128 words
/// bit-cast to i64).
fn rng_state(rng: &ChaCha8Rng) -> Result<Vec<(String, Tensor)>> {
    let dev = Device::Cpu;
    let seed = rng.get_seed();
    let pos = rng.get_word_pos();
    let words = [
        rng.get_stream() as i64,
        (pos >> 64) as u64 as i64,
        pos as u64 as i64,
    ];
    Ok(vec![
        ("seed".into(), Tensor::from_slice(&seed, 32, &dev)?),
        ("words".into(), Tensor::from_slice(&words, 3, &dev)?),
    ])
}

fn rng_from_state(state: &HashMap<String, Tensor>) -> Result<ChaCha8Rng> {
    let missing = |k: &str| InferError::Invalid(format!("checkpoint lacks the generator's `{k}`"));
    let seed: Vec<u8> = state
        .get("seed")
        .ok_or_else(|| missing("seed"))?
        .to_vec1()?;
    let words: Vec<i64> = state
        .get("words")
        .ok_or_else(|| missing("words"))?
        .to_vec1()?;
    let (Ok(seed), [stream, hi, lo]) = (<[u8; 32]>::try_from(seed), words.as_slice()) else {
        return Err(InferError::Invalid(
            "checkpoint: malformed generator state".into(),
        ));
    };
    let mut rng = ChaCha8Rng::from_seed(seed);
    rng.set_stream(*stream as u64);
    rng.set_word_pos((u128::from(*hi as u64) << 64) | u128::from(*lo as u64));
    Ok(rng)
}
