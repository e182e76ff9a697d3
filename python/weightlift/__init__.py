# SPDX-License-Identifier: Apache-2.0
"""weightlift: load safetensors checkpoints into CPU (later GPU) memory as fast as the hardware
allows, with the safetensors package's API.

    import weightlift
    sd = weightlift.load_file("model.safetensors")          # torch tensors, file order
    with weightlift.safe_open("model.safetensors", "pt") as f:
        w = f.get_slice("w")[0:2, :]
    for name, t in weightlift.stream("model.safetensors"):  # as each tensor lands
        ...

weightlift.numpy, .torch, .jax (alias .flax), .tensorflow, .paddle and .mlx mirror
safetensors.numpy / .torch / .flax / .tensorflow / .paddle / .mlx, and the top level has the
reference's raw API (TensorSpec, serialize, serialize_file, deserialize); docs/compat.md lists
the deliberate differences. Tensors are zero-copy DLPack views of memory owned by
weightlift (kept alive by the tensors themselves).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Union

from . import _native
from ._core import PySafeSlice, _safe_open_handle, safe_open, stream
from ._shim import install_as_safetensors, uninstall_as_safetensors
from ._native import SafetensorError
from ._serialize import TensorSpec, deserialize, serialize, serialize_file
from .distributed import FilesBufferOnDevice, SafeTensorsFileLoader, SingleGroup

__version__ = _native.version
__all__ = ["SafetensorError", "safe_open", "PySafeSlice", "stream", "load_file", "load",
           "save_file", "save", "TensorSpec", "serialize", "serialize_file", "deserialize",
           "__version__", "install_as_safetensors", "uninstall_as_safetensors",
           "set_local_cache_dir", "set_offline", "SafeTensorsFileLoader",
           "FilesBufferOnDevice", "SingleGroup"]


def set_local_cache_dir(path: Optional[Union[str, os.PathLike]]) -> None:
    """Cache remote objects (http(s)://, hf://, ...) in the directory path from now on, in this
    process (None: no cache). The bytes are written while they stream; the next load of the
    same URI reads the cached file after the server confirms size and ETag (docs/remote.md,
    "Local cache"). Checkpoints already open are not affected. WEIGHTLIFT_CACHE_DIR sets the
    same at import."""
    _native.set_cache_dir(None if path is None else os.fspath(path))


def set_offline(offline: bool = True) -> None:
    """Serve remote objects from the local cache only, asking no server (later opens in this
    process); an object not cached raises OSError. WEIGHTLIFT_OFFLINE=1 sets it at import;
    load_file/safe_open/stream also take offline=True per call."""
    _native.set_offline(bool(offline))


def load_file(filename: Union[str, os.PathLike], device: Union[str, int] = "cpu",
              backend: Optional[str] = None, *, device_allocator: Any = None,
              offline: Optional[bool] = None, region: Optional[str] = None,
              max_rate: Union[int, str, None] = None,
              allow_full_download: Optional[bool] = None,
              cache_dir: Union[str, os.PathLike, None] = None,
              gds: Optional[str] = None) -> Dict[str, Any]:
    """weightlift.torch.load_file: every tensor as torch tensors, in file order."""
    from . import torch as _t

    return _t.load_file(filename, device=device, backend=backend,
                        device_allocator=device_allocator, offline=offline, region=region,
                        max_rate=max_rate, allow_full_download=allow_full_download,
                        cache_dir=cache_dir, gds=gds)


def load(data: bytes) -> Dict[str, Any]:
    """weightlift.torch.load."""
    from . import torch as _t

    return _t.load(data)


def save_file(tensors: Dict[str, Any], filename: Union[str, os.PathLike],
              metadata: Optional[Dict[str, str]] = None) -> None:
    """weightlift.torch.save_file."""
    from . import torch as _t

    _t.save_file(tensors, filename, metadata)


def save(tensors: Dict[str, Any], metadata: Optional[Dict[str, str]] = None) -> bytes:
    """weightlift.torch.save."""
    from . import torch as _t

    return _t.save(tensors, metadata)
