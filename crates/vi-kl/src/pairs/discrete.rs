//! Pairs of discrete families: Bernoulli, Binomial, Categorical, OneHotCategorical, Geometric, Poisson.
//!
//! The binary families are computed from their log-odds (`ln p = −softplus(−l)`,
//! `ln(1 − p) = −softplus(l)`), so extreme logits stay accurate. A probability given as
//! exactly 0 or 1 (the `probs` form, whose logits are clamped) is recognised and treated
//! exactly: `0·ln 0 = 0`, and `+inf` only where `q` puts no mass where `p` does.

use candle_core::{D, Tensor};
use vi_dist::ops::{log1p, sigmoid, softplus, xlogy};
use vi_dist::{Bernoulli, Binomial, Categorical, Geometric, OneHotCategorical, Poisson};

use crate::error::{KlError, Result};
use crate::registry::KlRegistry;
use crate::util::{describe, fill_where, full, inf_where, joint_batch};

pub(super) fn register(reg: &mut KlRegistry) {
    reg.insert(
        "closed form from logits; +inf where q gives 0 probability to an outcome p gives",
        bernoulli_bernoulli,
    );
    reg.insert(
        "closed form; +inf where q's rate is 0 and p's probability is not",
        bernoulli_poisson,
    );
    reg.insert(
        "closed form from logits for equal total counts; +inf where p's total count exceeds \
         q's; Unsupported where it is below",
        binomial_binomial,
    );
    reg.insert(
        "closed form (log-softmax); +inf where q gives 0 probability to a class p gives; \
         Unsupported for different class counts",
        categorical_categorical,
    );
    reg.insert(
        "as Categorical‖Categorical",
        one_hot_categorical_one_hot_categorical,
    );
    reg.insert(
        "closed form from logits; +inf where q's probability is 1 and p's is not",
        geometric_geometric,
    );
    reg.insert("+inf: q's support does not cover p's", poisson_bernoulli);
    reg.insert("+inf: q's support does not cover p's", poisson_binomial);
    reg.insert(
        "closed form; +inf where q's rate is 0 and p's is not",
        poisson_poisson,
    );
}

/// A stand-in for an infinite log-odds: `softplus(−BIG)` and `sigmoid(−BIG)` are exactly 0 in
/// both float types, and every expression built from it stays finite.
const BIG: f64 = 1.0e4;

/// `a && !b` for u8 masks, broadcast.
fn and_not(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(a.broadcast_gt(b)?)
}

/// One side of a binary family (Bernoulli, Binomial, Geometric): its probability `probs` and
/// effective log-odds `logits`, where a probability that is exactly 0 or 1 has logits `∓BIG`
/// (so `softplus`, `sigmoid` give the exact 0s and 1s), and the masks of those exact values.
struct Binary {
    probs: Tensor,
    logits: Tensor,
    zero: Tensor,
    one: Tensor,
}

impl Binary {
    /// From a family's `probs()` and `logits()`. A probability counts as exactly `0` (or `1`)
    /// when it is 0 (1) and either the logits are infinite or `sigmoid(logits)` differs from it:
    /// the family was built from probabilities, whose logits are clamped. A probability that
    /// is 0 or 1 only because `sigmoid` of a large finite logit rounds is left to the
    /// logits, which keep the exact answer.
    fn new(probs: Tensor, logits: Tensor) -> Result<Self> {
        let from_logits = sigmoid(&logits)?;
        let inf = logits.abs()?.eq(f64::INFINITY)?;
        let exactly = |v: f64| -> Result<Tensor> {
            let at = probs.eq(v)?;
            let clamped = from_logits.ne(v)?;
            Ok(at.broadcast_mul(&inf.broadcast_maximum(&clamped)?)?)
        };
        let (zero, one) = (exactly(0.0)?, exactly(1.0)?);
        let logits = fill_where(&zero, -BIG, &fill_where(&one, BIG, &logits)?)?;
        Ok(Self {
            probs,
            logits,
            zero,
            one,
        })
    }
}

