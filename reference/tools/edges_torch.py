#!/usr/bin/env python3
"""Write reference/edges.json: log densities and their gradients at the edges of supports.

Every case is a batch of elementwise (or per-row, for vector families) points at or near the
edge of a family's support or of its parameters' ranges: 0 and 1 - 2^-53 for Beta, subnormal
values for Gamma, probabilities 0, 1e-300 and 1 for the discrete families, tails where a square
overflows, and so on. Each point's figures come from torch 2.x (float64, validate_args=True):
`log_prob(value)`, the gradient of `log_prob(value).sum()` with respect to each parameter and
(continuous families) to the value.

Every figure is checked against an independent truth computed with mpmath at 50 significant
digits from the closed-form density and its analytic derivatives, with the inputs taken
exactly as the float64 numbers given:

- where torch agrees with mpmath (inside the tolerance the conformance tests use for that
  family, non-finite values exactly), torch's figure is stored;
- where it does not, the mpmath figure is stored, torch's is kept beside it (`torch_log_prob`,
  `torch_grad_log_prob`, `torch_grad_value`) and the element is listed in `mpmath` with the
  reason;
- where the truth is undefined (the analytic derivative has no finite value there: `ln 0` or
  `u / 0` in it, at a point where the log density is infinite, or a kink such as Laplace's at
  `x = loc`), torch's convention is stored and the element is listed in `torch_convention`.
  A derivative that is finite where the log density is not (Beta's `d/d concentration0` at
  `x = 0`, Normal's `d/d scale` at `scale = inf`) is a limit, and is checked like any other.

The float32 set (`cases_f32`) is the same points rounded to float32 (rows where a finite
number overflows are dropped, duplicates merged), with figures from torch in float32 and
mpmath at the rounded inputs, compared at the float32 tolerance.

Transforms (`transforms[]`): `y = t(x)`, `log_abs_det_jacobian(x, y)` and the gradient of its
sum with respect to `x` (through `y` too), with the same torch-versus-mpmath rule (mpmath's
gradient is a numerical derivative at 50 digits; these maps are smooth).

Usage: python3 reference/tools/edges_torch.py [output path]
"""

import json
import math
import os
import sys

import mpmath
import numpy as np
import torch
from mpmath import mp, mpf

mp.dps = 50
torch.set_default_dtype(torch.float64)

# Families whose formulas involve lgamma/digamma: the looser float64 tolerance of the
# conformance tests applies (reference/README.md).
SPECIAL = {"Gamma", "Beta", "Dirichlet", "StudentT", "Poisson", "Binomial", "HalfNormal"}

TOL_CLOSED = (1e-9, 1e-12)
TOL_SPECIAL = (1e-6, 1e-9)
TOL_F32 = (1e-4, 1e-4)

BELOW_ONE = 1.0 - 2.0**-53  # 0.9999999999999999, the largest double below 1
EPS = 2.0**-52
SUB = 5e-324  # the smallest subnormal


class Undefined(Exception):
    """The derivative does not exist at this point (torch's convention is stored)."""


def mlog(v):
    return mpmath.ninf if v == 0 else mpmath.log(v)


def xlogy(u, v):
    return mpf(0) if u == 0 else u * mlog(v)


def d_xlogy_du(u, v):
    if v == 0:
        raise Undefined
    return mpmath.log(v)


def d_xlogy_dv(u, v):
    if u == 0:
        return mpf(0)
    if v == 0:
        raise Undefined
    return u / v


def softplus(x):
    return mpmath.log1p(mpmath.exp(x))


def sigmoid(x):
    return 1 / (1 + mpmath.exp(-x))


def normal_lp(m, s, x):
    z = (x - m) / s
    return -z * z / 2 - mpmath.log(s) - mpmath.log(2 * mpmath.pi) / 2


def cauchy_lp(m, s, x):
    z = (x - m) / s
    return -mpmath.log(mpmath.pi) - mpmath.log(s) - mpmath.log1p(z * z)


# ---------- the truth: log density and analytic gradients, per family ----------
# Each takes the parameters (dict of mpf, or lists of mpf for vector families) and the value,
# and returns (log_prob, {param: gradient callable}, value-gradient callable or None).


