#!/usr/bin/env python3
"""Write reference/transformed.json: torch's TransformedDistribution on a few families.

Each case builds `TransformedDistribution(base, transforms)` in float64 with
`validate_args=True` and records what torch computes:

- `batch_shape` and `event_shape` (torch's constructor: base dims reinterpreted as event dims
  where a transform needs them, the base expanded where a transform's parameters broadcast);
- `value`: two draws (`sample((2,))`, seeded), shape `[2] + batch + event`;
- `log_prob` of `value`, and `grad_log_prob`: the gradient of `log_prob(value).sum()` with
  respect to each parameter of the base (its torch name), each tensor parameter of a
  transform (`transform.K.NAME`, K the transform's position) and the value (`value`);
- `sample_shape` and `rsample_shape`: the shape of `rsample(sample_shape)` (of `sample` where
  the base has no rsample);
- for cases with `expand`: the batch shape after `expand(expand)` and `expanded_log_prob`,
  the log density under the expanded distribution of `expanded_value` (`value` with size-1
  dims inserted after the sample dim, so that it broadcasts with the new batch shape).

Transforms are encoded as `{"type": T, ...}` with T one of `exp`, `sigmoid`, `softplus`,
`stick_breaking`, `affine` (`loc`, `scale`: a number or a tensor; `event_dim`) and
`transform_to` (`constraint`: `interval` with `low`, `high`, or `positive`, or
`greater_than` with `lower_bound`), which is torch's `transform_to(constraint)`. The base is
encoded as in distributions.json (`type`, `params`, `event_dims`).

torch defines no mean, variance or entropy for TransformedDistribution, and none are stored.

Usage: python3 reference/tools/transformed_torch.py [output path]
"""

import json
import os
import sys

import torch
from torch.distributions import (
    Beta,
    Gamma,
    Independent,
    Laplace,
    MultivariateNormal,
    Normal,
    TransformedDistribution,
    Uniform,
    constraints,
    transform_to,
)
from torch.distributions.transforms import (
    AffineTransform,
    ExpTransform,
    SigmoidTransform,
    SoftplusTransform,
    StickBreakingTransform,
)

torch.set_default_dtype(torch.float64)
torch.manual_seed(20260518)

SAMPLE_SHAPE = [5]


def enc_num(x):
    if x != x:
        return "nan"
    if x == float("inf"):
        return "inf"
    if x == float("-inf"):
        return "-inf"
    return x


def enc(t):
    t = torch.as_tensor(t).detach()
    return {"shape": list(t.shape), "data": [enc_num(v) for v in t.reshape(-1).tolist()]}


def leaf(values):
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


FAMILIES = {
    "Normal": lambda p: Normal(p["loc"], p["scale"], validate_args=True),
    "Laplace": lambda p: Laplace(p["loc"], p["scale"], validate_args=True),
    "Uniform": lambda p: Uniform(p["low"], p["high"], validate_args=True),
    "Gamma": lambda p: Gamma(p["concentration"], p["rate"], validate_args=True),
    "Beta": lambda p: Beta(p["concentration1"], p["concentration0"], validate_args=True),
    "MultivariateNormal": lambda p: MultivariateNormal(
        p["loc"], scale_tril=p["scale_tril"], validate_args=True
    ),
}


def build_base(spec):
    params = {k: leaf(v) for k, v in spec["params"].items()}
    d = FAMILIES[spec["type"]](params)
    if spec.get("event_dims", 0) > 0:
        d = Independent(d, spec["event_dims"], validate_args=True)
    return d, params


def build_transform(spec, k):
    """The torch transform of `spec` and its tensor parameters, named transform.K.NAME."""
    kind = spec["type"]
    tensors = {}
    if kind == "exp":
        return ExpTransform(), tensors
    if kind == "sigmoid":
        return SigmoidTransform(), tensors
    if kind == "softplus":
        return SoftplusTransform(), tensors
    if kind == "stick_breaking":
        return StickBreakingTransform(), tensors
    if kind == "affine":
        def param(name):
            v = spec[name]
            if isinstance(v, (int, float)):
                return float(v)
            t = leaf(v)
            tensors[f"transform.{k}.{name}"] = t
            return t
        return AffineTransform(param("loc"), param("scale"), event_dim=spec.get("event_dim", 0)), tensors
    if kind == "transform_to":
        c = spec["constraint"]
        if c == "interval":
            return transform_to(constraints.interval(spec["low"], spec["high"])), tensors
        if c == "positive":
            return transform_to(constraints.positive), tensors
        if c == "greater_than":
            return transform_to(constraints.greater_than(spec["lower_bound"])), tensors
    raise ValueError(f"unknown transform {spec}")


