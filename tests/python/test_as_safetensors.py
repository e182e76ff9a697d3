# SPDX-License-Identifier: Apache-2.0
"""The opt-in that makes `import safetensors` resolve to weightlift (docs/as-safetensors.md):
install_as_safetensors() and the WEIGHTLIFT_AS_SAFETENSORS=1 start-up hook. Each case runs in
a fresh interpreter (the opt-in changes sys.modules and sys.meta_path for the process)."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

wl = pytest.importorskip("weightlift")
pytest.importorskip("safetensors")


def py(code, env=None, check=True):
    e = dict(os.environ)
    e.pop("WEIGHTLIFT_AS_SAFETENSORS", None)
    e.update(env or {})
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, env=e, timeout=300)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_install_maps_every_module():
    out = py("""
        import json, sys, weightlift
        weightlift.install_as_safetensors()
        weightlift.install_as_safetensors()  # idempotent
        import safetensors, safetensors.torch, safetensors.numpy
        from safetensors import safe_open
        from safetensors.torch import load_file, storage_ptr
        import weightlift.torch, weightlift.numpy
        print(json.dumps({
            "top": safetensors is weightlift,
            "torch": safetensors.torch is weightlift.torch,
            "numpy": safetensors.numpy is weightlift.numpy,
            "names": safe_open is weightlift.safe_open and load_file is weightlift.torch.load_file,
            "spec": weightlift.torch.__spec__.name,
            "missing": __import__("importlib.util").util.find_spec("safetensors.nope") is None,
        }))
    """).stdout
    d = json.loads(out.strip().splitlines()[-1])
    assert d == {"top": True, "torch": True, "numpy": True, "names": True,
                 "spec": "weightlift.torch", "missing": True}


def test_uninstall_gives_back_the_reference():
    out = py("""
        import weightlift
        weightlift.install_as_safetensors()
        import safetensors.numpy
        assert safetensors.numpy.__name__ == "weightlift.numpy"
        weightlift.uninstall_as_safetensors()
        import safetensors.numpy
        print(safetensors.numpy.__name__, safetensors.__name__)
    """).stdout
    assert out.split() == ["safetensors.numpy", "safetensors"]


def test_already_imported_warns_and_replaces():
    r = py("""
        import warnings, safetensors.numpy, weightlift
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            weightlift.install_as_safetensors()
        import safetensors.numpy as t
        print(t.__name__, len(w), w[0].category.__name__)
    """)
    assert r.stdout.split() == ["weightlift.numpy", "1", "RuntimeWarning"]


def test_default_off():
    out = py("import safetensors.numpy; print(safetensors.numpy.__name__)",
             env={"WEIGHTLIFT_AS_SAFETENSORS": "1"}).stdout
    assert out.strip() == "safetensors.numpy"  # no hook installed: the variable does nothing


def test_pth_hook(tmp_path):
    site = str(tmp_path)
    r = py(f"import weightlift.hook as h; h.main(['install', '--site-dir', {site!r}])")
    assert "installed" in r.stdout
    pth = tmp_path / "weightlift-as-safetensors.pth"
    assert pth.read_text().startswith("import os;")
    code = f"""
        import site; site.addsitedir({site!r})  # what start-up does for site-packages
        import sys
        print("weightlift" in sys.modules, __import__("safetensors.numpy").numpy.__name__)
    """
    assert py(code, env={"WEIGHTLIFT_AS_SAFETENSORS": "1"}).stdout.split() == \
        ["True", "weightlift.numpy"]
    # Without the variable the hook imports nothing.
    assert py(code).stdout.split() == ["False", "safetensors.numpy"]
    assert py(code, env={"WEIGHTLIFT_AS_SAFETENSORS": "0"}).stdout.split() == \
        ["False", "safetensors.numpy"]
    r = py(f"import weightlift.hook as h; h.main(['remove', '--site-dir', {site!r}])")
    assert "removed" in r.stdout and not pth.exists()
