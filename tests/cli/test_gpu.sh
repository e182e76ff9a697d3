#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `weightlift load --device cuda:N` against the fake CUDA driver (fake/, WLIFT_FAKECUDA): the
# load succeeds on each fake device, its peak RssAnon growth stays under the ring + 64 MiB for
# a checkpoint 16x the ring, and device errors exit 5 with the message naming the device:
# no driver, no such device, out of device memory, a failed copy, conversion kernels that do
# not load; a bad device name is bad input. --dtype converts on the device. --groups loads
# in groups of --max-device-bytes.
. "$(dirname "$0")/lib.sh"
[ -n "${WLIFT_FAKECUDA:-}" ] && [ -e "$WLIFT_FAKECUDA" ] || { echo "SKIP: no fake CUDA driver"; exit 77; }
fixtures --big 128

S=$D/small.safetensors
B=$D/big.safetensors
export WEIGHTLIFT_CUDA_LIBRARY=$WLIFT_FAKECUDA

# --- loads --------------------------------------------------------------------------------
for dev in cuda cuda:0 cuda:1; do
	expect_rc 0 "$WEIGHTLIFT" load --device $dev --json "$S"
	pycheck '
assert j["bytes"] == sum(t["nbytes"] for t in e["small.safetensors"]["tensors"].values()), j
assert j["tensors"] == 8, j'
done
expect_rc 0 "$WEIGHTLIFT" load --device cuda:0 "$S"
grep_out "loaded 8 tensors"

# Host memory: the ring (8 MiB) + 64 MiB, for 128 MiB onto the device.
WEIGHTLIFT_CUDA_RING_BYTES=8M WEIGHTLIFT_CUDA_RING_SLOTS=8 \
	expect_rc 0 "$WEIGHTLIFT" load --device cuda:0 --json "$B"
pycheck '
assert j["bytes"] >= 128 << 20, j
assert j["chunk_bytes"] <= 1 << 20, j
assert j["peak_rss_anon"] <= (8 << 20) + (64 << 20), j["peak_rss_anon"]'

# Budget groups: 128 MiB through a 32 MiB budget, one group after another.
expect_rc 0 "$WEIGHTLIFT" load --device cuda:1 --max-device-bytes 32M --groups --json "$B"
pycheck '
assert j["groups"] >= 4 and j["bytes"] >= 128 << 20, j
assert j["tensors"] == 64, j'
expect_rc 5 "$WEIGHTLIFT" load --device cuda:1 --max-device-bytes 32M "$B"
grep_err "more than max_device_bytes = 33554432"
expect_rc 2 "$WEIGHTLIFT" load --groups "$S"
grep_err "needs --device cuda"

# --- device errors: exit 5 ------------------------------------------------------------------
expect_rc 5 "$WEIGHTLIFT" load --device cuda:2 "$S"
grep_err 'device "cuda:2": no such device (2 CUDA devices: cuda:0 .. cuda:1)'
WEIGHTLIFT_CUDA_LIBRARY=/nonexistent/libcuda.so.1 expect_rc 5 "$WEIGHTLIFT" load --device cuda:0 "$S"
grep_err "cannot load the CUDA driver /nonexistent/libcuda.so.1"
FAKECUDA_DEVICES=0 expect_rc 5 "$WEIGHTLIFT" load --device cuda "$S"
grep_err "no CUDA device"
FAKECUDA_OOM_AT=1M expect_rc 5 "$WEIGHTLIFT" load --device cuda:1 "$B"
grep_err "cuda:1: cannot allocate"
grep_err "of device memory for the load"
# Out of device memory in a later budget group (the third group's allocation and all after).
FAKECUDA_VMM=0 FAKECUDA_FAIL_ALLOC=3 FAKECUDA_FAIL_ALLOCS_ALL=1 expect_rc 5 "$WEIGHTLIFT" load --device cuda:1 --max-device-bytes 32M --groups "$B"
grep_err "cuda:1: cannot allocate"
grep_err "CUDA_ERROR_OUT_OF_MEMORY"
WEIGHTLIFT_MAX_DEVICE_BYTES=64M expect_rc 5 "$WEIGHTLIFT" load --device cuda:0 "$B"
grep_err "more than max_device_bytes = 67108864"
FAKECUDA_FAIL_COPY=3 expect_rc 5 "$WEIGHTLIFT" load --device cuda:0 "$B"
grep_err "cuMemcpyHtoDAsync of"
FAKECUDA_FAIL_ASYNC=3 expect_rc 5 "$WEIGHTLIFT" load --device cuda:0 "$B"
grep_err "CUDA_ERROR_ILLEGAL_ADDRESS"
FL=embed.weight,layer.0.bias,layer.0.mask,empty,norm.weight,q.u8
for dt in F16 BF16 F32; do
	expect_rc 0 "$WEIGHTLIFT" load --device cuda:1 --dtype $dt --names $FL --json "$S"
	pycheck 'assert j["tensors"] == 6, j'
