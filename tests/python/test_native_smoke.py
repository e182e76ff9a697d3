# SPDX-License-Identifier: Apache-2.0
"""Smoke tests of the weightlift package (the thorough suite is tests/python/test_api_*.py):
the extension imports, loads zero-copy through DLPack, saves byte-identically to the
reference, safe_open/get_slice/stream work and errors map to the right classes."""
import os
import re
import signal
import threading

import numpy as np
import pytest
import safetensors
import safetensors.numpy as snp

import weightlift
import weightlift.numpy as wnp

torch = pytest.importorskip("torch")
import safetensors.torch as st  # noqa: E402

import weightlift.torch as wt  # noqa: E402


def _tensors():
    return {
        "a": torch.arange(12, dtype=torch.float32).reshape(3, 4),
        "empty": torch.zeros((0, 2), dtype=torch.int64),
        "scalar": torch.tensor(3.0, dtype=torch.float64),
        "bf": torch.randn(3, 5).to(torch.bfloat16),
        "f8": torch.randn(4).to(torch.float8_e4m3fn),
        "u16": torch.arange(5, dtype=torch.int32).to(torch.uint16),
        "bo": torch.tensor([True, False]),
    }


def _same(x, y):
    return x.dtype == y.dtype and x.shape == y.shape and torch.equal(
        x.reshape(-1).view(torch.uint8), y.reshape(-1).view(torch.uint8))


@pytest.fixture()
def ckpt(tmp_path):
    d = _tensors()
    p = tmp_path / "m.safetensors"
    st.save_file(d, str(p), metadata={"k": "v"})
    return p, d


def test_import_and_native():
    assert weightlift.__version__
    assert issubclass(weightlift.SafetensorError, ValueError)


@pytest.mark.parametrize("backend", [None, "pread"])
def test_torch_load_file(ckpt, backend):
    p, d = ckpt
    r = weightlift.load_file(p, backend=backend)
    ref = st.load_file(str(p))
    assert list(r) == list(ref)
    for k in d:
        assert _same(r[k], d[k]), k
    # writable, and writing never changes the file
    r["a"][0, 0] = 100.0
    assert st.load_file(str(p))["a"][0, 0] == 0.0


def test_save_byte_identical(ckpt, tmp_path):
    p, d = ckpt
    assert wt.save(d, {"k": "v"}) == st.save(d, metadata={"k": "v"})
    q = tmp_path / "w.safetensors"
    wt.save_file(d, q, {"k": "v"})
    assert q.read_bytes() == p.read_bytes()
    arrs = {"x": np.arange(6, dtype=np.int16).reshape(2, 3), "y": np.ones(3, np.float32),
            "s": np.array(3.0), "e": np.zeros((0, 2), np.int64)}
    assert wnp.save(arrs) == snp.save(arrs)


def test_numpy_zero_copy(ckpt):
    p, d = ckpt
    n = wnp.load_file(p)
    assert str(n["bf"].dtype) == "bfloat16"
    np.testing.assert_array_equal(n["a"], d["a"].numpy())
    t = weightlift._native.Checkpoint(str(p)).load(names=["a"]).tensor("a")
    a1, a2 = np.from_dlpack(t), np.from_dlpack(t)
    assert a1.ctypes.data == a2.ctypes.data == t.address
    del t
    assert a1.sum() == 66


def test_load_bytes(ckpt):
    p, d = ckpt
    r = wt.load(p.read_bytes())
    for k in d:
        assert _same(r[k], d[k])


def test_safe_open(ckpt):
    p, _ = ckpt
    with weightlift.safe_open(p, "pt") as f, safetensors.safe_open(str(p), "pt") as g:
        assert f.keys() == g.keys() and f.offset_keys() == g.offset_keys()
        assert f.metadata() == g.metadata() == {"k": "v"}
        s, gs = f.get_slice("a"), g.get_slice("a")
        assert s.get_shape() == gs.get_shape() and s.get_dtype() == gs.get_dtype()
        for ix in [0, -1, slice(1, 3), (slice(None), slice(0, 4, 2)), (Ellipsis, 1), (), (1, 2),
                   (slice(0, 3, 2),)]:
            assert torch.equal(s[ix], gs[ix]), ix
        t = f.get_tensor("bf")
    with pytest.raises(weightlift.SafetensorError, match="File is closed"):
        f.get_tensor("a")
    assert t.float().sum().isfinite()


def test_safe_open_threads(ckpt):
    p, d = ckpt
    errors = []
    with weightlift.safe_open(p, "pt") as f:
        def work():
            try:
                for _ in range(20):
                    for k in d:
                        assert _same(f.get_tensor(k), d[k])
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        ths = [threading.Thread(target=work) for _ in range(4)]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
    assert not errors


def test_stream(ckpt):
    p, d = ckpt
    got = dict(weightlift.stream(p))
    assert set(got) == set(d)
    for k in d:
        assert _same(got[k], d[k])


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        weightlift.load_file(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}")
    with pytest.raises(weightlift.SafetensorError):
        weightlift.load_file(bad)
    with pytest.raises(ValueError):
        weightlift.load_file(bad, device="cuda:0")
    with pytest.raises(RuntimeError):
        x = torch.zeros(4)
        wt.save({"a": x, "b": x})
    with pytest.raises(ValueError):
        wt.save({"a": torch.zeros(4, 4).t()})


