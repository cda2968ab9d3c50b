//! Branch-free f32 `exp`, `ln`, `log1p`, `softplus` and `sigmoid` that LLVM vectorises, with
//! the hot loops compiled for AVX-512 and AVX2+FMA and picked once at run time.
//!
//! Each function is a range reduction to a small interval, a polynomial there, and a
//! reconstruction by exponent arithmetic on the bit pattern (the scheme of Cody & Waite, and of
//! Cephes and SLEEF), with every special case (±0, ±∞, NaN, subnormals, overflow) handled by a
//! select rather than a branch, so a loop over a slice has no control flow. The results are
//! within a few ulp of the correctly rounded value over the whole f32 range (tested on a dense
//! grid against f64 `std`). f64 callers use `std`'s functions instead.
//!
//! ```
//! use vi_dist::ops::fastmath::{self, Func};
//! let mut xs = [0.0f32, 1.0, -20.0];
//! fastmath::apply(Func::Softplus, &mut xs);
//! assert!((xs[0] - std::f32::consts::LN_2).abs() < 1e-7);
//! assert!((xs[2] / (-20f32).exp() - 1.0).abs() < 1e-6); // ≈ e^x for x ≪ 0
//! ```

use std::sync::OnceLock;

/// How a polynomial step `a·b + c` is evaluated: a fused multiply-add where the target has one,
/// a multiply then an add elsewhere (`f32::mul_add` without FMA hardware is a slow libm call).
pub(crate) trait Mode {
    /// `a·b + c`.
    fn fma(a: f32, b: f32, c: f32) -> f32;
}

/// Hardware FMA (AVX2+FMA and AVX-512 builds of the loops; every aarch64 CPU).
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
pub(crate) struct Fma;

/// Multiply then add (the portable build of the loops where FMA is not in the baseline).
#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
pub(crate) struct NoFma;

/// The mode of the portable loops: aarch64 always has FMA, baseline x86-64 has none.
#[cfg(target_arch = "aarch64")]
pub(crate) type Portable = Fma;
/// The mode of the portable loops: aarch64 always has FMA, baseline x86-64 has none.
#[cfg(not(target_arch = "aarch64"))]
pub(crate) type Portable = NoFma;

