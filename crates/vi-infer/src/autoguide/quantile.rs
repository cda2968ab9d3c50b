//! The standard normal quantile function, for `quantiles` of the Normal guides.

/// Φ⁻¹(q) for q in (0, 1): Acklam's rational approximation (relative error below 1.2e-9)
/// refined by one Halley step on `erfc`, which brings it to double precision.
pub(crate) fn standard_normal_quantile(q: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.02425;
    let tail = |p: f64| {
        let r = (-2.0 * p.ln()).sqrt();
        (((((C[0] * r + C[1]) * r + C[2]) * r + C[3]) * r + C[4]) * r + C[5])
            / ((((D[0] * r + D[1]) * r + D[2]) * r + D[3]) * r + 1.0)
    };
    let x = if q < LOW {
        tail(q)
    } else if q > 1.0 - LOW {
        -tail(1.0 - q)
    } else {
        let p = q - 0.5;
        let r = p * p;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * p
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    };
    // One Halley step: e = Φ(x) − q, Φ(x) = erfc(−x/√2)/2.
    let e = 0.5 * libm::erfc(-x / std::f64::consts::SQRT_2) - q;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

#[cfg(test)]
mod tests {
    use super::standard_normal_quantile;

    /// Against Φ itself (erfc) and known values.
    #[test]
    fn inverts_the_normal_cdf() {
        assert!(standard_normal_quantile(0.5).abs() < 1e-15);
        assert!((standard_normal_quantile(0.975) - 1.959_963_984_540_054).abs() < 1e-13);
        assert!((standard_normal_quantile(1e-10) + 6.361_340_902_404_056).abs() < 1e-10);
        for k in 1..1000 {
            let q = k as f64 / 1000.0;
            let x = standard_normal_quantile(q);
            let back = 0.5 * libm::erfc(-x / std::f64::consts::SQRT_2);
            assert!(
                (back - q).abs() < 1e-14 * q.max(1e-3),
                "q {q}: Φ(x) = {back}"
            );
        }
    }
}
