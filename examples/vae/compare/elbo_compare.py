"""Time one SVI step of Pyro's Trace_ELBO and TraceGraph_ELBO (with and without a
decaying-average baseline) on the models of `crates/vi-infer/benches/elbos.rs`, for
comparison with `cargo bench -p vi-infer --bench elbos`.

- `plate`: 100 Bernoulli latents in a vectorised plate, z_i ~ Bernoulli(0.5),
  x_i ~ Normal(z_i, 1); the guide Bernoulli(logits=l_i), l a parameter of 100.
- `separate`: the same written as 100 separate sites (z0, x0, z1, ...).

Adam at lr 0.01, one particle, validation off, float32. The three sides alternate one step at
a time, the order rotating each round; prints the median microseconds per step:
`model=<name> pyro_trace_us=A pyro_tracegraph_us=B ratio=B/A pyro_tracegraph_baseline_us=C
ratio_baseline=C/A`. Not run by CI.

Usage: python elbo_compare.py [--threads 2] [--steps 300] [--steps-separate 40]
"""

import argparse
import os
import statistics
import time

N = 100


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--steps", type=int, default=300)
    p.add_argument(
        "--steps-separate",
        type=int,
        default=40,
        help="timed steps of the separate-sites model (Pyro's TraceGraph_ELBO takes ~0.5 s a step there)",
    )
    args = p.parse_args()

    import torch

    import pyro
    import pyro.distributions as dist
    from pyro.infer import SVI, Trace_ELBO, TraceGraph_ELBO
    from pyro.optim import Adam

    torch.set_num_threads(args.threads)
    pyro.enable_validation(False)
    xs = torch.tensor([((i * 37) % 11) / 5.0 - 1.0 for i in range(N)])

    def programs(plate, baseline, prefix):
        infer = (
            {"baseline": {"use_decaying_avg_baseline": True, "baseline_beta": 0.9}}
            if baseline
            else {}
        )

        def model():
            if plate:
                with pyro.plate("data", N):
                    z = pyro.sample("z", dist.Bernoulli(0.5))
                    pyro.sample("x", dist.Normal(z, 1.0), obs=xs)
            else:
                for i in range(N):
                    z = pyro.sample(f"z{i}", dist.Bernoulli(0.5))
                    pyro.sample(f"x{i}", dist.Normal(z, 1.0), obs=xs[i])

        def guide():
            l = pyro.param(prefix + "l", torch.zeros(N))
            if plate:
                with pyro.plate("data", N):
                    pyro.sample("z", dist.Bernoulli(logits=l), infer=infer)
            else:
                for i in range(N):
                    pyro.sample(f"z{i}", dist.Bernoulli(logits=l[i]), infer=infer)

        return model, guide

    for name, plate in [("plate", True), ("separate", False)]:
        pyro.clear_param_store()
        pyro.set_rng_seed(7)
        sides = []
        for k, (elbo, baseline) in enumerate(
            [(Trace_ELBO(), False), (TraceGraph_ELBO(), False), (TraceGraph_ELBO(), True)]
        ):
            model, guide = programs(plate, baseline, f"s{k}_")
            svi = SVI(model, guide, Adam({"lr": 0.01}), loss=elbo)
            sides.append(svi.step)
        steps = args.steps if plate else args.steps_separate
        for _ in range(max(steps // 10, 3)):
            for s in sides:
                s()
        times = [[] for _ in sides]
        for r in range(steps):
            for k in range(len(sides)):
                i = (k + r) % len(sides)
                t0 = time.perf_counter()
                sides[i]()
                times[i].append((time.perf_counter() - t0) * 1e6)
        med = [statistics.median(t) for t in times]
        print(
            f"model={name} pyro_trace_us={med[0]:.1f} pyro_tracegraph_us={med[1]:.1f} "
            f"ratio={med[1] / med[0]:.3f} pyro_tracegraph_baseline_us={med[2]:.1f} "
            f"ratio_baseline={med[2] / med[0]:.3f} threads={args.threads} "
            f"torch={torch.__version__} pyro={pyro.__version__}"
        )


if __name__ == "__main__":
    main()
