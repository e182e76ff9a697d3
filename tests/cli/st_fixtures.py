# SPDX-License-Identifier: Apache-2.0
"""Test checkpoints for the CLI integration tests, written with the Python standard library
only (struct + json), so that the tests need nothing beyond python3.

    python3 st_fixtures.py DIR [--big MIB]

writes into DIR:
  small.safetensors      several dtypes, a scalar, a zero-sized tensor, __metadata__
  nometa.safetensors     two tensors, no __metadata__
  sharded/               model-0000{1,2}-of-00002.safetensors + model.safetensors.index.json
  big.safetensors        (with --big) one F32 tensor per MiB-ish block, MIB MiB in all
  truncated_data.safetensors, truncated_header.safetensors, lfs.safetensors,
  html.safetensors, badjson.safetensors, overlap.safetensors, gap.safetensors,
  baddtype.safetensors, badshape.safetensors, hugelen.safetensors, empty.safetensors
  expected.json          for each valid file: its header length, size, metadata and, per
                         tensor, dtype, shape, data_offsets, nbytes, sha256, and the XOR of
                         the file's tensors as `weightlift load --touch` computes it
"""
import hashlib
import json
import os
import struct
import sys

DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "I16": 16, "U16": 16,
    "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "F64": 64, "I64": 64, "U64": 64,
}


def tensor_bytes(name, dtype, shape):
    """Deterministic, name-dependent content."""
    n = 1
    for s in shape:
        n *= s
    nbytes = n * DTYPE_BITS[dtype] // 8
    seed = hashlib.sha256(name.encode()).digest()
    out = bytearray()
    i = 0
    while len(out) < nbytes:
        out += hashlib.sha256(seed + i.to_bytes(8, "little")).digest()
        i += 1
    return bytes(out[:nbytes])


def header_bytes(header):
    """JSON header padded with spaces to a multiple of 8, as the reference writer does."""
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return h


