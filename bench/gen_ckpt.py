#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Write a Llama-shaped, sharded BF16 (or F16) safetensors checkpoint of about a requested size.

Benchmarks need checkpoints that look like real ones (names, shapes, shard layout, index file)
but are cheap to make: the bytes are a seeded random block reused with the block number
XOR-ed in (numpy) or stamped into its first 8 bytes (stdlib fallback), so no two blocks are
equal, nothing compresses or dedups, and the same arguments always give the same files.
The files follow the safetensors layout (8-byte LE header length, JSON header padded with
spaces to a multiple of 8, data); tensors are stored in model order, not the reference
writer's order, which readers must not rely on anyway. The index is written last, so its
presence means the checkpoint is complete.

usage: gen_ckpt.py OUTDIR --size 4G [--shard-size 1G] [--seed 0] [--dtype BF16|F16]
"""
import argparse
import json
import os
import struct
import sys

try:
    import numpy as np
except ImportError:  # stdlib fallback: slower, same layout
    np = None

GiB = 1 << 30
BLOCK = 16 << 20  # bytes of random data reused for every block

# (hidden, intermediate, heads, kv_heads, vocab): TinyLlama-1.1B and Llama-2-7B dimensions.
SMALL = (2048, 5632, 32, 4, 32000)
LARGE = (4096, 11008, 32, 32, 32000)


def parse_size(s):
    s = s.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if s and s[-1] in mult:
        return int(float(s[:-1]) * mult[s[-1]])
    return int(s)


def tensors_for(size):
    """The tensor list (name, shape) of a Llama model whose layer count makes ~size bytes."""
    hidden, inter, heads, kv_heads, vocab = SMALL if size < 3 * GiB else LARGE
    head_dim = hidden // heads
    kv = kv_heads * head_dim
    layer = [
        ("input_layernorm.weight", [hidden]),
        ("self_attn.q_proj.weight", [hidden, hidden]),
        ("self_attn.k_proj.weight", [kv, hidden]),
        ("self_attn.v_proj.weight", [kv, hidden]),
        ("self_attn.o_proj.weight", [hidden, hidden]),
        ("post_attention_layernorm.weight", [hidden]),
        ("mlp.gate_proj.weight", [inter, hidden]),
        ("mlp.up_proj.weight", [inter, hidden]),
        ("mlp.down_proj.weight", [hidden, inter]),
    ]

    def nbytes(shape):
        n = 2
        for d in shape:
            n *= d
        return n

    layer_bytes = sum(nbytes(s) for _, s in layer)
    fixed = 2 * nbytes([vocab, hidden]) + nbytes([hidden])
    layers = max(1, -(-(size - fixed) // layer_bytes))  # at least the size asked for
    out = [("model.embed_tokens.weight", [vocab, hidden])]
    for i in range(layers):
        out += [(f"model.layers.{i}.{n}", s) for n, s in layer]
    out += [("model.norm.weight", [hidden]), ("lm_head.weight", [vocab, hidden])]
    return [(n, s, nbytes(s)) for n, s in out]


class Filler:
    """Deterministic, cheap, non-repeating bytes: block k = random block ^ k."""

    def __init__(self, seed):
        self.k = 0
        if np is not None:
            rng = np.random.default_rng(seed)
            self.block = rng.integers(0, 1 << 63, BLOCK // 8, dtype=np.uint64)
            self.buf = np.empty_like(self.block)
        else:
            import random
            self.block = random.Random(seed).randbytes(BLOCK)

    def write(self, f, n):
        while n > 0:
            take = min(n, BLOCK)
            if np is not None:
                np.bitwise_xor(self.block, np.uint64(self.k * 0x9E3779B97F4A7C15 & (2**64 - 1)),
                               out=self.buf)
                f.write(memoryview(self.buf).cast("B")[:take])
            else:
                f.write((struct.pack("<Q", self.k) + self.block[8:])[:take])
            self.k += 1
            n -= take


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--size", default="2G", help="total tensor bytes, e.g. 4G")
    ap.add_argument("--shard-size", default="1G", help="max data bytes per shard")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="BF16", choices=["BF16", "F16"],
                    help="F16 lets safetensors.numpy (no bfloat16 in numpy) load it too")
    a = ap.parse_args()
    size, shard_max = parse_size(a.size), parse_size(a.shard_size)

    tensors = tensors_for(size)
    shards, cur, cur_bytes = [], [], 0
    for t in tensors:
        if cur and cur_bytes + t[2] > shard_max:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append(t)
        cur_bytes += t[2]
    shards.append(cur)

    os.makedirs(a.outdir, exist_ok=True)
    index_path = os.path.join(a.outdir, "model.safetensors.index.json")
    if os.path.exists(index_path):
        os.unlink(index_path)
    filler = Filler(a.seed)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        header, off = {"__metadata__": {"format": "pt"}}, 0
        for name, shape, nb in shard:
            header[name] = {"dtype": a.dtype, "shape": shape, "data_offsets": [off, off + nb]}
            off += nb
            weight_map[name] = fname
        hj = json.dumps(header, separators=(",", ":")).encode()
        hj += b" " * (-len(hj) % 8)
        with open(os.path.join(a.outdir, fname), "wb") as f:
            f.write(struct.pack("<Q", len(hj)))
            f.write(hj)
            filler.write(f, off)
        total += off
    with open(index_path, "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    print(f"{a.outdir}: {len(tensors)} tensors, {len(shards)} shards, {total} bytes "
          f"({total / GiB:.2f} GiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
