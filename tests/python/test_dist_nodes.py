# SPDX-License-Identifier: Apache-2.0
"""Many nodes, one remote checkpoint (issue 12 point 8, docs/distributed.md): NODES network
namespaces of the test's own, each holding one rank, joined by veth pairs to a bridge in a
server namespace where nginx serves a sharded checkpoint (index.json + 3 files); the server's
side of every veth is capped by tbf (an emulated link of LINK_RATE). The ranks form a gloo
group over their veth addresses (tcp:// rendezvous on node 0) and load the checkpoint from
http://SERVER: in file mode (load_file without shard, then fastsafetensors' loader with the
files split over the ranks, then load_file of s3://b/ with the same nginx as a path-style S3
endpoint) and in shard mode, each rank checking every tensor against the
reference (tests/python/dist_worker.py, step "nodes"). From nginx's access log, per path and
per client address: the data bytes served across the nodes add up to the checkpoint's tensor
bytes once (not NODES times), no byte of the data was served twice, each node was served what
it reports as read, and about 1/NODES of the bytes; the headers are read once per node and
file. Each node's veth received at least the whole checkpoint: the rest came from the peers
over gloo. Skipped, saying why, when network namespaces cannot be made (not root, no `ip`, no
veth or bridge support). 45-75 s on 2 busy cores (load 11), most of it importing torch."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors.torch")
pytest.importorskip("weightlift.distributed")
from safetensors.torch import save_file  # noqa: E402

import nginxutil  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "dist_worker.py")
NODES = 3
LINK_RATE = "400mbit"
LIMIT = 240  # seconds for the whole run, far above its normal time
NET = "10.232.7."  # .1 the server's bridge, .10 + i node i
PROBE = 12 << 10  # the library's header probe (src/common/tunables.h); a header read is <= it


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=check)


class Fabric:
    """The namespaces and links; stop() removes them (deleting a namespace takes its veth ends)."""

    def __init__(self):
        tag = str(os.getpid())
        self.srv = f"wlnodes-{tag}-srv"
        self.nodes = [f"wlnodes-{tag}-n{i}" for i in range(NODES)]
        self.made = []

    def start(self):
        _ip("netns", "add", self.srv)
        self.made.append(self.srv)
        _ip("-n", self.srv, "link", "set", "lo", "up")
        _ip("-n", self.srv, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.srv, "addr", "add", NET + "1/24", "dev", "br0")
        _ip("-n", self.srv, "link", "set", "br0", "up")
        for i, ns in enumerate(self.nodes):
            _ip("netns", "add", ns)
            self.made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            # Both ends made in their namespaces: no name is ever visible outside them.
            _ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", f"v{i}",
                "netns", self.srv)
            _ip("-n", ns, "addr", "add", f"{NET}{10 + i}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", self.srv, "link", "set", f"v{i}", "master", "br0", "up")
            # What the node receives (from the server and from its peers) is capped.
            _ip("netns", "exec", self.srv, "tc", "qdisc", "replace", "dev", f"v{i}", "root",
                "tbf", "rate", LINK_RATE, "burst", "256kb", "latency", "50ms")

    def addr(self, i):
        return f"{NET}{10 + i}"

    def rx_bytes(self, i):
        j = json.loads(_ip("-n", self.nodes[i], "-s", "-j", "link", "show", "dev", "eth0").stdout)
        return j[0]["stats64"]["rx"]["bytes"]

    def stop(self):
        for ns in reversed(self.made):
            _ip("netns", "del", ns, check=False)
        self.made = []


def _netns_reason():
    if os.getuid() != 0:
        return "network namespaces need root (the test makes its own with `ip netns`)"
    if not shutil.which("ip") or not shutil.which("tc"):
        return "iproute2 (ip, tc) not installed (tools/install-deps.sh test)"
    if not nginxutil.NGINX:
        return "nginx not installed (tools/install-deps.sh test)"
    if not shutil.which("curl"):
        return "curl not installed (tools/install-deps.sh test)"
    return None


def _header_len(path):
    with open(path, "rb") as f:
        return 8 + int.from_bytes(f.read(8), "little")


def _make_checkpoint(d):
    """3 files of layers: .w split along dim 0, .u along dim 1 (8 rows: small pieces), the
    rest replicated; sizes vary so that balancing by bytes matters."""
    g = torch.Generator().manual_seed(12)
    weight_map = {}
    for f in range(3):
        t = {}
        for j in range(4):
            layer = f * 4 + j
            t[f"layers.{layer}.w"] = torch.randn(61 + 7 * layer, 333, generator=g)
            t[f"layers.{layer}.u"] = torch.randn(8, 1000 + 250 * j, generator=g).half()
            t[f"layers.{layer}.norm"] = torch.randn(333, generator=g)
        if f == 0:
            t["embed"] = torch.randn(500, 333, generator=g).bfloat16()
        name = f"model-{f + 1:05d}-of-00003.safetensors"
        save_file(t, str(d / name))
        weight_map.update({k: name for k in t})
    (d / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": weight_map}))
    for p in ("f", "l", "b", "s"):  # one path per phase, the same files
        os.symlink(".", d / p)
    return sorted(set(weight_map.values()))


def _parse_range(rng, size):
    if not rng:
        return 0
    a = rng.split("=", 1)[1].split(",")[0].split("-")[0]
    return int(a) if a else size


def test_many_nodes_one_remote_checkpoint(tmp_path):
    reason = _netns_reason()
    if reason:
        pytest.skip(reason)
    data = tmp_path / "ckpt"
    data.mkdir()
    files = _make_checkpoint(data)
    sizes = {f: os.path.getsize(data / f) for f in files}
    dstart = {f: _header_len(data / f) for f in files}
    tensor_bytes = sum(sizes[f] - dstart[f] for f in files)
    fab = Fabric()
    try:
        fab.start()
    except subprocess.CalledProcessError as e:
        fab.stop()
        pytest.skip(f"cannot make network namespaces here: {' '.join(e.cmd)}: "
                    f"{e.stderr.strip()}")
    ngx = nginxutil.Nginx(data, tmp_path / "nginx", addr=NET + "1", port=8080,
                          pre=["ip", "netns", "exec", fab.srv])
    procs = []
    try:
        url = ngx.start()
        assert url, "nginx did not start in the server namespace: " + ngx.error_log()
        init = f"tcp://{fab.addr(0)}:29511"
        env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="eth0",
                   TORCH_CPP_LOG_LEVEL="ERROR")
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env.pop("WEIGHTLIFT_SHARD_PIECE_MIN", None)
        # s3://b/KEY is http://SERVER/b/KEY (path-style, unsigned; nginx ignores the rest).
        env.update(AWS_ENDPOINT_URL=url, WEIGHTLIFT_S3_UNSIGNED="1",
                   WEIGHTLIFT_S3_REGION="us-east-1")
        for k in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_ACCESS_KEY_ID"):
            env.pop(k, None)
        t0 = time.monotonic()
        procs = [subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, WORKER, f"g{NODES}:nodes",
                                   str(r), str(NODES), init, str(data),
                                   str(tmp_path / f"r{r}.json"), url], env=env)
                 for r, ns in enumerate(fab.nodes)]
        for p in procs:
            p.wait(timeout=max(1, LIMIT - (time.monotonic() - t0)))
        secs = time.monotonic() - t0
        reports = []
        for r in range(NODES):
            p = tmp_path / f"r{r}.json"
            reports.append(json.loads(p.read_text()) if p.exists() else None)
        for r, rep in enumerate(reports):
            assert rep is not None, f"rank {r} wrote no report"
            rep = rep.get(f"g{NODES}", rep)
            assert "nodes" in rep.get("done", []), \
                f"rank {r}: {rep.get('error')}\n{rep.get('trace')}"
            reports[r] = rep
        log = [e for e in ngx.access() if e[1] != "/"]  # not nginxutil's readiness probe
        addrs = {fab.addr(i): i for i in range(NODES)}
        assert log and {a for a, *_ in log} <= set(addrs), {a for a, *_ in log}
        for phase in ("f", "l", "b", "s"):
            served = [0] * NODES      # data bytes per node, not counting the header probes
            total = 0                 # every byte of every answer
            probes = 0
            seen = {f: [] for f in files}
            for a, path, status, n, rng in log:
                parts = path.strip("/").split("/")
                if parts[0] != phase or parts[-1] not in sizes:
                    continue
                f = parts[-1]
                assert status in (200, 206), (path, status)
                total += n
                start = _parse_range(rng, sizes[f])
                if start == 0 and n:
                    # A rank opening the file: its header probe (the tensors it covers are
                    # served from it, not read again).
                    assert n <= PROBE, (path, rng, n)
                    probes += 1
                    continue
                assert start >= dstart[f], (path, rng, "a second header read")
                served[addrs[a]] += n
                seen[f].append((start, start + n))
            # Each byte of the data served once over the nodes: the data ranges are disjoint
            # and, with the probe's window (where the library may use the probed bytes),
            # cover every file's data.
            for f, iv in seen.items():
                iv.sort()
                pos = dstart[f]
                for lo, hi in iv:
                    assert lo >= pos, (phase, f, (lo, hi), pos, "served twice")
                    assert lo == pos or lo <= PROBE, (phase, f, (lo, hi), pos, "a gap")
                    pos = hi
                assert pos == sizes[f], (phase, f, pos, sizes[f])
            # Each rank opens each file once (the loader's ranks only their own files).
            assert probes == (NODES * len(files) if phase != "l" else len(files)), \
                (phase, probes)
            assert total <= tensor_bytes + probes * PROBE, (phase, total, tensor_bytes)
            got = [rep[phase + "_bytes_read"] for rep in reports]
            assert sum(got) == tensor_bytes, (phase, got, tensor_bytes)
            for r in range(NODES):
                assert served[r] <= got[r] <= served[r] + len(files) * PROBE, \
                    (phase, r, served, got)
                if phase != "l":  # tensors balanced by bytes: about 1/NODES each
                    assert abs(got[r] - tensor_bytes / NODES) < 0.2 * tensor_bytes, \
                        (phase, got)
            print(f"{phase}: served per node {served} (+ {probes} probes), {total} bytes for "
                  f"{tensor_bytes} tensor bytes; read per node {got}")
        # The rest came from the peers: every node received the whole checkpoint three times
        # (the file-mode phases) plus its shards, most of it over gloo.
        for i in range(NODES):
            assert fab.rx_bytes(i) >= 3 * tensor_bytes, (i, fab.rx_bytes(i), tensor_bytes)
        print(f"{NODES} nodes, {secs:.1f} s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        ngx.stop()
        fab.stop()
