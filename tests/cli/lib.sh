# SPDX-License-Identifier: Apache-2.0
# Shared helpers of the CLI integration tests (sourced by tests/cli/test_*.sh).
# Environment (set by tests/CMakeLists.txt): WEIGHTLIFT = the built binary, WLIFT_TEST_TMP =
# scratch directory. Exit 77 = skipped.
set -u

: "${WEIGHTLIFT:?WEIGHTLIFT must name the weightlift binary}"
: "${WLIFT_TEST_TMP:=${TMPDIR:-/tmp}}"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v python3 >/dev/null || { echo "SKIP: python3 not found"; exit 77; }

mkdir -p "$WLIFT_TEST_TMP"
T=$(mktemp -d "$WLIFT_TEST_TMP/cli_$(basename "$0" .sh).XXXXXX")
trap 'chmod -R u+rwX "$T" 2>/dev/null; rm -rf "$T"' EXIT
D=$T/data
OUT=$T/stdout
ERR=$T/stderr
NFAIL=0
NCHECK=0

# Generate the fixtures (extra arguments are passed on, e.g. --big 64).
fixtures() {
	python3 "$HERE/st_fixtures.py" "$D" "$@" || { echo "FAIL: fixture generation"; exit 1; }
}

fail() {
	NFAIL=$((NFAIL + 1))
	echo "FAIL: $*"
	if [ -s "$ERR" ]; then echo "  stderr: $(head -c 2000 "$ERR")"; fi
}

# run CMD...: run with stdout in $OUT, stderr in $ERR; the exit status in $RC.
run() {
	RC=0
	"$@" >"$OUT" 2>"$ERR" || RC=$?
}

# expect_rc WANT CMD...: run CMD and check its exit status.
expect_rc() {
	local want=$1
	shift
	NCHECK=$((NCHECK + 1))
	run "$@"
	if [ "$RC" != "$want" ]; then
		fail "exit $RC, want $want: $*"
		return 1
	fi
	return 0
}

# expect_rc_in "A B" CMD...: the exit status must be one of the listed values.
expect_rc_in() {
	local want=$1
	shift
	NCHECK=$((NCHECK + 1))
	run "$@"
	case " $want " in
	*" $RC "*) return 0 ;;
	esac
	fail "exit $RC, want one of {$want}: $*"
	return 1
}

# grep_out PATTERN [FILE]: fixed-string search in $OUT (or FILE).
grep_out() {
	NCHECK=$((NCHECK + 1))
	grep -qF -- "$1" "${2:-$OUT}" || fail "'$1' not in $(basename "${2:-$OUT}"): $(head -c 600 "${2:-$OUT}")"
}
grep_err() { grep_out "$1" "$ERR"; }
no_out() {
	NCHECK=$((NCHECK + 1))
	[ ! -s "$OUT" ] || fail "stdout not empty: $(head -c 300 "$OUT")"
}

# pycheck 'python statements' [FILE]: run Python with j = the JSON in $OUT (or FILE),
# e = expected.json of the fixtures (when it exists). Assertion errors fail the check.
pycheck() {
	NCHECK=$((NCHECK + 1))
	local msg
	if ! msg=$(python3 - "${2:-$OUT}" "$D/expected.json" "$1" 2>&1 <<'EOF'
import json, os, sys
with open(sys.argv[1]) as f:
    text = f.read()
assert text.count("\n") <= 1 or text.lstrip().startswith("{"), "not one JSON object"
j = json.loads(text)
e = json.load(open(sys.argv[2])) if os.path.exists(sys.argv[2]) else {}
exec(sys.argv[3])
EOF
	); then
		fail "JSON check: $1"
		echo "  $msg" | tail -n 5
		echo "  json: $(head -c 800 "${2:-$OUT}")"
	fi
}

finish() {
	if [ "$NFAIL" -ne 0 ]; then
		echo "$NFAIL of $NCHECK checks failed"
		exit 1
	fi
	echo "all $NCHECK checks passed"
	exit 0
}
