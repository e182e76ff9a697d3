#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `weightlift load --experts`: on a synthetic MoE checkpoint each rank reads the bytes of the
# routed experts it owns plus every other tensor (block and round-robin placement, even and
# uneven expert counts); the ranks together read each expert once; bad values are usage
# errors.
. "$(dirname "$0")/lib.sh"
python3 "$HERE/moe_fixture.py" "$D" 8 2 || { echo "FAIL: fixture"; exit 1; }
M=$D/moe.safetensors

# expected bytes_read of rank r of w: the shared tensors plus the owned experts' (python).
want() { # placement world rank nexperts
	python3 - "$D/moe.json" "$@" <<'PY'
import json, re, sys
sizes = json.load(open(sys.argv[1]))
place, w, r, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
base, rem = divmod(n, w)
lo = r * base + min(r, rem)
hi = lo + base + (r < rem)
tot = 0
for name, b in sizes.items():
    m = re.search(r"(?:^|\.)experts\.(\d+)\.", name)
    if m:
        e = int(m.group(1))
        if not (e % w == r if place == "round-robin" else lo <= e < hi):
            continue
    tot += b
print(tot)
PY
}

for place in block round-robin; do
	for w in 2 3; do
		for ((r = 0; r < w; r++)); do
			expect_rc 0 "$WEIGHTLIFT" load --json --direct off --rank $r --world $w \
				--experts $place "$M" || continue
			exp=$(want $place $w $r 8)
			pycheck "assert j['bytes_read'] == $exp and j['bytes'] == $exp, (j['bytes_read'], $exp)"
		done
	done
done
# an explicit count larger than the checkpoint's: experts 8 and 9 exist on nobody's disk
expect_rc 0 "$WEIGHTLIFT" load --json --direct off --rank 3 --world 4 --experts block:10 "$M"
pycheck "assert j['bytes_read'] == $(want block 4 3 10), j"
# fewer experts than the checkpoint holds: an error naming the tensor
expect_rc 3 "$WEIGHTLIFT" load --rank 0 --world 2 --experts block:4 "$M"   # -EINVAL, as other load.* option errors
grep_err "experts.4."
grep_err "4 experts"
# with a shard spec too: the experts filter first, then each kept tensor's block
printf '{"*.experts.*": 0}' >"$D/spec.json"
expect_rc 0 "$WEIGHTLIFT" load --json --direct off --rank 0 --world 2 --experts block \
	--shard-spec "$D/spec.json" "$M"
pycheck "assert j['bytes_read'] < $(want block 2 0 8), j"
# usage errors
expect_rc 2 "$WEIGHTLIFT" load --experts nope --rank 0 --world 2 "$M"
expect_rc 2 "$WEIGHTLIFT" load --experts block:0 --rank 0 --world 2 "$M"
expect_rc 2 "$WEIGHTLIFT" load --experts block:x --rank 0 --world 2 "$M"
expect_rc 0 "$WEIGHTLIFT" load --help
grep_out "--experts"
finish
