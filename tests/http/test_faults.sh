#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Faults between the client and nginx (127.0.0.1), injected by tests/http/faultproxy.py: every
# retry rule of the HTTP source, checked with the tensors' sha256 against the local file's
# (verify with requests smaller than the tensors, so that a retried range is one of many):
#  - retried and then loaded correctly: 503 and 429 with Retry-After (honoured), 500, 502,
#    504, connection resets, connections dropped mid-body, short (truncated) bodies, longer
#    bodies, a wrong Content-Range, a stalled connection (the stall timeout re-issues it),
#    and seeded random 500s and drops over the whole load;
#  - given up after the attempts allowed, naming URI, range, status and attempts;
#  - never retried: the object changing (412 to If-Match; another ETag), 401/403 (exit 4),
#    404, a 200 with the whole object;
#  - hedging: a stalled range is asked again on another connection and the load finishes long
#    before the stall would end, with the right bytes;
#  - a sharded checkpoint's shards open at once (a delay on every shard request costs one
#    delay, not one per shard), with the right bytes, faults at open retried; a shard whose
#    header fails fails the open naming it (the first in file order);
#  - the time to first tensor: a fresh load makes one ranged GET for the header and its first
#    data request on the same connection (no HEAD): connect, header, data.
# Skips (77) without nginx. Every command is bounded by timeout.
. "$(dirname "$0")/../cli/lib.sh"
. "$(dirname "$0")/nginx.sh"
. "$(dirname "$0")/faultproxy.sh"
cleanup() {
	fp_stop
	nginx_stop
	rm -rf "$T"
}
trap cleanup EXIT
fixtures --big 8
# Random tensor bytes (the fixture's big tensors are a pattern): 32 tensors of 256 KiB.
python3 - "$D/rand.safetensors" <<'PY'
import json, os, struct, sys
n, per = 32, 256 << 10
hdr = {"t%02d" % i: {"dtype": "U8", "shape": [per], "data_offsets": [i * per, (i + 1) * per]} for i in range(n)}
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + os.urandom(n * per))
PY
nginx_start "$D" "$T"
fp_start "127.0.0.1:$PORT" "$T/fp"
TO="timeout 60"
unset WEIGHTLIFT_MAX_RATE
export WEIGHTLIFT_HTTP_RETRY_BASE_MS=20 WEIGHTLIFT_HTTP_RETRY_MAX_MS=2000 \
	WEIGHTLIFT_HTTP_STALL_TIMEOUT=30 WEIGHTLIFT_HTTP_CONNECT_TIMEOUT=5
F=rand.safetensors
"$WEIGHTLIFT" verify "$D/$F" | awk 'length($1) == 64 { print $1, $2 }' | sort >"$T/want"
[ -s "$T/want" ] || { echo "FAIL: local verify"; exit 1; }

# good WHAT [ARGS...]: verify over the proxy (64 KiB requests) gives the local digests.
good() {
	local what=$1
	shift
	expect_rc 0 $TO "$WEIGHTLIFT" verify -v --chunk-size 64k "$@" "$FP_URL/$F" || { fail "$what"; return; }
	awk 'length($1) == 64 { print $1, $2 }' "$OUT" | sort >"$T/got"
	NCHECK=$((NCHECK + 1))
	cmp -s "$T/got" "$T/want" || fail "$what: digests differ from the local file's"
}
# applied N: the proxy applied its first rule N times (at least).
applied() {
	fp_stats >"$T/stats"
	NCHECK=$((NCHECK + 1))
	local n
	n=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["applied"][0])' "$T/stats")
	[ "$n" -ge "$1" ] || fail "the fault was applied $n times, want $1"
}
# retried: some range was asked for more than once (after its fault).
retried() {
	NCHECK=$((NCHECK + 1))
	[ -n "$(awk '$3 == "GET" { print $5 }' "$FP_LOG" | sort | uniq -d)" ] ||
		fail "$1: no range was asked again: $(head -5 "$FP_LOG")"
}

