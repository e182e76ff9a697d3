# SPDX-License-Identifier: Apache-2.0
"""The loaders of ``--load-format weightlift`` and ``weightlift_count`` and the deferred
tensors they hand to the model (how and why: the package's docstring, docs/vllm.md)."""
from __future__ import annotations

import json
import os
import threading
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn

from vllm.logger import init_logger
from vllm.model_executor.model_loader.default_loader import DefaultModelLoader

from .. import _core, _native
from . import COUNT_FORMAT, FORMAT, STATS_ENV, _LAST

__all__ = ["WeightliftModelLoader", "DeferredTensor"]

# Under vLLM's logger namespace, so the line shows in vLLM's own log (format, level).
logger = init_logger("vllm.weightlift")


# --- deferred tensors -------------------------------------------------------------------

class _Stats:
    """Per-process counters of one load (one rank)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bytes_read = 0        # from storage, as the engine reports it
        self.bytes_checkpoint = 0  # every tensor of the files, whole (what the default reads)
        self.tensors = 0           # tensors handed to the model
        self.reads_whole = 0       # reads of a whole tensor
        self.reads_narrowed = 0    # reads of a rank's block (rows, or a shard along a dim)
        self.bytes_narrowed = 0    # bytes of those blocks

    def add_read(self, nread: int, narrowed: bool, nbytes: int) -> None:
        with self.lock:
            self.bytes_read += nread
            if narrowed:
                self.reads_narrowed += 1
                self.bytes_narrowed += nbytes
            else:
                self.reads_whole += 1

    def as_dict(self) -> Dict[str, int]:
        with self.lock:
            return {"bytes_read": self.bytes_read, "bytes_checkpoint": self.bytes_checkpoint,
                    "tensors": self.tensors, "reads_whole": self.reads_whole,
                    "reads_narrowed": self.reads_narrowed,
                    "bytes_narrowed": self.bytes_narrowed}


class _Source:
    """One tensor of an open checkpoint: what a deferred tensor reads from."""

    __slots__ = ("ck", "path", "name", "dtype", "shape", "stats")

    def __init__(self, ck: Any, path: str, name: str, dtype: str, shape: Tuple[int, ...],
                 stats: _Stats) -> None:
        self.ck, self.path, self.name = ck, path, name
        self.dtype, self.shape, self.stats = dtype, shape, stats


Region = Tuple[Tuple[int, int], ...]  # (start, length) per dimension


def _block_of(start: int, length: int, n: int) -> Optional[Tuple[int, int]]:
    """(rank, world) whose block of ceil(n / world) entries (the engine's shard rule) is
    [start, start + length), or None."""
    if length <= 0 or n % length or start % length:
        return None
    return start // length, n // length


def _read(src: _Source, region: Region) -> torch.Tensor:
    """The region of src's tensor, read through the engine (one load)."""
    shape = src.shape
    cut = [d for d, ((s, n), full) in enumerate(zip(region, shape)) if (s, n) != (0, full)]
    out_shape = tuple(n for _, n in region)
    nbytes = _nbytes(src.dtype, out_shape)
    if any(n == 0 for n in out_shape):
        return torch.empty(out_shape, dtype=_torch_dtype(src))
    kw: Dict[str, Any] = {}
    rest: List[int] = cut
    if cut and cut[0] == 0:
        s, n = region[0]
        kw["rows"] = ((s, s + n),)
        rest = cut[1:]
    elif len(cut) == 1:
        blk = _block_of(region[cut[0]][0], region[cut[0]][1], shape[cut[0]])
        if blk is not None and blk[1] > 1:
            kw.update(rank=blk[0], world=blk[1], shard=((src.name, cut[0]),))
            rest = []
    try:
        res = src.ck.load(names=(src.name,), mmap=_core.MMAP_OFF, **kw)
    except Exception as e:
        msg = f"weightlift: reading tensor {src.name!r} of {src.path} for vLLM: {e}"
        try:
            err = type(e)(msg)
        except Exception:  # noqa: BLE001 - an exception type that takes other arguments
            err = RuntimeError(msg)
        raise err from e
    t = _core.to_torch(res.tensor(0))
    src.stats.add_read(res.stats()["bytes_read"], bool(cut), nbytes)
    for d in rest:
        s, n = region[d]
        t = t.narrow(d, s, n)
    return t


def _nbytes(dtype: str, shape: Sequence[int]) -> int:
    n = 1
    for k in shape:
        n *= k
    return n * _native.dtype_bits(dtype) // 8


def _torch_dtype(src: _Source):
    dt = _core.torch_dtypes().get(src.dtype)
    if dt is None:
        raise TypeError(f"weightlift: tensor {src.name!r} of {src.path} has dtype "
                        f"{src.dtype}, which torch has no type for")
    return dt


# Operations answered from the deferred tensor's metadata, without reading it.
_META = {
    torch.Tensor.size, torch.Tensor.dim, torch.Tensor.numel, torch.Tensor.nelement,
    torch.Tensor.element_size, torch.Tensor.__len__, torch.Tensor.is_floating_point,
    torch.Tensor.is_complex, torch.Tensor.__hash__, torch.Tensor.get_device,
    torch.Tensor.shape.__get__, torch.Tensor.ndim.__get__,  # type: ignore[attr-defined]
    torch.Tensor.dtype.__get__, torch.Tensor.device.__get__,  # type: ignore[attr-defined]
    torch.Tensor.layout.__get__, torch.Tensor.is_cuda.__get__,  # type: ignore[attr-defined]
    torch.Tensor.requires_grad.__get__, torch.Tensor.is_sparse.__get__,  # type: ignore
    torch.Tensor.is_quantized.__get__, torch.Tensor.is_meta.__get__,  # type: ignore
    torch.Tensor.nbytes.__get__, torch.Tensor.itemsize.__get__,  # type: ignore
}


class DeferredTensor(torch.Tensor):
    """A checkpoint tensor, or a region of one, not read yet (see the module's docstring).
    ``narrow``, basic slices, ``detach`` and metadata stay deferred; anything else reads the
    region (once; the values are kept) and runs on the values."""

    _wl_src: _Source
    _wl_region: Region
    _wl_value: Optional[torch.Tensor]

    @staticmethod
    def __new__(cls, src: _Source, region: Optional[Region] = None):
        if region is None:
            region = tuple((0, n) for n in src.shape)
        t = torch.Tensor._make_wrapper_subclass(  # type: ignore[attr-defined]
            cls, tuple(n for _, n in region), dtype=_torch_dtype(src), device="cpu",
            requires_grad=False)
        t._wl_src = src
        t._wl_region = region
        t._wl_value = None
        return t

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def _wl_read(self) -> torch.Tensor:
        if self._wl_value is None:
            self._wl_value = _read(self._wl_src, self._wl_region)
        return self._wl_value

    def _wl_narrow(self, dim: int, start: int, length: int) -> "DeferredTensor":
        nd = len(self._wl_region)
        if not -nd <= dim < nd:
            raise IndexError(f"Dimension out of range (expected to be in range of "
                             f"[{-nd}, {nd - 1}], but got {dim})")
        dim %= nd
        s0, n0 = self._wl_region[dim]
        if start < 0:
            start += n0
        if not 0 <= start <= n0 or length < 0 or start + length > n0:
            raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size "
                               f"({n0}).")
        region = list(self._wl_region)
        region[dim] = (s0 + start, length)
        return DeferredTensor(self._wl_src, tuple(region))

    def _wl_getitem(self, idx: Any) -> Optional["DeferredTensor"]:
        """Basic slices with step 1 (and a trailing Ellipsis) stay deferred; None: other."""
        items = idx if isinstance(idx, tuple) else (idx,)
        if items and items[-1] is Ellipsis:
            items = items[:-1]
        if len(items) > len(self._wl_region) or \
                not all(isinstance(i, slice) and i.step in (None, 1) for i in items):
            return None
        t = self
        for d, sl in enumerate(items):
            n = t._wl_region[d][1]
            b, e, _ = sl.indices(n)
            t = t._wl_narrow(d, b, max(0, e - b))
        return t

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _META:
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs)
        if func in (torch.Tensor.narrow, torch.narrow) and isinstance(args[0], DeferredTensor):
            a = list(args[1:]) + [kwargs.get(k) for k in ("dim", "start", "length")
                                  if k in kwargs]
            if len(a) == 3 and all(isinstance(x, int) for x in a):
                return args[0]._wl_narrow(*a)
        if func is torch.Tensor.__getitem__ and isinstance(args[0], DeferredTensor):
            t = args[0]._wl_getitem(args[1])
            if t is not None:
                return t
        if func is torch.Tensor.detach and isinstance(args[0], DeferredTensor):
            return DeferredTensor(args[0]._wl_src, args[0]._wl_region)
        args = _values(args)
        kwargs = _values(kwargs)
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        # An operation that reached the dispatcher (past __torch_function__) runs on values.
        return func(*_values(args), **_values(kwargs or {}))

    def __repr__(self) -> str:  # noqa: D105 - the values' repr (reads them)
        return repr(self._wl_read())

    def __reduce_ex__(self, proto):  # pickling sends the values
        return self._wl_read().__reduce_ex__(proto)


