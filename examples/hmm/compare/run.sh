#!/usr/bin/env bash
# The discrete-latent timing comparisons of docs/performance.md, on this machine, the sides
# alternated (vi, then Pyro, `ROUNDS` times; default 2):
#   1. the HMM, K = 10: vi's markov + TraceEnumElbo step and the forward algorithm in plain
#      candle (`hmm bench`, T = 1000 and 4000), then Pyro's markov + TraceEnum_ELBO step and
#      Pyro's DiscreteHMM step (T = 1000);
#   2. the Gaussian mixture, N = 10,000, K = 5: vi's TraceEnumElbo step and the same objective
#      in plain candle (`gmm bench`), then Pyro's config_enumerate + TraceEnum_ELBO step.
#
#   examples/hmm/compare/run.sh [path/to/python]    (default: python3 on PATH)
#
# The python needs torch and pyro-ppl (as examples/vae/compare). `THREADS` (default 1:
# torch's thread pool spins badly on a loaded 2-core machine) is torch's thread count. Pyro's
# markov step takes seconds to tens of seconds at T = 1000: `MARKOV=0` skips it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${1:-python3}"
cd "$here/../../.."
threads="${THREADS:-1}"
rounds="${ROUNDS:-2}"
cargo build --release -q -p hmm -p gmm
bin="${CARGO_TARGET_DIR:-target}/release"
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, torch threads ${threads}, load $(cut -d' ' -f1-3 /proc/loadavg)"
impls="discrete_hmm"
if [ "${MARKOV:-1}" != 0 ]; then impls="markov discrete_hmm"; fi
for r in $(seq "$rounds"); do
  echo "## round $r"
  "$bin/hmm" bench --t 1000 --steps 20
  "$bin/hmm" bench --t 4000 --steps 5
  "$py" "$here/hmm_compare.py" --threads "$threads" --t 1000 --steps 3 --impl $impls
  "$bin/gmm" bench --steps 50
  "$py" "$here/../../gmm/compare/gmm_compare.py" --threads "$threads" --steps 50
done
