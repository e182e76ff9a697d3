#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The bandwidth cap (--max-rate, WEIGHTLIFT_MAX_RATE): loads from nginx on 127.0.0.1 take
# the time the cap says within 10% (over a few seconds, with 1 and 16 requests in flight and
# 1 and 4 threads sharing one cap), give the same bytes, and bad values are refused with the
# range. Skips (77) without nginx. Every command is bounded by timeout.
. "$(dirname "$0")/../cli/lib.sh"
. "$(dirname "$0")/nginx.sh"
cleanup() {
	nginx_stop
	rm -rf "$T"
}
trap cleanup EXIT
fixtures --big 12
nginx_start "$D" "$T"
TO="timeout 60"
# The big tensors' XOR from the local file (zeros make the XOR weak: the digests are checked
# by verify below too).
"$WEIGHTLIFT" load --json --touch "$D/big.safetensors" >"$OUT"
LXOR=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["touch_xor"])' "$OUT")
unset WEIGHTLIFT_MAX_RATE

# rate_ok RATE ARGS...: load --json --touch with --max-rate RATE (bytes/s) and ARGS; the rate
# of the transfer (bytes over the load's seconds) must be within 10% of RATE.
rate_ok() {
	local rate=$1
	shift
	expect_rc 0 $TO "$WEIGHTLIFT" load --json --touch --max-rate "$rate" "$@" "$URL/big.safetensors" ||
		return
	pycheck "
rate = $rate
got = j['bytes'] / j['seconds']
assert j['touch_xor'] == '$LXOR', 'bytes differ'
assert abs(got - rate) <= 0.1 * rate, 'rate %.0f B/s for a cap of %d (%.1f%%)' % (got, rate, 100 * (got - rate) / rate)
"
	python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); r = int(sys.argv[2]); g = j["bytes"] / j["seconds"]
print("cap %d B/s: %.0f B/s over %.2f s (%+.1f%%)" % (r, g, j["seconds"], 100 * (g - r) / r))' "$OUT" "$rate"
}
# 12 MiB at 4 MiB/s: 3 s; at 3 MiB/s: 4 s.
rate_ok 4194304 --threads 1
WEIGHTLIFT_HTTP_REQUESTS=16 rate_ok 3145728 --threads 4 --chunk-size 1M
WEIGHTLIFT_HTTP_REQUESTS=2 rate_ok 4194304 --threads 2 --chunk-size 4M
# The environment variable; without a cap it is much faster.
WEIGHTLIFT_MAX_RATE=4M expect_rc 0 $TO "$WEIGHTLIFT" load --json "$URL/big.safetensors"
pycheck 'assert 2.6 < j["seconds"] < 3.4, j["seconds"]'
expect_rc 0 $TO "$WEIGHTLIFT" load --json "$URL/big.safetensors"
pycheck 'assert j["seconds"] < 2.0, j["seconds"]'
# verify and inspect take it too.
expect_rc 0 $TO "$WEIGHTLIFT" verify --max-rate 8M "$URL/big.safetensors"
awk 'length($1) == 64 { print $1, $2 }' "$OUT" | sort >"$T/a"
"$WEIGHTLIFT" verify "$D/big.safetensors" | awk 'length($1) == 64 { print $1, $2 }' | sort >"$T/b"
NCHECK=$((NCHECK + 1))
[ -s "$T/a" ] && cmp -s "$T/a" "$T/b" || fail "verify --max-rate: digests differ from the local file's"
expect_rc 0 $TO "$WEIGHTLIFT" inspect --max-rate 1G "$URL/big.safetensors"
# Out of range or malformed: usage errors (2), or a context error naming the variable (1).
expect_rc 2 $TO "$WEIGHTLIFT" load --max-rate 1k "$URL/big.safetensors"
grep_err "--max-rate"
expect_rc 2 $TO "$WEIGHTLIFT" verify --max-rate fast "$URL/big.safetensors"
expect_rc 2 $TO "$WEIGHTLIFT" inspect --max-rate 2T "$URL/big.safetensors"
WEIGHTLIFT_MAX_RATE=100 expect_rc_in "1 2" $TO "$WEIGHTLIFT" load "$URL/big.safetensors"
grep_err "WEIGHTLIFT_MAX_RATE"

echo "$((NCHECK - NFAIL)) passed, $NFAIL failed"
[ "$NFAIL" -eq 0 ]
