//! Supports of distributions and of parameters, as `torch.distributions.constraints`.

use std::fmt;

use candle_core::{DType, Tensor};

use crate::broadcast::{broadcast_shapes, full_like};
use crate::error::Result;

mod bound;
mod violation;

pub use bound::Bound;
pub(crate) use violation::first_violation;

/// The set a value (or a parameter) must lie in.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vi_dist::Constraint;
/// let x = Tensor::new(&[0.5f64, -1.0], &Device::Cpu)?;
/// let ok = Constraint::Positive.check(&x)?.to_vec1::<u8>()?;
/// assert_eq!(ok, vec![1, 0]);
/// # Ok::<(), vi_dist::DistError>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Constraint {
    /// All reals (not NaN).
    Real,
    /// `x > 0`.
    Positive,
    /// `x >= 0`.
    NonNegative,
    /// `0 <= x <= 1`.
    UnitInterval,
    /// `low <= x <= high`.
    Interval {
        /// Lower bound.
        low: Bound,
        /// Upper bound.
        high: Bound,
    },
    /// `low <= x < high`, as torch's `half_open_interval`.
    HalfOpenInterval {
        /// Lower bound.
        low: Bound,
        /// Upper bound.
        high: Bound,
    },
    /// `x > bound`.
    GreaterThan(Bound),
    /// `x >= bound`.
    GreaterThanEq(Bound),
    /// `x < bound`.
    LessThan(Bound),
    /// 0 or 1.
    Boolean,
    /// 0, 1, 2, …
    NonNegativeInteger,
    /// Integers in `low..=high`.
    IntegerInterval {
        /// Lower bound.
        low: Bound,
        /// Upper bound.
        high: Bound,
    },
    /// Vectors of non-negative numbers summing to 1 (last dim).
    Simplex,
    /// One-hot vectors (last dim).
    OneHot,
    /// Lower-triangular matrices with positive diagonal (last two dims).
    LowerCholesky,
    /// Symmetric positive-definite matrices (last two dims).
    PositiveDefinite,
    /// `base` applied elementwise, with the last `event_dims` dims reinterpreted as one event.
    Independent {
        /// The elementwise constraint.
        base: Box<Constraint>,
        /// How many trailing dims form one event.
        event_dims: usize,
    },
}

impl Constraint {
    /// Whether two constraints are the same set: the same kind, with the same bounds (scalar
    /// bounds bit for bit; tensor bounds the same tensor, or the same shape and values, read
    /// back to compare) and, for `independent`, the same base and event dims. Constraints
    /// carry tensors, so they have no `PartialEq`.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::{Bound, Constraint};
    /// let low = Tensor::new(&[0.0f64, 1.0], &Device::Cpu)?;
    /// let a = Constraint::GreaterThan(Bound::Tensor(low.clone()));
    /// let b = Constraint::GreaterThan(Bound::Tensor(low.copy()?)); // same values
    /// assert!(a.same_as(&b) && Constraint::Positive.same_as(&Constraint::Positive));
    /// assert!(!a.same_as(&Constraint::GreaterThan(Bound::Scalar(0.0))));
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn same_as(&self, other: &Constraint) -> bool {
        use Constraint::*;
        match (self, other) {
            (Interval { low: a, high: b }, Interval { low: c, high: d })
            | (HalfOpenInterval { low: a, high: b }, HalfOpenInterval { low: c, high: d })
            | (IntegerInterval { low: a, high: b }, IntegerInterval { low: c, high: d }) => {
                a.same_as(c) && b.same_as(d)
            }
            (GreaterThan(a), GreaterThan(b))
            | (GreaterThanEq(a), GreaterThanEq(b))
            | (LessThan(a), LessThan(b)) => a.same_as(b),
            (
                Independent {
                    base: a,
                    event_dims: m,
                },
                Independent {
                    base: b,
                    event_dims: n,
                },
            ) => m == n && a.same_as(b),
            (a, b) => {
                std::mem::discriminant(a) == std::mem::discriminant(b)
                    && !matches!(
                        a,
                        Interval { .. }
                            | HalfOpenInterval { .. }
                            | IntegerInterval { .. }
                            | GreaterThan(_)
                            | GreaterThanEq(_)
                            | LessThan(_)
                            | Independent { .. }
                    )
            }
        }
    }