def build(case):
    base, params = build_base(case["base"])
    transforms, tensors = [], {}
    for k, t in enumerate(case["transforms"]):
        tr, ts = build_transform(t, k)
        transforms.append(tr)
        tensors.update(ts)
    d = TransformedDistribution(base, transforms, validate_args=True)
    return d, {**params, **tensors}


def plain(spec):
    """`spec` with its tensor values as nested lists of floats (JSON)."""
    return json.loads(json.dumps(spec))


def encode_dist_spec(spec):
    out = {"type": spec["type"], "params": {}, "event_dims": spec.get("event_dims", 0)}
    for k, v in spec["params"].items():
        out["params"][k] = enc(torch.tensor(v, dtype=torch.float64))
    return out


def encode_transform(spec):
    out = dict(spec)
    for name in ("loc", "scale"):
        if name in out and not isinstance(out[name], (int, float)):
            out[name] = enc(torch.tensor(out[name], dtype=torch.float64))
    return out


CASES = [
    {
        "name": "Normal+exp",
        "base": {"type": "Normal", "params": {"loc": [-0.5, 0.0, 1.5], "scale": [0.3, 1.0, 2.5]}},
        "transforms": [{"type": "exp"}],
        "expand": [2, 3],
    },
    {
        "name": "Normal+sigmoid",
        "base": {"type": "Normal", "params": {"loc": [0.4, -1.0], "scale": [1.7, 0.5]}},
        "transforms": [{"type": "sigmoid"}],
    },
    {
        "name": "Normal+softplus",
        "base": {"type": "Normal", "params": {"loc": [[0.2], [-0.3]], "scale": [[0.8], [1.4]]}},
        "transforms": [{"type": "softplus"}],
    },
    {
        "name": "Normal+affine+exp",
        "base": {"type": "Normal", "params": {"loc": [0.2, -0.4, 0.0], "scale": [0.7, 1.3, 0.5]}},
        "transforms": [
            {"type": "affine", "loc": [0.5, -1.0, 0.25], "scale": [1.5, -0.75, 2.0]},
            {"type": "exp"},
        ],
    },
    {
        "name": "Normal(scalar)+affine(tensor loc)",
        "base": {"type": "Normal", "params": {"loc": 0.3, "scale": 1.2}},
        "transforms": [{"type": "affine", "loc": [1.0, 2.0, 3.0], "scale": 0.5}],
        "expand": [2, 3],
    },
    {
        "name": "Normal+affine(event_dim 1)",
        "base": {
            "type": "Normal",
            "params": {"loc": [[0.1, 0.2, 0.3], [-0.1, 0.0, 0.5]], "scale": [[1.0, 0.5, 2.0], [0.3, 0.9, 1.1]]},
        },
        "transforms": [{"type": "affine", "loc": 1.0, "scale": [2.0, -3.0, 0.5], "event_dim": 1}],
    },
    {
        "name": "Normal+stick_breaking",
        "base": {
            "type": "Normal",
            "params": {
                "loc": [[0.0, 0.5, -0.5], [1.0, -1.0, 0.2]],
                "scale": [[1.0, 0.7, 1.3], [0.4, 2.0, 0.9]],
            },
        },
        "transforms": [{"type": "stick_breaking"}],
        "expand": [3, 2],
    },
    {
        "name": "Normal+transform_to(interval(-1, 3))",
        "base": {"type": "Normal", "params": {"loc": [0.0, 1.0], "scale": [1.0, 0.6]}},
        "transforms": [{"type": "transform_to", "constraint": "interval", "low": -1.0, "high": 3.0}],
    },
    {
        "name": "Normal+transform_to(greater_than(2))",
        "base": {"type": "Normal", "params": {"loc": [0.0, -1.0], "scale": [0.5, 1.5]}},
        "transforms": [{"type": "transform_to", "constraint": "greater_than", "lower_bound": 2.0}],
    },
    {
        "name": "Uniform+exp",
        "base": {"type": "Uniform", "params": {"low": [-1.0, 0.0], "high": [1.0, 2.5]}},
        "transforms": [{"type": "exp"}],
    },
    {
        "name": "Uniform+affine+sigmoid",
        "base": {"type": "Uniform", "params": {"low": [-2.0, 0.5], "high": [1.0, 3.0]}},
        "transforms": [{"type": "affine", "loc": 0.5, "scale": -1.5}, {"type": "sigmoid"}],
    },
    {
        "name": "Laplace+exp",
        "base": {"type": "Laplace", "params": {"loc": [0.0, 1.0], "scale": [0.5, 2.0]}},
        "transforms": [{"type": "exp"}],
    },
    {
        "name": "Gamma+affine(event_dim 1)",
        "base": {"type": "Gamma", "params": {"concentration": [[2.0, 3.0], [0.7, 5.0]], "rate": [[1.0, 0.5], [2.0, 1.5]]}},
        "transforms": [{"type": "affine", "loc": [0.5, -0.5], "scale": [2.0, 0.25], "event_dim": 1}],
        "special": True,
    },
    {
        "name": "Beta+affine",
        "base": {"type": "Beta", "params": {"concentration1": [2.0, 0.8], "concentration0": [3.0, 1.5]}},
        "transforms": [{"type": "affine", "loc": -1.0, "scale": 4.0}],
        "special": True,
    },
    {
        "name": "MultivariateNormal+exp",
        "base": {
            "type": "MultivariateNormal",
            "params": {
                "loc": [[0.1, -0.2, 0.3], [0.0, 0.5, -0.5]],
                "scale_tril": [[[1.0, 0.0, 0.0], [0.3, 0.8, 0.0], [-0.2, 0.1, 0.6]]],
            },
        },
        "transforms": [{"type": "exp"}],
    },
    {
        "name": "Independent(Normal)+sigmoid+affine",
        "base": {
            "type": "Normal",
            "params": {"loc": [[0.3, -0.3], [1.0, 0.0]], "scale": [[0.5, 1.0], [1.5, 0.8]]},
            "event_dims": 1,
        },
        "transforms": [{"type": "sigmoid"}, {"type": "affine", "loc": 2.0, "scale": [1.0, 3.0]}],
    },
]


