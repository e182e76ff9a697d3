# SPDX-License-Identifier: Apache-2.0
"""PyTorch flavour, same names and behaviour as safetensors.torch. Loaded tensors are zero-copy
views of memory owned by weightlift: for local files on CPU, by default, views of a private
(copy-on-write) mapping, like the reference; backend="pread" gives owned, copied memory."""
from __future__ import annotations

import os
import sys
from collections import defaultdict
from typing import Any, Dict, List, Optional, Set, Tuple, Union

import torch

from . import _core
from ._core import safe_open  # noqa: F401 - the reference module's names
from ._serialize import TensorSpec, deserialize, serialize, serialize_file  # noqa: F401

__all__ = ["load_file", "load", "save_file", "save", "save_model", "load_model", "safe_open",
           "storage_ptr", "storage_size", "serialize", "serialize_file", "deserialize",
           "TensorSpec"]


# dtypes the reference knows (getattr: older torch lacks the float8/float4 ones).
_float8_e4m3fn = getattr(torch, "float8_e4m3fn", None)
_float8_e4m3fnuz = getattr(torch, "float8_e4m3fnuz", None)
_float8_e5m2 = getattr(torch, "float8_e5m2", None)
_float8_e5m2fnuz = getattr(torch, "float8_e5m2fnuz", None)
_float8_e8m0 = getattr(torch, "float8_e8m0fnu", None)
_float4_e2m1_x2 = getattr(torch, "float4_e2m1fn_x2", None)

# torch dtype -> bytes per element (float4_e2m1fn_x2: one byte holds two).
_SIZE = {dt: torch.empty(0, dtype=dt).element_size()
         for dt in (torch.int64, torch.float32, torch.int32, torch.bfloat16, torch.float16,
                    torch.int16, torch.uint8, torch.int8, torch.bool, torch.float64,
                    torch.complex64, _float8_e4m3fn, _float8_e4m3fnuz, _float8_e5m2,
                    _float8_e5m2fnuz, _float8_e8m0, _float4_e2m1_x2,
                    getattr(torch, "uint64", None), getattr(torch, "uint32", None),
                    getattr(torch, "uint16", None))
         if dt is not None}

# safetensors dtype -> torch dtype, the reference's table (what _getdtype and _view2torch
# take; weightlift's own loader also knows F8_E8M0 and F4: _core.torch_dtypes).
_TYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool, "F8_E4M3": _float8_e4m3fn,
    "F8_E4M3FNUZ": _float8_e4m3fnuz, "F8_E5M2": _float8_e5m2, "F8_E5M2FNUZ": _float8_e5m2fnuz,
    "C64": torch.complex64,
}
if hasattr(torch, "uint64"):
    _TYPES.update({"U64": torch.uint64, "U32": torch.uint32, "U16": torch.uint16})


def storage_ptr(tensor: torch.Tensor) -> int:
    """The address of the storage under tensor (0 for meta tensors); transformers and
    accelerate group tied weights by it."""
    try:
        return tensor.untyped_storage().data_ptr()
    except Exception:
        try:
            return tensor.storage().data_ptr()
        except NotImplementedError:
            return 0


def storage_size(tensor: torch.Tensor) -> int:
    """The byte size of the storage under tensor."""
    try:
        return tensor.untyped_storage().nbytes()
    except AttributeError:
        try:
            return tensor.storage().size() * _SIZE[tensor.dtype]
        except NotImplementedError:
            return tensor.nelement() * _SIZE[tensor.dtype]


def _end_ptr(tensor: torch.Tensor) -> int:
    """One past the last byte tensor addresses (its data_ptr when empty)."""
    if tensor.nelement():
        return tensor.view(-1)[-1].data_ptr() + _SIZE[tensor.dtype]
    return tensor.data_ptr()


def _filter_shared_not_shared(tensors: List[Set[str]], state_dict: Dict[str, torch.Tensor]
                              ) -> List[Set[str]]:
    """Split groups of names sharing a storage where their byte ranges do not overlap (two
    disjoint views of one buffer are saved separately)."""
    out: List[Set[str]] = []
    for shared in tensors:
        if len(shared) < 2:
            out.append(shared)
            continue
        areas = sorted((state_dict[n].data_ptr(), _end_ptr(state_dict[n]), n) for n in shared)
        _, last_stop, last_name = areas[0]
        out.append({last_name})
        for start, stop, name in areas[1:]:
            if start >= last_stop:
                out.append({name})
            else:
                out[-1].add(name)
            last_stop = stop
    return out


