# SPDX-License-Identifier: Apache-2.0
"""The read path under safe_open's get_slice/get_tensor and load(bytes), as the client
libraries use it (transformers 5.x: safe_open(f, "pt", device="cpu", backend="mmap") then
get_slice(name)[...] per tensor; vLLM: get_tensor per tensor):
- on a mapped handle, whole tensors, leading-dimension ranges and leading ints are zero-copy
  views of a private mapping of the file, which lives exactly as long as the tensors do;
- other indices return compact copies that own their memory (the mapping goes at once);
- on a copying handle every index is one engine read into owned memory;
- Python opens and reads no file itself, and formats no string on the success path;
- the bytes equal the reference's for every backend."""
import gc
import os
import re

import numpy as np
import pytest

wl = pytest.importorskip("weightlift")
torch = pytest.importorskip("torch")
ref = pytest.importorskip("safetensors")
reft = pytest.importorskip("safetensors.torch")

from weightlift import _core, _slicing  # noqa: E402
import weightlift.torch  # noqa: E402,F401


def _mappings_of(path):
    """[(start, end)] of the process's mappings of path."""
    real = os.path.realpath(path)
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].strip() == real:
                a, b = (int(x, 16) for x in parts[0].split("-"))
                out.append((a, b))
    return out


def _in_mapping(t, path):
    p = t.data_ptr()
    return any(a <= p < b for a, b in _mappings_of(path))


@pytest.fixture
def ckpt(tmp_path):
    g = torch.Generator().manual_seed(1)
    t = {
        "w": torch.randn(64, 32, generator=g).to(torch.bfloat16),
        "b": torch.randn(64, generator=g),
        "e": torch.randint(0, 100, (16, 8, 4), generator=g, dtype=torch.int32),
        "s": torch.tensor(3.5),
        "z": torch.zeros(0, 4),
    }
    p = tmp_path / "m.safetensors"
    reft.save_file(t, p)
    return p, t


def _same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.reshape(-1).contiguous().view(torch.uint8).equal(
        b.reshape(-1).contiguous().view(torch.uint8))


VIEWS = [Ellipsis, slice(None), slice(2, 10), slice(5, 6), 3, -1, (slice(1, 4), slice(None)),
         (7, Ellipsis)]


@pytest.mark.parametrize("idx", VIEWS, ids=repr)
def test_mapped_leading_slices_are_views(ckpt, idx):
    p, t = ckpt
    with wl.safe_open(p, "pt", device="cpu", backend="mmap") as f, \
            ref.safe_open(p, "pt", device="cpu", backend="mmap") as r:
        for k in ("w", "b", "e"):
            if isinstance(idx, tuple) and t[k].dim() < 2:
                continue
            got = f.get_slice(k)[idx]
            _same(got, r.get_slice(k)[idx])
            assert _in_mapping(got, p), (k, idx)
            assert got.is_contiguous()


COPIES = [(slice(None), slice(0, 4)), (slice(0, 8, 2),), (Ellipsis, 1), (2, 3),
          (slice(None), slice(None), 0)]


@pytest.mark.parametrize("idx", COPIES, ids=repr)
def test_mapped_other_slices_are_compact_copies(ckpt, idx):
    p, t = ckpt
    with ref.safe_open(p, "pt") as r:
        want = {k: r.get_slice(k)[idx].clone() for k in ("w", "e") if len(idx) <= t[k].dim()}
    gc.collect()
    with wl.safe_open(p, "pt", backend="mmap") as f:
        for k in want:
            got = f.get_slice(k)[idx]
            _same(got, want[k])
            assert not _in_mapping(got, p), (k, idx)
            assert got.is_contiguous()
    gc.collect()
    # The loaded rows' mappings went with the views they were copied from (and the handle's
    # read-ahead with the handle).
    assert _mappings_of(p) == [], idx


@pytest.mark.parametrize("backend", ["mmap", "pread", None])
def test_every_form_equals_reference(ckpt, backend):
    p, t = ckpt
    # The reference opened with the same backend: "pread" applies its own index rules (an
    # empty dimension's [:] is an error there), the mapped default torch's (docs/compat.md).
    kw = {} if backend is None else {"backend": backend}
    with wl.safe_open(p, "pt", **kw) as f, ref.safe_open(p, "pt", **kw) as r:
        for k, v in t.items():
            forms = [Ellipsis]
            if v.dim():
                forms += [slice(None), slice(0, 0), slice(1, None)] if v.shape[0] else [slice(None)]
            for idx in forms:
                try:
                    want = r.get_slice(k)[idx]
                except ref.SafetensorError as e:
                    with pytest.raises(wl.SafetensorError, match=re.escape(str(e))):
                        f.get_slice(k)[idx]
                    continue
                _same(f.get_slice(k)[idx], want)
            _same(f.get_tensor(k), r.get_tensor(k))


