# SPDX-License-Identifier: Apache-2.0
"""Distributed loading: each byte of a checkpoint read from storage once across the ranks of a
process group, the rest moved over the group's link (docs/distributed.md).

Two modes:

* **shard mode**, ``load_file(uri, group=pg, shard={"name or glob": dim or None})``: each rank
  reads only its own block of every sharded tensor (fastsafetensors' ``get_sharded`` rule:
  blocks of ceil(n / W), trailing ranks may get short or empty blocks; the library's
  partition stage picks the byte ranges), and each replicated tensor is read by one rank
  (balanced by bytes) and broadcast to the others.
* **file mode**, ``SafeTensorsFileLoader`` (fastsafetensors' names and behaviour) and
  ``load_file(uri, group=pg)`` without ``shard``: files (``add_filenames({rank: [...]})``), or
  with ``add_filenames([...])`` / ``load_file`` contiguous runs of tensors balanced by bytes,
  are read by one rank each; ``get_tensor`` broadcasts a tensor from the rank that read it,
  ``get_sharded`` sends each rank its block, ``push_tensor`` sends it to one rank.

Groups: a ``torch.distributed`` process group (gloo for CPU tensors, NCCL for CUDA tensors),
``None`` for the default group when one is initialised (else one process), an mpi4py
communicator (``MPI.COMM_WORLD``), or ``SingleGroup()``. Before any read every rank checks
that all ranks passed the same checkpoint (files, sizes, tensor table) and the same spec, and
after reading that every rank succeeded: a rank whose open or load fails makes every rank
raise ``DistributedError`` naming it; a rank that dies makes the others fail within the
timeout (the group's own, and ``timeout`` seconds on every wait of ours, default the
library's ``WEIGHTLIFT_COMM_TIMEOUT``, 300).
"""
from __future__ import annotations

import datetime
import fnmatch
import hashlib
import json
import os
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import _core, _native

__all__ = ["SafeTensorsFileLoader", "FilesBufferOnDevice", "SingleGroup", "DistributedError",
           "load_file", "expert_parallel_filter", "owned_expert_range", "shard_block",
           "balance"]

class DistributedError(RuntimeError):
    """A distributed load failed on some rank, or the ranks disagree (different checkpoints
    or specs), or a rank stopped answering. Raised on every rank."""


def _timeout(timeout: Optional[float]) -> float:
    """The bound on each wait: timeout (seconds, 0 < t <= 86400), else the library's
    (WEIGHTLIFT_COMM_TIMEOUT, or its earlier name WEIGHTLIFT_DIST_TIMEOUT: resolved and
    range-checked with the other knobs in src/common/ctx.c; default 300)."""
    if timeout is None:
        return float(_native.comm_timeout())
    if isinstance(timeout, bool):
        raise TypeError("timeout: expected a number of seconds")
    t = float(timeout)
    if not 0 < t <= 86400:
        raise ValueError(f"timeout {t} is out of range (0 < timeout <= 86400 seconds)")
    return t


# --- groups -------------------------------------------------------------------------------

class SingleGroup:
    """A group of one process (fastsafetensors' SingleGroup): no communication."""

    def rank(self) -> int:
        return 0

    def size(self) -> int:
        return 1


class _Single:
    name = "single"

    def __init__(self):
        self.r, self.n = 0, 1

    def allgather(self, obj, timeout):
        return [obj]

    def bcast(self, t, src, timeout):
        return t

    def send(self, t, dst, timeout):
        raise AssertionError("send in a group of one")

    def recv(self, t, src, timeout):
        raise AssertionError("recv in a group of one")


