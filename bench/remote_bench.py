#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Remote benchmark (issue 10 point 11): a checkpoint served by nginx over http:// and as a
path-style S3 endpoint, read by curl, aria2c, boto3, the Run:ai streamer and weightlift (with and
without the write-through cache, then from the warm cache) in one run, first on loopback, then
across an emulated link: nginx in a network namespace of ours, the clients in another, joined by
a TUN pair whose forwarder (build/delayline, bench/delayline.c) holds every packet for the delay,
the rate capped by tc tbf on both devices. Run it through bench/remote.sh, which installs and
builds what it needs.

What each row measures (throughput = tensor-file bytes / seconds, GB = 1e9 bytes):
  curl            one process, every shard one after the other on one connection, to /dev/null
  curl -Z         every shard at once, one connection each, to /dev/null
  curl -Z shm     the same into /dev/shm (tmpfs: memory, as a loader's destination is)
  aria2c -x8 -s8  every shard (5 at once, aria2c's -j default), 8 connections each, into
                  /dev/shm (tmpfs: memory), each file deleted when complete
  boto3           download_fileobj of each shard into a BytesIO kept until the end (default
                  TransferConfig: 10 threads, 8 MiB parts), time from the client's creation
  runai           runai_model_streamer SafetensorsStreamer.stream_files over s3:// (the
                  runai-model-streamer-s3 backend, path style), every tensor kept
  weightlift      `weightlift load --json` of the index; its own open_s + seconds (open + load
                  into the tensors' memory; process start and the final munmap excluded)
  ... cache       the same with WEIGHTLIFT_CACHE_DIR (an empty directory: every byte is also
                  written to the cache), then "warm": the same load again from that cache
                  (the fill writes O_DIRECT, so the entry is not in the page cache: compare it
                  with "local file (cold)"), then once more with the entry read into the page
                  cache first (compare with "local file (hot)")
  local           `weightlift load` of the local files (page cache hot): the local-file figure;
                  on loopback also cold (their pages dropped with POSIX_FADV_DONTNEED first)
The server's files are in the page cache (read before every round). Every case runs in a process
of its own; cases rotate their order every round; with --prime (default) model-size memory is
faulted in and freed before each case (bench/local_bench.py explains why on this VM).

usage: remote_bench.py CKPT_DIR [--rounds 3] [--link-rounds 2] [--no-loopback] [--no-link]
                       [--delay-ms 25] [--rate 2gbit] [--reqs "4 64"] [--json OUT] [--quick]
       remote_bench.py --one boto3|runai ...   (one Python peer in this process; JSON out)
"""
import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WL = os.environ.get("WEIGHTLIFT_CLI", os.path.join(ROOT, "build", "weightlift"))
DELAYLINE = os.path.join(ROOT, "build", "delayline")
BUCKET = "bench-bucket"
S3_ENV = {
    # Signed with dummy keys; nginx ignores the signature. Path style: /bucket/key.
    "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret",
    "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING": "0",
    "AWS_S3_ADDRESSING_STYLE": "path", "WEIGHTLIFT_S3_ADDRESSING": "path",
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sh(argv, env=None, timeout=900, check=True, **kw):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run(argv, env=e, timeout=timeout, capture_output=True, text=True, **kw)
    if check and r.returncode:
        raise RuntimeError(f"{' '.join(argv[:6])}: exit {r.returncode}: "
                           f"{(r.stderr or r.stdout).strip()[-400:]}")
    return r


def prime(nbytes):
    import numpy as np
    a = np.empty(nbytes, np.uint8)
    a.fill(1)
    del a


def warm(files):
    for f in files:
        with open(f, "rb", buffering=0) as fh:
            while fh.read(64 << 20):
                pass


# ---------------------------------------------------------------- the Python peers (--one)

def one_boto3(a):
    import io
    import boto3
    from botocore.config import Config
    t0 = time.perf_counter()
    s3 = boto3.client("s3", endpoint_url=a.endpoint,
                      config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    keep = []
    for k in a.keys.split(","):
        b = io.BytesIO()
        s3.download_fileobj(BUCKET, k, b)
        keep.append(b)
    t = time.perf_counter() - t0
    return {"seconds": t, "bytes": sum(b.getbuffer().nbytes for b in keep)}


def one_runai(a):
    from runai_model_streamer import SafetensorsStreamer
    t0 = time.perf_counter()
    keep, n = [], 0
    with SafetensorsStreamer() as s:
        s.stream_files([f"s3://{BUCKET}/{k}" for k in a.keys.split(",")])
        for _, t in s.get_tensors():
            keep.append(t)
            n += t.numel() * t.element_size()
    return {"seconds": time.perf_counter() - t0, "bytes": n}


# ---------------------------------------------------------------- servers and the link

class Nginx:
    """nginx serving WWW at / and as path-style S3 at /bench-bucket/ (signature ignored), on
    ADDR:PORT, optionally inside a network namespace. The configuration follows
    tests/http/nginx.sh (sendfile on, tcp_nopush off: TCP_CORK holds the tail of a response)."""

    def __init__(self, www, pfx, addr, ns=None):
        self.www, self.pfx, self.addr, self.ns = www, pfx, addr, ns
        self.proc = None

    def start(self, client_ns=None):
        os.makedirs(os.path.join(self.pfx, "tmp"), exist_ok=True)
        for _ in range(5):
            self.port = free_port()
            conf = os.path.join(self.pfx, "nginx.conf")
            with open(conf, "w") as f:
                f.write(self.conf())
            pre = ["ip", "netns", "exec", self.ns] if self.ns else []
            self.proc = subprocess.Popen(pre + [nginx_bin(), "-p", self.pfx, "-c", conf, "-e",
                                                os.path.join(self.pfx, "error.log")],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.url = f"http://{self.addr}:{self.port}"
            cpre = ["ip", "netns", "exec", client_ns] if client_ns else []
            for _ in range(50):
                if subprocess.run(cpre + ["curl", "-s", "-o", "/dev/null", "--max-time", "1",
                                          self.url + "/"]).returncode == 0:
                    return self
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
            self.stop()
        raise RuntimeError("nginx did not start: " + open(os.path.join(self.pfx, "error.log")).read()[-500:])

    def conf(self):
        p, w = self.pfx, self.www
        user = "user root;\n" if os.getuid() == 0 else ""
        listen = f"{self.addr}:{self.port}" if not self.ns else str(self.port)
        return f"""{user}daemon off;
worker_processes 2;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 1024; }}
http {{
	log_format t '$msec $request_time $request_method $uri $status $body_bytes_sent "$http_range" $connection';
	access_log {p}/access.log t;
	client_body_temp_path {p}/tmp/body;
	proxy_temp_path {p}/tmp/proxy;
	fastcgi_temp_path {p}/tmp/fastcgi;
	uwsgi_temp_path {p}/tmp/uwsgi;
	scgi_temp_path {p}/tmp/scgi;
	default_type application/octet-stream;
	sendfile on;
	tcp_nopush off;
	keepalive_requests 100000;
	keepalive_timeout 300s;
	server {{
		listen {listen};
		root {w};
		location /{BUCKET}/ {{ alias {w}/; }}
	}}
}}
"""

    def access_lines(self):
        try:
            with open(os.path.join(self.pfx, "access.log")) as f:
                return f.readlines()
        except OSError:
            return []

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def nginx_bin():
    return shutil.which("nginx") or "/usr/sbin/nginx"


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Link:
    """Two namespaces of ours (clients, server) joined by the delay line's TUN pair; tbf caps
    both devices' egress. Everything goes when stop() runs (or the process dies: the delay line
    has PR_SET_PDEATHSIG and takes its devices with it; the namespaces are deleted by stop)."""
    CLI, SRV = "10.231.0.1", "10.231.0.2"

    def __init__(self, tag):
        self.cns, self.sns = f"wlb-cli-{tag}", f"wlb-srv-{tag}"
        self.cdev, self.sdev = f"wlbc{tag}"[:15], f"wlbs{tag}"[:15]
        self.dl = None
        self.made = []

    def setup(self):
        for ns in (self.cns, self.sns):
            sh(["ip", "netns", "add", ns])
            self.made.append(ns)
            sh(["ip", "-n", ns, "link", "set", "lo", "up"])

    def line(self, delay_ms, rate=None):
        """(Re)start the delay line with DELAY_MS each way and the cap RATE (tc syntax) or none."""
        self.stop_line()
        self.dl = subprocess.Popen([DELAYLINE, "--ns-a", f"/run/netns/{self.cns}", "--ns-b",
                                    f"/run/netns/{self.sns}", "--dev-a", self.cdev, "--dev-b",
                                    self.sdev, "--delay-ms", str(delay_ms), "--gso", "--rt"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if self.dl.stdout.readline().strip() != "ready":
            raise RuntimeError("delayline: " + self.dl.stderr.read())
        for ns, dev, a, b in ((self.cns, self.cdev, self.CLI, self.SRV),
                              (self.sns, self.sdev, self.SRV, self.CLI)):
            sh(["ip", "-n", ns, "addr", "add", a, "peer", b, "dev", dev])
            # GSO packets of at most 60000 bytes: tbf splits any packet whose length, counted
            # with a header per segment, exceeds 65535 bytes (its largest burst unit), and a
            # 64 KiB super-packet does; split, the line carries 1500-byte packets at ~1/6 of the
            # rate (measured: 490 k packets of 1.5 kB, 0.11 GB/s for one stream).
            sh(["ip", "-n", ns, "link", "set", dev, "gso_max_size", "60000", "up"])
            if rate:
                # burst 1 MiB: at least one 64 KiB GSO packet (tbf would split larger ones) and
                # 4 ms at 2 Gbit/s; latency 25 ms of queue (about half the link's BDP).
                sh(["ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root",
                    "tbf", "rate", rate, "burst", "1mb", "latency", "25ms"])

    def stop_line(self):
        if self.dl:
            self.dl.terminate()
            try:
                _, err = self.dl.communicate(timeout=5)
                self.dl_report = err.strip()
            except subprocess.TimeoutExpired:
                self.dl.kill()
                self.dl.wait(5)
            self.dl = None

    def stop(self):
        self.stop_line()
        for ns in self.made:
            subprocess.run(["ip", "netns", "del", ns], timeout=10)
        self.made = []


def ping(ns, addr, n=20):
    pre = ["ip", "netns", "exec", ns] if ns else []
    out = sh(pre + ["ping", "-q", "-c", str(n), "-i", "0.05", addr], timeout=60).stdout
    # rtt min/avg/max/mdev = 0.036/0.045/0.057/0.006 ms
    v = out.strip().splitlines()[-1].split("=")[1].split()[0].split("/")
    return {"min_ms": float(v[0]), "avg_ms": float(v[1]), "max_ms": float(v[2])}


# ---------------------------------------------------------------- cases

class Site:
    def __init__(self, name, nginx, ns, files, rate_bytes=None):
        self.name, self.nginx, self.ns, self.files = name, nginx, ns, files
        self.keys = [os.path.basename(f) for f in files]
        self.rate_bytes = rate_bytes
        self.link = None

    def tx_bytes(self):
        """Bytes the server's side of the link has sent (None on loopback): each row's count
        checks that the reader really moved the checkpoint across the link."""
        if not self.link:
            return None
        j = json.loads(sh(["ip", "-n", self.link.sns, "-s", "-j", "link", "show", "dev",
                           self.link.sdev]).stdout)
        return j[0]["stats64"]["tx"]["bytes"]

    def pre(self):
        return ["ip", "netns", "exec", self.ns] if self.ns else []

    def run(self, argv, env=None, timeout=900):
        t0 = time.perf_counter()
        r = sh(self.pre() + argv, env=env, timeout=timeout)
        return time.perf_counter() - t0, r.stdout


def case_curl(site, tmp):
    a = []
    for k in site.keys:
        a += ["-o", "/dev/null", f"{site.nginx.url}/{k}"]
    return {"curl": site.run(["curl", "-sf"] + a)[0]}


def case_curl_z(site, tmp):
    a = []
    for k in site.keys:
        a += ["-o", "/dev/null", f"{site.nginx.url}/{k}"]
    # --parallel-immediate: without it curl -Z waits to see whether the first connection
    # multiplexes, and ran the transfers at one connection's rate (measured: 0.12 GB/s with
    # 5 shards across the 50 ms link, 0.25 GB/s with 4 and this flag).
    return {"curl -Z": site.run(["curl", "-sf", "-Z", "--parallel-immediate", "--parallel-max",
                                 "64"] + a)[0]}


def case_curl_z_shm(site, tmp):
    # The same transfers into memory (tmpfs), as weightlift's land in its tensors: curl to
    # /dev/null never touches fresh pages, which on this 2-core VM is most of the difference
    # between it and a reader whose destination is memory (run 7: the pre-faulted transfer
    # stage beats curl -Z, the load with its first touches does not).
    d = tempfile.mkdtemp(prefix="wlb-curl.", dir="/dev/shm")
    try:
        a = []
        for i, k in enumerate(site.keys):
            a += ["-o", os.path.join(d, str(i)), f"{site.nginx.url}/{k}"]
        t = site.run(["curl", "-sf", "-Z", "--parallel-immediate", "--parallel-max", "64"] + a)[0]
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return {"curl -Z (into /dev/shm)": t}


def case_aria2(site, tmp):
    d = tempfile.mkdtemp(prefix="wlb-aria2.", dir="/dev/shm")
    hook = os.path.join(tmp, "aria2-rm.sh")
    with open(hook, "w") as f:
        f.write('#!/bin/sh\nrm -f "$3"\n')
    os.chmod(hook, 0o755)
    try:
        # An input file: URIs on aria2c's command line are mirrors of one file.
        lst = os.path.join(tmp, "aria2-uris")
        with open(lst, "w") as f:
            f.write("".join(f"{site.nginx.url}/{k}\n" for k in site.keys))
        t, _ = site.run(["aria2c", "-q", "-x", "8", "-s", "8", "--file-allocation=none",
                         "--allow-overwrite=true", "--auto-file-renaming=false",
                         f"--on-download-complete={hook}", "-d", d, "-i", lst])
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return {"aria2c -x8 -s8": t}


def py_peer(site, peer):
    py = sys.executable
    _, out = site.run([py, os.path.abspath(__file__), "--one", peer, "--endpoint",
                       site.nginx.url, "--keys", ",".join(site.keys)], env=s3_env(site))
    j = json.loads(out.strip().splitlines()[-1])
    want = sum(os.path.getsize(f) for f in site.files)
    if peer == "boto3" and j["bytes"] != want:
        raise RuntimeError(f"boto3 got {j['bytes']} bytes of {want}")
    return j["seconds"]


def case_boto3(site, tmp):
    return {"boto3 download_fileobj (S3)": py_peer(site, "boto3")}


def case_runai(site, tmp):
    return {"runai streamer (S3)": py_peer(site, "runai")}


def wl_load(site, uri, env=None, extra=()):
    e = dict(env or {})
    t, out = site.run([WL, "load", "--json", *extra, uri], env=e)
    j = json.loads(out)
    # "seconds" is the load after the open; a remote open (the headers' requests) is part of
    # the transfer, so both count.
    return j["open_s"] + j["seconds"], t, j


def case_wl_http(site, tmp, reqs=None):
    env = {"WEIGHTLIFT_HTTP_REQUESTS": str(reqs)} if reqs else None
    s, _, _ = wl_load(site, f"{site.nginx.url}/model.safetensors.index.json", env)
    return {f"weightlift http{f' {reqs} req' if reqs else ''}": s}


def case_wl_populated(site, tmp):
    """Diagnostic: the arena pre-faulted before the transfer (WEIGHTLIFT_POPULATE=1), timing
    the transfer stage alone (read_s): what the network path gives without this VM's cost of
    first touches of fresh memory (host faults: free page reporting)."""
    _, _, j = wl_load(site, f"{site.nginx.url}/model.safetensors.index.json",
                      {"WEIGHTLIFT_POPULATE": "1"})
    return {"weightlift http, arena pre-faulted (transfer stage only)": j["read_s"]}


def s3_env(site):
    e = dict(S3_ENV)
    e["AWS_ENDPOINT_URL"] = e["AWS_ENDPOINT_URL_S3"] = site.nginx.url
    return e


def case_wl_s3(site, tmp):
    s, _, _ = wl_load(site, f"s3://{BUCKET}/model.safetensors.index.json", s3_env(site))
    return {"weightlift s3": s}


def case_wl_cache(site, tmp):
    """Cold cache (empty directory: write-through), then warm (the same load again)."""
    cdir = os.path.join(CACHE_ROOT, "cache")
    shutil.rmtree(cdir, ignore_errors=True)
    os.makedirs(cdir)
    env = {"WEIGHTLIFT_CACHE_DIR": cdir}
    uri = f"{site.nginx.url}/model.safetensors.index.json"
    s1, _, _ = wl_load(site, uri, env)
    # Primed like every other case (bench/README: fault in and free model-size memory first):
    # run 6 timed the warm load straight after the cold one, on the memory the cold load had
    # just freed, and compared it with a primed local load.
    nb = sum(os.path.getsize(f) for f in site.files)
    prime(nb)
    s2, _, _ = wl_load(site, uri, env)
    # The fill wrote O_DIRECT (src/source/cache.c): the entry is not in the page cache, so the
    # load above read it from the disk, like "local file (cold)". Read into the page cache, it
    # compares with "local file (hot)".
    warm([os.path.join(cdir, f) for f in os.listdir(cdir) if f.endswith(".data")])
    prime(nb)
    s3, _, _ = wl_load(site, uri, env)
    shutil.rmtree(cdir, ignore_errors=True)
    return {"weightlift http + cache (cold)": s1, "weightlift http, warm cache": s2,
            "weightlift http, warm cache (entry in the page cache)": s3}


def drop_cached(files):
    """Drop the files' pages from the page cache (clean pages: no root needed)."""
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def case_local(site, tmp):
    idx = os.path.join(os.path.dirname(site.files[0]), "model.safetensors.index.json")
    s, _, _ = wl_load(Site("local", None, None, site.files), idx)
    out = {"weightlift local file (hot)": s}
    if site.nginx and site.nginx.ns is None:  # the server's files: loopback rounds only
        drop_cached(site.files)
        prime(sum(os.path.getsize(f) for f in site.files))
        s, _, _ = wl_load(Site("local", None, None, site.files), idx)
        warm(site.files)  # the server's files again, for the cases after this one
        out["weightlift local file (cold)"] = s
    return out