def truth(family, form, p, x):
    if family == "Normal":
        m, s = p["loc"], p["scale"]
        z = (x - m) / s
        return normal_lp(m, s, x), {
            "loc": lambda: z / s,
            "scale": lambda: (z * z - 1) / s,
        }, (lambda: -z / s)
    if family == "LogNormal":
        m, s = p["loc"], p["scale"]
        y = mlog(x)
        z = (y - m) / s
        return normal_lp(m, s, y) - y, {
            "loc": lambda: z / s,
            "scale": lambda: (z * z - 1) / s,
        }, (lambda: (-z / s - 1) / x)
    if family == "HalfNormal":
        s = p["scale"]
        z = x / s
        return mpmath.log(2) + normal_lp(0, s, x), {
            "scale": lambda: (z * z - 1) / s,
        }, (lambda: -z / s)
    if family in ("Cauchy", "HalfCauchy"):
        m = p.get("loc", mpf(0))
        s = p["scale"]
        z = (x - m) / s
        lp = cauchy_lp(m, s, x) + (mpmath.log(2) if family == "HalfCauchy" else 0)
        grads = {"scale": lambda: -1 / s + 2 * z * z / (s * (1 + z * z))}
        if family == "Cauchy":
            grads["loc"] = lambda: 2 * z / (s * (1 + z * z))
        return lp, grads, (lambda: -2 * z / (s * (1 + z * z)))
    if family == "Laplace":
        m, s = p["loc"], p["scale"]

        def sign():
            if x == m:
                raise Undefined
            return mpmath.sign(x - m)

        return -mpmath.log(2 * s) - abs(x - m) / s, {
            "loc": lambda: sign() / s,
            "scale": lambda: -1 / s + abs(x - m) / (s * s),
        }, (lambda: -sign() / s)
    if family == "StudentT":
        nu, m, s = p["df"], p["loc"], p["scale"]
        y = (x - m) / s
        lp = (
            -(nu + 1) / 2 * mpmath.log1p(y * y / nu)
            - mpmath.log(s)
            - mpmath.log(nu) / 2
            - mpmath.log(mpmath.pi) / 2
            - mpmath.loggamma(nu / 2)
            + mpmath.loggamma((nu + 1) / 2)
        )
        return lp, {
            "df": lambda: -mpmath.log1p(y * y / nu) / 2
            + (nu + 1) / 2 * (y * y / (nu * nu)) / (1 + y * y / nu)
            - 1 / (2 * nu)
            - mpmath.digamma(nu / 2) / 2
            + mpmath.digamma((nu + 1) / 2) / 2,
            "loc": lambda: (nu + 1) * y / (s * (nu + y * y)),
            "scale": lambda: -1 / s + (nu + 1) * y * y / (s * (nu + y * y)),
        }, (lambda: -(nu + 1) * y / (s * (nu + y * y)))
    if family == "Uniform":
        lo, hi = p["low"], p["high"]
        inside = lo <= x < hi
        lp = (mpf(0) if inside else mpmath.ninf) - mpmath.log(hi - lo)
        return lp, {"low": lambda: 1 / (hi - lo), "high": lambda: -1 / (hi - lo)}, (lambda: mpf(0))
    if family == "Exponential":
        r = p["rate"]
        return mpmath.log(r) - r * x, {"rate": lambda: 1 / r - x}, (lambda: -r)
    if family == "Gamma":
        a, r = p["concentration"], p["rate"]
        lp = a * mpmath.log(r) - mpmath.loggamma(a) + xlogy(a - 1, x) - r * x
        return lp, {
            "concentration": lambda: mpmath.log(r) - mpmath.digamma(a) + d_xlogy_du(a - 1, x),
            "rate": lambda: a / r - x,
        }, (lambda: d_xlogy_dv(a - 1, x) - r)
    if family == "Beta":
        a, b = p["concentration1"], p["concentration0"]
        y = 1 - x  # exact in mpmath
        lp = (
            xlogy(a - 1, x)
            + xlogy(b - 1, y)
            + mpmath.loggamma(a + b)
            - mpmath.loggamma(a)
            - mpmath.loggamma(b)
        )
        return lp, {
            "concentration1": lambda: d_xlogy_du(a - 1, x)
            + mpmath.digamma(a + b)
            - mpmath.digamma(a),
            "concentration0": lambda: d_xlogy_du(b - 1, y)
            + mpmath.digamma(a + b)
            - mpmath.digamma(b),
        }, (lambda: d_xlogy_dv(a - 1, x) - d_xlogy_dv(b - 1, y))
    if family == "Dirichlet":
        c = p["concentration"]
        total = sum(c)
        lp = sum(xlogy(ci - 1, xi) for ci, xi in zip(c, x)) + mpmath.loggamma(total)
        lp -= sum(mpmath.loggamma(ci) for ci in c)
        return lp, {
            "concentration": lambda: [
                d_xlogy_du(ci - 1, xi) + mpmath.digamma(total) - mpmath.digamma(ci)
                for ci, xi in zip(c, x)
            ]
        }, (lambda: [d_xlogy_dv(ci - 1, xi) for ci, xi in zip(c, x)])
    if family == "Gumbel":
        m, s = p["loc"], p["scale"]
        y = (m - x) / s
        e = mpmath.exp(y)
        return y - e - mpmath.log(s), {
            "loc": lambda: (1 - e) / s,
            "scale": lambda: -(1 - e) * y / s - 1 / s,
        }, (lambda: -(1 - e) / s)
    if family == "Pareto":
        s, a = p["scale"], p["alpha"]
        lp = mpmath.log(a) + a * mpmath.log(s) - (a + 1) * mpmath.log(x)
        return lp, {
            "alpha": lambda: 1 / a + mpmath.log(s) - mpmath.log(x),
            "scale": lambda: a / s,
        }, (lambda: -(a + 1) / x)
    if family == "Poisson":
        r = p["rate"]
        lp = xlogy(x, r) - r - mpmath.loggamma(x + 1)
        return lp, {"rate": lambda: d_xlogy_dv(x, r) - 1}, None
    if family == "Bernoulli":
        if form == "probs":
            q = p["probs"]
            lp = xlogy(x, q) + xlogy(1 - x, 1 - q)
            return lp, {"probs": lambda: d_xlogy_dv(x, q) - d_xlogy_dv(1 - x, 1 - q)}, None
        lg = p["logits"]
        return x * lg - softplus(lg), {"logits": lambda: x - sigmoid(lg)}, None
    if family == "Binomial":
        n = p["total_count"]
        comb = mpmath.loggamma(n + 1) - mpmath.loggamma(x + 1) - mpmath.loggamma(n - x + 1)
        if form == "probs":
            q = p["probs"]
            lp = comb + xlogy(x, q) + xlogy(n - x, 1 - q)
            return lp, {"probs": lambda: d_xlogy_dv(x, q) - d_xlogy_dv(n - x, 1 - q)}, None
        lg = p["logits"]
        return comb + x * lg - n * softplus(lg), {"logits": lambda: x - n * sigmoid(lg)}, None
    if family == "Geometric":
        if form == "logits":
            lg = p["logits"]
            lp = -x * softplus(lg) - softplus(-lg)
            return lp, {"logits": lambda: -x * sigmoid(lg) + sigmoid(-lg)}, None
        q = p["probs"]
        lp = xlogy(x, 1 - q) + mlog(q)
        return lp, {"probs": lambda: -d_xlogy_dv(x, 1 - q) + 1 / q}, None
    if family in ("Categorical", "OneHotCategorical"):
        k = x.index(1) if family == "OneHotCategorical" else int(x)
        if form == "probs":
            q = p["probs"]
            total = sum(q)
            lp = mlog(q[k] / total)

            def grad():
                if q[k] == 0:
                    raise Undefined
                return [(1 / q[k] if j == k else 0) - 1 / total for j in range(len(q))]

            return lp, {"probs": grad}, None
        lg = p["logits"]
        finite = [v for v in lg if v != mpmath.ninf]
        top = max(finite)
        lse = top + mpmath.log(sum(mpmath.exp(v - top) for v in finite))
        lp = lg[k] - lse
        soft = [mpmath.exp(v - lse) if v != mpmath.ninf else mpf(0) for v in lg]
        return lp, {"logits": lambda: [(1 if j == k else 0) - soft[j] for j in range(len(lg))]}, None
    raise ValueError(family)


