#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The committed src/kernels/convert.ptx and convert_ptx.c are what tools/gen-ptx.sh makes
# from src/kernels/convert.cu with this machine's nvcc (skip, 77, without one). After editing
# the kernels: `make ptx` (or tools/gen-ptx.sh) and commit both files.
set -eu
SRC=${WLIFT_SRC:?}
NVCC=${WLIFT_NVCC:-}
if [ -z "$NVCC" ] || [ "$NVCC" = "WLIFT_NVCC-NOTFOUND" ] || ! [ -x "$NVCC" ]; then
	NVCC=$(command -v nvcc || true)
fi
if [ -z "$NVCC" ]; then
	echo "ptx_current: no nvcc here (the committed PTX is used as is)"
	exit 77
fi
OUT=${WLIFT_TEST_TMP:-/tmp}/ptx_current.$$
trap 'rm -rf "$OUT"' EXIT
sh "$SRC/tools/gen-ptx.sh" "$NVCC" "$OUT"
for f in convert.ptx convert_ptx.c; do
	if ! cmp -s "$OUT/$f" "$SRC/src/kernels/$f"; then
		echo "src/kernels/$f is not what tools/gen-ptx.sh makes from convert.cu with $NVCC:" >&2
		diff -u "$SRC/src/kernels/$f" "$OUT/$f" | head -40 >&2
		echo "regenerate it: make ptx (or sh tools/gen-ptx.sh $NVCC) and commit" >&2
		exit 1
	fi
done
echo "ptx_current: convert.ptx and convert_ptx.c match convert.cu ($NVCC)"