def _values(x: Any) -> Any:
    """x with each deferred tensor (in tuples, lists and dict values) replaced by its values."""
    if isinstance(x, DeferredTensor):
        return x._wl_read()
    if isinstance(x, (list, tuple)):
        return type(x)(_values(v) for v in x)
    if isinstance(x, dict):
        return {k: _values(v) for k, v in x.items()}
    return x


# --- the loaders ------------------------------------------------------------------------

def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


def _report(load_format: str, stats: Dict[str, Any]) -> None:
    stats = dict(stats, rank=_rank(), format=load_format)
    _LAST[load_format] = stats
    logger.info("%s: rank %d read %d bytes from storage (the checkpoint's tensors: %d bytes; "
                "%d tensors)", load_format, stats["rank"], stats["bytes_read"],
                stats["bytes_checkpoint"], stats["tensors"])
    d = os.environ.get(STATS_ENV)
    if d:
        path = os.path.join(d, f"{load_format}-rank{stats['rank']}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(stats, f)
        os.replace(path + ".tmp", path)


class _SafetensorsFiles(DefaultModelLoader):
    """The default loader, finding files as for ``--load-format safetensors``: its
    _prepare_weights rejects format names it does not know."""

    def _prepare_weights(self, *args: Any, **kwargs: Any):
        own = self.load_config
        self.load_config = own.__class__(**{**_fields(own), "load_format": "safetensors"})
        try:
            return super()._prepare_weights(*args, **kwargs)
        finally:
            self.load_config = own


def _fields(cfg: Any) -> Dict[str, Any]:
    import dataclasses

    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.init}


