#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Exit codes and error messages of the CLI contract: usage errors (2), bad files (1, with the
# error code named in --json), missing or unreadable files (3 / 4), the message format
# "weightlift: <file>: <tensor>: <message> [rule]", help and version, cp/cache usage.
. "$(dirname "$0")/lib.sh"
fixtures

S=$D/small.safetensors

# --- tool-level usage (no library needed) -----------------------------------------------------
expect_rc 2 "$WEIGHTLIFT"
grep_err "usage: weightlift"
expect_rc 0 "$WEIGHTLIFT" --help
grep_out "usage: weightlift"
grep_out "inspect"
expect_rc 0 "$WEIGHTLIFT" -h
expect_rc 0 "$WEIGHTLIFT" --version
grep_out "weightlift 0."
expect_rc 2 "$WEIGHTLIFT" frobnicate "$S"
grep_err "unknown command 'frobnicate'"
expect_rc 2 "$WEIGHTLIFT" --frobnicate
expect_rc 2 "$WEIGHTLIFT" cp "$S"
grep_err "give one URI and one directory"
expect_rc 2 "$WEIGHTLIFT" cache frob
grep_err "unknown subcommand 'frob'"
expect_rc 2 "$WEIGHTLIFT" load --cache-fill most "$S"
grep_err "invalid --cache-fill 'most'"
for cmd in inspect verify load cp cache; do
	expect_rc 0 "$WEIGHTLIFT" "$cmd" --help
	grep_out "usage: weightlift $cmd"
	grep_out "exit status"
	expect_rc 0 "$WEIGHTLIFT" "$cmd" -h
	expect_rc 0 "$WEIGHTLIFT" help "$cmd"
	grep_out "usage: weightlift $cmd"
	expect_rc 2 "$WEIGHTLIFT" "$cmd"
	if [ "$cmd" = cache ]; then grep_err "give ls or clear"; else grep_err "no URI given"; fi
	expect_rc 2 "$WEIGHTLIFT" "$cmd" --no-such-option "$S"
	grep_err "unknown option '--no-such-option'"
	expect_rc 2 "$WEIGHTLIFT" "$cmd" -Z "$S"
	grep_err "unknown option '-Z'"
done
expect_rc 2 "$WEIGHTLIFT" load --threads
grep_err "needs a value"
expect_rc 2 "$WEIGHTLIFT" inspect --json=yes "$S"


# --- bad files: exit 1, the error named ----------------------------------------------------------
check_bad() { # FILE CODE...
	local f=$1
	shift
	local codes="$*"
	expect_rc 1 "$WEIGHTLIFT" inspect "$D/$f"
	grep_err "weightlift: $D/$f: "
	NCHECK=$((NCHECK + 1))
	[ "$(wc -l <"$ERR")" -ge 1 ] && [ ! -s "$OUT" ] || fail "$f: expected one error line, no stdout"
	expect_rc 1 "$WEIGHTLIFT" inspect --json "$D/$f"
	pycheck '
assert j["schema"] == 1 and j["tensors"] == [] and j["files"] == [], j
assert len(j["errors"]) == 1, j["errors"]
err = j["errors"][0]
assert err["code"] in "'"$codes"'".split(), err
assert err["message"], err
assert err["file"].endswith("'"$f"'"), err
for k in ("tensor", "offset", "rule", "value"):
    assert k in err, err
'
	if [ "$LOAD" = 1 ]; then
		expect_rc 1 "$WEIGHTLIFT" verify "$D/$f"
		expect_rc 1 "$WEIGHTLIFT" load "$D/$f"
	fi
}
LOAD=1
check_bad truncated_data.safetensors WLIFT_ETRUNCATED
check_bad truncated_header.safetensors WLIFT_ETRUNCATED WLIFT_EHEADER_LEN
check_bad lfs.safetensors WLIFT_ELFS
check_bad html.safetensors WLIFT_EHTML
check_bad badjson.safetensors WLIFT_EJSON
check_bad overlap.safetensors WLIFT_EOFFSETS
check_bad gap.safetensors WLIFT_EOFFSETS
check_bad baddtype.safetensors WLIFT_EDTYPE
check_bad badshape.safetensors WLIFT_ESHAPE
check_bad hugelen.safetensors WLIFT_EHEADER_LEN WLIFT_ETRUNCATED
check_bad empty.safetensors WLIFT_EHEADER_LEN WLIFT_ETRUNCATED WLIFT_EFORMAT

