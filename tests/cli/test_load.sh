#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `weightlift load`: every knob and their combinations, the --json fields, --touch (its XOR
# must equal the one computed in Python over the same bytes), --names, --repeat, peak RssAnon
# in copy and mapped mode, the progress bar on a terminal and never on a pipe.
. "$(dirname "$0")/lib.sh"
fixtures --big 64

S=$D/small.safetensors
B=$D/big.safetensors

# --- defaults --------------------------------------------------------------------------------
expect_rc 0 "$WEIGHTLIFT" load "$S"
grep_out "loaded 8 tensors"
grep_out "GB/s"
grep_out "strategy"
grep_out "peak RssAnon"
NCHECK=$((NCHECK + 1))
! grep -q $'\r' "$ERR" || fail "progress bar drawn on a pipe"

expect_rc 0 "$WEIGHTLIFT" load --json "$S"
pycheck '
assert j["schema"] == 1
for k in ("bytes", "seconds", "gb_per_s", "open_s", "plan_s", "read_s", "strategy", "direct",
          "threads", "chunk_bytes", "peak_rss_anon"):
    assert k in j, k
assert j["bytes"] == sum(t["nbytes"] for t in e["small.safetensors"]["tensors"].values()), j
assert j["tensors"] == 8
assert isinstance(j["strategy"], str) and isinstance(j["direct"], bool)
assert j["threads"] >= 1 and j["chunk_bytes"] >= 1 and j["peak_rss_anon"] >= 0
assert j["seconds"] >= 0 and j["gb_per_s"] >= 0
assert "ready_s" not in j and j["repeat"] == 1 and len(j["runs"]) == 1
assert j["errors"] == []
'

# --- every strategy x direct x mmap, with the touch pass checking the bytes ------------------
for strategy in auto pread uring; do
	for direct in auto on off; do
		for mmap in "" --mmap; do
			args=(--strategy "$strategy" --direct "$direct" $mmap --touch --json)
			expect_rc 0 "$WEIGHTLIFT" load "${args[@]}" "$S" || continue
			pycheck '
x = e["small.safetensors"]
assert j["bytes"] == sum(t["nbytes"] for t in x["tensors"].values()), j
assert j["touch_xor"] == x["xor"], (j["touch_xor"], x["xor"])
assert j["ready_s"] >= j["touch_s"] >= 0, j
assert j["mmap"] == ('"$([ -n "$mmap" ] && echo True || echo False)"'), j
'
		done
	done
done

# --- threads, chunk size, bytes in flight -----------------------------------------------------
for threads in 1 2 4; do
	for chunk in 4K 64k 1M 8MiB; do
		for inflight in 64K 256M; do
			expect_rc 0 "$WEIGHTLIFT" load --threads "$threads" --chunk-size "$chunk" \
				--max-inflight "$inflight" --touch --json "$S" || continue
			pycheck 'assert j["touch_xor"] == e["small.safetensors"]["xor"], j'
		done
	done
done
expect_rc 0 "$WEIGHTLIFT" load --threads 3 --chunk-size 1M --json "$B"
pycheck '
assert j["bytes"] == e["big.safetensors"]["nbytes"], j
assert j["threads"] == 3 and j["chunk_bytes"] == 1 << 20, j
'

# --- names, device, dtype, repeat --------------------------------------------------------------
expect_rc 0 "$WEIGHTLIFT" load --names embed.weight,scale --json "$S"
pycheck 'assert j["tensors"] == 2 and j["bytes"] == 48 + 8, j'
expect_rc 0 "$WEIGHTLIFT" load --names embed.weight --names q.u8 --touch --json "$S"
pycheck 'assert j["tensors"] == 2 and j["bytes"] == 48 + 13, j'
expect_rc 1 "$WEIGHTLIFT" load --names no.such.tensor "$S"
grep_err "no.such.tensor"
expect_rc 0 "$WEIGHTLIFT" load --device cpu --json "$S"
pycheck 'assert j["device"] == "cpu"'
# No GPU in this stage: a CUDA device is a device error (5) or "not supported" (1).
expect_rc_in "1 5" "$WEIGHTLIFT" load --device cuda:0 "$S"
# dtype conversion: done (0) or reported as not supported yet (1), never a crash.
for dt in F16 BF16 F32; do
	expect_rc_in "0 1" "$WEIGHTLIFT" load --dtype "$dt" --json "$S"
	if [ "$RC" = 0 ]; then pycheck 'assert j["dtype"] == "'"$dt"'"'; fi
