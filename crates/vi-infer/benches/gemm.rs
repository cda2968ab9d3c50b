//! The VAE's GEMMs alone (batch 256, 784-400-50): candle's matmul (the `gemm` crate, which
//! `layers::Linear` calls directly on the CPU) on each product of one step, f32, at the
//! layouts the step uses (a transposed operand read through its strides). The same shapes
//! through numpy (OpenBLAS) and torch are timed by `examples/vae/compare/gemm_compare.py`,
//! so the GEMM can be compared with the best available on the machine.
//!
//! `cargo bench -p vi-infer --bench gemm` prints `gemm=<name> m= k= n= us= gflops=` per
//! product (median of `GEMM_REPS` runs, default 200) and the step's total.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};

/// One product of the step: `[m, k] · [k, n]`, with either operand stored transposed.
struct Product {
    name: &'static str,
    m: usize,
    k: usize,
    n: usize,
    lhs_t: bool,
    rhs_t: bool,
}

fn operand(
    rows: usize,
    cols: usize,
    transposed: bool,
    dev: &Device,
) -> candle_core::Result<Tensor> {
    if transposed {
        Tensor::randn(0f32, 1.0, (cols, rows), dev)?.t()
    } else {
        Tensor::randn(0f32, 1.0, (rows, cols), dev)
    }
}

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let reps: usize = std::env::var("GEMM_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let b = 256;
    let products = [
        // Encoder: h = x · W1ᵀ; its weight gradient gᵀ · x (no gradient for the data).
        Product {
            name: "enc_fwd",
            m: b,
            k: 784,
            n: 400,
            lhs_t: false,
            rhs_t: true,
        },
        Product {
            name: "enc_dw",
            m: 400,
            k: b,
            n: 784,
            lhs_t: true,
            rhs_t: false,
        },
        // Decoder output layer: logits = h · W4ᵀ; dW4 = gᵀ · h; dh = g · W4.
        Product {
            name: "dec_fwd",
            m: b,
            k: 400,
            n: 784,
            lhs_t: false,
            rhs_t: true,
        },
        Product {
            name: "dec_dw",
            m: 784,
            k: b,
            n: 400,
            lhs_t: true,
            rhs_t: false,
        },
        Product {
            name: "dec_dh",
            m: b,
            k: 784,
            n: 400,
            lhs_t: false,
            rhs_t: false,
        },
    ];
    let mut total = 0.0;
    for p in &products {
        let lhs = operand(p.m, p.k, p.lhs_t, &dev)?;
        let rhs = operand(p.k, p.n, p.rhs_t, &dev)?;
        for _ in 0..10 {
            lhs.matmul(&rhs)?;
        }
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps {
            let t = Instant::now();
            let out = lhs.matmul(&rhs)?;
            times.push(t.elapsed().as_secs_f64());
            assert_eq!(out.dtype(), DType::F32);
        }
        times.sort_by(f64::total_cmp);
        let med = times[reps / 2];
        total += med;
        let gflops = 2.0 * (p.m * p.k * p.n) as f64 / med / 1e9;
        println!(
            "gemm={} m={} k={} n={} us={:.1} gflops={:.1}",
            p.name,
            p.m,
            p.k,
            p.n,
            med * 1e6,
            gflops
        );
    }
    println!("gemm=total us={:.1}", total * 1e6);
    Ok(())
}
