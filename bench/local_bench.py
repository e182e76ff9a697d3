#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The local CPU benchmark behind bench/local.sh: weightlift vs its peers and limits, one run.

Every case runs as its own process; the cases alternate within each round (so drift and
neighbours' noise hit all of them alike) and the median of --rounds rounds is reported.
Hot cases read the files once first (page cache hot); cold cases drop the page cache
(`echo 3 > /proc/sys/vm/drop_caches`) before each run, or are skipped when that is not
permitted. Ratios compare throughput (bytes / time of each case; the files' few KiB of
headers are read by copylimit and fio but not counted by the loaders) and read as
"peer time / our time": > 1 means weightlift is faster.

usage: local_bench.py DIR [--rounds 3] [--threads N] [--json OUT] [--no-cold]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import python_bench as pb  # noqa: E402

WL = os.path.join(ROOT, "build", "weightlift")
COPYLIMIT = os.path.join(ROOT, "build", "copylimit")


def run_json(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: rc {r.returncode}: {r.stderr.strip()[-300:]}")
    text = r.stdout[r.stdout.find("{"):]  # fio may print notes before its JSON
    try:
        return json.loads(text)
    except ValueError:
        return json.loads(r.stdout.strip().splitlines()[-1])


def wl(d, *args):
    def f():
        j = run_json([WL, "load", "--json", *args, d])
        out = {"s": j["seconds"], "bytes": j["bytes"], "rss": j["peak_rss_anon"],
               "strategy": j["strategy"], "direct": j["direct"], "threads": j["threads"]}
        if "ready_s" in j:
            out["ready_s"] = j["ready_s"]
        return out
    return f


def py_peer(d, peer):
    def f():
        j = run_json([sys.executable, os.path.join(HERE, "python_bench.py"), "--one", peer, d])
        return {"s": j["load_s"], "ready_s": j["ready_s"], "bytes": j["bytes"],
                "rss": j["rss_growth"]}
    return f


def copylimit(files, threads):
    def f():
        j = run_json([COPYLIMIT, "--json", "--repeat", "1", "--threads", str(threads), *files])
        return {"s": j["fresh_huge_s"], "bytes": j["bytes"], "plain_s": j["fresh_plain_s"],
                "reused_s": j["reused_s"]}
    return f


def fio(files, direct, engine, depth):
    half = [files[0::2], files[1::2]] if len(files) > 1 else [files, files]
    def f():
        cmd = ["fio", "--output-format=json", "--rw=read", "--bs=8M", f"--ioengine={engine}",
               f"--iodepth={depth}", f"--direct={direct}", "--group_reporting",
               "--invalidate=0"]
        for i, h in enumerate(half):
            cmd += [f"--name=j{i}", "--filename=" + ":".join(h)]
        j = run_json(cmd)
        r = j["jobs"][0]["read"]
        return {"s": r["io_bytes"] / r["bw_bytes"], "bytes": r["io_bytes"]}
    return f


def drop_caches():
    return pb.drop_caches()


def prime(nbytes):
    """Fault in and free nbytes of anonymous memory, so the case that follows gets memory the
    guest kernel has just freed rather than pages it has handed back to the hypervisor (free
    page reporting) or left fragmented: without this, whichever case follows a case that
    allocated nothing pays several times more for its first touches (measured: the same pread
    load 5.1 s first in the round vs 1.3 s second)."""
    import numpy as np
    a = np.empty(nbytes, np.uint8)
    a.fill(1)
    del a


def rounds(cases, n, cold, d, primed=False):
    res = {k: [] for k in cases}
    nbytes = sum(os.path.getsize(f) for f in pb.shard_files(d))
    for _ in range(n):
        for name, fn in cases.items():
            if cold:
                drop_caches()
            else:
                pb.warm(d)
            if primed:
                prime(nbytes)
            try:
                res[name].append(fn())
            except Exception as e:  # a failing peer loses its row, not the run
                print(f"{name}: {e}", file=sys.stderr)
    med = {}
    for name, runs in res.items():
        if not runs:
            continue
        m = {}
        for k in runs[0]:
            vals = [r[k] for r in runs if k in r]
            m[k] = statistics.median(vals) if isinstance(vals[0], (int, float)) and not \
                isinstance(vals[0], bool) else vals[0]
        m["gbps"] = m["bytes"] / m["s"] / 1e9
        m["runs"] = len(runs)
        m["all_s"] = [round(r["s"], 4) for r in runs]
        med[name] = m
    return med


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--no-cold", action="store_true")
    ap.add_argument("--prime", action="store_true",
                    help="fault in and free model-size memory before every case (see prime())")
    ap.add_argument("--json")
    a = ap.parse_args()
    d = a.dir
    files = pb.shard_files(d)
    model = sum(os.path.getsize(f) for f in files)
    have_torch = pb.available("st_torch", sys.executable)

    hot = {
        "wl_auto": wl(d),
        "wl_pread": wl(d, "--strategy", "pread"),
        "wl_uring": wl(d, "--strategy", "uring"),
        "wl_mmap": wl(d, "--mmap"),
        "wl_touch": wl(d, "--touch"),
        "wl_mmap_touch": wl(d, "--mmap", "--touch"),
        "st_numpy": py_peer(d, "st_numpy"),
        "copylimit": copylimit(files, a.threads),
        "fio_psync": fio(files, 0, "psync", 1),
    }
    if have_torch:
        hot["st_torch"] = py_peer(d, "st_torch")
    out = {"model_file_bytes": model, "rounds": a.rounds, "hot": rounds(hot, a.rounds, False, d, a.prime),
           "primed": a.prime}
    cold_ok = not a.no_cold and drop_caches()
    if cold_ok:
        cold = {
            "wl_direct_on": wl(d, "--direct", "on"),
            "wl_auto": wl(d),
            "fio_direct_uring": fio(files, 1, "io_uring", 8),
        }
        out["cold"] = rounds(cold, a.rounds, True, d, a.prime)
    out["cold_note"] = None if cold_ok else "skipped: drop_caches not permitted (or --no-cold)"
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    print_table(out, have_torch)
    return 0


def print_table(out, have_torch):
    h, c = out["hot"], out.get("cold", {})
    model = out["model_file_bytes"]
    print(f"model files: {model} bytes ({model / 2**30:.2f} GiB); median of {out['rounds']} "
          "alternating rounds; GB/s = 10^9 bytes/s; "
          f"{'primed (model-size memory faulted in and freed before every case)' if out.get('primed') else 'not primed'}\n")
    print("| case | median s | GB/s | runs (s) | peak RssAnon growth |")
    print("|---|---:|---:|---|---:|")
    for tag, res in (("hot", h), ("cold", c)):
        for k, m in res.items():
            rss = f"{m['rss'] / 2**20:.0f} MiB" if "rss" in m else ""
            extra = ""
            if "ready_s" in m:
                extra = f" (ready {m['ready_s']:.3f} s)"
            if k == "copylimit":
                extra = (f" (fresh plain {m['bytes'] / m['plain_s'] / 1e9:.2f} GB/s, "
                         f"reused {m['bytes'] / m['reused_s'] / 1e9:.2f} GB/s)")
            print(f"| {tag} {k}{extra} | {m['s']:.3f} | {m['gbps']:.2f} | {m['all_s']} | {rss} |")

    def ratio(ours, peer):
        return peer_time(peer) and ours_time(ours) and peer_time(peer) / ours_time(ours)

    # throughput-normalised times: seconds per model byte
    def ours_time(m):
        return m["s"] / m["bytes"]

    def peer_time(m):
        return m["s"] / m["bytes"]

    rows = []
    if "wl_auto" in h and "copylimit" in h:
        cl = h["copylimit"]
        rows.append(("hot: auto vs copy into fresh huge-page memory", ratio(h["wl_auto"], cl),
                     "≥ 0.9"))
        rows.append(("hot: auto vs copy into fresh plain memory",
                     (cl["plain_s"] / cl["bytes"]) / ours_time(h["wl_auto"]), "(info)"))
        rows.append(("hot: auto vs copy into a reused buffer",
                     (cl["reused_s"] / cl["bytes"]) / ours_time(h["wl_auto"]), "(info)"))
    if "wl_auto" in h and "st_numpy" in h:
        rows.append(("hot: auto vs safetensors.numpy.load_file", ratio(h["wl_auto"], h["st_numpy"]),
                     "≥ 2"))
    if "wl_auto" in h and "fio_psync" in h:
        rows.append(("hot: auto vs fio psync 2 jobs", ratio(h["wl_auto"], h["fio_psync"]), "(info)"))
    if have_torch and "st_torch" in h:
        t = h["st_torch"]["ready_s"]
        for k in ("wl_touch", "wl_mmap_touch"):
            if k in h:
                rows.append((f"hot ready: {k} vs safetensors.torch.load_file + pass",
                             t / h[k]["ready_s"], "≥ 1.0"))
    for k in ("wl_direct_on", "wl_auto"):
        if k in c and "fio_direct_uring" in c:
            rows.append((f"cold: {k} vs fio O_DIRECT io_uring", ratio(c[k], c["fio_direct_uring"]),
                         "≥ 0.95"))
    if "wl_auto" in h:
        g = h["wl_auto"]["rss"] - h["wl_auto"]["bytes"]
        rows.append(("hot: auto peak RssAnon growth - model bytes", g / 2**20, "≤ 64 MiB"))
    print("\n| comparison | ratio (peer time / our time; >1 = faster) | target |")
    print("|---|---:|---|")
    for name, r, tgt in rows:
        unit = " MiB" if "RssAnon" in name else ""
        print(f"| {name} | {r:.2f}{unit} | {tgt} |")
    if out.get("cold_note"):
        print(f"\ncold: {out['cold_note']}")


if __name__ == "__main__":
    sys.exit(main())