def run(case):
    d, params = build(case)
    value = d.sample((2,)).detach().requires_grad_(True)
    lp = d.log_prob(value)
    grads = torch.autograd.grad(lp.sum(), list(params.values()) + [value], allow_unused=True)
    grad = {}
    for (name, p), g in zip(list(params.items()) + [("value", value)], grads):
        grad[name] = enc(torch.zeros_like(p) if g is None else g)
    draw = d.rsample(SAMPLE_SHAPE) if d.has_rsample else d.sample(SAMPLE_SHAPE)
    out = {
        "name": case["name"],
        "base": encode_dist_spec(case["base"]),
        "transforms": [encode_transform(t) for t in case["transforms"]],
        "special": case.get("special", False),
        "batch_shape": list(d.batch_shape),
        "event_shape": list(d.event_shape),
        "value": enc(value),
        "log_prob": enc(lp),
        "grad_log_prob": grad,
        "sample_shape": SAMPLE_SHAPE,
        "rsample_shape": list(draw.shape),
    }
    if "expand" in case:
        e = d.expand(torch.Size(case["expand"]))
        lead = [1] * (len(case["expand"]) - len(d.batch_shape))
        ev = value.detach().reshape([2] + lead + list(d.batch_shape) + list(d.event_shape))
        out["expand"] = case["expand"]
        out["expanded_batch_shape"] = list(e.batch_shape)
        out["expanded_value"] = enc(ev)
        out["expanded_log_prob"] = enc(e.log_prob(ev))
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "transformed.json")
    doc = {
        "generator": "reference/tools/transformed_torch.py",
        "torch": torch.__version__,
        "dtype": "float64",
        "cases": [run(c) for c in CASES],
    }
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {len(doc['cases'])} cases to {path}")


if __name__ == "__main__":
    main()
