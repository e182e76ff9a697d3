# SPDX-License-Identifier: Apache-2.0
"""GPU Direct Storage from Python against the fake CUDA driver and the fake cuFile (fake/;
docs/gpu.md), in a subprocess (the libraries are read when the default context is made):
gds="on" reads every byte through cuFile and the result's stats say "cufile"; gds="off"
never; a bad value is a ValueError; load_dict passes gds= through (what load_file uses)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("WEIGHTLIFT_BUILD", "build"), "fake")
FAKE = os.path.join(BUILD, "libwlift_fakecuda.so")
FAKE_CUFILE = os.path.join(BUILD, "libwlift_fakecufile.so")

SCRIPT = r"""
import sys, numpy as np
from weightlift import _core
from safetensors.numpy import save_file
p = sys.argv[1]
save_file({"a": np.arange(300000, dtype=np.float32), "b": np.ones((7, 3), np.int8),
           "c": np.arange(5000, dtype=np.float16)}, p)
ck = _core.open_checkpoint(p)
st = ck.load(device="cuda:0", gds="on").stats()
assert st["gds"] == "cufile" and st["gds_bytes"] >= st["bytes"], st
st = ck.load(device="cuda:0", gds="off", direct=1).stats()
assert st["gds"] == "off" and st["gds_bytes"] == 0, st
try:
    ck.load(device="cuda:0", gds="sometimes")
except ValueError as e:
    assert "gds must be" in str(e), str(e)
else:
    raise AssertionError("gds='sometimes' loaded")
d = _core.load_dict(p, lambda t: t, device="cuda:1", gds="on")
assert sorted(d) == ["a", "b", "c"] and d["a"].device == 1, d
print("ok")
"""


def _odirect(path):
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_DIRECT))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not (os.path.exists(FAKE) and os.path.exists(FAKE_CUFILE)),
                    reason="fake CUDA driver or fake cuFile not built")
def test_gds_on_the_fakes(tmp_path):
    (tmp_path / "probe").write_bytes(b"x")
    if not _odirect(str(tmp_path / "probe")):
        pytest.skip("no O_DIRECT on the temporary directory's file system")
    env = dict(os.environ, WEIGHTLIFT_CUDA_LIBRARY=FAKE, WEIGHTLIFT_CUFILE_LIBRARY=FAKE_CUFILE)
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "m.safetensors")],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
