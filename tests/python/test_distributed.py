# SPDX-License-Identifier: Apache-2.0
"""Distributed loading across processes on this machine (weightlift.distributed,
docs/distributed.md): 2 and 4 ranks over torch.distributed gloo (file:// rendezvous) and over
MPI (mpirun + mpi4py, when installed), each rank a process running dist_worker.py, which
checks its tensors against the reference's full load sliced, and its bytes read against the
plan: shard mode (dim 0, dim 1, uneven sizes, replicated tensors read once and broadcast) from
a local file and from nginx on 127.0.0.1, fastsafetensors' loader (get_tensor, get_sharded,
push_tensor, as_dict), file mode, expert parallelism. Then the failures: ranks passing
different specs, a rank whose load fails, a rank that dies mid-load: every other rank fails
with a clear error within the timeout, never hangs. About 40 s on 2 busy cores."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors.torch")
wd = pytest.importorskip("weightlift.distributed")
from safetensors.torch import save_file  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "dist_worker.py")
MOE = os.path.join(HERE, "..", "cli", "moe_fixture.py")
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK)
                                  else None)
MPIRUN = shutil.which("mpirun")
LIMIT = 300  # seconds for one multi-rank run, far above its normal time (10-30 s)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    g = torch.Generator().manual_seed(3)
    t = {
        "a": torch.randn(13, 7, generator=g),                       # dim 0, uneven for 2 and 4
        "b": torch.randn(5, 301, generator=g).half(),               # dim 1, uneven
        "c": torch.arange(64, dtype=torch.int64),                   # replicated
        "d": torch.randn(8, 6, 5, generator=g).bfloat16(),          # dim 1 of 3, even-ish
        "big": torch.randn(4, 20003, generator=g),                  # dim 1, 20 KB pieces
        "e": torch.tensor(2.5),                                     # 0-d, replicated
        "z": torch.zeros(0, 3),                                     # empty, replicated
    }
    save_file(t, str(d / "m.safetensors"))
    for i in range(3):
        save_file({f"p{i}.w": torch.randn(9 + i, 11, generator=g),
                   f"p{i}.v": torch.arange(5 * (i + 1), dtype=torch.int32)},
                  str(d / f"part{i}.safetensors"))
    subprocess.run([sys.executable, MOE, str(d), "8", "2"], check=True)
    return d


NGINX_CONF = """
{user}
daemon off;
worker_processes 1;
pid {pfx}/nginx.pid;
error_log {pfx}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {pfx}/tmp;
    proxy_temp_path {pfx}/tmp;
    fastcgi_temp_path {pfx}/tmp;
    uwsgi_temp_path {pfx}/tmp;
    scgi_temp_path {pfx}/tmp;
    default_type application/octet-stream;
    server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