# ---------- the cases ----------


def rows(family, names, table, form=None, vector=False, note=""):
    """A case from rows of (param values..., value)."""
    return {
        "family": family,
        "form": form,
        "names": names,
        "rows": table,
        "vector": vector,
        "note": note,
    }


def grid(*axes):
    out = [()]
    for axis in axes:
        out = [o + (v,) for o in out for v in axis]
    return out


# candle's backward pass of a / b computes a / b^2, which underflows for b below ~1e-154 (the
# gradient becomes inf or NaN where torch's (a / b) / b does not): the families composed from
# candle ops are covered down to scale 1e-150 (Normal and HalfNormal, whose kernels are fused,
# down to 1e-300).
SMALL_SCALES = "scales down to 1e-150 (below, candle's division backward underflows)"

CASES = [
    rows(
        "Beta",
        ["concentration1", "concentration0"],
        [
            (a, b, x)
            for (a, b) in [(0.5, 0.5), (2.0, 0.5), (0.5, 2.0), (1.0, 1.0), (1.0, 0.1), (2.0, 3.0)]
            for x in [0.0, SUB, 1e-300, 1e-17, 1.1102230246251565e-16, 0.5, BELOW_ONE, 1 - EPS, 1.0]
        ],
        note="x at 0, subnormal, tiny, 1/2, the two doubles below 1, and 1",
    ),
    rows(
        "Gamma",
        ["concentration", "rate"],
        [
            (a, r, x)
            for a in [1e-3, 0.5, 1.0, 2.0]
            for r in [1.0, 1e-3]
            for x in [0.0, SUB, 1e-300, 1e-10, 1.0, 1e10, 1e300]
        ],
        note="x from 0 through subnormals to 1e300",
    ),
    rows(
        "Exponential",
        ["rate"],
        [
            (r, x)
            for r in [1e-300, 1.0, 1e300]
            for x in [0.0, SUB, 1.0, 1e300, math.inf]
            # 1/rate - x cancels catastrophically there: no edge, just ill-conditioned
            if not (r == 1e-300 and x == 1e300)
        ],
    ),
    rows(
        "Poisson",
        ["rate"],
        grid([0.0, 1e-300, 1.0, 1e300], [0.0, 1.0, 10.0, 1e15]),
        note="rate 0 puts all mass on 0",
    ),
    rows(
        "Dirichlet",
        ["concentration"],
        [
            (c, x)
            for c in [[0.5, 2.0, 1.0], [2.0, 0.5, 1.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]]
            for x in [
                [0.0, 0.5, 0.5],
                [1e-300, 0.5, 0.5],
                [BELOW_ONE, 1.1102230246251565e-16, 0.0],
                [0.25, 0.25, 0.5],
            ]
        ],
        vector=True,
        note="components at 0, tiny and the double below 1",
    ),
    rows(
        "Uniform",
        ["low", "high"],
        [
            (-1.0, 1.0, -1.0),
            (-1.0, 1.0, 0.0),
            (-1.0, 1.0, 0.9999999999999999),
            (-1.0, 1.0, 1.0),
            (0.0, 1e-300, 0.0),
            (0.0, 1e-300, 5e-301),
            (1.0, 1.0 + EPS, 1.0),
        ],
        note="x at low, inside, just below high and at high (outside: torch's half-open density); tiny widths",
    ),
    rows(
        "Normal",
        ["loc", "scale"],
        [
            (0.0, 1.0, 1e150),
            (0.0, 1.0, 1e160),
            (0.0, 1.0, -1e200),
            (0.0, 1e-300, 0.0),
            (0.0, 1e-300, 1e-300),
            (0.0, 1e300, 1e300),
            (1e300, 1.0, 1e300),
            (0.0, math.inf, 1.0),
        ],
        note="far tails, tiny and huge scales; scale +inf (accepted, as torch and Pyro do)",
    ),
    rows(
        "LogNormal",
        ["loc", "scale"],
        grid([0.0], [1.0, 1e-3], [SUB, 1e-300, 1e-10, 1.0, 1e300, 1.7e308]),
        note="x from the smallest subnormal to near the largest double",
    ),
    rows(
        "HalfNormal",
        ["scale"],
        grid([1.0, 1e-300, 1e300], [0.0, SUB, 1e-300, 1.0, 1e150, 1e200]),
    ),
    rows(
        "Cauchy",
        ["loc", "scale"],
        # (not x = scale: d/d scale is -1/scale + 1/scale there, 0 only up to rounding)
        grid([0.0], [1.0, 1e-150], [0.0, 3e-150, 1e150, 1e160, -1e200, 1e300]),
        note="tails where ((x - loc) / scale)^2 overflows; " + SMALL_SCALES,
    ),
    rows(
        "HalfCauchy",
        ["scale"],
        grid([1.0, 1e-150], [0.0, 3e-150, 1.0, 1e150, 1e200, 1e300]),
        note="tails where (x / scale)^2 overflows; " + SMALL_SCALES,
    ),
    rows(
        "StudentT",
        ["df", "loc", "scale"],
        grid([0.5, 1.0, 3.0, 100.0], [0.0], [1.0], [0.0, 1.0, 1e10, 1e150, 1e160, -1e200]),
        note="tails where y^2 / df overflows",
    ),
    rows(
        "Laplace",
        ["loc", "scale"],
        [
            (0.0, 1.0, 0.0),
            (1.0, 2.0, 1.0),
            (0.0, 1.0, 1e300),
            (0.0, 1e-150, 1e-150),
            (0.0, 1e300, -1e300),
        ],
        note="x = loc (kink) and far tails; " + SMALL_SCALES,
    ),
    rows(
        "Gumbel",
        ["loc", "scale"],
        grid([0.0], [1.0], [-800.0, -700.0, -30.0, 0.0, 30.0, 800.0, 1e300]),
        note="(loc - x) / scale large, where its exp overflows",
    ),
    rows(
        "Pareto",
        ["scale", "alpha"],
        [
            (1.0, 2.0, 1.0),
            (1.0, 0.5, 1.0),
            (1e-10, 2.0, 1e300),
            (1e-300, 1.0, 1e300),
            (1e300, 3.0, 1e300),
            (1.0, 1e-3, 1e300),
        ],
        note="x at scale (the lower end of the support) and where x / scale overflows",
    ),
    rows(
        "Bernoulli",
        ["probs"],
        grid([0.0, 1e-300, 1e-20, 1e-10, 0.5, 1 - 1e-10, 1 - EPS, BELOW_ONE, 1.0], [0.0, 1.0]),
        form="probs",
        note="probabilities at and near 0 and 1 (torch clamps them to [eps, 1 - eps])",
    ),
    rows(
        "Bernoulli",
        ["logits"],
        grid([-1000.0, -40.0, 0.0, 40.0, 1000.0], [0.0, 1.0]),
    ),
    rows(
        "Binomial",
        ["total_count", "probs"],
        [
            (n, q, k)
            for n in [0.0, 1.0, 10.0]
            for q in [0.0, 1e-20, 0.5, 1 - 1e-10, 1.0]
            for k in sorted({0.0, min(1.0, n), n})
        ],
        form="probs",
        note="probabilities at and near 0 and 1",
    ),
    rows(
        "Binomial",
        ["total_count", "logits"],
        [(n, lg, k) for n in [1.0, 10.0] for lg in [-1000.0, -40.0, 40.0, 1000.0] for k in [0.0, n]],
    ),
    rows(
        "Geometric",
        ["probs"],
        grid([1e-300, 1e-20, 0.5, 1 - 1e-10, BELOW_ONE, 1.0], [0.0, 1.0, 1e6]),
        # Geometric's default form is probs (as in distributions.json): no `form` field
        note="probabilities near 0 and at/near 1",
    ),
    rows(
        "Geometric",
        ["logits"],
        grid([-800.0, -40.0, 0.0, 40.0, 800.0], [0.0, 1.0, 100.0]),
        form="logits",
        note="torch goes through probs = sigmoid(logits), which round to 0 and 1",
    ),
    rows(
        "Categorical",
        ["probs"],
        [
            ([0.0, 0.5, 0.5], 0.0),
            ([0.0, 0.5, 0.5], 1.0),
            ([1e-30, 0.5, 0.5], 0.0),
            ([1e-300, 1.0, 0.0], 0.0),
            ([1e-300, 1.0, 0.0], 1.0),
        ],
        form="probs",
        vector=True,
        note="classes of probability 0 and below eps (torch clamps them to eps)",
    ),
    rows(
        "Categorical",
        ["logits"],
        [
            ([-1e300, 0.0, 1e300], 0.0),
            ([-1e300, 0.0, 1e300], 2.0),
            ([-800.0, 0.0, 0.0], 0.0),
            ([-math.inf, 0.0, 0.0], 1.0),
        ],
        vector=True,
    ),
    rows(
        "OneHotCategorical",
        ["probs"],
        [([0.0, 0.5, 0.5], [0.0, 1.0, 0.0]), ([1e-30, 0.5, 0.5], [1.0, 0.0, 0.0])],
        form="probs",
        vector=True,
    ),
    rows(
        "OneHotCategorical",
        ["logits"],
        [([-800.0, 0.0, 0.0], [1.0, 0.0, 0.0]), ([-math.inf, 0.0, 0.0], [0.0, 1.0, 0.0])],
        vector=True,
    ),
]

