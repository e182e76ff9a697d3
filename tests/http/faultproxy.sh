# SPDX-License-Identifier: Apache-2.0
# Start the fault proxy (tests/http/faultproxy.py) for a test (sourced; needs free_port-free
# helpers only): fp_start UPSTREAM_HOST:PORT DIR [RULES] starts it in front of that server,
# sets FP_PORT, FP_URL=http://127.0.0.1:$FP_PORT and FP_LOG (one line per request);
# fp_rules JSON replaces the rules (and resets the counters); fp_stats prints its JSON
# statistics; fp_stop (also to be called from the caller's EXIT trap) stops it. Bounded:
# the proxy exits by itself after FP_MAX_SECONDS (default 900).
FP_PID=
FP_DIR_=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

fp_start() {
	local up=$1 dir=$2 rules=${3:-[]}
	mkdir -p "$dir"
	rm -f "$dir/fp.port"
	FP_LOG=$dir/fp.log
	: >"$FP_LOG"
	python3 "$FP_DIR_/faultproxy.py" --upstream "$up" --portfile "$dir/fp.port" \
		--rules "$rules" --log "$FP_LOG" --max-seconds "${FP_MAX_SECONDS:-900}" &
	FP_PID=$!
	for _ in $(seq 100); do [ -s "$dir/fp.port" ] && break; sleep 0.05; done
	[ -s "$dir/fp.port" ] || { echo "FAIL: the fault proxy did not start"; exit 1; }
	FP_PORT=$(cat "$dir/fp.port")
	FP_URL=http://127.0.0.1:$FP_PORT
}

fp_rules() {
	curl -sf --max-time 5 -X PUT --data-binary "$1" "$FP_URL/__faultproxy__/rules" >/dev/null ||
		{ echo "FAIL: fault proxy rules refused: $1"; return 1; }
	: >"$FP_LOG"
}

fp_stats() { curl -sf --max-time 5 "$FP_URL/__faultproxy__/stats"; }

fp_stop() {
	if [ -n "$FP_PID" ]; then
		kill "$FP_PID" 2>/dev/null
		wait "$FP_PID" 2>/dev/null
		FP_PID=
	fi
}
