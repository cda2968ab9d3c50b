"""Time one training step of Pyro's VAE, in Pyro and in plain torch, for comparison with
`cargo run --release -p vae -- bench`.

The network and the loss are those of `examples/vae` (Pyro's VAE tutorial): encoder
784 -> hidden (softplus) -> loc and exp-scale of the latent; decoder latent -> hidden
(softplus) -> 784 logits; Bernoulli likelihood on the pixels summed over the image, prior
Normal(0, 1) on each latent dimension; the loss is the ELBO's negative summed over the batch;
Adam with lr 1e-3.

- `pyro`: the model and guide in Pyro, `SVI(..., TraceMeanField_ELBO())` and
  `pyro.optim.Adam`, timed around `svi.step(x)`.
- `torch`: the same loss written by hand in torch (analytic KL), `torch.optim.Adam`, timed
  around forward, backward and the optimizer step.
- `pyro-iwae`: the model and guide in Pyro with `RenyiELBO(alpha=0, num_particles=K,
  vectorize_particles=True)` (the importance-weighted bound, `--particles K`, default 5),
  for comparison with `vae bench --elbo iwae --particles K`.

Both run the same batch (the first `--batch` training images) every step, after `--warmup`
untimed steps, and report the median milliseconds per step. Not run by CI.

Usage: python vae_compare.py [--impl pyro torch pyro-iwae] [--threads 2] [--batch 256]
       [--steps 60] [--particles 5]
"""

import argparse
import gzip
import os
import statistics
import struct
import sys
import time

import numpy as np


def read_images(path, limit):
    """The first `limit` images of an IDX3 file (gzipped or not), as float32 in [0, 1]."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        if magic != 2051:
            sys.exit(f"{path}: magic {magic}, expected 2051 (IDX3 images)")
        n = min(n, limit)
        data = np.frombuffer(f.read(n * rows * cols), dtype=np.uint8)
    return data.reshape(n, rows * cols).astype(np.float32) / 255.0


def build_nets(torch, nn, hidden, latent):
    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, hidden)
            self.fc21 = nn.Linear(hidden, latent)
            self.fc22 = nn.Linear(hidden, latent)
            self.softplus = nn.Softplus()

        def forward(self, x):
            h = self.softplus(self.fc1(x))
            return self.fc21(h), torch.exp(self.fc22(h))

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(latent, hidden)
            self.fc21 = nn.Linear(hidden, 784)
            self.softplus = nn.Softplus()

        def forward(self, z):
            return self.fc21(self.softplus(self.fc1(z)))

    return Encoder(), Decoder()


def time_steps(step, warmup, steps):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def run_torch(torch, nn, x, args):
    enc, dec = build_nets(torch, nn, args.hidden, args.latent)
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-3)
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def step():
        opt.zero_grad()
        loc, scale = enc(x)
        z = loc + scale * torch.randn_like(loc)
        kl = 0.5 * (scale.pow(2) + loc.pow(2) - 1.0 - 2.0 * torch.log(scale)).sum()
        nll = bce(dec(z), x, reduction="sum")
        loss = kl + nll
        loss.backward()
        opt.step()
        return loss.item()

    return time_steps(step, args.warmup, args.steps)


def run_pyro(torch, nn, x, args, iwae=False):
    import pyro
    import pyro.distributions as dist
    from pyro.infer import SVI, RenyiELBO, TraceMeanField_ELBO
    from pyro.optim import Adam

    pyro.clear_param_store()
    enc, dec = build_nets(torch, nn, args.hidden, args.latent)

    def model(x):
        pyro.module("decoder", dec)
        with pyro.plate("data", x.shape[0]):
            zeros = x.new_zeros((x.shape[0], args.latent))
            ones = x.new_ones((x.shape[0], args.latent))
            z = pyro.sample("z", dist.Normal(zeros, ones).to_event(1))
            pyro.sample(
                "x", dist.Bernoulli(logits=dec(z), validate_args=False).to_event(1), obs=x
            )

    def guide(x):
        pyro.module("encoder", enc)
        with pyro.plate("data", x.shape[0]):
            loc, scale = enc(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    if iwae:
        pyro.enable_validation(False)  # grey pixels are not {0, 1}
        loss = RenyiELBO(
            alpha=0,
            num_particles=args.particles,
            vectorize_particles=True,
            max_plate_nesting=1,
        )
    else:
        loss = TraceMeanField_ELBO()
    svi = SVI(model, guide, Adam({"lr": 1e-3}), loss=loss)
    return time_steps(lambda: svi.step(x), args.warmup, args.steps)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--impl", nargs="+", default=["pyro", "torch"], choices=["pyro", "torch", "pyro-iwae"]
    )
    p.add_argument("--particles", type=int, default=5, help="K of pyro-iwae")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--hidden", type=int, default=400)
    p.add_argument("--latent", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--data-dir", default=os.path.join(here, "..", "data"), help="MNIST IDX files"
    )
    args = p.parse_args()

    import torch
    import torch.nn as nn

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    images = read_images(os.path.join(args.data_dir, "train-images-idx3-ubyte.gz"), args.batch)
    x = torch.from_numpy(images)
    for name in args.impl:
        if name == "pyro-iwae":
            ms = run_pyro(torch, nn, x, args, iwae=True)
            print(
                f"pyro_iwae_step_ms={ms:.3f} particles={args.particles} threads={args.threads} "
                f"torch={torch.__version__}"
            )
            continue
        ms = {"pyro": run_pyro, "torch": run_torch}[name](torch, nn, x, args)
        print(f"{name}_step_ms={ms:.3f} threads={args.threads} torch={torch.__version__}")


if __name__ == "__main__":
    main()