DISCRETE = {"Poisson", "Bernoulli", "Binomial", "Geometric", "Categorical", "OneHotCategorical"}
NON_DIFF = {"total_count"}


def torch_dist(family, form, params):
    D = torch.distributions
    kw = dict(validate_args=True)
    if family == "Pareto":
        return D.Pareto(params["scale"], params["alpha"], **kw)
    if family in ("Bernoulli", "Categorical", "OneHotCategorical", "Geometric"):
        return getattr(D, family)(**params, **kw)
    if family == "Binomial":
        return D.Binomial(**params, **kw)
    if family == "StudentT":
        return D.StudentT(params["df"], params["loc"], params["scale"], **kw)
    return getattr(D, family)(**params, **kw)


def enc(values, shape):
    def one(v):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v

    return {"shape": list(shape), "data": [one(float(v)) for v in values]}


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def to_float(v):
    """An mpf as the nearest double (overflowing to +-inf as IEEE rounding does)."""
    if mpmath.isnan(v):
        return math.nan
    if mpmath.isinf(v):
        return math.inf if v > 0 else -math.inf
    if abs(v) > mpf(2) ** 1024 * (1 - mpf(2) ** -54):
        return math.inf if v > 0 else -math.inf
    return float(v)


def f32(v):
    """A double rounded to the nearest float32 (overflow to inf, underflow to 0)."""
    with np.errstate(over="ignore", under="ignore"):
        return float(np.float32(v))


