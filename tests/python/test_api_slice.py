# SPDX-License-Identifier: Apache-2.0
"""get_slice against numpy slicing and the reference safetensors (0.8.0): seeded random shapes
and random indices (ints, negative ints, steps, Ellipsis, open ranges), for numpy and torch,
and the reference's exception type and text for bad indices."""
import random

import numpy as np
import pytest

wl = pytest.importorskip("weightlift")
ref = pytest.importorskip("safetensors")
refnp = pytest.importorskip("safetensors.numpy")


def rand_index(rnd, shape):
    """An index the reference accepts: non-negative slice bounds inside the dimension, positive
    steps, ints in [-n, n), at most one Ellipsis."""
    parts = []
    for n in shape:
        kind = rnd.choice(["int", "negint", "slice", "open", "step", "full"]) if n else "full"
        if kind == "int":
            parts.append(rnd.randrange(n))
        elif kind == "negint":
            parts.append(-rnd.randrange(1, n + 1))
        elif kind == "slice":
            a = rnd.randrange(n)
            parts.append(slice(a, rnd.randrange(a + 1, n + 1)))
        elif kind == "open":
            parts.append(rnd.choice([slice(rnd.randrange(n), None), slice(None, rnd.randrange(1, n + 1))]))
        elif kind == "step":
            a = rnd.randrange(n)
            parts.append(slice(a, rnd.choice([None, rnd.randrange(a + 1, n + 1)]), rnd.randrange(1, 4)))
        else:
            parts.append(slice(None))
    # Drop a trailing run (implicit full slices) or replace a run with an Ellipsis.
    if parts and rnd.random() < 0.3:
        parts = parts[:rnd.randrange(len(parts) + 1)]
    elif parts and rnd.random() < 0.4:
        i = rnd.randrange(len(parts))
        j = rnd.randrange(i, len(parts) + 1)
        if all(isinstance(x, slice) and x == slice(None) for x in parts[i:j]):
            parts = parts[:i] + [Ellipsis] + parts[j:]
    if len(parts) == 1 and rnd.random() < 0.5:
        return parts[0]
    return tuple(parts)


DTYPES = [np.float32, np.int8, np.float64, np.uint16, np.bool_]


def make(tmp_path, seed):
    rnd = random.Random(seed)
    rng = np.random.default_rng(seed)
    t = {}
    for i in range(6):
        shape = tuple(rnd.randrange(1, 7) for _ in range(rnd.randrange(0, 5)))
        dt = DTYPES[i % len(DTYPES)]
        t[f"t{i}"] = np.asarray(rng.integers(0, 2, shape).astype(dt) if dt == np.bool_
                      else np.asarray(rng.standard_normal(shape) * 50).astype(dt))
    p = tmp_path / f"s{seed}.safetensors"
    refnp.save_file(t, p)
    return p, t, rnd


@pytest.mark.parametrize("seed", range(8))
def test_random_slices_numpy(tmp_path, seed):
    p, t, rnd = make(tmp_path, seed)
    with wl.safe_open(p, "np") as w, ref.safe_open(p, "np") as r:
        for k, arr in t.items():
            ws, rs = w.get_slice(k), r.get_slice(k)
            assert ws.get_shape() == list(arr.shape)
            for _ in range(25):
                idx = rand_index(rnd, arr.shape)
                want = arr[idx]
                if arr.ndim:
                    assert np.array_equal(rs[idx], want), (k, idx)
                got = ws[idx]
                assert isinstance(got, np.ndarray), (k, idx)
                assert got.dtype == want.dtype and got.shape == np.shape(want), (k, idx)
                assert np.array_equal(got, want), (k, idx)