CACHE_ROOT = None


def detect(nginx, tmp):
    """Which weightlift features this build has: s3:// and the cache (tried on a tiny file)."""
    have = {}
    r = sh([WL, "inspect", "--json", f"s3://{BUCKET}/tiny.safetensors"],
           env=dict(S3_ENV, AWS_ENDPOINT_URL=nginx.url, AWS_ENDPOINT_URL_S3=nginx.url),
           check=False, timeout=60)
    if r.returncode == 0:
        have["s3"] = None
    else:
        msg = (r.stdout + r.stderr).strip()
        have["s3"] = ("skipped: not built yet" if "not supported" in msg or "not available" in msg
                      else "skipped: s3:// failed: " + msg[-300:])
    cdir = os.path.join(tmp, "cache-probe")
    os.makedirs(cdir, exist_ok=True)
    r = sh([WL, "load", "--json", f"{nginx.url}/tiny.safetensors"],
           env={"WEIGHTLIFT_CACHE_DIR": cdir}, check=False, timeout=60)
    found = any(files for _, _, files in os.walk(cdir))
    have["cache"] = None if r.returncode == 0 and found else "skipped: not built yet"
    return have


def median(v):
    return statistics.median(v) if v else None


def rounds(site, cases, n, nbytes, do_prime):
    res, err = {}, {}
    wire = {}
    for r in range(n):
        warm(site.files)
        order = cases[r % len(cases):] + cases[:r % len(cases)]
        log(f"[{site.name}] round {r + 1}/{n}, load {os.getloadavg()[0]:.1f}")
        for name, fn in order:
            if do_prime:
                prime(nbytes)
            tx0 = site.tx_bytes()
            try:
                got = fn(site, TMP)
            except Exception as e:  # a failing peer loses its row, not the run
                err[name] = str(e)[-300:]
                log(f"  {name}: FAILED {err[name]}")
                continue
            if tx0 is not None:
                wire.setdefault(name, []).append((site.tx_bytes() - tx0) / nbytes)
            for k, v in got.items():
                res.setdefault(k, []).append(v)
                log(f"  {k}: {v:.3f} s ({nbytes / v / 1e9:.3f} GB/s)"
                    + (f", {wire[name][-1]:.3f} x the bytes on the wire" if tx0 is not None else ""))
    if wire:
        err["_wire"] = wire
    return res, err


