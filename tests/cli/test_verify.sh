#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `weightlift verify`: sha256 of every tensor against Python's hashlib, --json, batching,
# --expect with a previous output and with a {name: sha256} map, mismatches, bad input.
. "$(dirname "$0")/lib.sh"
fixtures

S=$D/small.safetensors

# last_line TEXT: the last line of stdout starts with TEXT.
last_line() {
	NCHECK=$((NCHECK + 1))
	case "$(tail -n 1 "$OUT")" in
	"$1"*) ;;
	*) fail "last line of stdout is '$(tail -n 1 "$OUT")', want '$1...'" ;;
	esac
}
# no_ok: no line of stdout says OK.
no_ok() {
	NCHECK=$((NCHECK + 1))
	! grep -q "OK" "$OUT" || fail "stdout says OK: $(grep "OK" "$OUT" | head -3)"
}

# --- text: "<sha256>  <name>" lines ---------------------------------------------------------
expect_rc 0 "$WEIGHTLIFT" verify "$S"
python3 - "$D/expected.json" "$OUT" <<'PY' || fail "sha256 lines"
import json, sys
e = json.load(open(sys.argv[1]))["small.safetensors"]["tensors"]
got = {}
for line in open(sys.argv[2]):
    parts = line.split()
    if len(parts) == 2 and len(parts[0]) == 64:
        got[parts[1]] = parts[0]
want = {n: t["sha256"] for n, t in e.items()}
assert got == want, (got, want)
PY
grep_out "OK, 8 tensors"

# --- JSON ----------------------------------------------------------------------------------
expect_rc 0 "$WEIGHTLIFT" verify --json "$S"
cp "$OUT" "$T/small.verify.json"
pycheck '
x = e["small.safetensors"]
assert j["schema"] == 1 and j["ok"] is True and j["errors"] == [], j
assert j["files"][0]["size"] == x["size"]
assert len(j["tensors"]) == 8
for t in j["tensors"]:
    w = x["tensors"][t["name"]]
    assert t["sha256"] == w["sha256"], t
    assert t["data_offsets"] == w["data_offsets"] and t["nbytes"] == w["nbytes"], t
# the zero-sized tensor hashes to the digest of no bytes
assert [t["sha256"] for t in j["tensors"] if t["name"] == "empty"] == ["e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]
'

# --- batches: tiny --batch-size loads tensor by tensor; same digests -----------------------
expect_rc 0 "$WEIGHTLIFT" verify --json --batch-size 16 --threads 1 "$S"
pycheck '
for t in j["tensors"]:
    assert t["sha256"] == e["small.safetensors"]["tensors"][t["name"]]["sha256"], t
'
expect_rc 2 "$WEIGHTLIFT" verify --batch-size 0 "$S"
expect_rc 2 "$WEIGHTLIFT" verify --batch-size 12Q "$S"
expect_rc 2 "$WEIGHTLIFT" verify --threads 0 "$S"

# --- several URIs, sharded -----------------------------------------------------------------
expect_rc 0 "$WEIGHTLIFT" verify --json "$S" "$D/nometa.safetensors" "$D/sharded"
pycheck '
assert len(j["tensors"]) == 8 + 2 + 3, len(j["tensors"])
want = {}
for v in e.values():
    if "tensors" in v:
        for n, t in v["tensors"].items():
            want[n] = t["sha256"]
for t in j["tensors"]:
    assert t["sha256"] == want[t["name"]], t
'

# --- --expect ------------------------------------------------------------------------------
expect_rc 0 "$WEIGHTLIFT" verify --expect "$T/small.verify.json" "$S"
last_line "all digests match $T/small.verify.json"
grep_out "small.safetensors: hashed 8 tensors"
expect_rc 0 "$WEIGHTLIFT" verify --json --expect "$T/small.verify.json" "$S"
pycheck 'assert j["ok"] is True and j["mismatches"] == [], j'

# a simple {name: sha256} map naming a subset
python3 - "$D/expected.json" "$T/map.json" "$T/badmap.json" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))["small.safetensors"]["tensors"]
json.dump({"embed.weight": e["embed.weight"]["sha256"], "scale": e["scale"]["sha256"]},
          open(sys.argv[2], "w"))