def test_mapping_lives_as_long_as_the_tensors(ckpt):
    p, _ = ckpt
    with wl.safe_open(p, "pt", backend="mmap") as f:
        a = f.get_slice("w")[...]
        b = f.get_tensor("b")
    assert _in_mapping(a, p) and _in_mapping(b, p)
    ref_w = reft.load_file(p)["w"].clone()
    _same(a, ref_w)  # the handle is closed: the views stay valid
    a.add_(1)  # writable, copy-on-write: the file is untouched
    _same(wl.torch.load(p.read_bytes())["w"], ref_w)
    del a, b
    gc.collect()
    assert _mappings_of(p) == []


def test_copying_handle_returns_owned_memory(ckpt):
    p, t = ckpt
    with wl.safe_open(p, "pt", backend="pread") as f:
        for idx in VIEWS[:4]:
            got = f.get_slice("w")[idx]
            _same(got, t["w"][idx])
            assert not _in_mapping(got, p)
        assert not _in_mapping(f.get_tensor("w"), p)
    assert _mappings_of(p) == []


@pytest.mark.parametrize("backend", ["mmap", "pread"])
def test_python_opens_and_formats_nothing(ckpt, backend, monkeypatch):
    """get_slice/get_tensor on an open handle: the library does the reading (no os.open,
    os.pread*, open()), and the success path formats no index text."""
    p, t = ckpt
    import builtins

    def boom(*a, **k):
        raise AssertionError("python-side file access or formatting on the success path")

    with wl.safe_open(p, "pt", backend=backend) as f:
        monkeypatch.setattr(builtins, "open", boom)
        for name in ("open", "pread", "preadv", "read"):
            monkeypatch.setattr(os, name, boom)
        monkeypatch.setattr(_slicing, "_format_index", boom)
        for k in ("w", "e"):
            s = f.get_slice(k)
            for idx in VIEWS + COPIES:
                if isinstance(idx, tuple) and len(idx) > t[k].dim():
                    continue
                _same(s[idx], t[k][idx])
            _same(f.get_tensor(k), t[k])
        monkeypatch.undo()


def test_numpy_handle_owns_its_slices(ckpt):
    """A numpy handle copies into owned memory (as the reference's numpy module): slices are
    that memory or compact copies of it, never views of the file."""
    p, t = ckpt
    with wl.safe_open(p, "np") as f:
        for idx in VIEWS + COPIES:
            if isinstance(idx, tuple) and len(idx) > 3:
                continue
            got = f.get_slice("e")[idx]
            assert isinstance(got, np.ndarray)
            assert np.array_equal(got, t["e"].numpy()[idx])
            assert got.flags.c_contiguous and got.flags.writeable
    assert _mappings_of(p) == []


def test_load_bytes_owns_its_memory(ckpt):
    p, t = ckpt
    data = p.read_bytes()
    got = wl.torch.load(data)
    want = reft.load(data)
    assert sorted(got) == sorted(want)
    for k in want:
        _same(got[k], want[k])
    del data
    gc.collect()
    for k in want:  # owned memory: the bytes object is gone
        _same(got[k], want[k])
    _same(wl.torch.load(bytearray(p.read_bytes()))["w"], t["w"])


def _evict(path):
    """Drop path's pages from the page cache (this file only)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@pytest.mark.parametrize("backend", ["mmap", None])
@pytest.mark.parametrize("cold", [False, True], ids=["hot", "cold"])
def test_read_ahead_serves_whole_tensors(tmp_path, cold, backend):
    """A mapped handle asked for one whole tensor after another reads the rest in one
    background load in the handle's mode (backend="mmap": views of one populated mapping, hot
    or cold; backend=None: mapped when hot, O_DIRECT reads into owned memory when cold); each
    tensor is handed out once, the bytes are the reference's."""
    g = torch.Generator().manual_seed(2)
    t = {f"l{i}": torch.randn(1024, 2048, generator=g).to(torch.bfloat16) for i in range(16)}
    p = tmp_path / "r.safetensors"
    reft.save_file(t, p)
    want = reft.load(p.read_bytes())
    if cold:
        _evict(p)
    with wl.safe_open(p, "pt", device="cpu", backend=backend) as f:
        got = {k: f.get_slice(k)[...] for k in f.keys()}
        again = f.get_tensor("l3")  # handed out already: loaded anew
        assert f._pf is not None
        for k in want:
            _same(got[k], want[k])
        _same(again, want["l3"])
        assert again.data_ptr() != got["l3"].data_ptr()
        mapped = [k for k in got if _in_mapping(got[k], p)]
        if cold and backend is None:
            # The first tensor was loaded alone; the read-ahead copied the rest.
            assert len(mapped) <= 1, mapped
        else:
            assert len(mapped) == len(got)
            assert len(_mappings_of(p)) <= 3  # one for the first tensor, one for the rest
    del got, again
    gc.collect()
    assert _mappings_of(p) == []


