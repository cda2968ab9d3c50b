//! Multivariate normal pairs: MVN, LowRankMVN, and `Independent(Normal, 1)` against either,
//! both directions.
//!
//! Every rule is KL(p ‖ q) = ½ [tr(Σq⁻¹ Σp) + δᵀ Σq⁻¹ δ − n + ln det Σq − ln det Σp] with
//! δ = μq − μp, computed from each side's own factorisation: the Cholesky factor `L` of an
//! MVN (whatever constructor built it), the capacitance form of a low-rank MVN
//! (`Σ = W Wᵀ + diag(D)`, `C = I + Wᵀ D⁻¹ W = L_C L_Cᵀ`, `Σ⁻¹ = D⁻¹ − D⁻¹ W C⁻¹ Wᵀ D⁻¹`,
//! `ln det Σ = 2 Σ ln diag L_C + Σ ln D`), or the scales of a diagonal normal, which never
//! becomes a matrix. A low-rank `q` costs O(n r²) (O(n² r) against a dense `p`), a diagonal
//! `q` O(n) per element of a low-rank `p` and O(n²) of a dense one; a dense `q` costs its
//! triangular solves, O(n³). When `p` is batched and `q` is not (a guide against a prior),
//! `q`'s factor is used once for the whole batch rather than copied per element.
//!
//! Gradients w.r.t. a `scale_tril` follow torch's: a factor read by a triangular solve gets
//! a lower-triangular gradient; a factor read as a matrix (`p`'s in `tr(Σq⁻¹ Lp Lpᵀ)`, `q`'s
//! in the precision of `Independent(Normal, 1) ‖ MVN`) also gets the gradient of its zero
//! upper triangle.

use std::any::TypeId;

use candle_core::{D, Tensor};
use vi_dist::{
    Distribution, Independent, LowRankMultivariateNormal, MultivariateNormal, Normal, ops,
};

use crate::error::Result;
use crate::registry::KlRegistry;
use crate::wrappers::{expanded_natively, fallback};

pub(super) fn register(reg: &mut KlRegistry) {
    reg.insert("closed form", mvn_mvn);
    reg.insert("closed form; q by Woodbury, O(n r²)", lowrank_lowrank);
    reg.insert("closed form", lowrank_mvn);
    reg.insert("closed form; q by Woodbury", mvn_lowrank);
    const DIAG: &str = "closed form when the Independent is a diagonal Normal (1 dim); else the wrapper rules (point masses)";
    reg.insert(DIAG, independent_mvn);
    reg.insert(DIAG, mvn_independent);
    reg.insert(DIAG, independent_lowrank);
    reg.insert(DIAG, lowrank_independent);
}

// ---------- the rules ----------

/// KL of two MVNs: `Σ ln diag Lq − Σ ln diag Lp + ½ (‖Lq⁻¹ Lp‖²_F + ‖Lq⁻¹ δ‖² − n)`.
fn mvn_mvn(p: &MultivariateNormal, q: &MultivariateNormal, _: &KlRegistry) -> Result<Tensor> {
    let (lp, lq) = (p.scale_tril(), q.scale_tril());
    let half_logdet = ops::triangular_logdet(lq)?.broadcast_sub(&ops::triangular_logdet(lp)?)?;
    let trace = frob2(&fold_apply(lq, lp, solve_lower)?)?;
    let maha = mahalanobis_tril(lq, &delta(p.loc(), q.loc())?)?;
    assemble(&half_logdet, &trace, &maha, n_of(q))
}