impl Mode for Fma {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

impl Mode for NoFma {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// ln 2 split so that `n · LN2_HI` is exact for |n| < 2¹⁴ (Cody & Waite).
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// Adding `1.5 · 2²³` to a float of magnitude below 2²² rounds it to an integer, which then
/// sits in the low mantissa bits.
const SHIFTER: f32 = 12_582_912.0;
/// Bit pattern of √½: the mantissa of `ln` is reduced to [√½, √2).
const SQRT_HALF_BITS: i32 = 0x3f35_04f3;
const ONE_BITS: i32 = 0x3f80_0000;
const MANTISSA: i32 = 0x007f_ffff;

/// `2ⁿ` for `n` in the normal exponent range [−126, 127].
#[inline(always)]
fn pow2i(n: i32) -> f32 {
    f32::from_bits((n.wrapping_add(127) as u32) << 23)
}

/// `eˣ`. `x` is clamped to [−104, 89] (beyond which the result is 0 or +∞ anyway), reduced to
/// `r = x − n ln 2` with |r| ≤ ½ ln 2, `eʳ` by its Taylor polynomial of degree 7 (truncation
/// below 5e-9 relative), and scaled by `2ⁿ` in two halves so subnormal results are rounded once.
#[inline(always)]
pub(crate) fn exp<M: Mode>(x: f32) -> f32 {
    let xc = if x < -104.0 { -104.0 } else { x };
    let xc = if xc > 89.0 { 89.0 } else { xc };
    let t = M::fma(xc, std::f32::consts::LOG2_E, SHIFTER);
    let n = t - SHIFTER;
    let r = M::fma(n, -LN2_HI, xc);
    let r = M::fma(n, -LN2_LO, r);
    let mut p = 1.0 / 5040.0;
    p = M::fma(p, r, 1.0 / 720.0);
    p = M::fma(p, r, 1.0 / 120.0);
    p = M::fma(p, r, 1.0 / 24.0);
    p = M::fma(p, r, 1.0 / 6.0);
    p = M::fma(p, r, 0.5);
    p = M::fma(p, r, 1.0);
    p = M::fma(p, r, 1.0);
    // n ∈ [−151, 129] is in the low bits of t.
    let ni = (t.to_bits() as i32).wrapping_sub(SHIFTER.to_bits() as i32);
    let n1 = ni >> 1;
    let y = p * pow2i(n1) * pow2i(ni.wrapping_sub(n1));
    if x.is_nan() { x } else { y }
}

/// `ln(1 + f) − f` for `f = m − 1`, `m ∈ [√½, √2)`, by the odd series of
/// `ln((1 + s)/(1 − s)) = 2 atanh s` in `s = f / (2 + f)`, arranged (as fdlibm) so the large
/// term `f` is added last: returns `(hfsq, correction)` with
/// `ln(1 + f) = f − (hfsq − correction)`.
#[inline(always)]
fn log1p_kernel<M: Mode>(f: f32) -> (f32, f32) {
    let s = f / (2.0 + f);
    let z = s * s;
    // R(z) = Σ 2 zᵏ / (2k + 1), k = 1..4: the next term is below 1e-9 · s.
    let mut r = 2.0 / 9.0;
    r = M::fma(r, z, 2.0 / 7.0);
    r = M::fma(r, z, 2.0 / 5.0);
    r = M::fma(r, z, 2.0 / 3.0);
    r *= z;
    let hfsq = 0.5 * f * f;
    (hfsq, s * (hfsq + r))
}

/// Split a positive normal `u` as `2ᵏ · m`, `m ∈ [√½, √2)`: returns `(k, m − 1)` (exact).
#[inline(always)]
fn reduce(u: f32) -> (i32, f32) {
    let ix = (u.to_bits() as i32).wrapping_add(ONE_BITS - SQRT_HALF_BITS);
    let k = (ix >> 23).wrapping_sub(127);
    let m = f32::from_bits(((ix & MANTISSA) + SQRT_HALF_BITS) as u32);
    (k, m - 1.0)
}

/// `ln x`: `x = 2ᵏ m` with `m ∈ [√½, √2)` (subnormals scaled by 2²³ first), then
/// `k ln 2 + ln m` with `ln m` from [`log1p_kernel`]. `ln 0 = −∞`, `ln x = NaN` for `x < 0`.
#[inline(always)]
pub(crate) fn ln<M: Mode>(x: f32) -> f32 {
    let tiny = x < f32::MIN_POSITIVE;
    let xs = if tiny { x * 8_388_608.0 } else { x };
    let (k, f) = reduce(xs);
    let k = if tiny { k.wrapping_sub(23) } else { k };
    let dk = k as f32;
    let (hfsq, corr) = log1p_kernel::<M>(f);
    let y = M::fma(dk, LN2_HI, f - (hfsq - M::fma(dk, LN2_LO, corr)));
    let y = if x == f32::INFINITY { x } else { y };
    let y = if x == 0.0 { f32::NEG_INFINITY } else { y };
    if x < 0.0 || x.is_nan() { f32::NAN } else { y }
}

/// `ln(1 + y)` for `y ∈ [0, 1]` (softplus), without range reduction:
/// `2 atanh(s) = 2s Σ s²ᵏ/(2k + 1)` with `s = y/(2 + y) ∈ [0, ⅓]`, summed to `k = 7` (the rest
/// is below 2e-9 relative). For tiny `y` it is `2s = y` to rounding: full relative accuracy.
#[inline(always)]
fn log1p_unit<M: Mode>(y: f32) -> f32 {
    let s = y / (2.0 + y);
    let z = s * s;
    let mut p = 1.0 / 15.0;
    p = M::fma(p, z, 1.0 / 13.0);
    p = M::fma(p, z, 1.0 / 11.0);
    p = M::fma(p, z, 1.0 / 9.0);
    p = M::fma(p, z, 1.0 / 7.0);
    p = M::fma(p, z, 1.0 / 5.0);
    p = M::fma(p, z, 1.0 / 3.0);
    let s2 = s + s;
    M::fma(s2, z * p, s2)
}

/// `ln(1 + y)`, accurate for small |y|: `u = 1 + y` rounded, its rounding error `c` recovered
/// exactly (Fast2Sum, operands ordered by magnitude), and `ln(1 + y) = ln u + c/u`. `log1p(−1) = −∞`, NaN below −1.
#[inline(always)]
pub(crate) fn log1p<M: Mode>(y: f32) -> f32 {
    let u = 1.0 + y;
    let c = if y <= 1.0 {
        y - (u - 1.0)
    } else {
        1.0 - (u - y)
    };
    let (k, f) = reduce(u);
    let dk = k as f32;
    let (hfsq, corr) = log1p_kernel::<M>(f);
    let corr = corr + c / u;
    let r = M::fma(dk, LN2_HI, f - (hfsq - M::fma(dk, LN2_LO, corr)));
    let r = if y == f32::INFINITY { y } else { r };
    let r = if y == -1.0 { f32::NEG_INFINITY } else { r };
    if y < -1.0 || y.is_nan() { f32::NAN } else { r }
}

/// `ln(1 + eˣ) = max(x, 0) + log1p(e^{−|x|})`: exactly `x` for large `x`, `≈ eˣ` with full
/// relative accuracy for `x ≪ 0`, never overflows.
#[inline(always)]
pub(crate) fn softplus<M: Mode>(x: f32) -> f32 {
    let e = exp::<M>(-x.abs());
    let y = (if x > 0.0 { x } else { 0.0 }) + log1p_unit::<M>(e);
    if x.is_nan() { x } else { y }
}

/// `1 / (1 + e⁻ˣ)` through `e = e^{−|x|}` (no overflow): `1/(1 + e)` for `x ≥ 0`,
/// `e/(1 + e)` below.
#[inline(always)]
pub(crate) fn sigmoid<M: Mode>(x: f32) -> f32 {
    let e = exp::<M>(-x.abs());
    let r = 1.0 / (1.0 + e);
    if x >= 0.0 { r } else { e * r }
}

/// `σ′(x) = σ(x) σ(−x) = e / (1 + e)²` with `e = e^{−|x|}`: accurate in both tails (unlike
/// `y(1 − y)`, which is 0 once `y` rounds to 1).
#[inline(always)]
pub(crate) fn sigmoid_grad<M: Mode>(x: f32) -> f32 {
    let e = exp::<M>(-x.abs());
    let r = 1.0 / (1.0 + e);
    e * r * r
}

/// An instruction set the vectorised loops are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Isa {
    /// Plain Rust for the compile target (SSE2 and multiply-then-add on x86-64; NEON and FMA on
    /// aarch64).
    Portable,
    /// x86-64 AVX2 with FMA (256-bit vectors).
    Avx2Fma,
    /// x86-64 AVX-512F (512-bit vectors, with AVX2 and FMA).
    Avx512,
}

impl Isa {
    /// The best instruction set this CPU has, detected once (`is_x86_feature_detected!`).
    pub(crate) fn detected() -> Isa {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            [Isa::Avx512, Isa::Avx2Fma]
                .into_iter()
                .find(|isa| isa.is_available())
                .unwrap_or(Isa::Portable)
        })
    }

    /// Whether this CPU can run code compiled for `self`.
    pub(crate) fn is_available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// A function of [`apply`].
