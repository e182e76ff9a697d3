#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Two builds of the weightlift CLI side by side on one checkpoint (a refactor's "no
regression" check): hot copy, hot mapped + one read pass, and cold (auto: O_DIRECT + io_uring
on local disks), each case alternating A and B within every round, primed like
`local_bench.py --prime`, median of --rounds rounds. Prints B's throughput ratio to A's
(> 1: B is faster) and the per-run times so the noise is visible.

usage: ab.py DIR --a build-before/weightlift --b build/weightlift [--rounds 9] [--json OUT]
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import local_bench as lb  # noqa: E402


def cli(binary, d, *args):
    def f():
        j = lb.run_json([binary, "load", "--json", *args, d])
        out = {"s": j["seconds"], "bytes": j["bytes"], "strategy": j["strategy"],
               "direct": j["direct"]}
        if "ready_s" in j:
            out["s"] = j["ready_s"]  # mapped: ready time (load + read pass) is what counts
        return out
    return f


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--a", required=True, help="the CLI before")
    ap.add_argument("--b", required=True, help="the CLI after")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--json")
    ap.add_argument("--no-cold", action="store_true")
    a = ap.parse_args()
    d = a.dir
    hot = {}
    for tag, b in (("A", a.a), ("B", a.b)):
        hot[f"copy {tag}"] = cli(b, d)
        hot[f"mapped+touch {tag}"] = cli(b, d, "--mmap", "--touch")
    out = {"a": a.a, "b": a.b, "rounds": a.rounds,
           "hot": lb.rounds(hot, a.rounds, False, d, True)}
    if not a.no_cold and lb.drop_caches():
        cold = {f"cold auto {tag}": cli(b, d) for tag, b in (("A", a.a), ("B", a.b))}
        out["cold"] = lb.rounds(cold, max(3, a.rounds // 2), True, d, True)
    for part in ("hot", "cold"):
        for name, m in out.get(part, {}).items():
            print(f"{part:4} {name:18} {m['gbps']:7.2f} GB/s  median {m['s']:.4f} s  "
                  f"{m['strategy']}{' direct' if m['direct'] else ''}  runs {m['all_s']}")
        names = sorted({n[:-2] for n in out.get(part, {})})
        for n in names:
            A, B = out[part].get(n + " A"), out[part].get(n + " B")
            if A and B:
                r = A["s"] / B["s"]
                out.setdefault("ratios", {})[n] = r
                print(f"{part:4} {n:18} B/A = {r:.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