# --- transient faults: retried, the bytes right ----------------------------------------------
for st in 500 502 504 429 503; do
	fp_rules '[{"action": "status", "status": '$st', "min_offset": 1, "count": 3}]'
	good "HTTP $st three times"
	applied 3
	retried "HTTP $st"
	grep_err "HTTP $st"
	grep_err "attempt 1 of 6"
done
# load --json counts what was asked again (and a clean load nothing).
# (hedging off: on a loaded machine a slow 64 KiB read may be hedged without any fault)
fp_rules '[{"action": "status", "status": 500, "min_offset": 1, "count": 3}]'
WEIGHTLIFT_HTTP_HEDGE=0 expect_rc 0 $TO "$WEIGHTLIFT" load --json --chunk-size 64k "$FP_URL/$F"
pycheck 'assert j["retries"] == 3 and 0 < j["bytes_rerequested"] <= 3 * 65536 and j["hedges"] == 0, j
assert j["runs"][0]["retries"] == 3, j["runs"]'
fp_rules '[]'
WEIGHTLIFT_HTTP_HEDGE=0 expect_rc 0 $TO "$WEIGHTLIFT" load --json --chunk-size 64k "$FP_URL/$F"
pycheck 'assert (j["retries"], j["hedges"], j["hedges_won"], j["bytes_rerequested"]) == (0, 0, 0, 0), j'
# Retry-After is honoured (1 s), within the cap.
fp_rules '[{"action": "status", "status": 503, "retry_after": 1, "min_offset": 1, "count": 1}]'
t0=$(date +%s%N)
good "503 with Retry-After: 1"
dt=$((($(date +%s%N) - t0) / 1000000))
NCHECK=$((NCHECK + 1))
[ "$dt" -ge 900 ] || fail "Retry-After: 1 was not waited for ($dt ms)"
grep_err "again in 1.00 s"
WEIGHTLIFT_HTTP_RETRY_MAX_MS=100 good "Retry-After beyond the cap" &&
	fp_rules '[{"action": "status", "status": 429, "retry_after": 3600, "min_offset": 1, "count": 1}]'
t0=$(date +%s%N)
WEIGHTLIFT_HTTP_RETRY_MAX_MS=300 good "Retry-After: 3600 capped at 0.3 s"
dt=$((($(date +%s%N) - t0) / 1000000))
NCHECK=$((NCHECK + 1))
[ "$dt" -lt 5000 ] || fail "Retry-After beyond the cap was waited for ($dt ms)"
for rule in '"action": "reset"' '"action": "drop", "after": 30000' '"action": "truncate", "after": 1000' \
	'"action": "long", "extra": 100' '"action": "wrong_range"' '"action": "wrong_range", "shift": -1'; do
	fp_rules '[{'"$rule"', "min_offset": 1, "count": 2}]'
	good "$rule twice"
	applied 2
	retried "$rule"
done
# A stalled connection: the stall timeout (1 s) ends it and the range is asked again.
fp_rules '[{"action": "stall", "after": 1000, "seconds": 20, "min_offset": 1, "count": 1}]'
t0=$(date +%s%N)
WEIGHTLIFT_HTTP_STALL_TIMEOUT=1 WEIGHTLIFT_HTTP_HEDGE=0 good "a stalled connection"
dt=$((($(date +%s%N) - t0) / 1000000))
NCHECK=$((NCHECK + 1))
[ "$dt" -lt 10000 ] || fail "the stall took $dt ms"
grep_err "too slow"
grep_err "attempt 1 of 6"
# Random faults over the whole load (seeded): 20% of the reads fail one way or another.
fp_rules '[{"action": "status", "status": 500, "min_offset": 1, "prob": 0.1}, {"action": "drop", "after": 20000, "min_offset": 1, "prob": 0.1}]'
WEIGHTLIFT_HTTP_RETRIES=10 good "random 500s and drops"
# The first ranged GET (the open) is retried too.
fp_rules '[{"action": "status", "status": 503, "nth": [1]}]'
good "503 to the open"
# The C API over the proxy: every byte, many request sizes and threads, with faults.
fp_rules '[{"action": "drop", "after": 5000, "min_offset": 1, "prob": 0.05}]'
expect_rc 0 $TO env WEIGHTLIFT_HTTP_RETRIES=20 "$HTTP_CHECK" same "$FP_URL/big.safetensors" "$D/big.safetensors" 4

