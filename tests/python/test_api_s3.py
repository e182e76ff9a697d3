# SPDX-License-Identifier: Apache-2.0
"""s3:// URIs through the Python API against the real moto server (tests/s3/s3harness.py:
moto on 127.0.0.1 with request authentication on, plus loopback IMDSv2 and container
credential endpoints; skipped without moto[server]/boto3): torch load_file with the region
keyword of Anyscale's loader, numpy load_file, safe_open (get_tensor, get_slice), stream;
errors as Python exceptions (NoSuchKey FileNotFoundError, SignatureDoesNotMatch
PermissionError); credentials refreshed before they expire (IMDS); web-identity credentials
from STS that moto then verifies; and our Signature V4 against botocore's signer on the
requests weightlift sends to a capturing loopback server."""
import http.server
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest

wl = pytest.importorskip("weightlift")
wlnp = pytest.importorskip("weightlift.numpy")
refnp = pytest.importorskip("safetensors.numpy")
pytest.importorskip("boto3")
pytest.importorskip("moto")

HARNESS = os.path.join(os.path.dirname(__file__), "..", "s3", "s3harness.py")
AWS_VARS = [k for k in os.environ if k.startswith("AWS_")]


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    base = tmp_path_factory.mktemp("s3")
    data = base / "data"
    (data / "dir").mkdir(parents=True)
    rng = np.random.default_rng(11)
    tensors = {
        "a": rng.standard_normal((300, 257)).astype(np.float32),
        "b": rng.integers(0, 100, (1000,), dtype=np.int64),
        "c": rng.standard_normal((5, 3, 1111)).astype(np.float16),
    }
    refnp.save_file(tensors, str(data / "small.safetensors"), metadata={"k": "v"})
    refnp.save_file({"x": tensors["a"][:10]}, str(data / "dir" / "one.safetensors"))
    refnp.save_file({"y": tensors["b"][:10]}, str(data / "dir" / "two.safetensors"))
    proc = subprocess.Popen([sys.executable, HARNESS, str(data), str(base / "state")],
                            env=dict(os.environ, WLIFT_HARNESS_MANY="0"),
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (base / "state").exists():
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")
            if proc.returncode == 77:
                pytest.skip(err.strip()[-300:])
            pytest.fail("the S3 harness failed: " + err[-2000:])
        if time.time() > deadline:
            proc.kill()
            pytest.fail("the S3 harness did not start in 120 s")
        time.sleep(0.2)
    state = {}
    for line in (base / "state").read_text().splitlines():
        k, v = line.split("=", 1)
        state[k] = v.strip("'")
    state["tensors"] = tensors
    state["data"] = data
    try:
        yield state
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def aws(moto, monkeypatch, tmp_path):
    """A clean AWS environment pointed at moto, with the user's long-term keys."""
    for k in AWS_VARS:
        monkeypatch.delenv(k, raising=False)
    for k in ("WEIGHTLIFT_S3_REGION", "WEIGHTLIFT_S3_UNSIGNED", "WEIGHTLIFT_S3_ADDRESSING"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto["ENDPOINT"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto["AKID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto["SECRET"])
    return monkeypatch


def same(got, want):
    assert sorted(got) == sorted(want)
    for k in want:
        g = got[k].numpy() if hasattr(got[k], "numpy") else got[k]
        assert g.dtype == want[k].dtype and np.array_equal(g, want[k]), k


def test_torch_load_file_region(moto, aws):
    wlt = pytest.importorskip("weightlift.torch")
    same(wlt.load_file("s3://wlift/ckpt/small.safetensors", device="cpu", region="eu-west-1"),
         moto["tensors"])
    same(wlt.load_file("s3://wlift/ckpt/small.safetensors", region=None), moto["tensors"])
    with pytest.raises(Exception, match="bad/region is not a region name"):
        wlt.load_file("s3://wlift/ckpt/small.safetensors", region="bad/region")


def test_numpy_safe_open_stream(moto, aws):
    t = moto["tensors"]
    same(wlnp.load_file("s3://wlift/ckpt/small.safetensors"), t)
    with wl.safe_open("s3://wlift/ckpt/small.safetensors", framework="np") as f:
        assert sorted(f.keys()) == ["a", "b", "c"]
        assert f.metadata() == {"k": "v"}
        assert np.array_equal(f.get_tensor("b"), t["b"])
        assert np.array_equal(f.get_slice("a")[10:20], t["a"][10:20])
        assert np.array_equal(f.get_slice("c")[1:4, :, 5:9], t["c"][1:4, :, 5:9])
    # A prefix lists like a directory.
    got = wlnp.load_file("s3://wlift/ckpt/dir/")
    assert sorted(got) == ["x", "y"]
    names = [name for name, _ in wl.stream("s3://wlift/ckpt/dir", framework="np")]
    assert sorted(names) == ["x", "y"]


def test_errors(moto, aws):
    with pytest.raises(FileNotFoundError, match="NoSuchKey"):
        wlnp.load_file("s3://wlift/ckpt/missing.safetensors")
    aws.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(PermissionError, match="SignatureDoesNotMatch.*credentials from the environment"):
        wlnp.load_file("s3://wlift/ckpt/small.safetensors")
    aws.delenv("AWS_SECRET_ACCESS_KEY")
    aws.delenv("AWS_ACCESS_KEY_ID")
    with pytest.raises(PermissionError, match="no AWS credentials .*tried the environment"):
        wlnp.load_file("s3://wlift/ckpt/small.safetensors")


def test_imds_refresh(moto, aws):
    """The first credentials IMDS hands out expire within the refresh margin 2 s later: the
    next request after that fetches new ones (once), signing with them."""
    aws.delenv("AWS_ACCESS_KEY_ID")
    aws.delenv("AWS_SECRET_ACCESS_KEY")
    aws.setenv("AWS_EC2_METADATA_DISABLED", "false")
    aws.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", moto["IMDS"])
    count = lambda: int(urllib.request.urlopen(moto["IMDS"] + "/count", timeout=5).read())  # noqa: E731
    c0 = count()
    same(wlnp.load_file("s3://wlift/ckpt/small.safetensors"), moto["tensors"])
    assert count() == c0 + 1
    time.sleep(2.5)
    same(wlnp.load_file("s3://wlift/ckpt/small.safetensors"), moto["tensors"])
    assert count() == c0 + 2
    same(wlnp.load_file("s3://wlift/ckpt/dir/"), {"x": moto["tensors"]["a"][:10],
                                                  "y": moto["tensors"]["b"][:10]})
    assert count() == c0 + 2


def test_imds_refresh_fails_before_expiry(moto, aws, monkeypatch):
    """A refresh that fails while the current credentials are still valid keeps signing with
    them (as botocore does); a fresh provider (another environment) with a failing IMDS
    names it."""
    aws.delenv("AWS_ACCESS_KEY_ID")
    aws.delenv("AWS_SECRET_ACCESS_KEY")
    aws.setenv("AWS_EC2_METADATA_DISABLED", "false")
    aws.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", moto["IMDS"] + "/")  # its own provider
    post = lambda p: urllib.request.urlopen(urllib.request.Request(  # noqa: E731
        moto["IMDS"] + p, data=b"", method="POST"), timeout=5).read()
    post("/short")  # this provider's first document expires within the refresh margin
    same(wlnp.load_file("s3://wlift/ckpt/small.safetensors"), moto["tensors"])
    post("/fail")
    try:
        time.sleep(2.5)
        same(wlnp.load_file("s3://wlift/ckpt/small.safetensors"), moto["tensors"])
        aws.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", moto["IMDS"] + "//")  # nothing cached
        with pytest.raises(PermissionError, match="instance metadata at .*role wlift-role.*HTTP 500"):
            wlnp.load_file("s3://wlift/ckpt/small.safetensors")
    finally:
        post("/ok")


def test_credential_process_expires(moto, aws, tmp_path):
    """credential_process credentials with an Expiration: used while valid (the process is run
    again within the refresh margin); once they have expired and the process fails, the next
    request of any load is a PermissionError naming the source, not a signature S3 refuses."""
    aws.delenv("AWS_ACCESS_KEY_ID")
    aws.delenv("AWS_SECRET_ACCESS_KEY")
    stop, runs = tmp_path / "stop", tmp_path / "runs"
    script = tmp_path / "creds.py"
    script.write_text(
        "import datetime, json, os, sys, time\n"
        f"open({str(runs)!r}, 'a').write('x')\n"
        f"if os.path.exists({str(stop)!r}):\n"
        "    print('revoked', file=sys.stderr)\n"
        "    sys.exit(5)\n"
        "exp = datetime.datetime.fromtimestamp(time.time() + 3, datetime.timezone.utc)\n"
        f"print(json.dumps({{'Version': 1, 'AccessKeyId': {moto['AKID']!r}, "
        f"'SecretAccessKey': {moto['SECRET']!r}, "
        "'Expiration': exp.strftime('%Y-%m-%dT%H:%M:%SZ')}))\n")
    (tmp_path / "config").write_text(
        f"[profile proc]\ncredential_process = {sys.executable} {script}\n")
    aws.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    aws.setenv("AWS_PROFILE", "proc")
    same(wlnp.load_file("s3://wlift/ckpt/small.safetensors"), moto["tensors"])
    assert len(runs.read_text()) >= 1
    stop.write_text("")
    time.sleep(3.5)
    with pytest.raises(PermissionError, match=r"the AWS credentials from the credential process "
                       r"of profile proc \(.*creds.py\) expired and cannot be refreshed"):
        wlnp.load_file("s3://wlift/ckpt/small.safetensors")
    with pytest.raises(PermissionError, match="expired and cannot be refreshed"):
        with wl.safe_open("s3://wlift/ckpt/small.safetensors", framework="np") as f:
            f.get_tensor("a")


def reset_auth(endpoint, value):
    urllib.request.urlopen(urllib.request.Request(
        endpoint + "/moto-api/reset-auth", data=value.encode(),
        headers={"Content-Type": "text/plain"}, method="POST"), timeout=10).read()


def test_web_identity(moto, aws, tmp_path):
    """STS AssumeRoleWithWebIdentity (moto's STS wants a signature once authentication is on,
    so the exchange happens with it off); the temporary credentials it gave are then checked
    by moto on the next load, which uses them from the cache."""
    aws.delenv("AWS_ACCESS_KEY_ID")
    aws.delenv("AWS_SECRET_ACCESS_KEY")
    (tmp_path / "token").write_text("web-identity-token\n")
    aws.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(tmp_path / "token"))
    aws.setenv("AWS_ROLE_ARN", moto["ROLE_ARN"])
    aws.setenv("AWS_ROLE_SESSION_NAME", "pytest-session")
    reset_auth(moto["ENDPOINT"], "inf")
    try:
        same(wlnp.load_file("s3://wlift/ckpt/small.safetensors"), moto["tensors"])
    finally:
        reset_auth(moto["ENDPOINT"], "0")
    same(wlnp.load_file("s3://wlift/ckpt/small.safetensors"), moto["tensors"])


class Capture(http.server.BaseHTTPRequestHandler):
    """Serves one file by range at any path, keeping every request's headers."""
    protocol_version = "HTTP/1.1"
    data = b""
    seen = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        Capture.seen.append((self.command, self.path, dict(self.headers.items())))
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        first, last = int(m.group(1)), min(int(m.group(2)), len(self.data) - 1)
        body = self.data[first:last + 1]
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {first}-{last}/{len(self.data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"e"')
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEXAMPLE/token+with=chars"])
def test_botocore_agrees(moto, aws, token):
    """Every request weightlift signs (captured on loopback) carries the signature botocore's
    S3 signer computes for the same request, time and credentials."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    Capture.data = (moto["data"] / "small.safetensors").read_bytes()
    Capture.seen = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        aws.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{srv.server_address[1]}")
        aws.setenv("AWS_REGION", "ap-southeast-2")
        if token:
            aws.setenv("AWS_SESSION_TOKEN", token)
        key = "odd dir/é x+y~(1).safetensors"
        same(wlnp.load_file("s3://wlift/" + key), moto["tensors"])
    finally:
        srv.shutdown()
    assert Capture.seen
    creds = Credentials(moto["AKID"], moto["SECRET"], token)
    for method, path, headers in Capture.seen:
        assert path == "/wlift/odd%20dir/%C3%A9%20x%2By~%281%29.safetensors", path
        authz = headers["Authorization"]
        m = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/s3/aws4_request, "
                         r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})", authz)
        assert m, authz
        assert m.group(1) == moto["AKID"] and m.group(3) == "ap-southeast-2"
        signed = m.group(4).split(";")
        lower = {k.lower(): v for k, v in headers.items()}
        assert signed == sorted(signed) and {"host", "x-amz-date", "x-amz-content-sha256"} <= set(signed)
        if token:
            assert lower["x-amz-security-token"] == token and "x-amz-security-token" in signed
        req = AWSRequest(method=method, url="http://" + lower["host"] + path,
                         headers={k: lower[k] for k in signed})
        auth = S3SigV4Auth(creds, "s3", "ap-southeast-2")
        req.context["timestamp"] = lower["x-amz-date"]
        assert auth.signed_headers(auth.headers_to_sign(req)) == m.group(4)
        canonical = auth.canonical_request(req)
        assert auth.signature(auth.string_to_sign(req, canonical), req) == m.group(5), canonical
