# SPDX-License-Identifier: Apache-2.0
"""The reference's raw serialisation API (safetensors 0.8.0 `TensorSpec`, `serialize`,
`serialize_file`, `deserialize`), on weightlift's writer and reader: the same signatures,
argument checks (the exception types and texts of its PyO3 bindings), results and bytes.
serialize_file writes atomically (temporary file, fsync, rename) with the GIL released."""
from __future__ import annotations

import ctypes
import operator
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from . import _native
from ._native import SafetensorError

# Constructor-style dtype names (what TensorSpec takes) -> safetensors format codes.
_DTYPES = {
    "bool": "BOOL", "int8": "I8", "uint8": "U8", "int16": "I16", "uint16": "U16",
    "int32": "I32", "uint32": "U32", "int64": "I64", "uint64": "U64", "float16": "F16",
    "float32": "F32", "float64": "F64", "bfloat16": "BF16", "float8_e4m3fn": "F8_E4M3",
    "float8_e4m3fnuz": "F8_E4M3FNUZ", "float8_e5m2": "F8_E5M2", "float8_e5m2fnuz": "F8_E5M2FNUZ",
    "float8_e8m0fnu": "F8_E8M0", "float4_e2m1fn_x2": "F4", "complex64": "C64",
}
_U64 = 2 ** 64


def _tname(v: Any) -> str:
    return type(v).__name__


def not_instance(arg: str, v: Any, want: str) -> TypeError:
    """PyO3's text for an argument of the wrong type ('None' is named, not typed)."""
    what = "'None'" if v is None else f"'{_tname(v)}' object"
    return TypeError(f"argument '{arg}': {what} is not an instance of '{want}'")


def _unsigned(name: str, v: Any, what: str = "int") -> int:
    """v as PyO3 extracts an unsigned integer argument."""
    if isinstance(v, float):
        raise TypeError(f"argument '{name}': 'float' object cannot be interpreted as an integer")
    try:
        v = operator.index(v)
    except TypeError:
        raise TypeError(f"argument '{name}': '{_tname(v)}' object cannot be interpreted as an "
                        "integer") from None
    if v < 0:
        raise OverflowError("can't convert negative int to unsigned")
    if v >= _U64:
        raise OverflowError("int too big to convert")
    return v


class TensorSpec:
    """TensorSpec(*, dtype, shape, data_ptr, data_len): one tensor for serialize() and
    serialize_file(), as in safetensors 0.8.0. dtype is the constructor-style name ("float32",
    "bfloat16", ...; validated here); shape the logical shape (for "float4_e2m1fn_x2" the
    storage shape may be passed: its last dimension is doubled); data_ptr the address of the
    contiguous bytes and data_len their length. The caller keeps that memory alive while it is
    serialised."""

    __slots__ = ("_dtype", "_shape", "_data_ptr", "_data_len")

    def __init__(self, *, dtype: str, shape: Sequence[int], data_ptr: int, data_len: int):
        if not isinstance(dtype, str):
            raise not_instance("dtype", dtype, "str")
        if isinstance(shape, (str, bytes)):
            raise TypeError(f"argument 'shape': Can't extract `{_tname(shape)}` to `Vec`")
        try:
            dims = list(shape)
        except TypeError:
            raise TypeError(f"argument 'shape': '{_tname(shape)}' object cannot be converted to "
                            "'Sequence'") from None
        dims = [_unsigned("shape", d) for d in dims]
        ptr = _unsigned("data_ptr", data_ptr)
        n = _unsigned("data_len", data_len)
        code = _DTYPES.get(dtype)
        if code is None:
            raise SafetensorError(
                f"Unknown dtype {_quote(dtype)}. Supported dtypes: " + ", ".join(_DTYPES))
        if code == "F4" and dims:
            dims[-1] *= 2
            if dims[-1] >= _U64:
                raise SafetensorError(f"F4 last-dim {dims[-1] // 2} doubled to logical shape "
                                      "overflows usize")
        object.__setattr__(self, "_dtype", code)
        object.__setattr__(self, "_shape", dims)
        object.__setattr__(self, "_data_ptr", ptr)
        object.__setattr__(self, "_data_len", n)

    @property
    def dtype(self) -> str:
        """The safetensors format code ("F32", "BF16", ...)."""
        return self._dtype

    @property
    def shape(self) -> List[int]:
        """The logical shape recorded in the header."""
        return list(self._shape)

    @property
    def data_ptr(self) -> int:
        return self._data_ptr

    @property
    def data_len(self) -> int:
        return self._data_len

    def __setattr__(self, name, value):
        raise AttributeError(f"attribute '{name.lstrip('_')}' of 'TensorSpec' objects is not "
                             "writable")

    def __repr__(self) -> str:
        return (f"TensorSpec(dtype='{self._dtype}', shape={self._shape}, "
                f"data_ptr={self._data_ptr}, data_len={self._data_len})")


