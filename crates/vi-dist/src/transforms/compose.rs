//! A chain of transforms applied one after the other.

use candle_core::Tensor;

use super::{Transform, check_rank, downcast};
use crate::broadcast::sum_rightmost;
use crate::constraint::Constraint;
use crate::error::Result;

/// `y = f_n(… f_2(f_1(x)))`, as `torch.distributions.transforms.ComposeTransform`.
///
/// The log-determinant is the sum of the parts', each first summed over the dims that are
/// event dims of the chain but batch dims of the part (torch's rule). The input event dims are
/// the fewest that every part accepts: a part with a larger event moves dims of the earlier
/// parts into the event.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::transforms::{Affine, Compose, Exp};
/// use vi_dist::{Transform};
/// // y = 2 + e^x: onto (2, ∞)
/// let t = Compose::new(vec![Box::new(Exp), Box::new(Affine::new(2.0, 1.0))]);
/// let x = Tensor::new(&[0.0f64], &Device::Cpu)?;
/// assert_eq!(t.forward(&x)?.to_vec1::<f64>()?, vec![3.0]);
/// assert_eq!(t.inverse(&t.forward(&x)?)?.to_vec1::<f64>()?, vec![0.0]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Debug)]
pub struct Compose {
    parts: Vec<Box<dyn Transform>>,
    codomain: Option<Constraint>,
}

impl Compose {
    /// The chain applying `parts` in order (an empty chain is the identity).
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::Transform;
    /// use vi_dist::transforms::{Affine, Compose, Exp};
    /// let t = Compose::new(vec![Box::new(Exp), Box::new(Affine::new(1.0, 2.0))]);
    /// let y = t.forward(&Tensor::new(&[0.0f64], &Device::Cpu)?)?;
    /// assert_eq!(y.to_vec1::<f64>()?, vec![3.0]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn new(parts: Vec<Box<dyn Transform>>) -> Self {
        Self {
            parts,
            codomain: None,
        }
    }

    /// The same chain with its codomain stated as `codomain` instead of the last part's.
    ///
    /// [`transform_to`](crate::transform_to) uses this so that, say, sigmoid then affine
    /// reports `interval(low, high)` rather than the affine map's `real`. `codomain` must have
    /// the chain's output event dims; it is not checked against the parts.
    ///
    /// ```
    /// use vi_dist::transforms::{Affine, Compose, Sigmoid};
    /// use vi_dist::{Constraint, Transform};
    /// let t = Compose::new(vec![Box::new(Sigmoid), Box::new(Affine::new(-1.0, 2.0))])
    ///     .with_codomain(Constraint::interval(-1.0, 1.0));
    /// assert_eq!(t.codomain().to_string(), "interval(-1, 1)");
    /// ```
    ///
    /// ```
    /// use vi_dist::{Constraint, Transform};
    /// use vi_dist::transforms::{Affine, Compose, Exp};
    /// let t = Compose::new(vec![Box::new(Exp), Box::new(Affine::new(1.0, 1.0))])
    ///     .with_codomain(Constraint::greater_than(1.0));
    /// assert_eq!(t.codomain().to_string(), "greater_than(1)");
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn with_codomain(mut self, codomain: Constraint) -> Self {
        self.codomain = Some(codomain);
        self
    }

    /// The parts, in the order they are applied.
    ///
    /// ```
    /// use vi_dist::Transform;
    /// use vi_dist::transforms::{Compose, Exp, Sigmoid};
    /// let t = Compose::new(vec![Box::new(Exp), Box::new(Sigmoid)]);
    /// assert_eq!(t.parts().iter().map(|p| p.name()).collect::<Vec<_>>(), ["exp", "sigmoid"]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn parts(&self) -> &[Box<dyn Transform>] {
        &self.parts
    }

    /// The parts as plain references, for the chain's event dims.
    fn refs(&self) -> Vec<&dyn Transform> {
        self.parts.iter().map(|p| p.as_ref()).collect()
    }

    /// The input event dims of the chain.
    fn domain_event_dim(&self) -> usize {
        chain_event_dims(&self.refs()).0
    }

    /// The output event dims of the chain.
    fn codomain_dims(&self) -> usize {
        chain_event_dims(&self.refs()).1
    }
}