@pytest.mark.parametrize("seed", range(3))
def test_random_slices_torch(tmp_path, seed):
    torch = pytest.importorskip("torch")
    p, t, rnd = make(tmp_path, 100 + seed)
    with wl.safe_open(p, "pt") as w:
        for k, arr in t.items():
            ws = w.get_slice(k)
            for _ in range(15):
                idx = rand_index(rnd, arr.shape)
                want = np.asarray(arr[idx])
                got = ws[idx]
                assert isinstance(got, torch.Tensor)
                assert tuple(got.shape) == want.shape, (k, idx)
                assert np.array_equal(got.numpy(), want), (k, idx)


def test_slice_outlives_handle(tmp_path):
    p, t, _ = make(tmp_path, 7)
    with wl.safe_open(p, "np") as f:
        s = f.get_slice("t0")
        x = s[...]
    assert np.array_equal(x, t["t0"])


BAD = [(5,), (-3,), (slice(0, 2, -1),), (0, 0, 0, 0), (Ellipsis, Ellipsis), ("x",),
       (slice(None, None, 0),), (slice(5, 10),), (slice(0, 3),), (slice(2, 1),), (1.5,)]


@pytest.mark.parametrize("idx", BAD, ids=repr)
def test_bad_index_like_reference(tmp_path, idx):
    p = tmp_path / "b.safetensors"
    refnp.save_file({"a": np.arange(24, dtype=np.float32).reshape(2, 3, 4)}, p)
    with ref.safe_open(p, "np") as r:
        with pytest.raises(Exception) as want:
            r.get_slice("a")[idx]
    with wl.safe_open(p, "np") as w:
        with pytest.raises(Exception) as got:
            w.get_slice("a")[idx]
    if isinstance(want.value, ref.SafetensorError):
        assert isinstance(got.value, wl.SafetensorError), (type(got.value), got.value)
    else:
        assert isinstance(got.value, type(want.value))
    assert str(got.value) == str(want.value)


def test_torch_slices_bf16_float8_like_reference(tmp_path):
    torch = pytest.importorskip("torch")
    reft = pytest.importorskip("safetensors.torch")
    g = torch.Generator().manual_seed(0)
    t = {"bf": torch.randn(6, 5, 4, generator=g).to(torch.bfloat16)}
    for n in ["float8_e4m3fn", "float8_e5m2"]:
        if hasattr(torch, n):
            t[n] = torch.randn(6, 5, 4, generator=g).to(getattr(torch, n))
    p = tmp_path / "bf.safetensors"
    reft.save_file(t, p)
    rnd = random.Random(5)
    with wl.safe_open(p, "pt") as w, ref.safe_open(p, "pt") as r:
        for k in t:
            assert w.get_slice(k).get_dtype() == r.get_slice(k).get_dtype()
            for _ in range(20):
                idx = rand_index(rnd, (6, 5, 4))
                a, b = w.get_slice(k)[idx], r.get_slice(k)[idx]
                assert a.dtype == b.dtype and a.shape == b.shape, (k, idx)
                assert a.contiguous().view(torch.uint8).equal(b.contiguous().view(torch.uint8)) if a.dim() else True, (k, idx)


def test_every_two_index_combination_like_reference(tmp_path):
    """Results and error texts equal the reference's for every pair of index forms."""
    import itertools
    p = tmp_path / "c.safetensors"
    refnp.save_file({"a": np.arange(24, dtype=np.float32).reshape(2, 3, 4)}, p)
    forms = [0, 1, 2, 3, -1, -2, -3, slice(None), slice(1, None), slice(0, 2), slice(2, 2),
             slice(1, 1), slice(None, 3), slice(None, None, 2), slice(-1, None), Ellipsis]

    def outcome(sl, idx):
        try:
            return ("ok", sl[idx].tolist())
        except Exception as e:  # noqa: BLE001 - the class and text are what is compared
            return (type(e).__name__, str(e))

    with ref.safe_open(p, "np") as r, wl.safe_open(p, "np") as w:
        rs, ws = r.get_slice("a"), w.get_slice("a")
        for idx in itertools.product(forms, repeat=2):
            assert outcome(ws, idx) == outcome(rs, idx), idx