def _find_shared_tensors(state_dict: Dict[str, torch.Tensor]) -> List[Set[str]]:
    """Names grouped by the storage (device, address, size) and bytes they share; meta and
    storage-less tensors are in no group."""
    by_storage: Dict[Any, Set[str]] = defaultdict(set)
    for k, v in state_dict.items():
        if v.device != torch.device("meta") and storage_ptr(v) != 0 and storage_size(v) != 0:
            by_storage[(v.device, storage_ptr(v), storage_size(v))].add(k)
    return _filter_shared_not_shared(list(sorted(by_storage.values())), state_dict)


def _is_complete(tensor: torch.Tensor) -> bool:
    """tensor covers its whole storage, without holes."""
    return tensor.data_ptr() == storage_ptr(tensor) and \
        tensor.nelement() * _SIZE[tensor.dtype] == storage_size(tensor)


def _remove_duplicate_names(state_dict: Dict[str, torch.Tensor], *,
                            preferred_names: Optional[List[str]] = None,
                            discard_names: Optional[List[str]] = None) -> Dict[str, List[str]]:
    """For each group of tied tensors, the name kept -> the names dropped (the kept one covers
    the whole storage; preferred_names win, then names not in discard_names, then the first
    in sort order)."""
    preferred = set(preferred_names or [])
    discard = set(discard_names or [])
    to_remove: Dict[str, List[str]] = defaultdict(list)
    for shared in _find_shared_tensors(state_dict):
        complete = {n for n in shared if _is_complete(state_dict[n])}
        if not complete:
            raise RuntimeError(
                "Error while trying to find names to remove to save state dict, but found no "
                f"suitable name to keep for saving amongst: {shared}. None is covering the entire "
                "storage. Refusing to save/load the model since you could be storing much more "
                "memory than needed. Please refer to "
                "https://huggingface.co/docs/safetensors/torch_shared_tensors for more "
                "information.")
        keep = sorted(complete)[0]
        kept = complete - discard
        if kept:
            keep = sorted(kept)[0]
        if preferred:
            p = preferred & complete
            if p:
                keep = sorted(p)[0]
        for n in sorted(shared):
            if n != keep:
                to_remove[keep].append(n)
    return to_remove


def _evaluate_tensors_for_save(tensors: Dict[str, torch.Tensor]) -> None:
    """The reference's checks before a save: a dict of dense torch tensors, none sharing
    memory with another."""
    if not isinstance(tensors, dict):
        raise ValueError(f"Expected a dict of [str, torch.Tensor] but received {type(tensors)}")
    sparse = []
    for k, v in tensors.items():
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"Key `{k}` is invalid, expected torch.Tensor but received {type(v)}")
        if v.layout != torch.strided:
            sparse.append(k)
    if sparse:
        raise ValueError(
            f"You are trying to save a sparse tensors: `{sparse}` which this library does not "
            "support. You can make it a dense tensor before saving with `.to_dense()` but be "
            "aware this might make a much larger file than needed.")
    failing = [g for g in _find_shared_tensors(tensors) if len(g) > 1]
    if failing:
        raise RuntimeError(
            f"Some tensors share memory, this will lead to duplicate memory on disk and potential "
            f"differences when loading them again: {failing}.\nA potential way to correctly save "
            "your model is to use `save_model`.\nMore information at "
            "https://huggingface.co/docs/safetensors/torch_shared_tensors")


def _to_ndarray(tensor: torch.Tensor):
    """(a uint8 numpy array over tensor's bytes, moved to CPU first; the CPU tensor that owns
    them, to keep alive while the array is used). No copy for CPU tensors."""
    import ctypes

    import numpy as np

    if tensor.device.type != "cpu":
        tensor = tensor.to("cpu")
    total = int(np.prod(tensor.shape, dtype=np.int64)) * tensor.element_size()
    ptr = tensor.data_ptr()
    if ptr == 0:
        return np.empty(0), 0
    data = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_ubyte)), (total,))
    if sys.byteorder == "big":
        data = data.view(np.dtype(f">u{tensor.element_size()}")).byteswap(inplace=False)
    return data, tensor


