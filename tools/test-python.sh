#!/usr/bin/env bash
# Run the Python test suite (conformance against the reference safetensors, package tests).
set -euo pipefail
cd "$(dirname "$0")/.."
export WEIGHTLIFT_BUILD=${BUILD:-build}
export WEIGHTLIFT_CLI=$PWD/$WEIGHTLIFT_BUILD/weightlift
# Build and install the package (weightlift._native) into the venv; setuptools keeps its
# objects in build-py/, so a rebuild after a small change only recompiles what changed.
.venv/bin/python -m pip install -q --no-build-isolation ./ >/dev/null
set +e
.venv/bin/python -m pytest -q tests/python "$@"
rc=$?
set -e
# pytest exits 5 when it collected nothing; that is a failure of the harness, not a pass.
exit $rc