def table(title, res, nbytes, skipped, cap=None):
    lines = [f"### {title}", "", "| reader | GB/s | median s | runs, s |" + (" % of cap |" if cap else ""),
             "|---|---:|---:|---|" + ("---:|" if cap else "")]
    for k, v in res.items():
        m = median(v)
        row = f"| {k} | {nbytes / m / 1e9:.3f} | {m:.3f} | {', '.join(f'{x:.2f}' for x in v)} |"
        if cap:
            row += f" {100 * nbytes / m / cap:.0f}% |"
        lines.append(row)
    for k, why in skipped.items():
        lines.append(f"| {k} | {why} | | |" + (" |" if cap else ""))
    return "\n".join(lines)


def rate(res, k, nbytes):
    return nbytes / median(res[k]) if res.get(k) else None


def ratios(res, nbytes, cap=None):
    out = []
    peers = [k for k in ("curl", "curl -Z", "aria2c -x8 -s8", "boto3 download_fileobj (S3)")
             if res.get(k)]
    best = max(peers, key=lambda k: rate(res, k, nbytes)) if peers else None
    for wl in ("weightlift http", "weightlift s3"):
        w = rate(res, wl, nbytes)
        if not w:
            continue
        if best:
            out.append(f"- {wl} / best of curl, curl -Z, aria2c, boto3 ({best}): "
                       f"**{w / rate(res, best, nbytes):.2f}** (target >= 1.0)")
        if res.get("curl -Z (into /dev/shm)"):
            out.append(f"- {wl} / curl -Z into memory: "
                       f"**{w / rate(res, 'curl -Z (into /dev/shm)', nbytes):.2f}**")
        if res.get("runai streamer (S3)"):
            out.append(f"- {wl} / runai streamer: **{w / rate(res, 'runai streamer (S3)', nbytes):.2f}**"
                       " (target >= 1.5)")
        if cap:
            out.append(f"- {wl} / cap ({cap * 8 / 1e9:.1f} Gbit/s): **{w / cap:.2f}** (target >= 0.90)")
            slower = [k for k in res if not k.startswith("weightlift") and rate(res, k, nbytes) >= w]
            out.append(f"- peers at or above {wl}: {', '.join(slower) or 'none'}")
    c, h = rate(res, "weightlift http + cache (cold)", nbytes), rate(res, "weightlift http", nbytes)
    if c and h:
        out.append(f"- write-through cache: cache / no cache = **{c / h:.2f}** (target >= 0.90)")
    for wk, lk in (("weightlift http, warm cache", "weightlift local file (cold)"),
                   ("weightlift http, warm cache (entry in the page cache)",
                    "weightlift local file (hot)")):
        wm, loc = rate(res, wk, nbytes), rate(res, lk, nbytes)
        if wm and loc:
            out.append(f"- {wk[len('weightlift http, '):]} / {lk[len('weightlift '):]}: "
                       f"**{wm / loc:.2f}** (target ~1.0)")
    return out


