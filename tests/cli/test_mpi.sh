#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `weightlift load --comm mpi` under mpirun (issue 12): the exchange in C over the MPI backend
# of wlift_comm (Open MPI dlopen'ed). File mode at 2 and 4 ranks: every rank ends with every
# tensor (its --touch XOR equals the file's, computed in Python), the ranks' bytes_read add
# up to the checkpoint's tensor bytes once and bytes_read + bytes_received = bytes on each.
# Shard mode (tensors split along dim 0, or along dim 1 in pieces under the threshold, the
# others replicated): each rank holds what a lone shard-mode load of that rank holds (same
# bytes, same XOR), and the ranks' reads add up to the blocks plus each replicated tensor
# once (each byte of the file once). Failures: mismatched specs (every rank fails naming
# it), a rank that fails before reading (the others fail with its error), a rank whose reads
# fail mid-load (HTTP 403 from the fault proxy: every rank fails naming it), a rank that
# cannot open the file (it ends the job), a rank that never joins (the others time out with
# an error), no libmpi, not under mpirun. The same shard and file modes from nginx on
# loopback where it is installed. Every mpirun is bounded by `timeout`.
. "$(dirname "$0")/lib.sh"

command -v mpirun >/dev/null || { echo "SKIP: no mpirun"; exit 77; }
"$WEIGHTLIFT" load --comm mpi "$0" 2>&1 | grep -q "cannot load MPI" &&
	{ echo "SKIP: no libmpi.so.40"; exit 77; }
fixtures
# Sanitizer builds: Open MPI's own allocations at MPI_Init are not ours to report.
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$HERE/lsan-openmpi.supp:fast_unwind_on_malloc=0"

S=$D/small.safetensors
# rnd.safetensors: 24 F32/F16/U8 tensors of random bytes and uneven sizes (2-D, so dim 0
# splits them into blocks, short ones at the end); its XOR and tensors are in rnd.json.
python3 - "$D" <<'EOF'
import json, os, random, struct, sys
rnd = random.Random(12)
ts, off, blobs = {}, 0, []
for i in range(24):
    dt, w = [("F32", 4), ("F16", 2), ("U8", 1)][i % 3]
    shape = [rnd.randint(1, 97), rnd.randint(1, 300)]
    n = shape[0] * shape[1] * w
    blobs.append(rnd.randbytes(n))
    ts["layer.%02d.w" % i] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
    off += n