/// KL of two low-rank MVNs, with `A = L_C⁻¹ Wqᵀ Dq⁻¹` (`r × n`):
/// `tr(Σq⁻¹ Σp) = Σ Dp/Dq + Σ Wp²/Dq − Σ A² Dp − ‖A Wp‖²_F`,
/// `δᵀ Σq⁻¹ δ = Σ δ²/Dq − ‖A δ‖²`.
fn lowrank_lowrank(
    p: &LowRankMultivariateNormal,
    q: &LowRankMultivariateNormal,
    _: &KlRegistry,
) -> Result<Tensor> {
    let (pf, qf) = (LowRank::new(p)?, LowRank::new(q)?);
    let (wp, dp) = (p.cov_factor(), p.cov_diag());
    let dq = q.cov_diag();
    let trace = dp.broadcast_div(dq)?.sum(D::Minus1)?;
    let trace =
        trace.broadcast_add(&sum2(&wp.sqr()?.broadcast_div(&dq.unsqueeze(D::Minus1)?)?)?)?;
    let trace = trace.broadcast_sub(&sum2(
        &qf.a.sqr()?.broadcast_mul(&dp.unsqueeze(D::Minus2)?)?,
    )?)?;
    let trace = trace.broadcast_sub(&frob2(&fold_apply(&qf.a, wp, matmul)?)?)?;
    let half_logdet = qf.half_logdet.broadcast_sub(&pf.half_logdet)?;
    let maha = qf.mahalanobis(&delta(p.loc(), q.loc())?)?;
    assemble(&half_logdet, &trace, &maha, n_of(q))
}

/// KL of a low-rank MVN to an MVN, with `M = Lq⁻¹`:
/// `tr(Σq⁻¹ Σp) = ‖M Wp‖²_F + Σⱼ Dpⱼ ‖M₍:,ⱼ₎‖²`, `δᵀ Σq⁻¹ δ = ‖M δ‖²`.
fn lowrank_mvn(
    p: &LowRankMultivariateNormal,
    q: &MultivariateNormal,
    _: &KlRegistry,
) -> Result<Tensor> {
    let pf = LowRank::new(p)?;
    let lq = q.scale_tril();
    let m = ops::triangular_inverse(lq, true)?;
    let col_sq = m.sqr()?.sum(D::Minus2)?;
    let trace = frob2(&fold_apply(&m, p.cov_factor(), matmul)?)?
        .broadcast_add(&p.cov_diag().broadcast_mul(&col_sq)?.sum(D::Minus1)?)?;
    let d = delta(p.loc(), q.loc())?.unsqueeze(D::Minus1)?;
    let maha = frob2(&fold_apply(&m, &d, matmul)?)?;
    let half_logdet = ops::triangular_logdet(lq)?.broadcast_sub(&pf.half_logdet)?;
    assemble(&half_logdet, &trace, &maha, n_of(q))
}

/// KL of an MVN to a low-rank MVN, with `A = L_C⁻¹ Wqᵀ Dq⁻¹`:
/// `tr(Σq⁻¹ Lp Lpᵀ) = Σᵢⱼ Lpᵢⱼ²/Dqᵢ − ‖A Lp‖²_F`, `δᵀ Σq⁻¹ δ = Σ δ²/Dq − ‖A δ‖²`.
fn mvn_lowrank(
    p: &MultivariateNormal,
    q: &LowRankMultivariateNormal,
    _: &KlRegistry,
) -> Result<Tensor> {
    let qf = LowRank::new(q)?;
    let lp = p.scale_tril();
    let trace = sum2(
        &lp.sqr()?
            .broadcast_div(&q.cov_diag().unsqueeze(D::Minus1)?)?,
    )?
    .broadcast_sub(&frob2(&fold_apply(&qf.a, lp, matmul)?)?)?;
    let half_logdet = qf.half_logdet.broadcast_sub(&ops::triangular_logdet(lp)?)?;
    let maha = qf.mahalanobis(&delta(p.loc(), q.loc())?)?;
    assemble(&half_logdet, &trace, &maha, n_of(q))
}