bad = {"embed.weight": "0" * 64, "scale": e["scale"]["sha256"], "no.such": "1" * 64}
json.dump(bad, open(sys.argv[3], "w"))
PY
expect_rc 0 "$WEIGHTLIFT" verify --expect "$T/map.json" "$S"
expect_rc 1 "$WEIGHTLIFT" verify --expect "$T/badmap.json" "$S"
grep_err "embed.weight: sha256 mismatch"
grep_err "no.such: missing"
# the verdict is the comparison's: no "OK" anywhere, FAILED with the counts last
no_ok
last_line "FAILED: 2 mismatches against $T/badmap.json (1 sha256, 1 missing, 0 extra)"
expect_rc 1 "$WEIGHTLIFT" verify --json --expect "$T/badmap.json" "$S"
pycheck '
assert j["ok"] is False
mm = {m["tensor"]: m for m in j["mismatches"]}
assert set(mm) == {"embed.weight", "no.such"}, mm
assert mm["embed.weight"]["expected"] == "0" * 64
assert mm["embed.weight"]["actual"] == e["small.safetensors"]["tensors"]["embed.weight"]["sha256"]
assert mm["no.such"]["actual"] is None
'
# a full verify output must match exactly: an extra tensor is a mismatch
expect_rc 1 "$WEIGHTLIFT" verify --expect "$T/small.verify.json" "$S" "$D/nometa.safetensors"
grep_err "not in"
no_ok
last_line "FAILED: 2 mismatches against $T/small.verify.json (0 sha256, 0 missing, 2 extra)"
# a changed tensor in a previous output
python3 - "$T/small.verify.json" "$T/changed.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
j["tensors"][0]["sha256"] = "f" * 64
json.dump(j, open(sys.argv[2], "w"))
PY
expect_rc 1 "$WEIGHTLIFT" verify --expect "$T/changed.json" "$S"
grep_err "sha256 mismatch"
no_ok
last_line "FAILED: 1 mismatch against $T/changed.json (1 sha256, 0 missing, 0 extra)"
# matching digests but a URI that cannot be read: still FAILED, never "all digests match"
expect_rc 3 "$WEIGHTLIFT" verify --expect "$T/map.json" "$S" "$T/missing.safetensors"
no_ok
last_line "FAILED: no digest mismatch against $T/map.json"
expect_rc 1 "$WEIGHTLIFT" verify -q --expect "$T/changed.json" "$S"
no_out
# unusable expect files
expect_rc 3 "$WEIGHTLIFT" verify --expect "$T/no-such-file.json" "$S"
echo '{"a": 5}' >"$T/wrong.json"
expect_rc 1 "$WEIGHTLIFT" verify --expect "$T/wrong.json" "$S"
echo 'not json' >"$T/notjson.json"
expect_rc 1 "$WEIGHTLIFT" verify --expect "$T/notjson.json" "$S"
# a tensor without a string name (fuzz/corpus/expect/crash-null-name: was a NULL dereference)
echo "{\"tensors\":[{\"name\":null,\"sha256\":\"$(printf 'a%.0s' $(seq 64))\"}]}" >"$T/nullname.json"
expect_rc 1 "$WEIGHTLIFT" verify --expect "$T/nullname.json" "$S"
grep_err "expect.format"
expect_rc 2 "$WEIGHTLIFT" verify --expect

# --- bad input -----------------------------------------------------------------------------
expect_rc 1 "$WEIGHTLIFT" verify "$D/truncated_data.safetensors"
expect_rc 1 "$WEIGHTLIFT" verify --json "$D/truncated_data.safetensors"
pycheck '
assert j["ok"] is False and len(j["errors"]) >= 1, j
assert j["errors"][0]["code"] in ("WLIFT_ETRUNCATED", "WLIFT_EHEADER_LEN"), j["errors"]
'
# one bad URI does not stop the others
expect_rc 1 "$WEIGHTLIFT" verify --json "$D/overlap.safetensors" "$S"
pycheck '
assert len(j["errors"]) == 1 and j["errors"][0]["code"] == "WLIFT_EOFFSETS", j["errors"]
assert len(j["tensors"]) == 8 and all(t["sha256"] for t in j["tensors"])
'
expect_rc 3 "$WEIGHTLIFT" verify "$T/missing.safetensors"
expect_rc 0 "$WEIGHTLIFT" verify -q "$S"
no_out

expect_rc 0 "$WEIGHTLIFT" verify --help
grep_out "usage: weightlift verify"
grep_out "--expect"
finish
