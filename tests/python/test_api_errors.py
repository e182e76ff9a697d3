# SPDX-License-Identifier: Apache-2.0
"""Bad inputs: weightlift raises SafetensorError wherever the reference safetensors (0.8.0)
raises SafetensorError (truncated files, bad JSON, overlapping/out-of-range offsets, a Git LFS
pointer, wrong dtypes) and FileNotFoundError for a missing file, from load_file, load and
safe_open, for numpy and torch."""
import json
import struct

import numpy as np
import pytest

wl = pytest.importorskip("weightlift")
wlnp = pytest.importorskip("weightlift.numpy")
ref = pytest.importorskip("safetensors")
refnp = pytest.importorskip("safetensors.numpy")


def st(header, data=b"", raw_header=None):
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


GOOD = st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8)

BAD = {
    "empty": b"",
    "short_len": b"\x08\0\0",
    "truncated_header": GOOD[:20],
    "truncated_data": GOOD[:-3],
    "header_too_large": struct.pack("<Q", 1 << 40) + b"{}",
    "bad_json": st(None, b"", raw_header=b"{not json"),
    "json_not_object": st([1, 2]),
    "overlap": st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                   "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12),
    "gap": st({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8),
    "offsets_past_end": st({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8),
    "size_mismatch": st({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8),
    "bad_dtype": st({"a": {"dtype": "F31", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
    "reversed_offsets": st({"a": {"dtype": "U8", "shape": [0], "data_offsets": [8, 0]}}, b"\0" * 8),
    "metadata_not_str": st({"__metadata__": {"a": 1}}),
    "lfs_pointer": (b"version https://git-lfs.github.com/spec/v1\n"
                    b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
                    b"size 12345\n"),
}


def ref_outcome(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the reference decides
        return e
    return None


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_file_load_file(tmp_path, name):
    p = tmp_path / f"{name}.safetensors"
    p.write_bytes(BAD[name])
    want = ref_outcome(lambda: refnp.load_file(p))
    if want is None:
        wlnp.load_file(p)  # the reference accepts it: so must we
        return
    exc = wl.SafetensorError if isinstance(want, ref.SafetensorError) else type(want)
    with pytest.raises(exc):
        wlnp.load_file(p)
    with pytest.raises(exc):
        with wl.safe_open(p, "np") as f:
            for k in f.keys():
                f.get_tensor(k)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_bytes_load(name):
    want = ref_outcome(lambda: refnp.load(BAD[name]))
    if want is None:
        wlnp.load(BAD[name])
        return
    exc = wl.SafetensorError if isinstance(want, ref.SafetensorError) else type(want)
    with pytest.raises(exc):
        wlnp.load(BAD[name])


@pytest.mark.parametrize("name", ["truncated_data", "bad_json", "lfs_pointer", "overlap"])
def test_bad_file_torch(tmp_path, name):
    pytest.importorskip("torch")
    wlt = pytest.importorskip("weightlift.torch")
    p = tmp_path / f"{name}.safetensors"
    p.write_bytes(BAD[name])
    with pytest.raises(wl.SafetensorError):
        wlt.load_file(p)
    with pytest.raises(wl.SafetensorError):
        wl.load_file(p)


def test_good_file_accepted(tmp_path):
    p = tmp_path / "good.safetensors"
    p.write_bytes(GOOD)
    assert np.array_equal(wlnp.load_file(p)["a"], refnp.load_file(p)["a"])


def test_missing_file(tmp_path):
    p = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError):
        refnp.load_file(p)
    with pytest.raises(FileNotFoundError):
        wlnp.load_file(p)
    with pytest.raises(FileNotFoundError):
        wl.safe_open(p, "np")
    with pytest.raises(FileNotFoundError):
        list(wl.stream(p, framework="np") if _stream_has_framework() else wl.stream(p))


def _stream_has_framework():
    import inspect
    try:
        return "framework" in inspect.signature(wl.stream).parameters
    except (TypeError, ValueError):
        return False


def test_error_is_catchable_as_value_error(tmp_path):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(BAD["bad_json"])
    with pytest.raises(ValueError):
        wlnp.load_file(p)


def test_directory_without_safetensors(tmp_path):
    d = tmp_path / "emptydir"
    d.mkdir()
    with pytest.raises((wl.SafetensorError, FileNotFoundError)):
        wlnp.load_file(d)


def test_index_json_missing_shard(tmp_path):
    d = tmp_path / "idx"
    d.mkdir()
    refnp.save_file({"a": np.zeros(2, np.float32)}, d / "s1.safetensors")
    (d / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}}))
    with pytest.raises((wl.SafetensorError, FileNotFoundError)):
        wlnp.load_file(d / "model.safetensors.index.json")


def test_save_unsupported_dtype_like_reference():
    x = np.array(["a", "b"])
    want = ref_outcome(lambda: refnp.save({"x": x}))
    assert want is not None
    with pytest.raises(Exception):
        wlnp.save({"x": x})


@pytest.mark.parametrize("target", ["../outside.safetensors", "/etc/passwd", "a/../../secret"])
def test_index_cannot_reach_outside(tmp_path, target):
    """A weight_map value that is absolute or climbs out of the checkpoint is rejected, and no
    byte of the file it names is quoted."""
    (tmp_path / "outside.safetensors").write_bytes(GOOD)
    (tmp_path / "secret").write_text("root:*:20228:0:99999:7:::\n")
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": target}}))
    with pytest.raises(wl.SafetensorError) as e:
        wlnp.load_file(str(ck))
    assert "index" in str(e.value) and "root:" not in str(e.value)


def test_empty_directory_is_bad_input(tmp_path):
    with pytest.raises(wl.SafetensorError, match="no \\*.safetensors files"):
        wlnp.load_file(str(tmp_path))


def test_knobs_out_of_range_raise_valueerror(tmp_path):
    """Every knob is range-checked in the library; from Python that is a ValueError."""
    from weightlift import _core
    p = tmp_path / "g.safetensors"
    p.write_bytes(GOOD)
    ck = _core.open_checkpoint(str(p))
    with pytest.raises(ValueError, match="threads"):
        ck.load(threads=100000)
    with pytest.raises(ValueError, match="rows"):
        ck.load(names=["a"], rows=[(1, 3)])
    with pytest.raises(ValueError, match="rows"):
        ck.load(names=["a"], rows=[(0, 1), (0, 1)])
    ck.close()


def test_devices_and_fifos_like_the_reference(tmp_path):
    """/dev/null raises OSError (ENODEV) as the reference does; a FIFO never blocks."""
    import errno
    import os
    for p in ("/dev/null",):
        with pytest.raises(OSError) as r:
            ref.safe_open(p, framework="np")
        with pytest.raises(OSError) as e:
            wl.safe_open(p, framework="np")
        assert type(e.value) is type(r.value) and e.value.errno == errno.ENODEV
    fifo = tmp_path / "f.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="FIFO"):
        wlnp.load_file(str(fifo))
