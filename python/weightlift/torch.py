# SPDX-License-Identifier: Apache-2.0
"""PyTorch flavour, same names and behaviour as safetensors.torch. Loaded tensors are zero-copy
views of memory owned by weightlift: for local files on CPU, by default, views of a private
(copy-on-write) mapping, like the reference; backend="pread" gives owned, copied memory."""
from __future__ import annotations

import os
from collections import defaultdict
from typing import Any, Dict, List, Optional, Set, Tuple, Union

import torch

from . import _core, _native

__all__ = ["load_file", "load", "save_file", "save", "save_model", "load_model"]


def _dtype_name(dt: "torch.dtype") -> str:
    for k, v in _core.torch_dtypes().items():
        if v == dt:
            return k
    raise ValueError(f"dtype {dt} is not supported by safetensors")


def _elem_size(t: torch.Tensor) -> int:
    return t.element_size()


def _storage_ptr(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage().data_ptr()
    except Exception:
        return 0


def _storage_size(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage().nbytes()
    except Exception:
        return t.nelement() * _elem_size(t)


def _end(t: torch.Tensor) -> int:
    if t.nelement():
        return t.view(-1)[-1].data_ptr() + _elem_size(t)
    return t.data_ptr()


def _shared_groups(tensors: Dict[str, torch.Tensor]) -> List[Set[str]]:
    """Names grouped by the storage they share, split where their byte ranges do not overlap
    (two disjoint views of one buffer can be saved separately)."""
    by_storage: Dict[Any, Set[str]] = defaultdict(set)
    for k, v in tensors.items():
        if v.device.type != "meta" and _storage_ptr(v) != 0 and _storage_size(v) != 0:
            by_storage[(v.device, _storage_ptr(v), _storage_size(v))].add(k)
    groups: List[Set[str]] = []
    for names in sorted(by_storage.values()):
        if len(names) < 2:
            groups.append(names)
            continue
        spans = sorted((tensors[n].data_ptr(), _end(tensors[n]), n) for n in names)
        groups.append({spans[0][2]})
        stop = spans[0][1]
        for s, e, n in spans[1:]:
            if s >= stop:
                groups.append({n})
            else:
                groups[-1].add(n)
            stop = e
    return groups


def _covers_storage(t: torch.Tensor) -> bool:
    return t.data_ptr() == _storage_ptr(t) and t.nelement() * _elem_size(t) == _storage_size(t)


def _duplicates(state_dict: Dict[str, torch.Tensor], *, preferred_names=None,
                discard_names=None) -> Dict[str, List[str]]:
    """For each group of tied tensors, the name kept and the names dropped."""
    preferred = set(preferred_names or [])
    discard = set(discard_names or [])
    out: Dict[str, List[str]] = defaultdict(list)
    for group in _shared_groups(state_dict):
        complete = {n for n in group if _covers_storage(state_dict[n])}
        if not complete:
            raise RuntimeError(
                "Error while trying to find names to remove to save state dict, but found no "
                f"suitable name to keep for saving amongst: {group}. None is covering the entire "
                "storage. Refusing to save/load the model since you could be storing much more "
                "memory than needed.")
        keep = sorted(complete)[0]
        kept = complete - discard
        if kept:
            keep = sorted(kept)[0]
        if preferred:
            p = preferred & complete
            if p:
                keep = sorted(p)[0]
        for n in sorted(group):
            if n != keep:
                out[keep].append(n)
    return out


def _check(tensors: Dict[str, torch.Tensor]) -> None:
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
    failing = [g for g in _shared_groups(tensors) if len(g) > 1]
    if failing:
        raise RuntimeError(
            f"Some tensors share memory, this will lead to duplicate memory on disk and potential "
            f"differences when loading them again: {failing}.\nA potential way to correctly save "
            "your model is to use `save_model`.")


def _items(tensors: Dict[str, torch.Tensor]):
    _check(tensors)
    items = []
    for k, v in tensors.items():
        if not v.is_contiguous():
            raise ValueError(
                f"You are trying to save a non contiguous tensor: `{k}` which is not allowed. It "
                "either means you are trying to save tensors which are reference of each other in "
                "which case it's recommended to save only the full tensors, and reslice at load "
                "time, or simply call `.contiguous()` on your tensor to pack it before saving.")
        name = _dtype_name(v.dtype)
        c = v.detach()
        if c.device.type != "cpu":
            c = c.to("cpu")
        shape = tuple(c.shape)
        if name == "F4" and shape:
            shape = shape[:-1] + (shape[-1] * 2,)  # packed pairs: the file counts elements
        raw = c.reshape(-1).view(torch.uint8) if c.nelement() else torch.empty(0, dtype=torch.uint8)
        items.append((k, name, shape, raw.numpy()))
    return items


def save(tensors: Dict[str, torch.Tensor], metadata: Optional[Dict[str, str]] = None) -> bytes:
    """Serialise tensors into safetensors bytes (byte-identical to the reference)."""
    return _native.save(_items(tensors), metadata)


def save_file(tensors: Dict[str, torch.Tensor], filename: Union[str, os.PathLike],
              metadata: Optional[Dict[str, str]] = None) -> None:
    """Write tensors to filename atomically (temporary file, fsync, rename): saving over a
    file that is being read is safe."""
    _native.save(_items(tensors), metadata, os.fspath(filename))


def load(data: bytes) -> Dict[str, torch.Tensor]:
    """Load tensors from safetensors bytes (copied into memory weightlift owns)."""
    return _core.load_dict(bytes(data), _core.to_torch)


def load_file(filename: Union[str, os.PathLike], device: Union[str, int] = "cpu",
              backend: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Load every tensor of a file, index.json or directory, in file order.

    backend: None/"mmap" (lazy copy-on-write views of the file, the default for CPU) or
    "pread" (copied into owned memory by the parallel reader)."""
    return _core.load_dict(filename, _core.to_torch, device, backend)


def save_model(model: "torch.nn.Module", filename: Union[str, os.PathLike],
               metadata: Optional[Dict[str, str]] = None, force_contiguous: bool = True) -> None:
    """Save a model's state dict, dropping tied duplicates (recorded in the metadata as
    dropped name -> kept name), as the reference does."""
    state_dict = model.state_dict()
    for kept, dropped in _duplicates(state_dict).items():
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
    dups = _duplicates(model.state_dict(), preferred_names=state_dict.keys())
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