def test_tied_model_roundtrip(tmp_path):
    m = torch.nn.Sequential(torch.nn.Embedding(4, 3), torch.nn.Linear(3, 4, bias=False))
    m[1].weight = m[0].weight
    p = tmp_path / "model.safetensors"
    wt.save_model(m, p)
    m2 = torch.nn.Sequential(torch.nn.Embedding(4, 3), torch.nn.Linear(3, 4, bias=False))
    m2[1].weight = m2[0].weight
    missing, unexpected = wt.load_model(m2, p)
    assert not missing and not unexpected
    assert torch.equal(m2[0].weight, m[0].weight)


def test_cancel_and_interrupt(ckpt):
    import _thread

    p, _ = ckpt
    ev = threading.Event()
    ev.set()
    with pytest.raises(weightlift.SafetensorError, match="cancel"):
        weightlift._native.Checkpoint(str(p)).load(cancel=ev)
    # Ctrl-C: the progress callback runs the signal handlers; the load stops and the
    # KeyboardInterrupt surfaces (here the flag is set before the load starts).
    # interrupt_main() does nothing where SIGINT was inherited ignored (a background job of
    # a non-interactive shell, as CI may run us), so install Python's handler for the test.
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            _thread.interrupt_main()
            weightlift._native.Checkpoint(str(p)).load()
    finally:
        signal.signal(signal.SIGINT, old)


def test_close_while_threads_load(ckpt):
    p, d = ckpt
    f = weightlift.safe_open(p, "pt")
    got, errors = [], []

    def work():
        try:
            while True:
                got.append(f.get_tensor("a"))
        except weightlift.SafetensorError as e:
            if "File is closed" not in str(e):
                errors.append(e)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ths = [threading.Thread(target=work) for _ in range(4)]
    for th in ths:
        th.start()
    while len(got) < 50:
        pass
    f.close()
    for th in ths:
        th.join()
    assert not errors
    assert all(_same(t, d["a"]) for t in got[:50])


def test_float4_packed(tmp_path):
    f4 = getattr(torch, "float4_e2m1fn_x2", None)
    if f4 is None:
        pytest.skip("torch without float4_e2m1fn_x2")
    x = torch.arange(8, dtype=torch.uint8).reshape(2, 4).view(f4)
    p = tmp_path / "f4.safetensors"
    assert wt.save({"f4": x}) == st.save({"f4": x})
    wt.save_file({"f4": x}, p)
    y = weightlift.load_file(p)["f4"]
    assert y.dtype == f4 and y.shape == (2, 4)
    assert torch.equal(y.view(torch.uint8), x.view(torch.uint8))


def test_stream_early_close(ckpt):
    p, _ = ckpt
    g = weightlift.stream(p, framework="np")
    name, arr = next(g)
    g.close()
    assert arr.shape is not None


def test_numpy_bf16_without_ml_dtypes(ckpt, monkeypatch):
    import sys

    p, _ = ckpt
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)
    with pytest.raises(ImportError, match="ml_dtypes"):
        wnp.load_file(p)


@pytest.mark.parametrize("device", ["cuda", "cuda:1", 0])
def test_gpu_device_is_a_clear_error(ckpt, device):
    p, _ = ckpt
    with pytest.raises(RuntimeError, match="GPU"):
        weightlift.load_file(p, device=device)


def test_bad_device_and_backend(ckpt):
    p, _ = ckpt
    with pytest.raises(ValueError):
        weightlift.load_file(p, device="tpu")
    with pytest.raises(ValueError):
        weightlift.load_file(p, backend="nope")


def _header_enum(prefix):
    """{NAME: value} of the enum constants WLIFT_<prefix>_* in include/weightlift.h (explicit
    values and implicit increments)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "include", "weightlift.h")) as f:
        src = f.read()
    body = re.search(r"enum wlift_%s \{(.*?)\};" % prefix.lower(), src, re.S).group(1)
    out, nxt = {}, 0
    for m in re.finditer(r"^\s*WLIFT_%s_(\w+)(?:\s*=\s*(-?\d+))?\s*," % prefix, body, re.M):
        nxt = int(m.group(2)) if m.group(2) is not None else nxt
        out[f"{prefix}_{m.group(1)}"] = nxt
        nxt += 1
    return out


@pytest.mark.parametrize("prefix", ["MMAP", "STRATEGY", "DIRECT"])
def test_enum_constants_come_from_the_header(prefix):
    from weightlift import _core, _native

    want = _header_enum(prefix)
    assert len(want) == 3
    for name, value in want.items():
        assert getattr(_native, name) == value, name
    if prefix == "MMAP":
        assert (_core.MMAP_OFF, _core.MMAP_ON, _core.MMAP_AUTO) == (
            _native.MMAP_OFF, _native.MMAP_ON, _native.MMAP_AUTO)


def test_load_and_budget_groups_share_names_and_dtype(ckpt):
    """ck.load and ck.budget_groups read names= and dtype= alike (one parser in _native.c)."""
    from weightlift import _core

    p, _ = ckpt
    ck = _core.open_checkpoint(p)
    try:
        calls = (lambda **kw: ck.load(**kw), lambda **kw: ck.budget_groups(1 << 20, **kw))
        for call in calls:
            with pytest.raises(TypeError, match="names must be a sequence of str"):
                call(names=5)
            with pytest.raises(TypeError):
                call(names=["a", 7])
            with pytest.raises(ValueError, match="unknown dtype F99"):
                call(names=["a"], dtype="F99")
        assert ck.budget_groups(1 << 20, names=["bf", "a"], dtype="F32") == [["bf", "a"]]
        r = ck.load(names=["bf", "a"], dtype="F32")
        assert sorted(t.name for t in r.tensors()) == ["a", "bf"]
        assert {t.dtype for t in r.tensors()} == {"F32"}
    finally:
        ck.close()
