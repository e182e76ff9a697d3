# SPDX-License-Identifier: Apache-2.0
"""get_slice(name)[index] of a paddle handle, for each index form given (argv[3], a JSON list of
Python expressions) on tensors "x" (4x6 float32), "h" (4x6 bfloat16) and "v" (5 int64) of
argv[2], through argv[1] ("ref": the reference safetensors, "wl": weightlift). One JSON line
per form as soon as it is done: [tensor, form, ["OK", shape, values] or ["EXC", type, text]]
(run by test_compat_paddle.py, which reruns what is left when the reference's process aborts:
paddle 3.3.1 aborts it when its slices are freed, docs/compat.md). Exit 77: paddle does not
import here."""
import json
import sys

try:
    import paddle
except Exception as e:  # noqa: BLE001 - any import failure means: not usable here
    print(f"skip: paddle does not import: {e}")
    sys.exit(77)

if sys.argv[1] == "ref":
    from safetensors import safe_open
else:
    from weightlift import safe_open

with safe_open(sys.argv[2], framework="paddle") as f:
    for tensor, src in json.loads(sys.argv[3]):
        try:
            r = f.get_slice(tensor)[eval(src)]  # noqa: S307 - the test's own forms
            vals = (r.astype(paddle.float32) if r.dtype == paddle.bfloat16 else r).numpy()
            out = ["OK", list(r.shape), str(r.dtype), vals.ravel().tolist()]
        except BaseException as e:  # noqa: BLE001 - what the reference raises is the contract
            out = ["EXC", type(e).__name__, str(e).split("\n")[0][:160]]
        print(json.dumps([tensor, src, out]), flush=True)