done
FAKECUDA_FAIL_MODULE=1 expect_rc 5 "$WEIGHTLIFT" load --device cuda:0 --dtype F32 --names $FL "$S"
grep_err "cannot load the dtype conversion kernels: cuModuleLoadData"

# --- the GPU machine's tools, against the fake: gpucheck and bench/gpu.sh's checks ----------
GC=$(dirname "$WEIGHTLIFT")/gpucheck
if [ -x "$GC" ]; then
	expect_rc 0 "$GC" info
	grep_out "2 devices"
	expect_rc 0 "$GC" verify "$S" cuda:0 cuda:1
	grep_out "verify cuda:1: 8 tensors"
	expect_rc 0 "$GC" h2d 64 cuda:0
	grep_out "pinned host-to-device limit"
	expect_rc 0 env CHECK_ONLY=1 CHECK_MIB=24 SKIP_CTEST=1 BUILD="$(dirname "$WEIGHTLIFT")" \
		OUT="$T/gpu-out" WEIGHTLIFT_CUFILE_LIBRARY="${WLIFT_FAKECUFILE:-/nonexistent}" \
		bash "${WLIFT_SRC:-$HERE/../..}/bench/gpu.sh"
	grep_out "checks: 0 failure(s)"
	[ -z "${WLIFT_FAKECUFILE:-}" ] || grep_out "cuFile mode: cufile"
	# The whole script (checks, then the benchmark) as a dry run: small, one round, no cold
	# runs, the Python peers skipped (no torch on a CUDA device here).
	expect_rc 0 env SMOKE=1 CHECK_MIB=8 SIZE_MIB=16 H2D_MIB=16 SKIP_CTEST=1 BUILD="$(dirname "$WEIGHTLIFT")" \
		OUT="$T/gpu-smoke" DATA="$T/gpu-smoke-data" BUNDLE="$T/no-bundle" \
		WEIGHTLIFT_CUFILE_LIBRARY="${WLIFT_FAKECUFILE:-/nonexistent}" \
		bash "${WLIFT_SRC:-$HERE/../..}/bench/gpu.sh"
	grep_out "0 check failure(s)"
	grep_out "pinned host-to-device limit"
	grep_out "weightlift hot: "
	grep_out "weightlift hot, ring 512M: "
	grep_out "cold: not measured (COLD=0)"
	[ -z "${WLIFT_FAKECUFILE:-}" ] || grep_out "weightlift hot, --gds on-sync: "
	NCHECK=$((NCHECK + 1))
	[ -f "$T/gpu-smoke-data/gpu-16M.safetensors" ] && ! ls "$T/gpu-smoke"/*.safetensors >/dev/null 2>&1 ||
		fail "the checkpoints belong in DATA, not OUT (whose files the device tool brings back)"
fi

# --- bad input ---------------------------------------------------------------------------------
expect_rc 2 "$WEIGHTLIFT" load --device cuda:x "$S"
grep_err "not understood"
WEIGHTLIFT_CUDA_RING_BYTES=100 expect_rc 2 "$WEIGHTLIFT" load --device cuda:0 "$S"
grep_err "out of range"
finish