def _quote(s: str) -> str:
    """A str as Rust's {:?} prints it (double quotes)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _buffer(spec: TensorSpec):
    """The bytes a spec points at, as a buffer over the caller's memory (no copy)."""
    if spec.data_len == 0:
        return b""
    if spec.data_ptr == 0:
        raise SafetensorError("Error while serializing: a tensor of "
                              f"{spec.data_len} bytes has a null data_ptr")
    return (ctypes.c_char * spec.data_len).from_address(spec.data_ptr)


def _items(tensor_dict: Any) -> List[Tuple[str, str, List[int], Any]]:
    if not isinstance(tensor_dict, dict):
        raise not_instance("tensor_dict", tensor_dict, "dict")
    items = []
    for k, v in tensor_dict.items():
        if not isinstance(k, str):
            raise not_instance("tensor_dict", k, "str")
        if not isinstance(v, TensorSpec):
            raise not_instance("tensor_dict", v, "TensorSpec")
        items.append((k, v.dtype, v.shape, _buffer(v)))
    return items


def _metadata(metadata: Any) -> Optional[Dict[str, str]]:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise not_instance("metadata", metadata, "dict")
    for k, v in metadata.items():
        for x in (k, v):
            if not isinstance(x, str):
                raise not_instance("metadata", x, "str")
    return metadata


def _save(items, metadata, path=None):
    try:
        return _native.save(items, metadata, path)
    except SafetensorError as e:
        raise SafetensorError(f"Error while serializing: {e}") from None


def serialize(tensor_dict: Dict[str, TensorSpec],
              metadata: Optional[Dict[str, str]] = None) -> bytes:
    """The safetensors bytes of tensor_dict (name -> TensorSpec) and metadata, byte-identical
    to the reference's."""
    return _save(_items(tensor_dict), _metadata(metadata))


def serialize_file(tensor_dict: Dict[str, TensorSpec], filename: Union[str, "os.PathLike[str]"],
                   metadata: Optional[Dict[str, str]] = None) -> None:
    """Write serialize()'s bytes to filename, atomically, with the GIL released. I/O failures
    raise OSError subclasses (the reference: SafetensorError)."""
    items, meta = _items(tensor_dict), _metadata(metadata)
    if isinstance(filename, (bytes, bytearray)):
        raise not_instance("filename", filename, "str")
    try:
        path = os.fspath(filename)
    except TypeError:
        raise TypeError("argument 'filename': expected str, bytes or os.PathLike object, not "
                        f"{_tname(filename)}") from None
    if not isinstance(path, str):
        raise not_instance("filename", path, "str")
    _save(items, meta, path)


def deserialize(bytes: bytes) -> List[Tuple[str, Dict[str, Any]]]:  # noqa: A002 - reference name
    """[(name, {"shape": [...], "dtype": "F32", "data": bytearray}), ...] of safetensors bytes,
    in file order (the reference: hash order)."""
    blob = bytes
    if not isinstance(blob, type(b"")):
        raise not_instance("bytes", blob, "bytes")
    try:
        ck = _native.Checkpoint(blob, "<bytes>")
    except SafetensorError as e:
        raise SafetensorError(f"Error while deserializing: {e}") from None
    try:
        mv = memoryview(blob)
        out = []
        for name in ck.names():
            _, dtype, shape, nbytes, _, off, _, _ = ck.info(name)
            out.append((name, {"shape": list(shape), "dtype": dtype,
                               "data": bytearray(mv[off:off + nbytes])}))
        return out
    finally:
        ck.close()
