# SPDX-License-Identifier: Apache-2.0
"""weightlift.safe_open against safetensors.safe_open (0.8.0): keys() sorted, offset_keys()
in file order, metadata() None/{}/values, get_tensor for numpy and torch, get_slice shape and
dtype, "File is closed" after __exit__, and missing tensors."""
import numpy as np
import pytest

wl = pytest.importorskip("weightlift")
ref = pytest.importorskip("safetensors")
refnp = pytest.importorskip("safetensors.numpy")


@pytest.fixture
def ckpt(tmp_path):
    rng = np.random.default_rng(0)
    t = {"zeta": rng.standard_normal((3, 4)).astype(np.float32),
         "alpha": np.arange(10, dtype=np.int64),
         "mid.layer.0": rng.integers(0, 255, (2, 2, 2), dtype=np.uint8),
         "b": np.array(3.5, dtype=np.float16)}
    p = tmp_path / "c.safetensors"
    refnp.save_file(t, p, metadata={"format": "np", "x": "y"})
    return p, t


def test_keys_offset_keys_metadata(ckpt):
    p, _ = ckpt
    with ref.safe_open(p, "np") as r, wl.safe_open(p, "np") as w:
        assert w.keys() == r.keys()
        assert w.keys() == sorted(w.keys())
        assert w.offset_keys() == r.offset_keys()
        assert w.metadata() == r.metadata()


def test_positional_and_keyword_args(ckpt):
    p, t = ckpt
    with wl.safe_open(p, framework="np", device="cpu") as f:
        assert np.array_equal(f.get_tensor("zeta"), t["zeta"])
    with wl.safe_open(str(p), "numpy") as f:
        assert f.keys() == sorted(t)


@pytest.mark.parametrize("metadata", [None, {}, {"a": "b"}])
def test_metadata_variants(tmp_path, metadata):
    p = tmp_path / "m.safetensors"
    refnp.save_file({"a": np.zeros(1, np.int8)}, p, metadata=metadata)
    with ref.safe_open(p, "np") as r, wl.safe_open(p, "np") as w:
        assert w.metadata() == r.metadata()
    if metadata is None:
        with wl.safe_open(p, "np") as w:
            assert w.metadata() is None


def test_get_tensor_numpy(ckpt):
    p, t = ckpt
    with wl.safe_open(p, "np") as f:
        for k, v in t.items():
            got = f.get_tensor(k)
            assert isinstance(got, np.ndarray)
            assert got.dtype == v.dtype and got.shape == v.shape
            assert np.array_equal(got, v)


def test_get_tensor_torch(ckpt):
    torch = pytest.importorskip("torch")
    p, t = ckpt
    with ref.safe_open(p, "pt") as r, wl.safe_open(p, "pt") as w:
        for k in t:
            a, b = w.get_tensor(k), r.get_tensor(k)
            assert isinstance(a, torch.Tensor)
            assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def test_get_slice_shape_dtype(ckpt):
    p, t = ckpt
    with ref.safe_open(p, "np") as r, wl.safe_open(p, "np") as w:
        for k in t:
            assert w.get_slice(k).get_shape() == r.get_slice(k).get_shape()
            assert w.get_slice(k).get_dtype() == r.get_slice(k).get_dtype()


def test_missing_tensor(ckpt):
    p, _ = ckpt
    with ref.safe_open(p, "np") as r:
        with pytest.raises(ref.SafetensorError) as want:
            r.get_tensor("nope")
    with wl.safe_open(p, "np") as w:
        with pytest.raises(wl.SafetensorError) as got:
            w.get_tensor("nope")
        with pytest.raises(wl.SafetensorError):
            w.get_slice("nope")
    assert str(got.value) == str(want.value)


def test_file_closed_after_exit(ckpt):
    p, t = ckpt
    with wl.safe_open(p, "np") as f:
        x = f.get_tensor("zeta")
    for call in [lambda: f.get_tensor("zeta"), f.keys, f.metadata, lambda: f.get_slice("zeta")]:
        with pytest.raises(wl.SafetensorError, match="File is closed"):
            call()
    assert np.array_equal(x, t["zeta"])


def test_safetensor_error_is_value_error():
    assert issubclass(wl.SafetensorError, ValueError)
    assert issubclass(ref.SafetensorError, Exception)


def test_bad_framework(ckpt):
    p, _ = ckpt
    with pytest.raises(Exception) as want:
        ref.safe_open(p, framework="nonsense")
    with pytest.raises((type(want.value), ValueError)):
        wl.safe_open(p, framework="nonsense")


def test_bad_device(ckpt):
    p, _ = ckpt
    with pytest.raises(Exception):
        ref.safe_open(p, "np", device="nowhere")
    with pytest.raises(Exception):
        wl.safe_open(p, "np", device="nowhere")


@pytest.mark.parametrize("backend", [None, "mmap", "pread"])
def test_backends(ckpt, backend):
    p, t = ckpt
    kw = {} if backend is None else {"backend": backend}
    with wl.safe_open(p, "np", **kw) as f:
        for k, v in t.items():
            assert np.array_equal(f.get_tensor(k), v)


def test_safe_open_sharded_directory(tmp_path):
    import json
    rng = np.random.default_rng(1)
    t = {f"w{i}": rng.standard_normal((3, i + 1)).astype(np.float32) for i in range(6)}
    d = tmp_path / "shards"
    d.mkdir()
    wm = {}
    for j in range(2):
        fn = f"model-{j + 1:05d}-of-00002.safetensors"
        part = {k: v for i, (k, v) in enumerate(sorted(t.items())) if i % 2 == j}
        refnp.save_file(part, d / fn)
        wm.update({k: fn for k in part})
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    for path in [d, d / "model.safetensors.index.json"]:
        with wl.safe_open(path, "np") as f:
            assert f.keys() == sorted(t)
            for k, v in t.items():
                assert np.array_equal(f.get_tensor(k), v)
                assert np.array_equal(f.get_slice(k)[1:], v[1:])


def test_slice_readable_after_close(ckpt):
    # The reference's slice objects keep the file mapped: still readable after the handle's
    # with-block; the handle's own methods raise.
    p, t = ckpt
    with wl.safe_open(p, "np") as f:
        s = f.get_slice("zeta")
        s2 = f.get_slice("zeta")
    assert np.array_equal(s[:], t["zeta"])
    del s
    assert np.array_equal(s2[...], t["zeta"])
    with pytest.raises(wl.SafetensorError, match="File is closed"):
        f.get_tensor("zeta")


def test_close_without_slices_closes_files(ckpt):
    p, _ = ckpt
    f = wl.safe_open(p, "np")
    ck = f._ck
    s = f.get_slice("zeta")
    del s
    f.close()
    assert ck.closed
