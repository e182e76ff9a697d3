#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The GPU checks and benchmark for a lent GPU machine (issue 11, point 8). Build here, carry
# the build tree (build/weightlift, build/gpucheck, build/libweightlift.so*, build/fake/), and
# run on the GPU machine, which reaches no package registry:
#
#   bash bench/gpu.sh                 checks, then the benchmark (8 GiB checkpoint, 3 rounds)
#   CHECK_ONLY=1 bash bench/gpu.sh    the checks only (tests/gpu/run.sh)
#   SIZE_MIB=8192 ROUNDS=3 DEVICE=cuda:0 BUILD=build OUT=bench/out bash bench/gpu.sh [CKPT]
#   SMOKE=1 WEIGHTLIFT_CUDA_LIBRARY=build/fake/libwlift_fakecuda.so bash bench/gpu.sh
#                                     the whole script, small, against the fake driver (a dry
#                                     run here: tests/cli/test_gpu.sh runs it)
# (CHECK_MIB sizes the check checkpoint, SKIP_CTEST=1 skips the fake-driver tests: the CI run
# of this script against the fake driver, tests/cli/test_gpu.sh, uses both. DATA: where the
# checkpoints are generated, default OUT; on the device machine a folder outside $OUT, whose
# files come back.)
#
# On the device machine the build is tools/gpu-bundle.sh's folder (BUNDLE, default
# build-gpu, carried): BUILD defaults to BUNDLE/build, the Python package for that machine's
# Python to BUNDLE/py/cpXY (PYTHONPATH), the peers' wheels in BUNDLE/wheels are installed
# into DATA/peers (pip --no-index), and the shared libraries the machine lacks (ldd's "not
# found") are taken from BUNDLE/lib. docs/gpu.md has the one command.
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
BUNDLE=${BUNDLE:-build-gpu}
if [ -z "${BUILD:-}" ]; then
	if [ -x "$BUNDLE/build/weightlift" ]; then BUILD=$BUNDLE/build; else BUILD=build; fi
fi
if [ -n "${SMOKE:-}" ]; then # a dry run of the whole script: small, one round
	SIZE_MIB=${SIZE_MIB:-64} ROUNDS=${ROUNDS:-1} CHECK_MIB=${CHECK_MIB:-16} H2D_MIB=${H2D_MIB:-64}
	COLD=${COLD:-0} # never drop a shared machine's page cache for a dry run
