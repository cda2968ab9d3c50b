#!/usr/bin/env bash
# One run of the VAE step comparison: vi's `bench` (vi SVI against plain candle), then Pyro
# and plain torch on the same batch, one after another on the same machine.
#
#   examples/vae/compare/run.sh [path/to/python]    (default: python3 on PATH)
#
# The python needs torch and pyro-ppl: see README.md beside this script.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${1:-python3}"
cd "$here/../../.."
threads="${THREADS:-$(nproc)}"
steps="${STEPS:-60}"
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), ${threads} threads"
cargo run --release -q -p vae -- bench --steps "$steps"
"$py" "$here/vae_compare.py" --threads "$threads" --steps "$steps"
