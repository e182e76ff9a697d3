# SPDX-License-Identifier: Apache-2.0
"""nginx for the Python tests: a prefix of its own under the test's temporary directory,
a free port on 127.0.0.1 (or a given address, optionally inside a network namespace), extra
locations where a test needs them (test_api_http.py: no Range, 403; test_cache.py: a slow
one), an access log of the client address, path, status, body bytes, Range and method of
every request (tests/python/test_dist_nodes.py counts the bytes each node was served from it,
test_cache.py the GETs of an object), stopped by stop(). The configuration follows
tests/http/nginx.sh (sendfile on, tcp_nopush off)."""
import os
import shutil
import socket
import subprocess
import time

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK)
                                  else None)

CONF = """
{user}
daemon off;
worker_processes 1;
pid {pfx}/nginx.pid;
error_log {pfx}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format t '$remote_addr $uri $status $body_bytes_sent "$http_range" $request_method';
    access_log {pfx}/access.log t;
    client_body_temp_path {pfx}/tmp;
    proxy_temp_path {pfx}/tmp;
    fastcgi_temp_path {pfx}/tmp;
    uwsgi_temp_path {pfx}/tmp;
    scgi_temp_path {pfx}/tmp;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush off;
    keepalive_requests 10000;
    server {{ listen {listen}; root {root};{locations} }}
}}
"""


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Nginx:
    """nginx serving root on addr (a free port of 127.0.0.1 unless port is given); pre is a
    command prefix to run it (and its readiness probe, curl) in a network namespace;
    locations maps a location's path to its directives, "{root}" in them standing for root
    (e.g. {"/slow/": "alias {root}/; limit_rate 8m;"}). root and pfx stay as given."""

    def __init__(self, root, pfx, addr="127.0.0.1", port=None, pre=(), locations=None):
        self.root, self.pfx, self.addr, self.pre = root, pfx, addr, list(pre)
        self.locations = dict(locations or {})
        self.port = port
        self.proc = None
        self.url = ""

    def start(self) -> str:
        """Start it; returns the base URL, "" when it did not come up within 5 s."""
        os.makedirs(os.path.join(self.pfx, "tmp"), exist_ok=True)
        port = self.port or free_port()
        conf = os.path.join(self.pfx, "nginx.conf")
        root = str(self.root)
        locs = "".join(f"\n        location {path} {{ {body.format(root=root)} }}"
                       for path, body in self.locations.items())
        with open(conf, "w") as f:
            f.write(CONF.format(user="user root;" if os.getuid() == 0 else "", pfx=self.pfx,
                                listen=f"{self.addr}:{port}", root=root, locations=locs))
        self.proc = subprocess.Popen(self.pre + [NGINX, "-p", self.pfx, "-c", conf, "-e",
                                                 os.path.join(self.pfx, "error.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://{self.addr}:{port}"
        for _ in range(50):
            r = subprocess.run(self.pre + ["curl", "-s", "-o", "/dev/null", "--max-time", "1",
                                           url + "/"], timeout=10)
            if r.returncode == 0:
                self.url = url
                return url
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        return ""

    def error_log(self) -> str:
        try:
            with open(os.path.join(self.pfx, "error.log")) as f:
                return f.read()[-500:]
        except OSError:
            return ""

    def _log(self):
        out = []
        try:
            with open(os.path.join(self.pfx, "access.log")) as f:
                for line in f:
                    rest, method = line.rstrip("\n").rsplit(" ", 1)
                    addr, path, status, nbytes, rng = rest.split(" ", 4)
                    out.append((addr, path, int(status), int(nbytes), rng.strip('"').strip("-"),
                                method))
        except OSError:
            pass
        return out

    def access(self):
        """[(client address, path, status, body bytes, Range header or "")] of every request
        logged so far (nginx writes a line when its answer ends)."""
        return [e[:5] for e in self._log()]

    def gets(self, name) -> int:
        """How many GET requests for /name were logged so far."""
        return sum(1 for e in self._log() if e[5] == "GET" and e[1] == "/" + name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
