"""The VAE's GEMMs (batch 256, 784-400-50) through numpy (its BLAS: OpenBLAS in the PyPI
wheel) and torch, at the shapes and layouts of `crates/vi-infer/benches/gemm.rs`; prints
`gemm=<name> impl= m= k= n= us= gflops=` per product (median of --reps runs)."""

import argparse
import time

import numpy as np
import torch

PRODUCTS = [
    ("enc_fwd", 256, 784, 400, False, True),
    ("enc_dw", 400, 256, 784, True, False),
    ("dec_fwd", 256, 400, 784, False, True),
    ("dec_dw", 784, 256, 400, True, False),
    ("dec_dh", 256, 784, 400, False, False),
]


def operand(rows, cols, transposed, rng):
    if transposed:
        return rng.standard_normal((cols, rows), dtype=np.float32).T
    return rng.standard_normal((rows, cols), dtype=np.float32)


def median_us(f, reps):
    for _ in range(10):
        f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[reps // 2] * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    totals = {"numpy": 0.0, "torch": 0.0}
    for name, m, k, n, lt, rt in PRODUCTS:
        a, b = operand(m, k, lt, rng), operand(k, n, rt, rng)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        for impl, f in (("numpy", lambda: a @ b), ("torch", lambda: ta @ tb)):
            us = median_us(f, args.reps)
            totals[impl] += us
            print(f"gemm={name} impl={impl} m={m} k={k} n={n} us={us:.1f} "
                  f"gflops={2 * m * k * n / us / 1e3:.1f}")
    for impl, us in totals.items():
        print(f"gemm=total impl={impl} us={us:.1f}")
    print(f"# numpy {np.__version__}, torch {torch.__version__}, threads {args.threads}")


if __name__ == "__main__":
    main()
