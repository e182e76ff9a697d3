# SPDX-License-Identifier: Apache-2.0
"""MLX flavour, same names and behaviour as safetensors.mlx: a numpy bridge (mx.array of arrays
weightlift loaded into owned memory; arrays go out through numpy, bfloat16 by its bits)."""
from __future__ import annotations

import os
from typing import Dict, Optional, Union

import mlx.core as mx
import numpy as np

from . import _core
from . import numpy  # noqa: F401 - the reference module's names
from ._core import safe_open  # noqa: F401

__all__ = ["load_file", "load", "save_file", "save"]


def _np2mx(numpy_dict: Dict[str, np.ndarray]) -> Dict[str, "mx.array"]:
    for k, v in numpy_dict.items():
        numpy_dict[k] = mx.array(v)
    return numpy_dict


def _mx2np(mx_dict: Dict[str, "mx.array"]) -> Dict[str, np.ndarray]:
    out = {}
    for k, v in mx_dict.items():
        if v.dtype == mx.bfloat16:  # numpy has no bfloat16: the bits, typed by ml_dtypes
            import ml_dtypes

            out[k] = np.asarray(v.view(mx.uint16)).view(ml_dtypes.bfloat16)
        else:
            out[k] = np.asarray(v)
    return out


def save(tensors: Dict[str, "mx.array"], metadata: Optional[Dict[str, str]] = None) -> bytes:
    """Serialise arrays into safetensors bytes (byte-identical to the reference)."""
    return numpy.save(_mx2np(tensors), metadata=metadata)


def save_file(tensors: Dict[str, "mx.array"], filename: Union[str, os.PathLike],
              metadata: Optional[Dict[str, str]] = None) -> None:
    """Write arrays to filename (atomically: temporary file, fsync, rename)."""
    return numpy.save_file(_mx2np(tensors), filename, metadata=metadata)


def load(data: bytes) -> Dict[str, "mx.array"]:
    """Load arrays from safetensors bytes."""
    return _core.load_dict(bytes(data), _core.to_mlx)


def load_file(filename: Union[str, os.PathLike], *, backend: Optional[str] = None
              ) -> Dict[str, "mx.array"]:
    """Load every array of a file, index.json or directory, in file order."""
    return _core.load_dict(_core.check_filename(filename), _core.to_mlx, "cpu", backend,
                           owned=True)