fi
COLD=${COLD:-1}
SIZE_MIB=${SIZE_MIB:-8192}
ROUNDS=${ROUNDS:-3}
DEVICE=${DEVICE:-cuda:0}
OUT=${OUT:-bench/out}
DATA=${DATA:-$OUT}
CHECK_MIB=${CHECK_MIB:-300}
H2D_MIB=${H2D_MIB:-8192}
PEER_TIMEOUT=${PEER_TIMEOUT:-180}
mkdir -p "$OUT" "$DATA"
LOG=$OUT/gpu-$(date -u +%Y%m%dT%H%M%S).txt
WL=$BUILD/weightlift
GC=$BUILD/gpucheck
PY=${PYTHON:-python3}
export LD_LIBRARY_PATH=$BUILD${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
FAILS=0

say() { echo "$*" | tee -a "$LOG"; }
fail() { FAILS=$((FAILS + 1)); say "FAIL: $*"; }

[ -x "$WL" ] && [ -x "$GC" ] || { echo "gpu.sh: build first ($WL, $GC; or tools/gpu-bundle.sh)"; exit 2; }

# Shared libraries this machine lacks (its image may have no libcurl, say): only those, from
# the bundle's copies, so that the machine's own stay in use where it has them.
missing() { for f in "$@"; do [ -e "$f" ] && ldd "$f" 2>/dev/null; done | awk '/not found/ {print $1}' | sort -u; }
PYTAG=$($PY -c 'import sys; print("cp%d%d" % sys.version_info[:2])' 2>/dev/null || echo none)
bins="$WL $GC $BUILD/libweightlift.so.0 $(ls "$BUNDLE/py/$PYTAG"/weightlift/_native*.so 2>/dev/null)"
if [ -n "$(missing $bins)" ] && [ -d "$BUNDLE/lib" ]; then
	mkdir -p "$DATA/lib"
	for i in 1 2 3; do
		m=$(missing $bins "$DATA"/lib/*)
		[ -n "$m" ] || break
		for l in $m; do [ -e "$BUNDLE/lib/$l" ] && ln -sf "$(cd "$BUNDLE/lib" && pwd)/$l" "$DATA/lib/$l"; done
		export LD_LIBRARY_PATH=$(cd "$DATA/lib" && pwd):$LD_LIBRARY_PATH
	done
fi
m=$(missing $bins)
[ -z "$m" ] || { say "gpu.sh: shared libraries missing here: $m"; exit 2; }

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

# Python: the bundle's package for this Python, and the peers' wheels it carried.
if [ -d "$BUNDLE/py/$PYTAG/weightlift" ]; then
	export PYTHONPATH=$(cd "$BUNDLE/py/$PYTAG" && pwd)${PYTHONPATH:+:$PYTHONPATH}
elif [ -d "$BUNDLE/py" ]; then
	say "weightlift Python package: none built for $PYTAG ($(ls "$BUNDLE/py" | tr '\n' ' '))"
fi
if ls "$BUNDLE"/wheels/*.whl >/dev/null 2>&1; then
	if $PY -m pip install --no-index --no-deps --quiet --target "$DATA/peers" "$BUNDLE"/wheels/*.whl >>"$LOG" 2>&1; then
		export PYTHONPATH=$(cd "$DATA/peers" && pwd)${PYTHONPATH:+:$PYTHONPATH}
		say "peers installed from $BUNDLE/wheels: $(ls "$BUNDLE"/wheels/*.whl | xargs -n1 basename | cut -d- -f1-2 | tr '\n' ' ')"
	else
		say "peers' wheels did not install for $PYTAG (see $LOG): those peers are unavailable"
	fi
fi
have() { $PY -c "import $1" >/dev/null 2>&1; }

# --- 1. checks ------------------------------------------------------------------------------
small=$DATA/gpu-check.safetensors
[ -f "$small" ] || gen "$small" "$CHECK_MIB" 97
devs=""
for i in $(seq 0 $((NDEV - 1))); do devs="$devs cuda:$i"; done
"$GC" verify "$small" $devs 2>&1 | tee -a "$LOG"
[ "${PIPESTATUS[0]}" = 0 ] || fail "gpucheck verify"
# Device dtype conversion (the kernels of src/kernels/convert.cu, JIT-compiled by this driver)
# bit for bit against the CPU converter, every pair among F32/F16/BF16 and every F8 format
# to each of them (random bytes: every code), odd element counts.
for from in F32 F16 BF16 F8_E4M3 F8_E5M2 F8_E4M3FNUZ F8_E5M2FNUZ F8_E8M0; do
	cf=$DATA/gpu-conv-$from.safetensors
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
if ! "$WL" load --device "$DEVICE" --direct on --strategy uring --json "$small" >"$OUT/gpu-direct.json" 2>&1; then
	# A sandbox (gVisor, say) may refuse O_DIRECT: reported, not a failure of ours.
	if grep -q "cannot open with O_DIRECT" "$OUT/gpu-direct.json"; then
		say "O_DIRECT: not available here: $(tail -1 "$OUT/gpu-direct.json")"
	else
		fail "load --direct on: $(cat "$OUT/gpu-direct.json")"
	fi
fi
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
# Python: torch (and JAX) tensors on the device through DLPack, against the CPU load
# (bench/gpu_interop.py); only where torch sees a CUDA device and the package imports.
if have torch && have weightlift._native; then
	timeout "$PEER_TIMEOUT" $PY bench/gpu_interop.py "$small" "$DEVICE" 2>&1 | tee -a "$LOG"
	case ${PIPESTATUS[0]} in
	0) ;;
	3) say "torch interop: not checked (torch sees no CUDA device)" ;;
	*) fail "torch/JAX interop (bench/gpu_interop.py)" ;;
	esac
else
	say "torch interop: not checked (torch or the weightlift package does not import with $PY)"
fi
# The fake-driver tests, where the build tree has them and was configured at this path.
if [ -z "${SKIP_CTEST:-}" ] && [ -f "$BUILD/CTestTestfile.cmake" ] && command -v ctest >/dev/null &&
	! grep -q "$(cd "$BUILD" && pwd)" "$BUILD/CTestTestfile.cmake"; then
	say "fake-driver tests: not run (the build tree was configured elsewhere)"
elif [ -z "${SKIP_CTEST:-}" ] && [ -d "$BUILD/tests" ] && command -v ctest >/dev/null; then
	(cd "$BUILD" && ctest -R 'unit/test_cuda|unit/test_gds|cli/test_gpu|cli/test_gds' --output-on-failure) >>"$LOG" 2>&1 \
		&& say "fake-driver tests: pass" || fail "fake-driver tests (see $LOG)"
fi
if [ -n "${CHECK_ONLY:-}" ]; then
	say "checks: $FAILS failure(s)"
	exit $((FAILS != 0))
fi

# --- 2. benchmark -----------------------------------------------------------------------------
ck=${1:-$DATA/gpu-${SIZE_MIB}M.safetensors}
[ -f "$ck" ] || { say "generating $ck ($SIZE_MIB MiB)"; gen "$ck" "$SIZE_MIB" 291; }
bytes=$(stat -c %s "$ck")
cat "$ck" >/dev/null # page cache hot
"$GC" h2d "$H2D_MIB" "$DEVICE" 2>&1 | tee -a "$LOG"

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
peer_it='
import sys, time, torch
from instanttensor import safe_open
dev = int(sys.argv[2].split(":")[1]) if ":" in sys.argv[2] else 0
t = time.perf_counter()
with safe_open(sys.argv[1], framework="pt", device=dev) as f:
    sd = {k: v for k, v in f.tensors()}
torch.cuda.synchronize()
print("%.3f" % (time.perf_counter() - t))'
peer_runai='
import sys, time, torch
from runai_model_streamer import SafetensorsStreamer
t = time.perf_counter()
sd = {}
with SafetensorsStreamer() as s:
    s.stream_file(sys.argv[1], device=sys.argv[2])
    for k, v in s.get_tensors():
        sd[k] = v if v.is_cuda else v.to(sys.argv[2], non_blocking=True)
torch.cuda.synchronize()
print("%.3f" % (time.perf_counter() - t))'
run_peer() { # run_peer NAME SCRIPT ARGS...
	local name=$1 script=$2 s
	shift 2
	s=$(timeout "$PEER_TIMEOUT" $PY -c "$script" "$ck" "$DEVICE" "$@" 2>>"$LOG" | tail -1)
	if [ -n "$s" ]; then say "$name hot: $(awk -v b="$bytes" -v s="$s" 'BEGIN{printf "%.2f GB/s (%.3f s)", b/s/1e9, s}')"
	else say "$name: failed (see $LOG)"; fi
}
# The Python peers need torch on a CUDA device (not the fake driver's).
if $PY -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
	TORCH_CUDA=1
else
	TORCH_CUDA=""
	say "Python peers: not run (torch does not import or sees no CUDA device with $PY)"
fi
for r in $(seq 1 "$ROUNDS"); do
	say "round $r"
	j=$("$WL" load --device "$DEVICE" --json "$ck" 2>&1)
	say "weightlift hot: $(echo "$j" | $PY -c 'import json,sys; j=json.load(sys.stdin); print("%.2f GB/s, peak RssAnon %.0f MiB, %s, chunk %d" % (j["gb_per_s"], j["peak_rss_anon"]/2**20, j["strategy"], j["chunk_bytes"]))' 2>&1 || echo "$j")"
	for rb in 32M 512M; do # ring sizes (default 128M above)
		j=$(WEIGHTLIFT_CUDA_RING_BYTES=$rb "$WL" load --device "$DEVICE" --json "$ck" 2>&1)
		say "weightlift hot, ring $rb: $(echo "$j" | $PY -c 'import json,sys; j=json.load(sys.stdin); print("%.2f GB/s, peak RssAnon %.0f MiB" % (j["gb_per_s"], j["peak_rss_anon"]/2**20))' 2>&1 || echo "$j")"
	done
	if [ "$GDS_MODE" != unavailable ]; then
		for g in on off on-sync; do # on-sync: cuFileRead, no batches (WEIGHTLIFT_GDS_BATCH=0)
			j=$(WEIGHTLIFT_GDS_BATCH=$([ $g = on-sync ] && echo 0 || echo 8) "$WL" load --device "$DEVICE" --gds ${g%-sync} --json "$ck" 2>&1)
			say "weightlift hot, --gds $g: $(echo "$j" | $PY -c 'import json,sys; j=json.load(sys.stdin); print("%.2f GB/s, gds %s, %d bytes by cuFile" % (j["gb_per_s"], j["gds"], j["gds_bytes"]))' 2>&1 || echo "$j")"
		done
	fi
	[ -n "$TORCH_CUDA" ] || continue
	if have "safetensors.torch"; then run_peer "safetensors.torch" "$peer_st"; else say "safetensors: unavailable"; fi
	if have fastsafetensors; then
		run_peer "fastsafetensors nogds" "$peer_fst" nogds
		run_peer "fastsafetensors gds (cuFile mode $GDS_MODE)" "$peer_fst" gds
	else say "fastsafetensors: unavailable"; fi
	if have instanttensor; then run_peer "instanttensor" "$peer_it"; else say "instanttensor: unavailable"; fi
	if have runai_model_streamer; then run_peer "runai_model_streamer" "$peer_runai"; else say "runai_model_streamer: unavailable"; fi
done
if [ "$COLD" = 0 ]; then
	say "cold: not measured (COLD=0)"
elif [ -w /proc/sys/vm/drop_caches ]; then
	sync; echo 3 >/proc/sys/vm/drop_caches
	j=$("$WL" load --device "$DEVICE" --json "$ck" 2>&1)
	say "weightlift cold: $(echo "$j" | $PY -c 'import json,sys; j=json.load(sys.stdin); print("%.2f GB/s direct=%s %s gds=%s" % (j["gb_per_s"], j["direct"], j["strategy"], j["gds"]))' 2>&1 || echo "$j")"
	if [ "$GDS_MODE" != unavailable ]; then
		for g in on off on-sync; do
			sync; echo 3 >/proc/sys/vm/drop_caches
			j=$(WEIGHTLIFT_GDS_BATCH=$([ $g = on-sync ] && echo 0 || echo 8) "$WL" load --device "$DEVICE" --gds ${g%-sync} --json "$ck" 2>&1)
			say "weightlift cold, --gds $g: $(echo "$j" | $PY -c 'import json,sys; j=json.load(sys.stdin); print("%.2f GB/s, gds %s (cuFile mode '"$GDS_MODE"')" % (j["gb_per_s"], j["gds"]))' 2>&1 || echo "$j")"
		done
		if [ -n "$TORCH_CUDA" ] && have fastsafetensors; then
			for m in gds nogds; do
				sync; echo 3 >/proc/sys/vm/drop_caches
				s=$(timeout "$PEER_TIMEOUT" $PY -c "$peer_fst" "$ck" "$DEVICE" $m 2>>"$LOG" | tail -1)
				[ -n "$s" ] && say "fastsafetensors $m cold: $(awk -v b="$bytes" -v s="$s" 'BEGIN{printf "%.2f GB/s (%.3f s)", b/s/1e9, s}')"
			done
		fi
	fi
else
	say "cold: drop_caches not permitted here (no cold figures)"
fi
say "results in $LOG; $FAILS check failure(s)"
exit $((FAILS != 0))
