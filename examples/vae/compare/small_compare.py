"""Time one SVI step of the small models of `crates/vi-infer/benches/small_models.rs` in
Pyro and in plain torch, for comparison with `cargo bench -p vi-infer --bench small_models`.

- `tiny`: mu ~ Normal(0, 10), 100 observations y_i ~ Normal(mu, 1) in a plate; guide
  Normal(loc, scale), scale positive.
- `regression`: w ~ Normal(0, 1).to_event(1) on 3 dims, b ~ Normal(0, 10),
  sigma ~ HalfNormal(1), y_i ~ Normal(x_i . w + b, sigma) for N = 1000 points in a plate;
  guide Normal.to_event(1) on w, Normal on b, LogNormal on sigma (Monte Carlo term for sigma,
  as in the Rust bench).
- `plate`: z [256, 50] ~ Normal(0, 1).to_event(1) in a plate, x ~ Normal(z, 1).to_event(1);
  guide Normal(loc, scale).to_event(1) with loc, scale [256, 50].

Also, Pyro only (`crates/vi-infer/benches/autoguide.rs` on the vi side):
- `regression_autonormal`, `regression_automvn`: the regression with `AutoNormal` /
  `AutoMultivariateNormal` (the mean as `(x * w).sum(-1) + b`, which broadcasts) instead of the
  guide by hand; `regression_bcast`: the guide by hand on that same model.
- `predictive`: `Predictive(model, guide=AutoNormal, num_samples=1000, parallel=True)()` on the
  regression (after 200 steps), median milliseconds per call, beside one `svi.step()`; and a
  few calls with `parallel=False`.

Pyro: `SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), TraceMeanField_ELBO())`, timed
around `svi.step()`. torch: the same loss by hand (analytic KL where the Rust bench has one),
`torch.optim.Adam(lr=1e-2)`, timed around forward, backward and step. Median microseconds
per step after a warm-up. Not run by CI.

Usage: python small_compare.py [--impl pyro torch] [--models tiny regression plate
  regression_bcast regression_autonormal regression_automvn predictive]
"""

import argparse
import math
import os
import statistics
import time


def time_steps(step, warmup, steps):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(times)


def data(torch, name):
    g = torch.Generator().manual_seed(0)
    if name == "tiny":
        return (torch.randn(100, generator=g) + 2.0,)
    if name == "regression":
        x = torch.randn(1000, 3, generator=g)
        y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3 + 0.5 * torch.randn(1000, generator=g)
        return x, y
    return (torch.randn(256, 50, generator=g),)


