#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The client libraries' own load path: weightlift (through `install_as_safetensors()`, the
opt-in of docs/as-safetensors.md) against the reference safetensors, on a Llama-shaped sharded
BF16 checkpoint written by transformers' own save_pretrained.

Cases, each in a fresh process, the two loaders alternating (order swapped every round):
- from_pretrained: transformers.AutoModelForCausalLM.from_pretrained(DIR, dtype=bfloat16),
  which opens each shard with safe_open(f, "pt", device="cpu", backend="mmap") and calls
  get_slice(name)[...] per tensor (transformers 5.x);
- get_slice: safe_open(f, "pt", device="cpu", backend="mmap") over every shard and
  get_slice(name)[...] over every tensor.
Reported: "load" (the call alone; the reference's mapped views are lazy, so this defers its
page faults) and "ready" (load + one read pass over every byte of every parameter: XOR over
an int64 view, numpy, one thread, the same pass for both). Hot: the files are read once
before each run. Cold: `sync; echo 3 > /proc/sys/vm/drop_caches` before each run (root).
Ratios are safetensors time / weightlift time: > 1 means weightlift is faster.

usage: clients.py [--dir bench/out/clients-llama] [--rounds 3] [--cold] [--json OUT]
       clients.py --gen DIR [--layers 24]       (write the model once)
       clients.py --one LOADER CASE DIR         (one measurement, JSON on stdout)
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
DEFAULT_DIR = os.path.join(HERE, "out", "clients-llama")
LOADERS = ["weightlift", "safetensors"]
CASES = ["from_pretrained", "get_slice"]


def gen(d, layers):
    """A ~2.4 GB (2.2 GiB) BF16 Llama (TinyLlama's widths, 24 layers, untied head) in
    shards of <= 1 GB, written by save_pretrained. Deterministic."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    cfg = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=layers,
                      num_attention_heads=32, num_key_value_heads=4, vocab_size=32000,
                      tie_word_embeddings=False, dtype="bfloat16")
    m = LlamaForCausalLM(cfg)
    m.save_pretrained(d, max_shard_size="1GB")
    # The warm-up model: from_pretrained imports much of transformers and torch lazily
    # (seconds, the same for both loaders); one tiny load first keeps that out of the clock.
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, vocab_size=256,
                      tie_word_embeddings=False, dtype="bfloat16")
    LlamaForCausalLM(cfg).save_pretrained(tiny_dir(d), max_shard_size="100KB")


def tiny_dir(d):
    return d.rstrip("/") + "-tiny"


def touch(tensors):
    """One read pass over every byte: XOR over int64 views (the remainder as bytes)."""
    import numpy as np

    acc = 0
    for t in tensors:
        b = t.detach().reshape(-1).view(__import__("torch").uint8).numpy()
        n = b.size // 8 * 8
        if n:
            acc ^= int(np.bitwise_xor.reduce(b[:n].view(np.int64)))
        if b.size > n:
            acc ^= int(np.bitwise_xor.reduce(b[n:]))
    return acc


def one(loader, case, d):
    if loader == "weightlift":
        import weightlift
        weightlift.install_as_safetensors()
    import torch
    import safetensors  # noqa: F401 - resolves to weightlift under the shim

    if case == "from_pretrained":
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging
        logging.disable_progress_bar()
        AutoModelForCausalLM.from_pretrained(tiny_dir(d), dtype=torch.bfloat16)
        t0 = time.perf_counter()
        m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16)
        t1 = time.perf_counter()
        tensors = list(m.state_dict().values())
    else:
        from safetensors import safe_open
        t0 = time.perf_counter()
        tensors = []
        for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
            with safe_open(f, framework="pt", device="cpu", backend="mmap") as h:
                for k in h.keys():
                    tensors.append(h.get_slice(k)[...])
        t1 = time.perf_counter()
    x = touch(tensors)
    t2 = time.perf_counter()
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    return {"loader": loader, "case": case, "load_s": t1 - t0, "ready_s": t2 - t0,
            "bytes": nbytes, "xor": x, "via": sys.modules["safetensors"].__name__}


def drop_caches():
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def warm(d):
    for f in glob.glob(os.path.join(d, "*")):
        with open(f, "rb") as fh:
            while fh.read(16 << 20):
                pass


def run_one(loader, case, d, cold):
    if cold:
        drop_caches()
    else:
        warm(d)
    out = subprocess.run([sys.executable, __file__, "--one", loader, case, d], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=DEFAULT_DIR)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cold", action="store_true", help="also run cold (drop_caches, root)")
    ap.add_argument("--only", choices=CASES)
    ap.add_argument("--json")
    ap.add_argument("--gen", metavar="DIR")
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--one", nargs=3, metavar=("LOADER", "CASE", "DIR"))
    a = ap.parse_args()
    if a.gen:
        gen(a.gen, a.layers)
        return
    if a.one:
        print(json.dumps(one(*a.one)))
        return
    if not glob.glob(os.path.join(tiny_dir(a.dir), "*.safetensors")):
        print(f"generating {a.dir} (save_pretrained, once)", flush=True)
        subprocess.run([sys.executable, __file__, "--gen", a.dir, "--layers", str(a.layers)],
                       check=True)
    temps = ["hot"] + (["cold"] if a.cold else [])
    cases = [a.only] if a.only else CASES
    runs = {}
    for temp in temps:
        for case in cases:
            for r in range(a.rounds):
                order = LOADERS if r % 2 == 0 else LOADERS[::-1]
                for loader in order:
                    res = run_one(loader, case, a.dir, temp == "cold")
                    runs.setdefault((temp, case, loader), []).append(res)
                    print(f"{temp:4} {case:15} {loader:11} load {res['load_s']:6.2f} s  "
                          f"ready {res['ready_s']:6.2f} s  ({res['via']})", flush=True)
    gib = next(iter(runs.values()))[0]["bytes"] / 2**30
    print(f"\n{gib:.2f} GiB of tensors, median of {a.rounds}; ratio = safetensors / weightlift "
          "(> 1: weightlift faster)")
    print(f"{'case':26} {'weightlift':>10} {'safetensors':>11} {'ratio':>6}")
    summary = {}
    for temp in temps:
        for case in cases:
            for what in ("load_s", "ready_s"):
                w = statistics.median(x[what] for x in runs[(temp, case, "weightlift")])
                s = statistics.median(x[what] for x in runs[(temp, case, "safetensors")])
                key = f"{temp} {case} {what[:-2]}"
                summary[key] = {"weightlift_s": w, "safetensors_s": s, "ratio": s / w}
                print(f"{key:26} {w:9.2f}s {s:10.2f}s {s / w:6.2f}")
    xs = {x["xor"] for v in runs.values() for x in v}
    print("same bytes: " + ("yes" if len({x['xor'] for v in runs.values() for x in v
                                          if x['case'] == 'from_pretrained'}) <= 1 else "NO"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"summary": summary, "runs": {" ".join(k): v for k, v in runs.items()},
                       "distinct_xor": len(xs)}, f, indent=1)


if __name__ == "__main__":
    main()
