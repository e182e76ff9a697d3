#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Remote benchmark (issue 10 point 11), one command on a fresh Debian machine:
#   bash bench/remote.sh                 the full run (~20 min on 2 cores): 4 GiB checkpoint,
#                                        loopback 3 rounds, the emulated link 2 rounds
#   bash bench/remote.sh --quick         a 256 MiB checkpoint, one round each (~2 min)
#   bash bench/remote.sh [remote_bench.py options]   e.g. --no-link, --rate 1gbit, --reqs "4 64"
# It installs what it needs (apt: nginx, aria2, curl, iputils-ping, iproute2 through
# tools/install-deps.sh bench; PyPI into .venv: bench/requirements.txt, boto3 and the Run:ai
# streamer with its S3 backend), builds build/weightlift and build/delayline (bench/delayline.c),
# generates the checkpoint once (bench/gen_ckpt.py into ${WLB_DATA:-bench/out}/llama-$SIZE) and
# runs bench/remote_bench.py, which prints Markdown (what each row measures: its docstring) and
# saves JSON in bench/out/remote-DATE.json. The emulated link needs root (network namespaces,
# tc, TUN devices); without root only the loopback part runs. Namespaces, nginx and the delay
# line are removed on exit, whatever the exit (bounded: every command has a timeout).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-4G}
args=()
for a in "$@"; do
	if [ "$a" = --quick ]; then
		SIZE=256M
		args+=(--rounds 1 --link-rounds 1 --no-prime)
	else
		args+=("$a")
	fi
done
bash tools/install-deps.sh bench
[ -x .venv/bin/python ] || bash tools/venv.sh demo
py=.venv/bin/python
$py -c 'import numpy, torch, boto3, runai_model_streamer, runai_model_streamer_s3' 2>/dev/null ||
	$py -m pip install -q -r bench/requirements.txt
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target weightlift_cli delayline >/dev/null 2>&1 ||
	cmake --build build -j "$(nproc)" >/dev/null
data=${WLB_DATA:-bench/out}
ckpt=$data/llama-$SIZE
if [ ! -f "$ckpt/model.safetensors.index.json" ]; then
	$py bench/gen_ckpt.py "$ckpt" --size "$SIZE" --shard-size 1G --dtype F16
fi
mkdir -p bench/out
$py bench/remote_bench.py "$ckpt" --json "bench/out/remote-$(date -u +%Y%m%dT%H%M).json" \
	"${args[@]}" &
pid=$!
cleanup() {
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	# The Python side removes its namespaces itself; this is for a SIGKILL'ed run.
	for ns in "wlb-cli-$pid" "wlb-srv-$pid"; do
		ip netns del "$ns" 2>/dev/null || true
	done
}
trap cleanup EXIT
wait "$pid"