///
/// ```
/// use vi_dist::ops::fastmath::Func;
/// assert_eq!(Func::Exp.eval(0.0), 1.0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Func {
    /// `eˣ`.
    Exp,
    /// `ln x` (NaN below 0, `−∞` at 0).
    Ln,
    /// `ln(1 + x)` (NaN below −1, `−∞` at −1).
    Log1p,
    /// `ln(1 + eˣ)`.
    Softplus,
    /// `1 / (1 + e⁻ˣ)`.
    Sigmoid,
}

impl Func {
    /// The function at one point (the portable build).
    ///
    /// ```
    /// use vi_dist::ops::fastmath::Func;
    /// assert!((Func::Ln.eval(std::f32::consts::E) - 1.0).abs() < 1e-7);
    /// ```
    pub fn eval(self, x: f32) -> f32 {
        self.scalar::<Portable>(x)
    }

    #[inline(always)]
    fn scalar<M: Mode>(self, x: f32) -> f32 {
        match self {
            Func::Exp => exp::<M>(x),
            Func::Ln => ln::<M>(x),
            Func::Log1p => log1p::<M>(x),
            Func::Softplus => softplus::<M>(x),
            Func::Sigmoid => sigmoid::<M>(x),
        }
    }
}

/// Replace every `x` of `xs` by `f(x)`, with the best instruction set of this CPU.
///
/// ```
/// use vi_dist::ops::fastmath::{self, Func};
/// let mut xs = [0.0f32, 1.0];
/// fastmath::apply(Func::Exp, &mut xs);
/// assert!((xs[1] - std::f32::consts::E).abs() < 1e-6);
/// ```
pub fn apply(f: Func, xs: &mut [f32]) {
    apply_with(Isa::detected(), f, xs)
}

