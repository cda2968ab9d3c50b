//! The per-element math of each fused op: its value and its gradients at one element, for
//! the loops of [`super::map`] and [`super::sum`] to run.

use super::element::{Body, Real};
use super::layout::Src;
use super::map::run;
use crate::ops::fastmath::Mode;

/// ½ ln 2π.
const HALF_LN_2PI: f64 = 0.918_938_533_204_672_7;

/// The math of one fused op with `N` inputs: its value and its gradients at one element.
pub(super) trait Elem<const N: usize>: Copy + Send + Sync + 'static {
    /// The custom op's name.
    const NAME: &'static str;
    /// Inputs whose gradient is the incoming gradient itself (no pass needed).
    const PASS_GRAD: [bool; N] = [false; N];
    /// The value.
    fn value<T: Real, M: Mode>(x: [T; N]) -> T;
    /// `g · ∂value/∂xᵢ` for every input.
    fn grad<T: Real, M: Mode>(x: [T; N], g: T) -> [T; N];
    /// Run the backward loop over the inputs then the incoming gradient (`N + 1` sources),
    /// keeping the gradients flagged in `want`.
    fn backward<T: Real>(self, srcs: Vec<Src<'_, T>>, n: usize, want: [bool; N]) -> Vec<T>;
}

/// The forward loop body of an [`Elem`].
pub(super) struct Fwd<E>(pub(super) E);

impl<E: Elem<N>, const N: usize> Body<N, 1> for Fwd<E> {
    #[inline(always)]
    fn eval<T: Real, M: Mode>(&self, x: [T; N]) -> [T; 1] {
        [E::value::<T, M>(x)]
    }
}

/// The backward loop body of an [`Elem`]: inputs then the incoming gradient.
struct Bwd<E>(E);

/// `Body<N + 1, N>` for `Bwd<E: Elem<N>>`, and the `Elem::backward` that runs it, spelled out
/// per arity (stable Rust has no `N + 1` in generic const arguments).
macro_rules! arity {
    ($n:literal) => {
        impl<E: Elem<$n>> Body<{ $n + 1 }, $n> for Bwd<E> {
            #[inline(always)]
            fn eval<T: Real, M: Mode>(&self, x: [T; $n + 1]) -> [T; $n] {
                E::grad::<T, M>(std::array::from_fn(|i| x[i]), x[$n])
            }
        }
    };
}
arity!(1);
arity!(2);
arity!(3);
arity!(4);

macro_rules! backward_via_bwd {
    ($n:literal) => {
        fn backward<T: Real>(self, srcs: Vec<Src<'_, T>>, n: usize, want: [bool; $n]) -> Vec<T> {
            match <[Src<'_, T>; $n + 1]>::try_from(srcs) {
                Ok(srcs) => run(&Bwd(self), &srcs, n, want),
                Err(_) => Vec::new(),
            }
        }
    };
}

#[derive(Clone, Copy)]
pub(super) struct Softplus;

impl Elem<1> for Softplus {
    const NAME: &'static str = "fused-softplus";
    #[inline(always)]
    fn value<T: Real, M: Mode>([x]: [T; 1]) -> T {
        x.softplus::<M>()
    }
    #[inline(always)]
    fn grad<T: Real, M: Mode>([x]: [T; 1], g: T) -> [T; 1] {
        [g * x.sigmoid::<M>()]
    }
    backward_via_bwd!(1);
}

#[derive(Clone, Copy)]
pub(super) struct Sigmoid;

impl Elem<1> for Sigmoid {
    const NAME: &'static str = "fused-sigmoid";
    #[inline(always)]
    fn value<T: Real, M: Mode>([x]: [T; 1]) -> T {
        x.sigmoid::<M>()
    }
    #[inline(always)]
    fn grad<T: Real, M: Mode>([x]: [T; 1], g: T) -> [T; 1] {
        [g * x.sigmoid_grad::<M>()]
    }
    backward_via_bwd!(1);
}

#[derive(Clone, Copy)]
pub(super) struct NormalLogProb;

impl Elem<3> for NormalLogProb {
    const NAME: &'static str = "fused-normal-log-prob";
    #[inline(always)]
    fn value<T: Real, M: Mode>([v, m, s]: [T; 3]) -> T {
        let z = (v - m) / s;
        // the order of the composed path: (−½ z² − ½ ln 2π) − ln σ
        z * z * T::cst(-0.5) + T::cst(-HALF_LN_2PI) - s.ln::<M>()
    }
    #[inline(always)]
    fn grad<T: Real, M: Mode>([v, m, s]: [T; 3], g: T) -> [T; 3] {
        let z = (v - m) / s;
        let gz = g * z / s;
        [-gz, gz, g * (z * z - T::cst(1.0)) / s]
    }
    backward_via_bwd!(3);
}

#[derive(Clone, Copy)]
pub(super) struct NormalRsample;

impl Elem<3> for NormalRsample {
    const NAME: &'static str = "fused-normal-rsample";
    const PASS_GRAD: [bool; 3] = [true, false, false];
    #[inline(always)]
    fn value<T: Real, M: Mode>([m, s, e]: [T; 3]) -> T {
        e * s + m
    }
    #[inline(always)]
    fn grad<T: Real, M: Mode>([_, s, e]: [T; 3], g: T) -> [T; 3] {
        [g, g * e, g * s]
    }
    backward_via_bwd!(3);
}

#[derive(Clone, Copy)]
pub(super) struct BernoulliLogProb;

impl Elem<2> for BernoulliLogProb {
    const NAME: &'static str = "fused-bernoulli-log-prob";
    #[inline(always)]
    fn value<T: Real, M: Mode>([v, l]: [T; 2]) -> T {
        v * l - l.softplus::<M>()
    }
    #[inline(always)]
    fn grad<T: Real, M: Mode>([v, l]: [T; 2], g: T) -> [T; 2] {
        [g * l, g * (v - l.sigmoid::<M>())]
    }
    backward_via_bwd!(2);
}

#[derive(Clone, Copy)]
pub(super) struct KlNormal;

impl Elem<4> for KlNormal {
    const NAME: &'static str = "fused-kl-normal-normal";
    #[inline(always)]
    fn value<T: Real, M: Mode>([mp, sp, mq, sq]: [T; 4]) -> T {
        let a = sp / sq;
        let r = a * a;
        let d = (mp - mq) / sq;
        // the order of the composed path: ½ (((r + d²) − ln r) − 1)
        (r + d * d - r.ln::<M>() - T::cst(1.0)) * T::cst(0.5)
    }
    #[inline(always)]
    fn grad<T: Real, M: Mode>([mp, sp, mq, sq]: [T; 4], g: T) -> [T; 4] {
        let a = sp / sq;
        let r = a * a;
        let d = (mp - mq) / sq;
        let gd = g * d / sq;
        [
            gd,
            g * (r - T::cst(1.0)) / sp,
            -gd,
            g * (T::cst(1.0) - r - d * d) / sq,
        ]
    }
    backward_via_bwd!(4);
}