def round_row(row, dtype):
    if dtype == "f64":
        return row
    return tuple([f32(e) for e in v] if isinstance(v, list) else f32(v) for v in row)


def valid_rows(spec, dtype):
    """The rows, rounded to `dtype`, that torch accepts (rounding can make a row invalid,
    e.g. a width of 1e-300 becomes 0 in float32), without duplicates."""
    out = []
    for row in spec["rows"]:
        rounded = round_row(row, dtype)
        # A finite number that overflows to inf in float32 is not a point of this set.
        if any(
            (isinstance(a, float) and math.isfinite(a) and not math.isfinite(b))
            for a, b in zip(row, rounded)
        ):
            continue
        row = rounded
        if row in out:
            continue
        params = {
            name: torch.tensor([row[i]], dtype=TORCH_DTYPE[dtype])
            for i, name in enumerate(spec["names"])
        }
        try:
            d = torch_dist(spec["family"], spec["form"], params)
            d.log_prob(torch.tensor([row[-1]], dtype=TORCH_DTYPE[dtype]))
        except ValueError:
            continue
        out.append(row)
    return out


TORCH_DTYPE = {"f64": torch.float64, "f32": torch.float32}


def agrees(a, b, tol):
    if math.isnan(b) or math.isinf(b) or math.isnan(a) or math.isinf(a):
        return (math.isnan(a) and math.isnan(b)) or a == b
    rtol, atol = tol
    return abs(a - b) <= atol + rtol * abs(b)


