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

__version__ = _native.version
__all__ = ["SafetensorError", "safe_open", "PySafeSlice", "stream", "load_file", "load",
           "save_file", "save", "TensorSpec", "serialize", "serialize_file", "deserialize",
           "__version__", "install_as_safetensors", "uninstall_as_safetensors"]


def load_file(filename: Union[str, os.PathLike], device: Union[str, int] = "cpu",
              backend: Optional[str] = None, *, device_allocator: Any = None) -> Dict[str, Any]:
    """weightlift.torch.load_file: every tensor as torch tensors, in file order."""
    from . import torch as _t

    return _t.load_file(filename, device=device, backend=backend,
                        device_allocator=device_allocator)


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
