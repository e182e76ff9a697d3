#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Remote benchmark, HTTP over loopback (first part of issue 10 point 11): the Llama-shaped
# checkpoint of bench/local.sh (bench/out/llama-$SIZE, sharded, made once) served by nginx on
# 127.0.0.1 (a free port, stopped on exit), read in one run by
#   curl         each shard to /dev/null, one after another (one connection)
#   curl -Z      every shard at once (one connection per shard)
#   aria2c       -x 8 -s 8 per shard into /dev/shm (when installed)
#   weightlift   `load` of the index URL into CPU memory, for REQS x CHUNKS
#   local        `load` of the local files (hot page cache: the engine's ceiling here)
# median of ROUNDS alternating rounds; prints a Markdown table of GB/s (1e9 bytes/s).
#   SIZE=4G ROUNDS=3 REQS="4 16 32" CHUNKS="8M 16M" bash bench/remote.sh
# Not yet: S3 endpoint, boto3, the Run:ai streamer, the write-through cache, the emulated
# 50 ms / 2 Gbit/s link (network namespaces + a delay line of ours).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-4G}
ROUNDS=${ROUNDS:-3}
REQS=${REQS:-4 16 32}
CHUNKS=${CHUNKS:-8M 16M}
out=bench/out
ckpt=$out/llama-$SIZE
W=build/weightlift
[ -x "$W" ] || make -s build >/dev/null
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python
if [ ! -f "$ckpt/model.safetensors.index.json" ]; then
	$py bench/gen_ckpt.py "$ckpt" --size "$SIZE" --shard-size 1G --dtype F16
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/wlift-remote.XXXXXX")
. tests/http/nginx.sh
cleanup() { nginx_stop; rm -rf "$T" /dev/shm/wlift-aria2.*; }
trap cleanup EXIT
nginx_start "$(cd "$ckpt" && pwd)" "$T"
shards=()
for f in "$ckpt"/*.safetensors; do shards+=("$(basename "$f")"); done
bytes=$(cat "$ckpt"/*.safetensors | wc -c)
cat "$ckpt"/*.safetensors >/dev/null # page cache hot: the network path is what is measured

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores," \
	"kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg); nginx $("$NGINX" -v 2>&1 | cut -d/ -f2)," \
	"$(curl -V | head -1 | cut -d' ' -f1-2); $((bytes / 1048576)) MiB in ${#shards[@]} shards"

# secs CMD...: wall seconds of CMD (its output discarded).
secs() {
	local t0 t1
	t0=$(date +%s.%N)
	"$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; echo nan; return; }
	t1=$(date +%s.%N)
	awk -v s="$t0" -v e="$t1" 'BEGIN { printf "%.3f", e - s }'
}
run_curl() {
	local f
	for f in "${shards[@]}"; do curl -sf -o /dev/null "$URL/$f" || return 1; done
}
run_curl_z() {
	local a=() f
	for f in "${shards[@]}"; do a+=(-o /dev/null "$URL/$f"); done
	curl -sf -Z --parallel-max 64 "${a[@]}"
}
run_aria2() {
	local d f
	d=$(mktemp -d /dev/shm/wlift-aria2.XXXXXX)
	for f in "${shards[@]}"; do
		aria2c -q -x 8 -s 8 --file-allocation=none -d "$d" "$URL/$f" || { rm -rf "$d"; return 1; }
		rm -f "$d/$f"
	done
	rm -rf "$d"
}
run_wl() { WEIGHTLIFT_HTTP_REQUESTS=$1 "$W" load --chunk-size "$2" "$URL/model.safetensors.index.json"; }
run_local() { "$W" load "$ckpt/model.safetensors.index.json"; }

names=(curl "curl -Z")
cmds=(run_curl run_curl_z)
if command -v aria2c >/dev/null; then
	names+=("aria2c -x8 -s8")
	cmds+=(run_aria2)
fi
for r in $REQS; do
	for c in $CHUNKS; do
		names+=("weightlift $r req x $c")
		cmds+=("run_wl $r $c")
	done
done
names+=("weightlift local (hot)")
cmds+=(run_local)

declare -A times
for round in $(seq "$ROUNDS"); do
	for i in "${!cmds[@]}"; do
		# shellcheck disable=SC2086
		times[$i]+="$(secs ${cmds[$i]}) "
	done
done
echo
echo "| reader | GB/s (median of $ROUNDS) | runs, s |"
echo "|---|---|---|"
for i in "${!cmds[@]}"; do
	med=$(echo "${times[$i]}" | tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
	gbs=$(awk -v b="$bytes" -v t="$med" 'BEGIN { printf "%.2f", (t > 0 ? b / t / 1e9 : 0) }')
	printf '| %s | %s | %s|\n' "${names[$i]}" "$gbs" "${times[$i]}"
done