def build_case(spec, index, dtype):
    family, form, names = spec["family"], spec["form"], spec["names"]
    table = valid_rows(spec, dtype)
    tdt = TORCH_DTYPE[dtype]
    cast = to_float if dtype == "f64" else (lambda v: f32(to_float(v)))
    n = len(table)
    vector = spec["vector"]
    width = len(table[0][0]) if vector else None
    cols = {name: [r[i] for r in table] for i, name in enumerate(names)}
    values = [r[-1] for r in table]
    params = {}
    for name in names:
        t = torch.tensor(cols[name], dtype=tdt)
        if name not in NON_DIFF:
            t.requires_grad_(True)
        params[name] = t
    vshape = [n, width] if vector and family in ("Dirichlet", "OneHotCategorical") else [n]
    value = torch.tensor(values, dtype=tdt)
    continuous = family not in DISCRETE
    if continuous:
        value.requires_grad_(True)
    d = torch_dist(family, form, params)
    lp = d.log_prob(value)
    lp.sum().backward()
    t_lp = flat(lp)
    t_grads = {}
    for name in names:
        if name in NON_DIFF:
            continue
        g = params[name].grad
        t_grads[name] = flat(g) if g is not None else [0.0] * params[name].numel()
    t_gv = None
    if continuous:
        t_gv = flat(value.grad) if value.grad is not None else [0.0] * value.numel()

    tol = TOL_F32 if dtype == "f32" else TOL_SPECIAL if family in SPECIAL else TOL_CLOSED
    out_lp = list(t_lp)
    out_grads = {k: list(v) for k, v in t_grads.items()}
    out_gv = list(t_gv) if t_gv is not None else None
    mp_notes, conv_notes = [], []

    for i, row in enumerate(table):
        p = {}
        for j, name in enumerate(names):
            v = row[j]
            p[name] = [mpf(e) for e in v] if isinstance(v, list) else mpf(v)
        x = row[-1]
        xm = [mpf(e) for e in x] if isinstance(x, list) else mpf(x)
        if family == "OneHotCategorical":
            xm = list(x)
        m_lp, m_grads, m_gv = truth(family, form, p, xm)
        m_lp = cast(m_lp)
        if not agrees(t_lp[i], m_lp, tol):
            mp_notes.append(f"log_prob[{i}]: torch {t_lp[i]!r}, mpmath {m_lp!r}")
            out_lp[i] = m_lp

        def settle(what, torch_vals, out_vals, fn, width_here):
            """Compare torch's gradient (a slice of `width_here` at row i) with mpmath's."""
            lo = i * width_here
            try:
                got = fn()
                got = got if isinstance(got, list) else [got]
                got = [cast(g) for g in got]
                if any(not math.isfinite(g) for g in got):
                    raise Undefined
            except Undefined:
                conv_notes.append(f"{what}[{i}]: {torch_vals[lo:lo + width_here]!r}")
                return
            for j, g in enumerate(got):
                if not agrees(torch_vals[lo + j], g, tol):
                    at = f"{i}, {j}" if width_here > 1 else f"{i}"
                    mp_notes.append(f"{what}[{at}]: torch {torch_vals[lo + j]!r}, mpmath {g!r}")
                    out_vals[lo + j] = g

        for name, fn in m_grads.items():
            if name in NON_DIFF:
                continue
            w = width if vector else 1
            settle(f"grad {name}", t_grads[name], out_grads[name], fn, w)
        if m_gv is not None and continuous:
            w = width if family == "Dirichlet" else 1
            settle("grad value", t_gv, out_gv, m_gv, w)

    case = {
        "id": f"{family}{'-' + form if form else ''}-edges-{index}-{dtype}",
        "dist": {
            "type": family,
            "params": {name: enc(flat(params[name]), params[name].shape) for name in names},
            "event_dims": 0,
        },
        "note": spec["note"],
        "value": enc(flat(value), value.shape),
        "log_prob": enc(out_lp, lp.shape),
        "grad_log_prob": {k: enc(v, params[k].shape) for k, v in out_grads.items()},
    }
    if form is not None:
        case["dist"]["form"] = form
    if out_gv is not None:
        case["grad_value"] = enc(out_gv, value.shape)
    if mp_notes:
        case["mpmath"] = mp_notes
        case["torch_log_prob"] = enc(t_lp, lp.shape)
        case["torch_grad_log_prob"] = {k: enc(v, params[k].shape) for k, v in t_grads.items()}
        if t_gv is not None:
            case["torch_grad_value"] = enc(t_gv, value.shape)
    if conv_notes:
        case["torch_convention"] = conv_notes
    return case


