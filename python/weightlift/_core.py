# SPDX-License-Identifier: Apache-2.0
"""Framework-neutral plumbing shared by weightlift.numpy, weightlift.torch and weightlift.jax:
device parsing, opening checkpoints, turning native tensors into framework arrays (zero copy
through DLPack), safe_open and the streaming iterator."""
from __future__ import annotations

import errno
import os
import queue
import threading
import weakref
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from . import _native, _slicing
from ._native import SafetensorError
from ._prefetch import Prefetch

PathLike = Union[str, "os.PathLike[str]"]
Device = Union[str, int, Any]

# dtypes that numpy has natively (DLPack codes numpy understands).
_NP_NATIVE = {"BOOL", "U8", "I8", "I16", "U16", "F16", "I32", "U32", "F32", "F64", "I64", "U64", "C64"}
# safetensors dtype -> ml_dtypes attribute
_ML_DTYPES = {
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "F8_E8M0": "float8_e8m0fnu",
}
_NP_NAMES = {
    "bool": "BOOL", "uint8": "U8", "int8": "I8", "int16": "I16", "uint16": "U16",
    "float16": "F16", "int32": "I32", "uint32": "U32", "float32": "F32", "float64": "F64",
    "int64": "I64", "uint64": "U64", "complex64": "C64",
    "bfloat16": "BF16", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
    "float8_e4m3fnuz": "F8_E4M3FNUZ", "float8_e5m2fnuz": "F8_E5M2FNUZ",
    "float8_e8m0fnu": "F8_E8M0",
}


# Accelerators the reference's device parser accepts besides cpu and cuda. weightlift loads
# for them into CPU memory and moves the tensors with the framework (torch's .to()), as the
# reference does.
_OTHER_DEVICES = ("musa", "mps", "npu", "xpu", "xla", "mlu", "hpu")


def _bad_device(device: Any, suffix: str = "") -> SafetensorError:
    return SafetensorError(f"device {device} is invalid{suffix}")


def split_device(device: Device) -> Tuple[str, Optional[str]]:
    """The reference's device argument -> (the C load's device, the framework device to move
    the loaded tensors to afterwards or None). Accepted as the reference accepts them: "cpu",
    "cuda", "cuda:N", an int N (cuda:N), "mps"/"mps:0" and "musa|npu|xpu|xla|mlu|hpu[:N]";
    anything else (a torch.device included) is the reference's SafetensorError."""
    if isinstance(device, str):
        name, sep, num = device.partition(":")
        if not sep and device in ("cpu", "cuda"):
            return device, None
        if not sep and device in _OTHER_DEVICES:
            return "cpu", device
        if sep and (name == "cuda" or name in _OTHER_DEVICES):
            if ":" in num:
                raise _bad_device(device)
            # The reference parses the ordinal with Rust's usize parser, whose errors are
            # ValueErrors with these texts.
            if not num:
                raise ValueError("cannot parse integer from empty string")
            if not (num.isascii() and num.isdigit()):
                raise ValueError("invalid digit found in string")
            if int(num) >= 2 ** 64:
                raise ValueError("number too large to fit in target type")
            if name == "mps" and int(num) != 0:
                raise _bad_device(device, ": only mps or mps:0 is supported")
            return (f"cuda:{int(num)}", None) if name == "cuda" else ("cpu", device)
        raise _bad_device(device)
    if isinstance(device, int) and not isinstance(device, bool) and device >= 0:
        return f"cuda:{device}", None
    if isinstance(device, bool):
        raise _bad_device(device)
    raise _bad_device(repr(device))


def parse_device(device: Device) -> str:
    """The C load's device for a device argument (see split_device)."""
    return split_device(device)[0]


def check_filename(filename: Any, what: str = "filename") -> str:
    """A path argument as the reference's bindings take it (str or os.PathLike of str)."""
    if isinstance(filename, str):
        return filename
    from ._serialize import not_instance

    if isinstance(filename, (bytes, bytearray, memoryview)):
        raise not_instance(what, filename, "str")
    try:
        path = os.fspath(filename)
    except TypeError:
        raise TypeError(f"argument '{what}': expected str, bytes or os.PathLike object, not "
                        f"{type(filename).__name__}") from None
    if not isinstance(path, str):
        raise not_instance(what, path, "str")
    return path


