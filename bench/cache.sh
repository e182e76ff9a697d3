#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The write-through cache's cost (issue 10: "costs <= 10% of throughput; a warm-cache load runs
# at the local-file figure"), in one run: the Llama-shaped sharded checkpoint of bench/local.sh
# (bench/out/llama-$SIZE, made once) served by nginx on 127.0.0.1 (stopped on exit), loaded
# into CPU memory by `weightlift load` in fresh processes, ROUNDS alternating rounds of
#   http          over http://, no cache
#   http+cache    over http:// through an empty cache directory (the cold fill)
#   warm cache    the same URL again: one validation request per file, then the cached files
#   local         the local files (the page cache is hot for all: the network and the cache
#                 writes are what differ)
# Prints the median load GB/s of each (the load's own clock: wlift_load) and CPU seconds per
# process (user + system: what the cache's writes cost on a CPU-bound loopback), the ratios
# http+cache / http and warm / local, and the cold fill's process wall time (which includes
# the entry's fsync and rename after the load, when the checkpoint is closed).
#   SIZE=2G ROUNDS=5 CACHE_DIR=bench/out/cache bash bench/cache.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-2G}
ROUNDS=${ROUNDS:-5}
out=bench/out
ckpt=$out/llama-$SIZE
CACHE_DIR=${CACHE_DIR:-$out/cache}
W=build/weightlift
[ -x "$W" ] || make -s build >/dev/null
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python
if [ ! -f "$ckpt/model.safetensors.index.json" ]; then
	$py bench/gen_ckpt.py "$ckpt" --size "$SIZE" --shard-size 1G --dtype F16
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/wlift-cachebench.XXXXXX")
. tests/http/nginx.sh
cleanup() { nginx_stop; rm -rf "$T" "$CACHE_DIR"; }
trap cleanup EXIT
nginx_start "$(cd "$ckpt" && pwd)" "$T"
idx=$URL/model.safetensors.index.json
cat "$ckpt"/*.safetensors >/dev/null

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) (shared: compare within this run only)"
echo "checkpoint: $ckpt ($(du -sh "$ckpt" | cut -f1)), cache: $CACHE_DIR ($(df -T "$(dirname "$CACHE_DIR")" | awk 'NR==2 {print $2}'))"
# gbs CMD...: "GB/s CPU-seconds": the load's GB/s from --json and the process's CPU time (user
# + system, the cold fill's writes included).
gbs() {
	$py -c 'import json, resource, subprocess, sys
p = subprocess.run(sys.argv[1:] + ["--json"], capture_output=True, text=True, check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print("%.3f %.2f" % (json.loads(p.stdout)["gb_per_s"], r.ru_utime + r.ru_stime))' "$@"
}
# one KEY CMD...: run it, keep both figures.
one() {
	local key=$1 g c
	shift
	read -r g c < <(gbs "$@")
	R[$key]+=" $g"
	CPU[$key]+=" $c"
}
declare -A R CPU
wall_fill=()
for r in $(seq "$ROUNDS"); do
	one http "$W" load "$idx"
	rm -rf "$CACHE_DIR"
	t0=$(date +%s.%N)
	one cache "$W" load --cache-dir "$CACHE_DIR" "$idx"
	wall_fill+=("$(echo "$(date +%s.%N) - $t0" | bc)")
	one warm "$W" load --cache-dir "$CACHE_DIR" "$idx"
	one local "$W" load "$ckpt/model.safetensors.index.json"
	echo "round $r: http ${R[http]##* } | http+cache ${R[cache]##* } (process ${wall_fill[-1]} s) | warm ${R[warm]##* } | local ${R[local]##* } GB/s"
done
med() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
h=$(med "${R[http]}") c=$(med "${R[cache]}") w=$(med "${R[warm]}") l=$(med "${R[local]}")
wf=$(med "${wall_fill[*]}")
echo
echo "| case | GB/s (median of $ROUNDS) | CPU s per load (median) |"
echo "|---|---|---|"
echo "| http, no cache | $h | $(med "${CPU[http]}") |"
echo "| http through the cache (cold fill) | $c | $(med "${CPU[cache]}") |"
echo "| warm cache | $w | $(med "${CPU[warm]}") |"
echo "| local files | $l | $(med "${CPU[local]}") |"
echo
echo "cold fill / no cache: $(echo "scale=3; $c / $h" | bc); warm / local: $(echo "scale=3; $w / $l" | bc);" \
	"cold fill process wall time (load + close: fsync, rename): $wf s"
