# SPDX-License-Identifier: Apache-2.0
"""weightlift.tensorflow, .paddle, .mlx and .flax against the reference's modules, each in a
process of its own (tests/python/fw_roundtrip.py: tensorflow and paddle crash when imported
into one process). A framework that does not import here is skipped with the reason.

Cost: tensorflow-cpu, paddlepaddle and mlx[cpu] are in tests/requirements.txt: about 2.3 GB
more in .venv and 1 min 50 s more to install on a fresh machine (measured here); this file
runs in about 65 s here (tensorflow 33 s, paddle 14 s, flax 13 s, mlx 5 s: mostly imports)."""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize("fw", ["tensorflow", "paddle", "mlx", "flax"])
def test_framework_module_like_reference(fw):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    r = subprocess.run([sys.executable, os.path.join(HERE, "fw_roundtrip.py"), fw],
                       capture_output=True, text=True, timeout=600, env=env)
    if r.returncode == 77:
        pytest.skip(r.stdout.strip() or f"{fw} is not usable here")
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout[-3000:] + r.stderr[-3000:]
