#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Everything the lent GPU machine needs from this one, in one ignored folder that the device
# tool's `run` carries (issue 11 point 8; docs/gpu.md "On a real GPU" has the one command).
# That machine reaches no package registry, may run another Python and may lack json-c,
# liburing or libcurl, and takes at most 64 MiB (the working tree included). Run it in the
# checkout the device tool sends (the session's own, not a helper's worktree):
#
#   bash tools/gpu-bundle.sh            -> build-gpu/ (B=DIR elsewhere)
#
#   build-gpu/build/   Release build, json-c and liburing static (WLIFT_STATIC_DEPS):
#                      weightlift, gpucheck, libweightlift.so*, fake/ (the smoke run here)
#   build-gpu/py/cpXY/weightlift/  the Python package, _native built for each pyenv Python
#                      >= 3.10 (PYTHONS="3.12.1 ..." to choose), json-c and liburing static
#   build-gpu/lib/     copies of the other shared libraries they need beyond glibc (libcurl,
#                      libcrypto and theirs); bench/gpu.sh uses only those the machine lacks
#   build-gpu/wheels/  the peers that machine lacks (fastsafetensors, instanttensor,
#                      runai-model-streamer) as wheels for its Python (PEER_PY, default 3.12:
#                      /opt/torch/.venv there), downloaded with pip here; WHEELS=0 skips them
#
# It ends by printing what `run` would carry (the tracked tree + this folder) and fails when
# that is over 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
B=${B:-build-gpu}
PEER_PY=${PEER_PY:-3.12}
PIP=${PIP:-}
[ -n "$PIP" ] || { [ -x "$ROOT/.venv/bin/pip" ] && PIP=$ROOT/.venv/bin/pip; } || PIP="python3 -m pip"
JOBS=${JOBS:-2}
mkdir -p "$B"
B=$(cd "$B" && pwd)

echo "== library, CLI, gpucheck (static json-c, liburing)"
cmake -S . -B "$B/build" -DCMAKE_BUILD_TYPE=Release -DWLIFT_STATIC_DEPS=ON -DWLIFT_TESTS=OFF >/dev/null
cmake --build "$B/build" -j"$JOBS" --target weightlift weightlift_cli gpucheck wlift_fakecuda \
	wlift_fakecufile >/dev/null
for f in weightlift gpucheck libweightlift.so.0; do
	if ldd "$B/build/$f" | grep -qE 'libjson-c|liburing'; then
		echo "gpu-bundle: $f still links json-c or liburing dynamically" >&2
		exit 1
	fi
done

echo "== Python extension"
# The library's sources once (position independent, hidden symbols: setup.py's flags), then
# _native.c and the link per Python version (their headers differ, the library does not).
DEFS="-D_GNU_SOURCE -DWLIFT_BUILDING"
pkg-config --exists liburing && DEFS="$DEFS -DWLIFT_HAVE_URING=1"
pkg-config --exists libcurl && DEFS="$DEFS -DWLIFT_HAVE_CURL=1"
CFLAGS="-std=gnu11 -O2 -fPIC -fvisibility=hidden -Wno-unused-parameter $(pkg-config --cflags json-c) $DEFS -Iinclude -Isrc"
LIBS="-l:libjson-c.a"
pkg-config --exists liburing && LIBS="$LIBS -l:liburing.a"
pkg-config --exists libcurl && LIBS="$LIBS $(pkg-config --libs libcurl)"
LIBS="$LIBS -lcrypto -lpthread -ldl"
obj=$B/pyobj
mkdir -p "$obj"
find src -name '*.c' | sort | while read -r s; do echo "$s"; done >"$obj/sources"
# shellcheck disable=SC2086
xargs -P "$JOBS" -I{} sh -c 'o="$1/$(echo "$2" | tr / _).o"; [ "$o" -nt "$2" ] || gcc '"$CFLAGS"' -c "$2" -o "$o"' _ "$obj" {} <"$obj/sources"
if [ -z "${PYTHONS:-}" ]; then
	PYTHONS=$(ls /root/.pyenv/versions 2>/dev/null || true)