done
expect_rc 0 "$WEIGHTLIFT" load --repeat 3 --touch --json "$S"
pycheck '
assert j["repeat"] == 3 and len(j["runs"]) == 3
assert j["touch_xor"] == e["small.safetensors"]["xor"]
r = sorted(x["ready_s"] for x in j["runs"])
assert j["ready_s"] == r[1], (j["ready_s"], r)     # the median run
'
expect_rc 0 "$WEIGHTLIFT" load --repeat 2 "$S"
grep_out "run 2:"
grep_out "(median run)"
expect_rc 0 "$WEIGHTLIFT" load --touch "$S"
grep_out "ready (open + load + read pass)"
grep_out "xor $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["small.safetensors"]["xor"])' "$D/expected.json")"
expect_rc 0 "$WEIGHTLIFT" load -q "$S"
no_out
expect_rc 0 "$WEIGHTLIFT" load "file://$S"
expect_rc 0 "$WEIGHTLIFT" load --json "$D/sharded"
pycheck 'assert j["tensors"] == 3 and j["bytes"] == 32 + 12 + 9, j'

# --- host memory: a copy costs the model bytes, a mapping costs nothing anonymous -------------
expect_rc 0 "$WEIGHTLIFT" load --json --mmap --touch "$B"
pycheck '
n = e["big.safetensors"]["nbytes"]
assert j["bytes"] == n
assert j["peak_rss_anon"] < n // 4, ("mapped mode grew RssAnon", j["peak_rss_anon"], n)
'
expect_rc 0 "$WEIGHTLIFT" load --json --direct off --touch "$B"
pycheck '
n = e["big.safetensors"]["nbytes"]
assert n * 0.9 <= j["peak_rss_anon"] <= n + (64 << 20), ("copy mode RssAnon", j["peak_rss_anon"], n)
'

# --- mapped loads are reported as mapped (nothing read yet: no GB/s); --touch leads with ready -
# line_re N ERE: line N of stdout matches the extended regular expression.
line_re() {
	NCHECK=$((NCHECK + 1))
	sed -n "$1p" "$OUT" | grep -Eq -- "$2" || fail "line $1 of stdout '$(sed -n "$1p" "$OUT")' !~ $2"
}
not_out() {
	NCHECK=$((NCHECK + 1))
	! grep -qF -- "$1" "$OUT" || fail "'$1' in stdout: $(head -c 600 "$OUT")"
}
num='[0-9]+\.[0-9]+'
expect_rc 0 "$WEIGHTLIFT" load --mmap "$S"
line_re 1 "^mapped 8 tensors, 121 B in 1 file, pages populated in $num s\$"
line_re 2 "^  open $num s, plan $num s, populate $num s\$"
line_re 3 "^  strategy mmap, [0-9]+ threads?, populated "
not_out "GB/s"
not_out "read "
expect_rc 0 "$WEIGHTLIFT" load --mmap --touch "$D/sharded"
line_re 1 "^ready in $num s: mapped 3 tensors, 53 B in 2 files, pages populated in $num s, read pass $num s\$"
grep_out "ready (open + load + read pass)"
not_out "GB/s"
expect_rc 0 "$WEIGHTLIFT" load --mmap --names embed.weight "$S"
line_re 1 "^mapped 1 tensor, .* in 1 file, "
expect_rc 0 "$WEIGHTLIFT" load --mmap --repeat 2 --touch "$S"
line_re 1 "^run 1: pages populated in $num s, ready $num s\$"
line_re 3 "^ready in $num s: mapped 8 tensors, .* read pass $num s \(median run\)\$"
# copy mode: the throughput stays; with --touch the ready time leads
expect_rc 0 "$WEIGHTLIFT" load --direct off "$S"
line_re 1 "^loaded 8 tensors, .* in $num s: $num GB/s\$"
expect_rc 0 "$WEIGHTLIFT" load --direct off --touch "$S"
line_re 1 "^ready in $num s: loaded 8 tensors, .* in $num s \($num GB/s\), read pass $num s\$"
# --json keeps every field in both modes
expect_rc 0 "$WEIGHTLIFT" load --json --touch "$S"
cp "$OUT" "$T/copy.json"
expect_rc 0 "$WEIGHTLIFT" load --json --mmap --touch "$S"
pycheck '
c = json.load(open("'"$T/copy.json"'"))
assert set(j) == set(c), set(j) ^ set(c)
assert j["mmap"] is True and j["strategy"] == "mmap" and j["bytes_read"] == j["bytes"], j
for k in ("gb_per_s", "read_s", "ready_s", "touch_s", "touch_xor"):
    assert k in j, k