/// KL(Bern(p) ‖ Bern(q)) elementwise, broadcast:
/// `p·(softplus(−l_q) − softplus(−l_p)) + (1 − p)·(softplus(l_q) − softplus(l_p))`, with
/// `1 − p = sigmoid(−l_p)`; the first term is `0` where `p = 0` and `+inf` where `q = 0 < p`,
/// the second `0` where `p = 1` and `+inf` where `q = 1 > p`.
fn bernoulli_kl(p: &Binary, q: &Binary) -> Result<Tensor> {
    let (lp, lq) = (&p.logits, &q.logits);
    let log_ratio_1 = softplus(&lq.neg()?)?.broadcast_sub(&softplus(&lp.neg()?)?)?;
    let log_ratio_0 = softplus(lq)?.broadcast_sub(&softplus(lp)?)?;
    let t1 = p.probs.broadcast_mul(&log_ratio_1)?;
    let t1 = inf_where(&and_not(&q.zero, &p.zero)?, &t1)?;
    let t2 = sigmoid(&lp.neg()?)?.broadcast_mul(&log_ratio_0)?;
    let t2 = inf_where(&and_not(&q.one, &p.one)?, &t2)?;
    Ok((t1 + t2)?)
}

/// KL(Bernoulli(p) ‖ Bernoulli(q)) = p ln(p/q) + (1 − p) ln((1 − p)/(1 − q)), from the logits
/// (see [`bernoulli_kl`]); `+inf` where `q` is 0 or 1 and `p` is not the same. The two batch
/// shapes broadcast (torch's does not).
fn bernoulli_bernoulli(p: &Bernoulli, q: &Bernoulli, _: &KlRegistry) -> Result<Tensor> {
    let bp = Binary::new(p.probs()?, p.logits()?)?;
    let bq = Binary::new(q.probs()?, q.logits()?)?;
    bernoulli_kl(&bp, &bq)
}

/// KL(Bernoulli(p) ‖ Poisson(λ)) = −H(p) + λ − p ln λ, with
/// `−H(p) = −p·softplus(−l) − (1 − p)·softplus(l)` (no cancellation) and `p ln λ` as `xlogy`
/// (`+inf` KL where `λ = 0 < p`).
fn bernoulli_poisson(p: &Bernoulli, q: &Poisson, _: &KlRegistry) -> Result<Tensor> {
    let bp = Binary::new(p.probs()?, p.logits()?)?;
    let l = &bp.logits;
    let neg_entropy =
        ((&bp.probs * softplus(&l.neg()?)?)? + (sigmoid(&l.neg()?)? * softplus(l)?)?)?.neg()?;
    let rate = q.rate();
    Ok(neg_entropy
        .broadcast_add(rate)?
        .broadcast_sub(&xlogy(&bp.probs, rate)?)?)
}

/// KL(Bin(n, p) ‖ Bin(m, q)) for `n >= m`: `m·KL(Bern(p) ‖ Bern(q))` (see [`bernoulli_kl`]),
/// the KL where `n = m`. Where `n > m` it is `+inf` (p reaches counts q cannot; torch's
/// answer), except where `p = 0`: p is then the point mass at 0 and the KL is
/// `−m ln(1 − q)`, the same formula. A `p` whose total count is below `q`'s anywhere has no
/// closed form (as torch): [`KlError::Unsupported`].
fn binomial_binomial(p: &Binomial, q: &Binomial, _: &KlRegistry) -> Result<Tensor> {
    let (n, m) = (p.total_count(), q.total_count());
    let below = n.broadcast_lt(m)?;
    if below.flatten_all()?.to_vec1::<u8>()?.contains(&1) {
        return Err(KlError::Unsupported {
            p: describe(p),
            q: describe(q),
            msg: "p's total_count is below q's for some elements; no closed form (as torch)"
                .to_string(),
        });
    }
    let bp = Binary::new(p.probs()?, p.logits()?)?;
    let bq = Binary::new(q.probs()?, q.logits()?)?;
    let per_trial = bernoulli_kl(&bp, &bq)?;
    // m = 0: both are point masses at 0 (or p reaches more, handled below): no trial counts.
    let per_trial = fill_where(&m.eq(0.0)?, 0.0, &per_trial)?;
    let kl = per_trial.broadcast_mul(m)?;
    let beyond = and_not(&n.broadcast_gt(m)?, &bp.zero)?;
    inf_where(&beyond, &kl)
}

