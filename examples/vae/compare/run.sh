#!/usr/bin/env bash
# One run of the comparisons in docs/performance.md, on this machine, one after another:
#   1. the VAE step: `vae bench` (vi's SVI step against plain candle), then Pyro and torch;
#   2. the small models: vi-infer's `small_models` bench (vi against plain candle) and its
#      `autoguide` bench (AutoNormal against the guide by hand, the joint guides, Predictive),
#      then Pyro and torch on the same models (with Pyro's autoguides and Predictive).
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
echo "## small models (microseconds per step)"
SMALL_MODELS_PAIRED_ONLY=1 RAYON_NUM_THREADS="$threads" \
  cargo bench -q -p vi-infer --bench small_models 2>&1 | grep -E '^model='
RAYON_NUM_THREADS="$threads" cargo bench -q -p vi-infer --bench autoguide 2>&1 | grep -E '^bench='
"$py" "$here/small_compare.py" --threads "$threads"
