#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The HTTP source end to end: nginx on 127.0.0.1 (a free port, a prefix of its own, stopped
# on exit) serves the CLI fixtures; the CLI and the C API (http_check) load single files and
# a sharded set by URL, and must give the bytes of the local files. Servers that ignore
# Range, 404/403/401/500, redirects (the token stays on its host), hf:// through HF_ENDPOINT,
# and a misbehaving server of ours (short bodies, wrong Content-Range, changing ETag or
# size) must each fail clearly, with the CLI's exit codes (I/O 3, auth 4). Skips (77)
# without nginx. Every command is bounded by timeout.
. "$(dirname "$0")/../cli/lib.sh"
. "$(dirname "$0")/nginx.sh"
: "${HTTP_CHECK:?HTTP_CHECK must name the http_check binary}"
BAD_PID=
cleanup() {
	nginx_stop
	[ -n "$BAD_PID" ] && kill "$BAD_PID" 2>/dev/null && wait "$BAD_PID" 2>/dev/null
	chmod -R u+rwX "$T" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
fixtures --big 8
# A certificate of the test's own for HTTPS (skipped without openssl).
if command -v openssl >/dev/null &&
	openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
		-addext "subjectAltName=IP:127.0.0.1" -keyout "$T/key.pem" -out "$T/cert.pem" \
		>/dev/null 2>&1; then
	NGINX_CERT=$T/cert.pem NGINX_KEY=$T/key.pem
fi
nginx_start "$D" "$T"
TO="timeout 60"
unset HF_TOKEN HUGGING_FACE_HUB_TOKEN WEIGHTLIFT_HTTP_TOKEN HF_ENDPOINT WEIGHTLIFT_CA_BUNDLE CURL_CA_BUNDLE \
	SSL_CERT_FILE
# Fail fast rather than hang on a broken server.
export WEIGHTLIFT_HTTP_STALL_TIMEOUT=10 WEIGHTLIFT_HTTP_CONNECT_TIMEOUT=5
# Failed reads are retried (tests/http/test_faults.sh checks how): quickly here.
export WEIGHTLIFT_HTTP_RETRY_BASE_MS=10 WEIGHTLIFT_HTTP_RETRY_MAX_MS=100

# sha_lines FILE: the "<sha256> <name>" lines of a verify output, sorted.
sha_lines() { awk 'length($1) == 64 && NF == 2 { print $1, $2 }' "$1" | sort; }
# same_digests URI LOCAL: verify of URI prints the digests of LOCAL's verify.
same_digests() {
	expect_rc 0 $TO "$WEIGHTLIFT" verify "$1" || return
	sha_lines "$OUT" >"$T/a"
	"$WEIGHTLIFT" verify "$2" >"$T/local" 2>&1
	sha_lines "$T/local" >"$T/b"
	NCHECK=$((NCHECK + 1))
	[ -s "$T/a" ] && cmp -s "$T/a" "$T/b" || fail "digests of $1 differ from $2"
}
log_lines() { cat "$NGINX_PFX/access.log"; }

# --- single files and a sharded set: the local files' digests -----------------------------
same_digests "$URL/small.safetensors" "$D/small.safetensors"
same_digests "$URL/nometa.safetensors" "$D/nometa.safetensors"
same_digests "$URL/big.safetensors" "$D/big.safetensors"
same_digests "$URL/sharded/model.safetensors.index.json" "$D/sharded/model.safetensors.index.json"
# The tensors' memory faulted in by the readers (0) or before the reads (1) instead of by the
# sink's thread ahead of them (the default for remote loads): the same bytes.
for p in 0 1; do
	WEIGHTLIFT_POPULATE=$p same_digests "$URL/big.safetensors" "$D/big.safetensors"
done
expect_rc 0 $TO "$WEIGHTLIFT" inspect --json "$URL/sharded/model.safetensors.index.json"
pycheck '
assert [f["path"].rsplit("/", 1)[1] for f in j["files"]] == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"], j["files"]
assert all(f["path"].startswith("http://127.0.0.1:") for f in j["files"]), j["files"]
'
# load --touch: the XOR of every tensor byte, with ranges smaller than tensors and larger.
for chunk in 4k 64M; do
	expect_rc 0 $TO "$WEIGHTLIFT" load --json --touch --chunk-size $chunk "$URL/small.safetensors"
	pycheck '
assert j["strategy"] == "http", j
assert j["touch_xor"] == e["small.safetensors"]["xor"], (j["touch_xor"], e["small.safetensors"]["xor"])
'
done
# A subset reads only its bytes: no full download.
: >"$NGINX_PFX/access.log"
expect_rc 0 $TO "$WEIGHTLIFT" load --json --names big.01 "$URL/big.safetensors"
NCHECK=$((NCHECK + 1))
sent=$(awk '{ s += $5 } END { print s + 0 }' "$NGINX_PFX/access.log")
[ "$sent" -lt $((2 * 1024 * 1024)) ] || fail "a one-tensor load fetched $sent bytes"

# --- the C API: every byte, many chunk sizes, threads, requests in flight, rows -------------
for req in 1 4 16; do
	expect_rc 0 $TO "$HTTP_CHECK" same "$URL/big.safetensors" "$D/big.safetensors" $req
done
expect_rc 0 $TO "$HTTP_CHECK" same "$URL/sharded/model.safetensors.index.json" \
	"$D/sharded/model.safetensors.index.json" 4
expect_rc 0 $TO "$HTTP_CHECK" same "$URL/small.safetensors" "$D/small.safetensors"

# --- servers and answers that must fail clearly --------------------------------------------
# A server that ignores Range: refused (a file smaller than the first request is whole).
expect_rc 3 $TO "$WEIGHTLIFT" inspect "$URL/norange/big.safetensors"
grep_err "does not support range requests"
same_digests "$URL/norange/small.safetensors" "$D/small.safetensors"
expect_rc 0 $TO "$HTTP_CHECK" fail "$URL/norange/big.safetensors" WLIFT_EHTTP
# Status codes: 404 is I/O (exit 3), 401/403 auth (exit 4), 500 I/O.
expect_rc 3 $TO "$WEIGHTLIFT" inspect "$URL/nothere.safetensors"
grep_err "HTTP 404 Not Found"
expect_rc 0 $TO "$HTTP_CHECK" fail "$URL/nothere.safetensors" ENOENT
expect_rc 4 $TO "$WEIGHTLIFT" verify "$URL/forbidden/big.safetensors"
grep_err "HTTP 403 Forbidden"
grep_err "no token was sent"
expect_rc 4 $TO "$WEIGHTLIFT" inspect "$URL/unauthorized/big.safetensors"
grep_err "HTTP 401"
expect_rc 3 $TO "$WEIGHTLIFT" inspect "$URL/broken/big.safetensors"
grep_err "HTTP 500"
expect_rc 0 $TO "$HTTP_CHECK" fail "$URL/broken/big.safetensors" WLIFT_EHTTP
# An index naming a shard the server does not have names the shard.
mkdir -p "$D/badindex"
cp "$D/sharded/model-00001-of-00002.safetensors" "$D/badindex/"
cp "$D/sharded/model.safetensors.index.json" "$D/badindex/"
expect_rc 3 $TO "$WEIGHTLIFT" inspect "$URL/badindex/model.safetensors.index.json"
grep_err "$URL/badindex/model-00002-of-00002.safetensors: HTTP 404"
# An object shorter than its header says; an HTML page where a checkpoint was expected.
expect_rc 1 $TO "$WEIGHTLIFT" inspect "$URL/truncated_data.safetensors"
expect_rc 1 $TO "$WEIGHTLIFT" inspect "$URL/html.safetensors"
grep_err "HTML"
# Nothing listening; a URL with credentials in it; a URL ending in '/'.
dead=$(free_port)
expect_rc 3 $TO "$WEIGHTLIFT" inspect "http://127.0.0.1:$dead/x.safetensors"
grep_err "http://127.0.0.1:$dead/x.safetensors"
expect_rc 1 $TO "$WEIGHTLIFT" inspect "http://user:pw@127.0.0.1:$PORT/small.safetensors"
grep_err "credentials in a URL"
expect_rc 1 $TO "$WEIGHTLIFT" inspect "$URL/sharded/"
grep_err "cannot be listed"
# Redirects: followed; a loop stops.
same_digests "$URL/same/big.safetensors" "$D/big.safetensors"
expect_rc 3 $TO "$WEIGHTLIFT" inspect "$URL/loop/big.safetensors"
grep_err "redirect"

# --- tokens: sent where they belong, never to another host after a redirect ----------------
expect_rc 4 $TO "$WEIGHTLIFT" inspect "$URL/secret/big.safetensors"
WEIGHTLIFT_HTTP_TOKEN=wrong expect_rc 4 $TO "$WEIGHTLIFT" inspect "$URL/secret/big.safetensors"
grep_err "WEIGHTLIFT_HTTP_TOKEN"
export WEIGHTLIFT_HTTP_TOKEN=sekrit
same_digests "$URL/secret/big.safetensors" "$D/big.safetensors"
: >"$NGINX_PFX/access.log"
same_digests "$URL/redir/big.safetensors" "$D/big.safetensors"
NCHECK=$((NCHECK + 1))
grep -q '^127.0.0.1 GET /redir/big.safetensors 302 .*"Bearer sekrit"' "$NGINX_PFX/access.log" ||
	fail "the token was not sent to the host asked: $(log_lines)"
NCHECK=$((NCHECK + 1))
! grep '^localhost ' "$NGINX_PFX/access.log" | grep -q sekrit ||
	fail "the token went to another host after a redirect: $(log_lines)"
NCHECK=$((NCHECK + 1))
grep -q '^localhost GET /big.safetensors 206 ' "$NGINX_PFX/access.log" ||
	fail "no ranged reads at the redirect target: $(log_lines)"
unset WEIGHTLIFT_HTTP_TOKEN

# --- hf:// through HF_ENDPOINT (never the real hub); HF_TOKEN goes to the endpoint only -----
export HF_ENDPOINT=$URL/hf HF_TOKEN=hf_test
: >"$NGINX_PFX/access.log"
same_digests "hf://org/model/big.safetensors" "$D/big.safetensors"
same_digests "hf://org/model@v1/sharded/model.safetensors.index.json" "$D/sharded/model.safetensors.index.json"
NCHECK=$((NCHECK + 1))
grep -q '^127.0.0.1 GET /hf/org/model/resolve/main/big.safetensors 302 .*"Bearer hf_test"' \
	"$NGINX_PFX/access.log" || fail "hf:// did not ask the endpoint with HF_TOKEN: $(log_lines)"
NCHECK=$((NCHECK + 1))
! grep '^localhost ' "$NGINX_PFX/access.log" | grep -q hf_test ||
	fail "HF_TOKEN went to the storage host: $(log_lines)"
NCHECK=$((NCHECK + 1))
grep -q '/hf/org/model/resolve/v1/sharded/model-00002-of-00002.safetensors' \
	"$NGINX_PFX/access.log" || fail "shards of an hf:// index: $(log_lines)"
: >"$NGINX_PFX/access.log"
same_digests "http://localhost:$PORT/small.safetensors" "$D/small.safetensors"
NCHECK=$((NCHECK + 1))
! grep -q hf_test "$NGINX_PFX/access.log" || fail "HF_TOKEN went to another server: $(log_lines)"
expect_rc 3 $TO "$WEIGHTLIFT" inspect "hf://org/other/x.safetensors"
grep_err "hf://org/other/x.safetensors"
grep_err "HTTP 404"
expect_rc 1 $TO "$WEIGHTLIFT" inspect "hf://org/model/../x.safetensors"
unset HF_ENDPOINT HF_TOKEN

# --- HTTPS: the certificate must verify (curl's text when it does not), HTTP/2 when offered --
if [ -n "${NGINX_CERT:-}" ]; then
	expect_rc 3 $TO "$WEIGHTLIFT" inspect "$SURL/small.safetensors"
	grep_err "certificate"
	: >"$NGINX_PFX/access.log"
	WEIGHTLIFT_CA_BUNDLE=$NGINX_CERT same_digests "$SURL/big.safetensors" "$D/big.safetensors"
	SSL_CERT_FILE=$NGINX_CERT same_digests "$SURL/sharded/model.safetensors.index.json" \
		"$D/sharded/model.safetensors.index.json"
	NCHECK=$((NCHECK + 1))
	grep -q ' 206 .* HTTP/2.0$' "$NGINX_PFX/access.log" ||
		fail "HTTPS reads did not use HTTP/2: $(log_lines)"
	WEIGHTLIFT_CA_BUNDLE=$NGINX_CERT expect_rc 0 $TO "$HTTP_CHECK" same "$SURL/big.safetensors" \
		"$D/big.safetensors" 8
else
	echo "note: no openssl: HTTPS not tested"
fi

# --- a misbehaving server: every fault fails the load, naming the URI ----------------------
python3 "$(dirname "$0")/badserver.py" "$D" "$T/badport" &
BAD_PID=$!
for _ in $(seq 50); do [ -s "$T/badport" ] && break; sleep 0.1; done
BAD=http://127.0.0.1:$(cat "$T/badport")
same_digests "$BAD/ok/big.safetensors" "$D/big.safetensors"
expect_rc 3 $TO "$WEIGHTLIFT" verify "$BAD/short/big.safetensors"
expect_rc 0 $TO "$HTTP_CHECK" fail "$BAD/short/big.safetensors" WLIFT_ENET load
grep_out "http.short"
expect_rc 3 $TO "$WEIGHTLIFT" verify "$BAD/wrongrange/big.safetensors"
grep_err "Content-Range"
expect_rc 0 $TO "$HTTP_CHECK" fail "$BAD/wrongrange/big.safetensors" WLIFT_EHTTP load
expect_rc 0 $TO "$HTTP_CHECK" fail "$BAD/etag/big.safetensors" WLIFT_ECHANGED load
grep_out "changed"
expect_rc 0 $TO "$HTTP_CHECK" fail "$BAD/grow/big.safetensors" WLIFT_ECHANGED load

echo "$((NCHECK - NFAIL)) passed, $NFAIL failed"
[ "$NFAIL" -eq 0 ]