"""


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def url(data, tmp_path_factory):
    if not NGINX:
        yield ""
        return
    pfx = tmp_path_factory.mktemp("nginx")
    (pfx / "tmp").mkdir()
    port = _free_port()
    (pfx / "nginx.conf").write_text(NGINX_CONF.format(
        user="user root;" if os.getuid() == 0 else "", pfx=pfx, port=port, root=data))
    proc = subprocess.Popen([NGINX, "-p", str(pfx), "-c", str(pfx / "nginx.conf"), "-e",
                             str(pfx / "error.log")], stderr=subprocess.DEVNULL)
    u = "http://127.0.0.1:%d" % port
    try:
        for _ in range(50):
            try:
                urllib.request.urlopen(u + "/m.safetensors", timeout=1).read(1)
                break
            except OSError:
                if proc.poll() is not None:
                    u = ""
                    break
                time.sleep(0.1)
        yield u
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _env():
    env = dict(os.environ, WEIGHTLIFT_SHARD_PIECE_MIN="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def _reports(tmp_path, world):
    out = []
    for r in range(world):
        p = tmp_path / f"r{r}.json"
        out.append(json.loads(p.read_text()) if p.exists() else None)
    return out


def run_gloo(tmp_path, scenario, world, data, url=""):
    init = "file://" + str(tmp_path / "rendezvous")
    procs = [subprocess.Popen([sys.executable, WORKER, scenario, str(r), str(world), init,
                               str(data), str(tmp_path / f"r{r}.json"), url], env=_env())
             for r in range(world)]
    t0 = time.monotonic()
    try:
        for p in procs:
            p.wait(timeout=max(1, LIMIT - (time.monotonic() - t0)))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
                pytest.fail(f"{scenario}: a rank did not finish within {LIMIT} s (hang)")
    return procs, _reports(tmp_path, world), time.monotonic() - t0


def _ok(reports):
    for r, rep in enumerate(reports):
        assert rep is not None, f"rank {r} wrote no report"
        assert rep["ok"], f"rank {r}: {rep.get('error')}\n{rep.get('trace')}"
        assert rep["checks"] > 0


def _sizes(data, name):
    ref = __import__("safetensors.torch", fromlist=["load_file"]).load_file(str(data / name))
    return sum(t.numel() * t.element_size() for t in ref.values())


@pytest.mark.parametrize("world", [2, 4])
def test_gloo(tmp_path, data, url, world):
    procs, reports, _ = run_gloo(tmp_path, "main", world, data, url)
    _ok(reports)
    total = _sizes(data, "m.safetensors")
    # Over the ranks, each byte of the checkpoint was read once (shard mode, every piece read
    # on its own) and once in file mode; the fastsafetensors loader read each file once.
    assert sum(r["shard_bytes_read"] for r in reports) == total
    assert sum(r["scatter_bytes_read"] for r in reports) == total
    assert sum(r["whole_bytes_read"] for r in reports) == total
    if url:
        assert sum(r["http_bytes_read"] for r in reports) == total
    parts = sum(_sizes(data, f"part{i}.safetensors") for i in range(3))
    assert sum(r["file_bytes_read"] for r in reports) == parts
    moe = _sizes(data, "moe.safetensors")
    assert max(r["experts_bytes_read"] for r in reports) < moe


@pytest.mark.skipif(not MPIRUN, reason="mpirun not installed (tools/install-deps.sh test)")
@pytest.mark.parametrize("world", [2, 4])
def test_mpi(tmp_path, data, world):
    pytest.importorskip("mpi4py")
    env = _env()
    env.update(OMPI_MCA_btl="self,tcp", OMPI_MCA_btl_tcp_if_include="lo",
               OMPI_MCA_oob_tcp_if_include="lo", OMPI_MCA_plm="isolated",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    # Each rank learns its rank from Open MPI's environment.
    wrapper = ("import os, sys, runpy; r = os.environ['OMPI_COMM_WORLD_RANK']; "
               f"sys.argv = [{WORKER!r}, 'main', r, '{world}', 'mpi', {str(data)!r}, "
               f"{str(tmp_path)!r} + '/r' + r + '.json']; "
               f"runpy.run_path({WORKER!r}, run_name='__main__')")
    cmd = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(world),
           "--mca", "btl", "self,tcp", sys.executable, "-c", wrapper]
    p = subprocess.run(cmd, env=env, timeout=LIMIT, capture_output=True, text=True)
    reports = _reports(tmp_path, world)
    if all(r is None for r in reports):
        pytest.fail(f"mpirun exit {p.returncode}: {p.stderr[-2000:]}")
    _ok(reports)
    assert sum(r["shard_bytes_read"] for r in reports) == _sizes(data, "m.safetensors")


def test_spec_mismatch_and_failure(tmp_path, data):
    procs, reports, _ = run_gloo(tmp_path, "errors", 2, data)
    _ok(reports)
    for r, rep in enumerate(reports):
        assert "different checkpoints or specs" in rep.get("mismatch", ""), rep
        assert "loading failed on rank 1" in rep.get("fail", ""), rep
        assert "injected read failure" in rep["fail"], rep


def test_rank_dies(tmp_path, data):
    procs, reports, secs = run_gloo(tmp_path, "die", 2, data)
    assert procs[1].returncode == 3 and reports[1] is None
    rep = reports[0]
    assert rep is not None and not rep["ok"]
    assert "DistributedError" in rep["error"] and "rank 0 of 2" in rep["error"], rep["error"]
    assert rep["seconds"] < 120, rep  # gloo notices the closed peer at once; bound: 2 x TIMEOUT


def test_single_process(data):
    """No group (or SingleGroup): a plain load, the same API."""
    got = wd.load_file(str(data / "m.safetensors"), shard={"a": 0})
    assert got["a"].shape == (13, 7)
    loader = wd.SafeTensorsFileLoader(wd.SingleGroup(), device="cpu")
    loader.add_filenames({0: [str(data / "part0.safetensors")]})
    fb = loader.copy_files_to_device(dtype=torch.float16)
    assert fb.get_tensor("p0.w").dtype == torch.float16
    assert fb.get_sharded("p0.w", 1).shape == (9, 11)
    assert fb.get_tensor("p0.v").dtype == torch.int32
    with pytest.raises(ValueError, match="not found"):
        fb.get_tensor("nope")
    fb.close()
    with pytest.raises(ValueError, match="outside the group"):
        loader.add_filenames({1: ["x"]})
    with pytest.raises(ValueError, match="dim"):
        wd.load_file(str(data / "m.safetensors"), shard={"a": "x"})
    with pytest.raises(wd.DistributedError, match="No such file|not"):
        wd.load_file(str(data / "missing.safetensors"))
