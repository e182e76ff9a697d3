# SPDX-License-Identifier: Apache-2.0
"""Helpers of the client-library tests (test_client_*.py): run one script twice, in fresh
interpreters, once with the reference safetensors and once with `import safetensors` resolved
to weightlift (weightlift.install_as_safetensors(), before the client is imported), and
compare what each saved and loaded."""
import hashlib
import json
import os
import subprocess
import sys
import textwrap

PRELUDE = '''
import hashlib, json, os, sys
if os.environ.get("WL_SHIM") == "1":
    import weightlift
    weightlift.install_as_safetensors()

def digests(state_dict):
    """name -> sha256 of (dtype, shape, bytes) of every tensor."""
    import torch
    out = {}
    for k, v in state_dict.items():
        v = v.detach().cpu().contiguous()
        h = hashlib.sha256(f"{v.dtype}{tuple(v.shape)}".encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes())
        out[k] = h.hexdigest()
    return out

def loaded_via():
    """The module that served `safetensors` in this process."""
    return sys.modules["safetensors"].__name__ if "safetensors" in sys.modules else None

def report(**kw):
    print("RESULT " + json.dumps(kw))
'''


def run_both(script: str, workdir, timeout=600):
    """script (using digests/report from PRELUDE; $OUT is its own output directory) run with
    the reference and with weightlift; returns (reference_result, weightlift_result)."""
    res = []
    for shim in ("0", "1"):
        out = os.path.join(str(workdir), "wl" if shim == "1" else "ref")
        os.makedirs(out, exist_ok=True)
        env = dict(os.environ, WL_SHIM=shim, OUT=out, HF_HUB_OFFLINE="1",
                   TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error")
        env.pop("WEIGHTLIFT_AS_SAFETENSORS", None)
        p = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(script)],
                           capture_output=True, text=True, env=env, timeout=timeout,
                           cwd=str(workdir))
        assert p.returncode == 0, (shim, p.stderr[-4000:])
        line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1]
        r = json.loads(line[len("RESULT "):])
        r["out"] = out
        res.append(r)
    return res[0], res[1]


def files_digest(d):
    """relative path -> sha256 of every *.safetensors (and index) file under d."""
    out = {}
    for root, _, names in os.walk(d):
        for n in names:
            if n.endswith(".safetensors") or n.endswith(".safetensors.index.json"):
                p = os.path.join(root, n)
                with open(p, "rb") as f:
                    out[os.path.relpath(p, d)] = hashlib.sha256(f.read()).hexdigest()
    return out


def assert_same(ref, wl, via_key="via"):
    """The weightlift run went through weightlift, the reference run did not, and every
    digest and saved file is equal."""
    assert wl[via_key] == "weightlift", wl[via_key]
    assert ref[via_key] in ("safetensors", None), ref[via_key]
    for k in ref:
        if k == "out" or k.startswith("via"):
            continue
        assert ref[k] == wl[k], k
    saved_ref, saved_wl = files_digest(ref["out"]), files_digest(wl["out"])
    assert saved_ref == saved_wl
    return saved_ref
