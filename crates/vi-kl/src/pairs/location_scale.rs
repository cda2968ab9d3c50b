//! Pairs whose `p` is a location-scale family or a transform of one: Normal, Laplace,
//! Cauchy, Gumbel, HalfNormal, LogNormal.

use candle_core::Tensor;
use vi_dist::Normal;

use crate::error::Result;
use crate::registry::KlRegistry;

pub(super) fn register(reg: &mut KlRegistry) {
    reg.insert("closed form", normal_normal);
}

/// KL(N(μp, σp²) ‖ N(μq, σq²)) = ½ (r + ((μp − μq)/σq)² − 1 − ln r), r = (σp/σq)².
fn normal_normal(p: &Normal, q: &Normal, _: &KlRegistry) -> Result<Tensor> {
    let ratio = p.scale().broadcast_div(q.scale())?.sqr()?;
    let t = p
        .loc()
        .broadcast_sub(q.loc())?
        .broadcast_div(q.scale())?
        .sqr()?;
    let kl = ((ratio.broadcast_add(&t)? - ratio.log()?)? - 1.0)?;
    Ok((kl * 0.5)?)
}
