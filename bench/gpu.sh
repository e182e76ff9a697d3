#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The GPU checks and benchmark for a lent GPU machine (issue 11, point 8). Build here, carry
# the build tree (build/weightlift, build/gpucheck, build/libweightlift.so*, build/fake/), and
# run on the GPU machine, which reaches no package registry:
#
#   bash bench/gpu.sh                 checks, then the benchmark (8 GiB checkpoint, 3 rounds)
#   CHECK_ONLY=1 bash bench/gpu.sh    the checks only (tests/gpu/run.sh)
#   SIZE_MIB=8192 ROUNDS=3 DEVICE=cuda:0 BUILD=build OUT=bench/out bash bench/gpu.sh [CKPT]
# (CHECK_MIB sizes the check checkpoint, SKIP_CTEST=1 skips the fake-driver tests: the CI run
# of this script against the fake driver, tests/cli/test_gpu.sh, uses both.)
#
# 1. checks: gpucheck info (driver, devices); gpucheck verify on generated checkpoints of odd
#    tensor sizes, onto every device, buffered and O_DIRECT (bytes copied back and compared
#    with a CPU load); device dtype conversion, every pair among F32/F16/BF16 and every F8
#    format to them, on random bits
#    (GPUCHECK_DTYPE: the kernels JIT-compiled by this driver against the CPU converter, bit
#    for bit); the fake-driver unit tests still pass on that machine's kernel.
# 2. benchmark, one run on the same checkpoint (generated there with the Python standard
#    library unless CKPT is given): the pinned H2D limit of the device (gpucheck h2d), then
#    hot x ROUNDS alternating: weightlift load --device (ring 128 MiB, then 32 and 512 MiB),
#    safetensors.torch.load_file(device=),
#    fastsafetensors (GDS and nogds) when importable; cold (drop_caches) when permitted.
#    GPU Direct Storage: libcufile.so.0 from the system, else the nvidia-cufile wheel next to
#    torch (WEIGHTLIFT_CUFILE_LIBRARY overrides); the checks verify a --gds on load byte for
#    byte and name the cuFile mode (cufile = true GDS, compat = compatibility mode, from
#    cuFileDriverGetProperties); the benchmark adds weightlift --gds on/off hot and cold.
#    Peers that are not installed are reported as unavailable. Every line goes to
#    bench/out/gpu-<time>.txt; copy the table into bench/RESULTS.md with the device name.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SIZE_MIB=${SIZE_MIB:-8192}
ROUNDS=${ROUNDS:-3}
DEVICE=${DEVICE:-cuda:0}
OUT=${OUT:-bench/out}
CHECK_MIB=${CHECK_MIB:-300}
mkdir -p "$OUT"
LOG=$OUT/gpu-$(date -u +%Y%m%dT%H%M%S).txt
WL=$BUILD/weightlift
GC=$BUILD/gpucheck
PY=${PYTHON:-python3}
export LD_LIBRARY_PATH=$BUILD${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
FAILS=0

say() { echo "$*" | tee -a "$LOG"; }
fail() { FAILS=$((FAILS + 1)); say "FAIL: $*"; }

[ -x "$WL" ] && [ -x "$GC" ] || { echo "gpu.sh: build first ($WL, $GC)"; exit 2; }

# A checkpoint of NT tensors of odd sizes (offsets not 256-aligned), MIB MiB in all, with
# bytes that repeat a random 64 MiB block (generation costs a write, not urandom).
gen() { # gen PATH MIB NT [DTYPE]: random bits (F32/F16/BF16: NaNs, infinities, subnormals too)
	$PY - "$@" <<'EOF'
import json, os, random, struct, sys
path, mib, nt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
dt = sys.argv[4] if len(sys.argv) > 4 else "U8"
es = {"U8": 1, "F16": 2, "BF16": 2, "F32": 4}.get(dt, 1)  # F8_*: 1
total = mib << 20
rnd = random.Random(11)
sizes = [max(1, total // nt // es + rnd.randrange(-1024, 1024)) for _ in range(nt)]
hdr, off = {}, 0
for i, s in enumerate(sizes):
    hdr["layer.%04d.weight" % i] = {"dtype": dt, "shape": [s], "data_offsets": [off, off + s * es]}
    off += s * es
h = json.dumps(hdr, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
block = os.urandom(64 << 20)
with open(path + ".tmp", "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    left = off
    while left:
        k = min(left, len(block))
        f.write(block[:k])
        left -= k
os.rename(path + ".tmp", path)
EOF
}

say "gpu.sh $(date -u +%FT%TZ) on $(hostname): $(nproc) cores, kernel $(uname -r)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current --format=csv,noheader 2>&1 | tee -a "$LOG"
"$GC" info 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || { say "no usable CUDA driver/device (gpucheck info: $rc)"; exit 1; }
NDEV=$("$GC" info | sed -n 's/^driver .*, \([0-9]*\) device.*/\1/p')

# cuFile: the system's, else the wheel PyTorch depends on (nvidia-cufile-cu12).
if [ -z "${WEIGHTLIFT_CUFILE_LIBRARY:-}" ] && ! ldconfig -p 2>/dev/null | grep -q 'libcufile\.so\.0'; then
	cf=$($PY -c 'import nvidia.cufile as m, os; print(os.path.join(list(m.__path__)[0], "lib", "libcufile.so.0"))' 2>/dev/null)
	[ -n "$cf" ] && [ -f "$cf" ] && export WEIGHTLIFT_CUFILE_LIBRARY=$cf
fi
say "cuFile library: ${WEIGHTLIFT_CUFILE_LIBRARY:-libcufile.so.0 (system)}"

# --- 1. checks ------------------------------------------------------------------------------
small=$OUT/gpu-check.safetensors
[ -f "$small" ] || gen "$small" "$CHECK_MIB" 97
devs=""
for i in $(seq 0 $((NDEV - 1))); do devs="$devs cuda:$i"; done
"$GC" verify "$small" $devs 2>&1 | tee -a "$LOG"
[ "${PIPESTATUS[0]}" = 0 ] || fail "gpucheck verify"
# Device dtype conversion (the kernels of src/kernels/convert.cu, JIT-compiled by this driver)
# bit for bit against the CPU converter, every pair among F32/F16/BF16 and every F8 format
# to each of them (random bytes: every code), odd element counts.
for from in F32 F16 BF16 F8_E4M3 F8_E5M2 F8_E4M3FNUZ F8_E5M2FNUZ F8_E8M0; do
	cf=$OUT/gpu-conv-$from.safetensors
	[ -f "$cf" ] || gen "$cf" 8 13 $from
	for to in F32 F16 BF16; do
		[ $from = $to ] && continue
		GPUCHECK_DTYPE=$to "$GC" verify "$cf" "$DEVICE" 2>&1 | tee -a "$LOG"
		[ "${PIPESTATUS[0]}" = 0 ] || fail "device conversion $from -> $to"
	done
done
# Device memory kept per tensor (VMM), the ring kept between loads, a 2D-gathered shard:
# exercised by every load above; the CLI's --shard is not there, so gathers are checked by
# the fake-driver ctest below.
# O_DIRECT reads (device fix-ups) through the CLI, with a small ring, then a tiny file.
"$WL" load --device "$DEVICE" --direct on --strategy uring --json "$small" >"$OUT/gpu-direct.json" 2>&1 \
	|| fail "load --direct on: $(cat "$OUT/gpu-direct.json")"
WEIGHTLIFT_CUDA_RING_BYTES=4M WEIGHTLIFT_CUDA_RING_SLOTS=4 "$WL" load --device "$DEVICE" --json "$small" \
	>"$OUT/gpu-ring.json" 2>&1 || fail "load with a 4 MiB ring: $(cat "$OUT/gpu-ring.json")"
say "small ring: $(cat "$OUT/gpu-ring.json")"
# GPU Direct Storage: a --gds on load byte for byte, and the cuFile mode it ran in.
GDS_MODE=unavailable
GPUCHECK_GDS=on "$GC" verify "$small" "$DEVICE" >"$OUT/gpu-gds.txt" 2>&1
rc=$?
cat "$OUT/gpu-gds.txt" >>"$LOG"
if [ $rc = 0 ]; then
	GDS_MODE=$(sed -n 's/.*gds \([a-z]*\): .*/\1/p' "$OUT/gpu-gds.txt")
	say "GDS check: $(tail -1 "$OUT/gpu-gds.txt")"
elif grep -q "cannot load the cuFile library\|cuFileDriverOpen\|does not support\|cuFileHandleRegister" "$OUT/gpu-gds.txt"; then
	say "GDS: not usable here: $(tail -1 "$OUT/gpu-gds.txt")"
else
	fail "GDS verify: $(tail -1 "$OUT/gpu-gds.txt")"
fi
say "cuFile mode: $GDS_MODE (cufile = true GDS, compat = compatibility mode)"
"$WL" load --device "cuda:$NDEV" "$small" >/dev/null 2>"$OUT/gpu-badidx.txt"
[ $? = 5 ] && grep -q "no such device" "$OUT/gpu-badidx.txt" || fail "bad index: $(cat "$OUT/gpu-badidx.txt")"
if [ -z "${SKIP_CTEST:-}" ] && [ -d "$BUILD/tests" ] && command -v ctest >/dev/null; then
	(cd "$BUILD" && ctest -R 'unit/test_cuda|unit/test_gds|cli/test_gpu|cli/test_gds' --output-on-failure) >>"$LOG" 2>&1 \
		&& say "fake-driver tests: pass" || fail "fake-driver tests (see $LOG)"
fi
if [ -n "${CHECK_ONLY:-}" ]; then
	say "checks: $FAILS failure(s)"
	exit $((FAILS != 0))
fi

# --- 2. benchmark -----------------------------------------------------------------------------
ck=${1:-$OUT/gpu-${SIZE_MIB}M.safetensors}
[ -f "$ck" ] || { say "generating $ck ($SIZE_MIB MiB)"; gen "$ck" "$SIZE_MIB" 291; }
bytes=$(stat -c %s "$ck")
cat "$ck" >/dev/null # page cache hot
"$GC" h2d 8192 "$DEVICE" 2>&1 | tee -a "$LOG"

peer_st='
import sys, time, torch
from safetensors.torch import load_file
t = time.perf_counter(); sd = load_file(sys.argv[1], device=sys.argv[2]); torch.cuda.synchronize()
print("%.3f" % (time.perf_counter() - t))'
peer_fst='
import sys, time, torch
from fastsafetensors import fastsafe_open
t = time.perf_counter()
with fastsafe_open(filenames=[sys.argv[1]], nogds=sys.argv[3] == "nogds", device=sys.argv[2]) as f:
    sd = {k: f.get_tensor(k) for k in f.keys()}
torch.cuda.synchronize()
print("%.3f" % (time.perf_counter() - t))'
have() { $PY -c "import $1" >/dev/null 2>&1; }
run_peer() { # run_peer NAME SCRIPT ARGS...
	local name=$1 script=$2 s
	shift 2
	s=$($PY -c "$script" "$ck" "$DEVICE" "$@" 2>>"$LOG" | tail -1)
	if [ -n "$s" ]; then say "$name hot: $(awk -v b="$bytes" -v s="$s" 'BEGIN{printf "%.2f GB/s (%.3f s)", b/s/1e9, s}')"
	else say "$name: failed (see $LOG)"; fi
}
for r in $(seq 1 "$ROUNDS"); do
	say "round $r"
	j=$("$WL" load --device "$DEVICE" --json "$ck" 2>&1)
	say "weightlift hot: $(echo "$j" | $PY -c 'import json,sys; j=json.load(sys.stdin); print("%.2f GB/s, peak RssAnon %.0f MiB, %s, chunk %d" % (j["gb_per_s"], j["peak_rss_anon"]/2**20, j["strategy"], j["chunk_bytes"]))' 2>&1 || echo "$j")"
	for rb in 32M 512M; do # ring sizes (default 128M above)
		j=$(WEIGHTLIFT_CUDA_RING_BYTES=$rb "$WL" load --device "$DEVICE" --json "$ck" 2>&1)
		say "weightlift hot, ring $rb: $(echo "$j" | $PY -c 'import json,sys; j=json.load(sys.stdin); print("%.2f GB/s, peak RssAnon %.0f MiB" % (j["gb_per_s"], j["peak_rss_anon"]/2**20))' 2>&1 || echo "$j")"
	done
	if [ "$GDS_MODE" != unavailable ]; then
		for g in on off; do
			j=$("$WL" load --device "$DEVICE" --gds $g --json "$ck" 2>&1)
			say "weightlift hot, --gds $g: $(echo "$j" | $PY -c 'import json,sys; j=json.load(sys.stdin); print("%.2f GB/s, gds %s, %d bytes by cuFile" % (j["gb_per_s"], j["gds"], j["gds_bytes"]))' 2>&1 || echo "$j")"
		done
	fi
	if have "safetensors.torch"; then run_peer "safetensors.torch" "$peer_st"; else say "safetensors: unavailable"; fi
	if have fastsafetensors; then
		run_peer "fastsafetensors nogds" "$peer_fst" nogds
		run_peer "fastsafetensors gds (cuFile mode $GDS_MODE)" "$peer_fst" gds
	else say "fastsafetensors: unavailable"; fi
	for p in instanttensor runai_model_streamer; do have $p || say "$p: unavailable"; done
done
if [ -w /proc/sys/vm/drop_caches ]; then
	sync; echo 3 >/proc/sys/vm/drop_caches
	j=$("$WL" load --device "$DEVICE" --json "$ck" 2>&1)
	say "weightlift cold: $(echo "$j" | $PY -c 'import json,sys; j=json.load(sys.stdin); print("%.2f GB/s direct=%s %s gds=%s" % (j["gb_per_s"], j["direct"], j["strategy"], j["gds"]))' 2>&1 || echo "$j")"
	if [ "$GDS_MODE" != unavailable ]; then
		for g in on off; do
			sync; echo 3 >/proc/sys/vm/drop_caches
			j=$("$WL" load --device "$DEVICE" --gds $g --json "$ck" 2>&1)
			say "weightlift cold, --gds $g: $(echo "$j" | $PY -c 'import json,sys; j=json.load(sys.stdin); print("%.2f GB/s, gds %s (cuFile mode '"$GDS_MODE"')" % (j["gb_per_s"], j["gds"]))' 2>&1 || echo "$j")"
		done
		if have fastsafetensors; then
			for m in gds nogds; do
				sync; echo 3 >/proc/sys/vm/drop_caches
				s=$($PY -c "$peer_fst" "$ck" "$DEVICE" $m 2>>"$LOG" | tail -1)
				[ -n "$s" ] && say "fastsafetensors $m cold: $(awk -v b="$bytes" -v s="$s" 'BEGIN{printf "%.2f GB/s (%.3f s)", b/s/1e9, s}')"
			done
		fi
	fi
else
	say "cold: drop_caches not permitted here (no cold figures)"
fi
say "results in $LOG; $FAILS check failure(s)"
exit $((FAILS != 0))