'

# --- progress bar: on a terminal only, and never with --json or --quiet ---------------------
if script -qec true /dev/null >/dev/null 2>&1; then
	NCHECK=$((NCHECK + 1))
	script -qec "'$WEIGHTLIFT' load --threads 1 --chunk-size 64K '$B'" /dev/null >"$T/tty.out" 2>&1 ||
		fail "load on a terminal failed: $(tail -c 500 "$T/tty.out")"
	grep -q '%' "$T/tty.out" || fail "no progress bar on a terminal"
	NCHECK=$((NCHECK + 1))
	script -qec "'$WEIGHTLIFT' load --json '$S'" /dev/null >"$T/tty.out" 2>&1
	! grep -q '\[#*  *\]' "$T/tty.out" || fail "progress bar with --json"
fi

# --- usage -------------------------------------------------------------------------------------
expect_rc 2 "$WEIGHTLIFT" load --strategy mmap "$S"
expect_rc 2 "$WEIGHTLIFT" load --direct maybe "$S"
expect_rc 2 "$WEIGHTLIFT" load --threads -1 "$S"
expect_rc 2 "$WEIGHTLIFT" load --threads x "$S"
expect_rc 2 "$WEIGHTLIFT" load --chunk-size 8X "$S"
expect_rc 2 "$WEIGHTLIFT" load --chunk-size 0 "$S"
expect_rc 2 "$WEIGHTLIFT" load --max-inflight "" "$S"
expect_rc 2 "$WEIGHTLIFT" load --dtype I64 "$S"
expect_rc 2 "$WEIGHTLIFT" load --dtype F99 "$S"
expect_rc 2 "$WEIGHTLIFT" load --repeat 0 "$S"
expect_rc 2 "$WEIGHTLIFT" load --names "" "$S"
expect_rc 2 "$WEIGHTLIFT" load --names , "$S"
expect_rc 2 "$WEIGHTLIFT" load "$S" "$S"
expect_rc 2 "$WEIGHTLIFT" load
expect_rc 2 "$WEIGHTLIFT" load --touch --device cuda:0 "$S"
# --- tensor-parallel shards: --rank/--world/--shard-spec ------------------------------------
# Split every tensor of big.safetensors along dim 0 across 3 ranks: the bytes each rank reads
# add up to the checkpoint's tensor bytes once; replicated (null), each rank reads it all.
printf '{"*": 0}' >"$D/spec0.json"
printf '{"*": null}' >"$D/specrep.json"
: >"$D/sum0"
for r in 0 1 2; do
	expect_rc 0 "$WEIGHTLIFT" load --json --direct off --rank $r --world 3 --shard-spec "$D/spec0.json" "$B"
	pycheck 'assert j["rank"] >= 0 and j["world"] == 3 and j["bytes_read"] == j["bytes"], j
open(sys.argv[2].replace("expected.json", "sum0"), "a").write("%d\n" % j["bytes_read"])'
done
expect_rc 0 "$WEIGHTLIFT" load --json "$B"
pycheck 'assert sum(int(x) for x in open(sys.argv[2].replace("expected.json", "sum0"))) == j["bytes"], j'