/// The input and output event dims of the chain `parts` (applied in order), as torch's
/// `ComposeTransform` computes them: walking back from the last part, each part needs at least
/// its own event dims, and a part that changes the event rank shifts what the earlier parts
/// see; the output event dims are the input's moved through each part's change of rank. An
/// empty chain has `(0, 0)`.
pub(crate) fn chain_event_dims(parts: &[&dyn Transform]) -> (usize, usize) {
    let Some(last) = parts.last() else {
        return (0, 0);
    };
    let mut ed = last.codomain_event_dim();
    for p in parts.iter().rev() {
        ed = (ed + p.event_dim())
            .saturating_sub(p.codomain_event_dim())
            .max(p.event_dim());
    }
    let domain = ed;
    for p in parts {
        ed = (ed + p.codomain_event_dim()).saturating_sub(p.event_dim());
    }
    (domain, ed)
}

impl Transform for Compose {
    fn name(&self) -> &'static str {
        "compose"
    }

    fn domain(&self) -> Constraint {
        match self.parts.first() {
            Some(first) => first
                .domain()
                .independent(self.domain_event_dim() - first.event_dim()),
            None => Constraint::Real,
        }
    }

    fn codomain(&self) -> Constraint {
        if let Some(c) = &self.codomain {
            return c.clone();
        }
        match self.parts.last() {
            Some(last) => last
                .codomain()
                .independent(self.codomain_dims() - last.codomain_event_dim()),
            None => Constraint::Real,
        }
    }

    fn event_dim(&self) -> usize {
        self.domain_event_dim()
    }

    fn codomain_event_dim(&self) -> usize {
        self.codomain_dims()
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        check_rank("compose", x, self.domain_event_dim())?;
        let mut y = x.clone();
        for p in &self.parts {
            y = p.forward(&y)?;
        }
        Ok(y)
    }

    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        check_rank("compose", y, self.codomain_dims())?;
        let mut x = y.clone();
        for p in self.parts.iter().rev() {
            x = p.inverse(&x)?;
        }
        Ok(x)
    }

    fn log_abs_det_jacobian(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let mut ed = self.domain_event_dim();
        check_rank("compose", x, ed)?;
        let mut total: Option<Tensor> = None;
        let mut xi = x.clone();
        let last = self.parts.len().saturating_sub(1);
        for (i, p) in self.parts.iter().enumerate() {
            // The intermediate values are recomputed (no cache); the last one is `y`.
            let yi = if i == last {
                y.clone()
            } else {
                p.forward(&xi)?
            };
            let part = sum_rightmost(&p.log_abs_det_jacobian(&xi, &yi)?, ed - p.event_dim())?;
            total = Some(match total {
                Some(t) => t.broadcast_add(&part)?,
                None => part,
            });
            ed = (ed + p.codomain_event_dim()).saturating_sub(p.event_dim());
            xi = yi;
        }
        match total {
            Some(t) => Ok(t),
            None => Ok(x.zeros_like()?),
        }
    }

    fn forward_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        let mut s = shape.to_vec();
        for p in &self.parts {
            s = p.forward_shape(&s)?;
        }
        Ok(s)
    }

    fn inverse_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        let mut s = shape.to_vec();
        for p in self.parts.iter().rev() {
            s = p.inverse_shape(&s)?;
        }
        Ok(s)
    }

    /// The same parts in the same order (a stated codomain does not change the map).
    fn same_as(&self, other: &dyn Transform) -> bool {
        downcast::<Self>(other).is_some_and(|o| {
            self.parts.len() == o.parts.len()
                && self
                    .parts
                    .iter()
                    .zip(&o.parts)
                    .all(|(a, b)| a.same_as(b.as_ref()))
        })
    }

    fn injective(&self) -> bool {
        self.parts.iter().all(|p| p.injective())
    }
}
