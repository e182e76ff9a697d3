# SPDX-License-Identifier: Apache-2.0
"""TensorFlow flavour, same names and behaviour as safetensors.tensorflow: a numpy bridge
(tf.convert_to_tensor of arrays weightlift loaded into owned memory; tensors go out through
.numpy()). Unlike the reference, save()/save_file() leave the caller's dict unchanged."""
from __future__ import annotations

import os
from typing import Dict, Optional, Union

import numpy as np
import tensorflow as tf

from . import _core
from . import numpy  # noqa: F401 - the reference module's names
from ._core import safe_open  # noqa: F401

__all__ = ["load_file", "load", "save_file", "save"]


def _tf2np(tf_dict: Dict[str, "tf.Tensor"]) -> Dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in tf_dict.items()}


def _np2tf(numpy_dict: Dict[str, np.ndarray]) -> Dict[str, "tf.Tensor"]:
    for k, v in numpy_dict.items():
        numpy_dict[k] = tf.convert_to_tensor(v)
    return numpy_dict


def save(tensors: Dict[str, "tf.Tensor"], metadata: Optional[Dict[str, str]] = None) -> bytes:
    """Serialise tensors into safetensors bytes (byte-identical to the reference)."""
    return numpy.save(_tf2np(tensors), metadata=metadata)


def save_file(tensors: Dict[str, "tf.Tensor"], filename: Union[str, os.PathLike],
              metadata: Optional[Dict[str, str]] = None) -> None:
    """Write tensors to filename (atomically: temporary file, fsync, rename)."""
    return numpy.save_file(_tf2np(tensors), filename, metadata=metadata)


def load(data: bytes) -> Dict[str, "tf.Tensor"]:
    """Load tensors from safetensors bytes."""
    return _core.load_dict(bytes(data), _core.to_tf)


def load_file(filename: Union[str, os.PathLike], *, backend: Optional[str] = None
              ) -> Dict[str, "tf.Tensor"]:
    """Load every tensor of a file, index.json or directory, in file order."""
    return _core.load_dict(_core.check_filename(filename), _core.to_tf, "cpu", backend,
                           owned=True)