fi
built=""
for v in $PYTHONS; do
	py=/root/.pyenv/versions/$v/bin/python3
	[ -x "$py" ] || py=$(command -v "python$v" || true)
	[ -n "$py" ] && [ -x "$py" ] || { echo "  $v: no interpreter"; continue; }
	tag=$("$py" -c 'import sys; print("cp%d%d" % sys.version_info[:2]) if sys.version_info >= (3, 10) else print("")')
	[ -n "$tag" ] || { echo "  $v: older than 3.10 (requires-python), skipped"; continue; }
	inc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
	suf=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
	pkg=$B/py/$tag/weightlift
	rm -rf "$pkg"
	mkdir -p "$pkg"
	cp -r python/weightlift/. "$pkg/"
	rm -f "$pkg/_native.c"
	find "$pkg" -name '__pycache__' -prune -exec rm -rf {} +
	# shellcheck disable=SC2086
	gcc $CFLAGS -I"$inc" -c python/weightlift/_native.c -o "$obj/_native.$tag.o"
	# shellcheck disable=SC2086
	gcc -shared -o "$pkg/_native$suf" "$obj/_native.$tag.o" "$obj"/src_*.o $LIBS
	PYTHONPATH=$B/py/$tag "$py" -c 'import weightlift._native' 2>/dev/null &&
		echo "  $v: $tag ok ($(du -h "$pkg/_native$suf" | cut -f1))" ||
		echo "  $v: $tag built (its import needs numpy or another module missing here)"
	built="$built $tag"
done
[ -n "$built" ] || { echo "gpu-bundle: no Python extension built" >&2; exit 1; }

echo "== shared libraries beyond glibc (used there only where missing)"
mkdir -p "$B/lib"
for f in "$B/build/weightlift" "$B/build/gpucheck" "$B/build/libweightlift.so.0" "$B"/py/*/weightlift/_native*.so; do
	ldd "$f" | awk '$3 ~ /^\// {print $3}'
done | sort -u | while read -r l; do
	case $(basename "$l") in
	libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | ld-linux* | libresolv.so.* | libweightlift.so*) ;;
	*) cp -L "$l" "$B/lib/" ;;
	esac
done
echo "  $(ls "$B/lib" | wc -l) libraries, $(du -sh "$B/lib" | cut -f1)"

if [ "${WHEELS:-1}" != 0 ]; then
	echo "== peers' wheels for Python $PEER_PY"
	mkdir -p "$B/wheels"
	abi=cp${PEER_PY/./}
	# shellcheck disable=SC2086
	$PIP download --no-deps --only-binary=:all: -d "$B/wheels" --python-version "$PEER_PY" \
		--implementation cp --abi "$abi" --abi abi3 --abi none \
		--platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
		--platform manylinux_2_34_x86_64 --platform any \
		fastsafetensors instanttensor runai-model-streamer >"$B/wheels/pip.log" 2>&1 ||
		echo "  pip download failed (see $B/wheels/pip.log): those peers will be reported unavailable there"
	ls "$B/wheels" | grep '\.whl$' | sed 's/^/  /' || true
fi

# What the device tool would carry: the tracked tree plus this folder (the build dir's
# object files are not needed there).
rm -rf "$B/pyobj" "$B/build/CMakeFiles" "$B/build/fake/CMakeFiles"
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carry=$(du -sb "$B" | cut -f1)
total=$((tree + carry))
awk -v t="$tree" -v c="$carry" -v n="$(basename "$B")" 'BEGIN {
	printf "== carried: tree %.1f MiB + %s %.1f MiB = %.1f MiB (limit 64 MiB)\n",
		t / 1048576, n, c / 1048576, (t + c) / 1048576 }'
[ "$total" -le $((64 << 20)) ] || { echo "gpu-bundle: over 64 MiB" >&2; exit 1; }
