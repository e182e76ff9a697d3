# SPDX-License-Identifier: Apache-2.0
"""A fault-injecting HTTP/1.1 reverse proxy for the remote sources' tests (standard library).

    python3 faultproxy.py --upstream HOST:PORT --portfile FILE [--rules JSON|@FILE]
                          [--seed N] [--log FILE] [--max-seconds S]

listens on 127.0.0.1 (a free port, written to FILE once listening) and forwards every request
(any method, its body, its headers, Host included) to the upstream server over a keep-alive
connection of its own per client connection, relaying the answers, except where a rule says
otherwise. It exits by itself after --max-seconds (default 900), so that a test that forgets
it cannot leave it behind.

Rules are a JSON list, tried in order; the first whose filters match a request applies:
  {"action": A,            what to do (below)
   "path": REGEX,          only requests whose path (with query) matches (re.search)
   "method": "GET",        only this method
   "min_offset": N,        only requests with a Range starting at N or later (0 skips none;
                           1 lets the open's first ranged GET of every object through)
   "nth": [1, 3],          only the 1st and 3rd request that passed the filters above
   "prob": 0.2,            only with this probability (random.Random(--seed))
   "count": K,             at most K times in all
   ...parameters}
Actions:
  status       answer "status" (default 503) without asking upstream, with "retry_after"
               (seconds) as Retry-After when given, "body" (default: a short text) and
               "content_type" (default text/plain)
  reset        close the connection without an answer (RST)
  drop         relay the headers and "after" body bytes (default half), then reset
  truncate     relay a body cut to "after" bytes (default half) with a Content-Length that
               says so (a consistent but short answer)
  long         relay the body with "extra" (default 16) more bytes than asked for
  stall        relay the headers and "after" body bytes (default 0), then send nothing for
               "seconds" (default 30), then reset ("resume": true continues instead)
  delay        wait "seconds" before asking upstream (no first byte meanwhile), then relay
  slow         relay the body at "rate" bytes per second
  wrong_range  relay with a Content-Range shifted by "shift" (default 1) bytes
  full         ask upstream without Range and relay its 200 with the whole object
  change       the object changed: 412 to a request with If-Match or If-Unmodified-Since,
               otherwise relay with another ETag ("etag", default "\\"changed\\"")
  pass         relay unchanged (a rule to let some requests through before a broader one)
Control (not forwarded): GET /__faultproxy__/stats gives {connections, requests, applied:
[per rule], log: [{n, conn, method, path, range, action, status}], inflight_max: the most
requests being answered at once (a request counts until just before its last body byte is
sent)}; PUT or POST
/__faultproxy__/rules with a JSON list replaces the rules and resets every counter (requests
begun before are answered by the old rules and left out of the log).
--log FILE appends one line per request: n conn method path range action status.
"""
import argparse
import http.client
import http.server
import json
import os
import random
import re
import socket
import socketserver
import struct
import sys
import threading
import time

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
       "upgrade", "proxy-authorization", "proxy-authenticate"}
PIECE = 64 << 10
MAX_SLEEP = 300.0


