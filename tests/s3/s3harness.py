# SPDX-License-Identifier: Apache-2.0
"""The servers of the S3 tests, on 127.0.0.1 only, started and stopped by the caller.

    python s3harness.py DATA_DIR STATE_FILE

starts the moto server (PyPI moto[server]) on a free port and, with boto3 while moto's
authentication is still off, creates an IAM user with an access key, a role, temporary
credentials of that role (STS AssumeRole), the bucket "wlift" holding every file under
DATA_DIR below "ckpt/", a key with a space, '+' and non-ASCII characters, and 1100 small keys
beside a checkpoint under "many/" (ListObjectsV2 pages hold 1000; not with
WLIFT_HARNESS_MANY=0). Then it turns moto's
request authentication on (every later request must be signed by a key moto knows, with the
right secret) and starts two credential endpoints of its own:
  - an EC2 instance metadata service (IMDSv2: PUT /latest/api/token, then the role's
    credentials with the token; GET /count says how many credential documents it served;
    the first one expires within WLIFT_AWS_REFRESH_S + 2 seconds, so that a client that
    refreshes early fetches the next one shortly after, as does the one after a POST /short;
    POST /fail makes the credential
    documents answer 500 until POST /ok),
  - an ECS container credentials endpoint (GET /creds, Authorization: ecs-token),
  - an IAM Identity Center (SSO) portal's GetRoleCredentials (GET /federation/credentials
    ?role_name=wlift-role&account_id=123456789012, x-amz-sso_bearer_token: sso-access-token;
    moto does not serve the portal), on the same port.
All three hand out the role's temporary credentials. STATE_FILE gets shell assignments (PORT,
ENDPOINT, AKID, SECRET, STS_AKID, STS_SECRET, STS_TOKEN, ROLE_ARN, IMDS, ECS) once all is
ready. Runs until SIGTERM, its parent's exit or 15 minutes; stops moto on the way out. Exits 77 when moto or
boto3 cannot be imported or moto does not start.
"""
import concurrent.futures
import datetime
import http.server
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

try:
    import boto3
    import moto  # noqa: F401  (the server below is the same package's)
except ImportError as e:
    print(f"SKIP: {e} (pip install 'moto[server]' boto3)", file=sys.stderr)
    sys.exit(77)

DATA, STATE = sys.argv[1], sys.argv[2]
REFRESH_S = 300  # WLIFT_AWS_REFRESH_S


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


port = free_port()
endpoint = f"http://127.0.0.1:{port}"
moto_log = open(os.path.join(os.path.dirname(os.path.abspath(STATE)), "moto.log"), "w")


def die_with_parent():
    # The moto server goes when this process does, however it ends (PR_SET_PDEATHSIG).
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


proc = subprocess.Popen(
    [sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1", "-p", str(port)],
    stdout=moto_log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)


def stop(*_):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    os._exit(0)


signal.signal(signal.SIGTERM, stop)
deadline = time.time() + 60
while True:
    try:
        urllib.request.urlopen(endpoint + "/moto-api/", timeout=2).read()
        break
    except Exception:
        if proc.poll() is not None or time.time() > deadline:
            print("SKIP: the moto server did not start", file=sys.stderr)
            proc.kill()
            sys.exit(77)
        time.sleep(0.2)

def fail(exc_type, exc, tb):
    sys.__excepthook__(exc_type, exc, tb)
    proc.kill()
    os._exit(1)


sys.excepthook = fail
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup",
          aws_secret_access_key="setup")
iam = boto3.client("iam", **kw)
allow = json.dumps({"Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
iam.create_user(UserName="wlift")
key = iam.create_access_key(UserName="wlift")["AccessKey"]
iam.put_user_policy(UserName="wlift", PolicyName="all", PolicyDocument=allow)
trust = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Federated": "test"}, "Action": "sts:AssumeRoleWithWebIdentity"},
    {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]})
role = iam.create_role(RoleName="wlift-role", AssumeRolePolicyDocument=trust)["Role"]
iam.put_role_policy(RoleName="wlift-role", PolicyName="all", PolicyDocument=allow)
sts = boto3.client("sts", **dict(kw, aws_access_key_id=key["AccessKeyId"],
                                  aws_secret_access_key=key["SecretAccessKey"]))
tmp = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="wlift-test", DurationSeconds=43200)["Credentials"]