# enum wlift_mmap, from the extension (the values are the C header's).
MMAP_OFF, MMAP_ON, MMAP_AUTO = _native.MMAP_OFF, _native.MMAP_ON, _native.MMAP_AUTO


# Frameworks whose reference module returns memory the caller owns (numpy, flax/jax,
# tensorflow, mlx; paddle's tensors are built from numpy here): only torch's reference returns
# lazy views of a private file mapping.
_OWNED_FRAMEWORKS = {"np", "numpy", "flax", "jax", "tf", "tensorflow", "mlx", "paddle"}


def backend_mmap(backend: Optional[str], device: str, owned: bool = False,
                 mmap_views: bool = False) -> int:
    """The C load's mmap mode. backend takes the reference's values ("mmap", "pread"; None is
    our default), anything else raises the reference's SafetensorError.
    Modules whose reference returns owned memory (owned=True: numpy, flax/jax) always copy
    into owned memory, whatever the backend, so truncating the file later cannot SIGBUS the
    process; mmap_views=True opts in to views of a private mapping instead.
    torch (owned=False): backend=None: the library decides per load: mapped views (like the
    reference's lazy private mappings) when the files are in the page cache, copy with O_DIRECT
    reads when they are cold, chosen by ready time (bench/RESULTS.md); "mmap": always mapped;
    "pread": always copied."""
    if backend not in (None, "mmap", "pread"):
        raise SafetensorError(f'backend "{backend}" is invalid (expected one of: "mmap", "pread")')
    if device != "cpu" or backend == "pread":
        return MMAP_OFF
    if owned:
        return MMAP_ON if mmap_views else MMAP_OFF
    return MMAP_AUTO if backend is None else MMAP_ON


def _not_found(path: str) -> FileNotFoundError:
    """The reference's text ("No such file or directory: <path>"), errno ENOENT."""
    e = FileNotFoundError(f"No such file or directory: {path}")
    e.errno = errno.ENOENT
    return e


_MIN_RATE, _MAX_RATE = 64 << 10, 1 << 40  # WLIFT_MIN_RATE, WLIFT_MAX_RATE
_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_rate(v: Union[int, str]) -> int:
    """A bandwidth cap in bytes per second: an int, or a string with the CLI's binary K/M/G
    suffixes ("100M" = 104857600); 64 KiB/s .. 1 TiB/s (ValueError outside)."""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise TypeError(f"max_rate must be an int or a string like \"100M\", not {v!r}")
    n = v
    if isinstance(v, str):
        import re

        m = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)(?:i?[bB])?\s*", v)
        if not m:
            raise ValueError(f"max_rate {v!r} is not a number of bytes per second "
                             "(with an optional K, M or G suffix)")
        n = int(m.group(1)) * _SUFFIX[m.group(2).upper()]
    if not _MIN_RATE <= n <= _MAX_RATE:
        raise ValueError(f"max_rate {v!r} is out of range (64K .. 1024G bytes per second)")
    return n


def remote_kwargs(region: Optional[str] = None, max_rate: Union[int, str, None] = None,
                  allow_full_download: Optional[bool] = None,
                  cache_dir: Optional[PathLike] = None) -> Dict[str, Any]:
    """The per-call remote options of load_file/safe_open/stream, checked, as
    _native.Checkpoint's keywords (the CLI's --region, --max-rate, --allow-full-download,
    --cache-dir)."""
    kw: Dict[str, Any] = {}
    if region is not None:
        if not isinstance(region, str):
            raise TypeError(f"region must be a str, not {region!r}")
        if region:
            kw["region"] = region
    if max_rate is not None:
        kw["max_rate"] = parse_rate(max_rate)
    if allow_full_download is not None:
        if not isinstance(allow_full_download, bool):
            raise TypeError(f"allow_full_download must be a bool, not {allow_full_download!r}")
        if allow_full_download:
            kw["full_download"] = True
    if cache_dir is not None:
        d = os.fspath(cache_dir)
        if isinstance(d, bytes):
            d = os.fsdecode(d)
        if not d:
            raise ValueError("cache_dir is an empty string (leave it None for the process's "
                             "set_local_cache_dir)")
        kw["cache_dir"] = d
    return kw


