#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `weightlift load --device cuda:N --gds ...` against the fake CUDA driver and the fake cuFile
# (fake/, WLIFT_FAKECUDA, WLIFT_FAKECUFILE): --gds on reads every byte through cuFile (and
# says so in --json: "gds": "cufile", gds_bytes) with host memory bounded by the ring; off
# never; reads go as cuFile batches (a failing request names the batch read, WEIGHTLIFT_GDS_BATCH=0
# the synchronous cuFileRead; a refused batch or a driver without them: synchronous reads); a
# missing library or a failing read exits 5 naming it; a bad value is usage (2).
. "$(dirname "$0")/lib.sh"
[ -n "${WLIFT_FAKECUDA:-}" ] && [ -e "$WLIFT_FAKECUDA" ] || { echo "SKIP: no fake CUDA driver"; exit 77; }
[ -n "${WLIFT_FAKECUFILE:-}" ] && [ -e "$WLIFT_FAKECUFILE" ] || { echo "SKIP: no fake cuFile"; exit 77; }
fixtures --big 128

S=$D/small.safetensors
B=$D/big.safetensors
export WEIGHTLIFT_CUDA_LIBRARY=$WLIFT_FAKECUDA WEIGHTLIFT_CUFILE_LIBRARY=$WLIFT_FAKECUFILE
python3 -c 'import os,sys; os.close(os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT))' "$B" 2>/dev/null ||
	{ echo "SKIP: no O_DIRECT here"; exit 77; }

WEIGHTLIFT_CUDA_RING_BYTES=8M WEIGHTLIFT_CUDA_RING_SLOTS=8 \
	expect_rc 0 "$WEIGHTLIFT" load --device cuda:1 --gds on --json "$B"
pycheck '
assert j["gds"] == "cufile", j
assert j["gds_bytes"] >= j["bytes"] >= 128 << 20, j
assert j["direct"] is True, j
assert j["peak_rss_anon"] <= (8 << 20) + (64 << 20), j["peak_rss_anon"]'
expect_rc 0 "$WEIGHTLIFT" load --device cuda:0 --gds on "$B"
grep_out "GPU Direct Storage: cufile"
FAKECUFILE_MODE=compat expect_rc 0 "$WEIGHTLIFT" load --device cuda:0 --gds on --json "$S"
pycheck 'assert j["gds"] == "compat" and j["gds_bytes"] >= j["bytes"], j'
expect_rc 0 "$WEIGHTLIFT" load --device cuda:0 --gds off --direct on --json "$B"
pycheck 'assert j["gds"] == "off" and j["gds_bytes"] == 0, j'
WEIGHTLIFT_GDS=off expect_rc 0 "$WEIGHTLIFT" load --device cuda:0 --direct on --json "$S"
pycheck 'assert j["gds"] == "off", j'

# --- errors -------------------------------------------------------------------------------------
WEIGHTLIFT_CUFILE_LIBRARY=/nonexistent/libcufile.so.0 expect_rc 5 "$WEIGHTLIFT" load --device cuda:0 --gds on "$S"
grep_err "GPU Direct Storage (gds on): cannot load the cuFile library /nonexistent/libcufile.so.0"
FAKECUFILE_FAIL_READ=3 FAKECUFILE_FAIL_READS_ALL=1 expect_rc 5 "$WEIGHTLIFT" load --device cuda:0 --gds on "$B"
# Reads from the third on fail; which tensor it belongs to depends on the workers' order.
NCHECK=$((NCHECK + 1))
grep -qE -- "big\.safetensors: big\.[0-9]+" "$ERR" || fail "no tensor named: $(head -c 600 "$ERR")"
# Chunks go as cuFile batches (WEIGHTLIFT_GDS_BATCH, default 8); a failed one is read again
# with cuFileRead, which fails too here.
grep_err "cuFileRead of"
grep_err "after a cuFile batch read failed"
grep_err "cuFile batch read of"
grep_err "at offset"
# Only the third read fails: the cuFileRead after the failed batch works, so does the load.
FAKECUFILE_FAIL_READ=3 expect_rc 0 "$WEIGHTLIFT" load --device cuda:0 --gds on --json "$B"
pycheck 'assert j["gds"] == "cufile" and j["gds_bytes"] >= j["bytes"] >= 128 << 20, j'
WEIGHTLIFT_GDS_BATCH=0 FAKECUFILE_FAIL_READ=3 expect_rc 5 "$WEIGHTLIFT" load --device cuda:0 --gds on "$B"
grep_err "cuFileRead of" # synchronous reads
grep_err "at offset"
# A batch the library refuses (set up or submit): the reads go on synchronously.
for how in setup submit; do
	FAKECUFILE_FAIL_BATCH=$how expect_rc 0 "$WEIGHTLIFT" load --device cuda:0 --gds on --json "$B"
	pycheck 'assert j["gds"] == "cufile" and j["gds_bytes"] >= j["bytes"] >= 128 << 20, j'
done
FAKECUFILE_NO_BATCH=1 expect_rc 0 "$WEIGHTLIFT" load --device cuda:1 --gds on --json "$B"
pycheck 'assert j["gds"] == "cufile" and j["gds_bytes"] >= j["bytes"], j'
FAKECUFILE_FAIL_OPEN=1 expect_rc 5 "$WEIGHTLIFT" load --device cuda:0 --gds on "$S"
grep_err "cuFileDriverOpen"
expect_rc 2 "$WEIGHTLIFT" load --device cuda:0 --gds sometimes "$S"
grep_err "invalid --gds"
WEIGHTLIFT_GDS=sometimes expect_rc 2 "$WEIGHTLIFT" load --device cuda:0 "$S"
grep_err "WEIGHTLIFT_GDS"
WEIGHTLIFT_GDS_BATCH=65 expect_rc 2 "$WEIGHTLIFT" load --device cuda:0 --gds on "$S"
grep_err "WEIGHTLIFT_GDS_BATCH is out of range"
WEIGHTLIFT_GDS_BATCH=lots expect_rc 2 "$WEIGHTLIFT" load --device cuda:0 --gds on "$S"
grep_err "WEIGHTLIFT_GDS_BATCH"
finish
