# SPDX-License-Identifier: Apache-2.0
"""Memory lifetime: tensors outlive their safe_open handle and the dict they were loaded in
(after gc), 1,000 loads do not leak (RSS growth bounded), writes to loaded CPU tensors never
reach the file, and threads sharing one safe_open handle can call get_tensor concurrently."""
import gc
import hashlib
import os
import threading

import numpy as np
import pytest

wl = pytest.importorskip("weightlift")
wlnp = pytest.importorskip("weightlift.numpy")
refnp = pytest.importorskip("safetensors.numpy")


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def ckpt(tmp_path):
    rng = np.random.default_rng(0)
    t = {f"w{i}": rng.standard_normal((64, 33 + i)).astype(np.float32) for i in range(16)}
    p = tmp_path / "l.safetensors"
    refnp.save_file(t, p)
    return p, t


def test_tensor_outlives_safe_open(ckpt):
    p, t = ckpt
    with wl.safe_open(p, "np") as f:
        a = f.get_tensor("w3")
        s = f.get_slice("w4")[2:5]
    del f
    gc.collect()
    # Churn the allocator so a dangling buffer would likely be overwritten.
    junk = [np.full(4096, 7.0) for _ in range(200)]
    del junk
    assert np.array_equal(a, t["w3"])
    assert np.array_equal(s, t["w4"][2:5])


def test_tensor_outlives_loaded_dict(ckpt):
    p, t = ckpt
    d = wlnp.load_file(p)
    keep = d["w7"]
    view = d["w9"][1:3]
    del d
    gc.collect()
    junk = [np.full(4096, 7.0) for _ in range(200)]
    del junk
    assert np.array_equal(keep, t["w7"])
    assert np.array_equal(view, t["w9"][1:3])


def test_torch_tensor_outlives_dict_and_handle(ckpt):
    torch = pytest.importorskip("torch")
    p, t = ckpt
    d = wl.load_file(p)
    keep = d["w1"]
    with wl.safe_open(p, "pt") as f:
        x = f.get_tensor("w2")
    del d, f
    gc.collect()
    assert torch.equal(keep, torch.from_numpy(t["w1"]))
    assert torch.equal(x, torch.from_numpy(t["w2"]))


def test_no_leak_after_1000_loads(ckpt):
    p, _ = ckpt  # ~150 KiB of tensors per load
    for _ in range(50):  # warm up allocator caches
        wlnp.load_file(p)
    gc.collect()
    before = rss_bytes()
    for i in range(1000):
        d = wlnp.load_file(p)
        if i % 2:
            with wl.safe_open(p, "np") as f:
                f.get_tensor("w0")
        del d
    gc.collect()
    grown = rss_bytes() - before
    # A leak of one load per iteration would be ~150 MiB; allow allocator noise.
    assert grown < 32 << 20, f"RSS grew by {grown >> 20} MiB over 1,000 loads"


def test_writes_do_not_reach_file(ckpt):
    p, t = ckpt
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    d = wlnp.load_file(p)
    for v in d.values():
        if v.flags.writeable:
            v[...] = 42
    with wl.safe_open(p, "np") as f:
        x = f.get_tensor("w5")
        if x.flags.writeable:
            x[...] = -1
    del d, x
    gc.collect()
    assert hashlib.sha256(p.read_bytes()).hexdigest() == digest
    again = wlnp.load_file(p)
    for k, v in t.items():
        assert np.array_equal(again[k], v)


def test_writes_do_not_reach_file_torch(ckpt):
    pytest.importorskip("torch")
    p, t = ckpt
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    d = wl.load_file(p)
    for v in d.values():
        v.fill_(3.0)
    del d
    gc.collect()
    assert hashlib.sha256(p.read_bytes()).hexdigest() == digest
    assert np.array_equal(wlnp.load_file(p)["w0"], t["w0"])


def test_loaded_tensors_are_independent(ckpt):
    p, t = ckpt
    a = wlnp.load_file(p)
    b = wlnp.load_file(p)
    if a["w0"].flags.writeable:
        a["w0"][...] = 0
        assert np.array_equal(b["w0"], t["w0"])


def test_threads_share_one_handle(ckpt):
    p, t = ckpt
    errors = []
    names = sorted(t)
    with wl.safe_open(p, "np") as f:
        def worker(seed):
            try:
                rng = np.random.default_rng(seed)
                for _ in range(100):
                    k = names[rng.integers(len(names))]
                    x = f.get_tensor(k)
                    if not np.array_equal(x, t[k]):
                        errors.append(f"{k} differs")
                    sl = f.get_slice(k)[1:3]
                    if not np.array_equal(sl, t[k][1:3]):
                        errors.append(f"{k} slice differs")
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert not errors, errors[:5]


def _status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    raise KeyError(key)


@pytest.mark.parametrize("mod,kw,key", [("numpy", {}, "RssAnon:"),
                                        ("torch", {"backend": "pread"}, "RssAnon:"),
                                        ("torch", {"backend": "mmap"}, "RssFile:")])
def test_memory_follows_kept_tensors(tmp_path, mod, kw, key):
    """Keep one 16 MiB tensor of a 128 MiB load: the rest of the memory goes back."""
    import gc
    import importlib
    import numpy as np
    m = importlib.import_module(f"weightlift.{mod}")
    if mod == "torch":
        pytest.importorskip("torch")
    p = tmp_path / "m.safetensors"
    refnp = pytest.importorskip("safetensors.numpy")
    refnp.save_file({f"t{i}": np.full(16 << 20, i, np.uint8) for i in range(8)}, str(p))
    gc.collect()
    base = _status_kb(key)
    d = m.load_file(str(p), **kw)
    s = sum(int(v[:: 4096].sum()) for v in d.values())  # touch every page
    assert s > 0
    full = _status_kb(key)
    assert full - base > 100 * 1024, (base, full)
    kept = d["t3"]
    del d
    gc.collect()
    now = _status_kb(key)
    assert now - base < (16 + 8) * 1024, (base, full, now)
    assert int(kept[7]) == 3