class State:
    def __init__(self, rules, seed, logfile):
        self.lock = threading.Lock()
        self.seed = seed
        self.logfile = logfile
        self.generation = 0
        self.set_rules(rules)

    def set_rules(self, rules):
        if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
            raise ValueError("rules must be a JSON list of objects")
        for r in rules:
            if r.get("action") not in ACTIONS:
                raise ValueError("unknown action %r" % r.get("action"))
        with self.lock:
            self.rules = rules
            # Requests still being answered when the rules change belong to the earlier
            # case: their lines (written when the answer ends, maybe after the caller
            # emptied the log) are left out of the log.
            self.generation += 1
            self.passed = [0] * len(rules)   # requests that passed each rule's filters
            self.applied = [0] * len(rules)
            self.rng = random.Random(self.seed)
            self.requests = 0
            self.connections = 0
            self.log = []
            self.busy = 0        # requests being answered (the last body byte not yet sent)
            self.busy_max = 0

    def new_connection(self):
        with self.lock:
            self.connections += 1
            return self.connections

    def choose(self, method, path, range_first, conn):
        """The request's number and the rule that applies to it (or None)."""
        with self.lock:
            self.requests += 1
            n = self.requests
            for i, r in enumerate(self.rules):
                if "path" in r and not re.search(r["path"], path):
                    continue
                if "method" in r and r["method"] != method:
                    continue
                if r.get("min_offset", 0) and (range_first is None or range_first < r["min_offset"]):
                    continue
                self.passed[i] += 1
                if "nth" in r and self.passed[i] not in r["nth"]:
                    continue
                if "prob" in r and self.rng.random() >= r["prob"]:
                    continue
                if "count" in r and self.applied[i] >= r["count"]:
                    continue
                self.applied[i] += 1
                return n, r
            return n, None

    def begin(self, generation):
        with self.lock:
            if generation == self.generation:
                self.busy += 1
                self.busy_max = max(self.busy_max, self.busy)

    def end(self, entry, generation):
        """Once per request, before its last body byte goes out (so a client that starts the
        next request after receiving the answer never finds this one still counted)."""
        if entry.pop("_busy", None):
            with self.lock:
                if generation == self.generation:
                    self.busy -= 1

    def record(self, entry, generation):
        with self.lock:
            if generation != self.generation:
                return
            self.log.append(entry)
            if self.logfile:
                with open(self.logfile, "a") as f:
                    f.write("%(n)d %(conn)d %(method)s %(path)s %(range)s %(action)s %(status)s\n" % entry)

    def stats(self):
        with self.lock:
            return {"connections": self.connections, "requests": self.requests,
                    "applied": list(self.applied), "log": list(self.log),
                    "inflight_max": self.busy_max}


ACTIONS = {"status", "reset", "drop", "truncate", "long", "stall", "delay", "slow", "wrong_range",
           "full", "change", "pass"}