# --- persistent faults: given up after the attempts, naming URI, range, status, attempts ----
fp_rules '[{"action": "status", "status": 503, "min_offset": 1}]'
WEIGHTLIFT_HTTP_RETRIES=2 expect_rc 3 $TO "$WEIGHTLIFT" verify --chunk-size 64k "$FP_URL/$F"
grep_err "$FP_URL/$F"
grep_err "HTTP 503"
grep_err "bytes "
grep_err "gave up after 3 attempts"
fp_rules '[{"action": "drop", "after": 100, "min_offset": 1}]'
WEIGHTLIFT_HTTP_RETRIES=1 expect_rc 3 $TO "$WEIGHTLIFT" load --chunk-size 64k "$FP_URL/$F"
grep_err "gave up after 2 attempts"
WEIGHTLIFT_HTTP_RETRIES=0 expect_rc 3 $TO "$WEIGHTLIFT" load --chunk-size 64k "$FP_URL/$F"
NCHECK=$((NCHECK + 1))
! grep -q "gave up" "$ERR" || fail "no retries, yet: $(cat "$ERR")"
expect_rc 0 $TO env WEIGHTLIFT_HTTP_RETRIES=2 "$HTTP_CHECK" fail "$FP_URL/$F" WLIFT_ENET load
expect_rc_in "1 2" $TO env WEIGHTLIFT_HTTP_RETRIES=101 "$WEIGHTLIFT" load "$FP_URL/$F"
grep_err "WEIGHTLIFT_HTTP_RETRIES"

# --- never retried ---------------------------------------------------------------------------
# never_again WHAT RC: the load failed with RC and no range was asked twice.
never_again() {
	expect_rc "$2" $TO "$WEIGHTLIFT" load --chunk-size 64k --threads 1 "$FP_URL/$F"
	NCHECK=$((NCHECK + 1))
	[ -z "$(awk '$3 == "GET" { print $5 }' "$FP_LOG" | sort | uniq -d)" ] ||
		fail "$1 was retried: $(awk '$3 == "GET" { print $5 }' "$FP_LOG" | sort | uniq -d | head -3)"
	NCHECK=$((NCHECK + 1))
	! grep -q "attempt 1 of" "$ERR" || fail "$1 was retried: $(cat "$ERR")"
}
fp_rules '[{"action": "change", "min_offset": 300000}]'
never_again "412 (the object changed)" 3
grep_err "changed"
expect_rc 0 $TO "$HTTP_CHECK" fail "$FP_URL/$F" WLIFT_ECHANGED load
fp_rules '[{"action": "change", "etag": "\"other\"", "min_offset": 300000}]'
: # an ETag change without If-Match is checked by tests/http/test_http.sh (badserver.py)
fp_rules '[{"action": "status", "status": 403, "min_offset": 300000}]'
never_again "403" 4
grep_err "HTTP 403 Forbidden"
fp_rules '[{"action": "status", "status": 401, "min_offset": 300000}]'
never_again "401" 4
fp_rules '[{"action": "status", "status": 404, "min_offset": 300000}]'
never_again "404" 3
grep_err "HTTP 404"
fp_rules '[{"action": "full", "min_offset": 300000}]'
never_again "a 200 with the whole object" 3
grep_err "does not support range requests"

