# SPDX-License-Identifier: Apache-2.0
"""One rank of the distributed tests (tests/python/test_distributed.py starts W of them, or
mpirun does). It joins the group, runs the steps, checks every tensor it got against the
reference's full load of the same file (the safetensors package) sliced with numpy-style
index arithmetic, checks the bytes it read against the plan, and writes a JSON report.

usage: dist_worker.py STEPS RANK NPROCS INIT DATA_DIR OUT_JSON [URL]
  STEPS: GROUP:STEP joined by "+", run in order: GROUP gN is the gloo group of ranks 0..N-1,
         mN the MPI communicator of ranks 0..N-1 (mpi4py, under mpirun); STEP main, shard,
         errors, die or nodes. Sharing the processes between the 2- and 4-rank runs and
         between gloo and MPI saves their start (importing torch: ~5 s of CPU each). The
         report ({group: {...}}) is rewritten after each step, so a step that ends the job
         keeps the earlier results.
  INIT: the gloo rendezvous (file:// or tcp://)
"""
import json
import os
import sys
import time
import traceback

steps, nprocs_rank, nprocs, init, data, out = sys.argv[1:7]
url = sys.argv[7] if len(sys.argv) > 7 else ""
nprocs_rank, nprocs = int(nprocs_rank), int(nprocs)
rank, world = nprocs_rank, nprocs  # of the group of the step running

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

import weightlift.distributed as wd  # noqa: E402
from safetensors.torch import load_file as ref_load  # noqa: E402

top = {"rank": rank, "procs": nprocs, "ok": False}  # {"g4": report of the g4 steps, ...}
report = {}  # the report of the group of the step running
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
SPEC_NAMES = ["a", "b", "c", "d", "big", "e", "z"]


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


def nodes_mode(group):
    """Many nodes, one remote checkpoint (tests/python/test_dist_nodes.py): URL serves the
    sharded checkpoint in DATA (model.safetensors.index.json and its files) under /f/, /l/,
    /b/ and /s/ (the same files: the driver counts nginx's bytes per path and node). File mode
    (load_file without shard: each tensor read by one node, broadcast to all), fastsafetensors'
    loader with the files split over the ranks, file mode from s3://b/ (the same nginx as a
    path-style S3 endpoint), then shard mode; every tensor equals the reference's."""
    index = json.load(open(os.path.join(data, "model.safetensors.index.json")))
    files = sorted(set(index["weight_map"].values()))
    ref = {}
    for f in files:
        ref.update(ref_load(os.path.join(data, f)))
    st = {}
    got = wd.load_file(url + "/f/model.safetensors.index.json", group=group, timeout=TIMEOUT,
                       stats=st)
    assert sorted(got) == sorted(ref)
    for n in ref:
        check(got[n], ref[n], "nodes file mode " + n)
    report["f_bytes_read"] = st["bytes_read"]
    loader = wd.SafeTensorsFileLoader(group, device="cpu", timeout=TIMEOUT)
    loader.add_filenames({r: [url + "/l/" + f for f in files[r::world]] for r in range(world)})
    fb = loader.copy_files_to_device()
    for n in sorted(ref):
        check(fb.get_tensor(n), ref[n], "nodes loader " + n)
    report["l_bytes_read"] = fb.bytes_read
    fb.close()
    # The same files as an S3 object store's (nginx path-style, bucket "b", unsigned: the
    # driver sets AWS_ENDPOINT_URL), in file mode.
    st = {}
    got = wd.load_file("s3://b/model.safetensors.index.json", group=group, timeout=TIMEOUT,
                       stats=st)
    for n in ref:
        check(got[n], ref[n], "nodes s3 file mode " + n)
    report["b_bytes_read"] = st["bytes_read"]
    spec = {"*.w": 0, "*.u": 1, "*": None}
    st = {}
    got = wd.load_file(url + "/s/model.safetensors.index.json", group=group, shard=spec,
                       timeout=TIMEOUT, stats=st)
    for n, full in ref.items():
        dim = wd._rule_of(wd._shard_rules(spec), n)
        b, e = block(full.shape[dim]) if dim >= 0 else (0, 0)
        check(got[n], full.narrow(dim, b, e - b) if dim >= 0 else full, "nodes shard " + n)
    report["s_bytes_read"] = st["bytes_read"]