def test_one_tensor_reads_one_tensor(tmp_path):
    """backend=None (AUTO, which copies a cold file into owned memory): a handle asked for one
    tensor reads only that one; partial reads never start the read-ahead, on any handle."""
    g = torch.Generator().manual_seed(3)
    t = {f"l{i}": torch.randn(64, 64, generator=g) for i in range(4)}
    p = tmp_path / "o.safetensors"
    reft.save_file(t, p)
    with wl.safe_open(p, "pt") as f:
        x = f.get_tensor("l2")
        y = f.get_slice("l1")[3:9]
        assert f._pf is None
    with wl.safe_open(p, "pt", backend="mmap") as f:
        z = f.get_slice("l1")[3:9]
        assert f._pf is None
    _same(x, t["l2"])
    _same(y, t["l1"][3:9])
    _same(z, t["l1"][3:9])


def test_mmap_read_ahead_starts_at_the_first_tensor(tmp_path):
    """backend="mmap" (transformers' handles): the first whole tensor asked for starts the
    read-ahead, that tensor first (it is not loaded alone before it), then the rest of the
    file; each is a view of the handle's mapping."""
    g = torch.Generator().manual_seed(5)
    t = {f"l{i}": torch.randn(256, 256, generator=g) for i in range(6)}
    p = tmp_path / "f.safetensors"
    reft.save_file(t, p)
    with wl.safe_open(p, "pt", backend="mmap") as f:
        first = f.get_slice("l4")[...]
        assert f._pf is not None
        rest = {k: f.get_tensor(k) for k in f.keys() if k != "l4"}
        assert all(_in_mapping(v, p) for v in rest.values()) and _in_mapping(first, p)
    _same(first, t["l4"])
    for k, v in rest.items():
        _same(v, t[k])


def _sharded(tmp_path, n=3):
    """A directory with n shards named as save_pretrained names them, and their index."""
    import json

    g = torch.Generator().manual_seed(6)
    files, weight_map = [], {}
    for i in range(n):
        name = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        ts = {f"s{i}.l{j}": torch.randn(128, 128, generator=g) for j in range(3)}
        reft.save_file(ts, tmp_path / name, metadata={"format": "pt"})
        files.append(tmp_path / name)
        weight_map.update({k: name for k in ts})
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    return files


def test_next_shard_from_the_index(tmp_path):
    from weightlift import _prefetch

    files = _sharded(tmp_path)
    assert _prefetch.next_shard(str(files[0])) == str(files[1])
    assert _prefetch.next_shard(str(files[1])) == str(files[2])
    assert _prefetch.next_shard(str(files[2])) is None
    # A symlinked directory (the hub cache's snapshots) names the same files.
    link = tmp_path.parent / (tmp_path.name + "-link")
    link.symlink_to(tmp_path)
    assert os.path.realpath(_prefetch.next_shard(str(link / files[0].name))) == \
        os.path.realpath(files[1])
    # No index, or a file it does not name: nothing.
    (tmp_path / "other.safetensors").write_bytes(files[0].read_bytes())
    assert _prefetch.next_shard(str(tmp_path / "other.safetensors")) is None
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "a.safetensors").write_bytes(files[0].read_bytes())
    assert _prefetch.next_shard(str(lone / "a.safetensors")) is None
    assert _prefetch.next_shard("https://example.com/m/model-00001-of-00003.safetensors") is None


@pytest.mark.parametrize("backend", ["mmap", None])
def test_reading_a_shard_reads_the_next_into_the_page_cache(tmp_path, backend):
    """When a handle has read its shard, the next shard of the index is read into the page
    cache (and not mapped into the process afterwards); closing the handle does not stop it;
    the next handle's tensors are the file's."""
    from weightlift import _prefetch

    files = _sharded(tmp_path)
    for f in files:
        _evict(f)
    with wl.safe_open(files[0], "pt", backend=backend) as f:
        got = {k: f.get_tensor(k) for k in f.keys()}
        f._pf.take("nothing")  # waits until the read-ahead has finished
    assert _prefetch._warmer.wait_idle(30)
    assert str(files[1]) in _prefetch._warmer.warmed
    assert _mappings_of(files[1]) == []
    with wl.safe_open(files[1], "pt", backend=backend) as f:
        nxt = {k: f.get_tensor(k) for k in f.keys()}
        # Cached: even backend=None (AUTO) maps it.
        assert all(_in_mapping(v, files[1]) for v in nxt.values())
    want = reft.load_file(files[0]) | reft.load_file(files[1])
    for k, v in (got | nxt).items():
        _same(v, want[k])


def test_close_cancels_read_ahead(tmp_path):
    g = torch.Generator().manual_seed(4)
    t = {f"l{i}": torch.randn(512, 1024, generator=g) for i in range(16)}
    p = tmp_path / "c.safetensors"
    reft.save_file(t, p)
    _evict(p)
    f = wl.safe_open(p, "pt", backend="mmap")
    a, b = f.get_tensor("l0"), f.get_tensor("l1")
    f.close()
    with pytest.raises(wl.SafetensorError, match="File is closed"):
        f.get_tensor("l2")
    _same(a, t["l0"])
    _same(b, t["l1"])
