#!/usr/bin/env bash
# One run of the comparisons in docs/performance.md, on this machine, one after another:
#   1. the VAE step: `vae bench` (vi's SVI step against plain candle), then Pyro and torch;
#   2. the VAE's IWAE step (5 importance samples, vectorised) against its single-particle
#      step: `vae bench --elbo iwae`, then Pyro's RenyiELBO(alpha=0, num_particles=5,
#      vectorize_particles=True);
#   3. the small models: vi-infer's `small_models` bench (vi against plain candle) and its
#      `autoguide` bench (AutoNormal against the guide by hand, the joint guides, Predictive),
#      then Pyro and torch on the same models (with Pyro's autoguides and Predictive);
#   4. TraceGraph against Trace: vi-infer's `elbos` bench, then Pyro's TraceGraph_ELBO and
#      Trace_ELBO on the same models.
#
#   examples/vae/compare/run.sh [path/to/python]    (default: python3 on PATH)
#
# The python needs torch and pyro-ppl: see README.md beside this script. `THREADS` (default:
# every core) is torch's thread count; `STEPS` the VAE's timed steps (default 100).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${1:-python3}"
cd "$here/../../.."
threads="${THREADS:-$(nproc)}"
steps="${STEPS:-100}"
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), ${threads} threads"
echo "## VAE, batch 256, 784-400-50 (milliseconds per step)"
cargo run --release -q -p vae -- bench --steps "$steps"
"$py" "$here/vae_compare.py" --threads "$threads" --steps "$steps"
echo "## VAE, IWAE with 5 particles against one particle (milliseconds per step)"
cargo run --release -q -p vae -- bench --elbo iwae --particles 5 --steps "$steps"
"$py" "$here/vae_compare.py" --impl pyro-iwae --particles 5 --threads "$threads" --steps "$steps"
echo "## small models (microseconds per step)"
SMALL_MODELS_PAIRED_ONLY=1 RAYON_NUM_THREADS="$threads" \
  cargo bench -q -p vi-infer --bench small_models 2>&1 | grep -E '^model='
RAYON_NUM_THREADS="$threads" cargo bench -q -p vi-infer --bench autoguide 2>&1 | grep -E '^bench='
"$py" "$here/small_compare.py" --threads "$threads"
echo "## TraceGraph against Trace (microseconds per step)"
RAYON_NUM_THREADS="$threads" cargo bench -q -p vi-infer --bench elbos 2>&1 | grep -E '^model='
"$py" "$here/elbo_compare.py" --threads "$threads"
