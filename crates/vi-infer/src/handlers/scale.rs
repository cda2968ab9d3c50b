//! `scale`: multiply log-densities.

use candle_core::Tensor;

use crate::error::{InferError, Result};
use crate::message::Message;
use crate::messenger::Messenger;

/// Multiplies the log-density of every sample site inside by a positive factor
/// (`poutine.scale`), e.g. to weight a likelihood term (KL annealing).
///
/// ```
/// # use candle_core::{DType, Device, Tensor};
/// # use vi_dist::{Constraint, Distribution, Normal};
/// # use vi_infer::{Ctx, ParamStore};
/// # let (mut store, mut rng, dev, zero, one) = vi_infer::doc_support::setup();
/// # let mut ctx = Ctx::new(&mut store, &mut rng);
/// use vi_infer::handlers::ScaleMessenger;
/// let (_, tr) = ctx.trace(|ctx| ctx.with(ScaleMessenger::new(0.1)?, |ctx| ctx.sample("z", Normal::new(&zero, &one)?)))?;
/// assert_eq!(tr.get("z").unwrap().scale, 0.1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ScaleMessenger {
    factor: f64,
    tensor: Option<Tensor>,
}

impl ScaleMessenger {
    /// Scales by `factor`, which must be positive and finite.
    ///
    /// ```
    /// assert!(vi_infer::handlers::ScaleMessenger::new(0.5).is_ok());
    /// assert!(vi_infer::handlers::ScaleMessenger::new(-1.0).is_err());
    /// ```
    pub fn new(factor: f64) -> Result<Self> {
        if !(factor.is_finite() && factor > 0.0) {
            return Err(InferError::Invalid(format!(
                "scale: the factor must be positive and finite, got {factor}"
            )));
        }
        Ok(Self {
            factor,
            tensor: None,
        })
    }

    /// A per-element factor (Pyro's `poutine.scale` with a tensor): it must broadcast to the
    /// batch shape of every site inside without widening it (checked by the ELBOs), and be
    /// positive and finite (checked here when validation is on: one host read).
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_infer::handlers::ScaleMessenger;
    /// let w = Tensor::new(&[0.5f64, 2.0], &Device::Cpu)?;
    /// let _s = ScaleMessenger::tensor(&w)?;
    /// assert!(ScaleMessenger::tensor(&(w - 1.0)?).is_err()); // -0.5 is not a scale
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tensor(factor: &Tensor) -> Result<Self> {
        if vi_dist::validation_enabled() {
            let ok = factor.gt(0.0)?.mul(&factor.lt(f64::INFINITY)?)?;
            let bad = ok.eq(0u8)?.flatten_all()?.to_vec1::<u8>()?;
            if let Some(i) = bad.iter().position(|&b| b != 0) {
                let v = factor
                    .flatten_all()?
                    .get(i)?
                    .to_dtype(candle_core::DType::F64)?
                    .to_scalar::<f64>()?;
                return Err(InferError::Invalid(format!(
                    "scale: the factor (shape {:?}) must be positive and finite, got {v} at flat index {i}",
                    factor.dims()
                )));
            }
        }
        Ok(Self {
            factor: 1.0,
            tensor: Some(factor.clone()),
        })
    }
}

impl Messenger for ScaleMessenger {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        msg.scale *= self.factor;
        if let Some(t) = &self.tensor {
            msg.scale_tensor = Some(match &msg.scale_tensor {
                None => t.clone(),
                Some(s) => s.broadcast_mul(t)?,
            });
        }
        Ok(())
    }
}
