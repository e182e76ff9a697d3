# SPDX-License-Identifier: Apache-2.0
"""The GCS tests' servers, on 127.0.0.1, in one process that the harness starts and stops.

- The real gcp-storage-emulator (PyPI), in memory, on a free port (EMU): a bucket holding
  every file under --dir, by relative path. It is a single-threaded HTTP/1.0 server with no
  ETags, preconditions, credential checks or page tokens.
- A front of ours (FRONT, threaded HTTP/1.1) that forwards the JSON API to the emulator and
  adds what the emulator lacks, as the real service does it: bearer-token checks (401 with
  the JSON error), ifGenerationMatch (412), x-goog-generation on downloads, objects.list
  pagination with page tokens; and injects faults on request (a 403 or 500 with a JSON or
  HTML body, the object replaced after N reads).
- On the same port, an OAuth token endpoint (POST /token) that checks a service account's
  RS256 JWT against its public key (with the openssl command) or an authorized_user's
  refresh token, and a GCE metadata server (GET /computeMetadata/v1/...) that wants
  Metadata-Flavor: Google.
- For external_account (workload identity federation): an STS token exchange (POST /sts,
  RFC 8693, checking the audience and the subject token), a subject-token URL (GET /subject,
  JSON, wanting a header) and IAM Credentials' generateAccessToken (POST
  /impersonate/...:generateAccessToken with an STS-issued bearer).

Control: POST /_ctl with a JSON object of settings (see CTL); GET /_stats gives counters.
The ports are written to --portfile as "EMU FRONT" once everything listens.
"""
import argparse
import base64
import http.client
import http.server
import json
import os
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from gcp_storage_emulator.handlers import objects as emu_objects
from gcp_storage_emulator.server import create_server

CTL = {
    "require_auth": False,  # 401 unless the bearer token was issued here (or is static_token)
    "static_token": None,
    "fail_status": 0,       # answer every storage request with this status
    "fail_html": False,     # ... with an HTML body instead of the JSON error
    "fail_message": "injected failure",
    "fail_count": -1,       # fail only the next N storage requests (-1: every one)
    "page_size": 0,         # objects.list pages of this many items (0: one page)
    "change_after": -1,     # replace the object after this many ranged reads past offset 0
    "revoke_after": -1,     # revoke every issued token after this many ranged reads past 0
    "token_ttl": 3600,      # expires_in of issued tokens
    "token_fail": False,    # the token endpoint answers invalid_grant
    "email": "loader@test-project.iam.gserviceaccount.com",
    "kid": "",
    "pubkey": "",
    "refresh_token": "refresh-1",
    "client_id": "client-1",
    "client_secret": "secret-1",
    "subject_token": "subject-ok",  # what the STS (POST /sts) accepts as the subject token
    "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
}
STATS = {"tokens": 0, "sts": 0, "impersonations": 0, "media": 0, "media_bytes": 0, "lists": 0, "meta": 0, "auth_seen": [],
         "ranges": []}
LOCK = threading.Lock()
ISSUED = set()
EMU = None
BUCKET = None


def gcs_error(code, message):
    return json.dumps({"error": {"code": code, "message": message,
                                 "errors": [{"message": message, "reason": "injected"}]}}).encode()


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def check_jwt(assertion, token_url):
    """Why the JWT is refused, or None: signature (openssl), header and claims."""
    try:
        h64, c64, s64 = assertion.split(".")
        head, claims, sig = json.loads(b64d(h64)), json.loads(b64d(c64)), b64d(s64)
    except Exception as e:  # noqa: BLE001
        return "malformed JWT: %s" % e
    if head.get("alg") != "RS256" or head.get("typ") != "JWT":
        return "header %r" % head
    if CTL["kid"] and head.get("kid") != CTL["kid"]:
        return "kid %r" % head.get("kid")
    with tempfile.TemporaryDirectory() as t:
        with open(os.path.join(t, "in"), "wb") as f:
            f.write((h64 + "." + c64).encode())
        with open(os.path.join(t, "sig"), "wb") as f:
            f.write(sig)
        r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", CTL["pubkey"], "-signature",
                            os.path.join(t, "sig"), os.path.join(t, "in")],
                           capture_output=True, timeout=20)
        if r.returncode != 0:
            return "Invalid JWT Signature."
    now = time.time()
    if claims.get("iss") != CTL["email"]:
        return "iss %r" % claims.get("iss")
    if claims.get("aud") != token_url:
        return "aud %r, want %r" % (claims.get("aud"), token_url)
    if "devstorage" not in claims.get("scope", ""):
        return "scope %r" % claims.get("scope")
    if not (claims["iat"] - 60 <= now <= claims["exp"]) or claims["exp"] - claims["iat"] > 3600:
        return "iat/exp %r" % claims
    return None


