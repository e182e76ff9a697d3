# SPDX-License-Identifier: Apache-2.0
"""weightlift.jax / weightlift.flax and safe_open(framework="flax"|"jax") against the reference's
safetensors.flax."""
import numpy as np
import pytest

wl = pytest.importorskip("weightlift")
jnp = pytest.importorskip("jax.numpy")
refflax = pytest.importorskip("safetensors.flax")
import weightlift.jax as wjax  # noqa: E402
import weightlift.flax as wflax  # noqa: E402


def tensors():
    rng = np.random.default_rng(0)
    return {"w": jnp.asarray(rng.standard_normal((4, 5), dtype=np.float32)),
            "b": jnp.asarray(np.arange(7, dtype=np.int32)),
            "h": jnp.asarray(rng.standard_normal((3, 2)).astype(np.float16))}


def test_save_is_byte_identical_and_loads_back(tmp_path):
    t = tensors()
    assert wjax.save(t) == refflax.save(t)
    p = tmp_path / "m.safetensors"
    wflax.save_file(t, p)
    for mod in (wjax, wflax):
        got = mod.load_file(p)
        assert set(got) == set(t)
        for k, v in t.items():
            assert got[k].dtype == v.dtype and got[k].shape == v.shape
            assert np.array_equal(np.asarray(got[k]), np.asarray(v))
    back = wjax.load(refflax.save(t))
    assert all(np.array_equal(np.asarray(back[k]), np.asarray(t[k])) for k in t)


@pytest.mark.parametrize("framework", ["flax", "jax"])
def test_safe_open_jax(tmp_path, framework):
    t = tensors()
    p = tmp_path / "m.safetensors"
    refflax.save_file(t, p)
    with wl.safe_open(p, framework=framework) as f:
        assert f.keys() == sorted(t)
        for k in t:
            assert np.array_equal(np.asarray(f.get_tensor(k)), np.asarray(t[k]))
        assert np.array_equal(np.asarray(f.get_slice("w")[1:3, ::2]), np.asarray(t["w"][1:3, ::2]))
