# SPDX-License-Identifier: Apache-2.0
"""The paddle handle's get_slice against the reference's: as the reference does, weightlift
indexes a paddle tensor with paddle's own indexing, so the results and the exceptions (types
and texts) are paddle's: IndexError for an index out of range, ValueError for a float, a
string, a zero step or two Ellipses, SystemError for a bound of 2**70 (paddle's own bug).
Each side runs in processes of its own (tests/python/paddle_slices.py): the reference's
process aborts when its slices are freed (paddle 3.3.1, "The deleter of the pointer is not
found"), so the forms it had not answered yet are rerun in a fresh one; docs/compat.md.
Cost: about 30 s (paddle's import, a few times)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

FORMS = ["...", "()", "slice(None)", "slice(1, 3)", "slice(None, None, 2)", "slice(3, 1)",
         "slice(None, None, -1)", "slice(-3, None)", "0", "-1", "3", "10", "-10", "2**40",
         "2**70", "slice(0, 2**70)", "(0, 0)", "(0, 10)", "(0, 0, 0)", "(slice(2, None), -1)",
         "(slice(None), slice(7, 9))", "(..., 1)", "(..., 10)", "(..., ...)", "slice(0, 2, 0)",
         "1.5", "slice(1.5, 2)", "'a'", "[0, 1]", "[]", "None", "(None, 0)",
         "(slice(1, 3), slice(None, None, 2))"]
TENSORS = [("x", f) for f in FORMS] + [("h", f) for f in FORMS[:12]] + \
    [("v", f) for f in ("...", "slice(1, 4)", "0", "-1", "7", "slice(4, 9)")]


def _run(which, path, items, timeout=300):
    """[tensor, form] -> answer, rerunning what a crashed process had not answered."""
    env = dict(os.environ, GLOG_minloglevel="3", PYTHONWARNINGS="ignore")
    got, left = {}, list(items)
    while left:
        r = subprocess.run([sys.executable, os.path.join(HERE, "paddle_slices.py"), which,
                            str(path), json.dumps(left)],
                           capture_output=True, text=True, timeout=timeout, env=env)
        if r.returncode == 77:
            pytest.skip(r.stdout.strip())
        done = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("[")]
        for tensor, src, out in done:
            got[(tensor, src)] = out
        if not done:  # a crash before the first answer: that form crashes
            got[tuple(left[0])] = ["CRASH", r.returncode, r.stderr[-300:]]
            done = [left[0]]
        left = [it for it in left if tuple(it) not in got]
        if r.returncode == 0:
            assert not left, r.stderr[-2000:]
    return got


def test_paddle_get_slice_like_reference(tmp_path):
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file

    import ml_dtypes

    p = tmp_path / "p.safetensors"
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    save_file({"x": x, "h": (x / 7).astype(ml_dtypes.bfloat16),
               "v": np.arange(5, dtype=np.int64) - 2}, str(p))
    items = [list(t) for t in TENSORS]
    ref = _run("ref", p, items)
    ours = _run("wl", p, items)
    crashed = sorted(k for k, v in ref.items() if v[0] == "CRASH")
    assert not crashed, f"the reference crashed on these forms alone: {crashed}"
    diff = {k: (ref[k], ours[k]) for k in ref if ref[k] != ours[k]}
    assert not diff, json.dumps({" ".join(k): v for k, v in diff.items()}, indent=1)[:4000]
