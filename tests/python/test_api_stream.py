# SPDX-License-Identifier: Apache-2.0
"""weightlift.stream(path, device="cpu"): yields every tensor exactly once as (name, tensor),
with the right contents, tensors stay valid after the iteration and after the generator is
dropped, works on files, index.json and directories, and stops cleanly when closed early."""
import gc
import inspect
import json

import numpy as np
import pytest

wl = pytest.importorskip("weightlift")
refnp = pytest.importorskip("safetensors.numpy")


def np_stream(p):
    if "framework" in inspect.signature(wl.stream).parameters:
        return wl.stream(p, framework="np")
    pytest.importorskip("torch")
    return ((k, v.numpy()) for k, v in wl.stream(p))


@pytest.fixture
def ckpt(tmp_path):
    rng = np.random.default_rng(0)
    t = {f"layer.{i}.w": rng.standard_normal((17, 5 + i)).astype(np.float32) for i in range(40)}
    t["scalar"] = np.array(2.0, np.float64)
    t["empty"] = np.zeros((0, 3), np.int8)
    p = tmp_path / "s.safetensors"
    refnp.save_file(t, p)
    return p, t


def check(pairs, t):
    names = [k for k, _ in pairs]
    assert len(names) == len(set(names)), "a tensor was yielded twice"
    assert set(names) == set(t)
    for k, v in pairs:
        assert np.asarray(v).shape == t[k].shape, k
        assert np.array_equal(np.asarray(v), t[k]), k


def test_stream_torch_default(ckpt):
    torch = pytest.importorskip("torch")
    p, t = ckpt
    pairs = list(wl.stream(p))
    assert all(isinstance(v, torch.Tensor) for _, v in pairs)
    check([(k, v.numpy()) for k, v in pairs], t)


def test_stream_device_cpu(ckpt):
    pytest.importorskip("torch")
    p, t = ckpt
    pairs = list(wl.stream(p, device="cpu"))
    check([(k, v.numpy()) for k, v in pairs], t)


def test_stream_numpy(ckpt):
    p, t = ckpt
    check(list(np_stream(p)), t)


def test_stream_tensors_stay_valid(ckpt):
    p, t = ckpt
    gen = np_stream(p)
    pairs = list(gen)
    del gen
    gc.collect()
    junk = [np.full(4096, 7.0) for _ in range(200)]
    del junk
    check(pairs, t)


def test_stream_early_close(ckpt):
    p, t = ckpt
    gen = np_stream(p)
    first = [next(gen) for _ in range(3)]
    gen.close()
    del gen
    gc.collect()
    for k, v in first:
        assert np.array_equal(np.asarray(v), t[k])
    # The file is still usable afterwards.
    check(list(np_stream(p)), t)


def test_stream_repeated(ckpt):
    p, t = ckpt
    for _ in range(20):
        check(list(np_stream(p)), t)


def test_stream_directory_and_index(tmp_path, ckpt):
    _, t = ckpt
    d = tmp_path / "sharded"
    d.mkdir()
    names = sorted(t)
    wm = {}
    for i in range(3):
        part = names[i::3]
        fn = f"model-{i + 1:05d}-of-00003.safetensors"
        refnp.save_file({k: t[k] for k in part}, d / fn)
        wm.update({k: fn for k in part})
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    check(list(np_stream(d)), t)
    check(list(np_stream(d / "model.safetensors.index.json")), t)


def test_stream_bad_file(tmp_path):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(b"\x10\0\0\0\0\0\0\0{not json......}")
    with pytest.raises(wl.SafetensorError):
        list(np_stream(p))
