#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The local write-through cache end to end, through nginx on 127.0.0.1 (tests/http/nginx.sh):
# a cold load fills an entry (bytes equal to the served file, no temporary left), a warm one
# reads the cached file after one validation request, offline mode asks nothing, a changed
# object (new ETag) invalidates its entry, a partial load stores nothing unless
# --cache-fill full, a loader killed with SIGKILL mid-stream leaves no visible entry and its
# temporary file is removed by the next load, several processes at once leave one intact
# entry, the size limit evicts the least recently used entry, a failing cache write (file
# size limit) warns and the load succeeds with nothing left behind, failed loads leave no
# partial file, `cp` writes the files of a sharded set, `cache ls|clear`, and a server that
# cannot be reached is answered from the cache with a warning. Skips (77) without nginx.
# Every command is bounded by timeout.
. "$(dirname "$0")/../cli/lib.sh"
. "$(dirname "$0")/../http/nginx.sh"
BGPIDS=
cleanup() {
	for p in $BGPIDS; do kill -9 "$p" 2>/dev/null; done
	nginx_stop
	chmod -R u+rwX "$T" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
fixtures --big 32
nginx_start "$D" "$T"
TO="timeout 60"
unset WEIGHTLIFT_CACHE_DIR WEIGHTLIFT_OFFLINE WEIGHTLIFT_CACHE_MAX_BYTES WEIGHTLIFT_CACHE_FILL \
	WEIGHTLIFT_CACHE_DIRECT
export WEIGHTLIFT_HTTP_STALL_TIMEOUT=10 WEIGHTLIFT_HTTP_CONNECT_TIMEOUT=5
C=$T/cache
WL() { $TO "$WEIGHTLIFT" "$@"; }

sha_lines() { awk 'length($1) == 64 && NF == 2 { print $1, $2 }' "$1" | sort; }
# same_digests URI LOCAL [options]: verify of URI (with options) gives LOCAL's digests.
same_digests() {
	local uri=$1 local=$2
	shift 2
	expect_rc 0 $TO "$WEIGHTLIFT" verify "$@" "$uri" || return
	sha_lines "$OUT" >"$T/a"
	"$WEIGHTLIFT" verify "$local" >"$T/local" 2>&1
	sha_lines "$T/local" >"$T/b"
	NCHECK=$((NCHECK + 1))
	[ -s "$T/a" ] && cmp -s "$T/a" "$T/b" || fail "digests of $uri differ from $local"
}
# entries: the number of complete entries in $C.
entries() { ls "$C"/*.json 2>/dev/null | wc -l; }
# check NAME COND: one named check of a shell condition.
check() {
	NCHECK=$((NCHECK + 1))
	eval "$2" || fail "$1"
}
# requests PATH: GET lines for PATH in nginx's log since the last mark.
mark() { MARK=$(wc -l <"$NGINX_PFX/access.log"); }
requests() { tail -n +$((MARK + 1)) "$NGINX_PFX/access.log" | grep -c " GET $1 " || true; }
# entry_of URI: the cached file of URI (from cache ls --json), "" when none.
entry_of() {
	"$WEIGHTLIFT" cache ls --json --cache-dir "$C" |
		python3 -c 'import json,sys; u=sys.argv[1]; print(next((e["path"] for e in json.load(sys.stdin)["entries"] if e["uri"] == u), ""))' "$1"
}

# --- cold, then warm ----------------------------------------------------------------------
mark
same_digests "$URL/big.safetensors" "$D/big.safetensors" --cache-dir "$C"
p=$(entry_of "$URL/big.safetensors")
check "an entry for big.safetensors" '[ -n "$p" ] && cmp -s "$p" "$D/big.safetensors"'
check "no temporary file left" '[ -z "$(ls "$C" | grep -E "\.part|\.tmp")" ]'
mark
expect_rc 0 WL load --json --cache-dir "$C" "$URL/big.safetensors"
pycheck 'assert j["strategy"] != "cache", j["strategy"]'
check "a warm load asks one validation request ($(requests /big.safetensors))" \
	'[ "$(requests /big.safetensors)" = 1 ]'
# The fills above wrote O_DIRECT (the whole pages of each read, through a bounce buffer when
# the destination is not at the file's offset modulo the page size; the partial pages at the
# ends buffered); WEIGHTLIFT_CACHE_DIRECT=0 writes everything through the page cache.
WEIGHTLIFT_CACHE_DIRECT=0 same_digests "$URL/big.safetensors" "$D/big.safetensors" \
	--cache-dir "$T/cache-buffered"
check "a buffered fill holds the same bytes" \
	'cmp -s "$(C=$T/cache-buffered entry_of "$URL/big.safetensors")" "$D/big.safetensors"'
rm -rf "$T/cache-buffered"
# The same for every command and a sharded set (the index is cached too).
same_digests "$URL/sharded/model.safetensors.index.json" "$D/sharded/model.safetensors.index.json" \
	--cache-dir "$C"
check "sharded set: index and shards cached" '[ "$(entries)" = 4 ]'
expect_rc 0 WL inspect --cache-dir "$C" "$URL/sharded/model.safetensors.index.json"

# --- offline ------------------------------------------------------------------------------
mark
same_digests "$URL/sharded/model.safetensors.index.json" "$D/sharded/model.safetensors.index.json" \
	--cache-dir "$C" --offline
check "offline asks nothing" '[ "$(requests "/sharded/.*")" = 0 ]'
WEIGHTLIFT_OFFLINE=1 WEIGHTLIFT_CACHE_DIR=$C expect_rc 0 WL load -q "$URL/big.safetensors"
expect_rc 3 WL load --cache-dir "$C" --offline "$URL/small.safetensors"
grep_err "offline mode (WEIGHTLIFT_OFFLINE) and the object is not in the cache"
expect_rc 3 WL load --offline "$URL/small.safetensors"
grep_err "offline mode (WEIGHTLIFT_OFFLINE) needs a cache directory"

# --- knobs are range-checked ----------------------------------------------------------------
WEIGHTLIFT_CACHE_MAX_BYTES=lots expect_rc 2 WL load --cache-dir "$C" "$URL/small.safetensors"
grep_err "WEIGHTLIFT_CACHE_MAX_BYTES"
WEIGHTLIFT_CACHE_MAX_BYTES=1073741825G expect_rc 2 WL load --cache-dir "$C" "$URL/small.safetensors"
grep_err "out of range"
WEIGHTLIFT_CACHE_FILL=most expect_rc 2 WL load --cache-dir "$C" "$URL/small.safetensors"
grep_err "WEIGHTLIFT_CACHE_FILL"
WEIGHTLIFT_CACHE_DIRECT=yes expect_rc 2 WL load --cache-dir "$C" "$URL/small.safetensors"
grep_err "WEIGHTLIFT_CACHE_DIRECT must be 0 or 1"

# --- the object changes on the server: a new ETag drops the entry -------------------------
cp "$D/small.safetensors" "$D/changing.safetensors"
same_digests "$URL/changing.safetensors" "$D/changing.safetensors" --cache-dir "$C"
e1=$(entry_of "$URL/changing.safetensors")
sleep 1.1 # a new mtime, so a new ETag
cp "$D/nometa.safetensors" "$D/changing.safetensors"
same_digests "$URL/changing.safetensors" "$D/nometa.safetensors" --cache-dir "$C" -v
grep_err "changed on the server"
check "the new entry holds the new bytes" 'cmp -s "$(entry_of "$URL/changing.safetensors")" "$D/nometa.safetensors"'

# --- partial loads ----------------------------------------------------------------------------
rm -rf "$C"
name=$(python3 -c 'import json,sys; print(sorted(k for k in json.load(open(sys.argv[1]))["big.safetensors"]["tensors"])[0])' "$D/expected.json" 2>/dev/null ||
	"$WEIGHTLIFT" inspect --json "$D/big.safetensors" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tensors"][0]["name"])')
expect_rc 0 WL load -v --cache-dir "$C" --names "$name" "$URL/big.safetensors"
grep_err "not cached (a partial load stores nothing"
check "a partial load stores nothing" '[ "$(entries)" = 0 ] && [ -z "$(ls "$C" | grep -E "\.part|\.data")" ]'
expect_rc 0 WL load --cache-dir "$C" --cache-fill full --names "$name" "$URL/big.safetensors"
check "--cache-fill full caches the whole object" 'cmp -s "$(entry_of "$URL/big.safetensors")" "$D/big.safetensors"'
# A warm partial load reads the cached file.
expect_rc 0 WL load --json --cache-dir "$C" --names "$name" "$URL/big.safetensors"
pycheck 'assert j["strategy"] != "cache", j["strategy"]'

# --- to a GPU (the fake driver): the staged sink's buffers are written through before reuse
if [ -n "${WLIFT_FAKECUDA:-}" ] && [ -f "$WLIFT_FAKECUDA" ]; then
	rm -rf "$C"
	WEIGHTLIFT_CUDA_LIBRARY=$WLIFT_FAKECUDA WEIGHTLIFT_CUDA_RING_BYTES=4M expect_rc 0 \
		WL load -q --device cuda:0 --cache-dir "$C" "$URL/big.safetensors"
	check "a GPU load fills the entry" 'cmp -s "$(entry_of "$URL/big.safetensors")" "$D/big.safetensors"'
	WEIGHTLIFT_CUDA_LIBRARY=$WLIFT_FAKECUDA expect_rc 0 \
		WL load -q --device cuda:0 --cache-dir "$C" "$URL/big.safetensors"
fi

# --- failed loads leave no partial file -----------------------------------------------------
# (An object read whole is cached whatever it holds: a malformed file then fails the same
# way from the cache.)
rm -rf "$C"
expect_rc 3 WL load --cache-dir "$C" "$URL/missing.safetensors"
expect_rc 3 WL load --cache-dir "$C" "$URL/broken/small.safetensors"
expect_rc 3 WL load --cache-dir "$C" "$URL/norange/big.safetensors"
check "failed loads leave nothing" '[ -z "$(ls "$C" 2>/dev/null | grep -v "\.lock$")" ]'
expect_rc 1 WL load --cache-dir "$C" "$URL/truncated_data.safetensors"
expect_rc 1 WL load --cache-dir "$C" "$URL/truncated_data.safetensors"
check "no temporary file left" '[ -z "$(ls "$C" | grep -E "\.part|\.tmp")" ]'

# --- SIGKILL mid-stream ---------------------------------------------------------------------
rm -rf "$C"
"$WEIGHTLIFT" load -q --cache-dir "$C" "$URL/slow/big.safetensors" >/dev/null 2>&1 &
kp=$!
BGPIDS="$BGPIDS $kp"
for _ in $(seq 100); do [ -s "$C"/*.part ] 2>/dev/null && break; sleep 0.05; done
sleep 0.5
kill -9 "$kp" 2>/dev/null
wait "$kp" 2>/dev/null
check "the killed load left its temporary file" '[ -n "$(ls "$C" | grep "\.part$")" ]'
check "and no entry" '[ "$(entries)" = 0 ] && [ -z "$(ls "$C" | grep "\.data$")" ]'
same_digests "$URL/slow/big.safetensors" "$D/big.safetensors" --cache-dir "$C"
check "the next load completes the entry and removes the stale file" \
	'[ "$(entries)" = 1 ] && [ -z "$(ls "$C" | grep "\.part$")" ] && cmp -s "$(entry_of "$URL/slow/big.safetensors")" "$D/big.safetensors"'

# --- several processes at once --------------------------------------------------------------
rm -rf "$C"
pids=
for i in 1 2 3; do
	$TO "$WEIGHTLIFT" verify -v --cache-dir "$C" "$URL/slow/big.safetensors" >"$T/conc$i" 2>"$T/conc$i.err" &
	pids="$pids $!"
done
"$WEIGHTLIFT" verify "$D/big.safetensors" >"$T/local" 2>&1
sha_lines "$T/local" >"$T/b"
for i in 1 2 3; do
	set -- $pids
	eval "p=\${$i}"
	NCHECK=$((NCHECK + 1))
	wait "$p" || fail "concurrent load $i failed: $(head -c 300 "$T/conc$i.err")"
	sha_lines "$T/conc$i" >"$T/a"
	cmp -s "$T/a" "$T/b" || fail "concurrent load $i: digests differ"
done
check "one intact entry" '[ "$(entries)" = 1 ] && cmp -s "$(entry_of "$URL/slow/big.safetensors")" "$D/big.safetensors"'
check "the others streamed without writing" 'grep -qF "another process is filling" "$T"/conc*.err'
check "no temporary file left" '[ -z "$(ls "$C" | grep -E "\.part|\.tmp")" ]'

# --- size limit: least recently used first ---------------------------------------------------
rm -rf "$C"
for i in 1 2 3; do cp "$D/big.safetensors" "$D/lru$i.safetensors"; done
export WEIGHTLIFT_CACHE_MAX_BYTES=80M # two 32 MiB entries fit, three do not
expect_rc 0 WL load -q --cache-dir "$C" "$URL/lru1.safetensors"
expect_rc 0 WL load -q --cache-dir "$C" "$URL/lru2.safetensors"
expect_rc 0 WL load -q --cache-dir "$C" "$URL/lru1.safetensors" # lru1 now used last
expect_rc 0 WL load -q -v --cache-dir "$C" "$URL/lru3.safetensors"
grep_err "evicted"
check "lru2 evicted, lru1 and lru3 kept" \
	'[ -z "$(entry_of "$URL/lru2.safetensors")" ] && [ -n "$(entry_of "$URL/lru1.safetensors")" ] && [ -n "$(entry_of "$URL/lru3.safetensors")" ]'
WEIGHTLIFT_CACHE_MAX_BYTES=1M expect_rc 0 WL load -q -v --cache-dir "$C" "$URL/big.safetensors"
grep_err "more than the cache's limit"
unset WEIGHTLIFT_CACHE_MAX_BYTES

# --- a cache write fails (file size limit, as a full disk would): warn, load, leave nothing --
rm -rf "$C"
(
	trap '' XFSZ
	ulimit -f 1024
	exec $TO "$WEIGHTLIFT" verify --cache-dir "$C" "$URL/big.safetensors"
) >"$OUT" 2>"$ERR"
RC=$?
check "the load succeeds when the cache write fails (rc $RC)" '[ "$RC" = 0 ]'
grep_err "the object is not cached; the load goes on"
check "nothing left behind" '[ "$(entries)" = 0 ] && [ -z "$(ls "$C" | grep -E "\.part|\.data")" ]'

# A full disk: a 1 MiB tmpfs in a mount namespace of the test's own (root only; skipped
# where unshare or mount is refused).
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null &&
	unshare -m true 2>/dev/null; then
	mkdir -p "$T/tiny"
	run $TO unshare -m sh -c 'mount -t tmpfs -o size=1m tmpfs "$1" && shift && exec "$@"' sh \
		"$T/tiny" "$WEIGHTLIFT" verify --cache-dir "$T/tiny/c" "$URL/big.safetensors"
	if grep -q "mount:" "$ERR"; then
		echo "note: tmpfs mount refused here: the full-disk check is skipped"
	else
		check "a full disk: the load succeeds (rc $RC)" '[ "$RC" = 0 ]'
		grep_err "the object is not cached; the load goes on"
	fi
fi

# --- cp ---------------------------------------------------------------------------------------
rm -rf "$C"
expect_rc 0 WL cp --json --cache-dir "$C" "$URL/sharded/model.safetensors.index.json" "$T/cp"
pycheck 'assert len(j["files"]) == 3 and j["bytes"] > 0 and j["gb_per_s"] >= 0, j'
for f in model.safetensors.index.json model-00001-of-00002.safetensors model-00002-of-00002.safetensors; do
	check "cp wrote $f" 'cmp -s "$T/cp/$f" "$D/sharded/$f"'
done
expect_rc 0 WL cp "$URL/big.safetensors" "$T/cp"
grep_out "GB/s"
check "cp big" 'cmp -s "$T/cp/big.safetensors" "$D/big.safetensors" && [ -z "$(ls -a "$T/cp" | grep part)" ]'
# Small batches: the file is written batch by batch (memory holds one batch), bytes equal.
expect_rc 0 WL cp --batch-size 4K "$URL/big.safetensors" "$T/cp-batched"
check "cp in 4 KiB batches" 'cmp -s "$T/cp-batched/big.safetensors" "$D/big.safetensors"'
expect_rc 0 WL cp --batch-size 4K "$URL/sharded/model.safetensors.index.json" "$T/cp-batched"
check "cp of a sharded set in 4 KiB batches" 'cmp -s "$T/cp-batched/model-00002-of-00002.safetensors" "$D/sharded/model-00002-of-00002.safetensors"'
expect_rc 2 WL cp --batch-size 0 "$URL/big.safetensors" "$T/cp-batched"
grep_err "invalid --batch-size '0'"
expect_rc 3 WL cp "$URL/missing.safetensors" "$T/cp"
check "a failed cp writes nothing" '[ ! -e "$T/cp/missing.safetensors" ] && [ -z "$(ls -a "$T/cp" | grep part)" ]'

# --- cache ls / clear ---------------------------------------------------------------------------
expect_rc 0 WL cache ls --cache-dir "$C"
grep_out "3 entries"
expect_rc 0 WL cache clear --json --cache-dir "$C"
pycheck 'assert j["removed"] == 3, j'
check "cleared" '[ "$(entries)" = 0 ]'
expect_rc 3 WL cache ls
grep_err "no cache directory"

# --- the server cannot be reached: the cached copy, with a warning ------------------------------
same_digests "$URL/big.safetensors" "$D/big.safetensors" --cache-dir "$C"
nginx_stop
same_digests "$URL/big.safetensors" "$D/big.safetensors" --cache-dir "$C"
grep_err "the server cannot be reached"
grep_err "serving the cached copy"
expect_rc 3 WL load --cache-dir "$C" "$URL/small.safetensors"
finish
