"""Time one SVI step of the HMM of `examples/hmm` in Pyro, for comparison with
`cargo run --release -p hmm -- bench`.

The model: K hidden states, T steps, x_0 uniform, x_t ~ Categorical(trans[x_{t-1}]),
y_t ~ Normal(locs[x_t], scale); the transition matrix (simplex rows), the means and the scale
are parameters (maximum likelihood: the guide is empty), Adam with lr 0.05, f32.

- `markov`: the model written step by step, `for t in pyro.markov(range(T))`, the states
  marked `infer={"enumerate": "parallel"}`, `TraceEnum_ELBO(max_plate_nesting=0)`: what
  `examples/hmm` writes with `ctx.markov` and `TraceEnumElbo`.
- `discrete_hmm`: Pyro's hand-vectorised `dist.DiscreteHMM` (a parallel scan over time), one
  observe statement, `Trace_ELBO`.

The data are drawn from the same generating parameters as the Rust example (sticky chain,
means 0, 2, 4, ..., scale 0.6) with torch's generator (not the same draw). Median
milliseconds per step after a warm-up. Not run by CI.

Usage: python hmm_compare.py [--impl markov discrete_hmm] [--t 1000] [--k 10] [--steps 5]
"""

import argparse
import statistics
import time


def truth(torch, k):
    trans = torch.zeros(k, k)
    for i in range(k):
        off = [0.0 if j == i else 1.0 + ((i + 2 * j) % 3) for j in range(k)]
        total = sum(off)
        for j in range(k):
            trans[i, j] = 0.8 if j == i else 0.2 * off[j] / total
    locs = torch.arange(k, dtype=torch.float32) * 2.0
    return trans, locs, 0.6


def simulate(torch, k, t):
    g = torch.Generator().manual_seed(0)
    trans, locs, scale = truth(torch, k)
    x = int(torch.randint(k, (1,), generator=g))
    ys = []
    for _ in range(t):
        ys.append(float(locs[x]) + scale * float(torch.randn(1, generator=g)))
        x = int(torch.multinomial(trans[x], 1, generator=g))
    return torch.tensor(ys)


def initial(torch, k, ys):
    lo, hi = float(ys.min()), float(ys.max())
    stay = 0.5 if k > 1 else 1.0
    trans = torch.full((k, k), (1 - stay) / max(k - 1, 1))
    trans.fill_diagonal_(stay)
    locs = torch.tensor([lo + (hi - lo) * (j + 0.5) / k for j in range(k)])
    return trans, locs, float(ys.std()) / k


def run(impl, k, t, steps, warmup):
    import torch
    import pyro
    import pyro.distributions as dist
    from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO
    from torch.distributions import constraints

    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    ys = simulate(torch, k, t)
    trans0, locs0, scale0 = initial(torch, k, ys)
    init = torch.full((k,), 1.0 / k)

    def params():
        trans = pyro.param("trans", trans0, constraint=constraints.simplex)
        locs = pyro.param("locs", locs0)
        scale = pyro.param("scale", torch.tensor(scale0), constraint=constraints.positive)
        return trans, locs, scale

    def markov_model():
        trans, locs, scale = params()
        x = None
        for i in pyro.markov(range(t)):
            probs = init if x is None else trans[x]
            x = pyro.sample(
                f"x_{i}", dist.Categorical(probs), infer={"enumerate": "parallel"}
            )
            pyro.sample(f"y_{i}", dist.Normal(locs[x], scale), obs=ys[i])

    def hmm_model():
        trans, locs, scale = params()
        d = dist.DiscreteHMM(
            init.log(), trans.log(), dist.Normal(locs, scale), duration=t
        )
        pyro.sample("y", d, obs=ys)

    def guide():
        pass

    if impl == "markov":
        svi = SVI(markov_model, guide, pyro.optim.Adam({"lr": 0.05}),
                  TraceEnum_ELBO(max_plate_nesting=0))
    else:
        svi = SVI(hmm_model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(warmup):
        svi.step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        svi.step()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--impl", nargs="+", default=["markov", "discrete_hmm"])
    p.add_argument("--t", type=int, nargs="+", default=[1000])
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    for t in a.t:
        for impl in a.impl:
            steps = a.steps if impl == "markov" else max(a.steps, 50)
            warmup = 1 if impl == "markov" else 5
            ms = run(impl, a.k, t, steps, warmup)
            print(f"pyro {impl} K = {a.k}, T = {t}: {ms:.2f} ms/step")


if __name__ == "__main__":
    main()