class _Torch:
    """torch.distributed: gloo (CPU tensors) or NCCL (CUDA tensors)."""
    name = "torch.distributed"

    def __init__(self, pg):
        import torch.distributed as dist

        self.dist, self.pg = dist, pg
        self.r = dist.get_rank(pg)
        self.n = dist.get_world_size(pg)

    def _g(self, r):
        if self.pg is None:
            return r
        return self.dist.get_global_rank(self.pg, r)

    def _wait(self, work, timeout):
        ok = work.wait(timeout=datetime.timedelta(seconds=timeout))
        if ok is False:
            raise TimeoutError(f"no answer within {timeout:g} s")

    def allgather(self, obj, timeout):
        out: List[Any] = [None] * self.n
        self.dist.all_gather_object(out, obj, group=self.pg)
        return out

    def bcast(self, t, src, timeout):
        self._wait(self.dist.broadcast(t, src=self._g(src), group=self.pg, async_op=True),
                   timeout)
        return t

    def send(self, t, dst, timeout):
        self._wait(self.dist.isend(t, dst=self._g(dst), group=self.pg), timeout)

    def recv(self, t, src, timeout):
        self._wait(self.dist.irecv(t, src=self._g(src), group=self.pg), timeout)


class _MPI:
    """An mpi4py communicator (CPU tensors: the buffers are the tensors' memory)."""
    name = "MPI"

    def __init__(self, comm):
        self.comm = comm
        self.r, self.n = comm.Get_rank(), comm.Get_size()

    @staticmethod
    def _buf(t):
        return t.numpy() if hasattr(t, "numpy") else t

    def _wait(self, req, timeout):
        import time

        end = time.monotonic() + timeout
        while not req.Test():
            if time.monotonic() > end:
                req.Cancel()
                raise TimeoutError(f"no answer within {timeout:g} s")
            time.sleep(0.0005)

    def allgather(self, obj, timeout):
        return self.comm.allgather(obj)

    def bcast(self, t, src, timeout):
        self._wait(self.comm.Ibcast(self._buf(t), root=src), timeout)
        return t

    def send(self, t, dst, timeout):
        self._wait(self.comm.Isend(self._buf(t), dest=dst, tag=7), timeout)

    def recv(self, t, src, timeout):
        self._wait(self.comm.Irecv(self._buf(t), source=src, tag=7), timeout)


def _group(pg) -> Any:
    if pg is None:
        try:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                return _Torch(None)
        except ImportError:
            pass
        return _Single()
    if isinstance(pg, (_Single, _Torch, _MPI)):
        return pg
    if isinstance(pg, SingleGroup) or type(pg).__name__ == "SingleGroup":
        return _Single()
    if hasattr(pg, "Get_rank") and hasattr(pg, "Ibcast"):
        return _MPI(pg)
    try:
        import torch.distributed as dist

        if isinstance(pg, dist.ProcessGroup):
            return _Torch(pg)
    except ImportError:
        pass
    if hasattr(pg, "rank") and hasattr(pg, "size"):
        if pg.size() == 1:
            return _Single()
    raise TypeError(f"group: expected a torch.distributed ProcessGroup, an mpi4py "
                    f"communicator, SingleGroup() or None, not {type(pg).__name__}")


def _collective(g, what: str, fn: Callable, *args):
    """Run one collective step; a failure of the transport (a peer gone, a timeout) becomes a
    DistributedError naming the step."""
    try:
        return fn(*args)
    except DistributedError:
        raise
    except Exception as e:  # noqa: BLE001 - gloo raises RuntimeError, MPI its own types
        raise DistributedError(f"weightlift: rank {g.r} of {g.n}: {what} over {g.name} failed "
                               f"(did another rank fail or exit?): {e}") from e


def _agree(g, what: str, digest: str, error: Optional[str], timeout: float) -> None:
    """Every rank sends (digest, error): any error fails every rank, naming the ranks;
    differing digests fail every rank too (the ranks disagree about the checkpoint or spec)."""
    got = _collective(g, what, g.allgather, (digest, error), timeout)
    errs = [(r, e) for r, (_, e) in enumerate(got) if e]
    if errs:
        r, e = errs[0]
        more = f" (and {len(errs) - 1} more rank(s))" if len(errs) > 1 else ""
        raise DistributedError(f"weightlift: {what} failed on rank {r} of {g.n}{more}: {e}")
    digests = [d for d, _ in got]
    if len(set(digests)) > 1:
        groups: Dict[str, List[int]] = {}
        for r, d in enumerate(digests):
            groups.setdefault(d, []).append(r)
        desc = "; ".join(f"ranks {v}" for v in groups.values())
        raise DistributedError(f"weightlift: the ranks passed different checkpoints or specs "
                               f"({what}: {desc} agree among themselves): every rank must "
                               f"call with the same files, shard spec and options")


