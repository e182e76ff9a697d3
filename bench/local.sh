#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Local CPU benchmark (`make bench`): one >= 4 GiB Llama-shaped checkpoint (F16, generated once
# into bench/out/, git-ignored), weightlift vs copylimit, fio, safetensors.numpy and
# safetensors.torch in one run, hot and (when drop_caches is permitted) cold; median of 3
# alternating rounds; prints the table (see bench/README.md).
#   SIZE=4G ROUNDS=3 bash bench/local.sh [extra local_bench.py args]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-4G}
ROUNDS=${ROUNDS:-3}
out=bench/out
ckpt=$out/llama-$SIZE
bash tools/install-deps.sh test >/dev/null
[ -x build/weightlift ] && [ -x build/copylimit ] || make -s build >/dev/null
bash tools/venv.sh
py=.venv/bin/python
$py -c 'import torch, safetensors, numpy' 2>/dev/null || $py -m pip install -q -r bench/requirements.txt
if [ ! -f "$ckpt/model.safetensors.index.json" ]; then
  $py bench/gen_ckpt.py "$ckpt" --size "$SIZE" --shard-size 1G --dtype F16
fi
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores," \
     "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)," \
     "THP $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null), load $(cut -d' ' -f1-3 /proc/loadavg)"
$py bench/local_bench.py "$ckpt" --rounds "$ROUNDS" --json "$out/local-$(date -u +%Y%m%dT%H%M%S).json" "$@"
