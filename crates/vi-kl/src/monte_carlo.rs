//! The Monte Carlo estimate of KL(p ‖ q): what tests every closed form, and what the ELBO
//! uses when no closed form exists.

use candle_core::Tensor;
use rand::RngCore;
use vi_dist::Distribution;

use crate::error::{KlError, Result};
use crate::util::{check_pair, log_prob_in_support};

/// A Monte Carlo estimate of KL(p ‖ q) with its standard error, both of the broadcast batch
/// shape. See [`kl_monte_carlo_with_error`].
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use rand::SeedableRng;
/// use vi_dist::Normal;
/// let t = Tensor::zeros(2, DType::F64, &Device::Cpu)?;
/// let (p, q) = (Normal::new(&t, &t.ones_like()?)?, Normal::new(&t.ones_like()?, &t.ones_like()?)?);
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let mc = vi_kl::kl_monte_carlo_with_error(&p, &q, 1000, &mut rng)?;
/// assert_eq!((mc.estimate.dims(), mc.std_error.dims()), (&[2][..], &[2][..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct MonteCarloKl {
    /// The mean of `log p(x) − log q(x)` over the draws (differentiable when `p` has
    /// `rsample`).
    pub estimate: Tensor,
    /// The standard error of that mean: the sample standard deviation over √n (detached).
    pub std_error: Tensor,
}

/// `log p(x) − log q(x)` for `num_samples` draws `x ~ p`, shape `[num_samples] + batch`.
fn log_ratios(
    p: &dyn Distribution,
    q: &dyn Distribution,
    num_samples: usize,
    rng: &mut dyn RngCore,
) -> Result<Tensor> {
    if num_samples == 0 {
        return Err(KlError::Invalid(
            "kl_monte_carlo: num_samples must be at least 1".into(),
        ));
    }
    let batch = check_pair(p, q)?;
    let expanded;
    let p = if p.batch_shape() == batch.as_slice() {
        p
    } else {
        expanded = p.expand(&batch)?;
        expanded.as_ref()
    };
    let x = if p.has_rsample() {
        p.rsample(&[num_samples], rng)?
    } else {
        p.sample(&[num_samples], rng)?
    };
    // x comes from p, so p's own value checks would only cost time.
    let lp = vi_dist::with_validation(false, || p.log_prob(&x))?;
    let lq = log_prob_in_support(q, &x)?;
    Ok(lp.broadcast_sub(&lq)?)
}

/// A Monte Carlo estimate of KL(p ‖ q): the mean over `num_samples` draws `x ~ p` of
/// `log p(x) − log q(x)`, of shape `broadcast(p.batch_shape, q.batch_shape)`.
///
/// Draws are reparameterised when `p` has `rsample`, so the estimate is differentiable in
/// `p`'s parameters as well as `q`'s; otherwise only in `q`'s (and `p`'s through
/// `log p`). A draw outside `q`'s support gives `+inf`. Reproducible: the same `rng` state
/// gives the same estimate.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use rand::SeedableRng;
/// use vi_dist::Normal;
/// use vi_kl::{kl_divergence, kl_monte_carlo};
/// let zero = Tensor::zeros(1, DType::F64, &Device::Cpu)?;
/// let one = Tensor::ones(1, DType::F64, &Device::Cpu)?;
/// let (p, q) = (Normal::new(&zero, &one)?, Normal::new(&one, &one)?);
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let mc = kl_monte_carlo(&p, &q, 20_000, &mut rng)?.to_vec1::<f64>()?[0];
/// let exact = kl_divergence(&p, &q)?.to_vec1::<f64>()?[0]; // 0.5
/// assert!((mc - exact).abs() < 0.03);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn kl_monte_carlo(
    p: &dyn Distribution,
    q: &dyn Distribution,
    num_samples: usize,
    rng: &mut dyn RngCore,
) -> Result<Tensor> {
    Ok(log_ratios(p, q, num_samples, rng)?.mean(0)?)
}

/// [`kl_monte_carlo`] with the standard error of the estimate, to judge a closed form
/// against it (the tests accept a closed form within 4 standard errors).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use rand::SeedableRng;
/// use vi_dist::Gamma;
/// use vi_kl::{kl_divergence, kl_monte_carlo_with_error};
/// let t = |v: f64| Tensor::new(&[v], &Device::Cpu);
/// let p = Gamma::new(&t(2.0)?, &t(1.0)?)?;
/// let q = Gamma::new(&t(3.0)?, &t(2.0)?)?;
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
/// let mc = kl_monte_carlo_with_error(&p, &q, 10_000, &mut rng)?;
/// let (est, se) = (mc.estimate.to_vec1::<f64>()?[0], mc.std_error.to_vec1::<f64>()?[0]);
/// let exact = kl_divergence(&p, &q)?.to_vec1::<f64>()?[0];
/// assert!((est - exact).abs() < 4.0 * se);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn kl_monte_carlo_with_error(
    p: &dyn Distribution,
    q: &dyn Distribution,
    num_samples: usize,
    rng: &mut dyn RngCore,
) -> Result<MonteCarloKl> {
    let r = log_ratios(p, q, num_samples, rng)?;
    let estimate = r.mean(0)?;
    let n = num_samples as f64;
    let std_error = if num_samples < 2 {
        estimate.zeros_like()?
    } else {
        let d = r.detach().broadcast_sub(&estimate.detach())?;
        (d.sqr()?.sum(0)? / ((n - 1.0) * n))?.sqrt()?
    };
    Ok(MonteCarloKl {
        estimate,
        std_error,
    })
}
