#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gs:// end to end. tests/gcs/gcsfake.py starts the real gcp-storage-emulator on 127.0.0.1 (a
# free port, in memory) holding the CLI fixtures, and in front of it a server of ours that adds
# what the emulator lacks as GCS does it (bearer-token checks, ifGenerationMatch, page
# tokens), an OAuth token endpoint that checks a service account's RS256 JWT with its public
# key (the key pair made here with openssl), and a GCE metadata server. Against the emulator
# itself: listing a prefix, ranged reads (verify/load byte-equal to the local files; the C API
# through http_check), odd object names. Through the front: the token flows (JWT, refresh
# token, metadata server, env token), a subset fetching only its ranges, auth failures (exit
# 4, naming the credential), other error answers (the JSON message, never an HTML body),
# pagination over 1,200 names, the object replaced mid-load (412: WLIFT_ECHANGED).
# Skips (77) without a Python that has gcp_storage_emulator (`make venv`) or without openssl.
# Every command is bounded by timeout.
. "$(dirname "$0")/../cli/lib.sh"
: "${HTTP_CHECK:?HTTP_CHECK must name the http_check binary}"
PY=${WLIFT_PYTHON:-}
for p in "$PY" "${WLIFT_SRC:-$HERE/../..}/.venv/bin/python" python3; do
	[ -n "$p" ] && "$p" -c 'import gcp_storage_emulator' 2>/dev/null && { PY=$p; break; }
	PY=
