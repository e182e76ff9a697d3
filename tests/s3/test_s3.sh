#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# s3:// end to end against the real moto server (tests/s3/s3harness.py starts it on 127.0.0.1
# with request authentication on, plus loopback IMDS and container-credential endpoints of its
# own) and against plain nginx serving /bucket/key (path-style, the signature ignored, as the
# remote benchmark uses it). The CLI and the C API (http_check) must give the bytes of the
# local files for single files, an index, a listed prefix (with and without the trailing '/',
# 1100 keys over two pages, and pages of 7 keys), a key with spaces and non-ASCII characters;
# with credentials from the environment (long-term and session), profiles in the shared
# credentials and config files, web identity through moto's STS, the container endpoint and
# IMDSv2; virtual-hosted and path-style addressing. A wrong secret, an unknown key, a bad
# session token and missing credentials fail with exit 4 naming S3's Code and the credential
# source; a missing key or bucket with exit 3. Skips (77) without moto/boto3 in the Python
# that runs it (WLIFT_PYTHON, else the repository's .venv). Every command is bounded.
. "$(dirname "$0")/../cli/lib.sh"
: "${HTTP_CHECK:?HTTP_CHECK must name the http_check binary}"
PY=${WLIFT_PYTHON:-${WLIFT_SRC:-$(dirname "$0")/../..}/.venv/bin/python}
[ -x "$PY" ] || { echo "SKIP: no Python with moto (set WLIFT_PYTHON or make venv)"; exit 77; }
"$PY" -c 'import moto, boto3, flask' 2>/dev/null ||
	{ echo "SKIP: $PY lacks moto[server]/boto3 (tests/requirements.txt)"; exit 77; }
