#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Fuzz target: the get_slice index normaliser (weightlift._core), driven by atheris.

Each input decodes (without atheris, so that tests/python/test_fuzz_slice.py can replay
fuzz/corpus/slice/ in `make test`) into a tensor (dtype, shape with zero-size dims) and an
index: ints (small, negative, beyond 64 bits, numpy scalars, bools), slices of such bounds and
steps, Ellipsis, None, lists, arrays, floats and strings, as a tuple or alone. Invariants:
weightlift's get_slice accepts exactly what the reference safetensors get_slice accepts, with
the same exception type and text when both refuse; an accepted index gives the reference's
array (dtype, shape, bytes), which is also numpy's (torch's) slicing of the whole tensor.

    .venv/bin/python fuzz/fuzz_slice.py -max_total_time=600 NEW_DIR fuzz/corpus/slice
    .venv/bin/python fuzz/fuzz_slice.py -merge=1 fuzz/corpus/slice NEW_DIR
"""
import collections
import os
import sys
import tempfile

import numpy as np

DTYPES = [np.float32, np.int8, np.uint16, np.bool_, np.float64, np.float16]
BIG = [2**63 - 1, 2**63, 2**64, 2**64 + 1, 2**70, -(2**63), -(2**63) - 1, -(2**64)]

_files = collections.OrderedDict()  # the last _KEEP tensors' files and open handles
_KEEP = 64
_paths = []
_serial = 0
_tmp = None


class Input:
    """The fuzz bytes read front to back; reading past the end gives zeros."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def u8(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]


def _int(inp: Input):
    k = inp.u8()
    kind, v = k % 8, inp.u8()
    if kind < 4:
        return v % 17 - 8              # small, negative too
    if kind == 4:
        return BIG[v % len(BIG)]
    if kind == 5:
        return np.int64(v % 17 - 8)
    if kind == 6:
        return bool(v & 1)
    return np.uint8(v % 9)


def _bound(inp: Input):
    return None if inp.u8() % 3 == 0 else _int(inp)


def _item(inp: Input):
    k = inp.u8() % 16
    if k < 5:
        return _int(inp)
    if k < 11:
        return slice(_bound(inp), _bound(inp), _bound(inp))
    if k == 11:
        return Ellipsis
    if k == 12:
        return None
    if k == 13:
        return [_int(inp) for _ in range(inp.u8() % 3)]
    if k == 14:
        return np.array([inp.u8() % 3]) if inp.u8() & 1 else float(inp.u8() % 3)
    return "a"


def decode(data: bytes):
    """(framework, backend, dtype, shape, index) of one input."""
    inp = Input(data)
    b = inp.u8()
    framework = "pt" if b & 0x80 else "numpy"
    backend = "pread" if b & 0x40 else None  # a mapping torch handle slices with torch
    dtype = DTYPES[(b >> 3) % len(DTYPES)]
    shape = tuple(inp.u8() % 6 for _ in range(b % 5))
    b = inp.u8()
    items = tuple(_item(inp) for _ in range(b % 6))
    index = items[0] if (b & 0x40 and len(items) == 1) else items
    return framework, backend, dtype, shape, index


def _handles(framework, backend, dtype, shape):
    """The reference's and weightlift's get_slice of a tensor of dtype and shape (files and
    handles kept for the whole run), and the tensor itself."""
    global _tmp
    import safetensors
    import safetensors.numpy
    import weightlift

    key = (framework, backend, np.dtype(dtype).str, shape)
    if key in _files:
        _files.move_to_end(key)
    else:
        if len(_files) >= _KEEP:  # bounded: every handle holds a file descriptor
            old = _files.popitem(last=False)[1]
            old[4].close()
            del old
            os.unlink(_paths.pop(0))
        if _tmp is None:
            _tmp = tempfile.TemporaryDirectory(prefix="fuzz_slice")
        full = (np.arange(int(np.prod(shape)), dtype=np.int64) * 7 % 251).astype(dtype)
        full = full.reshape(shape)
        global _serial
        _serial += 1
        path = os.path.join(_tmp.name, f"{_serial}.safetensors")
        _paths.append(path)
        safetensors.numpy.save_file({"t": full}, path)
        kw = {"backend": backend} if backend else {}
        ref = safetensors.safe_open(path, framework=framework, **kw)
        wl = weightlift.safe_open(path, framework=framework, **kw)
        if framework == "pt":
            import torch
            full = torch.from_numpy(full.copy())
        _files[key] = (ref.get_slice("t"), wl.get_slice("t"), full, ref, wl)
    return _files[key][:3]


def _run(f, idx):
    try:
        return f(idx), None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - compared with the reference's (a Rust panic
        return None, e          # is a BaseException)