class Reset(Exception):
    """Close the client connection with a reset."""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faultproxy"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        self.conn_id = STATE.new_connection()
        self.up = None

    def finish(self):
        try:
            super().finish()
        finally:
            if self.up:
                self.up.close()

    def reset(self):
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        raise Reset()

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except Reset:
            self.close_connection = True
        except (ConnectionError, BrokenPipeError, socket.timeout):
            self.close_connection = True

    def __getattr__(self, name):
        if name.startswith("do_"):
            return self.any_method
        raise AttributeError(name)

    def control(self, body):
        if self.path.startswith("/__faultproxy__/stats"):
            out = json.dumps(STATE.stats()).encode()
            code = 200
        elif self.path.startswith("/__faultproxy__/rules") and self.command in ("PUT", "POST"):
            try:
                STATE.set_rules(json.loads(body or b"[]"))
                out, code = b"{}", 200
            except ValueError as e:
                out, code = json.dumps({"error": str(e)}).encode(), 400
        else:
            out, code = b"{}", 404
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def upstream(self):
        if self.up is None:
            self.up = http.client.HTTPConnection(UPSTREAM[0], UPSTREAM[1], timeout=120)
        return self.up

    def any_method(self):
        n_body = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n_body) if n_body else None
        if self.path.startswith("/__faultproxy__/"):
            self.control(body)
            return
        rng = self.headers.get("Range")
        m = re.fullmatch(r"\s*bytes=(\d+)-(\d*)\s*", rng or "")
        first = int(m.group(1)) if m else None
        generation = STATE.generation
        n, rule = STATE.choose(self.command, self.path, first, self.conn_id)
        action = rule["action"] if rule else "pass"
        entry = {"n": n, "conn": self.conn_id, "method": self.command, "path": self.path,
                 "range": rng.replace(" ", "") if rng else "-", "action": action, "status": "-",
                 "_busy": True, "_gen": generation}
        STATE.begin(generation)
        try:
            self.serve(rule or {"action": "pass"}, body, entry)
        finally:
            STATE.end(entry, generation)
            entry.pop("_gen", None)
            STATE.record(entry, generation)

    def answer(self, code, headers, body, entry):
        entry["status"] = code
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        if self.command == "HEAD" or not body:
            STATE.end(entry, entry.get("_gen"))
        self.end_headers()
        if self.command != "HEAD" and body:
            STATE.end(entry, entry.get("_gen"))
            self.wfile.write(body)

    def serve(self, rule, body, entry):
        action = rule["action"]
        if action == "status":
            code = int(rule.get("status", 503))
            hdrs = [("Content-Type", rule.get("content_type", "text/plain"))]
            if "retry_after" in rule:
                hdrs.append(("Retry-After", str(rule["retry_after"])))
            self.answer(code, hdrs, rule.get("body", "injected %d\n" % code).encode(), entry)
            return
        if action == "reset":
            self.reset()
        if action == "change" and (self.headers.get("If-Match") or self.headers.get("If-Unmodified-Since")):
            self.answer(412, [("Content-Type", "text/plain")], b"precondition failed\n", entry)
            return
        if action == "delay":
            time.sleep(min(float(rule.get("seconds", 5)), MAX_SLEEP))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        if action == "full":
            headers = {k: v for k, v in headers.items() if k.lower() not in ("range", "if-range")}
        up = self.upstream()
        try:
            up.request(self.command, self.path, body=body, headers=headers)
            resp = up.getresponse()
        except (OSError, http.client.HTTPException):
            up.close()
            self.up = None
            self.answer(502, [("Content-Type", "text/plain")], b"upstream failed\n", entry)
            return
        length = resp.getheader("Content-Length")
        length = int(length) if length is not None else None
        out_headers = [(k, v) for k, v in resp.getheaders()
                       if k.lower() not in HOP and k.lower() != "content-length"]
        send_len = length
        if action in ("truncate",) and length is not None:
            send_len = int(rule.get("after", length // 2))
        if action == "long" and length is not None:
            send_len = length + int(rule.get("extra", 16))
        if action == "wrong_range":
            shift = int(rule.get("shift", 1))
            fixed = []
            for k, v in out_headers:
                mm = re.fullmatch(r"bytes (\d+)-(\d+)/(\S+)", v) if k.lower() == "content-range" else None
                if mm:
                    v = "bytes %d-%d/%s" % (int(mm.group(1)) + shift, int(mm.group(2)) + shift, mm.group(3))
                fixed.append((k, v))
            out_headers = fixed
        if action == "change":
            out_headers = [(k, rule.get("etag", '"changed"') if k.lower() == "etag" else v)
                           for k, v in out_headers]
        entry["status"] = resp.status
        self.send_response(resp.status)
        for k, v in out_headers:
            self.send_header(k, v)
        if send_len is not None:
            self.send_header("Content-Length", str(send_len))
        else:
            self.close_connection = True
        self.end_headers()
        if self.command == "HEAD":
            resp.read()
            return
        cut = None
        if action in ("drop", "stall"):
            cut = int(rule.get("after", (length or 0) // 2 if action == "drop" else 0))
        if action == "truncate":
            cut = send_len
        rate = float(rule["rate"]) if action == "slow" else None
        sent = 0
        t0 = time.monotonic()
        while True:
            want = PIECE if cut is None else min(PIECE, cut - sent)
            if want <= 0:
                break
            piece = resp.read(want)
            if not piece:
                break
            if cut is None and send_len is not None and sent + len(piece) >= send_len:
                STATE.end(entry, entry.get("_gen"))
            self.wfile.write(piece)
            sent += len(piece)
            if rate:
                ahead = sent / rate - (time.monotonic() - t0)
                if ahead > 0:
                    self.wfile.flush()
                    time.sleep(min(ahead, MAX_SLEEP))
        if cut is not None:
            self.wfile.flush()
            if action == "stall":
                time.sleep(min(float(rule.get("seconds", 30)), MAX_SLEEP))
                if rule.get("resume"):
                    while True:
                        piece = resp.read(PIECE)
                        if not piece:
                            break
                        self.wfile.write(piece)
                    return
            # The rest of the upstream answer is abandoned with its connection.
            up.close()
            self.up = None
            if action == "truncate":
                return
            self.reset()
        if action == "long":
            self.wfile.write(b"\0" * int(rule.get("extra", 16)))
            self.close_connection = True


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # clients that stop reading (as they must on a fault) are expected


def main():
    global STATE, UPSTREAM
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the real server")
    ap.add_argument("--portfile", required=True)
    ap.add_argument("--rules", default="[]", help="a JSON list, or @FILE")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--log")
    ap.add_argument("--max-seconds", type=float, default=900)
    a = ap.parse_args()
    host, _, port = a.upstream.rpartition(":")
    UPSTREAM = (host or "127.0.0.1", int(port))
    rules = a.rules
    if rules.startswith("@"):
        with open(rules[1:]) as f:
            rules = f.read()
    STATE = State(json.loads(rules), a.seed, a.log)
    srv = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    with open(a.portfile + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(a.portfile + ".tmp", a.portfile)
    time.sleep(a.max_seconds)
    sys.exit(0)


STATE = None
UPSTREAM = None
if __name__ == "__main__":
    main()
