# SPDX-License-Identifier: Apache-2.0
"""tools/refsuite.sh's runner (tests/refsuite/run.py) on a small stand-in checkout, so that it
is tested without network: through the shim, `safetensors` and `safetensors.torch` are
weightlift's; passes, failures, skips and xfails are counted; a test that kills its process
costs only itself (its file is rerun one test per process); the checkout is left unchanged."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SUITE = '''
import os
import unittest
import pytest
import safetensors
import safetensors.numpy


def test_shim_is_weightlift():
    import weightlift
    assert safetensors.safe_open is weightlift.safe_open
    assert safetensors.numpy is __import__("weightlift.numpy").numpy
    assert safetensors.TensorSpec is weightlift.TensorSpec


def test_fails():
    assert False, "on purpose"


@pytest.mark.skip(reason="on purpose")
def test_skipped():
    pass


class Case(unittest.TestCase):
    @unittest.expectedFailure
    def test_xfail(self):
        raise RuntimeError("expected")

    def test_writes_data(self):
        with open("./tests/data/x.bin", "wb") as f:
            f.write(b"x")
'''

CRASH = '''
import os


def test_ok():
    pass


def test_abort():
    os.abort()
'''


def test_runner_counts_and_survives_a_crash(tmp_path):
    tests = tmp_path / "co" / "bindings" / "python" / "tests"
    (tests / "data").mkdir(parents=True)
    (tests / "data" / "__init__.py").write_text("")
    (tests / "test_a.py").write_text(SUITE)
    (tests / "test_crash.py").write_text(CRASH)
    before = sorted(p.name for p in tests.rglob("*"))
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "refsuite", "run.py"),
                        str(tmp_path / "co"), "--min-rate", "60", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    got = json.loads(out.read_text())
    states = {k: v[0] for k, v in got["tests"].items()}
    assert states == {
        "test_a.py::test_shim_is_weightlift": "passed", "test_a.py::test_fails": "failed",
        "test_a.py::test_skipped": "skipped", "test_a.py::Case::test_xfail": "xfailed",
        "test_a.py::Case::test_writes_data": "passed", "test_crash.py::test_ok": "passed",
        "test_crash.py::test_abort": "failed"}, states
    assert "crashed" in got["tests"]["test_crash.py::test_abort"][1]
    assert got["rate"] == pytest.approx(100 * 4 / 6)
    assert "pass rate 66.7%" in r.stdout
    assert sorted(p.name for p in tests.rglob("*")) == before