/// KL(Cat(p) ‖ Cat(q)) = Σₖ pₖ (ln pₖ − ln qₖ) from the normalised logits (a log-softmax), with
/// `0·ln 0 = 0` and `+inf` where some `qₖ = 0 < pₖ`. Different class counts are
/// [`KlError::Unsupported`].
fn categorical_categorical(p: &Categorical, q: &Categorical, _: &KlRegistry) -> Result<Tensor> {
    if p.num_classes() != q.num_classes() {
        return Err(KlError::Unsupported {
            p: describe(p),
            q: describe(q),
            msg: format!(
                "p has {} classes, q has {}",
                p.num_classes(),
                q.num_classes()
            ),
        });
    }
    let (pp, lp) = (p.probs()?, p.logits()?);
    let (qp, lq) = (q.probs()?, q.logits()?);
    // A probability that is exactly 0: its log is -inf, or the family clamped it (from probs).
    let exactly_zero = |probs: &Tensor, logits: &Tensor| -> Result<Tensor> {
        let at = probs.eq(0.0)?;
        let clamped = logits.exp()?.ne(0.0)?;
        let inf = logits.eq(f64::NEG_INFINITY)?;
        Ok(at.broadcast_mul(&inf.broadcast_maximum(&clamped)?)?)
    };
    let (p_zero, q_zero) = (exactly_zero(&pp, &lp)?, exactly_zero(&qp, &lq)?);
    let lp = fill_where(&lp.eq(f64::NEG_INFINITY)?, -BIG, &lp)?;
    let lq = fill_where(&lq.eq(f64::NEG_INFINITY)?, -BIG, &lq)?;
    let t = pp.broadcast_mul(&lp.broadcast_sub(&lq)?)?;
    let t = fill_where(&p_zero, 0.0, &t)?;
    let t = inf_where(&and_not(&q_zero, &p_zero)?, &t)?;
    Ok(t.sum(D::Minus1)?)
}

/// KL(OneHotCategorical(p) ‖ OneHotCategorical(q)) = KL(Cat(p) ‖ Cat(q)).
fn one_hot_categorical_one_hot_categorical(
    p: &OneHotCategorical,
    q: &OneHotCategorical,
    reg: &KlRegistry,
) -> Result<Tensor> {
    categorical_categorical(p.categorical(), q.categorical(), reg)
}

/// KL(Geom(p) ‖ Geom(q)) = ln(p/q) + ((1 − p)/p)·ln((1 − p)/(1 − q))
/// = softplus(−l_q) − softplus(−l_p) + e^{−l_p}·(softplus(l_q) − softplus(l_p)), from the
/// logits; `+inf` where `q = 1 > p`.
fn geometric_geometric(p: &Geometric, q: &Geometric, _: &KlRegistry) -> Result<Tensor> {
    let bp = Binary::new(p.probs()?, p.logits()?)?;
    let bq = Binary::new(q.probs()?, q.logits()?)?;
    let (lp, lq) = (&bp.logits, &bq.logits);
    let t1 = softplus(&lq.neg()?)?.broadcast_sub(&softplus(&lp.neg()?)?)?;
    let t2 = lp
        .neg()?
        .exp()?
        .broadcast_mul(&softplus(lq)?.broadcast_sub(&softplus(lp)?)?)?;
    let kl = (t1 + t2)?;
    inf_where(&and_not(&bq.one, &bp.one)?, &kl)
}

/// KL(Poisson ‖ Bernoulli) = `+inf` (as torch): a Poisson reaches every count.
fn poisson_bernoulli(p: &Poisson, q: &Bernoulli, _: &KlRegistry) -> Result<Tensor> {
    full(f64::INFINITY, &joint_batch(p, q)?, p.rate())
}

/// KL(Poisson ‖ Binomial) = `+inf` (as torch): a Poisson reaches every count.
fn poisson_binomial(p: &Poisson, q: &Binomial, _: &KlRegistry) -> Result<Tensor> {
    full(f64::INFINITY, &joint_batch(p, q)?, p.rate())
}

/// KL(Poisson(λ) ‖ Poisson(μ)) = λ ln(λ/μ) − λ + μ, with `ln(λ/μ) = log1p((λ − μ)/μ)` when
/// `λ` is within half of `μ` (no cancellation for close rates); `μ` where `λ = 0`, `+inf` where
/// `μ = 0 < λ`.
fn poisson_poisson(p: &Poisson, q: &Poisson, _: &KlRegistry) -> Result<Tensor> {
    let (rp, rq) = (p.rate(), q.rate());
    let (p_zero, q_zero) = (rp.eq(0.0)?, rq.eq(0.0)?);
    let rp_safe = fill_where(&p_zero, 1.0, rp)?;
    let rq_safe = fill_where(&q_zero, 1.0, rq)?;
    let diff = rp_safe.broadcast_sub(&rq_safe)?;
    let close = diff.abs()?.broadcast_lt(&(&rq_safe * 0.5)?)?;
    let near = log1p(&diff.broadcast_div(&rq_safe)?)?;
    let far = rp_safe.log()?.broadcast_sub(&rq_safe.log()?)?;
    let log_ratio = close.where_cond(&near, &far)?;
    let kl = rp
        .broadcast_mul(&log_ratio)?
        .broadcast_sub(&rp.broadcast_sub(rq)?)?;
    inf_where(&and_not(&q_zero, &p_zero)?, &kl)
}