def open_checkpoint(path: Union[PathLike, bytes, bytearray, memoryview],
                    offline: Optional[bool] = None,
                    region: Optional[str] = None, **remote: Any) -> "_native.Checkpoint":
    """offline=True: remote objects come from the local cache only, asking no server (as
    set_offline(True) or WEIGHTLIFT_OFFLINE=1 for every open). region: the AWS region of
    an s3:// bucket (load_file's region=). remote: max_rate, allow_full_download, cache_dir
    (remote_kwargs)."""
    kw = remote_kwargs(region=region, **remote)
    if isinstance(path, (bytes, bytearray, memoryview)):
        return _native.Checkpoint(path, "<bytes>")
    p = os.fspath(path)
    if p == "":
        raise _not_found(p)
    try:
        if offline:
            kw["offline"] = True
        return _native.Checkpoint(p, **kw)
    except FileNotFoundError as e:
        # A local path gets the reference's text; a remote object keeps the library's,
        # which says what the server answered ("HTTP 404").
        if "://" in p and not p.lower().startswith("file://"):
            raise
        raise _not_found(e.filename if isinstance(e.filename, str) else p) from None


# --- numpy ------------------------------------------------------------------------------

def _ml_dtypes(dtype: str):
    try:
        import ml_dtypes  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"weightlift: tensors of dtype {dtype} need the ml_dtypes package with numpy "
            "(pip install ml_dtypes)") from e
    return getattr(ml_dtypes, _ML_DTYPES[dtype])