expect_rc 0 "$WEIGHTLIFT" load --json --rank 1 --world 2 --shard-spec "$D/specrep.json" "$S"
pycheck 'assert j["bytes"] == sum(t["nbytes"] for t in e["small.safetensors"]["tensors"].values()), j'
# --world 1: a plain load (issue 12, bad input: world_size 1), the spec still checked
expect_rc 0 "$WEIGHTLIFT" load --json --direct off --rank 0 --world 1 --shard-spec "$D/spec0.json" "$B"
pycheck 'assert j["bytes_read"] == j["bytes"] == sum(int(x) for x in open(sys.argv[2].replace("expected.json", "sum0"))), j'
# a rule naming a dim a tensor lacks: bad input (exit 1) naming the tensor, on any world
printf '{"*": 7}' >"$D/spec7.json"
for w in 1 2; do
	expect_rc 1 "$WEIGHTLIFT" load --rank 0 --world $w --shard-spec "$D/spec7.json" "$S"
	grep_err "cannot be split along dim 7"
done
# --- file mode: --rank/--world alone -----------------------------------------------------------
# Each rank loads its share (contiguous runs balanced by bytes): over the ranks every tensor
# once and the bytes read add up to the checkpoint's tensor bytes; more ranks than tensors
# leaves some with nothing; --names narrows what is shared out.
expect_rc 0 "$WEIGHTLIFT" load --json --direct off "$S"
pycheck 'open(sys.argv[2].replace("expected.json", "plain"), "w").write("%d %d\n" % (j["tensors"], j["bytes"]))'
for w in 3 16; do
	: >"$D/fm$w"
	for r in $(seq 0 $((w - 1))); do
		expect_rc 0 "$WEIGHTLIFT" load --json --direct off --rank $r --world $w "$S"
		pycheck 'assert j["rank"] >= 0 and j["world"] > 1 and j["bytes_read"] == j["bytes"], j
open(sys.argv[2].replace("expected.json", "fm%d" % j["world"]), "a").write("%d %d\n" % (j["tensors"], j["bytes"]))'
	done
	pycheck 'import os
d = os.path.dirname(sys.argv[2])
rows = [tuple(map(int, l.split())) for l in open(os.path.join(d, "fm'$w'"))]
plain = tuple(map(int, open(os.path.join(d, "plain")).read().split()))
assert len(rows) == '$w' and (sum(r[0] for r in rows), sum(r[1] for r in rows)) == plain, (rows, plain)
assert '$w' < plain[0] or any(r[0] == 0 for r in rows), rows'
done
names=$(python3 -c 'import json, sys; print(",".join(sorted(json.load(open(sys.argv[1]))["small.safetensors"]["tensors"])[:3]))' "$D/expected.json")
: >"$D/fmn"
for r in 0 1; do
	expect_rc 0 "$WEIGHTLIFT" load --json --rank $r --world 2 --names "$names" "$S"
	pycheck 'open(sys.argv[2].replace("expected.json", "fmn"), "a").write("%d\n" % j["tensors"])'
done
NCHECK=$((NCHECK + 1))
[ "$(awk "{ s += \$1 } END { print s }" "$D/fmn")" = 3 ] || fail "file mode with --names: $(cat "$D/fmn")"
expect_rc 2 "$WEIGHTLIFT" load --world 2 --groups --device cuda:0 "$S"
grep_err "file mode"

# usage errors (exit 2) and a bad spec (exit 1, naming the file, quoting nothing of it)
expect_rc 2 "$WEIGHTLIFT" load --rank 2 --world 2 --shard-spec "$D/spec0.json" "$S"
expect_rc 2 "$WEIGHTLIFT" load --shard-spec "$D/spec0.json" "$S"
expect_rc 2 "$WEIGHTLIFT" load --world 0 --shard-spec "$D/spec0.json" "$S"
printf '{"secret-name": "x"}' >"$D/specbad.json"
expect_rc 1 "$WEIGHTLIFT" load --rank 0 --world 2 --shard-spec "$D/specbad.json" "$S"
grep_err "specbad.json"
grep_err "shard.format"
NCHECK=$((NCHECK + 1))
! grep -q "secret" "$ERR" || fail "the spec's bytes are quoted"
expect_rc_in "1 3" "$WEIGHTLIFT" load --rank 0 --world 2 --shard-spec /dev/zero "$S"

expect_rc 0 "$WEIGHTLIFT" load --help
grep_out "usage: weightlift load"

for opt in --threads --chunk-size --max-inflight --strategy --direct --mmap --names --device \
	--dtype --repeat --touch --json --quiet --rank --world --shard-spec; do
	grep_out "$opt"
done
finish