def ttft(site, rtt_ms, n=3):
    """Time to the first tensor, new process and connection each: the smallest tensor of the
    first shard (its transfer is negligible), in round trips of the link."""
    with open(site.files[0], "rb") as f:
        hl = int.from_bytes(f.read(8), "little")
        hdr = json.loads(f.read(hl))
    name = min((k for k in hdr if k != "__metadata__"),
               key=lambda k: hdr[k]["data_offsets"][1] - hdr[k]["data_offsets"][0])
    uri = f"{site.nginx.url}/{site.keys[0]}"
    out = []
    for _ in range(n):
        before = len(site.nginx.access_lines())
        s, wall, j = wl_load(site, uri, extra=("--names", name))
        time.sleep(0.2)
        reqs = len(site.nginx.access_lines()) - before
        out.append({"seconds": s, "open_s": j["open_s"], "wall_s": wall, "requests": reqs,
                    "rtts": s / (rtt_ms / 1e3), "open_rtts": j["open_s"] / (rtt_ms / 1e3)})
    return name, out


def main():
    global TMP, CACHE_ROOT
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt", nargs="?")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--link-rounds", type=int, default=2)
    ap.add_argument("--no-loopback", action="store_true")
    ap.add_argument("--no-link", action="store_true")
    ap.add_argument("--no-prime", action="store_true")
    ap.add_argument("--delay-ms", type=float, default=25)
    ap.add_argument("--rate", default="2gbit")
    ap.add_argument("--reqs", default="", help="extra WEIGHTLIFT_HTTP_REQUESTS rows")
    ap.add_argument("--only", help="regular expression: run only the cases whose name matches")
    ap.add_argument("--json")
    ap.add_argument("--cache-root", help="where the cache cases write (default: beside the checkpoint)")
    ap.add_argument("--one")
    ap.add_argument("--endpoint")
    ap.add_argument("--keys")
    a = ap.parse_args()
    # SIGTERM (remote.sh's trap, timeout) unwinds through the finally below: nginx, the delay
    # line and the namespaces go.
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if a.one:
        print(json.dumps({"boto3": one_boto3, "runai": one_runai}[a.one](a)))
        return
    ckpt = os.path.abspath(a.ckpt)
    files = sorted(glob.glob(os.path.join(ckpt, "*.safetensors")))
    nbytes = sum(os.path.getsize(f) for f in files)
    TMP = tempfile.mkdtemp(prefix="wlb-remote.")
    CACHE_ROOT = tempfile.mkdtemp(prefix="wlb-cache.", dir=a.cache_root or os.path.dirname(ckpt))
    www = os.path.join(TMP, "www")
    os.makedirs(www)
    for f in files + [os.path.join(ckpt, "model.safetensors.index.json")]:
        os.symlink(f, os.path.join(www, os.path.basename(f)))
    hdr = json.dumps({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    hdr += b" " * (-len(hdr) % 8)
    with open(os.path.join(www, "tiny.safetensors"), "wb") as f:
        f.write(len(hdr).to_bytes(8, "little") + hdr + bytes(16))
    load0 = os.getloadavg()
    report = {"machine": machine(), "bytes": nbytes, "files": len(files), "load_start": load0}
    md = [f"machine: {report['machine']}; {nbytes} bytes ({nbytes / 2**30:.2f} GiB) in {len(files)} "
          f"shards; load average at start {load0[0]:.1f}"]
    servers, link = [], None
    try:
        lo = Nginx(www, os.path.join(TMP, "nginx-lo"), "127.0.0.1").start()
        servers.append(lo)
        have = detect(lo, TMP)
        report["features"] = have
        log(f"weightlift features: {have}")
        cases = [("curl", case_curl), ("curl -Z", case_curl_z),
                 ("curl -Z shm", case_curl_z_shm), ("boto3", case_boto3),
                 ("runai", case_runai), ("weightlift http", case_wl_http),
                 ("weightlift populated", case_wl_populated)]
        if shutil.which("aria2c"):
            cases.insert(2, ("aria2c", case_aria2))
        for rq in a.reqs.split():
            cases.append((f"weightlift {rq} req", lambda s, t, rq=int(rq): case_wl_http(s, t, rq)))
        skipped = {}
        if have["s3"] is None:
            cases.append(("weightlift s3", case_wl_s3))
        else:
            skipped["weightlift s3"] = have["s3"]
        if have["cache"] is None:
            cases.append(("weightlift cache", case_wl_cache))
        else:
            skipped["weightlift http + cache (cold), warm cache"] = have["cache"]
        if a.only:
            import re
            cases = [c for c in cases if re.search(a.only, c[0])]
        if not a.no_loopback:
            site = Site("loopback", lo, None, files)
            res, err = rounds(site, cases + [("local", case_local)], a.rounds, nbytes, not a.no_prime)
            report["loopback"] = {"runs": res, "errors": err}
            md += ["", table(f"Loopback nginx (127.0.0.1), median of {a.rounds}", res, nbytes,
                             dict(skipped, **{k: "failed: " + v for k, v in err.items() if k[0] != "_"}))]
            md += [""] + ratios(res, nbytes)
        if not a.no_link and os.getuid() == 0:
            link = Link(str(os.getpid()))
            link.setup()
            srv = Nginx(www, os.path.join(TMP, "nginx-ns"), Link.SRV, ns=link.sns)
            # The delay line's own ceiling: no delay and no cap, then the delay without the cap.
            ceil = {"ping_loopback": ping(None, "127.0.0.1")}
            link.line(0)
            srv.start(client_ns=link.cns)
            servers.append(srv)
            site = Site("link", srv, link.cns, files)
            warm(files)
            ceil["ping_0ms"] = ping(link.cns, Link.SRV)
            ceil["curl_1_0ms_s"] = case_curl(Site("c", srv, link.cns, files[:1]), TMP)["curl"]
            ceil["curl_Z_0ms_s"] = case_curl_z(site, TMP)["curl -Z"]
            link.line(a.delay_ms)
            ceil["ping_delay"] = ping(link.cns, Link.SRV)
            ceil["curl_Z_delay_s"] = case_curl_z(site, TMP)["curl -Z"]
            link.line(a.delay_ms, a.rate)
            ceil["ping_delay_cap"] = ping(link.cns, Link.SRV)
            ceil["delayline_report"] = getattr(link, "dl_report", "")
            report["delayline"] = ceil
            b1 = os.path.getsize(files[0])
            md += ["", "### Delay line ceiling (bench/delayline.c, GSO, no cap)", "",
                   f"- ping RTT: loopback {ceil['ping_loopback']['avg_ms']:.3f} ms; through the line "
                   f"at 0 ms {ceil['ping_0ms']['avg_ms']:.3f} ms (min {ceil['ping_0ms']['min_ms']:.3f}); "
                   f"at {a.delay_ms:g} ms each way {ceil['ping_delay']['avg_ms']:.2f} ms "
                   f"(min {ceil['ping_delay']['min_ms']:.2f}, max {ceil['ping_delay']['max_ms']:.2f}); "
                   f"with the {a.rate} cap {ceil['ping_delay_cap']['avg_ms']:.2f} ms",
                   f"- TCP through the line at 0 ms: one stream {b1 / ceil['curl_1_0ms_s'] / 1e9:.3f} GB/s, "
                   f"{len(files)} streams (curl -Z) {nbytes / ceil['curl_Z_0ms_s'] / 1e9:.3f} GB/s; "
                   f"at {a.delay_ms:g} ms, no cap, {len(files)} streams {nbytes / ceil['curl_Z_delay_s'] / 1e9:.3f} GB/s"]
            rtt = ceil["ping_delay_cap"]["min_ms"]
            cap = parse_rate(a.rate)
            site = Site("link", srv, link.cns, files)
            site.link = link
            res, err = rounds(site, cases, a.link_rounds, nbytes, not a.no_prime)
            report["link"] = {"runs": res, "errors": err, "cap_bytes_per_s": cap, "rtt_ms": rtt}
            md += ["", table(f"Across the emulated link ({a.rate}, {2 * a.delay_ms:g} ms RTT), "
                             f"median of {a.link_rounds}", res, nbytes,
                             dict(skipped, **{k: "failed: " + v for k, v in err.items() if k[0] != "_"}), cap)]
            md += ["", "Bytes the server sent across the link / checkpoint bytes, per case: "
                   + ", ".join(f"{k} {median(v):.3f}" for k, v in err.get("_wire", {}).items())]
            md += [""] + ratios(res, nbytes, cap)
            # Twice: with the server's congestion control as this machine sets it (bbr here,
            # which paces a young connection's second answer: the data answer came in three
            # bursts 3.5 ms apart, tcpdump 2026-12-02 23:20), then with Linux's default, cubic,
            # set on the server's route to the client (`ip route ... congctl`: the sysctl is
            # not writable in these namespaces): what the server adds, apart from what we do.
            cc0 = open("/proc/sys/net/ipv4/tcp_congestion_control").read().strip()
            route = ["ip", "-n", link.sns, "route", "replace", Link.CLI, "dev", link.sdev,
                     "src", Link.SRV]
            report["ttft"] = {}
            for cc in dict.fromkeys([cc0, "cubic"]):
                sh(route + (["congctl", cc] if cc != cc0 else []))
                name, tt = ttft(site, rtt)
                report["ttft"][cc] = {"tensor": name, "runs": tt}
                md += ["", f"Time to first tensor over the link, server congestion control {cc} "
                       f"(`load --names {name}` of the first shard, a new process and connection "
                       f"each; RTT {rtt:.1f} ms): "
                       + "; ".join(f"{x['seconds'] * 1e3:.0f} ms = **{x['rtts']:.2f} RTT** "
                                   f"(open {x['open_rtts']:.2f} RTT, {x['requests']} requests)"
                                   for x in tt)]
            sh(route)
            link.stop_line()
            report["delayline"]["report_end"] = getattr(link, "dl_report", "")
        elif not a.no_link:
            md += ["", "link: skipped (needs root for network namespaces)"]
    finally:
        for s in servers:
            s.stop()
        if link:
            link.stop()
        shutil.rmtree(TMP, ignore_errors=True)
        shutil.rmtree(CACHE_ROOT, ignore_errors=True)
    report["load_end"] = os.getloadavg()
    md.append(f"\nload average at end {report['load_end'][0]:.1f}")
    print("\n".join(md))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)


def parse_rate(s):
    s = s.lower()
    for suf, m in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if s.endswith(suf):
            return float(s[:-len(suf)]) * m / 8
    return float(s) / 8


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    ng = subprocess.run([nginx_bin(), "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.1f} GiB, kernel {os.uname().release}, "
            f"nginx {ng}")


TMP = None
if __name__ == "__main__":
    main()