    /// `interval(low, high)`.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::Constraint;
    /// let c = Constraint::interval(-1.0, 1.0);
    /// assert_eq!(c.to_string(), "interval(-1, 1)");
    /// assert!(c.all(&Tensor::new(&[-1.0f64, 1.0], &Device::Cpu)?)?);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn interval(low: impl Into<Bound>, high: impl Into<Bound>) -> Self {
        Constraint::Interval {
            low: low.into(),
            high: high.into(),
        }
    }

    /// `greater_than(bound)`.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::Constraint;
    /// let c = Constraint::greater_than(2.0);
    /// assert!(!c.all(&Tensor::new(&[2.0f64], &Device::Cpu)?)?);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn greater_than(bound: impl Into<Bound>) -> Self {
        Constraint::GreaterThan(bound.into())
    }

    /// `independent(self, event_dims)`: the same set, checked per event.
    ///
    /// ```
    /// use vi_dist::Constraint;
    /// let c = Constraint::Positive.independent(1).independent(1);
    /// assert_eq!(c.event_dim(), 2);
    /// assert_eq!(c.to_string(), "independent(positive, 2)");
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn independent(self, event_dims: usize) -> Self {
        if event_dims == 0 {
            return self;
        }
        match self {
            Constraint::Independent {
                base,
                event_dims: n,
            } => Constraint::Independent {
                base,
                event_dims: n + event_dims,
            },
            other => Constraint::Independent {
                base: Box::new(other),
                event_dims,
            },
        }
    }

    /// How many trailing dims of a value one check covers (1 for simplex, 2 for matrices).
    ///
    /// ```
    /// use vi_dist::Constraint;
    /// assert_eq!(Constraint::Real.event_dim(), 0);
    /// assert_eq!(Constraint::Simplex.event_dim(), 1);
    /// assert_eq!(Constraint::LowerCholesky.independent(1).event_dim(), 3);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn event_dim(&self) -> usize {
        match self {
            Constraint::Simplex | Constraint::OneHot => 1,
            Constraint::LowerCholesky | Constraint::PositiveDefinite => 2,
            Constraint::Independent { base, event_dims } => base.event_dim() + event_dims,
            _ => 0,
        }
    }

    /// Whether the set is discrete (integer valued).
    ///
    /// ```
    /// use vi_dist::Constraint;
    /// assert!(Constraint::NonNegativeInteger.is_discrete());
    /// assert!(!Constraint::Positive.is_discrete());
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn is_discrete(&self) -> bool {
        match self {
            Constraint::Boolean
            | Constraint::NonNegativeInteger
            | Constraint::IntegerInterval { .. }
            | Constraint::OneHot => true,
            Constraint::Independent { base, .. } => base.is_discrete(),
            _ => false,
        }
    }

    /// Elementwise (per event) membership, as a `u8` tensor of shape
    /// `value.shape[..rank - event_dim]` holding 1 where the value is in the set.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::Constraint;
    /// let x = Tensor::new(&[[0.2f64, 0.8], [0.5, 0.6]], &Device::Cpu)?;
    /// assert_eq!(Constraint::Simplex.check(&x)?.to_vec1::<u8>()?, vec![1, 0]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn check(&self, value: &Tensor) -> Result<Tensor> {
        let x = value;
        let dtype = x.dtype();
        let bound = |b: &Bound| b.to_tensor(x);
        let not_nan = || -> Result<Tensor> { Ok(x.eq(x)?) };
        let and = |a: &Tensor, b: &Tensor| -> Result<Tensor> { Ok(a.broadcast_mul(b)?) };
        // Finite and whole, as torch's `value % 1 == 0` (false for ±inf and NaN).
        let is_integer =
            || -> Result<Tensor> { and(&x.eq(&x.floor()?)?, &x.abs()?.lt(f64::INFINITY)?) };
        let out = match self {
            Constraint::Real => not_nan()?,
            Constraint::Positive => x.gt(0.0)?,
            Constraint::NonNegative => x.ge(0.0)?,
            Constraint::UnitInterval => and(&x.ge(0.0)?, &x.le(1.0)?)?,
            Constraint::Interval { low, high } => and(
                &x.broadcast_ge(&bound(low)?)?,
                &x.broadcast_le(&bound(high)?)?,
            )?,
            Constraint::HalfOpenInterval { low, high } => and(
                &x.broadcast_ge(&bound(low)?)?,
                &x.broadcast_lt(&bound(high)?)?,
            )?,
            Constraint::GreaterThan(b) => x.broadcast_gt(&bound(b)?)?,
            Constraint::GreaterThanEq(b) => x.broadcast_ge(&bound(b)?)?,
            Constraint::LessThan(b) => x.broadcast_lt(&bound(b)?)?,
            Constraint::Boolean => x.eq(0.0)?.add(&x.eq(1.0)?)?,
            Constraint::NonNegativeInteger => and(&x.ge(0.0)?, &is_integer()?)?,
            Constraint::IntegerInterval { low, high } => and(
                &and(
                    &x.broadcast_ge(&bound(low)?)?,
                    &x.broadcast_le(&bound(high)?)?,
                )?,
                &is_integer()?,
            )?,
            Constraint::Simplex => {
                let last = x.rank().saturating_sub(1);
                let nonneg = x.ge(0.0)?.min_keepdim(last)?.squeeze(last)?;
                let tol = if dtype == DType::F64 { 1e-6 } else { 1e-4 };
                let sum_ok = x.sum(last)?.affine(1.0, -1.0)?.abs()?.le(tol)?;
                and(&nonneg, &sum_ok)?
            }
            Constraint::OneHot => {
                let last = x.rank().saturating_sub(1);
                let binary = x
                    .eq(0.0)?
                    .add(&x.eq(1.0)?)?
                    .min_keepdim(last)?
                    .squeeze(last)?;
                let one = x.sum(last)?.eq(1.0)?;
                and(&binary, &one)?
            }
            Constraint::LowerCholesky => {
                let r = x.rank();
                if r < 2 {
                    return Err(crate::DistError::Invalid {
                        dist: "lower_cholesky",
                        msg: format!("needs a matrix, got shape {:?}", x.dims()),
                    });
                }
                let n = x.dims()[r - 1];
                let upper = Tensor::triu2(n, dtype, x.device())?.sub(&Tensor::eye(
                    n,
                    dtype,
                    x.device(),
                )?)?;
                let upper_zero = x
                    .broadcast_mul(&upper)?
                    .eq(0.0)?
                    .min_keepdim(r - 1)?
                    .min_keepdim(r - 2)?
                    .squeeze(r - 1)?
                    .squeeze(r - 2)?;
                let diag = crate::ops::diagonal(x)?;
                let diag_pos = diag.gt(0.0)?.min_keepdim(r - 2)?.squeeze(r - 2)?;
                and(&upper_zero, &diag_pos)?
            }
            Constraint::PositiveDefinite => crate::ops::is_positive_definite(x)?,
            Constraint::Independent { base, event_dims } => {
                let mut c = base.check(x)?;
                for _ in 0..*event_dims {
                    let last = c.rank().saturating_sub(1);
                    c = c.min_keepdim(last)?.squeeze(last)?;
                }
                c
            }
        };
        Ok(out)
    }

    /// A point of the set with the dtype and device of `value` and the broadcast shape of
    /// `value` and any tensor bounds, as NumPyro's `feasible_like`: 0 for reals, 1 for
    /// positive numbers, ½ on the unit interval, the midpoint of an interval, `bound ± 1` past
    /// a bound, the lower end of an integer interval, the centre of the simplex, the first
    /// one-hot vector, the identity matrix. No device sync.
    ///
    /// [`Masked`](crate::Masked) puts it in place of masked-out values, so they cannot fail a
    /// check or make a gradient NaN.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use vi_dist::Constraint;
    /// let x = Tensor::zeros((2, 3), DType::F64, &Device::Cpu)?;
    /// let c = Constraint::interval(1.0, 3.0);
    /// assert!(c.all(&c.feasible_like(&x)?)?);
    /// let s = Constraint::Simplex.feasible_like(&x)?;
    /// assert_eq!(s.to_vec2::<f64>()?[0], vec![1.0 / 3.0; 3]);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn feasible_like(&self, value: &Tensor) -> Result<Tensor> {
        let x = value;
        let constant = |v: f64| full_like(v, x);
        let fill = |t: Tensor| -> Result<Tensor> {
            let shape = broadcast_shapes(&[x.dims(), t.dims()]).ok_or_else(|| {
                crate::DistError::Invalid {
                    dist: "feasible_like",
                    msg: format!(
                        "bound of shape {:?} does not broadcast with value {:?}",
                        t.dims(),
                        x.dims()
                    ),
                }
            })?;
            Ok(t.broadcast_as(shape)?)
        };
        let last = |what: &'static str| -> Result<usize> {
            x.dims()
                .last()
                .copied()
                .ok_or_else(|| crate::DistError::Invalid {
                    dist: "feasible_like",
                    msg: format!("{what} needs a value with at least one dim, got a scalar"),
                })
        };
        match self {
            Constraint::Real | Constraint::Boolean | Constraint::NonNegativeInteger => {
                constant(0.0)
            }
            Constraint::Positive | Constraint::NonNegative => constant(1.0),
            Constraint::UnitInterval => constant(0.5),
            Constraint::Interval { low, high } | Constraint::HalfOpenInterval { low, high } => {
                fill(((low.to_tensor(x)? + high.to_tensor(x)?)? * 0.5)?)
            }
            Constraint::GreaterThan(b) | Constraint::GreaterThanEq(b) => {
                fill(b.to_tensor(x)?.affine(1.0, 1.0)?)
            }
            Constraint::LessThan(b) => fill(b.to_tensor(x)?.affine(1.0, -1.0)?),
            Constraint::IntegerInterval { low, .. } => fill(low.to_tensor(x)?),
            Constraint::Simplex => constant(1.0 / last("simplex")? as f64),
            Constraint::OneHot => {
                let k = last("one_hot")?;
                let first = Tensor::ones(1, x.dtype(), x.device())?.pad_with_zeros(
                    0,
                    0,
                    k.saturating_sub(1),
                )?;
                Ok(first.broadcast_as(x.shape())?)
            }
            Constraint::LowerCholesky | Constraint::PositiveDefinite => {
                let n = crate::ops::square_size("feasible_like", x)?;
                Ok(Tensor::eye(n, x.dtype(), x.device())?.broadcast_as(x.shape())?)
            }
            Constraint::Independent { base, .. } => base.feasible_like(x),
        }
    }

    /// Whether every element (event) of `value` is in the set: one host sync.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use vi_dist::Constraint;
    /// let x = Tensor::new(&[0.0f64, 1.0], &Device::Cpu)?;
    /// assert!(Constraint::UnitInterval.all(&x)?);
    /// assert!(!Constraint::Positive.all(&x)?);
    /// # Ok::<(), vi_dist::DistError>(())
    /// ```
    pub fn all(&self, value: &Tensor) -> Result<bool> {
        // An empty value has nothing to check (and candle cannot reduce over an empty dim).
        if value.elem_count() == 0 {
            return Ok(true);
        }
        if let Some(ok) = self.all_on_host(value) {
            return Ok(ok);
        }
        let c = self.check(value)?;
        if c.elem_count() == 0 {
            return Ok(true);
        }
        Ok(c.flatten_all()?.min(0)?.to_scalar::<u8>()? == 1)
    }

    /// [`all`](Constraint::all) for the elementwise constraints without parameters, read in
    /// place from a contiguous f32/f64 CPU tensor: no op, no allocation (validation runs at
    /// every step). `None` where it does not apply.
    fn all_on_host(&self, value: &Tensor) -> Option<bool> {
        // Each test is false for NaN; chunks keep the loop branch-free and still stop early.
        fn all_of<T: Copy>(v: &[T], f: impl Fn(T) -> bool) -> bool {
            v.chunks(1024)
                .all(|ch| ch.iter().fold(true, |a, &x| a & f(x)))
        }
        fn scan<T: Copy + PartialOrd + num_like::Zero>(v: &[T], c: &Constraint) -> Option<bool> {
            let (zero, one) = (T::ZERO, T::ONE);
            Some(match c {
                Constraint::Real => all_of(v, |x| x.partial_cmp(&x).is_some()),
                Constraint::Positive => all_of(v, |x| x > zero),
                Constraint::NonNegative => all_of(v, |x| x >= zero),
                Constraint::UnitInterval => all_of(v, |x| x >= zero && x <= one),
                _ => return None,
            })
        }
        let (storage, layout) = value.storage_and_layout();
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            return None;
        };
        let (start, end) = layout.contiguous_offsets()?;
        match cpu {
            candle_core::CpuStorage::F32(v) => scan(&v[start..end], self),
            candle_core::CpuStorage::F64(v) => scan(&v[start..end], self),
            _ => None,
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Constraint::Real => write!(f, "real"),
            Constraint::Positive => write!(f, "positive"),
            Constraint::NonNegative => write!(f, "nonnegative"),
            Constraint::UnitInterval => write!(f, "unit_interval"),
            Constraint::Interval { low, high } => write!(f, "interval({low}, {high})"),
            Constraint::HalfOpenInterval { low, high } => {
                write!(f, "half_open_interval({low}, {high})")
            }
            Constraint::GreaterThan(b) => write!(f, "greater_than({b})"),
            Constraint::GreaterThanEq(b) => write!(f, "greater_than_eq({b})"),
            Constraint::LessThan(b) => write!(f, "less_than({b})"),
            Constraint::Boolean => write!(f, "boolean"),
            Constraint::NonNegativeInteger => write!(f, "nonnegative_integer"),
            Constraint::IntegerInterval { low, high } => {
                write!(f, "integer_interval({low}, {high})")
            }
            Constraint::Simplex => write!(f, "simplex"),
            Constraint::OneHot => write!(f, "one_hot"),
            Constraint::LowerCholesky => write!(f, "lower_cholesky"),
            Constraint::PositiveDefinite => write!(f, "positive_definite"),
            Constraint::Independent { base, event_dims } => {
                write!(f, "independent({base}, {event_dims})")
            }
        }
    }
}

/// The 0 and 1 of the float types [`Constraint::all`] reads in place.
mod num_like {
    pub(super) trait Zero {
        const ZERO: Self;
        const ONE: Self;
    }
    impl Zero for f32 {
        const ZERO: f32 = 0.0;
        const ONE: f32 = 1.0;
    }
    impl Zero for f64 {
        const ZERO: f64 = 0.0;
        const ONE: f64 = 1.0;
    }
}