# ---------- transforms ----------

TRANSFORMS = [
    ("exp", [-800.0, -745.0, -700.0, 0.0, 700.0, 709.0]),
    ("sigmoid", [-800.0, -40.0, -1.0, 0.0, 1.0, 40.0, 800.0]),
    ("softplus", [-800.0, -40.0, 0.0, 40.0, 800.0]),
    ("stick_breaking", [[-800.0, 0.0], [0.0, 0.0], [40.0, -40.0], [800.0, 800.0], [-40.0, 40.0]]),
]


def mp_transform(name, x):
    """(y, log|det J|) in mpmath."""
    if name == "exp":
        return mpmath.exp(x), x
    if name == "sigmoid":
        return sigmoid(x), -softplus(-x) - softplus(x)
    if name == "softplus":
        return softplus(x), -softplus(-x)
    if name == "stick_breaking":
        # z_i = sigmoid(x_i - ln(k - i)); y_i = z_i prod_{j<i} (1 - z_j); in logs, so that
        # 1 - z does not round to 0 at 50 digits.
        k = len(x)
        shifted = [xi - mpmath.log(k - i) for i, xi in enumerate(x)]
        log_z = [-softplus(-v) for v in shifted]
        log_1mz = [-softplus(v) for v in shifted]
        ys, log_rest, ladj = [], mpf(0), mpf(0)
        for lz, l1 in zip(log_z, log_1mz):
            ys.append(mpmath.exp(lz + log_rest))
            ladj += lz + l1 + log_rest
            log_rest += l1
        ys.append(mpmath.exp(log_rest))
        return ys, ladj
    raise ValueError(name)