/// KL of a diagonal normal `N(μp, diag σ²)` (as `Independent(Normal, 1)`) to an MVN (Pyro's
/// rule): `Σ ln diag Lq − Σ ln σ + ½ (Σⱼ σⱼ² (Σq⁻¹)ⱼⱼ + ‖Lq⁻¹ δ‖² − n)`. Any other
/// `Independent` (a point mass, say) goes to the wrapper rules.
fn independent_mvn(p: &Independent, q: &MultivariateNormal, reg: &KlRegistry) -> Result<Tensor> {
    let Some((loc, scale)) = diagonal_normal(p)? else {
        return fallback(p, q, reg);
    };
    let lq = q.scale_tril();
    let trace = scale
        .sqr()?
        .broadcast_mul(&precision_diagonal(lq)?)?
        .sum(D::Minus1)?;
    let half_logdet = ops::triangular_logdet(lq)?.broadcast_sub(&scale.log()?.sum(D::Minus1)?)?;
    let maha = mahalanobis_tril(lq, &delta(&loc, q.loc())?)?;
    assemble(&half_logdet, &trace, &maha, n_of(q))
}

/// KL of an MVN to a diagonal normal `N(μq, diag σ²)`:
/// `Σ ln σ − Σ ln diag Lp + ½ (Σᵢⱼ Lpᵢⱼ²/σᵢ² + Σ (δ/σ)² − n)`.
fn mvn_independent(p: &MultivariateNormal, q: &Independent, reg: &KlRegistry) -> Result<Tensor> {
    let Some((loc, scale)) = diagonal_normal(q)? else {
        return fallback(p, q, reg);
    };
    let lp = p.scale_tril();
    let var = scale.sqr()?;
    let trace = sum2(&lp.sqr()?.broadcast_div(&var.unsqueeze(D::Minus1)?)?)?;
    let half_logdet = scale
        .log()?
        .sum(D::Minus1)?
        .broadcast_sub(&ops::triangular_logdet(lp)?)?;
    let maha = delta(p.loc(), &loc)?
        .sqr()?
        .broadcast_div(&var)?
        .sum(D::Minus1)?;
    assemble(&half_logdet, &trace, &maha, n_of(p))
}

/// KL of a diagonal normal to a low-rank MVN, with `A = L_C⁻¹ Wqᵀ Dq⁻¹`:
/// `tr(Σq⁻¹ diag σ²) = Σ σ²/Dq − Σₖⱼ Aₖⱼ² σⱼ²`, `δᵀ Σq⁻¹ δ = Σ δ²/Dq − ‖A δ‖²`.
fn independent_lowrank(
    p: &Independent,
    q: &LowRankMultivariateNormal,
    reg: &KlRegistry,
) -> Result<Tensor> {
    let Some((loc, scale)) = diagonal_normal(p)? else {
        return fallback(p, q, reg);
    };
    let qf = LowRank::new(q)?;
    let var = scale.sqr()?;
    let trace = var
        .broadcast_div(q.cov_diag())?
        .sum(D::Minus1)?
        .broadcast_sub(&sum2(
            &qf.a.sqr()?.broadcast_mul(&var.unsqueeze(D::Minus2)?)?,
        )?)?;
    let half_logdet = qf
        .half_logdet
        .broadcast_sub(&scale.log()?.sum(D::Minus1)?)?;
    let maha = qf.mahalanobis(&delta(&loc, q.loc())?)?;
    assemble(&half_logdet, &trace, &maha, n_of(q))
}

/// KL of a low-rank MVN to a diagonal normal:
/// `Σ ln σ − ½ ln det Σp + ½ (Σᵢ (Σₖ Wᵢₖ² + Dᵢ)/σᵢ² + Σ (δ/σ)² − n)`.
fn lowrank_independent(
    p: &LowRankMultivariateNormal,
    q: &Independent,
    reg: &KlRegistry,
) -> Result<Tensor> {
    let Some((loc, scale)) = diagonal_normal(q)? else {
        return fallback(p, q, reg);
    };
    let pf = LowRank::new(p)?;
    let var = scale.sqr()?;
    let p_var = p
        .cov_factor()
        .sqr()?
        .sum(D::Minus1)?
        .broadcast_add(p.cov_diag())?;
    let trace = p_var.broadcast_div(&var)?.sum(D::Minus1)?;
    let half_logdet = scale
        .log()?
        .sum(D::Minus1)?
        .broadcast_sub(&pf.half_logdet)?;
    let maha = delta(p.loc(), &loc)?
        .sqr()?
        .broadcast_div(&var)?
        .sum(D::Minus1)?;
    assemble(&half_logdet, &trace, &maha, n_of(p))
}