# A local JSON or text file is named for what it is; "the download probably returned an error"
# is said of HTML pages only (and of remote bodies), and no bytes of the file are quoted.
printf '{"error":"Repository not found"}' >"$T/error.safetensors"
printf '  [1, 2, 3]\n' >"$T/config.json"
printf 'Access denied. You must be logged in to download this file.\n' >"$T/notes.safetensors"
for f in error.safetensors config.json notes.safetensors; do
	expect_rc 1 "$WEIGHTLIFT" inspect "$T/$f"
	NCHECK=$((NCHECK + 1))
	! grep -q "probably" "$ERR" || fail "$f: download remark for a local file: $(cat "$ERR")"
	NCHECK=$((NCHECK + 1))
	! grep -Eq "Repository|1, 2|Access denied" "$ERR" || fail "$f: file bytes quoted: $(cat "$ERR")"
done
expect_rc 1 "$WEIGHTLIFT" inspect "$T/error.safetensors"
grep_err "weightlift: $T/error.safetensors: this looks like a JSON document (32 bytes), not a safetensors file [file.text]"
expect_rc 1 "$WEIGHTLIFT" inspect "file://$T/config.json"
grep_err "this looks like a JSON document (12 bytes), not a safetensors file"
expect_rc 1 "$WEIGHTLIFT" inspect --json "$T/notes.safetensors"
pycheck '
err = j["errors"][0]
assert err["code"] == "WLIFT_EHTML" and err["rule"] == "file.text", err
assert "this is a text file (60 bytes), not a safetensors file" in err["message"], err
'
expect_rc 1 "$WEIGHTLIFT" inspect "$D/html.safetensors"
grep_err "the download probably returned an error or login page"

# The tensor and the rule appear in the message where the library names them.
expect_rc 1 "$WEIGHTLIFT" inspect --json "$D/overlap.safetensors"
pycheck '
err = j["errors"][0]
assert err["tensor"] in ("a", "b") and err["rule"], err
'
expect_rc 1 "$WEIGHTLIFT" inspect "$D/overlap.safetensors"
NCHECK=$((NCHECK + 1))
# the file once, the tensor once (as a prefix or quoted by the message), the rule last
grep -Eq "^weightlift: $D/overlap.safetensors: ([ab]: |.*\"[ab]\").* \[[a-z_.]+\]\$" "$ERR" ||
	fail "error line format: $(cat "$ERR")"
NCHECK=$((NCHECK + 1))
[ "$(grep -o "$D/overlap.safetensors" "$ERR" | wc -l)" = 1 ] || fail "file named twice: $(cat "$ERR")"
expect_rc 1 "$WEIGHTLIFT" inspect --json "$D/baddtype.safetensors"
pycheck 'assert j["errors"][0]["tensor"] == "a", j["errors"]'

# --- missing, unreadable, directories without checkpoints -----------------------------------------
expect_rc 3 "$WEIGHTLIFT" inspect "$T/missing.safetensors"
grep_err "weightlift: $T/missing.safetensors: "
expect_rc 3 "$WEIGHTLIFT" inspect --json "$T/missing.safetensors"
pycheck 'assert j["errors"][0]["code"] == "ENOENT", j["errors"]'
if [ "$LOAD" = 1 ]; then
	expect_rc 3 "$WEIGHTLIFT" verify "$T/missing.safetensors"
	expect_rc 3 "$WEIGHTLIFT" load "$T/missing.safetensors"
	expect_rc 3 "$WEIGHTLIFT" load --json "$T/missing.safetensors"
	pycheck 'assert j["schema"] == 1 and [x["code"] for x in j["errors"]] == ["ENOENT"], j'
	expect_rc 1 "$WEIGHTLIFT" load --json "$D/overlap.safetensors"
	pycheck 'assert j["errors"][0]["code"] == "WLIFT_EOFFSETS", j'
