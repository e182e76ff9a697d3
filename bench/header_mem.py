#!/usr/bin/env python3
"""Opening a huge header: time and peak memory, weightlift against the reference, same run.

    .venv/bin/python bench/header_mem.py [--tensors 4100000] [--cli build/weightlift]

Writes a checkpoint of N zero-size tensors (the array form with 4-character names: 24 bytes of
JSON each, so 4.1M tensors make the 98 MB header of issue 8), then, each in a fresh process:
the reference's safe_open + keys(), weightlift's, and the CLI's inspect / inspect --json /
verify --json. Peak is the process's ru_maxrss (interpreter included for the Python cases).
"""
import argparse
import itertools
import os
import string
import struct
import subprocess
import sys
import tempfile
import time

PY = r"""
import resource, sys, time
t = time.perf_counter()
if sys.argv[1] == "ref":
    from safetensors import safe_open
else:
    from weightlift import safe_open
with safe_open(sys.argv[2], framework="np") as f:
    n = len(f.keys())
print(n, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

CHILD = r"""
import resource, subprocess, sys, time
t = time.perf_counter()
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
print(r.returncode, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def write(path, n):
    al = string.ascii_letters + string.digits
    names = ("".join(t) for t in itertools.product(al, repeat=4))
    js = ("{" + ",".join('"%s":["U8",[0],[0,0]]' % next(names) for _ in range(n)) + "}").encode()
    js += b" " * (-len(js) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)) + js)
    return len(js)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tensors", type=int, default=4_100_000)
    ap.add_argument("--cli", default=os.path.join(os.path.dirname(__file__), "..", "build",
                                                  "weightlift"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "many.safetensors")
        hlen = write(path, a.tensors)
        print(f"{a.tensors} tensors, header {hlen / 1e6:.1f} MB")
        res = {}
        for which in ("ref", "wl"):
            out = subprocess.run([sys.executable, "-c", PY, which, path], check=True,
                                 capture_output=True, text=True).stdout.split()
            res[which] = (float(out[1]), int(out[2]) / 1024)
            print(f"  safe_open+keys {which:4s} {res[which][0]:7.1f} s  peak {res[which][1]:7.0f} MB")
        print(f"  weightlift/reference: time {res['wl'][0] / res['ref'][0]:.2f}x, "
              f"peak {res['wl'][1] / res['ref'][1]:.2f}x")
        for cmd in (["inspect"], ["inspect", "--json"], ["verify", "-q"], ["verify", "--json"]):
            out = subprocess.run([sys.executable, "-c", CHILD, a.cli, *cmd, path], check=True,
                                 capture_output=True, text=True).stdout.split()
            print(f"  {' '.join(cmd):15s} rc {out[0]}  {float(out[1]):7.1f} s  "
                  f"peak {int(out[2]) / 1024:7.0f} MB")


if __name__ == "__main__":
    main()