def pyro_step(torch, name, tensors):
    import pyro
    import pyro.distributions as dist
    from pyro.distributions import constraints
    from pyro.infer import SVI, TraceMeanField_ELBO
    from pyro.optim import Adam

    pyro.clear_param_store()
    pos = constraints.positive

    if name == "tiny":
        (y,) = tensors

        def model():
            mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
            with pyro.plate("data", y.shape[0]):
                pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

        def guide():
            loc = pyro.param("loc", torch.tensor(0.0))
            scale = pyro.param("scale", torch.tensor(1.0), constraint=pos)
            pyro.sample("mu", dist.Normal(loc, scale))

    elif name == "regression":
        x, y = tensors

        def model():
            w = pyro.sample("w", dist.Normal(torch.zeros(3), torch.ones(3)).to_event(1))
            b = pyro.sample("b", dist.Normal(0.0, 10.0))
            sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
            with pyro.plate("data", y.shape[0]):
                pyro.sample("y", dist.Normal(x @ w + b, sigma), obs=y)

        def guide():
            w_loc = pyro.param("w_loc", torch.zeros(3))
            w_scale = pyro.param("w_scale", torch.ones(3), constraint=pos)
            b_loc = pyro.param("b_loc", torch.tensor(0.0))
            b_scale = pyro.param("b_scale", torch.tensor(1.0), constraint=pos)
            s_loc = pyro.param("s_loc", torch.tensor(0.0))
            s_scale = pyro.param("s_scale", torch.tensor(1.0), constraint=pos)
            pyro.sample("w", dist.Normal(w_loc, w_scale).to_event(1))
            pyro.sample("b", dist.Normal(b_loc, b_scale))
            pyro.sample("sigma", dist.LogNormal(s_loc, s_scale))

    elif name.startswith("regression_"):
        from pyro.infer.autoguide import AutoMultivariateNormal, AutoNormal

        model, x, y = bcast_regression(torch, tensors)
        if name == "regression_autonormal":
            guide = AutoNormal(model)
        elif name == "regression_automvn":
            guide = AutoMultivariateNormal(model)
        else:

            def guide():
                w_loc = pyro.param("w_loc", torch.zeros(3))
                w_scale = pyro.param("w_scale", torch.ones(3), constraint=pos)
                b_loc = pyro.param("b_loc", torch.tensor(0.0))
                b_scale = pyro.param("b_scale", torch.tensor(1.0), constraint=pos)
                s_loc = pyro.param("s_loc", torch.tensor(0.0))
                s_scale = pyro.param("s_scale", torch.tensor(1.0), constraint=pos)
                pyro.sample("w", dist.Normal(w_loc, w_scale).to_event(1))
                pyro.sample("b", dist.Normal(b_loc, b_scale))
                pyro.sample("sigma", dist.LogNormal(s_loc, s_scale))

    else:
        (x,) = tensors
        n, d = x.shape

        def model():
            with pyro.plate("data", n):
                z = pyro.sample("z", dist.Normal(torch.zeros(d), torch.ones(d)).to_event(1))
                pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

        def guide():
            loc = pyro.param("loc", torch.zeros(n, d))
            scale = pyro.param("scale", torch.ones(n, d), constraint=pos)
            with pyro.plate("data", n):
                pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    svi = SVI(model, guide, Adam({"lr": 1e-2}), loss=TraceMeanField_ELBO())
    return svi.step


def bcast_regression(torch, tensors):
    """The regression model with the mean by broadcasting (so that it runs in Predictive's
    outer plate), as vi's `benches/autoguide.rs` writes it."""
    import pyro
    import pyro.distributions as dist

    x, y = tensors

    def model():
        w = pyro.sample("w", dist.Normal(torch.zeros(3), torch.ones(3)).to_event(1))
        b = pyro.sample("b", dist.Normal(0.0, 10.0))
        sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
        mean = (x * w.unsqueeze(-2)).sum(-1) + b
        with pyro.plate("data", y.shape[0]):
            pyro.sample("y", dist.Normal(mean, sigma), obs=y)

    return model, x, y


def pyro_predictive(torch, tensors, runs, loop_runs):
    """Median ms of `Predictive(model, guide=AutoNormal, num_samples=1000, parallel=True)()`,
    of a few calls with parallel=False, and of one SVI step (us)."""
    import pyro
    from pyro.infer import SVI, Predictive, TraceMeanField_ELBO
    from pyro.infer.autoguide import AutoNormal
    from pyro.optim import Adam

    pyro.clear_param_store()
    model, _, _ = bcast_regression(torch, tensors)
    guide = AutoNormal(model)
    svi = SVI(model, guide, Adam({"lr": 1e-2}), loss=TraceMeanField_ELBO())
    for _ in range(200):
        svi.step()
    parallel = Predictive(model, guide=guide, num_samples=1000, parallel=True)
    looped = Predictive(model, guide=guide, num_samples=1000, parallel=False)
    par_ms = time_steps(parallel, 3, runs) / 1e3
    loop_ms = time_steps(looped, 0, loop_runs) / 1e3
    step_us = time_steps(svi.step, 20, 200)
    return par_ms, loop_ms, step_us