def step_errors(group, path):
    """Ranks passing different specs, then (the group still usable) a rank whose load fails:
    every rank raises, naming the cause."""
    spec = dict(SPEC, a=1) if rank == 1 else SPEC
    try:
        wd.load_file(path, group=group, shard=spec, timeout=TIMEOUT)
    except wd.DistributedError as e:
        report["mismatch"] = str(e)
    load = wd._load
    if rank == 1:
        def broken(ck, **kw):
            raise OSError(5, "injected read failure on rank 1")
        wd._load = broken
    try:
        wd.load_file(path, group=group, shard=SPEC, timeout=TIMEOUT)
    except wd.DistributedError as e:
        report["fail"] = str(e)
    wd._load = load
    # The group still works after both: a plain load agrees again.
    got = wd.load_file(path, group=group, shard=SPEC, timeout=TIMEOUT)
    assert sorted(got) == sorted(SPEC_NAMES), sorted(got)
    report["checks"] += 1


def step_die(group, path):
    """Rank 1 exits mid-load (after the ranks agreed, before its reads are reported): rank 0
    must fail with an error within the timeout, never hang."""
    if rank == 1:
        def die(ck, **kw):
            os._exit(3)
        wd._load = die
    t = time.monotonic()
    try:
        wd.load_file(path, group=group, shard=SPEC, timeout=TIMEOUT)
        report["die_error"] = ""
    except Exception as e:  # noqa: BLE001 - the test checks the type and text
        report["die_error"] = f"{type(e).__name__}: {e}"
    report["die_seconds"] = time.monotonic() - t


def save():
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(top, f)
    os.replace(tmp, out)


def groups():
    """The groups the steps name: gN the gloo group of ranks 0..N-1 (the default group when N
    is the process count), mN the MPI communicator of ranks 0..N-1 (under mpirun)."""
    import datetime

    kinds = sorted({s.split(":")[0] for s in steps.split("+")})
    out_ = {}
    dist.init_process_group("gloo", init_method=init, rank=nprocs_rank, world_size=nprocs,
                            timeout=datetime.timedelta(seconds=TIMEOUT))
    mpi = None
    for k in kinds:
        n = int(k[1:])
        if k[0] == "g":
            # new_group is collective over the default group: every process calls it.
            out_[k] = None if n == nprocs else dist.new_group(list(range(n)))
        elif k[0] == "m":
            if mpi is None:
                from mpi4py import MPI

                mpi = MPI
                assert MPI.COMM_WORLD.Get_size() == nprocs
                assert MPI.COMM_WORLD.Get_rank() == nprocs_rank
            c = mpi.COMM_WORLD if n == nprocs else mpi.COMM_WORLD.Split(
                0 if nprocs_rank < n else mpi.UNDEFINED, nprocs_rank)
            out_[k] = c
    return out_


def main():
    global rank, world, report
    gs = groups()
    top["init_seconds"] = time.monotonic() - t0
    path = os.path.join(data, "m.safetensors")
    for spec in steps.split("+"):
        kind, step = spec.split(":")
        n = int(kind[1:])
        if nprocs_rank >= n:
            continue  # not a member of this group
        group = gs[kind]
        rank, world = nprocs_rank, n
        report = top.setdefault(kind, {"rank": rank, "world": world, "checks": 0, "done": []})
        try:
            if step == "main":
                shard_mode(group, path, "shard")
                os.environ["WEIGHTLIFT_SHARD_PIECE_MIN"] = str(1 << 20)
                shard_mode(group, path, "scatter")
                os.environ["WEIGHTLIFT_SHARD_PIECE_MIN"] = "1"
                if url:
                    shard_mode(group, url + "/m.safetensors", "http")
                file_mode(group)
                experts_mode(group)
            elif step == "shard":
                shard_mode(group, path, "shard")
                if url:
                    shard_mode(group, url + "/m.safetensors", "http")
            elif step == "errors":
                step_errors(group, path)
            elif step == "die":
                save()
                step_die(group, path)
            elif step == "nodes":
                nodes_mode(group)
            else:
                raise ValueError("unknown step " + step)
        except Exception as e:  # noqa: BLE001 - reported to the test; later steps go on
            report["error"] = f"{spec}: {type(e).__name__}: {e}"
            report["trace"] = traceback.format_exc()[-3000:]
            save()
            raise
        report["done"].append(step)
        save()
    top["ok"] = True


t0 = time.monotonic()
try:
    main()
except Exception as e:  # noqa: BLE001 - reported to the test
    top["error"] = f"{type(e).__name__}: {e}"
    top["trace"] = traceback.format_exc()[-3000:]
top["seconds"] = time.monotonic() - t0
save()
if dist.is_initialized():
    try:
        dist.destroy_process_group()
    except Exception:  # noqa: BLE001
        pass
sys.exit(0 if top["ok"] else 1)