/// [`apply`] with the loop compiled for `isa`; an `isa` this CPU lacks runs the portable
/// loop instead (the tests below compare the builds).
pub(crate) fn apply_with(isa: Isa, f: Func, xs: &mut [f32]) {
    // One loop per (function, instruction set), each with the function inlined into it.
    macro_rules! each {
        ($run:ident, $mode:ty) => {
            match f {
                Func::Exp => $run(xs, exp::<$mode>),
                Func::Ln => $run(xs, ln::<$mode>),
                Func::Log1p => $run(xs, log1p::<$mode>),
                Func::Softplus => $run(xs, softplus::<$mode>),
                Func::Sigmoid => $run(xs, sigmoid::<$mode>),
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    {
        if isa == Isa::Avx512 && isa.is_available() {
            // SAFETY: the CPU has AVX-512F, AVX2 and FMA (checked just above).
            return unsafe { each!(map_avx512, Fma) };
        }
        if isa == Isa::Avx2Fma && isa.is_available() {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { each!(map_avx2, Fma) };
        }
    }
    let _ = isa;
    each!(map_portable, Portable)
}

#[inline(always)]
fn map_portable(xs: &mut [f32], f: impl Fn(f32) -> f32) {
    for x in xs.iter_mut() {
        *x = f(*x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn map_avx512(xs: &mut [f32], f: impl Fn(f32) -> f32) {
    for x in xs.iter_mut() {
        *x = f(*x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn map_avx2(xs: &mut [f32], f: impl Fn(f32) -> f32) {
    for x in xs.iter_mut() {
        *x = f(*x);
    }
}

#[cfg(test)]
mod tests {
    //! Every function on every instruction set this CPU has (and the portable loop), against
    //! f64 `std` on a dense grid of the whole f32 range and at the special values.

    use super::{Func, Isa, apply, apply_with};

    /// The f64 reference of each function.
    fn reference(f: Func, x: f64) -> f64 {
        match f {
            Func::Exp => x.exp(),
            Func::Ln => x.ln(),
            Func::Log1p => x.ln_1p(),
            Func::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            Func::Sigmoid => {
                if x >= 0.0 {
                    1.0 / (1.0 + (-x).exp())
                } else {
                    x.exp() / (1.0 + x.exp())
                }
            }
        }
    }

    /// The spacing of f32 at `r` (the subnormal spacing below the normal range).
    fn ulp_f32(r: f64) -> f64 {
        let a = (r.abs() as f32).max(f32::MIN_POSITIVE);
        let e = a.to_bits() >> 23;
        // 2^(e − 127 − 23), never below the subnormal spacing 2^-149
        2f64.powi(e as i32 - 150).max(2f64.powi(-149))
    }

    /// Error of `y` against the f64 reference in f32 ulps; non-finite references (and results
    /// that round to them) must match exactly.
    fn ulps(y: f32, r: f64) -> f64 {
        let rf = r as f32;
        if !rf.is_finite() || !y.is_finite() {
            let same = (y.is_nan() && rf.is_nan()) || y == rf;
            return if same { 0.0 } else { f64::INFINITY };
        }
        (f64::from(y) - r).abs() / ulp_f32(r)
    }

    /// Every 2039th f32 bit pattern of both signs (about 2 million points, every
    /// binade), plus special values.
    fn grid() -> Vec<f32> {
        let mut g: Vec<f32> = (0..=0x7f80_0000u32)
            .step_by(2039)
            .flat_map(|b| [f32::from_bits(b), -f32::from_bits(b)])
            .collect();
        g.extend([
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            88.7,
            -88.7,
            88.72283,
            88.72284,
            89.0,
            -87.33655,
            103.0,
            -103.0,
            -103.97,
            -104.0,
            1e-45,
            -1e-45,
            1e-40,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::MIN,
            f32::EPSILON,
            1.0,
            -1.0,
            1e4,
            -1e4,
        ]);
        g
    }

    #[test]
    fn fastmath_within_a_few_ulp_on_every_isa() {
        let xs = grid();
        let isas: Vec<Isa> = [Isa::Portable, Isa::Avx2Fma, Isa::Avx512]
            .into_iter()
            .filter(|i| i.is_available())
            .collect();
        for isa in isas {
            for f in [
                Func::Exp,
                Func::Ln,
                Func::Log1p,
                Func::Softplus,
                Func::Sigmoid,
            ] {
                let mut ys = xs.clone();
                apply_with(isa, f, &mut ys);
                let (mut worst, mut at) = (0.0f64, 0.0f32);
                for (&x, &y) in xs.iter().zip(&ys) {
                    let e = ulps(y, reference(f, f64::from(x)));
                    if e > worst || e.is_nan() {
                        (worst, at) = (e, x);
                    }
                }
                println!("{isa:?} {f:?}: max {worst:.2} ulp at {at:e}");
                assert!(worst <= 3.0, "{isa:?} {f:?}: {worst} ulp at x = {at:e}");
            }
        }
    }

    #[test]
    fn fastmath_special_values() {
        let cases: [(Func, f32, f32); 18] = [
            (Func::Exp, f32::NEG_INFINITY, 0.0),
            (Func::Exp, f32::INFINITY, f32::INFINITY),
            (Func::Exp, 0.0, 1.0),
            (Func::Exp, -0.0, 1.0),
            (Func::Exp, 89.0, f32::INFINITY),
            (Func::Exp, -104.0, 0.0),
            (Func::Ln, 0.0, f32::NEG_INFINITY),
            (Func::Ln, f32::INFINITY, f32::INFINITY),
            (Func::Ln, 1.0, 0.0),
            (Func::Log1p, -1.0, f32::NEG_INFINITY),
            (Func::Log1p, 1e-30, 1e-30),
            (Func::Log1p, 1e-45, 1e-45),
            (Func::Softplus, 1e4, 1e4),
            (Func::Softplus, -1e4, 0.0),
            (Func::Softplus, f32::INFINITY, f32::INFINITY),
            (Func::Softplus, f32::NEG_INFINITY, 0.0),
            (Func::Sigmoid, 1e4, 1.0),
            (Func::Sigmoid, -1e4, 0.0),
        ];
        for isa in [Isa::Portable, Isa::detected()] {
            for (f, x, want) in cases {
                let mut y = [x];
                apply_with(isa, f, &mut y);
                assert_eq!(y[0], want, "{isa:?} {f:?}({x})");
            }
            for f in [
                Func::Exp,
                Func::Ln,
                Func::Log1p,
                Func::Softplus,
                Func::Sigmoid,
            ] {
                let mut y = [f32::NAN];
                apply_with(isa, f, &mut y);
                assert!(y[0].is_nan(), "{isa:?} {f:?}(NaN)");
            }
            for (f, x) in [(Func::Ln, -1.0f32), (Func::Ln, -1e-45), (Func::Log1p, -1.5)] {
                let mut y = [x];
                apply_with(isa, f, &mut y);
                assert!(y[0].is_nan(), "{isa:?} {f:?}({x})");
            }
        }
    }

    #[test]
    fn portable_and_detected_isas_are_available() {
        assert!(Isa::Portable.is_available());
        assert!(Isa::detected().is_available());
    }

    #[test]
    fn avx512_implies_avx2_with_fma() {
        if Isa::Avx512.is_available() {
            assert!(Isa::Avx2Fma.is_available());
        }
    }

    /// `apply` runs the detected build; every build is within a few ulp of the reference.
    #[test]
    fn apply_is_the_detected_build() {
        let xs = [0.5f32, -3.0, 7.25, -40.0];
        for f in [Func::Exp, Func::Softplus, Func::Sigmoid] {
            let (mut a, mut b, mut c) = (xs, xs, xs);
            apply(f, &mut a);
            apply_with(Isa::detected(), f, &mut b);
            apply_with(Isa::Portable, f, &mut c);
            assert_eq!(a, b, "{f:?}");
            for (x, y) in xs.iter().zip(&c) {
                assert!(
                    ulps(*y, reference(f, f64::from(*x))) <= 3.0,
                    "{f:?}({x}) = {y}"
                );
            }
        }
    }
}
