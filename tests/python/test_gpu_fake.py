# SPDX-License-Identifier: Apache-2.0
"""Device loads from Python against the fake CUDA driver (fake/; docs/gpu.md), in a
subprocess (the driver library is read when the library's default context is made): the
native tensors are CUDA DLPack tensors on the asked device, and a bad index is a
RuntimeError naming the device. torch cannot use a fake driver, so torch/JAX interop is
checked on a real GPU only (bench/gpu.sh)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE = os.path.join(ROOT, os.environ.get("WEIGHTLIFT_BUILD", "build"), "fake",
                    "libwlift_fakecuda.so")

SCRIPT = r"""
import sys, numpy as np
import weightlift
from weightlift import _core
from safetensors.numpy import save_file
p = sys.argv[1]
save_file({"a": np.arange(1000, dtype=np.float32), "b": np.ones((7, 3), np.int8),
           "c": np.zeros(0, np.float16)}, p)
ck = _core.open_checkpoint(p)
res = ck.load(device="cuda:1")
n = 0
for t in res.tensors():
    assert t.__dlpack_device__() == (2, 1), t.__dlpack_device__()
    assert t.device == 1
    n += 1
assert n == 3, n
try:
    ck.load(device="cuda:5")
except RuntimeError as e:
    assert 'device "cuda:5": no such device' in str(e), str(e)
else:
    raise AssertionError("cuda:5 loaded")
print("ok")
"""


@pytest.mark.skipif(not os.path.exists(FAKE), reason="fake CUDA driver not built")
def test_device_tensors_on_the_fake(tmp_path):
    env = dict(os.environ, WEIGHTLIFT_CUDA_LIBRARY=FAKE)
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "m.safetensors")],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
