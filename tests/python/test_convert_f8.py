# SPDX-License-Identifier: Apache-2.0
"""F8 -> F32/F16/BF16 conversion on load (dtype=, src/sink/convert_cpu.c) against ml_dtypes
and torch, on every one of the 256 codes of each format (F8_E4M3 = float8_e4m3fn, F8_E5M2,
F8_E4M3FNUZ, F8_E5M2FNUZ, F8_E8M0 = float8_e8m0fnu): bit for bit as ml_dtypes' astype,
NaNs included (the target's quiet NaN with the code's sign bit); bit for bit as torch's
.to() on every code torch does not make a NaN, and a NaN where it does (torch's NaN bits
differ between formats and targets: e4m3fn 0x7f -> F32 0x7ff00000, e8m0 0xff -> F32
0x7f800001). Copy (pread) and mapped loads, numpy and torch modules. The device kernels
are the same formulas checked against this converter by unit/test_kernels (every code) and
unit/test_cuda (on the fake device)."""
import json
import struct

import ml_dtypes
import numpy as np
import pytest
import torch

import weightlift
import weightlift.numpy
import weightlift.torch

FORMATS = {  # safetensors name: (ml_dtypes name, torch name)
    "F8_E4M3": ("float8_e4m3fn", "float8_e4m3fn"),
    "F8_E5M2": ("float8_e5m2", "float8_e5m2"),
    "F8_E4M3FNUZ": ("float8_e4m3fnuz", "float8_e4m3fnuz"),
    "F8_E5M2FNUZ": ("float8_e5m2fnuz", "float8_e5m2fnuz"),
    "F8_E8M0": ("float8_e8m0fnu", "float8_e8m0fnu"),
}
TARGETS = {"F32": (np.float32, np.uint32, torch.float32, torch.int32),
           "F16": (np.float16, np.uint16, torch.float16, torch.int16),
           "BF16": (ml_dtypes.bfloat16, np.uint16, torch.bfloat16, torch.int16)}
CODES = np.arange(256, dtype=np.uint8)


def write_st(path, dtype, data: bytes, shape):
    """A one-tensor safetensors file at an odd data offset (one pad tensor before it)."""
    hdr = {"pad": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
           "x": {"dtype": dtype, "shape": list(shape), "data_offsets": [3, 3 + len(data)]}}
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"\x07\x08\x09" + data)


def want_ml(fmt, target):
    tgt = TARGETS[target]
    with np.errstate(over="ignore"):  # E8M0 -> F16: 2^16 and up are infinities
        return CODES.view(getattr(ml_dtypes, FORMATS[fmt][0])).astype(tgt[0]).view(tgt[1])


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("backend", ["pread", "mmap"])
def test_every_code_numpy(tmp_path, fmt, target, backend):
    p = str(tmp_path / "f8.safetensors")
    write_st(p, fmt, CODES.tobytes(), [16, 16])
    got = weightlift.numpy.load_file(p, backend=backend, dtype=target)["x"]
    assert got.shape == (16, 16)
    assert got.dtype == np.dtype(TARGETS[target][0]), got.dtype
    bits = got.reshape(-1).view(TARGETS[target][1])
    want = want_ml(fmt, target)
    bad = [f"{c:#04x}: {int(b):#x} want {int(w):#x}" for c, b, w in zip(CODES, bits, want)
           if b != w]
    assert not bad, f"{fmt} -> {target}: " + ", ".join(bad[:8])


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_code_torch(tmp_path, fmt, target):
    p = str(tmp_path / "f8.safetensors")
    write_st(p, fmt, CODES.tobytes(), [256])
    tgt = TARGETS[target]
    got = weightlift.torch.load_file(p, dtype=tgt[2])["x"]
    assert got.dtype == tgt[2]
    src = torch.from_numpy(CODES.copy()).view(getattr(torch, FORMATS[fmt][1]))
    ref = src.to(tgt[2])
    nan = torch.isnan(ref)
    assert torch.equal(torch.isnan(got), nan), f"{fmt} -> {target}: NaN codes differ"
    gb = got.view(tgt[3])[~nan]
    rb = ref.view(tgt[3])[~nan]
    bad = (gb != rb).nonzero().reshape(-1).tolist()
    assert not bad, f"{fmt} -> {target}: {len(bad)} codes differ from torch"
    # The loaded file's tensor as stored, for comparison: the F8 view of the same bytes.
    raw = weightlift.torch.load_file(p)["x"]
    assert raw.dtype == getattr(torch, FORMATS[fmt][1])
    assert torch.equal(raw.view(torch.uint8), src.view(torch.uint8))


def test_large_unaligned(tmp_path):
    """A tensor of many elements (the table loop, not just 256 codes), odd file offset."""
    rng = np.random.default_rng(11)
    data = rng.integers(0, 256, size=1 << 20, dtype=np.uint8)
    p = str(tmp_path / "big.safetensors")
    write_st(p, "F8_E4M3", data.tobytes(), [1024, 1024])
    got = weightlift.numpy.load_file(p, dtype="BF16")["x"]
    want = data.view(ml_dtypes.float8_e4m3fn).astype(ml_dtypes.bfloat16).reshape(1024, 1024)
    assert np.array_equal(got.view(np.uint16), want.view(np.uint16))


def test_bad_dtype_arguments(tmp_path):
    p = str(tmp_path / "f8.safetensors")
    write_st(p, "F8_E5M2", CODES.tobytes(), [256])
    for bad in ("F8_E4M3", "I32", "float64", torch.int8, np.int16):
        with pytest.raises(ValueError, match="dtype must be F32, F16 or BF16"):
            weightlift.numpy.load_file(p, dtype=bad)
    # Integers are left alone; the same dtype is no conversion.
    write_st(p, "I8", CODES.tobytes(), [256])
    got = weightlift.numpy.load_file(p, dtype=np.float16)["x"]
    assert got.dtype == np.int8