def to_numpy(t: "_native.Tensor"):
    import numpy as np

    dt = t.dtype
    if dt in _NP_NATIVE:
        return np.from_dlpack(t)
    raw = np.from_dlpack(t.bytes())
    shape = t.shape
    if dt in _ML_DTYPES:
        return raw.view(_ml_dtypes(dt)).reshape(shape)
    if dt == "F4" and shape:
        return raw.reshape(shape[:-1] + (shape[-1] // 2,))
    return raw  # F6: packed bits, raw bytes


def np_dtype_name(arr) -> str:
    name = arr.dtype.name
    if name not in _NP_NAMES:
        raise ValueError(f"dtype {arr.dtype} is not supported by safetensors")
    return _NP_NAMES[name]


def numpy_from_bytes(buf, dtype: str, shape: Tuple[int, ...]):
    import numpy as np

    raw = np.frombuffer(buf, dtype=np.uint8)
    if dtype in _NP_NATIVE:
        return raw.view(np.dtype(_NP_KIND[dtype])).reshape(shape)
    if dtype in _ML_DTYPES:
        return raw.view(_ml_dtypes(dtype)).reshape(shape)
    return raw


_NP_KIND = {v: k for k, v in _NP_NAMES.items() if v in _NP_NATIVE}


# --- torch ------------------------------------------------------------------------------

def _torch_dtypes():
    import torch

    m = {
        "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16,
        "F16": torch.float16, "BF16": torch.bfloat16, "I32": torch.int32, "F32": torch.float32,
        "F64": torch.float64, "I64": torch.int64, "C64": torch.complex64,
    }
    for k, a in (("U16", "uint16"), ("U32", "uint32"), ("U64", "uint64"),
                 ("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2"),
                 ("F8_E4M3FNUZ", "float8_e4m3fnuz"), ("F8_E5M2FNUZ", "float8_e5m2fnuz"),
                 ("F8_E8M0", "float8_e8m0fnu"), ("F4", "float4_e2m1fn_x2")):
        if hasattr(torch, a):
            m[k] = getattr(torch, a)
    return m


_TORCH_DTYPES: Optional[Dict[str, Any]] = None
_TORCH_DLPACK_OK = {"BOOL", "U8", "I8", "I16", "F16", "BF16", "I32", "F32", "F64", "I64", "C64"}


def torch_dtypes() -> Dict[str, Any]:
    global _TORCH_DTYPES
    if _TORCH_DTYPES is None:
        _TORCH_DTYPES = _torch_dtypes()
    return _TORCH_DTYPES


def _torch_view(raw, dt: str, shape: Tuple[int, ...]):
    import torch

    tds = torch_dtypes()
    if dt == "F4":
        shape = shape[:-1] + (shape[-1] // 2,) if shape else shape
        return raw.view(tds.get("F4", torch.uint8)).reshape(shape)
    if dt not in tds:
        return raw  # F6: raw bytes
    return raw.view(tds[dt]).reshape(shape)


def to_torch(t: "_native.Tensor"):
    import torch

    dt = t.dtype
    if dt in _TORCH_DLPACK_OK:
        try:
            return torch.from_dlpack(t)
        except Exception:
            pass
    return _torch_view(torch.from_dlpack(t.bytes()), dt, t.shape)


def torch_from_bytes(buf, dtype: str, shape: Tuple[int, ...]):
    import torch

    if len(buf) == 0:
        raw = torch.empty(0, dtype=torch.uint8)
    else:
        raw = torch.frombuffer(buf, dtype=torch.uint8)
    return _torch_view(raw, dtype, shape)


# --- jax --------------------------------------------------------------------------------

def to_jax(t: "_native.Tensor"):
    import jax.numpy as jnp

    return jnp.asarray(to_numpy(t))


def jax_from_bytes(buf, dtype: str, shape: Tuple[int, ...]):
    import jax.numpy as jnp

    return jnp.asarray(numpy_from_bytes(buf, dtype, shape))


# --- tensorflow, mlx, paddle: numpy bridges, as the reference builds them ------------------

def to_tf(t: "_native.Tensor"):
    import tensorflow as tf

    return tf.convert_to_tensor(to_numpy(t))


def to_mlx(t: "_native.Tensor"):
    import mlx.core as mx

    return mx.array(to_numpy(t))


def paddle_from_numpy(arr, dtype: str):
    """A paddle tensor of arr, a numpy array of safetensors dtype `dtype`."""
    import paddle

    if dtype == "BF16":
        # paddle takes no numpy bfloat16: the bits go across as uint16, then a bit cast.
        return paddle.to_tensor(arr.view("uint16")).view(paddle.bfloat16)
    if dtype in ("F8_E4M3", "F8_E5M2"):
        return paddle.to_tensor(arr.view("uint8")).view(
            paddle.float8_e4m3fn if dtype == "F8_E4M3" else paddle.float8_e5m2)
    return paddle.to_tensor(arr)


def to_paddle(t: "_native.Tensor"):
    return paddle_from_numpy(to_numpy(t), t.dtype)


def _bridge_tf(arr, dtype: str):
    import tensorflow as tf

    return tf.convert_to_tensor(arr)


def _bridge_mlx(arr, dtype: str):
    import mlx.core as mx

    return mx.array(arr)


def _bridge_jax(arr, dtype: str):
    import jax.numpy as jnp

    return jnp.asarray(arr)


# Frameworks whose get_slice indexes a numpy array and converts the result (numpy array,
# safetensors dtype) -> framework tensor. paddle is not one: as in the reference, its handle
# indexes a paddle tensor with paddle's own indexing (paddle's results and exceptions).
_BRIDGES: Dict[str, Callable] = {
    "tf": _bridge_tf, "tensorflow": _bridge_tf, "mlx": _bridge_mlx,
    "flax": _bridge_jax, "jax": _bridge_jax,
}


_FRAMEWORKS: Dict[str, Tuple[Callable, Callable]] = {
    "pt": (to_torch, torch_from_bytes),
    "torch": (to_torch, torch_from_bytes),
    "pytorch": (to_torch, torch_from_bytes),
    "np": (to_numpy, numpy_from_bytes),
    "numpy": (to_numpy, numpy_from_bytes),
    "flax": (to_jax, jax_from_bytes),
    "jax": (to_jax, jax_from_bytes),
    "tf": (to_tf, None),
    "tensorflow": (to_tf, None),
    "mlx": (to_mlx, None),
    "paddle": (to_paddle, None),
}


def converter(framework: str) -> Tuple[Callable, Callable]:
    """The framework names the reference takes ("pt", "torch", "pytorch", "np", "numpy",
    "flax", "jax", "tf", "tensorflow", "mlx", "paddle"); anything else: its errors."""
    if not isinstance(framework, str):
        from ._serialize import not_instance

        raise not_instance("framework", framework, "str")
    try:
        return _FRAMEWORKS[framework]
    except KeyError:
        raise SafetensorError(f"framework {framework} is invalid") from None


def _moving(convert: Callable, move: Optional[str]) -> Callable:
    """convert, then (torch) .to(move) for the accelerators loaded through CPU memory."""
    if move is None:
        return convert
    return lambda t: convert(t).to(move)


def device_allocator(spec: Any, device: str) -> Any:
    """The allocator object for a load's device_allocator argument: None (the library's own
    device memory), "torch" (PyTorch's caching allocator owns it: weightlift.torch.
    TorchAllocator), or an object with alloc(device, nbytes) -> device pointer and
    free(device, ptr, nbytes). Only for GPU devices."""
    if spec is None:
        return None
    if not device.startswith("cuda"):
        raise ValueError(f"device_allocator is for GPU loads, not device {device!r}")
    if isinstance(spec, str):
        if spec != "torch":
            raise ValueError(f"device_allocator {spec!r} not understood (use \"torch\" or an "
                             "object with alloc and free)")
        from .torch import TorchAllocator
        return TorchAllocator()
    if not callable(getattr(spec, "alloc", None)) or not callable(getattr(spec, "free", None)):
        raise TypeError("device_allocator needs alloc(device, nbytes) -> int and "
                        "free(device, ptr, nbytes)")
    return spec


_CONVERT_DTYPES = {"F32": "F32", "F16": "F16", "BF16": "BF16", "float32": "F32",
                   "float16": "F16", "bfloat16": "BF16", "float": "F32", "half": "F16"}


def dtype_arg(dtype: Any) -> Optional[str]:
    """The safetensors name of a dtype= argument: None, "F32"/"F16"/"BF16", or a torch,
    numpy or ml_dtypes float32/float16/bfloat16 dtype."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        name = dtype
    elif type(dtype).__module__ == "torch":
        name = str(dtype).rsplit(".", 1)[-1]  # "torch.float32"
    else:
        import numpy as np

        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = repr(dtype)
    if name not in _CONVERT_DTYPES:
        raise ValueError(f"dtype must be F32, F16 or BF16 (or float32, float16, bfloat16), "
                         f"not {dtype!r}")
    return _CONVERT_DTYPES[name]


def load_dict(path, convert: Callable, device: Device = "cpu", backend: Optional[str] = None,
              names: Optional[List[str]] = None, owned: bool = False,
              mmap_views: bool = False, allocator: Any = None,
              offline: Optional[bool] = None, region: Optional[str] = None,
              gds: Optional[str] = None, dtype: Any = None,
              **remote: Any) -> Dict[str, Any]:
    dtype = dtype_arg(dtype)
    dev, move = split_device(device)
    convert = _moving(convert, move)
    mapped = backend_mmap(backend, dev, owned, mmap_views)
    alloc = device_allocator(allocator, dev)
    ck = open_checkpoint(path, offline, region, **remote)
    try:
        if isinstance(path, (bytes, bytearray, memoryview)):
            mapped = MMAP_OFF
        kw = {"device_allocator": alloc} if alloc is not None else {}
        if gds is not None:
            kw["gds"] = gds
        if dtype is not None:
            kw["dtype"] = dtype
        res = ck.load(names=names, mmap=mapped, device=dev, **kw)
    finally:
        ck.close()
    return {t.name: convert(t) for t in res.tensors()}


# --- safe_open --------------------------------------------------------------------------

def _is_full(ix, n: int) -> bool:
    """ix (one dimension's index) selects all of a dimension of size n, in order, with plain
    int bounds that fit in 64 bits (anything else is left to the framework's indexing, whose
    answer it is: paddle raises for a bound of 2**70, torch clamps it)."""
    if not isinstance(ix, slice):
        return False
    for b in (ix.start, ix.stop, ix.step):
        if b is not None and (type(b) is not int or not -2 ** 63 <= b < 2 ** 63):
            return False
    return ix.step != 0 and ix.indices(n) == (0, n, 1)


def _selects_all(index, dims: Tuple[int, ...]) -> bool:
    """index (a tuple, or one item) selects every element of dims, in order: full slices and at
    most one Ellipsis, no more items than dimensions."""
    items = index if type(index) is tuple else (index,)
    ells = [i for i, ix in enumerate(items) if ix is Ellipsis]
    if len(ells) > 1:
        return False
    head, tail = (items[:ells[0]], items[ells[0] + 1:]) if ells else (items, ())
    if len(head) + len(tail) > len(dims):
        return False
    pairs = list(zip(head, dims)) + list(zip(tail, dims[len(dims) - len(tail):]))
    return all(_is_full(ix, n) for ix, n in pairs)


class PySafeSlice:
    """A lazily read tensor of a safe_open handle: get_shape(), get_dtype(), [...].

    Indexing reads only the leading-dimension rows the index touches, in one engine load
    (wlift_load_opts.rows) in the handle's mode: views of a private mapping on a mapped handle,
    owned memory on a copying one. Whole tensors, leading-dimension ranges and leading ints
    (what transformers' `get_slice(name)[...]` asks for) are those loaded rows themselves, zero
    copy, kept alive by the returned tensor; any other index returns a compact copy owning its
    memory, and the loaded rows are freed (or unmapped) at once."""

    def __init__(self, handle: "safe_open", name: str):
        self._h = handle
        self._name = name
        # The slice keeps the checkpoint open: as in the reference, it stays readable after its
        # handle is closed (the handle then closes the files when the last slice goes).
        self._ck = handle._ck_checked()
        handle._slices.add(self)
        info = self._ck.info(name)
        self._dtype = info[1]
        self._shape = tuple(info[2])
        # Rows can be read alone when each holds whole bytes (not F4/F6 of an odd count).
        self._rowwise = bool(self._shape) and self._shape[0] > 0 and \
            _native.dtype_bits(self._dtype) % 8 == 0

    def get_shape(self) -> List[int]:
        return list(self._shape)

    def get_dtype(self) -> str:
        return self._dtype

    def __getitem__(self, idx):
        h = self._h
        if h._bridge is not None:
            # tensorflow, mlx, paddle, jax: index the numpy array, then convert the result.
            return h._bridge(self._getitem(idx, to_numpy), self._dtype)
        return self._getitem(idx, h._convert)

    def _getitem(self, idx, convert):
        h = self._h
        shape = self._shape
        fw = "np" if convert is to_numpy else h._framework
        if idx is Ellipsis and (h._slice_rules == _slicing.FRAMEWORK or 0 not in shape):
            return h._load_one(self._name, None, convert, self._ck)  # transformers' tensor[...]
        # Which rows to read and what index to apply to them, under the rules the reference
        # applies to this handle (_slicing.plan raises the reference's errors).
        plan = _slicing.plan(idx, shape, h._slice_rules, rows_ok=self._rowwise)
        if plan.rows is None:
            # 0-d, empty, sub-byte rows (F4/F6), or an index the framework must see whole.
            arr = h._load_one(self._name, None, convert, self._ck)
            if _selects_all(plan.index, shape):
                return arr
            return _compact(arr[plan.index], fw)
        lo, hi = plan.rows
        # Every row: a whole-tensor load (the handle's read-ahead may already hold it).
        arr = h._load_one(self._name, None if hi - lo == shape[0] else (lo, hi), convert,
                          self._ck)
        first, rest = plan.index[0], plan.index[1:]
        if _selects_all(rest, shape[1:]):
            if isinstance(first, int):
                # A leading int drops that dimension (a view: numpy's arr[0] of a 1-d array
                # would be a scalar).
                return arr.reshape(shape[1:])
            if first.step in (None, 1) or hi - lo <= 1:
                return arr
            return _compact(arr[first], fw)
        return _compact(arr[plan.index], fw)


def _compact(arr, framework):
    """A compact copy of a view, owning its memory (one pass; the view's rows are released)."""
    if framework in ("pt", "torch", "pytorch"):
        import torch
        return arr.clone(memory_format=torch.contiguous_format)
    if framework in ("np", "numpy"):
        import numpy as np
        return np.array(arr, copy=True, order="C")
    return arr  # jax arrays are immutable copies already


class safe_open:
    """safe_open(filename, framework, device="cpu", backend=None, *, offline=None,
    region=None, max_rate=None, allow_full_download=None, cache_dir=None): lazy access to a
    checkpoint (file, index.json or directory, or a remote URI), as in the safetensors
    package. Thread-safe: many threads may call get_tensor on one handle (the GIL is released
    while reading). offline=True: remote objects from the local cache only. The remote
    keywords are load_file's (weightlift.torch.load_file)."""

    def __init__(self, filename: PathLike, framework: str = "pt", device: Device = "cpu",
                 backend: Optional[str] = None, *, offline: Optional[bool] = None,
                 region: Optional[str] = None, max_rate: Union[int, str, None] = None,
                 allow_full_download: Optional[bool] = None,
                 cache_dir: Optional[PathLike] = None):
        path = check_filename(filename)
        self._setup(framework, device, backend)
        self._ck = open_checkpoint(path, offline, region, max_rate=max_rate,
                                   allow_full_download=allow_full_download,
                                   cache_dir=cache_dir)
        self._path = path

    def _setup(self, framework: str, device: Device, backend: Optional[str]) -> None:
        """Arguments checked in the reference's order (framework, device, backend), before
        the file is opened."""
        self._ck = None
        self._slices: "weakref.WeakSet[PySafeSlice]" = weakref.WeakSet()
        self._framework = framework
        convert, _ = converter(framework)
        self._device, move = split_device(device)
        self._convert = _moving(convert, move)
        self._mmap = backend_mmap(backend, self._device, framework in _OWNED_FRAMEWORKS)
        self._slice_rules = _slicing.rules_for(framework, backend)
        self._bridge = _BRIDGES.get(framework)
        # Mapped-mode handles read ahead (_prefetch.py): backend="mmap" from the first whole
        # tensor asked for, backend=None (AUTO) from the second.
        self._can_prefetch = self._mmap != MMAP_OFF and self._device == "cpu"
        self._served: Optional[set] = set()  # whole tensors loaded alone before read-ahead
        self._path: Optional[str] = None  # a local file's path: its next shard is read ahead
        self._pf: Optional[Prefetch] = None
        self._pf_lock = threading.Lock()

    def _ck_checked(self):
        if self._ck is None or self._ck.closed:
            raise SafetensorError("File is closed")
        return self._ck

    def __enter__(self) -> "safe_open":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pf, self._pf, self._can_prefetch = getattr(self, "_pf", None), None, False
        if pf is not None:
            pf.close()
        ck, self._ck = getattr(self, "_ck", None), None
        if ck is not None and not getattr(self, "_slices", None):
            ck.close()
        # else: slices of this handle still hold ck; its files close when the last one goes.

    def keys(self) -> List[str]:
        return sorted(self._ck_checked().names())

    def offset_keys(self) -> List[str]:
        return self._ck_checked().names()

    def metadata(self) -> Optional[Dict[str, str]]:
        return self._ck_checked().metadata(0)

    def _load_one(self, name: str, rows: Optional[Tuple[int, int]] = None,
                  convert: Optional[Callable] = None, ck=None):
        """One engine load of one tensor (or of its leading-dimension rows [lo, hi)) in the
        handle's mode, as a framework array viewing the loaded memory. ck: a slice's
        checkpoint (readable after the handle closed); else the handle's."""
        if ck is None:
            ck = self._ck_checked()
        if rows is None:
            if self._can_prefetch:
                t = self._from_prefetch(ck, name)
                if t is not None:
                    return (convert or self._convert)(t)
            res = ck.load(names=(name,), mmap=self._mmap, device=self._device)
        else:
            res = ck.load(names=(name,), rows=(rows,), mmap=self._mmap, device=self._device)
        return (convert or self._convert)(res.tensor(0))

    def _from_prefetch(self, ck, name: str):
        """name's tensor from the handle's read-ahead (_prefetch.py), started at the first
        whole-tensor request of a backend="mmap" handle (that tensor first, then the rest of
        the file, then the next shard into the page cache) and at the second of a
        backend=None one (a handle asked for one tensor copies only that one); None: load it
        alone."""
        pf = self._pf
        if pf is None:
            with self._pf_lock:
                pf = self._pf
                if pf is None and self._can_prefetch:
                    if self._mmap == MMAP_ON:
                        groups = [[name], [n for n in ck.names() if n != name]]
                    elif not self._served:
                        self._served.add(name)
                        return None
                    else:
                        groups = [[n for n in ck.names() if n not in self._served]]
                    pf = self._pf = Prefetch(ck, groups, self._device, self._mmap, self._path)
                    self._served = None
                if pf is None:
                    return None
        return pf.take(name)

    def get_tensor(self, name: str):
        if not self._ck_checked().contains(name):
            raise SafetensorError(f"File does not contain tensor {name}")
        return self._load_one(name)

    def get_tensors(self) -> Dict[str, Any]:
        res = self._ck_checked().load(mmap=self._mmap, device=self._device)
        return {t.name: self._convert(t) for t in res.tensors()}

    def get_slice(self, name: str) -> PySafeSlice:
        return PySafeSlice(self, name)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class _safe_open_handle(safe_open):
    """_safe_open_handle(f, framework, device="cpu", *, backend=None): safe_open on an open
    Python file object (a local file, an fsspec file, ...), as in the reference. A file with a
    file descriptor is read through it (/proc/self/fd/N: the library's checks and engine); any
    other file-like object is read whole (seek(0), read()) and opened from memory."""

    def __init__(self, f: Any, framework: str, device: Device = "cpu", *,
                 backend: Optional[str] = None):
        self._setup(framework, device, backend)
        path = None
        try:
            path = f"/proc/self/fd/{int(f.fileno())}"
        except Exception:  # noqa: BLE001 - no descriptor (in-memory or remote file objects)
            path = None
        if path is not None and os.path.exists(path):
            self._ck = open_checkpoint(path)
            return
        f.seek(0)
        data = f.read()
        if isinstance(data, str):
            raise TypeError("_safe_open_handle needs a file opened in binary mode or with a "
                            "file descriptor")
        self._mmap = MMAP_OFF
        self._can_prefetch = False
        self._ck = open_checkpoint(bytes(data))


# --- streaming --------------------------------------------------------------------------

_END = object()


def budget_groups(ck: Any, budget: int) -> List[List[str]]:
    """The checkpoint's tensors in file order, cut into groups whose device bytes (each
    tensor rounded up to the 256-byte alignment of device loads) fit in budget; a tensor
    that alone does not fit is a RuntimeError naming it (wlift_budget_groups)."""
    return ck.budget_groups(budget)


def stream(uri: PathLike, device: Device = "cpu", framework: str = "pt",
           backend: Optional[str] = None, *,
           offline: Optional[bool] = None,
           max_device_bytes: Optional[int] = None, region: Optional[str] = None,
           max_rate: Union[int, str, None] = None,
           allow_full_download: Optional[bool] = None,
           cache_dir: Optional[PathLike] = None) -> Iterator[Tuple[str, Any]]:
    """Yield (name, tensor) as each tensor's bytes have landed, while the rest is read.
    Tensors stay valid after the iteration. Closing the generator early cancels the load.
    offline=True: remote objects from the local cache only. region, max_rate,
    allow_full_download, cache_dir: as for load_file. max_device_bytes (GPU devices):
    load in groups of tensors (file order) that each fit in that many bytes of device
    memory, one group after another, so that a consumer that moves or drops what it got
    needs no more device memory than that."""
    convert, _ = converter(framework)
    dev, move = split_device(device)
    convert = _moving(convert, move)
    mapped = backend_mmap(backend, dev, framework in _OWNED_FRAMEWORKS)
    if max_device_bytes is not None and (not isinstance(max_device_bytes, int)
                                         or max_device_bytes <= 0):
        raise ValueError(f"max_device_bytes must be a positive int, not {max_device_bytes!r}")
    if max_device_bytes is not None and not dev.startswith("cuda"):
        raise ValueError(f"max_device_bytes is for GPU devices, not {dev!r}")
    ck = open_checkpoint(uri, offline, region, max_rate=max_rate,
                         allow_full_download=allow_full_download, cache_dir=cache_dir)
    q: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
    cancel = threading.Event()
    err: List[BaseException] = []
    try:
        if max_device_bytes:  # a tensor over the budget fails here, before any load
            budget_groups(ck, max_device_bytes)
    except BaseException:
        ck.close()
        raise

    def run():
        try:
            if max_device_bytes:  # the groups one after another (wlift_load_groups)
                ck.load(mmap=mapped, device=dev, ready=q.put, cancel=cancel,
                        max_device_bytes=max_device_bytes)
            else:
                ck.load(mmap=mapped, device=dev, ready=q.put, cancel=cancel)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            err.append(e)
        finally:
            q.put(_END)

    th = threading.Thread(target=run, name="weightlift-stream", daemon=True)
    th.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                break
            yield item.name, convert(item)
        th.join()
        if err:
            raise err[0]
    finally:
        if th.is_alive():
            cancel.set()
            th.join()
        ck.close()
