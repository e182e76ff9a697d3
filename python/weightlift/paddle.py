# SPDX-License-Identifier: Apache-2.0
"""PaddlePaddle flavour, same names and behaviour as safetensors.paddle: tensors are saved from
their own memory (TensorSpec over data_ptr, as the reference) and loaded through numpy
(paddle.to_tensor of arrays weightlift loaded into owned memory; bfloat16 and float8 by their
bits). device: "cpu" or a paddle place string ("gpu:0"): the tensors are moved there."""
from __future__ import annotations

import ctypes
import os
import sys
from typing import Any, Dict, List, Optional, Union

import numpy as np
import paddle

from . import _core
from . import numpy  # noqa: F401 - the reference module's names
from ._core import safe_open  # noqa: F401
from ._serialize import TensorSpec, deserialize, serialize, serialize_file  # noqa: F401

__all__ = ["load_file", "load", "save_file", "save"]

_SIZE = {
    paddle.int64: 8, paddle.float32: 4, paddle.int32: 4, paddle.bfloat16: 2, paddle.float16: 2,
    paddle.int16: 2, paddle.uint8: 1, paddle.int8: 1, paddle.bool: 1, paddle.float64: 8,
    paddle.float8_e4m3fn: 1, paddle.float8_e5m2: 1, paddle.complex64: 8,
}

_TYPES = {
    "F64": paddle.float64, "F32": paddle.float32, "F16": paddle.float16,
    "BF16": paddle.bfloat16, "I64": paddle.int64, "I32": paddle.int32, "I16": paddle.int16,
    "I8": paddle.int8, "U8": paddle.uint8, "BOOL": paddle.bool,
    "F8_E4M3": paddle.float8_e4m3fn, "F8_E5M2": paddle.float8_e5m2,
}

# paddle dtype -> a numpy dtype of the same width (for byte swaps on big-endian hosts).
NPDTYPES = {
    paddle.int64: np.int64, paddle.float32: np.float32, paddle.int32: np.int32,
    paddle.bfloat16: np.float16, paddle.float16: np.float16, paddle.int16: np.int16,
    paddle.uint8: np.uint8, paddle.int8: np.int8, paddle.bool: bool, paddle.float64: np.float64,
    paddle.float8_e4m3fn: np.uint8, paddle.float8_e5m2: np.uint8,
}


def _getdtype(dtype_str: str) -> "paddle.dtype":
    return _TYPES[dtype_str]


def _move(t: "paddle.Tensor", device: Any) -> "paddle.Tensor":
    return t if device in (None, "cpu") else t.to(device)


def _np2paddle(numpy_dict: Dict[str, np.ndarray], device: str = "cpu"
               ) -> Dict[str, "paddle.Tensor"]:
    for k, v in numpy_dict.items():
        numpy_dict[k] = paddle.to_tensor(v, place=device)
    return numpy_dict


def _paddle2np(paddle_dict: Dict[str, "paddle.Tensor"]) -> Dict[str, np.ndarray]:
    for k, v in paddle_dict.items():
        paddle_dict[k] = v.detach().cpu().numpy()
    return paddle_dict


def _view2paddle(safeview, device) -> Dict[str, "paddle.Tensor"]:
    """deserialize()'s list -> name -> tensor."""
    result = {}
    for k, v in safeview:
        arr = _core.numpy_from_bytes(v["data"], v["dtype"], tuple(v["shape"]))
        result[k] = _move(_core.paddle_from_numpy(arr, v["dtype"]), device)
    return result


def _to_ndarray(tensor: "paddle.Tensor", name: str):
    """(a uint8 numpy array over tensor's bytes, moved to CPU first; the tensor owning them)."""
    if not tensor.is_contiguous():
        raise ValueError(
            f"You are trying to save a non contiguous tensor: `{name}` which is not allowed. It "
            "either means you are trying to save tensors which are reference of each other in "
            "which case it's recommended to save only the full tensors, and reslice at load "
            "time, or simply call `.contiguous()` on your tensor to pack it before saving.")
    if not tensor.place.is_cpu_place():
        tensor = tensor.cpu()
    total = int(np.prod(tensor.shape, dtype=np.int64)) * _SIZE[tensor.dtype]
    ptr = tensor.data_ptr()
    if ptr == 0:
        return np.empty(0), 0
    data = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_ubyte)), (total,))
    if sys.byteorder == "big":
        data = data.view(NPDTYPES[tensor.dtype]).byteswap(inplace=False)
    return data, tensor


def _flatten(tensors: Dict[str, "paddle.Tensor"], keep_alive_buffer: List
             ) -> Dict[str, TensorSpec]:
    if not isinstance(tensors, dict):
        raise ValueError(f"Expected a dict of [str, paddle.Tensor] but received {type(tensors)}")
    for k, v in tensors.items():
        if not isinstance(v, paddle.Tensor):
            raise ValueError(f"Key `{k}` is invalid, expected paddle.Tensor but received {type(v)}")
    flattened = {}
    for k, v in tensors.items():
        arr, ref = _to_ndarray(v, k)
        keep_alive_buffer.append((arr, ref))
        flattened[k] = TensorSpec(dtype=str(v.dtype).split(".")[-1], shape=v.shape,
                                  data_ptr=arr.ctypes.data, data_len=arr.nbytes)
    return flattened


def save(tensors: Dict[str, "paddle.Tensor"], metadata: Optional[Dict[str, str]] = None
         ) -> bytes:
    """Serialise tensors into safetensors bytes (byte-identical to the reference)."""
    keep: List[Any] = []
    return serialize(_flatten(tensors, keep), metadata=metadata)


def save_file(tensors: Dict[str, "paddle.Tensor"], filename: Union[str, os.PathLike],
              metadata: Optional[Dict[str, str]] = None) -> None:
    """Write tensors to filename (atomically: temporary file, fsync, rename)."""
    keep: List[Any] = []
    serialize_file(_flatten(tensors, keep), filename, metadata=metadata)


def load(data: bytes, device: str = "cpu") -> Dict[str, "paddle.Tensor"]:
    """Load tensors from safetensors bytes."""
    out = _core.load_dict(bytes(data), _core.to_paddle)
    return {k: _move(v, device) for k, v in out.items()}


def load_file(filename: Union[str, os.PathLike], device="cpu", *,
              backend: Optional[str] = None) -> Dict[str, "paddle.Tensor"]:
    """Load every tensor of a file, index.json or directory, in file order."""
    out = _core.load_dict(_core.check_filename(filename), _core.to_paddle, "cpu", backend,
                          owned=True)
    return {k: _move(v, device) for k, v in out.items()}