fi
if [ "$(id -u)" != 0 ]; then
	cp "$S" "$T/noperm.safetensors"
	chmod 000 "$T/noperm.safetensors"
	expect_rc 4 "$WEIGHTLIFT" inspect "$T/noperm.safetensors"
	[ "$LOAD" = 0 ] || expect_rc 4 "$WEIGHTLIFT" load "$T/noperm.safetensors"
fi

# --- every knob is range-checked: flags and WEIGHTLIFT_* variables are usage errors (2) ---------
if [ "$LOAD" != 0 ]; then
	for v in 18446744073709551615 2G; do
		expect_rc 2 "$WEIGHTLIFT" load --chunk-size "$v" "$S"
		grep_err "invalid --chunk-size '$v' (a size up to 1G)"
		expect_rc 2 "$WEIGHTLIFT" load --direct on --chunk-size "$v" "$S"
	done
	expect_rc 2 "$WEIGHTLIFT" load --threads 257 "$S"
	expect_rc 2 "$WEIGHTLIFT" load --max-inflight 2T "$S"
	expect_rc 2 env WEIGHTLIFT_CHUNK_BYTES=18446744073709551615 "$WEIGHTLIFT" verify "$S"
	grep_err "WEIGHTLIFT_CHUNK_BYTES = 18446744073709551615 is out of range"
	expect_rc 2 env WEIGHTLIFT_THREADS=9999 "$WEIGHTLIFT" load "$S"
	expect_rc 2 env WEIGHTLIFT_MAX_INFLIGHT_BYTES=junk "$WEIGHTLIFT" inspect "$S"
	expect_rc 0 env WEIGHTLIFT_CHUNK_BYTES=1G "$WEIGHTLIFT" verify "$S"
fi

# --- nothing reads without bound or blocks: FIFOs, devices, endless --expect files ------------
mkfifo "$T/fifo.safetensors"
expect_rc 3 timeout 20 "$WEIGHTLIFT" inspect "$T/fifo.safetensors"
grep_err "not a regular file (a FIFO) [io.type]"
mkdir -p "$T/fifock"
ln -s ../fifo.safetensors "$T/fifock/a.safetensors"
printf '{"weight_map":{"x":"a.safetensors"}}' >"$T/fifock/model.safetensors.index.json"
expect_rc 3 timeout 20 "$WEIGHTLIFT" inspect "$T/fifock"
grep_err "a FIFO"
expect_rc 3 timeout 20 "$WEIGHTLIFT" inspect /dev/null
grep_err "not a regular file (a character device)"
if [ "$LOAD" != 0 ]; then
	expect_rc 1 timeout 20 "$WEIGHTLIFT" verify --expect /dev/zero "$S"
	grep_err "/dev/zero: not a regular file [file.type]"
	expect_rc 1 timeout 20 "$WEIGHTLIFT" verify --expect "$T/fifo.safetensors" "$S"
	truncate -s 65M "$T/huge.json"
	expect_rc 1 timeout 20 "$WEIGHTLIFT" verify --expect "$T/huge.json" "$S"
	grep_err "is more than the 64 MiB accepted here [file.size]"
	printf '{"tensors": [' >"$T/trunc.json"
	expect_rc 1 timeout 20 "$WEIGHTLIFT" verify --expect "$T/trunc.json" "$S"
	grep_err "not a JSON object"
fi

# --- resource limits say which limit to raise ------------------------------------------------------
mkdir -p "$T/many"
for i in $(seq 10 40); do cp "$S" "$T/many/m$i.safetensors"; done
expect_rc 3 bash -c "ulimit -n 16; exec \"\$0\" inspect \"\$1\"" "$WEIGHTLIFT" "$T/many"
grep_err "too many open files: every shard is opened at once; raise the limit (ulimit -n)"

# --- file:// URIs (RFC 8089): an empty or localhost authority is local; other hosts are errors ---
expect_rc 0 "$WEIGHTLIFT" inspect "file://localhost$S"
expect_rc 1 "$WEIGHTLIFT" inspect "file://otherhost$S"
grep_err "its host must be empty or localhost [uri.file]"

