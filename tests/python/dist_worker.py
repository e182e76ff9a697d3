# SPDX-License-Identifier: Apache-2.0
"""One rank of the distributed tests (tests/python/test_distributed.py starts W of them, or
mpirun does). It joins the group, runs the scenario, checks every tensor it got against the
reference's full load of the same file (the safetensors package) sliced with numpy-style
index arithmetic, checks the bytes it read against the plan, and writes a JSON report.

usage: dist_worker.py SCENARIO RANK WORLD INIT DATA_DIR OUT_JSON [URL]
  SCENARIO: main | errors | die     INIT: a file:// rendezvous, or "mpi"
"""
import json
import os
import sys
import time
import traceback

scenario, rank, world, init, data, out = sys.argv[1:7]
url = sys.argv[7] if len(sys.argv) > 7 else ""
rank, world = int(rank), int(world)

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

import weightlift.distributed as wd  # noqa: E402
from safetensors.torch import load_file as ref_load  # noqa: E402

report = {"rank": rank, "world": world, "ok": False, "checks": 0}
TIMEOUT = 60  # generous: a shared 2-core machine starts 4 torch processes slowly


def block(n):
    blk = -(-n // world)
    b = min(rank * blk, n)
    return b, min(b + blk, n)


def check(got, want, what):
    assert got.dtype == want.dtype and tuple(got.shape) == tuple(want.shape), \
        (what, got.dtype, want.dtype, tuple(got.shape), tuple(want.shape))
    assert torch.equal(got.view(torch.uint8) if got.dtype == torch.bfloat16 else got,
                       want.view(torch.uint8) if want.dtype == torch.bfloat16 else want), what
    report["checks"] += 1


SPEC = {"a": 0, "b": 1, "d": 1, "big": 1, "*": None}


def shard_mode(group, path, tag):
    """Every sharded tensor: this rank's block, read by this rank alone; replicated ones and
    blocks of small strided pieces: read whole by their owner only, then broadcast or
    scattered. The bytes read equal the plan. (The library reads every piece on its own
    here, WEIGHTLIFT_SHARD_PIECE_MIN=1 from the driver; the "scatter" pass makes the
    Python layer treat pieces under 1 MiB as small.)"""
    ref = ref_load(os.path.join(data, "m.safetensors"))
    st = {}
    got = wd.load_file(path, group=group, shard=SPEC, timeout=TIMEOUT, stats=st)
    assert sorted(got) == sorted(ref), (sorted(got), sorted(ref))
    want_read = 0
    for name, full in ref.items():
        dim = wd._rule_of(wd._shard_rules(SPEC), name)
        if dim >= 0:
            b, e = block(full.shape[dim])
            want = full.narrow(dim, b, e - b)
        else:
            want = full
        if name in st["owners"]:
            if st["owners"][name] == rank:
                want_read += full.numel() * full.element_size()
        else:
            want_read += want.numel() * want.element_size()
        check(got[name], want, f"{tag} {name}")
    assert st["bytes_read"] == want_read, (tag, st["bytes_read"], want_read)
    report[tag + "_bytes_read"] = st["bytes_read"]


def file_mode(group):
    """fastsafetensors' loader: rank r reads the files listed under r; every method's
    result equals the reference's tensors and blocks."""
    files = sorted(f for f in os.listdir(data) if f.startswith("part"))
    by_rank = {r: [os.path.join(data, f) for f in files[r::world]] for r in range(world)}
    loader = wd.SafeTensorsFileLoader(group, device="cpu", nogds=True, timeout=TIMEOUT)
    loader.add_filenames(by_rank)
    fb = loader.copy_files_to_device()
    ref = {}
    for f in files:
        ref.update(ref_load(os.path.join(data, f)))
    mine = {}
    for f in by_rank[rank]:
        mine.update(ref_load(f))
    assert fb.bytes_read == sum(t.numel() * t.element_size() for t in mine.values()), \
        (fb.bytes_read, len(mine))
    report["file_bytes_read"] = fb.bytes_read
    for name in sorted(ref):
        check(fb.get_tensor(name), ref[name], "get_tensor " + name)
        for dim in range(ref[name].dim()):
            b, e = block(ref[name].shape[dim])
            check(fb.get_sharded(name, dim), ref[name].narrow(dim, b, e - b),
                  f"get_sharded {name} {dim}")
    for name in sorted(ref):
        dst = world - 1
        t = fb.push_tensor(name, dst)
        if rank == dst:
            check(t, ref[name], "push_tensor " + name)
        else:
            assert t is None
    d = fb.as_dict({n: 0 for n in sorted(ref) if ref[n].dim()})
    for n, t in d.items():
        b, e = block(ref[n].shape[0])
        check(t, ref[n].narrow(0, b, e - b), "as_dict " + n)
    fb.close()
    loader.close()
    # load_file without shard: every tensor read by one rank, broadcast to all.
    st = {}
    whole = wd.load_file(os.path.join(data, "m.safetensors"), group=group, timeout=TIMEOUT,
                         stats=st)
    ref = ref_load(os.path.join(data, "m.safetensors"))
    for n in ref:
        check(whole[n], ref[n], "file mode " + n)
    report["whole_bytes_read"] = st["bytes_read"]


def experts_mode(group):
    st = {}
    got = wd.load_file(os.path.join(data, "moe.safetensors"), group=group, experts="block",
                       timeout=TIMEOUT, stats=st)
    ref = ref_load(os.path.join(data, "moe.safetensors"))
    keep = wd.expert_parallel_filter(8, world, rank)
    want = {n: t for n, t in ref.items() if keep(n)}
    assert sorted(got) == sorted(want), (len(got), len(want))
    for n in want:
        check(got[n], want[n], "experts " + n)
    assert st["bytes_read"] == sum(t.numel() * t.element_size() for t in want.values())
    report["experts_bytes_read"] = st["bytes_read"]
    # the callable form: the same tensors
    got2 = wd.load_file(os.path.join(data, "moe.safetensors"), group=group, experts=keep,
                        timeout=TIMEOUT)
    assert sorted(got2) == sorted(want)


def main():
    if init == "mpi":
        from mpi4py import MPI

        group = MPI.COMM_WORLD
        assert group.Get_rank() == rank and group.Get_size() == world
    else:
        import datetime

        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=TIMEOUT))
        group = None  # the default group
    path = os.path.join(data, "m.safetensors")
    if scenario == "main":
        shard_mode(group, path, "shard")
        os.environ["WEIGHTLIFT_SHARD_PIECE_MIN"] = str(1 << 20)
        shard_mode(group, path, "scatter")
        os.environ["WEIGHTLIFT_SHARD_PIECE_MIN"] = "1"
        if url:
            shard_mode(group, url + "/m.safetensors", "http")
        file_mode(group)
        experts_mode(group)
    elif scenario == "errors":
        # Ranks passing different specs, then (the group still usable) a rank whose load
        # fails: every rank raises, naming the cause.
        spec = dict(SPEC, a=1) if rank == 1 else SPEC
        try:
            wd.load_file(path, group=group, shard=spec, timeout=TIMEOUT)
        except wd.DistributedError as e:
            report["mismatch"] = str(e)
        if rank == 1:
            def broken(ck, **kw):
                raise OSError(5, "injected read failure on rank 1")
            wd._load = broken
        try:
            wd.load_file(path, group=group, shard=SPEC, timeout=TIMEOUT)
        except wd.DistributedError as e:
            report["fail"] = str(e)
        report["checks"] = 1
    elif scenario == "die":
        if rank == 1:
            def die(ck, **kw):
                os._exit(3)
            wd._load = die
        wd.load_file(path, group=group, shard=SPEC, timeout=TIMEOUT)
    report["ok"] = True


t0 = time.monotonic()
try:
    main()
except Exception as e:  # noqa: BLE001 - reported to the test
    report["error"] = f"{type(e).__name__}: {e}"
    report["trace"] = traceback.format_exc()[-3000:]
report["seconds"] = time.monotonic() - t0
with open(out, "w") as f:
    json.dump(report, f)
if init != "mpi" and dist.is_initialized():
    try:
        dist.destroy_process_group()
    except Exception:  # noqa: BLE001
        pass
sys.exit(0 if report["ok"] else 1)