def torch_step(torch, name, tensors):
    half_log_2pi = 0.5 * math.log(2 * math.pi)

    def log(v):
        return torch.log(v) if torch.is_tensor(v) else math.log(v)

    def normal_lp(v, loc, scale):
        return -0.5 * ((v - loc) / scale) ** 2 - log(scale) - half_log_2pi

    def kl_normal(loc, scale, p_loc, p_scale):
        r = scale / p_scale
        return 0.5 * (r**2 + ((loc - p_loc) / p_scale) ** 2 - 1.0) - log(r)

    if name == "tiny":
        (y,) = tensors
        loc = torch.zeros((), requires_grad=True)
        log_scale = torch.zeros((), requires_grad=True)
        params = [loc, log_scale]

        def loss():
            scale = log_scale.exp()
            mu = loc + scale * torch.randn(())
            return kl_normal(loc, scale, 0.0, 10.0) - normal_lp(y, mu, 1.0).sum()

    elif name == "regression":
        x, y = tensors
        w_loc = torch.zeros(3, requires_grad=True)
        w_ls = torch.zeros(3, requires_grad=True)
        b_loc = torch.zeros((), requires_grad=True)
        b_ls = torch.zeros((), requires_grad=True)
        s_loc = torch.zeros((), requires_grad=True)
        s_ls = torch.zeros((), requires_grad=True)
        params = [w_loc, w_ls, b_loc, b_ls, s_loc, s_ls]

        def loss():
            w_scale, b_scale, s_scale = w_ls.exp(), b_ls.exp(), s_ls.exp()
            w = w_loc + w_scale * torch.randn(3)
            b = b_loc + b_scale * torch.randn(())
            log_sigma = s_loc + s_scale * torch.randn(())
            sigma = log_sigma.exp()
            # Monte Carlo term for sigma: log LogNormal(sigma) - log HalfNormal(sigma).
            log_q = normal_lp(log_sigma, s_loc, s_scale) - log_sigma
            log_p = math.log(2.0) + normal_lp(sigma, 0.0, 1.0)
            kl = kl_normal(w_loc, w_scale, 0.0, 1.0).sum() + kl_normal(b_loc, b_scale, 0.0, 10.0)
            return kl + (log_q - log_p) - normal_lp(y, x @ w + b, sigma).sum()

    else:
        (x,) = tensors
        loc = torch.zeros_like(x, requires_grad=True)
        log_scale = torch.zeros_like(x, requires_grad=True)
        params = [loc, log_scale]

        def loss():
            scale = log_scale.exp()
            z = loc + scale * torch.randn_like(x)
            return kl_normal(loc, scale, 0.0, 1.0).sum() - normal_lp(x, z, 1.0).sum()

    opt = torch.optim.Adam(params, lr=1e-2)

    def step():
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
        return value.item()

    return step


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--impl", nargs="+", default=["pyro", "torch"], choices=["pyro", "torch"])
    models = [
        "tiny", "regression", "plate", "regression_bcast", "regression_autonormal",
        "regression_automvn", "predictive",
    ]
    p.add_argument("--models", nargs="+", default=models, choices=models)
    p.add_argument("--loop-runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--warmup", type=int, default=50)
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for model in args.models:
        tensors = data(torch, "regression" if model.startswith(("regression", "predictive")) else model)
        if model == "predictive":
            if "pyro" in args.impl:
                par, loop, step = pyro_predictive(torch, tensors, 20, args.loop_runs)
                print(
                    f"model=predictive pyro_parallel_ms={par:.1f} pyro_loop_ms={loop:.0f} "
                    f"pyro_step_us={step:.1f} ratio={1e3 * par / step:.1f} threads={args.threads}"
                )
            continue
        for name in args.impl:
            if name == "torch" and model.startswith("regression_"):
                continue
            make = {"pyro": pyro_step, "torch": torch_step}[name]
            us = time_steps(make(torch, model, tensors), args.warmup, args.steps)
            print(f"model={model} {name}_us={us:.1f} threads={args.threads}")


if __name__ == "__main__":
    main()
