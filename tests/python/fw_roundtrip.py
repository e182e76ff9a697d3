# SPDX-License-Identifier: Apache-2.0
"""One framework module (argv[1]: tensorflow, paddle, mlx or flax) against the reference's
module of the same name, in a process of its own (tensorflow and paddle cannot share one: the
second import crashes): every reference name exists; save() gives the reference's bytes;
load/load_file/safe_open(framework=...) give the reference's values, dtypes and shapes, also
for bfloat16; get_slice works. Prints "ok" on success; exit 77 when the framework does not
import here (run by test_compat_frameworks.py)."""
import importlib
import os
import sys
import tempfile
import types

import numpy as np

fw = sys.argv[1]
try:
    if fw == "tensorflow":
        import tensorflow as tf
    elif fw == "paddle":
        import paddle
    elif fw == "mlx":
        import mlx.core as mx
    elif fw == "flax":
        import jax.numpy as jnp
except Exception as e:  # noqa: BLE001 - any import failure means: not usable here
    print(f"skip: {fw} does not import: {e}")
    sys.exit(77)

import safetensors  # noqa: E402
import weightlift  # noqa: E402

ref = importlib.import_module("safetensors." + fw)
ours = importlib.import_module("weightlift." + fw)
names = {n for n in dir(ref) if not n.startswith("__")
         and not isinstance(getattr(ref, n), types.ModuleType)
         and getattr(getattr(ref, n), "__module__", None) not in ("typing", "collections")
         and n != "Array"}
missing = sorted(n for n in names if not hasattr(ours, n))
assert not missing, f"weightlift.{fw} lacks {missing}"

rng = np.random.default_rng(0)
base = {"f32": rng.standard_normal((4, 3)).astype(np.float32),
        "i64": np.arange(6, dtype=np.int64).reshape(2, 3),
        "u8": np.arange(5, dtype=np.uint8), "z": np.zeros((2, 0), np.float32)}
if fw == "tensorflow":
    mk = {k: tf.convert_to_tensor(v) for k, v in base.items()}
    mk["bf16"] = tf.cast(tf.convert_to_tensor(base["f32"]), tf.bfloat16)
    to_np = lambda t: np.asarray(t.numpy())  # noqa: E731
    sfw = "tf"
elif fw == "paddle":
    mk = {k: paddle.to_tensor(v) for k, v in base.items() if k != "z"}
    mk["bf16"] = paddle.to_tensor(base["f32"]).astype(paddle.bfloat16)
    to_np = lambda t: (t.astype(paddle.float32) if t.dtype == paddle.bfloat16 else t).numpy()  # noqa: E731
    sfw = "paddle"
elif fw == "mlx":
    mk = {k: mx.array(v) for k, v in base.items()}
    mk["bf16"] = mx.array(base["f32"]).astype(mx.bfloat16)
    to_np = lambda t: np.asarray(t.astype(mx.float32) if t.dtype == mx.bfloat16 else t)  # noqa: E731
    sfw = "mlx"
else:
    mk = {k: jnp.asarray(v) for k, v in base.items()}
    mk["bf16"] = jnp.asarray(base["f32"]).astype(jnp.bfloat16)
    to_np = lambda t: np.asarray(t.astype(jnp.float32) if t.dtype == jnp.bfloat16 else t)  # noqa: E731
    sfw = "flax"


def same(a, b, what):
    a, b = to_np(a), to_np(b)
    assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), (what, a, b)


try:
    blob = ref.save(dict(mk), metadata={"m": "1"})
except ValueError:
    # The reference's mlx module cannot save bfloat16 (np.asarray of an mx bfloat16 array:
    # "'bfloat16' is not a valid PEP 3118 buffer format string"); weightlift can: compare the
    # rest with the reference, bfloat16 with the values.
    assert fw == "mlx"
    rest = {k: v for k, v in mk.items() if k != "bf16"}
    assert ours.save(dict(rest)) == ref.save(dict(rest)), "save bytes differ"
    blob = ours.save(dict(mk), metadata={"m": "1"})
assert ours.save(dict(mk), metadata={"m": "1"}) == blob, "save bytes differ"
with tempfile.TemporaryDirectory() as d:
    p = os.path.join(d, "x.safetensors")
    ours.save_file(dict(mk), p, metadata={"m": "1"})
    assert open(p, "rb").read() == blob, "save_file bytes differ"
    got_load = ours.load(blob)
    got_file = ours.load_file(p)
    for k, v in mk.items():
        same(got_load[k], v, ("load", k))
        same(got_file[k], v, ("load_file", k))
    with weightlift.safe_open(p, framework=sfw) as f:
        assert f.metadata() == {"m": "1"}
        for k, v in mk.items():
            same(f.get_tensor(k), v, ("get_tensor", k))
        if fw != "paddle":  # the reference's paddle get_slice aborts with paddle 3.3
            with safetensors.safe_open(p, framework=sfw) as r:
                for idx in (slice(None), slice(1, 3), 0, (Ellipsis, 1)):
                    same(f.get_slice("f32")[idx], r.get_slice("f32")[idx], ("get_slice", idx))
        else:
            same(f.get_slice("f32")[1:3], mk["f32"][1:3], "get_slice")
print("ok")