// ---------- pieces ----------

/// `half_logdet + ½ (trace + maha − n)`, broadcasting the three.
fn assemble(half_logdet: &Tensor, trace: &Tensor, maha: &Tensor, n: usize) -> Result<Tensor> {
    let inner = (trace.broadcast_add(maha)? - n as f64)?;
    Ok(half_logdet.broadcast_add(&(inner * 0.5)?)?)
}

/// The event size of an MVN-like distribution (event shape `[n]`).
fn n_of(d: &dyn Distribution) -> usize {
    d.event_shape().last().copied().unwrap_or(0)
}

/// `μq − μp`, broadcast over both batch shapes.
fn delta(loc_p: &Tensor, loc_q: &Tensor) -> Result<Tensor> {
    Ok(loc_q.broadcast_sub(loc_p)?)
}

/// `‖X‖²_F` of each matrix: `[.., m, k] -> [..]`.
fn frob2(x: &Tensor) -> Result<Tensor> {
    sum2(&x.sqr()?)
}

/// The sum over the last two dims: `[.., m, k] -> [..]`.
fn sum2(x: &Tensor) -> Result<Tensor> {
    Ok(x.sum(D::Minus1)?.sum(D::Minus1)?)
}

/// `‖L⁻¹ δ‖²` for a lower factor `L [.., n, n]` and `δ [.., n]`.
fn mahalanobis_tril(l: &Tensor, delta: &Tensor) -> Result<Tensor> {
    frob2(&fold_apply(l, &delta.unsqueeze(D::Minus1)?, solve_lower)?)
}

fn solve_lower(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(ops::solve_triangular(a, b, true)?)
}

fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(ops::batch_matmul(a, b)?)
}

