#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Two builds of the weightlift CLI side by side on one checkpoint (a refactor's "no
regression" check): hot copy, hot mapped + one read pass, and cold (auto: O_DIRECT + io_uring
on local disks), A and B alternating within every round and in swapped order every other
round (this VM penalises whichever process first touches memory another just freed), primed
like `local_bench.py --prime`, median of --rounds rounds. The "prefaulted" cases pre-fault the
arena (WEIGHTLIFT_POPULATE=1) and time only the read stage (read_s): the engine's own cost,
without the fresh-memory faults that dominate the noise here. Prints B's throughput ratio to
A's (> 1: B is faster) and the per-run times so the noise is visible.

usage: ab.py DIR --a build-before/weightlift --b build/weightlift [--rounds 9] [--json OUT]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import local_bench as lb  # noqa: E402


def cli(binary, d, *args, metric="seconds", env=None):
    def f():
        e = dict(os.environ, **(env or {}))
        r = subprocess.run([binary, "load", "--json", *args, d], capture_output=True, text=True,
                           env=e)
        if r.returncode:
            raise RuntimeError(f"{binary}: rc {r.returncode}: {r.stderr.strip()[-300:]}")
        j = json.loads(r.stdout)
        return {"s": j[metric], "bytes": j["bytes"], "strategy": j["strategy"],
                "direct": j["direct"]}
    return f


def rounds(cases, n, cold, d):
    """cases: name -> (fa, fb). Median of n rounds, the order of A and B swapped every round."""
    res = {}
    nbytes = sum(os.path.getsize(f) for f in lb.pb.shard_files(d))
    for i in range(n):
        for name, (fa, fb) in cases.items():
            order = (("A", fa), ("B", fb)) if i % 2 == 0 else (("B", fb), ("A", fa))
            for tag, fn in order:
                if cold:
                    lb.drop_caches()
                else:
                    lb.pb.warm(d)
                lb.prime(nbytes)
                res.setdefault(f"{name} {tag}", []).append(fn())
    med = {}
    for name, runs in res.items():
        m = dict(runs[0])
        m["s"] = statistics.median(r["s"] for r in runs)
        m["gbps"] = m["bytes"] / m["s"] / 1e9
        m["all_s"] = [round(r["s"], 4) for r in runs]
        med[name] = m
    return med


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--a", required=True, help="the CLI before")
    ap.add_argument("--b", required=True, help="the CLI after")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--json")
    ap.add_argument("--no-cold", action="store_true")
    ap.add_argument("--only", help="comma-separated hot case names to run (hot only)")
    a = ap.parse_args()
    d = a.dir
    pre = {"WEIGHTLIFT_POPULATE": "1"}
    both = lambda *args, **kw: (cli(a.a, d, *args, **kw), cli(a.b, d, *args, **kw))  # noqa: E731
    hot = {"copy": both(), "copy prefaulted": both(metric="read_s", env=pre),
           "mapped+touch": both("--mmap", "--touch", metric="ready_s")}
    if a.only:
        hot = {k: v for k, v in hot.items() if k in a.only.split(",")}
    out = {"a": a.a, "b": a.b, "rounds": a.rounds, "hot": rounds(hot, a.rounds, False, d)}
    if not a.no_cold and not a.only and lb.drop_caches():
        cold = {"auto": both(), "auto prefaulted": both(metric="read_s", env=pre)}
        out["cold"] = rounds(cold, max(4, a.rounds // 2), True, d)
    for part in ("hot", "cold"):
        for name, m in out.get(part, {}).items():
            print(f"{part:4} {name:20} {m['gbps']:7.2f} GB/s  median {m['s']:.4f} s  "
                  f"{m['strategy']}{' direct' if m['direct'] else ''}  runs {m['all_s']}")
        names = sorted({n[:-2] for n in out.get(part, {})})
        for n in names:
            A, B = out[part].get(n + " A"), out[part].get(n + " B")
            if A and B:
                r = A["s"] / B["s"]
                out.setdefault("ratios", {})[f"{part} {n}"] = r
                print(f"{part:4} {n:20} B/A = {r:.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
