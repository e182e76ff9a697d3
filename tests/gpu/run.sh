#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The GPU test script for a lent GPU machine (not part of `make test`, which has no GPU and
# runs the same path against the fake driver): the checks of bench/gpu.sh only. Carry
# build-gpu/ (tools/gpu-bundle.sh), then, on the GPU machine:
#   DATA=/tmp/wl bash tests/gpu/run.sh        (exit 0 when every check passed)
# For the figures too: DATA=/tmp/wl bash bench/gpu.sh (docs/gpu.md, "What travels").
exec env CHECK_ONLY=1 bash "$(dirname "$0")/../../bench/gpu.sh" "$@"