# --- servers without Range support: refused, or read whole when allowed ---------------------
fp_rules '[{"action": "full"}]'
expect_rc 3 $TO "$WEIGHTLIFT" verify "$FP_URL/$F"
grep_err "does not support range requests"
grep_err "--allow-full-download"
fp_rules '[{"action": "full"}]' # a new log: the refused load's last answer may still be ending
good "a server without Range support, --allow-full-download" --allow-full-download
grep_err "every read downloads the object from its start"
NCHECK=$((NCHECK + 1))
[ -z "$(awk '$5 != "-" && $5 != "bytes=0-12287"' "$FP_LOG")" ] ||
	fail "reads of a server without Range support still asked for ranges: $(awk '$5 != "-" && $5 != "bytes=0-12287"' "$FP_LOG" | head -3)"
WEIGHTLIFT_HTTP_FULL_DOWNLOAD=1 good "WEIGHTLIFT_HTTP_FULL_DOWNLOAD=1"
# nginx itself without Range support (max_ranges 0): a whole load, and one tensor.
same_norange() {
	expect_rc 0 $TO "$WEIGHTLIFT" verify --allow-full-download "$@" "$URL/norange/big.safetensors"
	awk 'length($1) == 64 { print $1, $2 }' "$OUT" | sort >"$T/got"
	"$WEIGHTLIFT" verify "$D/big.safetensors" | awk 'length($1) == 64 { print $1, $2 }' | sort >"$T/bigwant"
	NCHECK=$((NCHECK + 1))
	cmp -s "$T/got" "$T/bigwant" || fail "norange verify $*: digests differ"
}
same_norange
same_norange --chunk-size 1M
WEIGHTLIFT_HTTP_FULL_DOWNLOAD=1 expect_rc 0 $TO "$WEIGHTLIFT" load --json --names big.03 "$URL/norange/big.safetensors"
pycheck 'assert j["bytes"] == 8 * 1024 * 1024 // 64, j["bytes"]'
# The object changing under a whole-object read is still caught (If-Match: 412).
fp_rules '[{"action": "full", "nth": [1]}, {"action": "change"}]'
expect_rc 3 $TO "$WEIGHTLIFT" load --allow-full-download "$FP_URL/$F"
grep_err "changed"

# --- hedging: a stalled range is asked again elsewhere; the first answer wins ----------------
fp_rules '[{"action": "stall", "after": 0, "seconds": 30, "min_offset": 1, "nth": [12]}]'
t0=$(date +%s%N)
WEIGHTLIFT_HTTP_REQUESTS=4 good "a stalled range, hedged" --threads 1
dt=$((($(date +%s%N) - t0) / 1000000))
NCHECK=$((NCHECK + 1))
[ "$dt" -lt 10000 ] || fail "the hedged load took $dt ms (the stall is 30 s)"
grep_err "hedged with a second request"
grep_err "hedged request for bytes"
applied 1
fp_rules '[{"action": "stall", "after": 0, "seconds": 30, "min_offset": 1, "nth": [12]}]'
WEIGHTLIFT_HTTP_REQUESTS=4 expect_rc 0 $TO "$WEIGHTLIFT" load --json --threads 1 --chunk-size 64k "$FP_URL/$F"
pycheck 'assert j["hedges"] >= 1 and j["hedges_won"] >= 1 and j["bytes_rerequested"] >= 1, j'
# Hedging off: the stall timeout has to end it instead.
fp_rules '[{"action": "stall", "after": 0, "seconds": 4, "min_offset": 1, "nth": [12]}]'
t0=$(date +%s%N)
WEIGHTLIFT_HTTP_HEDGE=0 WEIGHTLIFT_HTTP_STALL_TIMEOUT=2 WEIGHTLIFT_HTTP_REQUESTS=4 good "a stalled range, no hedging" --threads 1
dt=$((($(date +%s%N) - t0) / 1000000))
NCHECK=$((NCHECK + 1))
[ "$dt" -ge 1900 ] || fail "hedging off, yet the load took only $dt ms"
NCHECK=$((NCHECK + 1))
! grep -q "hedged" "$ERR" || fail "hedged with WEIGHTLIFT_HTTP_HEDGE=0"
expect_rc_in "1 2" $TO env WEIGHTLIFT_HTTP_HEDGE=x "$WEIGHTLIFT" load "$FP_URL/$F"
grep_err "WEIGHTLIFT_HTTP_HEDGE"

