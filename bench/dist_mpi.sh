#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Distributed loading through the CLI and the exchange in C (issue 12 point 7), W CPU ranks
# of one checkpoint (bench/gen_ckpt.py), page cache hot (one warm-up load first): total bytes
# read over the ranks (the sum of each rank's --json bytes_read) and wall time of the whole
# command (W processes started at once, or one mpirun), for
#   naive        every rank maps the whole checkpoint (weightlift load --mmap), as a peer that
#                loads everything and slices would
#   shard        --rank r --world W --shard-spec (no exchange: every rank also reads each
#                replicated tensor)
#   shard+mpi    mpirun -n W ... --comm mpi --shard-spec: blocks + each replicated tensor
#                read once and broadcast
#   file+mpi     mpirun -n W ... --comm mpi: each tensor read by one rank and broadcast, so
#                every rank ends with the whole checkpoint
# The spec is bench/dist.py's tensor-parallel layout. With W ranks on a few shared cores the
# time cannot show the parallel gain (the bytes are the target).
#
# usage: dist_mpi.sh WEIGHTLIFT CKPT_DIR [W] [REPEAT] [MODES]
set -euo pipefail
WL=$1 CK=$2 W=${3:-4} REPEAT=${4:-3} MODES=${5:-naive,shard,shard+mpi,file+mpi}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cat >"$T/spec.json" <<'EOF'
{"*.q_proj.weight": 0, "*.k_proj.weight": 0, "*.v_proj.weight": 0, "*.gate_proj.weight": 0,
 "*.up_proj.weight": 0, "*.o_proj.weight": 1, "*.down_proj.weight": 1,
 "*embed_tokens.weight": 0, "lm_head.weight": 0, "*": null}
EOF
MPI=(mpirun --allow-run-as-root --oversubscribe -n "$W")
export OUTD=$T
PER='exec "$0" "$@" >"$OUTD/o.$OMPI_COMM_WORLD_RANK"'

run_mode() { # mode -> files $T/o.0 .. o.W-1
	rm -f "$T"/o.*
	case $1 in
	naive)
		for r in $(seq 0 $((W - 1))); do "$WL" load --json --mmap "$CK" >"$T/o.$r" & done
		wait ;;
	shard)
		for r in $(seq 0 $((W - 1))); do
			"$WL" load --json --rank "$r" --world "$W" --shard-spec "$T/spec.json" "$CK" >"$T/o.$r" &
		done
		wait ;;
	shard+mpi) "${MPI[@]}" sh -c "$PER" "$WL" load --json --comm mpi --shard-spec "$T/spec.json" "$CK" ;;
	file+mpi) "${MPI[@]}" sh -c "$PER" "$WL" load --json --comm mpi "$CK" ;;
	esac
}

"$WL" load --quiet "$CK" # warm the page cache
echo "checkpoint $CK, $W ranks, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%H:%M:%S) UTC"
for ((i = 0; i < REPEAT; i++)); do
	for m in ${MODES//,/ }; do
		t0=$(date +%s.%N)
		run_mode "$m"
		t1=$(date +%s.%N)
		python3 - "$T" "$W" "$m" "$t0" "$t1" <<'EOF'
import json, os, sys
d, w, m, t0, t1 = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
js = [json.load(open(os.path.join(d, "o.%d" % r))) for r in range(w)]
rd = sum(j["bytes_read"] for j in js)
held = sum(j["bytes"] for j in js)
rx = sum(j.get("bytes_received", 0) for j in js)
print("%-10s read %6.3f GiB  (max/rank %6.3f)  held %6.3f GiB  received %6.3f GiB  wall %6.2f s" % (
    m, rd / 2**30, max(j["bytes_read"] for j in js) / 2**30, held / 2**30, rx / 2**30, t1 - t0))
EOF
	done
done
echo "end, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%H:%M:%S) UTC"
