# SPDX-License-Identifier: Apache-2.0
"""get_slice index handling, apart from how the bytes are read: which leading-dimension rows an
index touches (so that only those are read) and what index to apply to the array of those rows,
under the rules the reference (safetensors 0.8.0) applies to the handle:

- ``FRAMEWORK`` rules: a torch handle that maps the file (the reference's default backend,
  "mmap") indexes the whole tensor with the framework's own ``__getitem__``, so every torch
  index form works (None, lists, tensors, negative slice bounds) and errors are torch's. The
  paddle handle does the same with paddle's indexing.
- ``REFERENCE`` rules: every other handle (numpy, flax/jax, tensorflow, mlx, and torch with
  backend="pread") parses the index itself: ints must fit in 32 bits, slice bounds are unsigned
  (negative ones are an OverflowError, ones of 2**64 or more "int too big to convert", floats a
  TypeError), steps must be positive, one Ellipsis at most, an empty list means ``0:0`` and a
  non-empty list is not implemented; positions and dimensions in the messages are counted after
  the Ellipsis is expanded; the bounds are checked from the last indexed dimension to the first.

Deliberate difference: where the reference crashes on a reversed slice (``a[2:1]``:
SystemError "Negative size passed to PyByteArray_FromStringAndSize", or a Rust panic
"capacity overflow"), the result here is empty, as in numpy and torch.
"""
from __future__ import annotations

import operator
from typing import Any, NamedTuple, Optional, Sequence, Tuple

from ._native import SafetensorError

REFERENCE = "reference"
FRAMEWORK = "framework"

# Frameworks whose reference handle, when it maps the file, slices with the framework itself.
_FRAMEWORK_SLICERS = {"pt", "torch", "pytorch", "paddle"}

_I32_MIN, _I32_MAX = -(2 ** 31), 2 ** 31 - 1
_U64_LIMIT = 2 ** 64
_CLONG_MIN, _CLONG_MAX = -(2 ** 63), 2 ** 63 - 1


class SlicePlan(NamedTuple):
    """rows: the [lo, hi) range of the leading dimension to read, or None for the whole tensor;
    index: what to apply to the array of those rows (its leading dimension counted from lo)."""
    rows: Optional[Tuple[int, int]]
    index: Any


def rules_for(framework: str, backend: Optional[str]) -> str:
    """The rules the reference applies to get_slice of a handle opened with these arguments."""
    if framework in _FRAMEWORK_SLICERS and backend != "pread":
        return FRAMEWORK
    return REFERENCE


def plan(idx: Any, shape: Sequence[int], rules: str, rows_ok: bool = True) -> SlicePlan:
    """The rows to read and the index to apply for ``get_slice(name)[idx]`` of a tensor of this
    shape. Raises what the reference raises for an index its rules reject (REFERENCE rules);
    under FRAMEWORK rules, an index the fast path does not understand is left to the framework
    on the whole tensor, so its errors are the framework's. rows_ok=False (sub-byte dtypes):
    the whole tensor is read and the index is relative to it."""
    shape = tuple(int(n) for n in shape)
    if rules == FRAMEWORK:
        return _framework_plan(idx, shape, rows_ok)
    return _reference_plan(idx, shape, rows_ok)


# --- REFERENCE rules ----------------------------------------------------------------------

class _Narrow(NamedTuple):
    start: Optional[int]
    stop: Optional[int]
    step: Optional[int]

    def text(self) -> str:
        txt = ("" if self.start is None else str(self.start)) + ":" + \
              ("" if self.stop is None else str(self.stop))
        return txt if self.step in (None, 1) else f"{txt}:{self.step}"


def _unsigned(v: Any) -> Optional[int]:
    """A slice bound as the reference converts it (Option<usize>)."""
    if v is None:
        return None
    v = operator.index(v)  # TypeError "'float' object cannot be interpreted as an integer"
    if v < 0:
        raise OverflowError("can't convert negative int to unsigned")
    if v >= _U64_LIMIT:
        raise OverflowError("int too big to convert")
    return v


def _step(v: Any) -> Optional[int]:
    if v is None:
        return None
    v = operator.index(v)
    if not _CLONG_MIN <= v <= _CLONG_MAX:
        raise OverflowError("Python int too large to convert to C long")
    if v <= 0:
        raise SafetensorError(f"Slice step must be a positive integer, got {v}")
    return v


def _int32(v: Any) -> Optional[int]:
    """v as the reference's 32-bit index, or None when it is not one (then unsupported)."""
    if isinstance(v, float):
        return None
    try:
        v = operator.index(v)
    except Exception:  # noqa: BLE001 - anything without a working __index__ is unsupported
        return None
    return v if _I32_MIN <= v <= _I32_MAX else None


