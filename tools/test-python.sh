#!/usr/bin/env bash
# Run the Python test suite (conformance against the reference safetensors, package tests).
set -euo pipefail
cd "$(dirname "$0")/.."
export WEIGHTLIFT_BUILD=${BUILD:-build}
export WEIGHTLIFT_CLI=$PWD/$WEIGHTLIFT_BUILD/weightlift
set +e
.venv/bin/python -m pytest -q tests/python "$@"
rc=$?
set -e
# pytest exits 5 when it collected nothing; that is a failure of the harness, not a pass.
exit $rc
