#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Ready time of Python checkpoint loaders on one local checkpoint, page cache hot (and cold).

Ready time = load the whole checkpoint into CPU memory + one read pass over every byte of
every tensor (XOR over uint64 in numpy, single thread, the same pass for every peer), so lazy
loaders (safetensors.torch maps the file and faults pages in on first touch) pay for what they
defer. Each measurement runs in a fresh process (`--one PEER DIR`), peers alternate within
each round, the median of --rounds rounds is reported. Peak RssAnon growth is sampled from
/proc/PID/status every 2 ms by a child process during the run.

Peers: weightlift.load_file (row skipped when `import weightlift` fails), weightlift CLI
(`build/weightlift load --touch`, copied and --mmap: a reference row so ratios exist even
without the Python package), safetensors.numpy.load_file, safetensors.torch.load_file,
fastsafetensors (nogds, CPU), runai-model-streamer (CPU, owned tensors). Missing peers are
installed into the running venv from bench/requirements.txt.

usage: python_bench.py DIR [--rounds 3] [--cold] [--json OUT]
       python_bench.py --one PEER DIR      (one measurement, JSON on stdout)
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WL = os.path.join(ROOT, "build", "weightlift")
PEERS = ["weightlift", "weightlift_pread", "wl_cli", "wl_cli_mmap", "st_numpy", "st_torch", "fastsafetensors",
         "runai"]
LABEL = {
    "weightlift": "weightlift.load_file (default: mmap)",
    "weightlift_pread": "weightlift.load_file(backend=pread)",
    "wl_cli": "weightlift CLI load --touch",
    "wl_cli_mmap": "weightlift CLI load --mmap --touch",
    "st_numpy": "safetensors.numpy.load_file",
    "st_torch": "safetensors.torch.load_file",
    "fastsafetensors": "fastsafetensors (nogds, cpu)",
    "runai": "runai-model-streamer (cpu)",
}


def shard_files(d):
    if os.path.isfile(d):
        return [d]
    return sorted(glob.glob(os.path.join(d, "*.safetensors")))


