#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""load(bytes) and safe_open(...).get_tensor: weightlift against the reference safetensors.

Issue 9 point 4 asks `torch.load(bytes)` and a handle's `get_tensor` (vLLM's default
iterator) to be at least as fast through weightlift as through safetensors. Every
measurement is a fresh process; loaders alternate within a round, the order swapped every
round; the median of --rounds is reported. The files are written once (--gen) and read hot:
the bytes cases read the file into a bytes object first (untimed) and time `load(data)`
alone ("load") and with one touch of every 4 KiB page of every tensor ("ready"); the handle
case times `safe_open(f, "pt")` plus `get_tensor` of every name (hot page cache).

usage: bytes_bench.py --gen DIR
       bytes_bench.py DIR [--rounds 5] [--cases small100,big100,small1g,big1g]
                      [--loaders ref,wl,wl-hp0,wl-hp1] [--handle]
Loader "wl-hpN" runs weightlift with WEIGHTLIFT_HUGEPAGE=N in its environment.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CASES = {  # name -> (tensor count, bytes each)
    "small100": (10000, 10 << 10),   # 100 MiB as 10 000 tensors of 10 KiB
    "big100": (4, 25 << 20),         # 100 MiB as 4 tensors of 25 MiB
    "small1g": (20000, 50 << 10),    # 0.98 GiB as 20 000 tensors of 50 KiB
    "big1g": (8, 128 << 20),         # 1 GiB as 8 tensors of 128 MiB
}


def gen(d):
    import torch
    from safetensors.torch import save_file
    os.makedirs(d, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for name, (n, each) in CASES.items():
        p = os.path.join(d, name + ".safetensors")
        if os.path.exists(p):
            continue
        ts = {f"t{i:05d}": torch.randint(-2 ** 15, 2 ** 15, (each // 2,), generator=g,
                                         dtype=torch.int16).view(torch.bfloat16)
              for i in range(n)}
        save_file(ts, p)
        print(p, os.path.getsize(p))


def touch(tensors):
    import torch
    s = 0
    for t in tensors.values():
        b = t.reshape(-1).view(torch.uint8)
        s += int(b[::4096].sum())
    return s


def one(loader, path, handle):
    import torch  # noqa: F401  (imported before the clock, for both)
    if loader == "ref":
        import safetensors.torch as m
        from safetensors import safe_open
    else:
        import weightlift.torch as m
        from weightlift import safe_open
    if handle:
        t0 = time.perf_counter()
        with safe_open(path, framework="pt") as f:
            out = {k: f.get_tensor(k) for k in f.keys()}
        t1 = time.perf_counter()
    else:
        with open(path, "rb") as f:
            data = f.read()
        t0 = time.perf_counter()
        out = m.load(data)
        t1 = time.perf_counter()
    touch(out)
    t2 = time.perf_counter()
    print(json.dumps({"load_s": t1 - t0, "ready_s": t2 - t0, "n": len(out)}))


def run(loader, path, handle):
    env = dict(os.environ)
    if loader.startswith("wl-hp"):
        env["WEIGHTLIFT_HUGEPAGE"] = loader[len("wl-hp"):]
    cmd = [sys.executable, os.path.abspath(__file__), "--one", loader, path]
    if handle:
        cmd.append("--handle")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode:
        raise RuntimeError(f"{loader} {path}: {r.stderr.strip()[-400:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--gen", action="store_true")
    ap.add_argument("--one")
    ap.add_argument("--handle", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--loaders", default="ref,wl")
    a = ap.parse_args()
    if a.gen:
        return gen(a.dir)
    if a.one:
        return one(a.one, a.dir, a.handle)
    loaders = a.loaders.split(",")
    print(f"load average {open('/proc/loadavg').read().split()[:3]}, "
          f"THP defrag {open('/sys/kernel/mm/transparent_hugepage/defrag').read().strip()}")
    for case in a.cases.split(","):
        path = os.path.join(a.dir, case + ".safetensors")
        res = {ld: [] for ld in loaders}
        for r in range(a.rounds):
            for ld in (loaders if r % 2 == 0 else loaders[::-1]):
                res[ld].append(run(ld, path, a.handle))
        ref = statistics.median(x["ready_s"] for x in res.get("ref", res[loaders[0]]))
        kind = "get_tensor" if a.handle else "load(bytes)"
        for ld in loaders:
            lo = statistics.median(x["load_s"] for x in res[ld])
            rd = statistics.median(x["ready_s"] for x in res[ld])
            runs = " ".join(f"{x['ready_s']:.3f}" for x in res[ld])
            print(f"{kind} {case:9s} {ld:7s} load {lo:.3f} ready {rd:.3f} s "
                  f"(ref/this {ref / rd:.2f}) runs: {runs}", flush=True)
    print(f"load average {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
