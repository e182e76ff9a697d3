#!/usr/bin/env bash
# Run the reference safetensors' own Python test suite against weightlift through the import
# shim (tests/refsuite/), a manual step (the suite is not in this repository and make test has
# no network to fetch it):
#   git clone https://github.com/huggingface/safetensors /tmp/safetensors   (or any checkout)
#   bash tools/refsuite.sh /tmp/safetensors            # against weightlift; exit 0 at >= 95%
#   bash tools/refsuite.sh /tmp/safetensors --reference  # the baseline: the reference itself
# Needs the test venv (tools/venv.sh: torch, jax, flax, tensorflow-cpu, paddlepaddle, mlx,
# h5py, fsspec) and weightlift built into it (tools/test-python.sh does both). docs/compat.md
# records the last run and explains each remaining failure.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  echo "usage: $0 SAFETENSORS_CHECKOUT [--reference] [--min-rate N] [--json FILE]" >&2
  exit 2
fi
.venv/bin/python -m pip install -q --no-build-isolation ./ >/dev/null
exec .venv/bin/python tests/refsuite/run.py "$@"