def emu_request(method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", EMU, timeout=30)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hdrs, data


def upload(name, data):
    q = urllib.parse.urlencode({"uploadType": "media", "name": name})
    st, _, body = emu_request("POST", "/upload/storage/v1/b/%s/o?%s" % (BUCKET, q), data,
                              {"Content-Type": "application/octet-stream"})
    assert st == 200, (st, body[:200])


def upload_direct(emu, name, data):
    """What the emulator's media upload does, without a request per object (the fixtures hold
    1,200 of them and the emulator serves one request at a time)."""
    obj = emu_objects._make_object_resource("http://127.0.0.1:%d" % EMU, BUCKET, name,
                                            "application/octet-stream", str(len(data)))
    obj = emu_objects._checksums(data, obj)
    emu._storage.create_file(BUCKET, name, data, obj)


def generation_of(bucket, obj):
    st, _, body = emu_request("GET", "/storage/v1/b/%s/o/%s" % (bucket, urllib.parse.quote(obj, safe="")))
    return json.loads(body)["generation"] if st == 200 else None


class Front(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body=b"", ctype="application/json", extra=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        data = self.body()
        if url.path == "/_ctl":
            with LOCK:
                CTL.update(json.loads(data or b"{}"))
                if json.loads(data or b"{}").get("reset_stats"):
                    for k in STATS:
                        STATS[k] = [] if isinstance(STATS[k], list) else 0
            return self.reply(200, b"{}")
        if url.path == "/_upload":
            q = urllib.parse.parse_qs(url.query)
            upload(q["name"][0], data)
            return self.reply(200, b"{}")
        if url.path == "/token":
            return self.token(data)
        if url.path == "/sts":
            return self.sts(data)
        if url.path.startswith("/impersonate/") and url.path.endswith(":generateAccessToken"):
            return self.impersonate(data)
        return self.reply(404, gcs_error(404, "Not Found"))

    def sts(self, data):
        """Google's STS token exchange (RFC 8693) of workload identity federation."""
        form = urllib.parse.parse_qs(data.decode())
        f = lambda k: form.get(k, [""])[0]  # noqa: E731
        why = None
        if f("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange":
            why = "grant_type %r" % f("grant_type")
        elif f("audience") != CTL["audience"]:
            why = "audience %r" % f("audience")
        elif f("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token":
            why = "requested_token_type"
        elif not f("subject_token_type") or not f("scope"):
            why = "subject_token_type or scope missing"
        elif f("subject_token") != CTL["subject_token"]:
            why = "The subject token is invalid."
        if why:
            return self.reply(400, json.dumps({"error": "invalid_grant",
                                               "error_description": why}).encode())
        with LOCK:
            STATS["sts"] += 1
        return self.reply(200, self.issue())

    def impersonate(self, data):
        """IAM Credentials generateAccessToken: the STS token (bearer) for the account's."""
        auth = self.headers.get("Authorization", "")
        with LOCK:
            ok = auth.startswith("Bearer ") and auth[7:] in ISSUED
        body = json.loads(data or b"{}")
        if not ok or not body.get("scope"):
            return self.reply(401 if not ok else 400, gcs_error(401 if not ok else 400,
                              "Request had invalid authentication credentials."))
        tok = json.loads(self.issue())["access_token"]
        with LOCK:
            STATS["impersonations"] += 1
        exp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + CTL["token_ttl"]))
        return self.reply(200, json.dumps({"accessToken": tok, "expireTime": exp}).encode())

    def token(self, data):
        form = urllib.parse.parse_qs(data.decode())
        token_url = "http://%s/token" % self.headers["Host"]
        grant = form.get("grant_type", [""])[0]
        why = None
        if self.headers.get("Content-Type") != "application/x-www-form-urlencoded":
            why = "content type %r" % self.headers.get("Content-Type")
        elif CTL["token_fail"]:
            why = "Token has been expired or revoked."
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            why = check_jwt(form.get("assertion", [""])[0], token_url)
        elif grant == "refresh_token":
            if (form.get("refresh_token", [""])[0] != CTL["refresh_token"] or
                    form.get("client_id", [""])[0] != CTL["client_id"] or
                    form.get("client_secret", [""])[0] != CTL["client_secret"]):
                why = "Bad refresh token or client."
        else:
            why = "Unsupported grant type %r" % grant
        if why:
            return self.reply(400, json.dumps({"error": "invalid_grant",
                                               "error_description": why}).encode())
        return self.reply(200, self.issue())

    def issue(self):
        with LOCK:
            STATS["tokens"] += 1
            tok = "ya29.test-%d" % STATS["tokens"]
            ISSUED.add(tok)
        return json.dumps({"access_token": tok, "expires_in": CTL["token_ttl"],
                           "token_type": "Bearer"}).encode()

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/subject":  # a URL credential source (JSON, wants a header)
            if self.headers.get("Metadata-Flavor") != "Azure-ish":
                return self.reply(403, b"{}")
            return self.reply(200, json.dumps({"id_token": CTL["subject_token"]}).encode())
        if url.path == "/_stats":
            with LOCK:
                return self.reply(200, json.dumps(STATS).encode())
        if url.path.startswith("/computeMetadata/"):
            if self.headers.get("Metadata-Flavor") != "Google":
                return self.reply(403, b"Missing Metadata-Flavor:Google header.", "text/html")
            if url.path != "/computeMetadata/v1/instance/service-accounts/default/token":
                return self.reply(404, b"not here", "text/html")
            return self.reply(200, self.issue(), extra={"Metadata-Flavor": "Google"})
        auth = self.headers.get("Authorization")
        with LOCK:
            STATS["auth_seen"].append(auth or "")
            del STATS["auth_seen"][:-50]
        if CTL["require_auth"]:
            tok = auth[7:] if auth and auth.startswith("Bearer ") else None
            if tok is None or (tok not in ISSUED and tok != CTL["static_token"]):
                return self.reply(401, gcs_error(401, "Invalid Credentials"),
                                  extra={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        with LOCK:
            st = CTL["fail_status"]
            if st and CTL["fail_count"] >= 0:
                if CTL["fail_count"] == 0:
                    st = 0
                else:
                    CTL["fail_count"] -= 1
        if st:
            if CTL["fail_html"]:
                return self.reply(st, b"<html><body>secret page bytes</body></html>", "text/html")
            return self.reply(st, gcs_error(st, CTL["fail_message"]))
        q = urllib.parse.parse_qs(url.query)
        parts = url.path.split("/")
        # /storage/v1/b/BUCKET/o[/OBJECT]
        if len(parts) >= 6 and parts[1:4] == ["storage", "v1", "b"] and parts[5] == "o":
            if len(parts) == 6:
                return self.listing(url, q)
            obj = urllib.parse.unquote("/".join(parts[6:]))
            if q.get("alt") == ["media"]:
                return self.media(url, q, parts[4], obj)
            with LOCK:
                STATS["meta"] += 1
        return self.forward()

    def forward(self):
        hdrs = {k: v for k, v in self.headers.items() if k.lower() in ("range",)}
        st, h, data = emu_request(self.command, self.path, headers=hdrs)
        extra = {k: h[k] for k in ("content-range",) if k in h}
        return self.reply(st, data, h.get("content-type", "application/octet-stream"), extra)

    def media(self, url, q, bucket, obj):
        gen = generation_of(bucket, obj)
        if gen is None:
            return self.reply(404, gcs_error(404, "No such object: %s/%s" % (bucket, obj)))
        want = q.get("ifGenerationMatch", [None])[0]
        if want is not None and want != gen:
            return self.reply(412, gcs_error(412, "At least one of the pre-conditions you "
                                                  "specified did not hold."))
        rng = self.headers.get("Range", "")
        with LOCK:
            STATS["media"] += 1
            STATS["ranges"].append(rng)
            past0 = rng and not rng.startswith("bytes=0-")
            if past0 and CTL["revoke_after"] >= 0:
                if CTL["revoke_after"] == 0:
                    ISSUED.clear()
                    CTL["static_token"] = None
                    CTL["revoke_after"] = -1
                    return self.reply(401, gcs_error(401, "Invalid Credentials"))
                CTL["revoke_after"] -= 1
            change = past0 and CTL["change_after"] >= 0
            if change:
                if CTL["change_after"] == 0:
                    CTL["change_after"] = -1
                else:
                    CTL["change_after"] -= 1
                    change = False
        if change:
            st, _, data = emu_request("GET", "/storage/v1/b/%s/o/%s?alt=media" % (
                bucket, urllib.parse.quote(obj, safe="")))
            time.sleep(0.002)  # the emulator's generation is the upload's time in ns
            upload(obj, data)
            return self.reply(412, gcs_error(412, "At least one of the pre-conditions you "
                                                  "specified did not hold."))
        hdrs = {"Range": rng} if rng else {}
        st, h, data = emu_request("GET", self.path, headers=hdrs)
        with LOCK:
            STATS["media_bytes"] += len(data)
        extra = {"x-goog-generation": gen}
        if "content-range" in h:
            extra["Content-Range"] = h["content-range"]
        return self.reply(st, data, h.get("content-type", "application/octet-stream"), extra)

    def listing(self, url, q):
        with LOCK:
            STATS["lists"] += 1
        keep = {k: v for k, v in q.items() if k in ("prefix", "delimiter")}
        st, h, data = emu_request("GET", url.path + "?" + urllib.parse.urlencode(keep, doseq=True))
        if st != 200 or not CTL["page_size"]:
            return self.reply(st, data, h.get("content-type", "application/json"))
        j = json.loads(data)
        items = j.get("items", [])
        start = int(q["pageToken"][0][4:]) if "pageToken" in q else 0
        n = CTL["page_size"]
        out = {"kind": "storage#objects", "items": items[start:start + n]}
        if start + n < len(items):
            out["nextPageToken"] = "tok-%d" % (start + n)
        return self.reply(200, json.dumps(out).encode())


class Threaded(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def main():
    global EMU, BUCKET
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--bucket", default="wl-test")
    ap.add_argument("--portfile", required=True)
    a = ap.parse_args()
    BUCKET = a.bucket
    emu = create_server("127.0.0.1", 0, in_memory=True)
    emu.start()
    EMU = emu._api._httpd.server_address[1]
    st, _, body = emu_request("POST", "/storage/v1/b", json.dumps({"name": BUCKET}).encode(),
                              {"Content-Type": "application/json"})
    assert st == 200, (st, body[:200])
    # The emulator rewrites its whole index after each object (quadratic in the objects):
    # written once after the fill instead.
    st = emu._storage
    write_config = st._write_config_to_file
    st._write_config_to_file = lambda *args, **kw: None
    for root, _, files in os.walk(a.dir):
        for f in sorted(files):
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                data = fh.read()
            if data:  # the emulator fails a media upload of 0 bytes
                upload_direct(emu, os.path.relpath(p, a.dir), data)
    st._write_config_to_file = write_config
    write_config()
    front = Threaded(("127.0.0.1", 0), Front)
    with open(a.portfile + ".tmp", "w") as f:
        f.write("%d %d\n" % (EMU, front.server_address[1]))
    os.rename(a.portfile + ".tmp", a.portfile)
    try:
        front.serve_forever()
    finally:
        emu.stop()


if __name__ == "__main__":
    sys.exit(main())