def _bytes(a, framework):
    if framework == "pt":
        return a.dtype, tuple(a.shape), a.contiguous().view(-1).numpy().tobytes() \
            if a.numel() else b""
    return a.dtype, a.shape, np.ascontiguousarray(a).tobytes()


def _plain(index):
    """index with bools as the ints they are to the reference (to numpy and torch a bool is a
    mask), for slicing the whole tensor."""
    def one(v):
        if isinstance(v, (bool, np.bool_)):
            return int(v)
        if isinstance(v, slice):
            return slice(one(v.start), one(v.stop), one(v.step))
        return v
    return tuple(one(v) for v in index) if isinstance(index, tuple) else one(index)


def _reversed(index) -> bool:
    """Whether index has a slice with both bounds given and its stop below its start."""
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(v, slice) and v.start is not None and v.stop is not None and
               int(v.stop) < int(v.start) for v in items)


def _huge_step(index) -> bool:
    """Whether index has a slice step of 2**62 or more."""
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(v, slice) and v.step is not None and abs(int(v.step)) >= 1 << 62
               for v in items)


def check(data: bytes) -> None:
    framework, backend, dtype, shape, index = decode(data)
    ref, wl, full = _handles(framework, backend, dtype, shape)
    label = f"{framework}/{backend}" if backend else framework
    want, want_err = _run(ref.__getitem__, index)
    got, got_err = _run(wl.__getitem__, index)
    # The reference's own rules (numpy, or torch reading with pread) treat a bool as an int;
    # torch slicing a mapping (the reference's pt default) as a mask.
    plain = _plain(index) if framework == "numpy" or backend == "pread" else index
    if _reversed(index) and type(want_err).__name__ != "SafetensorError":
        # The reference's bug (safetensors 0.8.0): a slice whose stop is below its start
        # computes a negative size, and it crashes ("Negative size passed to
        # PyByteArray_FromStringAndSize", "Maximum allowed dimension exceeded", a reshape
        # error, torch.zeros of a negative size, a "capacity overflow" panic) or returns a
        # tensor of a bogus shape. weightlift gives the empty result numpy (torch) does, or,
        # where the reference crashed before checking another dimension, its bounds error.
        if got_err is None:
            whole, whole_err = _run(full.__getitem__, plain)
            if whole_err is None and _bytes(whole, framework) == _bytes(got, framework):
                return
        elif want_err is not None and type(got_err).__name__ == "SafetensorError":
            return
    if framework == "pt" and _huge_step(index):
        # torch's own overflows with a step near 2**63 (the reference's torch slicing raises
        # "Storage size calculation overflowed", "as_strided: Negative strides", or returns
        # rows the whole tensor's slicing does not): weightlift must not crash, and what it
        # returns must be one of the two answers.
        if got_err is None and want_err is None and \
                _bytes(want, framework) != _bytes(got, framework):
            whole = _run(full.__getitem__, plain)[0]
            if whole is None or _bytes(whole, framework) != _bytes(got, framework):
                raise AssertionError(f"{label} {shape} {index!r}: weightlift's result is "
                                     "neither the reference's nor torch's")
        return
    if (want_err is None) != (got_err is None):
        raise AssertionError(f"{label} {shape} {index!r}: reference "
                             f"{'raised ' + repr(want_err) if want_err else 'accepted'}, "
                             f"weightlift {'raised ' + repr(got_err) if got_err else 'accepted'}")
    if want_err is not None:
        if type(want_err).__name__ != type(got_err).__name__ or str(want_err) != str(got_err):
            raise AssertionError(f"{label} {shape} {index!r}: reference raised "
                                 f"{want_err!r}, weightlift {got_err!r}")
        return
    if _bytes(want, framework) != _bytes(got, framework):
        raise AssertionError(f"{label} {shape} {index!r}: weightlift's result differs "
                             "from the reference's")
    # The reference is numpy's (torch's) slicing, restricted; check that too.
    whole, whole_err = _run(full.__getitem__, plain)
    if whole_err is not None:
        raise AssertionError(f"{label} {shape} {index!r}: weightlift and the reference "
                             f"accepted, slicing the whole tensor raised {whole_err!r}")
    if _bytes(whole, framework) != _bytes(got, framework):
        raise AssertionError(f"{label} {shape} {index!r}: weightlift's result differs "
                             "from slicing the whole tensor")


def main():
    import warnings

    import atheris

    warnings.simplefilter("ignore")  # torch's deprecation notes for uint8 masks and the like

    with atheris.instrument_imports():
        import weightlift  # noqa: F401
        import weightlift._core  # noqa: F401
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
