#!/usr/bin/env bash
# Run the Python test suite (conformance against the reference safetensors, package tests).
set -euo pipefail
cd "$(dirname "$0")/.."
export WEIGHTLIFT_BUILD=${BUILD:-build}
export WEIGHTLIFT_CLI=$PWD/$WEIGHTLIFT_BUILD/weightlift
# The multi-GiB tests (2 GiB memory bound, >4 GiB file with a >2 GiB tensor) run in `make test`
# (about 30 s); set WEIGHTLIFT_LARGE=0 for a quick local run.
export WEIGHTLIFT_LARGE=${WEIGHTLIFT_LARGE:-1}
# Build and install the package (weightlift._native) into the venv; setuptools keeps its
# objects in build-py/, so a rebuild after a small change only recompiles what changed.
.venv/bin/python -m pip install -q --no-build-isolation ./ >/dev/null
set +e
.venv/bin/python -m pytest -q tests/python "$@"
rc=$?
set -e
# pytest exits 5 when it collected nothing; that is a failure of the harness, not a pass.
exit $rc
