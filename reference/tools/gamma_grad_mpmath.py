#!/usr/bin/env python3
"""Write reference/gamma_grad_mpmath.json: exact dx/dalpha for x ~ Gamma(alpha, 1).

dx/dalpha = -(dP/dalpha)(alpha, x) / p(x; alpha), with P the regularised lower incomplete
gamma function and p the Gamma(alpha, 1) density, evaluated with mpmath at 60 significant
digits at float64 points (alpha, x): x is the float64 nearest to a quantile of Gamma(alpha, 1)
on a grid from the 1e-6 to the 1 - 1e-6 quantile. Points whose x underflows (below 1e-300,
the lower quantiles of tiny alpha) are skipped. Each value is checked against the derivative
of Q = 1 - P computed separately (they must agree to 1e-30 relative).

Usage: python3 reference/tools/gamma_grad_mpmath.py [output path]
"""

import json
import os
import sys

import mpmath

mpmath.mp.dps = 60

ALPHAS = [1e-3, 0.01, 0.05, 0.3, 1.0, 1.7, 4.0, 20.0, 100.0, 400.0, 1000.0]
QUANTILES = [1e-6, 1e-3, 0.3, 0.7, 0.999, 1 - 1e-6]


def lower(a, x):
    return mpmath.gammainc(a, 0, x, regularized=True)


def upper(a, x):
    return mpmath.gammainc(a, x, mpmath.inf, regularized=True)


def quantile(a, q):
    """The float64 nearest the q-quantile of Gamma(a, 1), by bisection in log space."""
    a = mpmath.mpf(a)
    q = mpmath.mpf(q)
    lo, hi = mpmath.mpf("1e-400"), a + 60 * mpmath.sqrt(a) + 100
    for _ in range(4000):
        mid = mpmath.sqrt(lo * hi) if hi / lo > 4 else (lo + hi) / 2
        if lower(a, mid) < q:
            lo = mid
        else:
            hi = mid
        if hi / lo - 1 < mpmath.mpf("1e-22"):
            break
    return float(lo)


def dsample_dalpha(a, x):
    a = mpmath.mpf(a)
    x = mpmath.mpf(x)
    log_density = (a - 1) * mpmath.log(x) - x - mpmath.loggamma(a)
    density = mpmath.exp(log_density)
    from_p = -mpmath.diff(lambda s: lower(s, x), a) / density
    from_q = mpmath.diff(lambda s: upper(s, x), a) / density
    if abs(from_p - from_q) > mpmath.mpf("1e-30") * abs(from_p):
        raise RuntimeError(f"P and Q derivatives disagree at alpha={a}, x={x}")
    return from_p


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "gamma_grad_mpmath.json")
    alphas, xs, grads, levels = [], [], [], []
    for a in ALPHAS:
        for q in QUANTILES:
            x = quantile(a, q)
            if x < 1e-300:
                continue
            alphas.append(a)
            xs.append(x)
            levels.append(q)
            grads.append(float(dsample_dalpha(a, x)))

    def enc(v):
        return {"shape": [len(v)], "data": v}

    doc = {
        "meta": {
            "generated_with": f"mpmath {mpmath.__version__}, {mpmath.mp.dps} digits",
            "generator": "reference/tools/gamma_grad_mpmath.py",
            "definition": "dsample_dalpha = -(dP/dalpha)(alpha, x) / p(x; alpha), x ~ Gamma(alpha, 1)",
        },
        "alpha": enc(alphas),
        "x": enc(xs),
        "quantile": enc(levels),
        "dsample_dalpha": enc(grads),
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {len(xs)} points to {out}")


if __name__ == "__main__":
    main()
