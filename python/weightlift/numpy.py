# SPDX-License-Identifier: Apache-2.0
"""numpy flavour, same names and behaviour as safetensors.numpy. Loaded arrays are zero-copy
views of memory owned by weightlift (writable; writing never changes the file)."""
from __future__ import annotations

import os
import sys
from typing import Any, Dict, List, Optional, Union

import numpy as np

from . import _core
from ._core import safe_open  # noqa: F401 - the reference module's names
from ._serialize import TensorSpec, deserialize, serialize, serialize_file  # noqa: F401

__all__ = ["load_file", "load", "save_file", "save", "safe_open", "serialize",
           "serialize_file", "deserialize", "TensorSpec"]

# safetensors dtype -> numpy dtype, the reference's table (what _getdtype and _view2np take;
# weightlift's loader also returns BF16 and float8 arrays through ml_dtypes).
_TYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "U64": np.uint64,
    "I32": np.int32, "U32": np.uint32, "I16": np.int16, "U16": np.uint16, "I8": np.int8,
    "U8": np.uint8, "BOOL": bool, "C64": np.complex64,
}


def _is_little_endian(tensor: np.ndarray) -> bool:
    byteorder = tensor.dtype.byteorder
    if byteorder == "=":
        return sys.byteorder == "little"
    if byteorder in ("|", "<"):
        return True
    if byteorder == ">":
        return False
    raise ValueError(f"Unexpected byte order {byteorder}")


def _flatten(tensor_dict: Dict[str, np.ndarray], keep_alive_buffer: List) -> Dict[str, TensorSpec]:
    """name -> TensorSpec over each array's bytes, little-endian and C-contiguous (copies, when
    one is needed, go into keep_alive_buffer). The reference takes a non-contiguous array's
    memory as if it were contiguous (wrong bytes); weightlift packs it first."""
    flattened = {}
    for k, v in tensor_dict.items():
        tensor = v
        if not _is_little_endian(tensor):
            tensor = tensor.byteswap(inplace=False).view(tensor.dtype.newbyteorder("<"))
            keep_alive_buffer.append(tensor)
        if not tensor.flags.c_contiguous:
            tensor = tensor.copy(order="C")  # (np.ascontiguousarray would make a 0-d array 1-d)
            keep_alive_buffer.append(tensor)
        flattened[k] = TensorSpec(dtype=tensor.dtype.name, shape=tensor.shape,
                                  data_ptr=tensor.ctypes.data, data_len=tensor.nbytes)
    return flattened


def _getdtype(dtype_str: str) -> np.dtype:
    return _TYPES[dtype_str]


def _view2np(safeview) -> Dict[str, np.ndarray]:
    """deserialize()'s list -> name -> array (over the bytearrays, no copy)."""
    return {k: np.frombuffer(v["data"], dtype=_getdtype(v["dtype"])).reshape(v["shape"])
            for k, v in safeview}


def save(tensor_dict: Dict[str, np.ndarray], metadata: Optional[Dict[str, str]] = None) -> bytes:
    """Serialise a dict of arrays into safetensors bytes (byte-identical to the reference)."""
    keep: List[np.ndarray] = []
    return serialize(_flatten(tensor_dict, keep), metadata=metadata)


def save_file(tensor_dict: Dict[str, np.ndarray], filename: Union[str, os.PathLike],
              metadata: Optional[Dict[str, str]] = None) -> None:
    """Write a dict of arrays to filename (atomically: temporary file, fsync, rename)."""
    keep: List[np.ndarray] = []
    serialize_file(_flatten(tensor_dict, keep), filename, metadata=metadata)


def load(data: bytes) -> Dict[str, np.ndarray]:
    """Load arrays from safetensors bytes."""
    return _core.load_dict(bytes(data), _core.to_numpy)


def load_file(filename: Union[str, os.PathLike], backend: Optional[str] = None, *,
              mmap_views: bool = False, offline: Optional[bool] = None,
              region: Optional[str] = None, max_rate: Union[int, str, None] = None,
              allow_full_download: Optional[bool] = None,
              cache_dir: Union[str, os.PathLike, None] = None,
              dtype: Any = None) -> Dict[str, np.ndarray]:
    """Load every array of a file, index.json or directory, in file order, into memory the
    arrays own (as safetensors.numpy does, whatever the backend: "mmap" or "pread").
    mmap_views=True returns views of a private (copy-on-write) mapping of the files instead:
    nearly free when the files are in the page cache, but truncating a file while its arrays
    live kills the process with SIGBUS. offline=True: remote objects from the local cache
    only (weightlift.set_local_cache_dir). region, max_rate, allow_full_download, cache_dir:
    as for weightlift.torch.load_file. dtype ("F32", "F16", "BF16" or numpy/ml_dtypes
    float32, float16, bfloat16): floating-point arrays (F8 formats included) are converted
    to it while loading."""
    return _core.load_dict(_core.check_filename(filename), _core.to_numpy, "cpu", backend,
                           owned=True,
                           mmap_views=mmap_views, offline=offline, region=region,
                           max_rate=max_rate, allow_full_download=allow_full_download,
                           cache_dir=cache_dir, dtype=dtype)
