# SPDX-License-Identifier: Apache-2.0
"""get_slice conformance against the reference safetensors (0.8.0): for every index form of
tests/conformance/slice_cases.py and every tensor shape there, a numpy handle, a torch handle
(default backend: the reference slices with torch itself) and a torch handle with
backend="pread" (the reference's own index rules) must give the reference's result (shape,
dtype, values) or raise its exception type with its text. The one deliberate difference: a
reversed slice, on which the reference crashes, gives numpy's empty result."""
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "conformance"))

import slice_cases  # noqa: E402

wl = pytest.importorskip("weightlift")
ref = pytest.importorskip("safetensors")
refnp = pytest.importorskip("safetensors.numpy")

HANDLES = [("np", None), ("pt", None), ("pt", "pread"), ("pt", "mmap")]


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    p = tmp_path_factory.mktemp("slice") / "forms.safetensors"
    t = {}
    for name, shape in slice_cases.SHAPES.items():
        dt = np.int16 if name == "v" else np.float32
        t[name] = np.arange(int(np.prod(shape)), dtype=dt).reshape(shape)
    refnp.save_file(t, str(p))
    return str(p)


def outcome(mod, path, fw, backend, name, idx):
    kw = {} if backend is None else {"backend": backend}
    try:
        with mod.safe_open(path, framework=fw, **kw) as f:
            r = f.get_slice(name)[idx]
    except BaseException as e:  # noqa: BLE001 - the class and the text are what is compared
        return ("err", type(e).__name__, str(e))
    if fw == "pt":
        return ("ok", tuple(r.shape), str(r.dtype), r.reshape(-1).tolist())
    return ("ok", tuple(r.shape), str(r.dtype), np.asarray(r).reshape(-1).tolist())


def check(path, fw, backend, idx):
    for name in slice_cases.SHAPES:
        want = outcome(ref, path, fw, backend, name, idx)
        got = outcome(wl, path, fw, backend, name, idx)
        if want[0] == "err" and want[1] in ("SystemError", "PanicException"):
            # The reference crashed (a reversed slice): numpy's empty result instead.
            assert slice_cases.is_reversed(idx), (name, idx, want)
            shape = slice_cases.SHAPES[name]
            arr = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
            assert got[0] == "ok" and got[1] == np.shape(arr[idx]), (name, idx, got)
            continue
        assert got == want, (fw, backend, name, idx)


@pytest.mark.parametrize("fw,backend", HANDLES, ids=lambda v: str(v))
def test_fixed_forms(path, fw, backend):
    for idx in slice_cases.FIXED:
        check(path, fw, backend, idx)


@pytest.mark.parametrize("fw,backend", HANDLES, ids=lambda v: str(v))
def test_reversed_forms(path, fw, backend):
    for idx in slice_cases.REVERSED:
        check(path, fw, backend, idx)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("fw,backend", HANDLES[:3], ids=lambda v: str(v))
def test_random_forms(path, fw, backend, seed):
    for idx in slice_cases.random_forms(seed, 150):
        check(path, fw, backend, idx)


def test_torch_index_forms_beyond_the_reference_rules(path):
    """A mapped torch handle takes everything torch's indexing takes (the reference hands the
    index to torch): None, lists, bool masks, index tensors, negative slice bounds."""
    torch = pytest.importorskip("torch")
    forms = [None, [0, 2], [[0, 1], [1, 2]], torch.tensor([2, 0]), torch.tensor([True, False, True]),
             (slice(-2, None), None, [1, 3]), (Ellipsis, None), (0, [1, 2], slice(None, -1)),
             # torch's row count overflows with a step near 2**63 (fuzz/corpus/slice/
             # torch-step-overflow-rows): torch's answer, not the slice's rows.
             slice(-5, None, 2 ** 63 - 1), slice(1, None, 2 ** 63 - 2)]
    for idx in forms:
        check(path, "pt", None, idx)


def test_slice_has_no_len(path):
    """len() of a slice object is a TypeError, as in the reference (which has no __len__)."""
    for fw in ("np", "pt"):
        with ref.safe_open(path, framework=fw) as r, wl.safe_open(path, framework=fw) as w:
            with pytest.raises(TypeError):
                len(r.get_slice("a"))
            with pytest.raises(TypeError):
                len(w.get_slice("a"))