# --- adaptive concurrency: starts with one request, grows, halves on "slow down" --------------
fp_rules '[{"action": "slow", "rate": 4000000, "min_offset": 1}]'
WEIGHTLIFT_HTTP_REQUESTS=8 good "adaptive concurrency" -v -v --threads 1
NCHECK=$((NCHECK + 1))
grep -Eq ': [2-8] requests active of 8 \(adaptive\)' "$ERR" ||
	fail "the requests active did not grow: $(grep adaptive "$ERR" | head -3)"
fp_rules '[{"action": "status", "status": 429, "min_offset": 1, "nth": [20, 21, 22]}]'
WEIGHTLIFT_HTTP_REQUESTS=8 good "adaptive concurrency, 429" -v -v --threads 1
grep_err "the server asks to slow down"
WEIGHTLIFT_HTTP_ADAPTIVE=0 WEIGHTLIFT_HTTP_REQUESTS=8 good "adaptive concurrency off" -v -v --threads 1
NCHECK=$((NCHECK + 1))
! grep -q "(adaptive)" "$ERR" || fail "WEIGHTLIFT_HTTP_ADAPTIVE=0: $(grep adaptive "$ERR" | head -3)"
# One limit for the whole load: four workers (four read queues) share it, so the requests the
# proxy is answering at once never exceed the largest limit the load logged (at the start one
# per queue), and that limit is out of the load's 16 requests, not a worker's 4. The bandwidth
# cap keeps the total throughput flat, so growth stops early (each worker growing a limit of
# its own would put 2-4 requests each in flight).
fp_rules '[]'
WEIGHTLIFT_MAX_RATE=4M WEIGHTLIFT_HTTP_HEDGE=0 WEIGHTLIFT_HTTP_REQUESTS=16 \
	good "adaptive concurrency, one limit over 4 workers" -v -v --threads 4
fp_stats >"$T/stats"
busy=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["inflight_max"])' "$T/stats")
lim=$(grep -Eo ': [0-9]+ requests active of [0-9]+ \(adaptive\)' "$ERR" | awk '{ if ($2 > m) m = $2 } END { print m + 0 }')
[ "$lim" -ge 4 ] || lim=4
NCHECK=$((NCHECK + 1))
grep -Eq ': [0-9]+ requests active of 16 \(adaptive\)' "$ERR" ||
	fail "no limit over the whole load's 16 requests: $(grep adaptive "$ERR" | head -3)"
NCHECK=$((NCHECK + 1))
[ "$busy" -le "$lim" ] ||
	fail "$busy requests in flight at once over the workers, above the limit $lim: $(grep adaptive "$ERR" | head -5)"
echo "one limit over 4 workers: at most $busy requests in flight, largest limit $lim"

