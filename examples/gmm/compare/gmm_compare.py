"""Time one SVI step of the Gaussian mixture of `examples/gmm` at scale, in Pyro, for
comparison with `cargo run --release -p gmm -- bench`.

The model of Pyro's GMM tutorial with K components and N points (`config_enumerate`, the
assignments summed out by `TraceEnum_ELBO(max_plate_nesting=1)`), a MAP guide of the weights,
scale and locations, Adam (lr 0.1, betas 0.8, 0.99), f32. `--guide delta` (default) is a
hand-written Delta guide with the parameterisation of the Rust example (softmax logits for the
weights, a positive scale, real locations); `--guide autodelta` is the tutorial's AutoDelta.
Data: N points cycling through components at 0, 5, 10, ... with unit noise (torch's generator:
not the same draw as the Rust bench). Median milliseconds per step after a warm-up. Not run by
CI.

Usage: python gmm_compare.py [--n 10000] [--k 5] [--steps 50] [--guide delta autodelta]
"""

import argparse
import statistics
import time


def run(n, k, steps, warmup, guide_kind):
    import torch
    import pyro
    import pyro.distributions as dist
    from pyro import poutine
    from pyro.infer import SVI, TraceEnum_ELBO, config_enumerate
    from pyro.infer.autoguide import AutoDelta
    from torch.distributions import constraints

    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    g = torch.Generator().manual_seed(0)
    data = (torch.arange(n) % k).float() * 5.0 + torch.randn(n, generator=g)

    @config_enumerate
    def model(data):
        weights = pyro.sample("weights", dist.Dirichlet(0.5 * torch.ones(k)))
        scale = pyro.sample("scale", dist.LogNormal(0.0, 2.0))
        with pyro.plate("components", k):
            locs = pyro.sample("locs", dist.Normal(0.0, 10.0))
        with pyro.plate("data", len(data)):
            assignment = pyro.sample("assignment", dist.Categorical(weights))
            pyro.sample("obs", dist.Normal(locs[assignment], scale), obs=data)

    init_locs = data[torch.randperm(n, generator=g)[:k]]
    init_scale = (data.var() / 2).sqrt()

    def delta_guide(data):
        logits = pyro.param("weights_logits", torch.zeros(k))
        pyro.sample("weights", dist.Delta(logits.softmax(-1), event_dim=1))
        scale = pyro.param("scale_map", init_scale, constraint=constraints.positive)
        pyro.sample("scale", dist.Delta(scale))
        locs = pyro.param("locs_map", init_locs)
        with pyro.plate("components", k):
            pyro.sample("locs", dist.Delta(locs))

    if guide_kind == "delta":
        guide = delta_guide
    else:
        guide = AutoDelta(poutine.block(model, expose=["weights", "locs", "scale"]))
    svi = SVI(
        model,
        guide,
        pyro.optim.Adam({"lr": 0.1, "betas": [0.8, 0.99]}),
        loss=TraceEnum_ELBO(max_plate_nesting=1),
    )
    for _ in range(warmup):
        svi.step(data)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        svi.step(data)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guide", nargs="+", default=["delta"])
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    for kind in a.guide:
        ms = run(a.n, a.k, a.steps, 5, kind)
        print(f"pyro {kind} N = {a.n}, K = {a.k}: {ms:.3f} ms/step")


if __name__ == "__main__":
    main()