def build(tensors, metadata=None):
    """tensors: list of (name, dtype, shape). Returns (file bytes, header dict, datas)."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = bytearray()
    datas = {}
    for name, dtype, shape in tensors:
        b = tensor_bytes(name, dtype, shape)
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [len(data), len(data) + len(b)]}
        datas[name] = b
        data += b
    h = header_bytes(header)
    return struct.pack("<Q", len(h)) + h + bytes(data), header, datas


def raw(header_obj_or_bytes, data=b""):
    h = header_obj_or_bytes
    if not isinstance(h, bytes):
        h = header_bytes(h)
    return struct.pack("<Q", len(h)) + h + data


def xor_touch(datas_in_order):
    """The XOR pass of `weightlift load --touch`: 8-byte little-endian words of every tensor,
    then each tail byte shifted by 8 * (its index in the tensor mod 8)."""
    x = 0
    for b in datas_in_order:
        full = len(b) // 8 * 8
        for k in range(0, full, 8):
            x ^= int.from_bytes(b[k:k + 8], "little")
        for k in range(full, len(b)):
            x ^= b[k] << (8 * (k % 8))
    return x


def describe(path, header, datas, size, hlen):
    tensors = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        tensors[name] = dict(t, nbytes=t["data_offsets"][1] - t["data_offsets"][0],
                             sha256=hashlib.sha256(datas[name]).hexdigest())
    order = sorted(tensors, key=lambda n: tensors[n]["data_offsets"][0])
    return {"path": path, "size": size, "header_len": hlen,
            "metadata": header.get("__metadata__"), "tensors": tensors, "order": order,
            "xor": "%016x" % xor_touch([datas[n] for n in order])}


def write(path, content):
    with open(path, "wb") as f:
        f.write(content)


def main():
    out = sys.argv[1]
    big_mib = 0
    if "--big" in sys.argv:
        big_mib = int(sys.argv[sys.argv.index("--big") + 1])
    os.makedirs(out, exist_ok=True)
    expected = {}

    def valid(name, tensors, metadata=None):
        path = os.path.join(out, name)
        content, header, datas = build(tensors, metadata)
        write(path, content)
        hlen = struct.unpack("<Q", content[:8])[0]
        expected[name] = describe(path, header, datas, len(content), hlen)
        return content, header, datas

    valid("small.safetensors", [
        ("embed.weight", "F32", [4, 3]),
        ("layer.0.bias", "F16", [5]),          # 10 bytes: an odd tail for the XOR pass
        ("layer.0.mask", "BOOL", [2, 2]),
        ("layer.0.ids", "I64", [3]),
        ("scale", "F64", []),                  # scalar
        ("empty", "F32", [0, 4]),              # zero-sized
        ("norm.weight", "BF16", [7]),
        ("q.u8", "U8", [13]),
    ], {"format": "pt", "note": "test"})
    valid("nometa.safetensors", [("a", "F32", [2, 2]), ("b", "I32", [3])])

    # A sharded checkpoint with its index.
    shard_dir = os.path.join(out, "sharded")
    os.makedirs(shard_dir, exist_ok=True)
    weight_map = {}
    shards = [("model-00001-of-00002.safetensors", [("s.a", "F32", [8]), ("s.b", "F16", [6])]),
              ("model-00002-of-00002.safetensors", [("s.c", "I8", [9])])]
    total = 0
    for fname, tensors in shards:
        content, header, datas = valid(os.path.join("sharded", fname), tensors, {"format": "pt"})
        for n, _, _ in tensors:
            weight_map[n] = fname
            total += len(datas[n])
    with open(os.path.join(shard_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)

    if big_mib:
        # 64 tensors of big_mib/64 MiB each (F32).
        per = big_mib * (1 << 20) // 64 // 4
        tensors = [("big.%02d" % i, "F32", [per]) for i in range(64)]
        path = os.path.join(out, "big.safetensors")
        header = {}
        off = 0
        for n, dt, shape in tensors:
            header[n] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + shape[0] * 4]}
            off += shape[0] * 4
        h = header_bytes(header)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h)
            # Cheap deterministic content: a repeated pattern (the tests check sizes and
            # memory here, not digests).
            block = bytes(range(256)) * 4096
            left = off
            while left:
                k = min(left, len(block))
                f.write(block[:k])
                left -= k
        expected["big.safetensors"] = {"path": path, "size": 8 + len(h) + off,
                                       "header_len": len(h), "nbytes": off}

    # Invalid files.
    good, header, _ = build([("w", "F32", [4, 4]), ("v", "F32", [4])], {"format": "pt"})
    write(os.path.join(out, "truncated_data.safetensors"), good[:-10])
    hlen = struct.unpack("<Q", good[:8])[0]
    write(os.path.join(out, "truncated_header.safetensors"), good[:8 + hlen // 2])
    write(os.path.join(out, "lfs.safetensors"),
          b"version https://git-lfs.github.com/spec/v1\n"
          b"oid sha256:4d7a2146f8b8c4bbc8dd6ec1d4c5e2c33ab5f52d0f0e1b5b3ba7cd2d6c1e1f3a\n"
          b"size 548105171\n")
    write(os.path.join(out, "html.safetensors"),
          b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>"
          b"<body><h1>Not Found</h1></body></html>\n")
    write(os.path.join(out, "badjson.safetensors"), raw(b'{"w": {"dtype": "F32", "sha'))
    write(os.path.join(out, "overlap.safetensors"), raw(
        {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
         "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, bytes(24)))
    write(os.path.join(out, "gap.safetensors"), raw(
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
         "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}}, bytes(24)))
    write(os.path.join(out, "baddtype.safetensors"), raw(
        {"a": {"dtype": "F31", "shape": [2], "data_offsets": [0, 8]}}, bytes(8)))
    write(os.path.join(out, "badshape.safetensors"), raw(
        {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8)))
    write(os.path.join(out, "hugelen.safetensors"), struct.pack("<Q", 1 << 40) + b"{}      ")
    write(os.path.join(out, "empty.safetensors"), b"")

    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


if __name__ == "__main__":
    main()
