#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The Run:ai model streamer's distributed mode as the peer of issue 12 point 7 (beside
bench/dist_mpi.sh's file+mpi: each byte read by one rank, every rank ends with every tensor).

W CPU ranks in one torch.distributed gloo group on 127.0.0.1; each streams all the
checkpoint's .safetensors files with SafetensorsStreamer.stream_files(..., is_distributed=True)
and RUNAI_STREAMER_DIST=1 (the streamer distributes over NCCL only by default; with 1 it
also distributes over gloo for CPU tensors), copying every tensor it is handed (the streamer
reuses its buffers). Bytes read from storage: the sectors read of every block device
(/sys/block/*/stat, loop and ram devices left out) across each round, so the machine must be
quiet; the streamer reads with O_DIRECT through its own threads (a rank's /proc/self/io rchar
stays near 0), so even a page-cache-hot file is read from the device. --cold drops the page
cache before each round (as root) for the weightlift runs it is compared with.

usage: python dist_runai.py [--cold] CKPT_DIR [W] [REPEAT]   (the python of a venv with
       runai-model-streamer and torch; prints one line per repetition)
"""
import glob
import os
import socket
import subprocess
import sys
import time


def rchar():
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    return 0


def disk_read_bytes():
    total = 0
    for dev in os.listdir("/sys/block"):
        if dev.startswith(("loop", "ram", "zram")):
            continue
        with open(f"/sys/block/{dev}/stat") as f:
            total += int(f.read().split()[2]) * 512
    return total


def rank_main(ckpt, out):
    import torch
    import torch.distributed as dist
    from runai_model_streamer.safetensors_streamer.safetensors_streamer import (
        SafetensorsStreamer)

    dist.init_process_group("gloo")
    paths = sorted(glob.glob(os.path.join(ckpt, "*.safetensors")))
    dist.barrier()
    r0, t0 = rchar(), time.monotonic()
    n = nbytes = 0
    with SafetensorsStreamer() as s:
        s.stream_files(paths, None, "cpu", True)
        for _name, t in s.get_tensors():
            c = t.clone()
            n += 1
            nbytes += c.numel() * c.element_size()
    t1, r1 = time.monotonic(), rchar()
    dist.barrier()
    t2 = time.monotonic()
    with open(out, "w") as f:
        f.write(f"{n} {nbytes} {r1 - r0} {t1 - t0:.3f} {t2 - t0:.3f}\n")
    dist.destroy_process_group()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--rank":
        rank_main(sys.argv[2], sys.argv[3])
        return
    args = [a for a in sys.argv[1:] if a != "--cold"]
    cold = len(args) != len(sys.argv) - 1
    ckpt = args[0]
    w = int(args[1]) if len(args) > 1 else 4
    repeat = int(args[2]) if len(args) > 2 else 3
    size = sum(os.path.getsize(p) for p in glob.glob(os.path.join(ckpt, "*.safetensors")))
    for it in range(repeat):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()),
                   WORLD_SIZE=str(w), RUNAI_STREAMER_DIST="1")
        outs = [f"/tmp/dist_runai.{os.getpid()}.{r}" for r in range(w)]
        if cold:
            os.sync()
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
        d0 = disk_read_bytes()
        t0 = time.monotonic()
        procs = [subprocess.Popen([sys.executable, __file__, "--rank", ckpt, outs[r]],
                                  env=dict(env, RANK=str(r))) for r in range(w)]
        rcs = [p.wait(timeout=1800) for p in procs]
        wall = time.monotonic() - t0
        disk = disk_read_bytes() - d0
        if any(rcs):
            print(f"runai dist W={w}: a rank failed ({rcs})")
            sys.exit(1)
        rows = []
        for o in outs:
            with open(o) as f:
                rows.append(f.read().split())
            os.unlink(o)
        nb = {int(r[1]) for r in rows}
        stream = max(float(r[4]) for r in rows)
        print(f"runai dist W={w} round {it + 1}: tensors {rows[0][0]} per rank, bytes per rank "
              f"{'/'.join(str(x) for x in sorted(nb))}, read from the disks {disk} = "
              f"{disk / size:.3f}x the checkpoint{' (cold)' if cold else ''}, streaming {stream:.2f} s, wall (with "
              f"start-up) {wall:.2f} s")


if __name__ == "__main__":
    main()
