# SPDX-License-Identifier: Apache-2.0
"""weightlift.numpy against safetensors.numpy (0.8.0): round trip of every numpy-representable
dtype, files written by either read by the other, save/save_file byte-identical to the
reference, metadata handling, and the index.json / directory forms of a checkpoint path."""
import json
import os

import numpy as np
import pytest

wl = pytest.importorskip("weightlift")
wlnp = pytest.importorskip("weightlift.numpy")
refnp = pytest.importorskip("safetensors.numpy")
ref = pytest.importorskip("safetensors")

NP_DTYPES = [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32,
             np.int64, np.uint64, np.float16, np.float32, np.float64, np.complex64]


def rand(dtype, shape, rng):
    return np.asarray(_rand(dtype, shape, rng))


def _rand(dtype, shape, rng):
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    if dtype.kind == "c":
        return np.asarray(rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    return np.asarray(rng.standard_normal(shape)).astype(dtype)


def sample(rng, dtypes=NP_DTYPES):
    shapes = [(), (0,), (1,), (7,), (3, 5), (2, 3, 4), (4, 0, 2)]
    out = {}
    for i, dt in enumerate(dtypes):
        out[f"t{i}_{np.dtype(dt).name}"] = rand(dt, shapes[i % len(shapes)], rng)
    return out


def assert_same(a, b):
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), k


@pytest.mark.parametrize("dtype", NP_DTYPES, ids=lambda d: np.dtype(d).name)
def test_roundtrip_each_dtype(tmp_path, dtype):
    rng = np.random.default_rng(1)
    t = {"x": rand(dtype, (3, 4), rng), "scalar": rand(dtype, (), rng), "empty": rand(dtype, (0, 3), rng)}
    p = tmp_path / "a.safetensors"
    wlnp.save_file(t, p)
    assert_same(wlnp.load_file(p), t)
    assert_same(wlnp.load(wlnp.save(t)), t)


def test_ml_dtypes_roundtrip(tmp_path):
    ml = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(2)
    t = {}
    for name in ["bfloat16", "float8_e4m3fn", "float8_e5m2"]:
        dt = getattr(ml, name, None)
        if dt is not None:
            t[name] = rng.standard_normal((5, 3)).astype(dt)
    p = tmp_path / "ml.safetensors"
    refnp.save_file(t, p)
    got = wlnp.load_file(p)
    for k in t:
        assert got[k].shape == t[k].shape
        assert got[k].tobytes() == t[k].tobytes()


def test_reference_file_read_by_us(tmp_path):
    t = sample(np.random.default_rng(3))
    p = tmp_path / "ref.safetensors"
    refnp.save_file(t, p, metadata={"format": "np"})
    assert_same(wlnp.load_file(p), t)
    assert_same(wlnp.load(p.read_bytes()), t)


def test_our_file_read_by_reference(tmp_path):
    t = sample(np.random.default_rng(4))
    p = tmp_path / "wl.safetensors"
    wlnp.save_file(t, p, metadata={"k": "v"})
    assert_same(refnp.load_file(p), t)
    with ref.safe_open(p, "np") as f:
        assert f.metadata() == {"k": "v"}


@pytest.mark.parametrize("metadata", [None, {}, {"format": "pt"}, {"ü": "ä"}])
def test_save_bytes_identical_to_reference(tmp_path, metadata):
    t = sample(np.random.default_rng(5))
    assert wlnp.save(t, metadata=metadata) == refnp.save(t, metadata=metadata)
    a, b = tmp_path / "a", tmp_path / "b"
    wlnp.save_file(t, a, metadata=metadata)
    refnp.save_file(t, b, metadata=metadata)
    assert a.read_bytes() == b.read_bytes()


def _split(blob):
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def test_save_many_metadata_keys_same_content():
    """The reference writes a multi-key __metadata__ in HashMap order (differs per process), so
    only the parsed header and the data can be compared."""
    t = sample(np.random.default_rng(5))
    md = {"a": "1", "b": "x y", "\u00fc": "\u00e4", "zz": "q"}
    (hw, dw), (hr, dr) = _split(wlnp.save(t, metadata=md)), _split(refnp.save(t, metadata=md))
    assert hw == hr
    assert dw == dr


def test_save_empty_dict_identical():
    assert wlnp.save({}) == refnp.save({})


def test_save_non_contiguous_saves_logical_values():
    """Deliberate deviation: the reference 0.8.0 writes the first nbytes of the underlying buffer
    of a non-contiguous array (the wrong values); we must save the array's logical contents."""
    x = np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2]
    assert wlnp.save({"x": x}) == refnp.save({"x": np.ascontiguousarray(x)})
    assert np.array_equal(wlnp.load(wlnp.save({"x": x}))["x"], x)


def test_big_endian_input_saved_little_endian():
    x = np.arange(10, dtype=">i4")
    assert wlnp.save({"x": x}) == refnp.save({"x": x})


@pytest.mark.parametrize("metadata", [None, {}, {"format": "np", "n": "3"}])
def test_metadata(tmp_path, metadata):
    p = tmp_path / "m.safetensors"
    refnp.save_file({"a": np.zeros(2, np.float32)}, p, metadata=metadata)
    with ref.safe_open(p, "np") as r, wl.safe_open(p, "np") as w:
        assert w.metadata() == r.metadata()


def test_bad_metadata_type_like_reference():
    t = {"a": np.zeros(2, np.float32)}
    with pytest.raises(Exception) as want:
        refnp.save(t, metadata={"a": 1})
    with pytest.raises(type(want.value)):
        wlnp.save(t, metadata={"a": 1})


def _sharded(tmp_path, rng):
    t = sample(rng)
    names = sorted(t)
    half = len(names) // 2
    d = tmp_path / "ckpt"
    d.mkdir()
    refnp.save_file({k: t[k] for k in names[:half]}, d / "model-00001-of-00002.safetensors")
    refnp.save_file({k: t[k] for k in names[half:]}, d / "model-00002-of-00002.safetensors")
    wm = {k: ("model-00001-of-00002.safetensors" if i < half else "model-00002-of-00002.safetensors")
          for i, k in enumerate(names)}
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    return t, d


def test_index_json_path(tmp_path):
    t, d = _sharded(tmp_path, np.random.default_rng(6))
    assert_same(wlnp.load_file(d / "model.safetensors.index.json"), t)


def test_directory_path(tmp_path):
    t, d = _sharded(tmp_path, np.random.default_rng(7))
    assert_same(wlnp.load_file(d), t)
    assert_same(wlnp.load_file(str(d)), t)


def test_pathlike_and_str(tmp_path):
    t = {"a": np.arange(5, dtype=np.int16)}
    p = tmp_path / "s.safetensors"
    wlnp.save_file(t, str(p))
    assert_same(wlnp.load_file(p), t)
    assert_same(wlnp.load_file(os.fspath(p)), t)


def test_load_file_key_order_matches_reference(tmp_path):
    t = {"z": np.zeros(1, np.float32), "a": np.zeros(100, np.float32), "m": np.zeros(3, np.int8)}
    p = tmp_path / "o.safetensors"
    refnp.save_file(t, p)
    assert list(wlnp.load_file(p)) == list(refnp.load_file(p))