def _flatten_as_ptr(tensors: Dict[str, torch.Tensor], keep_alive_buffer: List
                    ) -> Dict[str, TensorSpec]:
    """name -> TensorSpec over each tensor's bytes (the arrays and CPU copies they point into
    go into keep_alive_buffer)."""
    _evaluate_tensors_for_save(tensors)
    flattened = {}
    for k, v in tensors.items():
        if not v.is_contiguous():
            raise ValueError(
                f"You are trying to save a non contiguous tensor: `{k}` which is not allowed. It "
                "either means you are trying to save tensors which are reference of each other in "
                "which case it's recommended to save only the full tensors, and reslice at load "
                "time, or simply call `.contiguous()` on your tensor to pack it before saving.")
        arr, ref = _to_ndarray(v)
        keep_alive_buffer.append((arr, ref))
        flattened[k] = TensorSpec(dtype=str(v.dtype).split(".")[-1], shape=v.shape,
                                  data_ptr=arr.ctypes.data, data_len=arr.nbytes)
    return flattened


def _getdtype(dtype_str: str) -> "torch.dtype":
    return _TYPES[dtype_str]


def _view2torch(safeview) -> Dict[str, torch.Tensor]:
    """deserialize()'s list -> name -> tensor (copies of the bytes)."""
    result = {}
    for k, v in safeview:
        dtype = _getdtype(v["dtype"])
        if len(v["data"]) == 0:
            arr = torch.empty(v["shape"], dtype=dtype)
        else:
            arr = torch.frombuffer(v["data"], dtype=dtype).reshape(v["shape"])
        if sys.byteorder == "big":
            arr = torch.from_numpy(arr.numpy().byteswap(inplace=False))
        result[k] = arr
    return result


def save(tensors: Dict[str, torch.Tensor], metadata: Optional[Dict[str, str]] = None) -> bytes:
    """Serialise tensors into safetensors bytes (byte-identical to the reference)."""
    keep: List[Any] = []
    return serialize(_flatten_as_ptr(tensors, keep), metadata=metadata)


def save_file(tensors: Dict[str, torch.Tensor], filename: Union[str, os.PathLike],
              metadata: Optional[Dict[str, str]] = None) -> None:
    """Write tensors to filename atomically (temporary file, fsync, rename, the GIL released):
    saving over a file that is being read is safe."""
    keep: List[Any] = []
    serialize_file(_flatten_as_ptr(tensors, keep), filename, metadata=metadata)


def load(data: bytes) -> Dict[str, torch.Tensor]:
    """Load tensors from safetensors bytes (copied into memory weightlift owns)."""
    return _core.load_dict(bytes(data), _core.to_torch)


class TorchAllocator:
    """device_allocator="torch": a GPU load's device memory comes from PyTorch's caching
    allocator (torch.cuda.caching_allocator_alloc on the device's current stream) and goes
    back to it (caching_allocator_delete) when the load's last tensor is gone, so PyTorch
    owns and reuses it. The library writes it on streams of its own and synchronises them
    before the load returns."""

    def alloc(self, device: int, nbytes: int) -> int:
        return int(torch.cuda.caching_allocator_alloc(nbytes, device))

    def free(self, device: int, ptr: int, nbytes: int) -> None:
        torch.cuda.caching_allocator_delete(ptr)


