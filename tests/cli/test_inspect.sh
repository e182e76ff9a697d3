#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `weightlift inspect`: the table, --json against what the fixture writer put in each header,
# several URIs, sharded checkpoints (index.json and directory), file:// URIs, help.
. "$(dirname "$0")/lib.sh"
fixtures

S=$D/small.safetensors

# --- table -------------------------------------------------------------------------------
expect_rc 0 "$WEIGHTLIFT" inspect "$S"
for want in "NAME" "DTYPE" "SHAPE" "BYTES" "DATA_OFFSETS" \
	"embed.weight" "[4, 3]" "layer.0.bias" "F16" "BOOL" "BF16" "[0, 4]" \
	"format = pt" "note = test" "8 tensors"; do
	grep_out "$want"
done
# Each tensor's row: name, dtype, shape, bytes and offsets as in the header.
python3 - "$D/expected.json" "$OUT" <<'PY' || fail "table rows"
import json, sys
e = json.load(open(sys.argv[1]))["small.safetensors"]
rows = {l.split()[0]: l for l in open(sys.argv[2]) if l.strip()}
for name, t in e["tensors"].items():
    row = rows[name].split(None, 2)
    assert row[1] == t["dtype"], (name, row)
    rest = row[2]
    shape = "[" + ", ".join(str(s) for s in t["shape"]) + "]"
    assert rest.startswith(shape), (name, rest)
    tail = rest[len(shape):].split()
    assert tail[0] == str(t["nbytes"]), (name, tail)
    assert " ".join(tail[1:3]) == "[%d, %d]" % tuple(t["data_offsets"]), (name, tail)
PY
expect_rc 0 "$WEIGHTLIFT" inspect "$D/nometa.safetensors"
grep_out "metadata: none"

# --- JSON ----------------------------------------------------------------------------------
expect_rc 0 "$WEIGHTLIFT" inspect --json "$S"
pycheck '
x = e["small.safetensors"]
assert j["schema"] == 1
assert j["errors"] == []
assert j["uris"] == [x["path"]]
assert len(j["files"]) == 1
f = j["files"][0]
assert f["path"] == x["path"], f
assert f["size"] == x["size"] and f["header_len"] == x["header_len"], f
assert j["metadata"] == x["metadata"], j["metadata"]
assert f["metadata"] == x["metadata"]
names = [t["name"] for t in j["tensors"]]
assert sorted(names) == sorted(x["order"]), names
begins = [t["data_offsets"][0] for t in j["tensors"]]
assert begins == sorted(begins), begins      # file order: by data offset
for t in j["tensors"]:
    w = x["tensors"][t["name"]]
    assert t["dtype"] == w["dtype"] and t["shape"] == w["shape"], t
    assert t["data_offsets"] == w["data_offsets"] and t["nbytes"] == w["nbytes"], t
    assert t["file"] == x["path"], t
    assert "sha256" not in t
'
# --json may come before or after the URI; no metadata is null, not {}.
expect_rc 0 "$WEIGHTLIFT" inspect "$D/nometa.safetensors" --json
pycheck 'assert j["metadata"] is None and j["files"][0]["metadata"] is None, j'
# Not a terminal: exactly one line.
NCHECK=$((NCHECK + 1))
[ "$(wc -l <"$OUT")" = 1 ] || fail "--json to a pipe is not one line"

# --- several URIs -------------------------------------------------------------------------
expect_rc 0 "$WEIGHTLIFT" inspect "$S" "$D/nometa.safetensors"
grep_out "embed.weight"
grep_out "$D/nometa.safetensors"
expect_rc 0 "$WEIGHTLIFT" inspect --json "$S" "$D/nometa.safetensors"
pycheck '
assert len(j["uris"]) == 2 and len(j["files"]) == 2, j["files"]
assert len(j["tensors"]) == 8 + 2
assert {t["file"] for t in j["tensors"]} == {e["small.safetensors"]["path"], e["nometa.safetensors"]["path"]}
assert j["metadata"] == {"format": "pt", "note": "test"}
'

# --- file:// URI ---------------------------------------------------------------------------
expect_rc 0 "$WEIGHTLIFT" inspect --json "file://$S"
pycheck 'assert len(j["tensors"]) == 8 and j["errors"] == []'

# --- sharded: index.json and the directory -------------------------------------------------
for uri in "$D/sharded/model.safetensors.index.json" "$D/sharded" "$D/sharded/"; do
	expect_rc 0 "$WEIGHTLIFT" inspect --json "$uri" || continue
	pycheck '
assert len(j["files"]) == 2, j["files"]
names = sorted(t["name"] for t in j["tensors"])
assert names == ["s.a", "s.b", "s.c"], names
for t in j["tensors"]:
    key = "sharded/" + os.path.basename(t["file"])
    w = e[key]["tensors"][t["name"]]
    assert t["data_offsets"] == w["data_offsets"] and t["shape"] == w["shape"], t
'
done
expect_rc 0 "$WEIGHTLIFT" inspect "$D/sharded"
grep_out "in 2 files"
grep_out "FILE"

# --- help ------------------------------------------------------------------------------------
expect_rc 0 "$WEIGHTLIFT" inspect --help
grep_out "usage: weightlift inspect"
expect_rc 0 "$WEIGHTLIFT" help inspect
grep_out "usage: weightlift inspect"
finish
