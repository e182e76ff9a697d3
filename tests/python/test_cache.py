# SPDX-License-Identifier: Apache-2.0
"""The local cache of remote objects from Python, against nginx on 127.0.0.1 (a free port, a
prefix of its own, stopped at the end; skipped without nginx): set_local_cache_dir(path|None)
takes effect for later loads, the cached file equals the served one, a warm load asks one
validation request, offline=True / set_offline() ask none (an uncached object raises
OSError), a server that cannot be reached is answered from the cache with a warning on
stderr, and Ray actors (a local `ray.init()`, in a subprocess bounded in time) stream from
nginx with set_local_cache_dir called inside each actor, several at once sharing one cache
directory: one intact entry, every actor's bytes equal to the reference's."""
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

wl = pytest.importorskip("weightlift")
wlnp = pytest.importorskip("weightlift.numpy")
refnp = pytest.importorskip("safetensors.numpy")

import nginxutil  # noqa: E402


def _tensors(seed=7):
    rng = np.random.default_rng(seed)
    return {
        "a": rng.standard_normal((300, 257)).astype(np.float32),
        "b": rng.integers(0, 100, (1000,), dtype=np.int64),
        "c": rng.standard_normal((5, 3, 1111)).astype(np.float16),
    }


@pytest.fixture()
def server(tmp_path):
    if not nginxutil.NGINX:
        pytest.skip("nginx not found")
    root = tmp_path / "root"
    root.mkdir()
    refnp.save_file(_tensors(), str(root / "m.safetensors"), metadata={"k": "v"})
    refnp.save_file(_tensors(8), str(root / "other.safetensors"))
    n = nginxutil.Nginx(root, tmp_path / "nginx",
                        locations={"/slow/": "alias {root}/; limit_rate 8m;"})
    try:
        if not n.start():
            pytest.skip("nginx did not start: " + n.error_log()[-300:])
        yield n
    finally:
        n.stop()
        wl.set_local_cache_dir(None)
        wl.set_offline(False)


def _entries(d):
    return sorted(p for p in os.listdir(d) if p.endswith(".json")) if os.path.isdir(d) else []


def _same(got, path):
    want = refnp.load_file(str(path))
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), k


def test_set_local_cache_dir(server, tmp_path):
    cache = tmp_path / "cache"
    url = server.url + "/m.safetensors"
    wl.set_local_cache_dir(cache)
    _same(wlnp.load_file(url), server.root / "m.safetensors")
    assert len(_entries(cache)) == 1
    data = [p for p in os.listdir(cache) if p.endswith(".data")]
    assert len(data) == 1
    assert (cache / data[0]).read_bytes() == (server.root / "m.safetensors").read_bytes()
    side = json.loads((cache / _entries(cache)[0]).read_text())
    assert side["uri"] == url and side["size"] == os.path.getsize(server.root / "m.safetensors")
    # Warm: one request (the validation), the bytes from the cached file.
    before = server.gets("m.safetensors")
    _same(wlnp.load_file(url), server.root / "m.safetensors")
    assert server.gets("m.safetensors") == before + 1
    # safe_open reads from the cache too; offline=True asks nothing.
    with wl.safe_open(url, framework="np", offline=True) as f:
        assert np.array_equal(f.get_slice("a")[3:9], _tensors()["a"][3:9])
    assert server.gets("m.safetensors") == before + 1
    # None: later loads are not cached.
    wl.set_local_cache_dir(None)
    wlnp.load_file(server.url + "/other.safetensors")
    assert len(_entries(cache)) == 1


def test_offline(server, tmp_path):
    cache = tmp_path / "cache"
    url = server.url + "/m.safetensors"
    wl.set_local_cache_dir(str(cache))
    wlnp.load_file(url)
    before = server.gets("m.safetensors")
    _same(wlnp.load_file(url, offline=True), server.root / "m.safetensors")
    with pytest.raises(OSError, match="not in the cache"):
        wlnp.load_file(server.url + "/other.safetensors", offline=True)
    wl.set_offline(True)
    try:
        got = dict(wl.stream(url, framework="np"))
        _same(got, server.root / "m.safetensors")
        with pytest.raises(OSError, match="offline mode"):
            wlnp.load_file(server.url + "/other.safetensors")
    finally:
        wl.set_offline(False)
    assert server.gets("m.safetensors") == before
    assert server.gets("other.safetensors") == 0


