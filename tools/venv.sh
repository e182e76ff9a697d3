#!/usr/bin/env bash
# Create .venv with the Python test and benchmark dependencies (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.req-stamp
if [ ! -f "$stamp" ] || [ tests/requirements.txt -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r tests/requirements.txt
  touch "$stamp"
fi