done
[ -n "$PY" ] || { echo "SKIP: gcp-storage-emulator is not installed (pip install gcp-storage-emulator, or make venv)"; exit 77; }
command -v openssl >/dev/null || { echo "SKIP: openssl not found"; exit 77; }
FAKE_PID=
cleanup() {
	[ -n "$FAKE_PID" ] && kill "$FAKE_PID" 2>/dev/null && wait "$FAKE_PID" 2>/dev/null
	chmod -R u+rwX "$T" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
fixtures --big 8
# Object names with a space, Unicode and a subdirectory; a prefix of 1,200 names whose only
# checkpoint file sorts last (listed only when every page is read).
mkdir -p "$D/odd dir" "$D/many"
cp "$D/small.safetensors" "$D/odd dir/ü b+c%.safetensors"
cp "$D/small.safetensors" "$D/many/zz.safetensors"
for i in $(seq -w 0 1199); do echo "$i" >"$D/many/k$i"; done
# The emulator fails uploads of 0 bytes; the fixtures' empty file is not served.
rm -f "$D/empty.safetensors"

timeout 280 "$PY" "$HERE/../gcs/gcsfake.py" --dir "$D" --portfile "$T/ports" >"$T/fake.log" 2>&1 &
FAKE_PID=$!
for _ in $(seq 1200); do [ -s "$T/ports" ] && break; sleep 0.1; done
[ -s "$T/ports" ] || { echo "FAIL: the emulator did not start: $(tail -5 "$T/fake.log")"; exit 1; }
read -r EMU FRONT <"$T/ports"
B=gs://wl-test
TO="timeout 60"
ctl() { curl -s -m 10 -X POST "http://127.0.0.1:$FRONT/_ctl" -d "$1" >/dev/null; }
stat() { curl -s -m 10 "http://127.0.0.1:$FRONT/_stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
unset WEIGHTLIFT_GCS_TOKEN GOOGLE_OAUTH_ACCESS_TOKEN GOOGLE_APPLICATION_CREDENTIALS GCE_METADATA_HOST \
	GCE_METADATA_IP WEIGHTLIFT_GCS_ANONYMOUS CLOUDSDK_CONFIG
export HOME=$T
export WEIGHTLIFT_HTTP_STALL_TIMEOUT=10 WEIGHTLIFT_HTTP_CONNECT_TIMEOUT=5
# Quick retries (500s are retried: the injected ones below answer every attempt).
export WEIGHTLIFT_HTTP_RETRIES=2 WEIGHTLIFT_HTTP_RETRY_BASE_MS=10

sha_lines() { awk 'length($1) == 64 && NF == 2 { print $1, $2 }' "$1" | sort; }
same_digests() {
	expect_rc 0 $TO "$WEIGHTLIFT" verify "$1" || return
	sha_lines "$OUT" >"$T/a"
	"$WEIGHTLIFT" verify "$2" >"$T/local" 2>&1
	sha_lines "$T/local" >"$T/b"
	NCHECK=$((NCHECK + 1))
	[ -s "$T/a" ] && cmp -s "$T/a" "$T/b" || fail "digests of $1 differ from $2"
}

# --- the emulator itself: anonymous requests, listing, ranged reads -------------------------
export STORAGE_EMULATOR_HOST=127.0.0.1:$EMU
same_digests "$B/small.safetensors" "$D/small.safetensors"
same_digests "$B/nometa.safetensors" "$D/nometa.safetensors"
same_digests "$B/big.safetensors" "$D/big.safetensors"
same_digests "$B/sharded/model.safetensors.index.json" "$D/sharded/model.safetensors.index.json"
same_digests "$B/sharded/" "$D/sharded"
same_digests "$B/sharded" "$D/sharded" # a last segment without .safetensors/.json: a prefix
same_digests "$B/odd dir/ü b+c%.safetensors" "$D/odd dir/ü b+c%.safetensors"
expect_rc 0 $TO "$WEIGHTLIFT" inspect --json "$B/sharded/"
pycheck '
assert [f["path"] for f in j["files"]] == ["gs://wl-test/sharded/model-00001-of-00002.safetensors", "gs://wl-test/sharded/model-00002-of-00002.safetensors"], j["files"]
'
for chunk in 4k 64M; do
	expect_rc 0 $TO "$WEIGHTLIFT" load --json --touch --chunk-size $chunk "$B/small.safetensors"
	pycheck '
assert j["strategy"] == "http", j
assert j["touch_xor"] == e["small.safetensors"]["xor"], (j["touch_xor"], e["small.safetensors"]["xor"])
'
done
expect_rc 0 $TO "$HTTP_CHECK" same "$B/small.safetensors" "$D/small.safetensors" 4
expect_rc 0 $TO "$HTTP_CHECK" same "$B/sharded/" "$D/sharded/model.safetensors.index.json" 4
expect_rc 3 $TO "$WEIGHTLIFT" verify "$B/missing.safetensors"
grep_err "$B/missing.safetensors: HTTP 404 Not Found"
expect_rc 3 $TO "$WEIGHTLIFT" verify gs://no-such-bucket/dir/
grep_err "HTTP 404 Not Found (listing the prefix)"
# A prefix with no checkpoint is bad input.
expect_rc 1 $TO "$WEIGHTLIFT" inspect "$B/nothing-here/"
grep_err "no *.safetensors files or index"
# A truncated object and an HTML page are named as such (the format's checks, as for files).
expect_rc 1 $TO "$WEIGHTLIFT" verify "$B/truncated_data.safetensors"
expect_rc 1 $TO "$WEIGHTLIFT" inspect "$B/html.safetensors"

# --- through the front: GCS's own rules ---------------------------------------------------
export STORAGE_EMULATOR_HOST=127.0.0.1:$FRONT
# A subset fetches only its ranges.
ctl '{"reset_stats": true}'
expect_rc 0 $TO "$WEIGHTLIFT" load --json --names big.01 "$B/big.safetensors"
NCHECK=$((NCHECK + 1))
sent=$(stat media_bytes)
[ "$sent" -lt $((2 * 1024 * 1024)) ] || fail "a one-tensor load fetched $sent bytes"
# Pagination: 1,201 names in pages of 100 (the checkpoint file is on the last page).
ctl '{"page_size": 100, "reset_stats": true}'
same_digests "$B/many/" "$D/many/zz.safetensors"
NCHECK=$((NCHECK + 1))
[ "$(stat lists)" -ge 13 ] || fail "the listing read $(stat lists) pages, want 13"
ctl '{"page_size": 1}'
same_digests "$B/sharded/" "$D/sharded"
ctl '{"page_size": 0}'

# Keys for the token flows: a service account's (its public half checks the JWT) and another.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/sa.pem" 2>/dev/null &&
	openssl pkey -in "$T/sa.pem" -pubout -out "$T/sa.pub" &&
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/other.pem" 2>/dev/null ||
	{ echo "FAIL: openssl key generation"; exit 1; }
keyfile() { # keyfile OUT PEM [TOKEN_URI]
	python3 - "$@" <<'EOF'
import json, sys
out, pem = sys.argv[1], sys.argv[2]
uri = sys.argv[3] if len(sys.argv) > 3 else None
j = {"type": "service_account", "project_id": "test-project", "private_key_id": "kid-1",
     "private_key": open(pem).read(), "client_email": "loader@test-project.iam.gserviceaccount.com",
     "client_id": "1"}
if uri:
    j["token_uri"] = uri
json.dump(j, open(out, "w"))
EOF
}
TOKEN_URI=http://127.0.0.1:$FRONT/token
keyfile "$T/sa.json" "$T/sa.pem" "$TOKEN_URI"
keyfile "$T/bad.json" "$T/other.pem" "$TOKEN_URI"
printf '{"type": "authorized_user", "client_id": "client-1", "client_secret": "secret-1", "refresh_token": "refresh-1", "token_uri": "%s"}\n' \
	"$TOKEN_URI" >"$T/user.json"
printf '{"type": "authorized_user", "client_id": "client-1", "client_secret": "secret-1", "refresh_token": "revoked", "token_uri": "%s"}\n' \
	"$TOKEN_URI" >"$T/user-bad.json"
ctl "{\"require_auth\": true, \"pubkey\": \"$T/sa.pub\", \"kid\": \"kid-1\", \"static_token\": \"static-tok\", \"reset_stats\": true}"

# No credentials: 401, exit 4, the message says none were found.
expect_rc 4 $TO "$WEIGHTLIFT" verify "$B/small.safetensors"
grep_err "HTTP 401 Unauthorized (object metadata): Invalid Credentials; credentials: no credentials"
expect_rc 4 $TO "$WEIGHTLIFT" verify "$B/sharded/"
grep_err "(listing the prefix): Invalid Credentials"
# The service account: one JWT exchanged, the token on every request (a directory: the
# listing, the index, both shards).
GOOGLE_APPLICATION_CREDENTIALS=$T/sa.json same_digests "$B/sharded/" "$D/sharded"
GOOGLE_APPLICATION_CREDENTIALS=$T/sa.json same_digests "$B/big.safetensors" "$D/big.safetensors"
NCHECK=$((NCHECK + 1))
[ "$(stat tokens)" = 2 ] || fail "$(stat tokens) tokens for two processes, want 2"
# A key the service does not know: the token endpoint's error, exit 4.
GOOGLE_APPLICATION_CREDENTIALS=$T/bad.json expect_rc 4 $TO "$WEIGHTLIFT" verify "$B/small.safetensors"
grep_err "getting an access token from the service account key file $T/bad.json (loader@test-project.iam.gserviceaccount.com, from GOOGLE_APPLICATION_CREDENTIALS): HTTP 400: invalid_grant (Invalid JWT Signature.)"
# A refresh token (gcloud's authorized_user), good and revoked.
GOOGLE_APPLICATION_CREDENTIALS=$T/user.json same_digests "$B/small.safetensors" "$D/small.safetensors"
GOOGLE_APPLICATION_CREDENTIALS=$T/user-bad.json expect_rc 4 $TO "$WEIGHTLIFT" verify "$B/small.safetensors"
grep_err "the user credentials (refresh token) in $T/user-bad.json"
grep_err "invalid_grant (Bad refresh token or client.)"
# A missing key file: exit 4, before any request.
GOOGLE_APPLICATION_CREDENTIALS=$T/none.json expect_rc 4 $TO "$WEIGHTLIFT" verify "$B/small.safetensors"
grep_err "the credentials file $T/none.json (from GOOGLE_APPLICATION_CREDENTIALS) cannot be read"
# Workload identity federation (external_account): the subject token from a file or a URL
# (JSON, with a header), exchanged at the STS, optionally impersonating a service account.
AUD="//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q"
STT="urn:ietf:params:oauth:token-type:jwt"
echo subject-ok >"$T/subject"
echo subject-stale >"$T/subject-bad"
extacct() { # OUT SOURCE_JSON [IMPERSONATION_URL]
	printf '{"type": "external_account", "audience": "%s", "subject_token_type": "%s", "token_url": "http://127.0.0.1:%s/sts", "credential_source": %s%s}\n' \
		"$AUD" "$STT" "$FRONT" "$2" "${3:+, \"service_account_impersonation_url\": \"$3\"}" >"$1"
}
IMP="http://127.0.0.1:$FRONT/impersonate/v1/projects/-/serviceAccounts/loader@test-project.iam.gserviceaccount.com:generateAccessToken"
extacct "$T/ext-file.json" "{\"file\": \"$T/subject\"}"
extacct "$T/ext-url.json" "{\"url\": \"http://127.0.0.1:$FRONT/subject\", \"headers\": {\"Metadata-Flavor\": \"Azure-ish\"}, \"format\": {\"type\": \"json\", \"subject_token_field_name\": \"id_token\"}}" "$IMP"
extacct "$T/ext-bad.json" "{\"file\": \"$T/subject-bad\"}"
extacct "$T/ext-noheader.json" "{\"url\": \"http://127.0.0.1:$FRONT/subject\", \"format\": {\"type\": \"json\", \"subject_token_field_name\": \"id_token\"}}"
extacct "$T/ext-exec.json" '{"executable": {"command": "/bin/true"}}'
s0=$(stat sts)
i0=$(stat impersonations)
GOOGLE_APPLICATION_CREDENTIALS=$T/ext-file.json same_digests "$B/sharded/" "$D/sharded"
GOOGLE_APPLICATION_CREDENTIALS=$T/ext-url.json same_digests "$B/small.safetensors" "$D/small.safetensors"
NCHECK=$((NCHECK + 1))
[ "$(stat sts)" = $((s0 + 2)) ] && [ "$(stat impersonations)" = $((i0 + 1)) ] ||
	fail "STS exchanges $(stat sts) (from $s0), impersonations $(stat impersonations) (from $i0)"
GOOGLE_APPLICATION_CREDENTIALS=$T/ext-bad.json expect_rc 4 $TO "$WEIGHTLIFT" verify "$B/small.safetensors"
grep_err "getting an access token from the external account in $T/ext-bad.json (audience $AUD, subject token from $T/subject-bad, from GOOGLE_APPLICATION_CREDENTIALS): HTTP 400: invalid_grant (The subject token is invalid.)"
GOOGLE_APPLICATION_CREDENTIALS=$T/ext-noheader.json expect_rc 4 $TO "$WEIGHTLIFT" verify "$B/small.safetensors"
grep_err "the subject token URL http://127.0.0.1:$FRONT/subject of the external account in $T/ext-noheader.json"
grep_err "HTTP 403"
GOOGLE_APPLICATION_CREDENTIALS=$T/ext-exec.json expect_rc 4 $TO "$WEIGHTLIFT" verify "$B/small.safetensors"
grep_err "only file and url credential sources are supported"
# The GCE metadata server (Metadata-Flavor: Google), and one that cannot be reached.
GCE_METADATA_HOST=127.0.0.1:$FRONT same_digests "$B/small.safetensors" "$D/small.safetensors"
GCE_METADATA_HOST=127.0.0.1:1 expect_rc 3 $TO "$WEIGHTLIFT" verify "$B/small.safetensors"
grep_err "the GCE metadata server at 127.0.0.1:1 (GCE_METADATA_HOST): the token endpoint cannot be reached"
# A token from the environment, good and refused.
WEIGHTLIFT_GCS_TOKEN=static-tok same_digests "$B/small.safetensors" "$D/small.safetensors"
GOOGLE_OAUTH_ACCESS_TOKEN=stale expect_rc 4 $TO "$WEIGHTLIFT" verify "$B/small.safetensors"
grep_err "Invalid Credentials; credentials: the token from GOOGLE_OAUTH_ACCESS_TOKEN"
# The token endpoint refusing a refresh (expired or revoked credentials).
ctl '{"token_fail": true}'
GOOGLE_APPLICATION_CREDENTIALS=$T/sa.json expect_rc 4 $TO "$WEIGHTLIFT" verify "$B/small.safetensors"
grep_err "HTTP 400: invalid_grant (Token has been expired or revoked.)"
# Credentials revoked mid-load: the reads after it answer 401; the load fails, exit 4, naming
# the credential (a token is never refreshed early because of a 401 on a read: the load stops).
ctl '{"token_fail": false, "revoke_after": 2}'
GOOGLE_APPLICATION_CREDENTIALS=$T/sa.json expect_rc 4 $TO "$WEIGHTLIFT" load --chunk-size 256k "$B/big.safetensors"
grep_err "HTTP 401 Unauthorized"
grep_err "Invalid Credentials; credentials: the service account key file $T/sa.json"
ctl '{"revoke_after": -1, "require_auth": false}'

# --- other error answers: the JSON error's message, never an HTML body --------------------
ctl '{"fail_status": 403, "fail_message": "loader@test-project.iam.gserviceaccount.com does not have storage.objects.get access"}'
WEIGHTLIFT_GCS_TOKEN=static-tok expect_rc 4 $TO "$WEIGHTLIFT" verify "$B/small.safetensors"
grep_err "HTTP 403 Forbidden (object metadata): loader@test-project.iam.gserviceaccount.com does not have storage.objects.get access; credentials: the token from WEIGHTLIFT_GCS_TOKEN"
ctl '{"fail_status": 403, "fail_html": true}'
expect_rc 4 $TO "$WEIGHTLIFT" verify "$B/small.safetensors"
grep_err "HTTP 403 Forbidden (object metadata): credentials: no credentials"
NCHECK=$((NCHECK + 1))
! grep -q "secret page" "$ERR" || fail "an HTML body was quoted: $(cat "$ERR")"
ctl '{"fail_status": 500, "fail_html": false, "fail_message": "Backend Error"}'
expect_rc 3 $TO "$WEIGHTLIFT" verify "$B/small.safetensors"
grep_err "HTTP 500 Internal Server Error (object metadata): Backend Error"
expect_rc 3 $TO "$WEIGHTLIFT" verify "$B/sharded/"
grep_err "(listing the prefix): Backend Error"
# Two 503s are retried (the metadata, then the listing): the load goes on.
ctl '{"fail_status": 503, "fail_count": 2}'
same_digests "$B/small.safetensors" "$D/small.safetensors"
ctl '{"fail_status": 503, "fail_count": 2}'
same_digests "$B/sharded/" "$D/sharded"
ctl '{"fail_status": 0, "fail_count": -1}'

# --- the local cache keys gs:// objects on their generation --------------------------------
ctl '{"reset_stats": true}'
expect_rc 0 $TO "$WEIGHTLIFT" load --cache-dir "$T/cache" "$B/big.safetensors"
expect_rc 0 $TO "$WEIGHTLIFT" load --json --cache-dir "$T/cache" "$B/big.safetensors"
pycheck 'assert j["strategy"] != "http", j'
NCHECK=$((NCHECK + 1))
sent=$(stat media_bytes)
[ "$sent" -lt $((8 * 1024 * 1024 + 200000)) ] || fail "the warm-cache load fetched again ($sent bytes in all)"
# The same bytes uploaded again: a new generation, the cached copy is dropped.
curl -s -m 30 -X POST --data-binary "@$D/big.safetensors" \
	"http://127.0.0.1:$FRONT/_upload?name=big.safetensors" >/dev/null
expect_rc 0 $TO "$WEIGHTLIFT" load -v --json --cache-dir "$T/cache" "$B/big.safetensors"
grep_err "changed on the server"
pycheck 'assert j["strategy"] == "cache", j'

# --- the object replaced mid-load: its generation no longer matches (412), exit 3 ---------
# (The CLI exits 1 for WLIFT_ECHANGED, whose code is in the format block; the code is checked
# through the C API.)
ctl '{"change_after": 2}'
expect_rc_in "1 3" $TO "$WEIGHTLIFT" load --json --chunk-size 256k "$B/big.safetensors"
grep_err "the object changed while loading (HTTP 412 Precondition Failed"
grep_err "At least one of the pre-conditions you specified did not hold."
ctl '{"change_after": 1}'
expect_rc 0 $TO "$HTTP_CHECK" fail "$B/big.safetensors" WLIFT_ECHANGED load
ctl '{"change_after": -1}'
# ... and the next load reads the new generation whole.
same_digests "$B/big.safetensors" "$D/big.safetensors"

finish