def test_unreachable_serves_cached_copy(server, tmp_path, capfd):
    cache = tmp_path / "cache"
    url = server.url + "/m.safetensors"
    wl.set_local_cache_dir(cache)
    wlnp.load_file(url)
    server.stop()
    capfd.readouterr()
    _same(wlnp.load_file(url), server.root / "m.safetensors")
    err = capfd.readouterr().err
    assert "the server cannot be reached" in err and "serving the cached copy" in err, err
    with pytest.raises(OSError):
        wlnp.load_file(server.url + "/other.safetensors")


def test_set_local_cache_dir_rejects_empty():
    with pytest.raises(ValueError):
        wl.set_local_cache_dir("")


RAY_SCRIPT = textwrap.dedent("""
    import hashlib, json, os, sys, time
    try:
        import ray
    except ImportError as e:
        print("SKIP: ray is not installed (%s)" % e); sys.exit(77)
    url, cache, other = sys.argv[1], sys.argv[2], sys.argv[3]
    t0 = time.time()
    try:
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, object_store_memory=80 << 20)
    except Exception as e:  # noqa: BLE001 - any failure to start is a skip
        print("SKIP: ray.init failed: %s" % e); sys.exit(77)
    print("ray.init %.1f s" % (time.time() - t0), file=sys.stderr)

    @ray.remote(num_cpus=1)
    class Loader:
        def load(self, url, cache):
            import weightlift, weightlift.numpy as wlnp
            if cache is not None:
                weightlift.set_local_cache_dir(cache)
            d = wlnp.load_file(url)
            return {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in d.items()}

    actors = [Loader.remote() for _ in range(3)]
    # Three actors at once, one cache directory, the same (slowly served) object.
    got = ray.get([a.load.remote(url, cache) for a in actors], timeout=180)
    # Again: from the cache now. And an actor that sets no cache caches nothing.
    got += ray.get([a.load.remote(url, cache) for a in actors[:1]], timeout=60)
    plain = ray.get(Loader.remote().load.remote(other, None), timeout=60)
    ray.shutdown()
    print(json.dumps({"digests": got, "plain": plain}))
""")


def test_ray_actors_share_a_cache(server, tmp_path):
    """Ray actors stream from nginx through a cache set inside each actor (bounded: the whole
    Ray session is one subprocess with a timeout)."""
    cache = tmp_path / "raycache"
    script = tmp_path / "ray_actors.py"
    script.write_text(RAY_SCRIPT)
    # A larger object, served slowly, so that the three actors overlap.
    big = _tensors(9)
    big["d"] = np.random.default_rng(3).standard_normal((2048, 1024)).astype(np.float32)
    refnp.save_file(big, str(server.root / "big.safetensors"))
    url = server.url + "/slow/big.safetensors"
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_DISABLE_DOCKER_CPU_WARNING="1")
    try:
        p = subprocess.run([sys.executable, str(script), url, str(cache),
                            server.url + "/other.safetensors"],
                           capture_output=True, text=True, timeout=300, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("the Ray session did not finish in 300 s")
    if p.returncode == 77:
        pytest.skip(p.stdout.strip().splitlines()[-1] if p.stdout.strip() else "ray unavailable")
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    want = {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in big.items()}
    for d in res["digests"]:
        assert d == want
    # One intact entry: the actors shared the directory safely.
    assert len(_entries(cache)) == 1, os.listdir(cache)
    data = [f for f in os.listdir(cache) if f.endswith(".data")]
    assert len(data) == 1 and not [f for f in os.listdir(cache) if f.endswith(".part")]
    assert (cache / data[0]).read_bytes() == (server.root / "big.safetensors").read_bytes()
    # The actor that set no cache directory cached nothing (the setting is per process).
    assert res["plain"] == {k: hashlib.sha256(v.tobytes()).hexdigest()
                            for k, v in _tensors(8).items()}
    assert len(_entries(cache)) == 1
