#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# I/O fault injection for every read path: faultfs (tests/fault/faultfs.c, a FUSE mirror of a
# directory) returns EIO, short reads and premature EOF after N bytes, and the checkpoints it
# serves are loaded with pread, io_uring, O_DIRECT (pread and io_uring) and mapped reads. FUSE
# is what reaches io_uring: its completions are written by the kernel, past any LD_PRELOAD
# shim. Each case must end in the right bytes (compared with the backing files) or a clear
# error naming the file and offset (exit 3 for I/O in the CLI), never in wrong data, a crash
# or a hang; the ASan build's run checks that failed loads leak nothing.
# Environment (tests/CMakeLists.txt): FAULTFS (empty when libfuse3 was not found),
# FAULT_CHECK, WEIGHTLIFT, WLIFT_TEST_TMP. Skips (77) without libfuse3, /dev/fuse or the
# right to mount.
. "$(dirname "$0")/../cli/lib.sh"

[ -n "${FAULTFS:-}" ] || { echo "SKIP: faultfs not built (libfuse3 not found)"; exit 77; }
[ -c /dev/fuse ] && [ -r /dev/fuse ] && [ -w /dev/fuse ] ||
	{ echo "SKIP: /dev/fuse not usable"; exit 77; }
command -v timeout >/dev/null || { echo "SKIP: timeout(1) not found"; exit 77; }

REF=$T/ref
MNT=$T/mnt
mkdir -p "$REF" "$MNT"
"$FAULT_CHECK" gen "$REF" || { echo "FAIL: fault_check gen"; exit 1; }

# --- mount -----------------------------------------------------------------------------------
FS_PID=
WD_PID=
mounted() { grep -qF " $MNT fuse" /proc/self/mounts; }
unmount() {
	[ -z "$WD_PID" ] || kill "$WD_PID" 2>/dev/null
	WD_PID=
	if [ -n "$FS_PID" ]; then
		kill -TERM "$FS_PID" 2>/dev/null # libfuse unmounts on SIGTERM
		for _ in $(seq 50); do kill -0 "$FS_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$FS_PID" 2>/dev/null
		FS_PID=
	fi
	if mounted; then
		fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
	fi
}
trap 'unmount; chmod -R u+rwX "$T" 2>/dev/null; rm -rf "$T"' EXIT

opts=()
command -v fusermount3 >/dev/null && opts=(-o auto_unmount) # unmounted even if we are killed
# Bounded: the whole test has 120 s (ctest), the file system a little less.
timeout -k 5 110 "$FAULTFS" "$REF" "$MNT" "${opts[@]}" >"$T/faultfs.log" 2>&1 &
FS_PID=$!
# If this script is killed (a ctest timeout), stop the file system at once: timeout(1) runs it
# in a process group of its own, out of reach of a kill of ours.
(while kill -0 $$ 2>/dev/null; do sleep 0.2; done; kill -TERM "$FS_PID") >/dev/null 2>&1 &
WD_PID=$!
for _ in $(seq 100); do
	mounted && break
	kill -0 "$FS_PID" 2>/dev/null || break
	sleep 0.05
done
if ! mounted; then
	log=$(head -c 500 "$T/faultfs.log")
	unmount
	case "$log" in
	*"ermission denied"* | *"not permitted"* | *"No such device"* | *"fusermount"*)
		echo "SKIP: cannot mount a FUSE file system here: $log"
		exit 77
		;;
	esac
	echo "FAIL: faultfs did not mount: $log"
	exit 1
fi

# --- the C API: every read path, the bytes compared ------------------------------------------
# fc SPEC PATH EXPECT MODE...: load MNT/SPEC/PATH (fault_check load, bounded by a timeout).
fc() {
	local spec=$1 path=$2
	shift 2
	NCHECK=$((NCHECK + 1))
	RC=0
	timeout -k 5 30 "$FAULT_CHECK" load "$REF" "$MNT/$spec" "$path" "$@" >"$OUT" 2>"$ERR" ||
		RC=$?
	cat "$OUT"
	if [ "$RC" != 0 ]; then
		fail "fault_check $spec $path $* (exit $RC)"
	fi
}
M=model.safetensors
SIZE=$(stat -c %s "$REF/$M")
SH=sharded
COPY=(pread uring direct-pread direct-uring)