def rss_anon():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakRss:
    """Peak RssAnon growth, sampled every 2 ms by a child process: a sampler thread here would
    compete for the GIL with the loader being measured and slow it down."""

    SAMPLER = ("import sys,time\n"
               "p=f'/proc/{sys.argv[1]}/status'; peak=0\n"
               "def r():\n"
               "  for l in open(p):\n"
               "    if l.startswith('RssAnon:'): return int(l.split()[1])*1024\n"
               "  return 0\n"
               "import select\n"
               "while True:\n"
               "  peak=max(peak,r())\n"
               "  if select.select([sys.stdin],[],[],0.002)[0]: break\n"
               "print(max(peak,r()))\n")

    def __init__(self):
        self.base = rss_anon()
        self.p = subprocess.Popen([sys.executable, "-c", self.SAMPLER, str(os.getpid())],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        time.sleep(0.05)  # let it start before the clock does

    def done(self):
        peak = max(rss_anon(), int(self.p.communicate("x\n")[0].strip() or 0))
        return peak - self.base


def read_pass(tensors):
    """XOR over every byte of every tensor (uint64 words where the size allows)."""
    import numpy as np
    acc, n = 0, 0
    for t in tensors:
        if not isinstance(t, np.ndarray):  # torch
            import torch
            t = t.reshape(-1)
            if t.dtype != torch.uint8:
                t = t.view(torch.uint8)
            t = t.numpy()
        b = t.reshape(-1).view(np.uint8)
        n += b.size
        if b.size % 8 == 0 and b.size:
            acc ^= int(np.bitwise_xor.reduce(b.view(np.uint64)))
        elif b.size:
            acc ^= int(np.bitwise_xor.reduce(b))
    return acc, n


def load_peer(peer, d):
    """Load the checkpoint with peer; return (tensors, keepalive)."""
    files = shard_files(d)
    if peer in ("weightlift", "weightlift_pread"):
        import weightlift
        kw = {"backend": "pread"} if peer == "weightlift_pread" else {}
        r = weightlift.load_file(d if os.path.isdir(d) else files[0], **kw)
        return list(r.values()), r
    if peer == "st_numpy":
        from safetensors.numpy import load_file
        out = []
        for f in files:
            out += list(load_file(f).values())
        return out, None
    if peer == "st_torch":
        from safetensors.torch import load_file
        out = []
        for f in files:
            out += list(load_file(f).values())
        return out, None
    if peer == "fastsafetensors":
        from fastsafetensors import SafeTensorsFileLoader, SingleGroup
        loader = SafeTensorsFileLoader(SingleGroup(), "cpu", nogds=True)
        loader.add_filenames({0: files})
        fb = loader.copy_files_to_device()
        out = [fb.get_tensor(k) for k in loader.get_keys()]
        return out, (loader, fb)
    if peer == "runai":
        from runai_model_streamer import SafetensorsStreamer
        out = []
        with SafetensorsStreamer() as s:
            s.stream_files(files)
            for _, t in s.get_tensors():
                out.append(t)
        return out, None
    raise SystemExit(f"unknown peer {peer}")


def one(peer, d):
    """One measurement in this process; JSON on stdout."""
    if peer in ("wl_cli", "wl_cli_mmap"):
        cmd = [WL, "load", "--json", "--touch", d] + (["--mmap"] if peer == "wl_cli_mmap" else [])
        j = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        return {"peer": peer, "load_s": j["seconds"], "ready_s": j["ready_s"],
                "bytes": j["bytes"], "rss_growth": j["peak_rss_anon"]}
    # Import outside the timed region: module import is not loading.
    if peer.startswith("weightlift"):
        import weightlift.torch  # noqa: F401
    elif peer in ("st_torch", "fastsafetensors", "runai"):
        import torch  # noqa: F401
    import numpy  # noqa: F401
    mon = PeakRss()
    t0 = time.perf_counter()
    tensors, keep = load_peer(peer, d)
    t1 = time.perf_counter()
    _, n = read_pass(tensors)
    t2 = time.perf_counter()
    growth = mon.done()
    del keep
    return {"peer": peer, "load_s": t1 - t0, "ready_s": t2 - t0, "bytes": n, "rss_growth": growth}


def available(peer, py):
    mod = {"weightlift": "weightlift", "weightlift_pread": "weightlift", "st_numpy": "safetensors.numpy", "st_torch": "torch",
           "fastsafetensors": "fastsafetensors", "runai": "runai_model_streamer"}.get(peer)
    if mod is None:
        return os.access(WL, os.X_OK)
    return subprocess.run([py, "-c", f"import {mod}"], capture_output=True).returncode == 0


def drop_caches():
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def warm(d):
    for f in shard_files(d):
        with open(f, "rb") as fh:
            while fh.read(64 << 20):
                pass


def measure(peers, d, rounds, cold, py=sys.executable):
    res = {p: [] for p in peers}
    for _ in range(rounds):
        for p in peers:
            if cold:
                drop_caches()
            else:
                warm(d)
            r = subprocess.run([py, os.path.abspath(__file__), "--one", p, d],
                               capture_output=True, text=True)
            if r.returncode != 0:
                print(f"{p}: failed: {r.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                continue
            res[p].append(json.loads(r.stdout.strip().splitlines()[-1]))
    out = {}
    for p, runs in res.items():
        if not runs:
            continue
        out[p] = {k: statistics.median(r[k] for r in runs)
                  for k in ("load_s", "ready_s", "bytes", "rss_growth")}
        out[p]["runs"] = len(runs)
    return out


def ensure_peers(py):
    need = [p for p in ("st_numpy", "st_torch", "fastsafetensors", "runai")
            if not available(p, py)]
    if need:
        print(f"installing peers ({', '.join(need)}) from bench/requirements.txt", file=sys.stderr)
        subprocess.run([py, "-m", "pip", "install", "-q", "-r",
                        os.path.join(HERE, "requirements.txt")], check=False)


def table(res, model_bytes, title):
    ref = res.get("weightlift") or res.get("wl_cli")
    refname = "weightlift" if "weightlift" in res else "wl_cli"
    lines = [f"### {title}", "",
             f"ratio = peer ready time / {LABEL[refname]} ready time (>1: weightlift is faster)",
             "",
             "| loader | load s | ready s | ready GB/s | peak RssAnon growth - model | ratio |",
             "|---|---:|---:|---:|---:|---:|"]
    for p, r in res.items():
        ratio = r["ready_s"] and ref and ref["ready_s"] and r["ready_s"] / ref["ready_s"]
        lines.append(f"| {LABEL[p]} | {r['load_s']:.3f} | {r['ready_s']:.3f} | "
                     f"{model_bytes / r['ready_s'] / 1e9:.2f} | "
                     f"{(r['rss_growth'] - model_bytes) / 2**20:+.0f} MiB | {ratio:.2f} |")
    return "\n".join(lines)


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--one":
        print(json.dumps(one(sys.argv[2], sys.argv[3])))
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cold", action="store_true", help="also cold (drop_caches) runs")
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--json", help="write the medians here")
    a = ap.parse_args()
    py = sys.executable
    ensure_peers(py)
    peers = []
    for p in a.peers.split(","):
        if available(p, py):
            peers.append(p)
        else:
            print(f"skipping {LABEL.get(p, p)}: not importable/available", file=sys.stderr)
    model_bytes = sum(os.path.getsize(f) for f in shard_files(a.dir))
    out = {"hot": measure(peers, a.dir, a.rounds, False, py)}
    print(table(out["hot"], model_bytes, f"hot, median of {a.rounds} alternating rounds"))
    if a.cold:
        if drop_caches():
            out["cold"] = measure(peers, a.dir, a.rounds, True, py)
            print()
            print(table(out["cold"], model_bytes,
                        f"cold (drop_caches before each run), median of {a.rounds}"))
        else:
            print("\ncold: skipped, /proc/sys/vm/drop_caches is not writable")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
