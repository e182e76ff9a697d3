#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Bounded host memory while streaming from HTTP (nginx on 127.0.0.1) to the CPU: the peak
# anonymous memory of a load is the tensors plus at most max_inflight_bytes + 64 MiB (the
# CLI's peak_rss_anon, its growth over the baseline after the context exists), whatever the
# request size and the requests in flight; and a subset-of-names load of a checkpoint larger
# than the machine's memory (a sparse file of 1.5x MemTotal) reads and allocates only the
# tensors named. Skips (77) without nginx. Every command is bounded by timeout.
. "$(dirname "$0")/../cli/lib.sh"
. "$(dirname "$0")/nginx.sh"
cleanup() {
	nginx_stop
	rm -rf "$T"
}
trap cleanup EXIT
fixtures --big 96
# A checkpoint larger than memory: one 1 MiB tensor, then tensors of 1 GiB up to 1.5x
# MemTotal, as a sparse file (no disk blocks for the zeros).
mem_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
python3 - "$D/huge.safetensors" "$mem_kb" <<'PY'
import json, struct, sys
path, mem = sys.argv[1], int(sys.argv[2]) * 1024
giga = 1 << 30
n = (mem * 3 // 2) // giga + 1
hdr = {"small": {"dtype": "U8", "shape": [1 << 20], "data_offsets": [0, 1 << 20]}}
off = 1 << 20
for i in range(n):
    hdr["big%03d" % i] = {"dtype": "F32", "shape": [giga // 4], "data_offsets": [off, off + giga]}
    off += giga
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    f.write(bytes(range(256)) * 4096)  # the small tensor: 1 MiB of a pattern
    f.truncate(8 + len(h) + off)
PY
nginx_start "$D" "$T"
TO="timeout 120"
unset WEIGHTLIFT_MAX_RATE
MIB=$((1024 * 1024))

# bounded INFLIGHT ARGS...: load big.safetensors over HTTP; peak_rss_anon <= bytes +
# INFLIGHT + 64 MiB.
bounded() {
	local inflight=$1
	shift
	expect_rc 0 $TO "$WEIGHTLIFT" load --json --touch --max-inflight "$inflight" "$@" "$URL/big.safetensors" ||
		return
	pycheck "
lim = j['bytes'] + $inflight + 64 * $MIB
assert j['peak_rss_anon'] <= lim, 'peak RssAnon %d > tensors %d + in flight %d + 64 MiB' % (j['peak_rss_anon'], j['bytes'], $inflight)
"
	python3 -c 'import json, sys; j = json.load(open(sys.argv[1]))
print("%s: %d MiB of tensors, peak RssAnon growth %.1f MiB (tensors + %.1f MiB)" % (sys.argv[2], j["bytes"] >> 20, j["peak_rss_anon"] / 2**20, (j["peak_rss_anon"] - j["bytes"]) / 2**20))' "$OUT" "$inflight $*"
}
bounded $((16 * MIB)) --chunk-size 4M
bounded $((64 * MIB)) --chunk-size 16M --threads 4
bounded $((256 * MIB))
WEIGHTLIFT_HTTP_REQUESTS=64 bounded $((32 * MIB)) --chunk-size 1M --threads 8

# A checkpoint larger than memory, one small tensor of it.
size=$(stat -c %s "$D/huge.safetensors")
NCHECK=$((NCHECK + 1))
[ "$size" -gt $((mem_kb * 1024)) ] || fail "the sparse checkpoint ($size) is not larger than memory"
expect_rc 0 $TO "$WEIGHTLIFT" inspect --json "$URL/huge.safetensors"
pycheck 'assert j["files"][0]["size"] > 0 and len(j["tensors"]) > 2, j["files"]'
: >"$NGINX_PFX/access.log"
expect_rc 0 $TO "$WEIGHTLIFT" load --json --touch --names small "$URL/huge.safetensors"
pycheck "
assert j['bytes'] == $MIB, j['bytes']
assert j['peak_rss_anon'] <= $MIB + 64 * $MIB, j['peak_rss_anon']
"
NCHECK=$((NCHECK + 1))
sent=$(awk '{ s += $5 } END { print s + 0 }' "$NGINX_PFX/access.log")
[ "$sent" -lt $((4 * MIB)) ] || fail "a 1 MiB tensor of a $size-byte checkpoint fetched $sent bytes"
# The same bytes as the file's.
python3 -c 'import sys; d = (bytes(range(256)) * 4096); x = 0
import struct
for (w,) in struct.iter_unpack("<Q", d): x ^= w
print("%016x" % x)' >"$T/want_xor"
pycheck "assert j['touch_xor'] == open('$T/want_xor').read().strip(), j['touch_xor']"

echo "$((NCHECK - NFAIL)) passed, $NFAIL failed"
[ "$NFAIL" -eq 0 ]