def build_transform(name, xs):
    T = torch.distributions.transforms
    t = {
        "exp": T.ExpTransform(),
        "sigmoid": T.SigmoidTransform(),
        "softplus": T.SoftplusTransform(),
        "stick_breaking": T.StickBreakingTransform(),
    }[name]
    x = torch.tensor(xs, requires_grad=True)
    y = t(x)
    ladj = t.log_abs_det_jacobian(x, y)
    ladj.sum().backward()
    t_y, t_ladj, t_g = flat(y), flat(ladj), flat(x.grad)
    out_y, out_ladj, out_g = list(t_y), list(t_ladj), list(t_g)
    notes = []
    vector = name == "stick_breaking"
    for i, xi in enumerate(xs):
        if vector:
            xm = [mpf(v) for v in xi]
            y_m, l_m = mp_transform(name, xm)
            y_m = [to_float(v) for v in y_m]
            k = len(y_m)
            for j, v in enumerate(y_m):
                if not agrees(t_y[i * k + j], v, TOL_CLOSED):
                    notes.append(f"y[{i}, {j}]: torch {t_y[i * k + j]!r}, mpmath {v!r}")
                    out_y[i * k + j] = v
            grads = []
            for j in range(len(xi)):
                def f(v, j=j):
                    xx = list(xm)
                    xx[j] = v
                    return mp_transform(name, xx)[1]

                grads.append(to_float(mpmath.diff(f, xm[j])))
            n = len(xi)
            for j, g in enumerate(grads):
                if not agrees(t_g[i * n + j], g, TOL_CLOSED):
                    notes.append(f"grad x[{i}, {j}]: torch {t_g[i * n + j]!r}, mpmath {g!r}")
                    out_g[i * n + j] = g
        else:
            xm = mpf(xi)
            y_m, l_m = mp_transform(name, xm)
            y_m = to_float(y_m)
            if not agrees(t_y[i], y_m, TOL_CLOSED):
                notes.append(f"y[{i}]: torch {t_y[i]!r}, mpmath {y_m!r}")
                out_y[i] = y_m
            g = to_float(mpmath.diff(lambda v: mp_transform(name, v)[1], xm))
            if not agrees(t_g[i], g, TOL_CLOSED):
                notes.append(f"grad x[{i}]: torch {t_g[i]!r}, mpmath {g!r}")
                out_g[i] = g
        l_m = to_float(l_m)
        if not agrees(t_ladj[i], l_m, TOL_CLOSED):
            notes.append(f"log_abs_det_jacobian[{i}]: torch {t_ladj[i]!r}, mpmath {l_m!r}")
            out_ladj[i] = l_m
    case = {
        "id": f"transform-{name}",
        "transform": name,
        "x": enc(flat(x), x.shape),
        "y": enc(out_y, y.shape),
        "log_abs_det_jacobian": enc(out_ladj, ladj.shape),
        "grad_x": enc(out_g, x.shape),
    }
    if notes:
        case["mpmath"] = notes
        case["torch_y"] = enc(t_y, y.shape)
        case["torch_log_abs_det_jacobian"] = enc(t_ladj, ladj.shape)
        case["torch_grad_x"] = enc(t_g, x.shape)
    return case


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "edges.json"
    )
    cases = [build_case(spec, i, "f64") for i, spec in enumerate(CASES)]
    cases_f32 = [build_case(spec, i, "f32") for i, spec in enumerate(CASES)]
    transforms = [build_transform(name, xs) for name, xs in TRANSFORMS]
    doc = {
        "meta": {
            "generated_with": f"torch {torch.__version__}, mpmath {mpmath.__version__} "
            f"({mp.dps} digits), float64",
            "tolerances": {"closed": list(TOL_CLOSED), "special": list(TOL_SPECIAL)},
        },
        "cases": cases,
        "cases_f32": cases_f32,
        "transforms": transforms,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    for c in cases + cases_f32 + transforms:
        if "mpmath" in c:
            print(f"{c['id']}: torch differs from mpmath at {len(c['mpmath'])} figures")
            for line in c["mpmath"]:
                print("   ", line)


if __name__ == "__main__":
    main()