H_PID=
cleanup() {
	[ -n "${NGINX_PID:-}" ] && nginx_stop
	[ -n "$H_PID" ] && kill "$H_PID" 2>/dev/null && wait "$H_PID" 2>/dev/null
	chmod -R u+rwX "$T" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
fixtures --big 8
"$PY" "$(dirname "$0")/s3harness.py" "$D" "$T/state" 2>"$T/harness.err" &
H_PID=$!
for _ in $(seq 240); do
	[ -s "$T/state" ] && break
	kill -0 "$H_PID" 2>/dev/null || break
	sleep 0.5
done
if [ ! -s "$T/state" ]; then
	wait "$H_PID"
	rc=$?
	cat "$T/harness.err"
	[ "$rc" -eq 77 ] && exit 77
	echo "FAIL: the S3 harness did not start"
	exit 1
fi
. "$T/state"
TO="timeout 60"
# Nothing from this machine's own AWS setup.
for v in $(env | sed -n 's/^\(AWS_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
unset WEIGHTLIFT_S3_REGION WEIGHTLIFT_S3_UNSIGNED WEIGHTLIFT_S3_ADDRESSING WEIGHTLIFT_S3_LIST_MAX_KEYS
export HOME=$T/home AWS_EC2_METADATA_DISABLED=true AWS_ENDPOINT_URL=$ENDPOINT
export WEIGHTLIFT_HTTP_STALL_TIMEOUT=10 WEIGHTLIFT_HTTP_CONNECT_TIMEOUT=5
mkdir -p "$HOME"
S3=s3://wlift/ckpt

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
with_keys() { AWS_ACCESS_KEY_ID=$AKID AWS_SECRET_ACCESS_KEY=$SECRET "$@"; }

# --- long-term keys from the environment: files, an index, prefixes, odd keys ---------------
export AWS_ACCESS_KEY_ID=$AKID AWS_SECRET_ACCESS_KEY=$SECRET
same_digests "$S3/small.safetensors" "$D/small.safetensors"
same_digests "$S3/big.safetensors" "$D/big.safetensors"
same_digests "$S3/sharded/model.safetensors.index.json" "$D/sharded/model.safetensors.index.json"
same_digests "$S3/sharded/" "$D/sharded"
same_digests "$S3/sharded" "$D/sharded"
same_digests "s3://wlift/odd/my model é+1 (v2).safetensors" "$D/small.safetensors"
expect_rc 0 $TO "$WEIGHTLIFT" load --json --touch --chunk-size 4k "$S3/small.safetensors"
pycheck '
assert j["strategy"] == "http", j
assert j["touch_xor"] == e["small.safetensors"]["xor"], (j["touch_xor"], e["small.safetensors"]["xor"])
'
expect_rc 0 $TO "$WEIGHTLIFT" inspect --json "$S3/sharded/"
pycheck '
assert [f["path"] for f in j["files"]] == ["s3://wlift/ckpt/sharded/model-00001-of-00002.safetensors", "s3://wlift/ckpt/sharded/model-00002-of-00002.safetensors"], j["files"]
'
# The C API: every byte, chunk sizes, threads, requests in flight.
for req in 1 8; do
	expect_rc 0 $TO "$HTTP_CHECK" same "$S3/big.safetensors" "$D/big.safetensors" $req
done
expect_rc 0 $TO "$HTTP_CHECK" same "$S3/sharded/model.safetensors.index.json" \
	"$D/sharded/model.safetensors.index.json" 4
# A prefix of 1101 keys: two ListObjectsV2 pages of 1000; then pages of 7 (158 pages).
expect_rc 0 $TO "$WEIGHTLIFT" verify -vv s3://wlift/many/
grep_err "1101 keys in 2 listing pages"
grep_out "OK, 8 tensors"
WEIGHTLIFT_S3_LIST_MAX_KEYS=7 expect_rc 0 $TO "$WEIGHTLIFT" verify -vv s3://wlift/many
grep_err "1101 keys in 158 listing pages"
WEIGHTLIFT_S3_LIST_MAX_KEYS=1001 expect_rc 2 $TO "$WEIGHTLIFT" inspect s3://wlift/many/
grep_err "WEIGHTLIFT_S3_LIST_MAX_KEYS"
# Virtual-hosted addressing (curl resolves *.localhost to loopback; moto reads the bucket from
# the Host header).
AWS_ENDPOINT_URL=http://localhost:$PORT WEIGHTLIFT_S3_ADDRESSING=virtual \
	same_digests "$S3/sharded/" "$D/sharded"

# --- failures: S3's Code in the message, the credential source named, the exit codes --------
expect_rc 3 $TO "$WEIGHTLIFT" inspect "$S3/nothere.safetensors"
grep_err "$S3/nothere.safetensors: HTTP 404 Not Found: NoSuchKey"
expect_rc 0 $TO "$HTTP_CHECK" fail "$S3/nothere.safetensors" ENOENT
expect_rc 3 $TO "$WEIGHTLIFT" inspect "s3://nobucket/x.safetensors"
grep_err "NoSuchBucket"
AWS_SECRET_ACCESS_KEY=wrong expect_rc 4 $TO "$WEIGHTLIFT" verify "$S3/small.safetensors"
grep_err "HTTP 403 Forbidden: SignatureDoesNotMatch"
grep_err "credentials from the environment (AWS_ACCESS_KEY_ID)"
AWS_SECRET_ACCESS_KEY=wrong expect_rc 0 $TO "$HTTP_CHECK" fail "$S3/small.safetensors" WLIFT_EAUTH
AWS_SECRET_ACCESS_KEY=wrong expect_rc 4 $TO "$WEIGHTLIFT" inspect "$S3/sharded/"
grep_err "listing (ListObjectsV2): HTTP 403"
AWS_ACCESS_KEY_ID=AKIANOTKNOWN expect_rc 4 $TO "$WEIGHTLIFT" inspect "$S3/small.safetensors"
grep_err "InvalidAccessKeyId"
expect_rc 1 $TO "$WEIGHTLIFT" inspect "s3://Bad*Bucket/x.safetensors"
grep_err "not a valid bucket name"
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
expect_rc 4 $TO "$WEIGHTLIFT" inspect "$S3/small.safetensors"
grep_err "no AWS credentials (tried the environment (AWS_ACCESS_KEY_ID unset)"
grep_err "$HOME/.aws/credentials (no such file)"
grep_err "instance metadata (disabled by AWS_EC2_METADATA_DISABLED)"
grep_err "WEIGHTLIFT_S3_UNSIGNED=1"
AWS_ACCESS_KEY_ID=$AKID expect_rc 4 $TO "$WEIGHTLIFT" inspect "$S3/small.safetensors"
grep_err "AWS_ACCESS_KEY_ID is set but not AWS_SECRET_ACCESS_KEY"

# --- session tokens ------------------------------------------------------------------------
AWS_ACCESS_KEY_ID=$STS_AKID AWS_SECRET_ACCESS_KEY=$STS_SECRET AWS_SESSION_TOKEN=$STS_TOKEN \
	same_digests "$S3/sharded/" "$D/sharded"
AWS_ACCESS_KEY_ID=$STS_AKID AWS_SECRET_ACCESS_KEY=$STS_SECRET AWS_SESSION_TOKEN=bogus \
	expect_rc 4 $TO "$WEIGHTLIFT" inspect "$S3/small.safetensors"
grep_err "InvalidToken"
grep_err "AWS_SESSION_TOKEN"

# --- profiles: shared credentials file, config file, AWS_PROFILE ----------------------------
mkdir -p "$HOME/.aws"
printf '[default]\naws_access_key_id = AKIANOTKNOWN\naws_secret_access_key = x\n\n[good]\n# a comment\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
	"$AKID" "$SECRET" >"$HOME/.aws/credentials"
expect_rc 4 $TO "$WEIGHTLIFT" inspect "$S3/small.safetensors"
grep_err "credentials from the shared credentials file $HOME/.aws/credentials [default]"
AWS_PROFILE=good same_digests "$S3/small.safetensors" "$D/small.safetensors"
AWS_PROFILE=nope expect_rc 4 $TO "$WEIGHTLIFT" inspect "$S3/small.safetensors"
grep_err "the AWS profile nope (AWS_PROFILE) is in neither"
printf '[profile tmp]\nregion = eu-west-1\naws_access_key_id = %s\naws_secret_access_key = %s\naws_session_token = %s\n' \
	"$STS_AKID" "$STS_SECRET" "$STS_TOKEN" >"$T/config"
AWS_CONFIG_FILE=$T/config AWS_PROFILE=tmp same_digests "$S3/small.safetensors" "$D/small.safetensors"
cp "$HOME/.aws/credentials" "$T/creds2"
rm "$HOME/.aws/credentials"
AWS_SHARED_CREDENTIALS_FILE=$T/creds2 AWS_PROFILE=good same_digests "$S3/sharded/" "$D/sharded"

# --- assumed roles (STS AssumeRole, signed with the source profile's keys: moto checks the
# signature), credential_process, SSO (the harness's portal; moto has none) ----------------
cat >"$T/roles" <<EOF
[profile base]
aws_access_key_id = $AKID
aws_secret_access_key = $SECRET
[profile ar]
role_arn = $ROLE_ARN
source_profile = base
role_session_name = wlift-ar
[profile ar2]
role_arn = $ROLE_ARN
source_profile = ar
[profile arenv]
role_arn = $ROLE_ARN
credential_source = Environment
[profile badsrc]
aws_access_key_id = $AKID
aws_secret_access_key = wrong
[profile arbad]
role_arn = $ROLE_ARN
source_profile = badsrc
[profile arnone]
role_arn = $ROLE_ARN
[profile proc]
credential_process = /bin/sh $T/proc.sh good
[profile procfail]
credential_process = /bin/sh $T/proc.sh fail
[profile procjunk]
credential_process = /bin/sh $T/proc.sh junk
[profile arproc]
role_arn = $ROLE_ARN
source_profile = proc
[profile sso]
sso_session = corp
sso_account_id = 123456789012
sso_role_name = wlift-role
[profile ssolegacy]
sso_start_url = https://legacy.awsapps.com/start
sso_region = eu-west-1
sso_account_id = 123456789012
sso_role_name = wlift-role
[profile ssostale]
sso_start_url = https://stale.awsapps.com/start
sso_region = eu-west-1
sso_account_id = 123456789012
sso_role_name = wlift-role
[profile ssowrongrole]
sso_session = corp
sso_account_id = 123456789012
sso_role_name = other-role
[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
sso_region = us-east-1
EOF
{
	echo 'case "$1" in'
	printf 'good) printf %s ;;\n' "'{\"Version\": 1, \"AccessKeyId\": \"$AKID\", \"SecretAccessKey\": \"$SECRET\", \"Expiration\": \"2099-01-01T00:00:00Z\"}'"
	echo 'fail) echo "no credentials for you" >&2; exit 3 ;;'
	echo 'junk) echo "not json" ;;'
	echo 'esac'
} >"$T/proc.sh"
AWS_CONFIG_FILE=$T/roles AWS_PROFILE=ar same_digests "$S3/sharded/" "$D/sharded"
AWS_CONFIG_FILE=$T/roles AWS_PROFILE=ar2 same_digests "$S3/small.safetensors" "$D/small.safetensors"
AWS_CONFIG_FILE=$T/roles AWS_PROFILE=arproc same_digests "$S3/small.safetensors" "$D/small.safetensors"
AWS_CONFIG_FILE=$T/roles AWS_PROFILE=ar AWS_SECRET_ACCESS_KEY=wrong AWS_ACCESS_KEY_ID=$AKID \
	expect_rc 4 $TO "$WEIGHTLIFT" inspect "$S3/small.safetensors"
grep_err "credentials from the environment" # the environment comes first, as in botocore
AWS_CONFIG_FILE=$T/roles AWS_PROFILE=arbad expect_rc 4 $TO "$WEIGHTLIFT" inspect "$S3/small.safetensors"
grep_err "the role $ROLE_ARN of profile arbad (STS AssumeRole at $ENDPOINT/ with the config file $T/roles [profile badsrc]: HTTP 403"
AWS_CONFIG_FILE=$T/roles AWS_PROFILE=arnone expect_rc 4 $TO "$WEIGHTLIFT" inspect "$S3/small.safetensors"
grep_err "role_arn needs source_profile or credential_source"
AWS_CONFIG_FILE=$T/roles AWS_PROFILE=proc same_digests "$S3/sharded/" "$D/sharded"
AWS_CONFIG_FILE=$T/roles AWS_PROFILE=procfail expect_rc 4 $TO "$WEIGHTLIFT" inspect "$S3/small.safetensors"
grep_err "the credential process of profile procfail (/bin/sh $T/proc.sh fail) (exited with status 3)"
AWS_CONFIG_FILE=$T/roles AWS_PROFILE=procjunk expect_rc 4 $TO "$WEIGHTLIFT" inspect "$S3/small.safetensors"
grep_err "its output is not JSON"
mkdir -p "$HOME/.aws/sso/cache"
sso_cache() { # SESSION_OR_START_URL TOKEN EXPIRES_AT
	printf '{"accessToken": "%s", "expiresAt": "%s", "region": "us-east-1"}' "$2" "$3" \
		>"$HOME/.aws/sso/cache/$(printf %s "$1" | sha1sum | cut -d' ' -f1).json"
}
sso_cache corp sso-access-token 2099-01-01T00:00:00Z
sso_cache https://legacy.awsapps.com/start sso-access-token 2099-01-01T00:00:00Z
sso_cache https://stale.awsapps.com/start sso-access-token 2020-01-01T00:00:00Z
export AWS_ENDPOINT_URL_SSO=$IMDS
AWS_CONFIG_FILE=$T/roles AWS_PROFILE=sso same_digests "$S3/sharded/" "$D/sharded"
AWS_CONFIG_FILE=$T/roles AWS_PROFILE=ssolegacy same_digests "$S3/small.safetensors" "$D/small.safetensors"
AWS_CONFIG_FILE=$T/roles AWS_PROFILE=ssostale expect_rc 4 $TO "$WEIGHTLIFT" inspect "$S3/small.safetensors"
grep_err "SSO (profile ssostale, https://stale.awsapps.com/start) (the cached token $HOME/.aws/sso/cache/"
grep_err ".json has expired: run aws sso login --profile ssostale)"
AWS_CONFIG_FILE=$T/roles AWS_PROFILE=ssowrongrole expect_rc 4 $TO "$WEIGHTLIFT" inspect "$S3/small.safetensors"
grep_err "SSO (profile ssowrongrole, sso-session corp) (the portal's GetRoleCredentials for role other-role in account 123456789012: HTTP 401"
rm -f "$HOME/.aws/sso/cache/"*.json
AWS_CONFIG_FILE=$T/roles AWS_PROFILE=sso expect_rc 4 $TO "$WEIGHTLIFT" inspect "$S3/small.safetensors"
grep_err "no cached token $HOME/.aws/sso/cache/"
unset AWS_ENDPOINT_URL_SSO
AWS_METADATA_SERVICE_TIMEOUT=0 AWS_EC2_METADATA_DISABLED= expect_rc 4 $TO "$WEIGHTLIFT" inspect "$S3/small.safetensors"
grep_err "AWS_METADATA_SERVICE_TIMEOUT = '0' is out of range"

# --- the container endpoint and IMDSv2 (loopback servers of the harness) --------------------
AWS_CONTAINER_CREDENTIALS_FULL_URI=$ECS AWS_CONTAINER_AUTHORIZATION_TOKEN=ecs-token \
	same_digests "$S3/sharded/" "$D/sharded"
echo ecs-token >"$T/ecstoken"
AWS_CONTAINER_CREDENTIALS_FULL_URI=$ECS AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=$T/ecstoken \
	same_digests "$S3/small.safetensors" "$D/small.safetensors"
AWS_CONTAINER_CREDENTIALS_FULL_URI=$ECS AWS_CONTAINER_AUTHORIZATION_TOKEN=wrong \
	expect_rc 4 $TO "$WEIGHTLIFT" inspect "$S3/small.safetensors"
grep_err "the container endpoint $ECS (HTTP 401)"
AWS_CONTAINER_CREDENTIALS_FULL_URI=http://example.com/creds \
	expect_rc 4 $TO "$WEIGHTLIFT" inspect "$S3/small.safetensors"
grep_err "plain http:// only to loopback"
AWS_EC2_METADATA_DISABLED= AWS_EC2_METADATA_SERVICE_ENDPOINT=$IMDS \
	same_digests "$S3/sharded/model.safetensors.index.json" "$D/sharded/model.safetensors.index.json"
AWS_EC2_METADATA_DISABLED= AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9 \
	expect_rc 4 $TO "$WEIGHTLIFT" inspect "$S3/small.safetensors"
grep_err "instance metadata at http://127.0.0.1:"

# --- web identity through STS (moto's STS wants a signature once authentication is on: the
# exchange runs with it off; its failure with a dead STS endpoint) --------------------------
echo "a-web-identity-token" >"$T/webtoken"
curl -s -X POST -H 'Content-Type: text/plain' --data inf "$ENDPOINT/moto-api/reset-auth" >/dev/null
AWS_WEB_IDENTITY_TOKEN_FILE=$T/webtoken AWS_ROLE_ARN=$ROLE_ARN \
	same_digests "$S3/small.safetensors" "$D/small.safetensors"
curl -s -X POST -H 'Content-Type: text/plain' --data 0 "$ENDPOINT/moto-api/reset-auth" >/dev/null
AWS_WEB_IDENTITY_TOKEN_FILE=$T/webtoken AWS_ROLE_ARN=$ROLE_ARN AWS_ENDPOINT_URL_STS=http://127.0.0.1:9 \
	expect_rc 4 $TO "$WEIGHTLIFT" inspect "$S3/small.safetensors"
grep_err "web identity (STS at http://127.0.0.1:9/"
AWS_WEB_IDENTITY_TOKEN_FILE=$T/webtoken expect_rc 4 $TO "$WEIGHTLIFT" inspect "$S3/small.safetensors"
grep_err "set AWS_ROLE_ARN"

# --- path-style against plain nginx (/bucket/key; the signature is not checked) ------------
if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then
	. "$(dirname "$0")/../http/nginx.sh"
	mkdir -p "$T/www"
	ln -s "$D" "$T/www/bucket"
	if command -v openssl >/dev/null &&
		openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
			-addext "subjectAltName=IP:127.0.0.1" -keyout "$T/key.pem" -out "$T/cert.pem" \
			>/dev/null 2>&1; then
		NGINX_CERT=$T/cert.pem NGINX_KEY=$T/key.pem
	fi
	nginx_start "$T/www" "$T"
	: >"$NGINX_PFX/access.log"
	AWS_ENDPOINT_URL=$URL AWS_REGION=eu-west-1 AWS_ACCESS_KEY_ID=AKIDNGINX AWS_SECRET_ACCESS_KEY=x \
		same_digests s3://bucket/sharded/model.safetensors.index.json \
		"$D/sharded/model.safetensors.index.json"
	NCHECK=$((NCHECK + 1))
	grep -q '^127.0.0.1 GET /bucket/sharded/model-00001-of-00002.safetensors 206 .*"AWS4-HMAC-SHA256 Credential=AKIDNGINX/[0-9]*/eu-west-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=[0-9a-f]*"' \
		"$NGINX_PFX/access.log" || fail "no path-style signed reads: $(cat "$NGINX_PFX/access.log")"
	: >"$NGINX_PFX/access.log"
	AWS_ENDPOINT_URL=$URL WEIGHTLIFT_S3_UNSIGNED=1 same_digests s3://bucket/small.safetensors \
		"$D/small.safetensors"
	AWS_ENDPOINT_URL=$URL expect_rc 0 $TO "$WEIGHTLIFT" inspect --no-sign s3://bucket/nometa.safetensors
	NCHECK=$((NCHECK + 1))
	! grep -q AWS4 "$NGINX_PFX/access.log" || fail "WEIGHTLIFT_S3_UNSIGNED/--no-sign still signed"
	# --region over AWS_REGION: the signature's scope.
	AWS_ENDPOINT_URL=$URL AWS_REGION=eu-west-1 AWS_ACCESS_KEY_ID=AKIDNGINX AWS_SECRET_ACCESS_KEY=x \
		expect_rc 0 $TO "$WEIGHTLIFT" verify --region eu-central-1 s3://bucket/small.safetensors
	NCHECK=$((NCHECK + 1))
	grep -q 'GET /bucket/small.safetensors 206 .*/eu-central-1/s3/aws4_request' "$NGINX_PFX/access.log" ||
		fail "--region did not set the scope: $(tail -n 2 "$NGINX_PFX/access.log")"
	# Region discovery: without a region, the bucket's comes from S3's wrong-region answer
	# (nginx's /euwrong/ and /eumoved/ answer as AWS does for a bucket in eu-central-1:
	# 400 AuthorizationHeaderMalformed with <Region>, 301 PermanentRedirect with the regional
	# <Endpoint>), learnt once per process (the index's shards ask no more), and the request
	# made again signed for it; a region the user named is not overridden.
	ln -s "$D" "$T/www/euwrong"
	ln -s "$D" "$T/www/eumoved"
	: >"$NGINX_PFX/access.log"
	AWS_ENDPOINT_URL=$URL AWS_ACCESS_KEY_ID=AKIDNGINX AWS_SECRET_ACCESS_KEY=x \
		same_digests s3://euwrong/sharded/model.safetensors.index.json \
		"$D/sharded/model.safetensors.index.json"
	NCHECK=$((NCHECK + 1))
	[ "$(grep -c ' 400 ' "$NGINX_PFX/access.log")" = 1 ] &&
		grep -q '^127.0.0.1 GET /euwrong/sharded/model.safetensors.index.json 400 .*/us-east-1/s3/aws4_request' "$NGINX_PFX/access.log" &&
		grep -q '^127.0.0.1 GET /euwrong/sharded/model-00002-of-00002.safetensors 206 .*/eu-central-1/s3/aws4_request' "$NGINX_PFX/access.log" ||
		fail "no single wrong-region answer then eu-central-1: $(cat "$NGINX_PFX/access.log")"
	AWS_ENDPOINT_URL=$URL AWS_ACCESS_KEY_ID=AKIDNGINX AWS_SECRET_ACCESS_KEY=x \
		expect_rc 0 $TO "$WEIGHTLIFT" verify -v s3://eumoved/small.safetensors
	grep_err "the bucket eumoved is in eu-central-1, not us-east-1 (the default): asking again"
	grep_out "OK"
	AWS_ENDPOINT_URL=$URL AWS_REGION=us-west-2 AWS_ACCESS_KEY_ID=AKIDNGINX AWS_SECRET_ACCESS_KEY=x \
		expect_rc 3 $TO "$WEIGHTLIFT" inspect s3://euwrong/small.safetensors
	grep_err "HTTP 400 Bad Request: AuthorizationHeaderMalformed: The authorization header is malformed; the region is wrong; expecting eu-central-1 (signed for us-west-2; the bucket is in eu-central-1: set AWS_REGION to it)"
	if [ -n "${NGINX_CERT:-}" ]; then
		AWS_ENDPOINT_URL=$SURL WEIGHTLIFT_S3_UNSIGNED=1 \
			expect_rc 3 $TO "$WEIGHTLIFT" inspect s3://bucket/small.safetensors
		grep_err "certificate"
		AWS_ENDPOINT_URL=$SURL WEIGHTLIFT_S3_UNSIGNED=1 AWS_CA_BUNDLE=$NGINX_CERT \
			same_digests s3://bucket/big.safetensors "$D/big.safetensors"
	fi
else
	echo "note: no nginx: path-style against a plain server not tested"
fi

echo "$((NCHECK - NFAIL)) passed, $NFAIL failed"
[ "$NFAIL" -eq 0 ]