class WeightliftModelLoader(_SafetensorsFiles):
    """``--load-format weightlift``: safetensors checkpoints read by the weightlift engine,
    each tensor-parallel rank reading only the blocks its layers keep (module docstring)."""

    def __init__(self, load_config: Any) -> None:
        super().__init__(load_config)
        self._wl_stats = _Stats()
        self._wl_open: List[Any] = []

    def _get_weights_iterator(self, source: "DefaultModelLoader.Source") \
            -> Iterator[Tuple[str, torch.Tensor]]:
        import time

        _, files, use_safetensors, _ = self._prepare_weights(
            source.model_or_path, source.subfolder, source.revision, source.fall_back_to_pt,
            source.allow_patterns_overrides)
        if not use_safetensors:
            raise ValueError(f"weightlift: {source.model_or_path} has no *.safetensors files "
                             f"(found {', '.join(sorted(files)[:3])}); use vLLM's "
                             f"--load-format auto for other formats")
        if self.counter_before_loading_weights == 0.0:
            self.counter_before_loading_weights = time.perf_counter()
        return self._iterate(sorted(files), source.prefix)

    def _iterate(self, files: List[str], prefix: str) -> Iterator[Tuple[str, torch.Tensor]]:
        stats = self._wl_stats
        for path in files:
            ck = _core.open_checkpoint(path)
            self._wl_open.append(ck)
            for name in ck.names():
                info = ck.info(name)
                src = _Source(ck, path, name, info[1], tuple(info[2]), stats)
                with stats.lock:
                    stats.tensors += 1
                    stats.bytes_checkpoint += _nbytes(src.dtype, src.shape)
                yield prefix + name, DeferredTensor(src)

    def load_weights(self, model: nn.Module, model_config: Any) -> None:
        self._wl_stats = _Stats()
        try:
            super().load_weights(model, model_config)
        finally:
            for ck in self._wl_open:
                ck.close()
            self._wl_open = []
        _report(FORMAT, self._wl_stats.as_dict())


class _CountingDefaultLoader(_SafetensorsFiles):
    """``--load-format weightlift_count`` (only with WEIGHTLIFT_VLLM_STATS_DIR set): vLLM's
    own safetensors loader, counting the bytes of the tensors it hands to the model."""

    def _get_weights_iterator(self, source):
        it = super()._get_weights_iterator(source)

        def count():
            for name, t in it:
                self._wl_bytes += t.nbytes
                self._wl_tensors += 1
                yield name, t
        return count()

    def load_weights(self, model: nn.Module, model_config: Any) -> None:
        self._wl_bytes = 0
        self._wl_tensors = 0
        super().load_weights(model, model_config)
        _report(COUNT_FORMAT, {"bytes_read": self._wl_bytes,
                               "bytes_checkpoint": self._wl_bytes,
                               "tensors": self._wl_tensors})