# --- a sharded checkpoint: its shards are opened at once, a failing shard fails the open -------
# Six shards of random bytes and their index; every request for a shard waits 0.6 s at the
# proxy, so opening them one after another would take 3.6 s.
mkdir -p "$D/six"
python3 - "$D/six" <<'PY'
import json, os, struct, sys
d, per, wm = sys.argv[1], 64 << 10, {}
for s in range(6):
    name = "model-%05d-of-00006.safetensors" % (s + 1)
    hdr = {"s%d.t%d" % (s, i): {"dtype": "U8", "shape": [per], "data_offsets": [i * per, (i + 1) * per]} for i in range(3)}
    wm.update({k: name for k in hdr})
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(d, name), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + os.urandom(3 * per))
with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {}, "weight_map": wm}, f)
PY
"$WEIGHTLIFT" verify "$D/six/model.safetensors.index.json" | awk 'length($1) == 64 { print $1, $2 }' | sort >"$T/six-want"
fp_rules '[{"action": "delay", "seconds": 0.6, "path": "model-0000"}]'
expect_rc 0 $TO "$WEIGHTLIFT" load --json "$FP_URL/six/model.safetensors.index.json"
pycheck 'assert j["open_s"] < 2.4, "the shards were not opened at once: open_s %.2f" % j["open_s"]'
expect_rc 0 $TO "$WEIGHTLIFT" verify "$FP_URL/six/model.safetensors.index.json"
awk 'length($1) == 64 { print $1, $2 }' "$OUT" | sort >"$T/got"
NCHECK=$((NCHECK + 1))
cmp -s "$T/got" "$T/six-want" || fail "six shards over the proxy: digests differ from the local files'"
# Faults while the shards open at once: drops and 503s of the headers' requests, retried.
fp_rules '[{"action": "status", "status": 503, "path": "0000[246]", "count": 3}, {"action": "drop", "after": 100, "path": "0000[35]", "count": 2}]'
expect_rc 0 $TO "$WEIGHTLIFT" verify "$FP_URL/six/model.safetensors.index.json"
awk 'length($1) == 64 { print $1, $2 }' "$OUT" | sort >"$T/got"
NCHECK=$((NCHECK + 1))
cmp -s "$T/got" "$T/six-want" || fail "six shards with faults at open: digests differ"
# A shard whose header cannot be read fails the open, naming that shard (the first in file
# order when several fail), and leaves nothing behind.
fp_rules '[{"action": "status", "status": 404, "path": "model-00004"}]'
expect_rc 3 $TO "$WEIGHTLIFT" load "$FP_URL/six/model.safetensors.index.json"
grep_err "$FP_URL/six/model-00004-of-00006.safetensors: HTTP 404"
fp_rules '[{"action": "status", "status": 403, "path": "model-0000[35]"}]'
expect_rc 4 $TO "$WEIGHTLIFT" load "$FP_URL/six/model.safetensors.index.json"
grep_err "$FP_URL/six/model-00003-of-00006.safetensors: HTTP 403"
fp_rules '[{"action": "truncate", "after": 5, "path": "model-00006", "min_offset": 0}]'
WEIGHTLIFT_HTTP_RETRIES=1 expect_rc 3 $TO "$WEIGHTLIFT" load "$FP_URL/six/model.safetensors.index.json"
grep_err "$FP_URL/six/model-00006-of-00006.safetensors"
fp_rules '[]'

# --- time to first tensor: connect, one ranged GET for the header, the data on that connection
fp_stop
fp_start "127.0.0.1:$PORT" "$T/fp2"
expect_rc 0 $TO "$WEIGHTLIFT" load --json "$FP_URL/$F"
fp_stats >"$T/stats"
pycheck '
log = j["log"]
assert all(x["method"] == "GET" for x in log), [x["method"] for x in log]
assert log[0]["range"] == "bytes=0-12287", log[0]
data = [x for x in log[1:] if x["path"] == log[0]["path"]]
assert data, log
# The first data request goes on the connection the open made (no second connect, no HEAD).
assert data[0]["conn"] == log[0]["conn"], (data[0], log[0])
assert log[1] is data[0], log[:2]
' "$T/stats"
# One thread, one request in flight: one connection for the whole load.
fp_rules '[]'
WEIGHTLIFT_HTTP_REQUESTS=1 expect_rc 0 $TO "$WEIGHTLIFT" load --json --threads 1 "$FP_URL/$F"
fp_stats >"$T/stats"
pycheck '
# (the proxy counts the connection of the statistics request too)
assert len(set(x["conn"] for x in j["log"])) == 1, j["log"]
assert j["requests"] == 2, [(x["n"], x["range"]) for x in j["log"]]
' "$T/stats"

echo "$((NCHECK - NFAIL)) passed, $NFAIL failed"
[ "$NFAIL" -eq 0 ]