h = json.dumps(ts).encode()
h += b" " * (-len(h) % 8)
d = sys.argv[1]
open(os.path.join(d, "rnd.safetensors"), "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
sys.path.insert(0, os.path.join(os.environ["WLIFT_SRC"], "tests", "cli"))
from st_fixtures import xor_touch
json.dump({"tensors": ts, "bytes": off, "xor": "%016x" % xor_touch(blobs)},
          open(os.path.join(d, "rnd.json"), "w"))
EOF
B=$D/rnd.safetensors
MPI=(timeout -k 5 120 mpirun --allow-run-as-root --oversubscribe)
# One JSON file per rank: $D/o.<rank>, stderr in $D/e.<rank>.
PER='exec "$0" "$@" >"$OUTD/o.$OMPI_COMM_WORLD_RANK" 2>"$OUTD/e.$OMPI_COMM_WORLD_RANK"'
export OUTD=$D

# mpirun_ranks N ARGS...: N ranks of `weightlift load --comm mpi --json ARGS`; RC = mpirun's.
mpirun_ranks() {
	local n=$1
	shift
	rm -f "$D"/o.* "$D"/e.*
	NCHECK=$((NCHECK + 1))
	RC=0
	"${MPI[@]}" -n "$n" sh -c "$PER" "$WEIGHTLIFT" load --comm mpi --json "$@" \
		>"$D/mpirun.out" 2>&1 || RC=$?
}

# ranks_check N PY: PY runs with js = [rank 0's JSON, ...], e = expected.json.
ranks_check() {
	NCHECK=$((NCHECK + 1))
	local msg
	if ! msg=$(python3 - "$D" "$1" "$2" 2>&1 <<'EOF'
import json, os, sys
d, n = sys.argv[1], int(sys.argv[2])
js = [json.load(open(os.path.join(d, "o.%d" % r))) for r in range(n)]
e = json.load(open(os.path.join(d, "expected.json")))
exec(sys.argv[3])
EOF
	); then
		fail "ranks check: $msg"
		for f in "$D"/e.*; do [ -s "$f" ] && echo "  $f: $(head -c 600 "$f")"; done
	fi
}

# --- file mode --------------------------------------------------------------------------------
for n in 2 4; do
	for f in small rnd; do
		mpirun_ranks $n --direct off --touch "$D/$f.safetensors"
		[ "$RC" = 0 ] || { fail "file mode, $n ranks, $f: mpirun exit $RC: $(tail -c 800 "$D/mpirun.out")"; continue; }
		ranks_check $n '
x = e["small.safetensors"] if "'$f'" == "small" else json.load(open(os.path.join(d, "rnd.json")))
total = sum(t["data_offsets"][1] - t["data_offsets"][0] for t in x["tensors"].values())
for r, j in enumerate(js):
    assert j["rank"] == r and j["world"] == n and j["comm"] == "mpi", j
    assert j["tensors"] == len(x["tensors"]) and j["bytes"] == total, (r, j)
    assert j["touch_xor"] == x["xor"], (r, j["touch_xor"], x["xor"])
    assert j["bytes_read"] + j["bytes_received"] == total, (r, j)
assert sum(j["bytes_read"] for j in js) == total, [j["bytes_read"] for j in js]
assert n == 2 or all(j["bytes_read"] > 0 for j in js), js'
	done
done

# --- shard mode -------------------------------------------------------------------------------
# Every other tensor of rnd split along dim 0 (uneven blocks), the rest replicated (read
# once, broadcast).
python3 - "$D" <<'EOF'
import json, os, sys
e = json.load(open(os.path.join(sys.argv[1], "rnd.json")))["tensors"]
spec = {k: (0 if i % 2 == 0 else None) for i, k in enumerate(sorted(e))}
json.dump(spec, open(os.path.join(sys.argv[1], "mixed.json"), "w"))
EOF
for n in 2 4; do
	: >"$D/lone"
	for r in $(seq 0 $((n - 1))); do
		expect_rc 0 "$WEIGHTLIFT" load --json --direct off --touch --rank $r --world $n \
			--shard-spec "$D/mixed.json" "$B"
		pycheck 'open(sys.argv[2].replace("expected.json", "lone"), "a").write(json.dumps(j) + "\n")'
	done
	mpirun_ranks $n --direct off --touch --shard-spec "$D/mixed.json" "$B"
	[ "$RC" = 0 ] || { fail "shard mode, $n ranks: mpirun exit $RC: $(tail -c 800 "$D/mpirun.out")"; continue; }
	ranks_check $n '
lone = [json.loads(l) for l in open(os.path.join(d, "lone"))]
x = json.load(open(os.path.join(d, "rnd.json")))["tensors"]
spec = json.load(open(os.path.join(d, "mixed.json")))
rep = sum(t["data_offsets"][1] - t["data_offsets"][0] for k, t in x.items() if spec[k] is None)
blocks = sum(l["bytes"] for l in lone) - n * rep
for r, (j, l) in enumerate(zip(js, lone)):
    assert j["bytes"] == l["bytes"] and j["tensors"] == l["tensors"], (r, j, l)
    assert j["touch_xor"] == l["touch_xor"], (r, j["touch_xor"], l["touch_xor"])
    assert j["bytes_read"] + j["bytes_received"] == j["bytes"], (r, j)
assert sum(j["bytes_read"] for j in js) == blocks + rep, ([j["bytes_read"] for j in js], blocks, rep)
assert sum(j["bytes_received"] for j in js) == (n - 1) * rep, js'
done

# A third of rnd's tensors split along dim 0, a third along dim 1 (pieces of at most 600
# bytes at 2 and 4 ranks, under the 8 KiB piece threshold: the owner reads the tensor once
# and every rank gathers its block from the broadcast; also --dtype F32 converting the
# F16 ones), the rest replicated: each rank holds what a lone load of that rank holds, and
# over the ranks every byte of the file is read once.
python3 - "$D" <<'EOF'
import json, os, sys
e = json.load(open(os.path.join(sys.argv[1], "rnd.json")))["tensors"]
spec = {k: [0, 1, None][i % 3] for i, k in enumerate(sorted(e))}
json.dump(spec, open(os.path.join(sys.argv[1], "mixed1.json"), "w"))
EOF
for n in 2 4; do
	for dt in "" "--dtype F32"; do
		: >"$D/lone"
		for r in $(seq 0 $((n - 1))); do
			expect_rc 0 "$WEIGHTLIFT" load --json --direct off --touch $dt --rank $r --world $n \
				--shard-spec "$D/mixed1.json" "$B"
			pycheck 'open(sys.argv[2].replace("expected.json", "lone"), "a").write(json.dumps(j) + "\n")'
		done
		mpirun_ranks $n --direct off --touch $dt --shard-spec "$D/mixed1.json" "$B"
		[ "$RC" = 0 ] || { fail "shard mode dim 1, $n ranks $dt: mpirun exit $RC: $(tail -c 800 "$D/mpirun.out")"; continue; }
		ranks_check $n '
lone = [json.loads(l) for l in open(os.path.join(d, "lone"))]
x = json.load(open(os.path.join(d, "rnd.json")))
for r, (j, l) in enumerate(zip(js, lone)):
    assert j["bytes"] == l["bytes"] and j["tensors"] == l["tensors"], (r, j, l)
    assert j["touch_xor"] == l["touch_xor"], (r, j["touch_xor"], l["touch_xor"])
assert sum(j["bytes_read"] for j in js) == x["bytes"], ([j["bytes_read"] for j in js], x["bytes"])'
	done
done

# --- from an HTTP source (nginx on loopback, where installed) -----------------------------
if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then
	. "$WLIFT_SRC/tests/http/nginx.sh"
	NGX=$(mktemp -d "$D/nginx.XXXXXX")
	trap 'nginx_stop; chmod -R u+rwX "$T" 2>/dev/null; rm -rf "$T"' EXIT # lib.sh's too
	nginx_start "$D" "$NGX"
	for n in 2 4; do
		for spec in "" "--shard-spec $D/mixed1.json"; do
			: >"$D/lone"
			for r in $(seq 0 $((n - 1))); do
				if [ -n "$spec" ]; then
					expect_rc 0 "$WEIGHTLIFT" load --json --touch --rank $r --world $n $spec "$B"
				else
					expect_rc 0 "$WEIGHTLIFT" load --json --touch "$B"
				fi
				pycheck 'open(sys.argv[2].replace("expected.json", "lone"), "a").write(json.dumps(j) + "\n")'
			done
			mpirun_ranks $n --touch $spec "$URL/rnd.safetensors"
			[ "$RC" = 0 ] || { fail "HTTP, $n ranks $spec: mpirun exit $RC: $(tail -c 800 "$D/mpirun.out")"; continue; }
			ranks_check $n '
lone = [json.loads(l) for l in open(os.path.join(d, "lone"))]
x = json.load(open(os.path.join(d, "rnd.json")))
for r, (j, l) in enumerate(zip(js, lone)):
    assert j["bytes"] == l["bytes"] and j["tensors"] == l["tensors"], (r, j, l)
    assert j["touch_xor"] == l["touch_xor"], (r, j["touch_xor"], l["touch_xor"])
assert sum(j["bytes_read"] for j in js) == x["bytes"], ([j["bytes_read"] for j in js], x["bytes"])'
		done
	done

	# A rank whose reads fail mid-load, after the agreement round: it reads through the
	# fault proxy, which lets the open's first ranged GET through and answers every later
	# data request 403 (not retried). The failing rank fails naming the URL and the HTTP
	# status; every other rank fails naming the failing rank and its error (the report
	# round), within the timeout; file mode at 2 ranks (rank 1 fails) and shard mode at 4
	# (rank 2 fails). The sanitizer build's run checks that nothing leaks.
	. "$WLIFT_SRC/tests/http/faultproxy.sh"
	fp_start "127.0.0.1:$PORT" "$D/fp" '[{"action": "status", "status": 403, "min_offset": 1}]'
	trap 'fp_stop; nginx_stop; chmod -R u+rwX "$T" 2>/dev/null; rm -rf "$T"' EXIT
	for c in "2 1" "4 2 --shard-spec $D/mixed1.json"; do
		set -- $c
		n=$1 bad=$2
		shift 2
		rm -f "$D"/o.* "$D"/e.*
		args=()
		for r in $(seq 0 $((n - 1))); do
			u=$URL
			[ "$r" != "$bad" ] || u=$FP_URL
			[ "$r" = 0 ] || args+=(:)
			args+=(-n 1 sh -c "$PER" "$WEIGHTLIFT" load --comm mpi --json --touch "$@" "$u/rnd.safetensors")
		done
		NCHECK=$((NCHECK + 1))
		RC=0
		t0=$(date +%s)
		WEIGHTLIFT_COMM_TIMEOUT=30 "${MPI[@]}" "${args[@]}" >"$D/mpirun.out" 2>&1 || RC=$?
		[ "$RC" != 0 ] && [ "$RC" != 124 ] || fail "failing reads, $n ranks: mpirun exit $RC"
		[ $(($(date +%s) - t0)) -lt 60 ] || fail "failing reads, $n ranks: took $(($(date +%s) - t0)) s"
		NCHECK=$((NCHECK + 1))
		grep -q "HTTP 403" "$D/e.$bad" && grep -q "rnd.safetensors" "$D/e.$bad" ||
			fail "failing reads, $n ranks: rank $bad: $(head -c 600 "$D/e.$bad")"
		for r in $(seq 0 $((n - 1))); do
			[ "$r" != "$bad" ] || continue
			NCHECK=$((NCHECK + 1))
			grep -q "failed on rank $bad of $n" "$D/e.$r" &&
				grep -q "HTTP 403" "$D/e.$r" ||
				fail "failing reads, $n ranks: rank $r: $(head -c 600 "$D/e.$r")"
		done
	done
	fp_stop
else
	echo "note: nginx not installed: the HTTP cases are skipped"
fi

# --- failures ---------------------------------------------------------------------------------
# Mismatched specs: every rank fails (exit 1) naming the mismatch, before any read.
printf '{"*": 0}' >"$D/spec0.json"
rm -f "$D"/o.* "$D"/e.*
NCHECK=$((NCHECK + 1))
RC=0
"${MPI[@]}" -n 1 sh -c "$PER" "$WEIGHTLIFT" load --comm mpi --json --shard-spec "$D/spec0.json" "$B" : \
	-n 1 sh -c "$PER" "$WEIGHTLIFT" load --comm mpi --json --shard-spec "$D/mixed.json" "$B" \
	>"$D/mpirun.out" 2>&1 || RC=$?
[ "$RC" != 0 ] || fail "mismatched specs: mpirun exit 0"
for r in 0 1; do
	NCHECK=$((NCHECK + 1))
	grep -q "different checkpoints or specs" "$D/e.$r" ||
		fail "mismatched specs: rank $r: $(head -c 600 "$D/e.$r")"
done

# A rank that fails before its reads (a GPU destination over MPI): the other fails with its
# error, at once.
rm -f "$D"/o.* "$D"/e.*
NCHECK=$((NCHECK + 1))
RC=0
"${MPI[@]}" -n 1 sh -c "$PER" "$WEIGHTLIFT" load --comm mpi --json "$S" : \
	-n 1 sh -c "$PER" "$WEIGHTLIFT" load --comm mpi --json --device cuda:0 "$S" \
	>"$D/mpirun.out" 2>&1 || RC=$?
[ "$RC" != 0 ] || fail "failing rank: mpirun exit 0"
NCHECK=$((NCHECK + 1))
grep -q "failed on rank 1 of 2" "$D/e.0" || fail "failing rank: rank 0: $(head -c 600 "$D/e.0")"

# A rank that cannot open the checkpoint ends the job (its error printed), well within the
# timeout.
rm -f "$D"/o.* "$D"/e.*
NCHECK=$((NCHECK + 1))
RC=0
t0=$(date +%s)
WEIGHTLIFT_COMM_TIMEOUT=60 "${MPI[@]}" -n 1 sh -c "$PER" "$WEIGHTLIFT" load --comm mpi --json "$S" : \
	-n 1 sh -c "$PER" "$WEIGHTLIFT" load --comm mpi --json "$D/missing.safetensors" \
	>"$D/mpirun.out" 2>&1 || RC=$?
[ "$RC" != 0 ] && [ "$RC" != 124 ] || fail "unopenable file: mpirun exit $RC"
[ $(($(date +%s) - t0)) -lt 50 ] || fail "unopenable file: the job took $(($(date +%s) - t0)) s"
NCHECK=$((NCHECK + 1))
grep -q "missing.safetensors" "$D/e.1" || fail "unopenable file: rank 1: $(head -c 600 "$D/e.1")"

# A rank that never joins (rank 1 loads twice, rank 0 once): rank 1 times out with an error
# naming the timeout, then its broken communicator ends the job.
rm -f "$D"/o.* "$D"/e.*
NCHECK=$((NCHECK + 1))
RC=0
t0=$(date +%s)
WEIGHTLIFT_COMM_TIMEOUT=3 "${MPI[@]}" -n 1 sh -c "$PER" "$WEIGHTLIFT" load --comm mpi --json "$S" : \
	-n 1 sh -c "$PER" "$WEIGHTLIFT" load --comm mpi --json --repeat 2 "$S" \
	>"$D/mpirun.out" 2>&1 || RC=$?
[ "$RC" != 0 ] && [ "$RC" != 124 ] || fail "rank that never joins: mpirun exit $RC"
[ $(($(date +%s) - t0)) -lt 60 ] || fail "rank that never joins: took $(($(date +%s) - t0)) s"
NCHECK=$((NCHECK + 1))
grep -q "no completion within 3 s on rank 1 of 2" "$D/e.1" ||
	fail "rank that never joins: rank 1: $(head -c 600 "$D/e.1")"

# No MPI library, and not under mpirun: clear errors (exit 5, the device class; no hang).
WEIGHTLIFT_MPI_LIBRARY=$D/no-libmpi.so expect_rc 5 timeout 30 "$WEIGHTLIFT" load --comm mpi "$S"
grep_err "cannot load MPI"
expect_rc 5 timeout 30 env -u OMPI_COMM_WORLD_SIZE -u PMIX_RANK "$WEIGHTLIFT" load --comm mpi "$S"
grep_err "not launched by mpirun"
expect_rc 2 "$WEIGHTLIFT" load --comm nccl "$S"
expect_rc 2 "$WEIGHTLIFT" load --comm mpi --experts block "$S"

finish
