# SPDX-License-Identifier: Apache-2.0
"""JAX flavour, same names as safetensors.flax (arrays are jax.numpy arrays)."""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Union

import numpy as np

from . import _core
from . import numpy as _np
from ._core import safe_open  # noqa: F401 - the reference module's names

numpy = _np  # the reference's flax module has `numpy` (its numpy module)
__all__ = ["load_file", "load", "save_file", "save"]


def _to_np(tensors: Dict[str, Any]) -> Dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in tensors.items()}


def _jnp2np(jnp_dict: Dict[str, Any]) -> Dict[str, np.ndarray]:
    for k, v in jnp_dict.items():
        jnp_dict[k] = np.asarray(v)
    return jnp_dict


def _np2jnp(numpy_dict: Dict[str, np.ndarray]) -> Dict[str, Any]:
    import jax.numpy as jnp

    for k, v in numpy_dict.items():
        numpy_dict[k] = jnp.array(v)
    return numpy_dict


def save(tensors: Dict[str, Any], metadata: Optional[Dict[str, str]] = None) -> bytes:
    return _np.save(_to_np(tensors), metadata)


def save_file(tensors: Dict[str, Any], filename: Union[str, os.PathLike],
              metadata: Optional[Dict[str, str]] = None) -> None:
    _np.save_file(_to_np(tensors), filename, metadata)


def load(data: bytes) -> Dict[str, Any]:
    return _core.load_dict(bytes(data), _core.to_jax)


def load_file(filename: Union[str, os.PathLike], backend: Optional[str] = None) -> Dict[str, Any]:
    return _core.load_dict(_core.check_filename(filename), _core.to_jax, "cpu", backend,
                           owned=True)
