# SPDX-License-Identifier: Apache-2.0
"""gs:// URIs through the Python API: load_file (numpy, torch), safe_open (get_tensor and
get_slice fetching only their ranges), stream, a prefix holding a sharded checkpoint, a name
with a space and Unicode, errors (FileNotFoundError, PermissionError), a service account's
token refreshed before it expires. (The CLI and C API cases are tests/gcs/test_gcs.sh, ctest.)

The servers are tests/gcs/gcsfake.py: the real gcp-storage-emulator on 127.0.0.1 and a front
of ours (tokens, preconditions, page tokens, counters). The library reads its GCS settings
(STORAGE_EMULATOR_HOST, GOOGLE_APPLICATION_CREDENTIALS, ...) when its context is created, at
import, so every load here runs in a fresh process with its own environment."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("weightlift")
pytest.importorskip("gcp_storage_emulator")
refnp = pytest.importorskip("safetensors.numpy")

HERE = Path(__file__).resolve().parent
SRC = HERE.parent.parent
B = "gs://wl-test"


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    base = tmp_path_factory.mktemp("gcs")
    root = base / "data"
    (root / "sharded").mkdir(parents=True)
    (root / "odd dir").mkdir()
    rng = np.random.default_rng(11)
    tensors = {
        "a": rng.standard_normal((300, 257)).astype(np.float32),
        "b": rng.integers(0, 100, (1000,), dtype=np.int64),
        "c": rng.standard_normal((5, 3, 1111)).astype(np.float16),
        "big": rng.standard_normal((512, 1024)).astype(np.float32),
    }
    refnp.save_file(tensors, str(root / "m.safetensors"), metadata={"k": "v"})
    shutil.copy(root / "m.safetensors", root / "odd dir" / "ü b.safetensors")
    refnp.save_file({"a": tensors["a"], "b": tensors["b"]},
                    str(root / "sharded" / "model-00001-of-00002.safetensors"))
    refnp.save_file({"c": tensors["c"]}, str(root / "sharded" / "model-00002-of-00002.safetensors"))
    (root / "sharded" / "model.safetensors.index.json").write_text(json.dumps({
        "metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                       "b": "model-00001-of-00002.safetensors",
                                       "c": "model-00002-of-00002.safetensors"}}))
    ports = base / "ports"
    proc = subprocess.Popen([sys.executable, str(SRC / "tests" / "gcs" / "gcsfake.py"), "--dir",
                             str(root), "--portfile", str(ports)],
                            stdout=subprocess.DEVNULL, stderr=open(base / "fake.log", "w"))
    try:
        for _ in range(600):
            if ports.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        if not ports.exists():
            pytest.fail("gcsfake did not start: " + (base / "fake.log").read_text()[-500:])
        emu, front = (int(x) for x in ports.read_text().split())
        yield {"emu": emu, "front": front, "root": root, "tensors": tensors, "base": base}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ctl(g, **kw):
    req = urllib.request.Request("http://127.0.0.1:%d/_ctl" % g["front"], json.dumps(kw).encode(),
                                 method="POST")
    urllib.request.urlopen(req, timeout=10).read()


def stats(g):
    return json.load(urllib.request.urlopen("http://127.0.0.1:%d/_stats" % g["front"], timeout=10))


CLEAN = ("WEIGHTLIFT_GCS_TOKEN", "GOOGLE_OAUTH_ACCESS_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS",
         "GCE_METADATA_HOST", "GCE_METADATA_IP", "WEIGHTLIFT_GCS_ANONYMOUS", "CLOUDSDK_CONFIG",
         "WEIGHTLIFT_CACHE_DIR")


def run(g, code, port="emu", **env):
    """Run code in a fresh Python with the GCS environment; its last stdout line is JSON."""
    e = {k: v for k, v in os.environ.items() if k not in CLEAN}
    e.update(STORAGE_EMULATOR_HOST="127.0.0.1:%d" % g[port], HOME=str(g["base"]),
             WEIGHTLIFT_HTTP_STALL_TIMEOUT="10", WEIGHTLIFT_HTTP_CONNECT_TIMEOUT="5")
    e.update(env)
    prelude = ("import hashlib, json, sys\nimport numpy as np\n"
               "def digest(d):\n"
               "    return {k: [str(v.dtype), list(v.shape), hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()]"
               " for k, v in d.items()}\n")
    r = subprocess.run([sys.executable, "-c", prelude + code], env=e, capture_output=True,
                       text=True, timeout=120)
    return r.returncode, (r.stdout.strip().splitlines() or [""])[-1], r.stderr


def digest(d):
    return {k: [str(v.dtype), list(v.shape), hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()]
            for k, v in d.items()}


def test_load_file_numpy(gcs):
    rc, out, err = run(gcs, "import weightlift.numpy as w\n"
                            "print(json.dumps(digest(w.load_file('%s/m.safetensors'))))" % B)
    assert rc == 0, err
    assert json.loads(out) == digest(gcs["tensors"])


def test_load_file_torch_odd_name(gcs):
    pytest.importorskip("torch")
    rc, out, err = run(gcs, "import weightlift.torch as w\n"
                            "d = w.load_file('%s/odd dir/ü b.safetensors', device='cpu')\n"
                            "print(json.dumps(digest({k: v.numpy() for k, v in d.items()})))" % B)
    assert rc == 0, err
    assert json.loads(out) == digest(gcs["tensors"])


def test_prefix_sharded(gcs):
    want = digest({k: v for k, v in gcs["tensors"].items() if k != "big"})
    for uri in (B + "/sharded/", B + "/sharded", B + "/sharded/model.safetensors.index.json"):
        rc, out, err = run(gcs, "import weightlift.numpy as w\n"
                                "print(json.dumps(digest(w.load_file(%r))))" % uri)
        assert rc == 0, (uri, err)
        assert json.loads(out) == want, uri


def test_safe_open_fetches_only_its_ranges(gcs):
    ctl(gcs, reset_stats=True)
    rc, out, err = run(gcs, "import weightlift as wl\n"
                            "with wl.safe_open('%s/m.safetensors', framework='np') as f:\n"
                            "    assert f.metadata() == {'k': 'v'}\n"
                            "    r = {'keys': sorted(f.keys()), 'b': digest({'b': f.get_tensor('b')}),\n"
                            "         's': digest({'s': f.get_slice('big')[10:12]})}\n"
                            "print(json.dumps(r))" % B, port="front")
    assert rc == 0, err
    r = json.loads(out)
    t = gcs["tensors"]
    assert r["keys"] == ["a", "b", "big", "c"]
    assert r["b"] == digest({"b": t["b"]})
    assert r["s"] == digest({"s": t["big"][10:12]})
    # The header's 64 KiB, b's 8000 bytes and two rows of big (8 KiB): not the 2 MiB object.
    sent = stats(gcs)["media_bytes"]
    assert sent < 200_000, sent


def test_stream(gcs):
    rc, out, err = run(gcs, "import weightlift as wl\n"
                            "names = [n for n, _ in wl.stream('%s/sharded/', framework='np')]\n"
                            "print(json.dumps(sorted(names)))" % B)
    assert rc == 0, err
    assert json.loads(out) == ["a", "b", "c"]


def test_errors(gcs):
    rc, out, err = run(gcs, "import weightlift.numpy as w\n"
                            "try:\n    w.load_file('%s/missing.safetensors')\n"
                            "except FileNotFoundError as e:\n    print(json.dumps(str(e)))" % B)
    assert rc == 0 and "HTTP 404" in json.loads(out), (out, err)
    ctl(gcs, require_auth=True)
    try:
        rc, out, err = run(gcs, "import weightlift.numpy as w\n"
                                "try:\n    w.load_file('%s/m.safetensors')\n"
                                "except PermissionError as e:\n    print(json.dumps(str(e)))" % B,
                           port="front", WEIGHTLIFT_GCS_TOKEN="nope")
        assert rc == 0, err
        assert "HTTP 401" in json.loads(out) and "WEIGHTLIFT_GCS_TOKEN" in json.loads(out), out
    finally:
        ctl(gcs, require_auth=False)


def test_token_refreshed_before_expiry(gcs):
    if not shutil.which("openssl"):
        pytest.skip("openssl not found")
    base = gcs["base"]
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", str(base / "sa.pem")], check=True, capture_output=True, timeout=60)
    subprocess.run(["openssl", "pkey", "-in", str(base / "sa.pem"), "-pubout", "-out",
                    str(base / "sa.pub")], check=True, capture_output=True, timeout=60)
    (base / "sa.json").write_text(json.dumps({
        "type": "service_account", "private_key_id": "k2", "private_key": (base / "sa.pem").read_text(),
        "client_email": "loader@test-project.iam.gserviceaccount.com",
        "token_uri": "http://127.0.0.1:%d/token" % gcs["front"]}))
    # Tokens that expire 302 s after issue are fetched anew 300 s before: valid for 2 s here.
    ctl(gcs, require_auth=True, pubkey=str(base / "sa.pub"), kid="k2", token_ttl=302,
        reset_stats=True)
    try:
        rc, out, err = run(gcs, "import time\nimport weightlift.numpy as w\n"
                                "a = w.load_file('%s/m.safetensors')\n"
                                "b = w.load_file('%s/sharded/')\n"
                                "time.sleep(2.5)\n"
                                "c = w.load_file('%s/m.safetensors')\n"
                                "print(json.dumps([digest(a), digest(c)]))" % (B, B, B),
                           port="front", GOOGLE_APPLICATION_CREDENTIALS=str(base / "sa.json"))
        assert rc == 0, err
        a, c = json.loads(out)
        assert a == c == digest(gcs["tensors"])
        s = stats(gcs)
        assert s["tokens"] == 2, s["tokens"]
        assert set(s["auth_seen"][-3:]) == {"Bearer ya29.test-%d" % s["tokens"]}, s["auth_seen"]
    finally:
        ctl(gcs, require_auth=False, token_ttl=3600)