def _reference_items(idx: Any, shape: Tuple[int, ...]) -> list:
    """Parse idx into _Narrow / int items, one per indexed dimension, with the reference's
    checks and texts, in its order (one pass, position by position)."""
    ndim = len(shape)
    if isinstance(idx, list):
        if idx:
            raise SafetensorError("Non empty lists are not implemented")
        return [_Narrow(0, 0, None)]
    raw = list(idx) if isinstance(idx, tuple) else [idx]
    ells = [i for i, x in enumerate(raw) if x is Ellipsis]
    if len(ells) > 1:
        raise SafetensorError("Only one ellipsis (...) is allowed in slice index")
    if ells:
        k = ells[0]
        fill = max(ndim - (len(raw) - 1), 0)
        raw = raw[:k] + [slice(None)] * fill + raw[k + 1:]
    items: list = []
    for pos, x in enumerate(raw):
        if isinstance(x, slice):
            start, stop = _unsigned(x.start), _unsigned(x.stop)
            items.append(_Narrow(start, stop, _step(x.step)))
            continue
        v = _int32(x)
        if v is None:
            raise SafetensorError(f"Unsupported slice index at position {pos}: "
                                  "expected slice, int, or ellipsis")
        if v < 0:
            n = shape[pos] if pos < ndim else 0
            if v + n < 0:
                raise SafetensorError(f"Invalid index {v} for dimension {pos} of size {n}")
            v += n
        items.append(v)
    return items


def _format_index(items: list) -> str:
    """Parsed items as the reference prints them in errors: [0, 1:5, ::2, :]."""
    return "[" + ", ".join(it.text() if isinstance(it, _Narrow) else str(it) for it in items) + "]"


def _reference_plan(idx: Any, shape: Tuple[int, ...], rows_ok: bool) -> SlicePlan:
    items = _reference_items(idx, shape)

    def where() -> str:  # error paths only: no formatting on success
        return f"Error during slicing {_format_index(items)} with shape {list(shape)}"

    if len(items) > len(shape):
        raise SafetensorError(f"{where()}: more slicing indexes than dimensions in tensor")
    # The reference checks the last indexed dimension first.
    for dim in range(len(items) - 1, -1, -1):
        it, n = items[dim], shape[dim]
        bad = None
        if isinstance(it, _Narrow):
            start = 0 if it.start is None else it.start
            stop = n if it.stop is None else it.stop
            if start >= n:
                bad = start
            elif stop > n:
                bad = stop - 1
        elif it >= n:
            bad = it
        if bad is not None:
            raise SafetensorError(f"{where()}: index {bad} out of bounds for tensor dimension "
                                  f"#{dim} of size {n}")
    index = tuple(slice(it.start, it.stop, it.step) if isinstance(it, _Narrow) else it
                  for it in items)
    if not rows_ok or not shape:
        return SlicePlan(None, index)
    return _rows_of(index, shape[0])


def _rows_of(index: Tuple[Any, ...], n: int) -> SlicePlan:
    """Split a valid basic index (ints in [0, n), slices with positive steps) into the rows of
    dimension 0 it touches and the index relative to them."""
    first = index[0] if index else slice(None)
    if isinstance(first, int):
        return SlicePlan((first, first + 1), (0,) + index[1:])
    r = range(*first.indices(n))
    if not len(r):
        return SlicePlan((0, 0), (slice(0, 0),) + index[1:])
    lo, hi = r[0], r[-1] + 1
    return SlicePlan((lo, hi), (slice(0, hi - lo, r.step),) + index[1:])


# --- FRAMEWORK rules ----------------------------------------------------------------------

def _plain_int(v: Any) -> Optional[int]:
    """An int (Python or numpy integer, not bool) or None."""
    if isinstance(v, bool) or isinstance(v, float):
        return None
    if type(v) is int:
        return v
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return None
    return int(v) if isinstance(v, np.integer) else None


def _framework_plan(idx: Any, shape: Tuple[int, ...], rows_ok: bool) -> SlicePlan:
    """The framework indexes; only a leading int or slice (the forms that select rows of
    dimension 0 whatever follows) narrows what is read. Anything else reads the whole tensor
    and lets the framework decide, errors included."""
    whole = SlicePlan(None, idx)
    if not rows_ok or not shape:
        return whole
    if isinstance(idx, tuple):
        if not idx:
            return whole
        first, rest = idx[0], idx[1:]
    else:
        first, rest = idx, ()
    n = shape[0]
    v = _plain_int(first)
    if v is not None:
        if not -n <= v < n:
            return whole  # the framework raises its own IndexError
        v %= n
        return SlicePlan((v, v + 1), (0,) + rest)
    if not isinstance(first, slice):
        return whole
    bounds = []
    for b in (first.start, first.stop, first.step):
        if b is None:
            bounds.append(None)
            continue
        bi = _plain_int(b)
        if bi is None or not _CLONG_MIN < bi <= _CLONG_MAX:
            return whole  # (torch truncates bounds past int64, with a warning)
        bounds.append(bi)
    if bounds[2] is not None and bounds[2] <= 0:
        return whole  # the framework's own error for a zero or negative step
    if bounds[2] is not None and bounds[2] >= _CLONG_MAX - n:
        # torch's length (stop - start + step - 1) / step overflows int64 here and gives
        # fewer rows than the slice has (x[-5::2**63 - 1] of 4 rows is empty): its answer
        # on the whole tensor, not ours.
        return whole
    r = range(*slice(*bounds).indices(n))
    if not len(r):
        return SlicePlan((0, 0), (slice(0, 0),) + rest)
    lo, hi = r[0], r[-1] + 1
    return SlicePlan((lo, hi), (slice(0, hi - lo, r.step),) + rest)
