# SPDX-License-Identifier: Apache-2.0
"""numpy flavour, same names and behaviour as safetensors.numpy. Loaded arrays are zero-copy
views of memory owned by weightlift (writable; writing never changes the file)."""
from __future__ import annotations

import os
import sys
from typing import Dict, Optional, Union

import numpy as np

from . import _core, _native

__all__ = ["load_file", "load", "save_file", "save"]


def _items(tensor_dict: Dict[str, np.ndarray]):
    if not isinstance(tensor_dict, dict):
        raise ValueError(f"Expected a dict of [str, np.ndarray] but received {type(tensor_dict)}")
    items = []
    for k, v in tensor_dict.items():
        if not isinstance(v, np.ndarray):
            raise ValueError(f"Key `{k}` is invalid, expected np.ndarray but received {type(v)}")
        name = _core.np_dtype_name(v)
        if v.dtype.byteorder == ">" or (v.dtype.byteorder == "=" and sys.byteorder == "big"):
            v = v.byteswap(inplace=False)
        if not v.flags.c_contiguous:
            v = v.copy(order="C")  # (np.ascontiguousarray would make a 0-d array 1-d)
        items.append((k, name, v.shape, v.reshape(-1).view(np.uint8)))
    return items


def save(tensor_dict: Dict[str, np.ndarray], metadata: Optional[Dict[str, str]] = None) -> bytes:
    """Serialise a dict of arrays into safetensors bytes (byte-identical to the reference)."""
    return _native.save(_items(tensor_dict), metadata)


def save_file(tensor_dict: Dict[str, np.ndarray], filename: Union[str, os.PathLike],
              metadata: Optional[Dict[str, str]] = None) -> None:
    """Write a dict of arrays to filename (atomically: temporary file, fsync, rename)."""
    _native.save(_items(tensor_dict), metadata, os.fspath(filename))


def load(data: bytes) -> Dict[str, np.ndarray]:
    """Load arrays from safetensors bytes."""
    return _core.load_dict(bytes(data), _core.to_numpy)


def load_file(filename: Union[str, os.PathLike], backend: Optional[str] = None, *,
              mmap_views: bool = False) -> Dict[str, np.ndarray]:
    """Load every array of a file, index.json or directory, in file order, into memory the
    arrays own (as safetensors.numpy does, whatever the backend: "mmap" or "pread").
    mmap_views=True returns views of a private (copy-on-write) mapping of the files instead:
    nearly free when the files are in the page cache, but truncating a file while its arrays
    live kills the process with SIGBUS."""
    return _core.load_dict(filename, _core.to_numpy, "cpu", backend, owned=True,
                           mmap_views=mmap_views)