s3 = boto3.client("s3", **kw)
s3.create_bucket(Bucket="wlift")
for root, _, files in os.walk(DATA):
    for f in files:
        p = os.path.join(root, f)
        s3.upload_file(p, "wlift", "ckpt/" + os.path.relpath(p, DATA))
small = os.path.join(DATA, "small.safetensors")
s3.upload_file(small, "wlift", "odd/my model é+1 (v2).safetensors")
s3.upload_file(small, "wlift", "many/model.safetensors")
if os.environ.get("WLIFT_HARNESS_MANY", "1") != "0":  # the Python tests do without
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda i: s3.put_object(Bucket="wlift", Key=f"many/k{i:05d}.bin", Body=b"x"),
                    range(1100)))

# From here on, every request must be signed with a key moto knows.
urllib.request.urlopen(urllib.request.Request(endpoint + "/moto-api/reset-auth", data=b"0", headers={"Content-Type": "text/plain"},
                                              method="POST"), timeout=10).read()

served = [0]
failing = [False]  # POST /fail, /ok: the credential documents answer 500 while failing
short = [True]  # the next document expires soon (the first one; POST /short again)
lock = threading.Lock()


def creds_doc():
    with lock:
        served[0] += 1
        was_short, short[0] = short[0], False
    exp = time.time() + (REFRESH_S + 2 if was_short else 3600)
    return {"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": tmp["AccessKeyId"],
            "SecretAccessKey": tmp["SecretAccessKey"], "Token": tmp["SessionToken"],
            "Expiration": iso(exp), "LastUpdated": iso(time.time())}


class Meta(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, code, body, ctype="text/plain"):
        b = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def do_POST(self):
        if self.path == "/short":
            short[0] = True
        else:
            failing[0] = self.path == "/fail"
        self.send(200, "")

    def do_PUT(self):
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self.send(200, "imds-session-token")
        else:
            self.send(400, "")

    def do_GET(self):
        if self.path == "/count":
            self.send(200, str(served[0]))
            return
        if self.path == "/creds":  # the container endpoint
            if self.headers.get("Authorization") != "ecs-token":
                self.send(401, "")
            else:
                self.send(200, json.dumps(creds_doc()), "application/json")
            return
        if self.path.startswith("/federation/credentials?"):  # the SSO portal
            if (self.headers.get("x-amz-sso_bearer_token") != "sso-access-token" or
                    self.path != "/federation/credentials?role_name=wlift-role&account_id=123456789012"):
                self.send(401, json.dumps({"message": "Session token not found or invalid"}),
                          "application/json")
                return
            self.send(200, json.dumps({"roleCredentials": {
                "accessKeyId": tmp["AccessKeyId"], "secretAccessKey": tmp["SecretAccessKey"],
                "sessionToken": tmp["SessionToken"],
                "expiration": int((time.time() + 3600) * 1000)}}), "application/json")
            return
        if self.headers.get("X-aws-ec2-metadata-token") != "imds-session-token":
            self.send(401, "")
        elif self.path == "/latest/meta-data/iam/security-credentials/":
            self.send(200, "wlift-role")
        elif self.path == "/latest/meta-data/iam/security-credentials/wlift-role":
            if failing[0]:
                self.send(500, "")
            else:
                self.send(200, json.dumps(creds_doc()), "application/json")
        else:
            self.send(404, "")


meta = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Meta)
threading.Thread(target=meta.serve_forever, daemon=True).start()
mport = meta.server_address[1]

state = {
    "PORT": port, "ENDPOINT": endpoint, "AKID": key["AccessKeyId"], "SECRET": key["SecretAccessKey"],
    "STS_AKID": tmp["AccessKeyId"], "STS_SECRET": tmp["SecretAccessKey"], "STS_TOKEN": tmp["SessionToken"],
    "ROLE_ARN": role["Arn"], "IMDS": f"http://127.0.0.1:{mport}", "ECS": f"http://127.0.0.1:{mport}/creds",
}
with open(STATE + ".tmp", "w") as f:
    for k, v in state.items():
        f.write(f"{k}={shlex.quote(str(v))}\n")
os.rename(STATE + ".tmp", STATE)
# Bounded: gone when the parent is, and after 15 minutes in any case.
parent = os.getppid()
end = time.time() + float(os.environ.get("WLIFT_HARNESS_MAX_S", "900"))
while time.time() < end and os.getppid() == parent:
    time.sleep(0.5)
stop()