# No fault: every path reads the right bytes through FUSE (O_DIRECT with fix-up moves).
fc ok $M ok all
fc direct $M ok all
fc ok $SH ok all
# Short reads (direct_io passes them to the caller as they are): the engine asks for the rest.
fc short=1000,direct $M ok "${COPY[@]}"
fc short=65537,direct,delay=2 $M ok "${COPY[@]}" # late completions, several in flight
fc short=511,from=4000000,direct $M ok "${COPY[@]}"
fc short=4097,direct $SH ok "${COPY[@]}"
# Premature EOF with the size unchanged: "unexpected end of file" at the offset.
fc eof=3000000,direct $M eof:3000000 "${COPY[@]}"
fc eof=$((SIZE - 1)),direct $M eof:$((SIZE - 1)) "${COPY[@]}"
# Through the page cache (and for mapped reads whatever the open mode) the kernel takes a
# short reply for the end of the file and shrinks it: a truncation error (WLIFT_ECHANGED while
# loading, WLIFT_ETRUNCATED when a later open sees the new size). The new size sticks to the
# spec path's inode for a while, so these cases use spec paths of their own (from=0 is a no-op).
fc short=1000,direct,from=0 $M trunc mmap
fc eof=3000000,direct,from=0 $M trunc mmap
fc eof=3000000 $M trunc all
fc short=100000,from=2000000 $M trunc all
# EIO at or after byte N: in the length prefix, in the JSON header (or its 64 KiB first read:
# the open fails), in the data just past that read, in the middle, at the last byte; with and
# without direct_io; in the second shard.
for n in 4 100 65536 2000000 $((SIZE - 1)); do
	fc eio=$n $M eio:$n all
	fc eio=$n,direct $M eio:$n all
done
fc eio=1500000,direct $SH eio:1500000 all
grep_out "model-00002-of-00002.safetensors"

# --- the CLI: exit 3 for I/O, the message names the file and the offset ----------------------
P=$MNT/eio=2000000,direct/$M
for args in "--strategy pread --direct off" "--strategy uring --direct off" \
	"--strategy pread --direct on" "--strategy uring --direct on" "--mmap"; do
	# shellcheck disable=SC2086
	expect_rc 3 timeout 30 "$WEIGHTLIFT" load -q $args "$P"
	grep_err "weightlift: $P: "
	grep_err "failed"
	grep_err "at offset "
	NCHECK=$((NCHECK + 1))
	[ "$(wc -l <"$ERR")" -eq 1 ] || fail "load $args: expected one error line"
done
expect_rc 3 timeout 30 "$WEIGHTLIFT" load --json --strategy uring --direct on "$P"
pycheck '
err = j["errors"][0]
assert err["code"] == "EIO" and err["rule"] == "io.read", err
assert err["file"].endswith("eio=2000000,direct/model.safetensors"), err
assert 2000000 - (1 << 20) < err["offset"] < '"$SIZE"', err
assert str(err["offset"]) in err["message"], err
'
expect_rc 3 timeout 30 "$WEIGHTLIFT" verify "$P"
expect_rc 3 timeout 30 "$WEIGHTLIFT" inspect "$MNT/eio=100/$M"
grep_err "at offset 0"
expect_rc 3 timeout 30 "$WEIGHTLIFT" load -q --strategy uring "$MNT/eof=3000000,direct/$M"
grep_err "unexpected end of file at offset"
# verify hashes what short reads delivered: the digests of the backing file.
expect_rc 0 timeout 30 "$WEIGHTLIFT" verify --json "$REF/$M"
cp "$OUT" "$T/expect.json"
expect_rc 0 timeout 30 "$WEIGHTLIFT" verify --expect "$T/expect.json" "$MNT/short=1000,direct/$M"
grep_out "all digests match"

# --- the file system survived it all (no request left hanging) -------------------------------
NCHECK=$((NCHECK + 1))
kill -0 "$FS_PID" 2>/dev/null && mounted || fail "faultfs died: $(head -c 500 "$T/faultfs.log")"
finish
