# SPDX-License-Identifier: Apache-2.0
"""A misbehaving HTTP server for the HTTP source's tests (127.0.0.1 only, standard library).

    python3 badserver.py ROOT PORTFILE

serves the files under ROOT and writes its port to PORTFILE once listening. The first path
segment picks the misbehaviour; each applies to ranged requests that do not start at 0, so
that the open (a ranged GET of the first bytes) succeeds and the load meets the fault:
  /ok/F          well-behaved ranged answers
  /short/F       the body stops halfway (the connection is closed)
  /wrongrange/F  206 with a Content-Range one byte later than asked
  /etag/F        a different ETag on every answer
  /grow/F        a Content-Range total one byte larger than the file
"""
import http.server
import os
import re
import sys
import threading

ROOT, PORTFILE = sys.argv[1], sys.argv[2]
COUNT = [0]
LOCK = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        parts = self.path.lstrip("/").split("/", 1)
        if len(parts) != 2 or parts[0] not in ("ok", "short", "wrongrange", "etag", "grow"):
            self.send_error(404)
            return
        mode, rel = parts
        path = os.path.join(ROOT, rel)
        if ".." in rel.split("/") or not os.path.isfile(path):
            self.send_error(404)
            return
        data = open(path, "rb").read()
        size = len(data)
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        if not m:
            self.send_error(400)
            return
        first, last = int(m.group(1)), min(int(m.group(2)), size - 1)
        body = data[first:last + 1]
        faulty = first != 0
        with LOCK:
            COUNT[0] += 1
            n = COUNT[0]
        cr_first, cr_total = first, size
        etag = '"v1"'
        if faulty and mode == "wrongrange":
            cr_first += 1
        if faulty and mode == "grow":
            cr_total += 1
        if faulty and mode == "etag":
            etag = '"v%d"' % n
        self.send_response(206)
        self.send_header("Content-Range", "bytes %d-%d/%d" % (cr_first, cr_first + len(body) - 1, cr_total))
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.end_headers()
        if faulty and mode == "short":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # clients that stop reading (as they must on a fault) are expected


srv = Server(("127.0.0.1", 0), Handler)
srv.daemon_threads = True
with open(PORTFILE + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(PORTFILE + ".tmp", PORTFILE)
srv.serve_forever()