# --- an index cannot reach outside its checkpoint; hub-cache symlinks still load ------------------
mkdir -p "$T/trav/ck" "$T/trav/outside"
printf 'root:*:20228:0:99999:7:::\n' >"$T/trav/secret"
cp "$S" "$T/trav/outside.safetensors"
for target in /etc/shadow "$T/trav/secret" ../outside.safetensors ../../trav/secret sub/../../secret; do
	printf '{"weight_map":{"x":"%s"}}' "$target" >"$T/trav/ck/model.safetensors.index.json"
	expect_rc 1 "$WEIGHTLIFT" inspect "$T/trav/ck"
	grep_err "[index.path]"
	NCHECK=$((NCHECK + 1))
	! grep -q "root:" "$ERR" || fail "$target: file bytes quoted: $(cat "$ERR")"
	[ "$LOAD" = 0 ] || expect_rc 1 "$WEIGHTLIFT" load "$T/trav/ck"
done
printf '{"weight_map":{"x":"small.safetensors\\u0000/../../secret"}}' \
	>"$T/trav/ck/model.safetensors.index.json"
expect_rc 1 "$WEIGHTLIFT" inspect "$T/trav/ck"
grep_err "[index.path]"
# The Hugging Face hub cache: snapshots/<rev>/ holds relative symlinks into ../../blobs/.
hub=$T/hub/models--org--m
mkdir -p "$hub/blobs" "$hub/snapshots/abc123"
cp "$D/sharded/"*.safetensors "$hub/blobs/"
for f in "$D/sharded/"*.safetensors; do
	b=$(basename "$f")
	mv "$hub/blobs/$b" "$hub/blobs/sha-$b"
	ln -s "../../blobs/sha-$b" "$hub/snapshots/abc123/$b"
done
cp "$D/sharded/model.safetensors.index.json" "$hub/blobs/sha-index"
ln -s ../../blobs/sha-index "$hub/snapshots/abc123/model.safetensors.index.json"
expect_rc 0 "$WEIGHTLIFT" inspect "$hub/snapshots/abc123"
[ "$LOAD" = 0 ] || expect_rc 0 "$WEIGHTLIFT" verify "$hub/snapshots/abc123"

# --- an empty directory is bad input (1), not I/O (3); schemes not in this build say so ---------
mkdir -p "$T/emptydir"
expect_rc 1 "$WEIGHTLIFT" inspect "$T/emptydir"
grep_err "no *.safetensors files or index in this directory [ckpt.empty]"
expect_rc 1 "$WEIGHTLIFT" inspect --json "$T/emptydir"
pycheck 'assert j["errors"][0]["code"] == "WLIFT_EEMPTY", j'
# s3:// is served (tests/s3): a bucket name S3 cannot have is bad input too.
expect_rc 1 "$WEIGHTLIFT" inspect "s3://Bad*Bucket/model/"
grep_err "not a valid bucket name"
# gs:// is served (tests/gcs); a bucket name GCS cannot have is bad input, before any request.
expect_rc 1 "$WEIGHTLIFT" inspect gs://Bad_Bucket/m.safetensors
grep_err "a bucket name has only lowercase letters"
expect_rc 1 "$WEIGHTLIFT" inspect ftp://host/m.safetensors
grep_err "URI scheme not understood"

# --- several URIs: every one processed, the first failure decides the exit code ------------------
expect_rc 1 "$WEIGHTLIFT" inspect "$D/lfs.safetensors" "$S" "$T/missing.safetensors"
grep_out "embed.weight"
grep_err "lfs.safetensors"
grep_err "missing.safetensors"
expect_rc 3 "$WEIGHTLIFT" inspect --json "$T/missing.safetensors" "$D/lfs.safetensors" "$S"
pycheck '
assert [x["code"] for x in j["errors"]] == ["ENOENT", "WLIFT_ELFS"], j["errors"]
assert len(j["tensors"]) == 8 and len(j["files"]) == 1
'
finish
