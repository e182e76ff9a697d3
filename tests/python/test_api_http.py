# SPDX-License-Identifier: Apache-2.0
"""http:// URIs through the Python API, unchanged: load_file (numpy, torch), safe_open with
get_tensor/get_slice and the reference's bytes, from nginx on 127.0.0.1 (a free port, a prefix
of its own under the test's temporary directory, stopped at the end; skipped without nginx).
HTTP errors map to Python's: 404 FileNotFoundError, 403 PermissionError, a server ignoring
Range OSError."""
import time

import numpy as np
import pytest

wl = pytest.importorskip("weightlift")
wlnp = pytest.importorskip("weightlift.numpy")
refnp = pytest.importorskip("safetensors.numpy")

import nginxutil  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not nginxutil.NGINX:
        pytest.skip("nginx not found")
    base = tmp_path_factory.mktemp("http")
    root = base / "root"
    root.mkdir()
    rng = np.random.default_rng(7)
    tensors = {
        "a": rng.standard_normal((300, 257)).astype(np.float32),
        "b": rng.integers(0, 100, (1000,), dtype=np.int64),
        "c": rng.standard_normal((5, 3, 1111)).astype(np.float16),
    }
    refnp.save_file(tensors, str(root / "m.safetensors"), metadata={"k": "v"})
    ngx = nginxutil.Nginx(root, base / "nginx", locations={
        "/norange/": "alias {root}/; max_ranges 0;", "/forbidden/": "return 403;"})
    try:
        url = ngx.start()
        if not url:
            pytest.skip("nginx did not start: " + ngx.error_log()[-300:])
        yield url, root, tensors
    finally:
        ngx.stop()


def test_load_file_numpy(server):
    url, root, tensors = server
    got = wlnp.load_file(url + "/m.safetensors")
    want = refnp.load_file(str(root / "m.safetensors"))
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), k


def test_load_file_torch(server):
    torch = pytest.importorskip("torch")
    wlt = pytest.importorskip("weightlift.torch")
    url, _, tensors = server
    got = wlt.load_file(url + "/m.safetensors")
    for k, v in tensors.items():
        assert torch.equal(got[k], torch.from_numpy(v)), k


def test_safe_open_slices(server):
    url, _, tensors = server
    with wl.safe_open(url + "/m.safetensors", framework="np") as f:
        assert sorted(f.keys()) == ["a", "b", "c"]
        assert f.metadata() == {"k": "v"}
        assert np.array_equal(f.get_tensor("b"), tensors["b"])
        assert np.array_equal(f.get_slice("a")[10:20], tensors["a"][10:20])
        assert np.array_equal(f.get_slice("c")[1:4, :, 5:9], tensors["c"][1:4, :, 5:9])


def test_errors(server):
    url, _, _ = server
    with pytest.raises(FileNotFoundError, match="HTTP 404"):
        wlnp.load_file(url + "/missing.safetensors")
    with pytest.raises(PermissionError, match="HTTP 403"):
        wlnp.load_file(url + "/forbidden/m.safetensors")
    with pytest.raises(OSError, match="does not support range requests"):
        wlnp.load_file(url + "/norange/m.safetensors")


def test_remote_keywords(server, tmp_path):
    """The CLI's remote options as keywords of load_file, safe_open and stream: max_rate
    (--max-rate), allow_full_download (--allow-full-download), cache_dir (--cache-dir), each
    range- and type-checked."""
    url, root, tensors = server
    big = {"w": np.arange(3 << 18, dtype=np.float32)}  # 3 MiB
    refnp.save_file(big, str(root / "big.safetensors"))
    # max_rate: 1 MiB/s over 3 MiB (the bucket's burst is 512 KiB): at least ~2.5 s.
    t0 = time.monotonic()
    got = wlnp.load_file(url + "/big.safetensors", max_rate="1M")
    took = time.monotonic() - t0
    assert np.array_equal(got["w"], big["w"])
    assert 2.0 < took < 20, took
    t0 = time.monotonic()
    names = [n for n, _ in wl.stream(url + "/big.safetensors", framework="np",
                                     max_rate=2 << 20)]
    assert names == ["w"] and time.monotonic() - t0 > 0.9
    for bad, exc in (("1K", ValueError), ("2T", ValueError), ("fast", ValueError),
                     (True, TypeError), (1.5, TypeError), (0, ValueError)):
        with pytest.raises(exc, match="max_rate"):
            wlnp.load_file(url + "/m.safetensors", max_rate=bad)
    # allow_full_download: a server without Range support is read whole only when asked.
    with pytest.raises(OSError, match="does not support range requests"):
        wlnp.load_file(url + "/norange/m.safetensors")
    got = wlnp.load_file(url + "/norange/m.safetensors", allow_full_download=True)
    assert all(np.array_equal(got[k], tensors[k]) for k in tensors)
    with wl.safe_open(url + "/norange/m.safetensors", framework="np",
                      allow_full_download=True) as f:
        assert np.array_equal(f.get_slice("a")[3:5], tensors["a"][3:5])
    assert sorted(n for n, _ in wl.stream(url + "/norange/m.safetensors", framework="np",
                                          allow_full_download=True)) == ["a", "b", "c"]
    with pytest.raises(TypeError, match="allow_full_download"):
        wlnp.load_file(url + "/m.safetensors", allow_full_download="yes")
    # cache_dir: this call's cache; then offline from it (no server asked), another empty
    # directory offline fails naming it.
    cache, empty = tmp_path / "cache", tmp_path / "empty"
    cache.mkdir()
    empty.mkdir()
    wlnp.load_file(url + "/m.safetensors", cache_dir=cache)
    assert len(list(cache.glob("*.data"))) == 1
    got = wlnp.load_file(url + "/m.safetensors", cache_dir=str(cache), offline=True)
    assert all(np.array_equal(got[k], tensors[k]) for k in tensors)
    with wl.safe_open(url + "/m.safetensors", framework="np", cache_dir=cache,
                      offline=True) as f:
        assert np.array_equal(f.get_tensor("b"), tensors["b"])
    with pytest.raises(OSError, match=str(empty)):
        wlnp.load_file(url + "/m.safetensors", cache_dir=empty, offline=True)
    with pytest.raises(ValueError, match="cache_dir"):
        wlnp.load_file(url + "/m.safetensors", cache_dir="")
    torch = pytest.importorskip("torch")
    wlt = pytest.importorskip("weightlift.torch")
    got = wlt.load_file(url + "/m.safetensors", cache_dir=cache, offline=True,
                        max_rate="64K", allow_full_download=False)
    assert torch.equal(got["b"], torch.from_numpy(tensors["b"]))
