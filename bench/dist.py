#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Distributed loading on CPU ranks over torch.distributed gloo: bytes read from storage per
rank against the ideal, and wall time, for N ranks of one Llama-shaped checkpoint
(bench/gen_ckpt.py), tensor-parallel layout (q/k/v/gate/up/embed/lm_head split along dim 0,
o/down along dim 1, norms replicated):

  naive   every rank loads every tensor (mapped mode, as safetensors.torch does) and slices
  shard   weightlift.distributed.load_file(shard=...): each rank reads its blocks; the
          replicated tensors are read once (one rank each, balanced by bytes) and broadcast
  file    SafeTensorsFileLoader over the checkpoint's tensors split by bytes
          (add_filenames([...])), then get_sharded per tensor: each byte read once, the
          blocks sent from the rank that read them

The ideal is the sum of the blocks plus each replicated tensor once, over all ranks (shard and
file mode) — the checkpoint's bytes once when everything is split. Time is the slowest rank's,
from a barrier to its last tensor; the modes alternate in each repeat. With N ranks on a few
shared cores the time cannot show the parallel gain (the bytes are the target).

usage: dist.py CKPT_DIR_OR_FILE [--world 4] [--repeat 3] [--modes naive,shard,file]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

SPEC = {"*.q_proj.weight": 0, "*.k_proj.weight": 0, "*.v_proj.weight": 0,
        "*.gate_proj.weight": 0, "*.up_proj.weight": 0, "*.o_proj.weight": 1,
        "*.down_proj.weight": 1, "*embed_tokens.weight": 0, "lm_head.weight": 0, "*": None}


def rank_main(mode, rank, world, init, path, out):
    import datetime

    import torch  # noqa: F401 - gloo needs it loaded
    import torch.distributed as dist

    import weightlift.distributed as wd

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=600))
    rules = wd._shard_rules(SPEC)
    dist.barrier()
    t0 = time.monotonic()
    if mode == "naive":
        from weightlift import _core

        ck = _core.open_checkpoint(path)
        res = ck.load(mmap=_core.MMAP_ON)
        got = {}
        for t in res.tensors():
            v = _core.to_torch(t)
            d = wd._rule_of(rules, t.name)
            if d >= 0:
                b, e = wd.shard_block(v.shape[d], rank, world)
                v = v.narrow(d, b, e - b)
            got[t.name] = v
        read = res.stats()["bytes_read"]
        ck.close()
    elif mode == "shard":
        st = {}
        got = wd.load_file(path, group=None, shard=SPEC, stats=st)
        read = st["bytes_read"]
    else:
        files = [path] if os.path.isfile(path) else sorted(
            os.path.join(path, f) for f in os.listdir(path) if f.endswith(".safetensors"))
        loader = wd.SafeTensorsFileLoader(None, device="cpu")
        loader.add_filenames(files)
        fb = loader.copy_files_to_device()
        got = {n: fb.get_sharded(n, wd._rule_of(rules, n)) for n in fb.keys()}
        read = fb.bytes_read
        fb.close()
    secs = time.monotonic() - t0
    keep = sum(v.numel() * v.element_size() for v in got.values())
    dist.barrier()
    with open(out, "w") as f:
        json.dump({"rank": rank, "seconds": secs, "bytes_read": read, "bytes_kept": keep}, f)
    dist.destroy_process_group()


def ideal(path, world):
    """Sum over the ranks of what each must hold: blocks plus replicated tensors once."""
    from weightlift import _core

    ck = _core.open_checkpoint(path)
    tot = full = 0
    for name in ck.names():
        nbytes = ck.info(name)[3]
        full += nbytes
        tot += nbytes  # split: the blocks add up to the tensor; replicated: read once
    ck.close()
    return tot, full


def run(mode, world, path, tmp):
    init = "file://" + os.path.join(tmp, f"rdv-{mode}-{time.monotonic_ns()}")
    outs = [os.path.join(tmp, f"{mode}-{r}.json") for r in range(world)]
    procs = [subprocess.Popen([sys.executable, __file__, "--rank-main", mode, str(r), str(world),
                               init, path, outs[r]]) for r in range(world)]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"{mode}: a rank failed (exit {p.returncode})")
    return [json.load(open(o)) for o in outs]


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--rank-main":
        m, r, w, init, path, out = sys.argv[2:8]
        rank_main(m, int(r), int(w), init, path, out)
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("--world", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--modes", default="naive,shard,file")
    a = ap.parse_args()
    modes = a.modes.split(",")
    want, full = ideal(a.ckpt, a.world)
    times = {m: [] for m in modes}
    reads = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(a.repeat):
            for m in modes:
                reps = run(m, a.world, a.ckpt, tmp)
                times[m].append(max(r["seconds"] for r in reps))
                reads[m] = [r["bytes_read"] for r in reps]
    print(f"checkpoint {full / 2**30:.2f} GiB, {a.world} ranks (gloo, CPU), median of "
          f"{a.repeat}; ideal total read {want / 2**30:.2f} GiB")
    print(f"{'mode':<6} {'total read GiB':>14} {'x ideal':>8} {'max rank GiB':>12} "
          f"{'time s':>7} {'x naive':>8}")
    base = statistics.median(times["naive"]) if "naive" in times else None
    for m in modes:
        t = statistics.median(times[m])
        tot = sum(reads[m])
        print(f"{m:<6} {tot / 2**30:14.2f} {tot / want:8.3f} {max(reads[m]) / 2**30:12.2f} "
              f"{t:7.2f} {base / t if base else float('nan'):8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