# --- planning -----------------------------------------------------------------------------

def shard_block(n: int, rank: int, world: int) -> Tuple[int, int]:
    """Rank's block [begin, end) of n entries: blocks of ceil(n / world) (fastsafetensors'
    get_sharded; trailing ranks may get short or empty blocks)."""
    blk = -(-n // world)
    b = min(rank * blk, n)
    return b, min(b + blk, n)


def balance(sizes: Sequence[int], world: int) -> List[int]:
    """Owner of each item (in order) so that every rank gets a contiguous run of about
    sum / world bytes: item i goes to the rank whose share [r * total / world, ...) holds
    the item's midpoint. Contiguous runs keep each rank's reads sequential."""
    total = sum(sizes)
    out, pos = [], 0
    for s in sizes:
        mid = pos + s / 2
        out.append(min(world - 1, int(mid * world / total)) if total else 0)
        pos += s
    return out


def owned_expert_range(num_experts: int, ep_size: int, ep_rank: int) -> Tuple[int, int]:
    """[lo, hi) of the routed experts ep_rank owns: contiguous blocks of num_experts //
    ep_size, the remainder one each to the lowest ranks (fastsafetensors' rule, the C
    library's WLIFT_EXPERTS_BLOCK)."""
    if ep_size <= 0:
        raise ValueError(f"ep_size must be positive, got {ep_size}")
    if not 0 <= ep_rank < ep_size:
        raise ValueError(f"ep_rank {ep_rank} out of range for ep_size {ep_size}")
    base, rem = divmod(num_experts, ep_size)
    lo = ep_rank * base + min(ep_rank, rem)
    return lo, lo + base + (1 if ep_rank < rem else 0)


def expert_parallel_filter(num_experts: int, ep_size: int, ep_rank: int,
                           pattern=None) -> Callable[[str], bool]:
    """keep(name) -> bool for this expert-parallel rank: tensors whose name matches pattern
    (default r"\\.experts\\.(\\d+)\\.") are kept when the rank owns that expert, every other
    tensor always (fastsafetensors' helper of the same name)."""
    import re

    rx = re.compile(r"(?:^|\.)experts\.(\d+)\.") if pattern is None else (
        re.compile(pattern) if isinstance(pattern, str) else pattern)
    lo, hi = owned_expert_range(num_experts, ep_size, ep_rank)

    def keep(name: str) -> bool:
        m = rx.search(name)
        return m is None or lo <= int(m.group(1)) < hi

    return keep


def _experts_arg(experts, rank: int, world: int):
    """experts= as the C filter's tuple, or a callable to apply in Python (None: none).
    Accepted: "block" / "round-robin" (optionally ":N"), a dict {placement, num_experts,
    ep_rank, ep_size, marker}, or a callable keep(name) -> bool."""
    if experts is None or callable(experts):
        return None
    if isinstance(experts, str):
        place, _, n = experts.partition(":")
        experts = {"placement": place, "num_experts": int(n) if n else 0}
    if not isinstance(experts, Mapping):
        raise TypeError("experts: expected a placement string, a dict or a callable")
    place = experts.get("placement", "block")
    codes = {"block": _native.EXPERTS_BLOCK, "round-robin": _native.EXPERTS_ROUND_ROBIN}
    if place not in codes:
        raise ValueError(f"experts placement {place!r}: expected 'block' or 'round-robin'")
    size = int(experts.get("ep_size", world))
    r = int(experts.get("ep_rank", rank))
    return (codes[place], int(experts.get("num_experts", 0)), r if size > 1 else 0,
            size if size > 1 else 0, experts.get("marker"))


def _rule_of(rules: Sequence[Tuple[str, int]], name: str) -> int:
    for p, d in rules:
        if p == name:
            return d
    for p, d in rules:
        if fnmatch.fnmatchcase(name, p):
            return d
    return -1


def _shard_rules(shard: Optional[Mapping[str, Optional[int]]]) -> List[Tuple[str, int]]:
    if shard is None:
        return []
    if not isinstance(shard, Mapping):
        raise TypeError("shard: expected a dict {name or glob: dim or None}")
    out = []
    for k, v in shard.items():
        if not isinstance(k, str):
            raise TypeError(f"shard: keys are tensor names or globs, not {type(k).__name__}")
        if v is None:
            v = -1
        if isinstance(v, bool) or not isinstance(v, int) or v < -1:
            raise ValueError(f"shard[{k!r}] = {v!r}: expected a dim >= 0, or None to "
                             f"replicate")
        out.append((k, v))
    return out


def _table(ck) -> List[Tuple[str, str, Tuple[int, ...], int]]:
    out = []
    for name in ck.names():
        n, dt, shape, nbytes = ck.info(name)[:4]
        out.append((n, dt, tuple(shape), nbytes))
    return out


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# --- tensors --------------------------------------------------------------------------------

def _torch():
    import torch

    return torch


def _empty(dt: str, shape: Tuple[int, ...], nbytes: int, device):
    torch = _torch()
    raw = torch.empty(nbytes, dtype=torch.uint8, device=device)
    return raw, _core._torch_view(raw, dt, shape)


def _raw(t):
    """A flat uint8 view of a contiguous torch tensor (any dtype, 0-d included)."""
    torch = _torch()
    t = t.contiguous()
    return t.reshape(-1).view(torch.uint8) if t.numel() else torch.empty(0, dtype=torch.uint8,
                                                                         device=t.device)


def _to_device(t, device):
    return t if device is None or str(t.device) == str(device) else t.to(device)


def _load(ck, **kw):
    """The one library load of a rank (a seam the tests use to stop a rank mid-load)."""
    return ck.load(**kw)


def _device_args(device) -> Tuple[str, Any]:
    """(the C load's device, the torch device of the results)."""
    if device is None:
        device = "cpu"
    dev = str(device)
    cdev, move = _core.split_device(dev if ":" in dev or dev in ("cpu", "cuda") else dev)
    return cdev, (move or (cdev if cdev.startswith("cuda") else "cpu"))


# --- shard mode and file mode: load_file ----------------------------------------------------

def _piece_min() -> int:
    """The library's WLIFT_SHARD_PIECE_MIN (src/common/tunables.h, measured), or
    WEIGHTLIFT_SHARD_PIECE_MIN as the library reads it."""
    env = os.environ.get("WEIGHTLIFT_SHARD_PIECE_MIN")
    try:
        v = int(env) if env else 0
    except ValueError:
        v = 0
    return v if v > 0 else 8 << 10


def _small_pieces(t, dim: int, world: int) -> bool:
    """A block along dim > 0 of t = (name, dtype, shape, nbytes) that the library would read
    as its covering range (pieces under the piece threshold)."""
    _, dt, shape, nbytes = t
    if world < 2 or dim <= 0 or dim >= len(shape) or not nbytes:
        return False
    outer = 1
    for s in shape[:dim]:
        outer *= s
    if outer <= 1:
        return False
    inner = nbytes // outer // shape[dim] if shape[dim] else 0
    return -(-shape[dim] // world) * inner < _piece_min()


def _scatter(g, name, full, owner, dt, shape, nbytes, dim, device, tmo):
    """Owner (holding full) sends each rank its block along dim; returns (this rank's block,
    bytes sent)."""
    b, e = shard_block(shape[dim], g.r, g.n)
    sent = 0
    if g.r == owner:
        for r in range(g.n):
            if r == g.r:
                continue
            rb, re_ = shard_block(shape[dim], r, g.n)
            blk = full.narrow(dim, rb, re_ - rb).contiguous()
            if blk.numel():
                _collective(g, f"sending {name!r} to rank {r}", g.send, _raw(blk), r, tmo)
                sent += blk.numel() * blk.element_size()
        return full.narrow(dim, b, e - b).contiguous(), sent
    bshape = tuple(e - b if i == dim else s for i, s in enumerate(shape))
    bbytes = nbytes // shape[dim] * (e - b) if shape[dim] else 0
    raw, t = _empty(dt, bshape, bbytes, device)
    if bbytes:
        _collective(g, f"receiving {name!r} from rank {owner}", g.recv, raw, owner, tmo)
    return t, 0

def load_file(uri, device: Any = "cpu", group: Any = None,
              shard: Optional[Mapping[str, Optional[int]]] = None, *,
              experts: Any = None, names: Optional[Iterable[str]] = None,
              timeout: Optional[float] = None, stats: Optional[dict] = None) -> Dict[str, Any]:
    """Load a checkpoint (file, index.json, directory or URL) across the ranks of group,
    reading each byte from storage once over the ranks, and return this rank's torch tensors.

    shard: {name or glob: dim, or None to replicate}: each rank gets its block of ceil(n / W)
    along dim of every matching tensor, read by that rank alone; every other tensor is read
    by one rank (balanced by bytes) and broadcast. Without shard (file mode), every tensor is
    read by one rank and broadcast, so each rank gets the whole checkpoint.
    experts: expert parallelism over the group (or ep_rank/ep_size in a dict): "block" /
    "round-robin" (optionally ":N"), a dict, or a callable keep(name) -> bool; routed experts
    a rank does not own are neither read nor exchanged.
    stats (a dict, optional) receives bytes_read (this rank's reads from storage), bytes,
    exchanged_bytes and the plan."""
    torch = _torch()
    g = _group(group)
    tmo = _timeout(timeout)
    cdev, tdev = _device_args(device)
    rules = _shard_rules(shard)
    ck, err, digest = None, None, ""
    table: List[Tuple[str, str, Tuple[int, ...], int]] = []
    try:
        ck = _core.open_checkpoint(uri if not isinstance(uri, os.PathLike) else os.fspath(uri))
        table = _table(ck)
        files = [(os.path.basename(f[0]), f[1]) for f in ck.files()]
        ex = _experts_arg(experts, g.r, g.n)
        digest = _digest(files, table, rules, ex[:2] + ex[3:] if ex else None,
                         sorted(names) if names is not None else None, callable(experts), g.n)
    except Exception as e:  # noqa: BLE001 - reported to every rank below
        err = f"{type(e).__name__}: {e}"
    try:
        _agree(g, "opening the checkpoint", digest, err, tmo)
        ex = _experts_arg(experts, g.r, g.n)
        keep = experts if callable(experts) else None
        want = set(names) if names is not None else None
        sel = [t for t in table if (want is None or t[0] in want) and (keep is None or keep(t[0]))]
        if want is not None and len(want) > len({t[0] for t in sel}) and keep is None:
            missing = sorted(want - {t[0] for t in table})
            if missing:
                raise DistributedError(f"weightlift: tensor {missing[0]!r} is not in the "
                                       f"checkpoint")
        # The owner of each replicated tensor: contiguous runs balanced by bytes. A rank whose
        # expert filter drops a tensor cannot read it for others, so with an expert filter in
        # the library each rank reads its own replicated tensors (they are the shared ones).
        split = {t[0]: _rule_of(rules, t[0]) for t in sel} if g.n > 1 else {}
        # A block along dim > 0 whose pieces are small would be read as its covering range
        # by every rank (W times the bytes): such a tensor is read whole by one rank, which
        # sends each rank its block, so each byte is still read once.
        scatter = {t[0] for t in sel if ex is None and _small_pieces(t, split.get(t[0], -1),
                                                                     g.n)}
        once = [t for t in sel if split.get(t[0], -1) < 0 or t[0] in scatter]
        owners = dict(zip((t[0] for t in once), balance([t[3] for t in once], g.n))) \
            if g.n > 1 and ex is None else {}
        mine = [t[0] for t in sel if owners.get(t[0], g.r) == g.r]
        crules = [(n, -1) for n in sorted(scatter)] + rules
        res = None
        try:
            if mine or not sel:
                res = _load(ck, names=mine, mmap=_core.MMAP_OFF, device=cdev,
                            rank=g.r if g.n > 1 else 0, world=g.n if g.n > 1 else 0,
                            shard=crules or None, experts=ex)
            err = None
        except Exception as e:  # noqa: BLE001
            err = f"{type(e).__name__}: {e}"
        _agree(g, "loading", "", err, tmo)
        out: Dict[str, Any] = {}
        got = {t.name: t for t in res.tensors()} if res is not None else {}
        exchanged = 0
        for name, dt, shape, nbytes in sel:
            o = owners.get(name)
            v = _to_device(_core.to_torch(got[name]), tdev) if name in got and \
                (o is None or o == g.r) else None
            if name in scatter:
                v, n = _scatter(g, name, v, o, dt, shape, nbytes, split[name], tdev, tmo)
                exchanged += n
            elif o is not None:
                if g.r == o:
                    _collective(g, f"broadcasting {name!r}", g.bcast, _raw(v), o, tmo)
                else:
                    raw, v = _empty(dt, shape, nbytes, tdev)
                    _collective(g, f"broadcasting {name!r}", g.bcast, raw, o, tmo)
                exchanged += nbytes
            if v is not None:
                out[name] = v
        if stats is not None:
            s = res.stats() if res is not None else {"bytes_read": 0, "bytes": 0}
            stats.update(bytes_read=s["bytes_read"], bytes=s["bytes"],
                         exchanged_bytes=exchanged, rank=g.r, world=g.n,
                         read=sorted(mine), owners=owners)
        return out
    finally:
        if ck is not None:
            ck.close()


# --- fastsafetensors' loader ----------------------------------------------------------------

class SafeTensorsFileLoader:
    """fastsafetensors' loader: add_filenames({rank: [paths or URIs]}), copy_files_to_device()
    → FilesBufferOnDevice. Each rank reads the files listed under its own rank (each byte
    once over the group); the buffer's get_tensor / get_sharded / push_tensor / as_dict move
    tensors from the rank that read them. add_filenames([...]) (a plain list) instead splits
    the listed checkpoints' tensors into contiguous runs balanced by bytes.

    pg: a torch.distributed ProcessGroup, an mpi4py communicator, SingleGroup() or None.
    device: "cpu", "cuda", "cuda:N" or a torch.device. nogds, debug_log, framework and
    other fastsafetensors keywords are accepted and ignored (GDS is chosen by the library)."""

    def __init__(self, pg: Any = None, device: Any = "cpu", nogds: bool = False,
                 debug_log: bool = False, framework: str = "pytorch",
                 timeout: Optional[float] = None, **kwargs: Any):
        if framework not in ("pytorch", "pt", "torch"):
            raise ValueError(f"framework {framework!r}: weightlift's loader returns torch "
                             f"tensors (framework='pytorch')")
        self._g = _group(pg)
        self._pg = pg
        self._device = device
        self._timeout = _timeout(timeout)
        self._by_rank: Dict[int, List[str]] = {}
        self._balanced: List[str] = []
        self._filter: Optional[Callable[[str], bool]] = None

    def set_tensor_filter(self, keep: Optional[Callable[[str], bool]]) -> None:
        """Only tensors with keep(name) true are read (e.g. expert_parallel_filter(...))."""
        self._filter = keep

    def add_filenames(self, filenames: Union[Mapping[int, Sequence[Any]], Sequence[Any]]) -> None:
        """{rank: [paths or URIs]} as fastsafetensors (every rank passes the same mapping),
        or a list to be split over the ranks by bytes."""
        if isinstance(filenames, Mapping):
            for r, fs in filenames.items():
                if not isinstance(r, int) or not 0 <= r < self._g.n:
                    raise ValueError(f"add_filenames: rank {r!r} is outside the group of "
                                     f"{self._g.n}")
                self._by_rank.setdefault(r, []).extend(os.fspath(f) for f in fs)
        else:
            self._balanced.extend(os.fspath(f) for f in filenames)

    def reset(self) -> None:
        self._by_rank, self._balanced = {}, []

    def close(self) -> None:
        self.reset()

    def get_keys(self) -> List[str]:
        return list(self._keys) if hasattr(self, "_keys") else []

    def copy_files_to_device(self, dtype: Any = None, use_buf_register: bool = True,
                             max_copy_block_size: int = 0, **kwargs: Any) -> "FilesBufferOnDevice":
        """Read this rank's files (or tensor runs) into the device; every rank must call it.
        dtype: a torch floating dtype to convert floating tensors to (None keeps)."""
        g, tmo = self._g, self._timeout
        cdev, tdev = _device_args(self._device)
        plan: List[Tuple[int, str, Optional[List[str]]]] = []  # (owner, uri, names or all)
        meta: Dict[str, Tuple[int, str, Tuple[int, ...], int]] = {}
        cks: Dict[str, Any] = {}
        err, digest = None, ""
        try:
            for r in sorted(self._by_rank):
                for f in self._by_rank[r]:
                    plan.append((r, f, None))
            tables = []
            # Every rank reads the headers of the files it loads and of the balanced list
            # (one small read each): the owners of the rest send their tables.
            for r, f, _ in plan:
                if r == g.r:
                    cks[f] = _core.open_checkpoint(f)
            for f in self._balanced:
                cks[f] = _core.open_checkpoint(f)
                t = _table(cks[f])
                tables.append((f, t))
            if tables:
                flat = [(f, t) for f, tab in tables for t in tab]
                own = balance([t[3] for _, t in flat], g.n)
                for (f, t), o in zip(flat, own):
                    meta[t[0]] = (o, t[1], t[2], t[3])
            digest = _digest(sorted((r, fs) for r, fs in self._by_rank.items()),
                             [(f, [t[:3] for t in tab]) for f, tab in tables], g.n,
                             self._filter is not None)
        except Exception as e:  # noqa: BLE001
            err = f"{type(e).__name__}: {e}"
        results = []
        try:
            _agree(g, "opening the checkpoint files", digest, err, tmo)
            mine_tabs = []
            err = None
            try:
                for r, f, _ in plan:
                    if r != g.r:
                        continue
                    tab = _table(cks[f])
                    names = [t[0] for t in tab if self._filter is None or self._filter(t[0])]
                    mine_tabs.append([t for t in tab if t[0] in set(names)])
                    results.append(_load(cks[f], names=names, mmap=_core.MMAP_OFF, device=cdev))
                for f in self._balanced:
                    names = [t[0] for t in _table(cks[f]) if meta[t[0]][0] == g.r and
                             (self._filter is None or self._filter(t[0]))]
                    if names:
                        results.append(_load(cks[f], names=names, mmap=_core.MMAP_OFF,
                                             device=cdev))
            except Exception as e:  # noqa: BLE001
                err = f"{type(e).__name__}: {e}"
            tabs = _collective(g, "exchanging the tensor tables", g.allgather,
                               (mine_tabs, err), tmo)
            errs = [(r, e) for r, (_, e) in enumerate(tabs) if e]
            if errs:
                raise DistributedError(f"weightlift: loading failed on rank {errs[0][0]} of "
                                       f"{g.n}: {errs[0][1]}")
            for r, (ts, _) in enumerate(tabs):
                for tab in ts:
                    for name, dt, shape, nbytes in tab:
                        if name in meta and meta[name][0] != r:
                            raise DistributedError(f"weightlift: tensor {name!r} is in files of "
                                                   f"ranks {meta[name][0]} and {r}")
                        meta[name] = (r, dt, tuple(shape), nbytes)
            if self._filter is not None:
                meta = {k: v for k, v in meta.items() if self._filter(k)}
            local = {}
            for res in results:
                for t in res.tensors():
                    local[t.name] = _to_device(_core.to_torch(t), tdev)
            stats = [res.stats() for res in results]
            self._keys = list(meta)
            return FilesBufferOnDevice(g, meta, local, tdev, dtype, tmo, results,
                                       sum(s["bytes_read"] for s in stats))
        finally:
            for ck in cks.values():
                ck.close()


class FilesBufferOnDevice:
    """The tensors of a SafeTensorsFileLoader.copy_files_to_device(). SPMD: every rank must
    call the same methods in the same order (they are collectives). Tensors returned stay
    valid after close()."""

    def __init__(self, g, meta, local, device, dtype, timeout, results, bytes_read):
        self._g, self._meta, self._local = g, meta, local
        self._device, self._dtype, self._tmo = device, dtype, timeout
        self._results = results
        self.bytes_read = bytes_read  # this rank's reads from storage
        self.exchanged_bytes = 0

    def keys(self) -> List[str]:
        return list(self._meta)

    def get_keys(self) -> List[str]:
        return list(self._meta)

    def get_shape(self, tensor_name: str) -> List[int]:
        return list(self._info(tensor_name)[2])

    def get_filename(self, tensor_name: str) -> str:
        return ""

    def _info(self, name: str):
        if name not in self._meta:
            raise ValueError(f"weightlift: tensor {name!r} was not found in the files")
        return self._meta[name]

    def _cast(self, t, dtype):
        dtype = dtype if dtype is not None else self._dtype
        if dtype is not None and t.is_floating_point() and t.dtype != dtype:
            return t.to(dtype)
        return t

    def get_tensor(self, tensor_name: str, device: Any = None, dtype: Any = None):
        """The whole tensor on every rank: broadcast from the rank that read it."""
        owner, dt, shape, nbytes = self._info(tensor_name)
        g = self._g
        if g.n == 1 or owner == g.r:
            t = self._local[tensor_name]
            if g.n > 1:
                _collective(g, f"broadcasting {tensor_name!r}", g.bcast, _raw(t), owner,
                            self._tmo)
        else:
            raw, t = _empty(dt, shape, nbytes, self._device)
            _collective(g, f"broadcasting {tensor_name!r}", g.bcast, raw, owner, self._tmo)
        if g.n > 1:
            self.exchanged_bytes += nbytes
        return self._cast(_to_device(t, device), dtype)

    def get_sharded(self, tensor_name: str, dim: int, device: Any = None, dtype: Any = None):
        """This rank's block of ceil(n / W) along dim (dim -1: get_tensor): the rank that read
        the tensor sends each rank its block."""
        if dim is None or dim == -1:
            return self.get_tensor(tensor_name, device, dtype)
        owner, dt, shape, nbytes = self._info(tensor_name)
        g = self._g
        if not 0 <= dim < len(shape):
            raise ValueError(f"weightlift: tensor {tensor_name!r} has {len(shape)} dimensions: "
                             f"it cannot be split along dim {dim}")
        if g.n == 1:
            t = self._local[tensor_name]
        else:
            t, sent = _scatter(g, tensor_name, self._local[tensor_name] if g.r == owner else None,
                               owner, dt, shape, nbytes, dim, self._device, self._tmo)
            self.exchanged_bytes += sent
        return self._cast(_to_device(t, device), dtype)

    def push_tensor(self, tensor_name: str, dst_rank: int, device: Any = None,
                    dtype: Any = None):
        """Send the tensor from the rank that read it to dst_rank: dst_rank gets it, the other
        ranks None."""
        owner, dt, shape, nbytes = self._info(tensor_name)
        g = self._g
        if owner == dst_rank:
            return self._cast(_to_device(self._local[tensor_name], device), dtype) \
                if g.r == owner else None
        if g.r == owner:
            _collective(g, f"sending {tensor_name!r} to rank {dst_rank}", g.send,
                        _raw(self._local[tensor_name]), dst_rank, self._tmo)
            self.exchanged_bytes += nbytes
            return None
        if g.r == dst_rank:
            raw, t = _empty(dt, shape, nbytes, self._device)
            _collective(g, f"receiving {tensor_name!r} from rank {owner}", g.recv, raw, owner,
                        self._tmo)
            return self._cast(_to_device(t, device), dtype)
        return None

    def as_dict(self, tensor_shard_dim: Union[Mapping[str, int], Iterable[str]]) -> Dict[str, Any]:
        """{name: get_sharded(name, dim)} for a {name: dim} mapping (dim -1: whole), or the
        whole tensors of a list of names."""
        items = tensor_shard_dim.items() if isinstance(tensor_shard_dim, Mapping) \
            else ((n, -1) for n in tensor_shard_dim)
        return {n: self.get_sharded(n, d) for n, d in items}

    def close(self) -> None:
        self._local = {}
        self._results = []