def load_file(filename: Union[str, os.PathLike], device: Union[str, int] = "cpu",
              backend: Optional[str] = None, *,
              device_allocator: Any = None,
              offline: Optional[bool] = None, group=None,
              shard: Optional[Dict[str, Optional[int]]] = None,
              experts=None, region: Optional[str] = None,
              max_rate: Union[int, str, None] = None,
              allow_full_download: Optional[bool] = None,
              cache_dir: Union[str, os.PathLike, None] = None,
              gds: Optional[str] = None,
              dtype: Any = None) -> Dict[str, torch.Tensor]:
    """Load every tensor of a file, index.json or directory (or a remote URI), in file order.

    backend: None/"mmap" (lazy copy-on-write views of the file, the default for CPU) or
    "pread" (copied into owned memory by the parallel reader). device_allocator (GPU
    devices): "torch" to have PyTorch's caching allocator own the device memory (see
    TorchAllocator), or an object with alloc(device, nbytes) and free(device, ptr, nbytes).
    offline=True: remote objects from the local cache only (weightlift.set_local_cache_dir).
    region: the AWS region of an s3:// bucket (the keyword of Anyscale's streaming
    load_file(file_uri, device=, region=)); None: AWS_REGION, AWS_DEFAULT_REGION, the
    profile's, else asked of S3. max_rate: a bandwidth cap for this load's remote transfers,
    bytes per second as an int or with the CLI's binary suffixes ("100M"; 64K .. 1024G;
    shared by every call with the same remote keywords), as --max-rate. allow_full_download:
    read a server without Range support whole, streaming (--allow-full-download). cache_dir:
    this call's local cache directory instead of set_local_cache_dir's (--cache-dir).
    group (a torch.distributed process group, an mpi4py communicator), shard ({name or glob:
    dim or None}) or experts: a distributed load, each byte read once over the ranks
    (weightlift.distributed.load_file, docs/distributed.md).
    gds (GPU devices): GPU Direct Storage, "auto" (cuFile in true GDS mode for cold local
    files), "on" (every local file through cuFile, or an error) or "off"; None:
    WEIGHTLIFT_GDS, else "auto" (docs/gpu.md). dtype (torch.float32, torch.float16,
    torch.bfloat16 or "F32", "F16", "BF16"): floating-point tensors (F8 formats included)
    are converted to it as they land, on the GPU for GPU devices; not with a distributed
    load."""
    if dtype is not None and (group is not None or shard is not None or experts is not None):
        raise ValueError("dtype= is not supported with a distributed load")
    if group is not None or shard is not None or experts is not None:
        from . import distributed

        return distributed.load_file(filename, device=device, group=group, shard=shard,
                                     experts=experts)
    return _core.load_dict(_core.check_filename(filename), _core.to_torch, device, backend,
                           allocator=device_allocator, offline=offline, region=region,
                           max_rate=max_rate, allow_full_download=allow_full_download,
                           cache_dir=cache_dir, gds=gds, dtype=dtype)


def save_model(model: "torch.nn.Module", filename: Union[str, os.PathLike],
               metadata: Optional[Dict[str, str]] = None, force_contiguous: bool = True) -> None:
    """Save a model's state dict, dropping tied duplicates (recorded in the metadata as
    dropped name -> kept name), as the reference does."""
    state_dict = model.state_dict()
    for kept, dropped in _remove_duplicate_names(state_dict).items():
        for n in dropped:
            if metadata is None:
                metadata = {}
            if n not in metadata:
                metadata[n] = kept
            del state_dict[n]
    if force_contiguous:
        state_dict = {k: v.contiguous() for k, v in state_dict.items()}
    try:
        save_file(state_dict, filename, metadata=metadata)
    except ValueError as e:
        raise ValueError(str(e) + " Or use save_model(..., force_contiguous=True), read the "
                         "docs for potential caveats.") from None


def load_model(model: "torch.nn.Module", filename: Union[str, os.PathLike], strict: bool = True,
               device: Union[str, int] = "cpu", *, backend: Optional[str] = None
               ) -> Tuple[List[str], List[str]]:
    """Load a file into a model, tolerating tied weights saved once; returns
    (missing, unexpected) like the reference."""
    state_dict = load_file(filename, device=device, backend=backend)
    dups = _remove_duplicate_names(model.state_dict(), preferred_names=state_dict.keys())
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    missing = set(missing)
    for dropped in dups.values():
        for n in dropped:
            if n not in missing:
                unexpected.append(n)
            else:
                missing.remove(n)
    if strict and (missing or unexpected):
        err = f"Error(s) in loading state_dict for {model.__class__.__name__}:"
        if missing:
            err += "\n    Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in sorted(missing))
        if unexpected:
            err += "\n    Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in sorted(unexpected))
        raise RuntimeError(err)
    return missing, unexpected
