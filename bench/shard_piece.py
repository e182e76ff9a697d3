#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Measure WLIFT_SHARD_PIECE_MIN: a tensor-parallel block along dim 1 is `outer` pieces of
`piece` bytes, `world` pieces apart. Below the threshold the engine reads the covering range
(world x the block's bytes, one large read) and gathers in place; at or above it, each piece
is a read of its own (the ranks together read each byte once). This loads rank 0 of
`world` of one [outer, world * piece] U8 tensor through the CLI both ways
(WEIGHTLIFT_SHARD_PIECE_MIN=1: split; =1G: covering) for a range of piece sizes, buffered
from the page cache and with O_DIRECT, alternating the two in each repeat, and prints the
median time of each and their ratio (covering / split: > 1 means reading pieces is faster).

usage: shard_piece.py [--cli build/weightlift] [--dir /tmp] [--block 64M] [--world 4]
                      [--repeat 5]
"""
import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile


def write_tensor(path, outer, cols):
    hdr = json.dumps({"t": {"dtype": "U8", "shape": [outer, cols],
                            "data_offsets": [0, outer * cols]}}).encode()
    hdr += b" " * (-len(hdr) % 8)
    row = bytes(range(256)) * (cols // 256 + 1)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)) + hdr)
        for _ in range(outer):
            f.write(row[:cols])


def load(cli, path, spec, world, piece_min, direct):
    env = dict(os.environ, WEIGHTLIFT_SHARD_PIECE_MIN=str(piece_min))
    out = subprocess.run([cli, "load", "--json", "--rank", "0", "--world", str(world),
                          "--shard-spec", spec, "--direct", direct, path],
                         env=env, check=True, capture_output=True, text=True).stdout
    j = json.loads(out)
    return j["seconds"], j["bytes_read"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default=os.environ.get("WEIGHTLIFT_CLI", "build/weightlift"))
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--block", default="64M", help="bytes of rank 0's block")
    ap.add_argument("--world", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--pieces", default="1K,4K,16K,64K,256K,1M")
    a = ap.parse_args()
    unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    size = lambda s: int(s[:-1]) * unit[s[-1]] if s[-1] in unit else int(s)
    block = size(a.block)
    spec = os.path.join(a.dir, "wl-piece-spec.json")
    with open(spec, "w") as f:
        json.dump({"t": 1}, f)
    print(f"rank 0 of {a.world}, a block of {block >> 20} MiB per rank; median of {a.repeat}")
    print(f"{'piece':>6} {'direct':>6} {'split_s':>8} {'cover_s':>8} {'cover/split':>11} "
          f"{'split_read':>10} {'cover_read':>10}")
    for p in a.pieces.split(","):
        piece = size(p)
        outer = max(1, block // piece)
        path = os.path.join(a.dir, f"wl-piece-{piece}.safetensors")
        write_tensor(path, outer, piece * a.world)
        try:
            for direct in ("off", "on"):
                load(a.cli, path, spec, a.world, 1, direct)  # warm the page cache
                ts, tc = [], []
                for _ in range(a.repeat):
                    s, rs = load(a.cli, path, spec, a.world, 1, direct)
                    c, rc = load(a.cli, path, spec, a.world, 1 << 30, direct)
                    ts.append(s)
                    tc.append(c)
                ms, mc = statistics.median(ts), statistics.median(tc)
                print(f"{p:>6} {direct:>6} {ms:8.4f} {mc:8.4f} {mc / ms:11.2f} "
                      f"{rs >> 20:>8}Mi {rc >> 20:>8}Mi", flush=True)
        finally:
            os.unlink(path)
    os.unlink(spec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
