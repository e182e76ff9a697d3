# SPDX-License-Identifier: Apache-2.0
"""Distributed loading across processes on this machine (weightlift.distributed,
docs/distributed.md): 2 and 4 ranks over torch.distributed gloo (file:// rendezvous) and over
MPI (mpirun --allow-run-as-root --oversubscribe + mpi4py, when installed), each rank a process
running dist_worker.py, which checks its tensors against the reference's full load sliced,
and its bytes read against the plan: shard mode (dim 0, dim 1, uneven sizes, replicated
tensors read once and broadcast) from a local file and from nginx on 127.0.0.1,
fastsafetensors' loader (get_tensor, get_sharded, push_tensor, as_dict), file mode, expert
parallelism. Then the failures, over gloo and MPI: ranks passing different specs, a rank
whose load fails (every rank raises, naming it), a rank that dies mid-load (the other fails
with a clear error within the timeout, never hangs; under mpirun the job ends). The 2- and
4-rank groups, gloo and MPI, share 4 processes (see jobs()). About 100 s on 2 busy cores
(load 11), most of it importing torch in 6 processes."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors.torch")
wd = pytest.importorskip("weightlift.distributed")
from safetensors.torch import save_file  # noqa: E402

import nginxutil  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "dist_worker.py")
MOE = os.path.join(HERE, "..", "cli", "moe_fixture.py")
MPIRUN = shutil.which("mpirun")
LIMIT = 400  # seconds for one multi-rank job, far above its normal time (20-60 s)


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


@pytest.fixture(scope="module")
def url(data, tmp_path_factory):
    if not nginxutil.NGINX:
        yield ""
        return
    ngx = nginxutil.Nginx(data, tmp_path_factory.mktemp("nginx"))
    try:
        yield ngx.start()
    finally:
        ngx.stop()


def _env():
    env = dict(os.environ, WEIGHTLIFT_SHARD_PIECE_MIN="1", OMP_NUM_THREADS="1",
               TORCH_CPP_LOG_LEVEL="ERROR")
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def _reports(out, nprocs):
    res = []
    for r in range(nprocs):
        p = out / f"r{r}.json"
        res.append(json.loads(p.read_text()) if p.exists() else None)
    return res


def run_job(out, steps, nprocs, data, url="", mpi=False):
    """NPROCS ranks running dist_worker.py STEPS, started by mpirun (mpi) or as processes of
    ours; returns (exit codes or mpirun's, [each rank's report or None], seconds)."""
    init = "file://" + str(out / "rendezvous")
    env = _env()
    t0 = time.monotonic()
    if mpi:
        env.update(OMPI_MCA_btl="self,tcp", OMPI_MCA_btl_tcp_if_include="lo",
                   OMPI_MCA_oob_tcp_if_include="lo", OMPI_MCA_plm="isolated",
                   OMPI_MCA_rmaps_base_oversubscribe="1")
        # Each rank learns its rank from Open MPI's environment.
        wrapper = ("import os, sys, runpy; r = os.environ['OMPI_COMM_WORLD_RANK']; "
                   f"sys.argv = [{WORKER!r}, {steps!r}, r, '{nprocs}', {init!r}, "
                   f"{str(data)!r}, {str(out)!r} + '/r' + r + '.json', {url!r}]; "
                   f"runpy.run_path({WORKER!r}, run_name='__main__')")
        cmd = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(nprocs),
               "--mca", "btl", "self,tcp", sys.executable, "-c", wrapper]
        try:
            p = subprocess.run(cmd, env=env, timeout=LIMIT, capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{steps}: mpirun did not finish within {LIMIT} s (hang)")
        return [p.returncode], _reports(out, nprocs), time.monotonic() - t0
    procs = [subprocess.Popen([sys.executable, WORKER, steps, str(r), str(nprocs), init,
                               str(data), str(out / f"r{r}.json"), url], env=env)
             for r in range(nprocs)]
    try:
        for p in procs:
            p.wait(timeout=max(1, LIMIT - (time.monotonic() - t0)))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
                pytest.fail(f"{steps}: a rank did not finish within {LIMIT} s (hang)")
    return [p.returncode for p in procs], _reports(out, nprocs), time.monotonic() - t0


# Two jobs, shared by the tests that check their parts (starting a rank, i.e. importing torch,
# costs ~5 s of CPU: most of this file's time). "all": 4 processes (under mpirun when
# mpi4py and mpirun are there) running the 4-rank gloo and MPI steps, then the 2-rank ones
# in groups of ranks 0 and 1 (main, the spec mismatch and a failing rank; last, rank 1 of
# the MPI pair exits and mpirun ends the job). "die": 2 processes, rank 1 exits mid-load.
_JOBS = {}


def _have_mpi():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return bool(MPIRUN)


@pytest.fixture(scope="module")
def jobs(data, url, tmp_path_factory):
    def get(name):
        if name not in _JOBS:
            out = tmp_path_factory.mktemp(name)
            if name == "die":
                _JOBS[name] = run_job(out, "g2:die", 2, data)
            else:
                mpi = _have_mpi()
                steps = ["g4:main", "m4:shard", "g2:main", "g2:errors", "m2:main",
                         "m2:errors", "m2:die"]
                steps = [s for s in steps if mpi or s[0] == "g"]
                _JOBS[name] = run_job(out, "+".join(steps), 4, data, url, mpi=mpi)
        return _JOBS[name]
    yield get
    _JOBS.clear()


def _group(reports, kind, world):
    """The reports of group kind (e.g. "g2") of ranks 0..world-1."""
    for r in range(world):
        assert reports[r] is not None, f"rank {r} wrote no report"
        assert kind in reports[r], f"rank {r}: no {kind} steps ran: {reports[r].get('error')}" \
            f"\n{reports[r].get('trace')}"
    return [reports[r][kind] for r in range(world)]


def _ok(reports, step="main"):
    for r, rep in enumerate(reports):
        assert step in rep["done"], f"rank {r}: {rep.get('error')}\n{rep.get('trace')}"
        assert rep["checks"] > 0


def _sizes(data, name):
    ref = __import__("safetensors.torch", fromlist=["load_file"]).load_file(str(data / name))
    return sum(t.numel() * t.element_size() for t in ref.values())


def _check_main(reports, data, url, step="main"):
    _ok(reports, step)
    total = _sizes(data, "m.safetensors")
    # Over the ranks, each byte of the checkpoint was read once (shard mode, every piece read
    # on its own) and once in file mode; the fastsafetensors loader read each file once.
    assert sum(r["shard_bytes_read"] for r in reports) == total
    if url:
        assert sum(r["http_bytes_read"] for r in reports) == total
    if step == "shard":
        return
    assert sum(r["scatter_bytes_read"] for r in reports) == total
    assert sum(r["whole_bytes_read"] for r in reports) == total
    parts = sum(_sizes(data, f"part{i}.safetensors") for i in range(3))
    assert sum(r["file_bytes_read"] for r in reports) == parts
    moe = _sizes(data, "moe.safetensors")
    assert max(r["experts_bytes_read"] for r in reports) < moe


def _need_mpi():
    if not MPIRUN:
        pytest.skip("mpirun not installed (tools/install-deps.sh test)")
    pytest.importorskip("mpi4py")


@pytest.mark.parametrize("world", [2, 4])
def test_gloo(jobs, data, url, world):
    _check_main(_group(jobs("all")[1], f"g{world}", world), data, url)


@pytest.mark.parametrize("world", [2, 4])
def test_mpi(jobs, data, url, world):
    _need_mpi()
    # 4 ranks: shard mode (local, HTTP); 2 ranks: everything (file mode, the loader, experts).
    _check_main(_group(jobs("all")[1], f"m{world}", world), data, url,
                "shard" if world == 4 else "main")


@pytest.mark.parametrize("kind", ["g", "m"])
def test_spec_mismatch_and_failure(jobs, kind):
    if kind == "m":
        _need_mpi()
    reports = _group(jobs("all")[1], kind + "2", 2)
    _ok(reports, "errors")
    for rep in reports:
        assert "different checkpoints or specs" in rep.get("mismatch", ""), rep
        assert "loading failed on rank 1" in rep.get("fail", ""), rep
        assert "injected read failure" in rep["fail"], rep


def test_rank_dies(jobs):
    rcs, reports, secs = jobs("die")
    assert rcs[1] == 3 and not reports[1]["g2"]["done"], (rcs, reports[1])
    rep = reports[0]["g2"]
    assert "die" in rep["done"], rep
    err = rep["die_error"]
    assert "DistributedError" in err and "rank 0 of 2" in err, err
    # gloo notices the closed peer at once; the bound is the worker's timeout (60 s).
    assert rep["die_seconds"] < 90, rep


def test_mpi_rank_dies(jobs):
    """Under mpirun a rank exiting ends the job: mpirun exits non-zero within the bound."""
    _need_mpi()
    rcs, reports, secs = jobs("all")
    assert rcs[0] != 0
    for rep in _group(reports, "m2", 2):
        assert rep["done"] == ["main", "errors"], rep


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
    # One process is a plain load, but a rule that cannot apply fails as it would on W ranks.
    with pytest.raises(wd.DistributedError, match="cannot be split along dim 1"):
        wd.load_file(str(data / "m.safetensors"), shard={"c": 1})


def test_timeout_knob():
    """The default timeout is the library's comm timeout (src/common/ctx.c), range-checked
    there: a bad value fails the import naming the variable; WEIGHTLIFT_DIST_TIMEOUT is its
    earlier name."""
    code = "import weightlift.distributed as wd; print(wd._timeout(None))"

    def run(**env):
        e = dict(os.environ, **env)
        for k in ("WEIGHTLIFT_COMM_TIMEOUT", "WEIGHTLIFT_DIST_TIMEOUT"):
            if k not in env:
                e.pop(k, None)
        e["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        return subprocess.run([sys.executable, "-c", code], env=e, capture_output=True,
                              text=True, timeout=60)

    assert run().stdout.strip() == "300.0"
    assert run(WEIGHTLIFT_COMM_TIMEOUT="7").stdout.strip() == "7.0"
    assert run(WEIGHTLIFT_DIST_TIMEOUT="9").stdout.strip() == "9.0"
    assert run(WEIGHTLIFT_COMM_TIMEOUT="5", WEIGHTLIFT_DIST_TIMEOUT="9").stdout.strip() == "5.0"
    for env in ({"WEIGHTLIFT_COMM_TIMEOUT": "86401"}, {"WEIGHTLIFT_DIST_TIMEOUT": "x"}):
        r = run(**env)
        assert r.returncode != 0 and next(iter(env)) in r.stderr, r.stderr[-500:]
    assert wd._timeout(0.5) == 0.5
    for bad in (0, -1, 86401):
        with pytest.raises(ValueError, match="out of range"):
            wd._timeout(bad)