/// `f(a, b)` for a batched matrix op `[ba.., m, n] × [bb.., n, k] -> [.., m, k]` (a product
/// or a solve). When `b` has extra leading batch dims over `a`'s (a batched guide against an
/// unbatched prior), they are folded into `b`'s columns, so `a` is used once instead of
/// being copied per batch element; otherwise the op broadcasts.
fn fold_apply(a: &Tensor, b: &Tensor, f: fn(&Tensor, &Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let (ra, rb) = (a.rank() - 2, b.rank() - 2);
    let (ba, bb) = (&a.dims()[..ra], &b.dims()[..rb]);
    if rb <= ra || &bb[rb - ra..] != ba {
        return f(a, b);
    }
    let lead = &bb[..rb - ra];
    let count: usize = lead.iter().product();
    if count == 0 {
        return f(a, b);
    }
    if count == 1 {
        let y = f(a, &b.reshape(&b.dims()[rb - ra..])?)?;
        let shape: Vec<usize> = lead.iter().chain(y.dims()).copied().collect();
        return Ok(y.reshape(shape)?);
    }
    let (n, k) = (b.dims()[rb], b.dims()[rb + 1]);
    // b: [lead, ba.., n, k] -> [ba.., n, lead, k] -> [ba.., n, lead·k]
    let shape: Vec<usize> = [count].iter().chain(ba).chain(&[n, k]).copied().collect();
    let order: Vec<usize> = (1..=ra + 1).chain([0, ra + 2]).collect();
    let cols: Vec<usize> = ba.iter().copied().chain([n, count * k]).collect();
    let b = b.reshape(shape)?.permute(order)?.reshape(cols)?;
    let y = f(a, &b)?;
    let m = y.dims()[ra];
    // y: [ba.., m, lead·k] -> [ba.., m, lead, k] -> [lead, ba.., m, k]
    let split: Vec<usize> = ba.iter().copied().chain([m, count, k]).collect();
    let order: Vec<usize> = [ra + 1].into_iter().chain(0..=ra).chain([ra + 2]).collect();
    let out: Vec<usize> = lead.iter().chain(ba).copied().chain([m, k]).collect();
    Ok(y.reshape(split)?.permute(order)?.reshape(out)?)
}

/// The diagonal of the precision `(L Lᵀ)⁻¹`, `[.., n, n] -> [.., n]`: `Σᵢ (L⁻¹)ᵢⱼ²`.
///
/// torch forms the precision with `cholesky_inverse`, whose gradient treats `L` as a full
/// matrix; the triangular inverse alone would give only the lower triangle of it. With
/// `U` the strict upper triangle of `L` (zero), `(L + U)⁻¹ = L⁻¹ − L⁻¹ U L⁻¹ + O(U²)`, so
/// adding `L⁻¹ U L⁻¹` minus its detached value (zero either way) supplies the missing
/// gradient without changing the value. When `L` carries no gradient (a fixed prior) the
/// correction is skipped: it would only cost time.
fn precision_diagonal(l: &Tensor) -> Result<Tensor> {
    let inv = ops::triangular_inverse(l, true)?;
    if !l.track_op() {
        return Ok(inv.sqr()?.sum(D::Minus2)?);
    }
    let upper = (l - ops::tril(l)?)?;
    let first_order = ops::batch_matmul(&ops::batch_matmul(&inv, &upper)?, &inv)?;
    let inv = (inv - (&first_order - first_order.detach())?)?;
    Ok(inv.sqr()?.sum(D::Minus2)?)
}

/// The `loc` and `scale` (each `batch + [n]`) of an `Independent` that is a diagonal
/// normal: one reinterpreted dim over a `Normal`, or over an `Expanded` of one (expanded
/// natively: its parameters broadcast to the batch shape, as views).
fn diagonal_normal(d: &Independent) -> Result<Option<(Tensor, Tensor)>> {
    if d.reinterpreted_batch_ndims() != 1 {
        return Ok(None);
    }
    let expanded = expanded_natively(d.base(), TypeId::of::<Normal>())?;
    let base = expanded.as_deref().unwrap_or(d.base());
    Ok(base
        .as_any()
        .downcast_ref::<Normal>()
        .map(|n| (n.loc().clone(), n.scale().clone())))
}

/// What a low-rank MVN contributes to a KL: `A = L_C⁻¹ Wᵀ D⁻¹` (`batch + [r, n]`, so that
/// `Σ⁻¹ = D⁻¹ − Aᵀ A`) and `½ ln det Σ = Σ ln diag L_C + ½ Σ ln D`.
struct LowRank<'a> {
    d: &'a Tensor,
    a: Tensor,
    half_logdet: Tensor,
}

impl<'a> LowRank<'a> {
    fn new(dist: &'a LowRankMultivariateNormal) -> Result<Self> {
        let (w, d) = (dist.cov_factor(), dist.cov_diag());
        let r = w.dims()[w.rank() - 1];
        let wt_dinv = w.broadcast_div(&d.unsqueeze(D::Minus1)?)?.t()?;
        let eye = Tensor::eye(r, w.dtype(), w.device())?;
        let capacitance = ops::batch_matmul(&wt_dinv, w)?.broadcast_add(&eye)?;
        let cap_tril = ops::cholesky(&capacitance)?;
        let a = ops::solve_triangular(&cap_tril, &wt_dinv, true)?;
        let half_logdet =
            ops::triangular_logdet(&cap_tril)?.broadcast_add(&(d.log()?.sum(D::Minus1)? * 0.5)?)?;
        Ok(Self { d, a, half_logdet })
    }

    /// `δᵀ Σ⁻¹ δ = Σ δ²/D − ‖A δ‖²` for `δ [.., n]`.
    fn mahalanobis(&self, delta: &Tensor) -> Result<Tensor> {
        let diag = delta.sqr()?.broadcast_div(self.d)?.sum(D::Minus1)?;
        let low = frob2(&fold_apply(&self.a, &delta.unsqueeze(D::Minus1)?, matmul)?)?;
        Ok(diag.broadcast_sub(&low)?)
    }
}
