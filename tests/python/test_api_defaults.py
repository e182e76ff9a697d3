# SPDX-License-Identifier: Apache-2.0
"""Each module's memory follows the reference module it mirrors: safetensors.numpy (and flax)
return arrays that own their memory, whatever the backend; safetensors.torch returns lazy views
of a private mapping. backend= takes the reference's values, and a bad one raises the
reference's error."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

wl = pytest.importorskip("weightlift")
wlnp = pytest.importorskip("weightlift.numpy")
ref = pytest.importorskip("safetensors")
refnp = pytest.importorskip("safetensors.numpy")


@pytest.fixture
def f(tmp_path):
    p = tmp_path / "m.safetensors"
    refnp.save_file({"a": np.arange(1 << 20, dtype=np.float32), "b": np.ones(7, np.int8)}, str(p))
    return p


@pytest.mark.parametrize("backend", [None, "mmap", "pread"])
def test_numpy_owns_its_memory(f, backend):
    """Truncating the file after load_file must not kill the process (SIGBUS with views)."""
    code = textwrap.dedent(f"""
        import os, numpy as np, weightlift.numpy as wlnp
        kw = {{}} if {backend!r} is None else {{"backend": {backend!r}}}
        d = wlnp.load_file({str(f)!r}, **kw)
        os.truncate({str(f)!r}, 0)
        assert int(d["a"][-1]) == (1 << 20) - 1 and int(d["b"].sum()) == 7
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, (r.returncode, r.stderr[-500:])


def test_numpy_mmap_views_opt_in(f):
    d = wlnp.load_file(str(f), mmap_views=True)
    assert int(d["a"][5]) == 5
    d["a"][5] = 9  # private mapping: writable, never reaches the file
    assert int(wlnp.load_file(str(f))["a"][5]) == 5


def test_safe_open_numpy_owns(f):
    code = textwrap.dedent(f"""
        import os, weightlift
        with weightlift.safe_open({str(f)!r}, framework="np") as h:
            a = h.get_tensor("a")
        os.truncate({str(f)!r}, 0)
        assert int(a[-1]) == (1 << 20) - 1
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, (r.returncode, r.stderr[-500:])


@pytest.mark.parametrize("call", ["numpy", "torch", "safe_open"])
def test_bad_backend_like_the_reference(f, call):
    def run(mod_np, mod_t, so):
        if call == "numpy":
            mod_np.load_file(str(f), backend="bogus")
        elif call == "torch":
            mod_t.load_file(str(f), backend="bogus")
        else:
            so(str(f), framework="np", backend="bogus")
    pytest.importorskip("torch")
    import safetensors.torch as reft
    import weightlift.torch as wlt
    with pytest.raises(ref.SafetensorError) as r:
        run(refnp, reft, ref.safe_open)
    with pytest.raises(wl.SafetensorError) as e:
        run(wlnp, wlt, wl.safe_open)
    assert str(e.value) == str(r.value)
