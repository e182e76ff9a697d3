# SPDX-License-Identifier: Apache-2.0
"""Large checkpoints (marker `large`, skipped unless --run-large or WEIGHTLIFT_LARGE=1): loading
a 2 GiB file does not take 4 GiB of memory (peak RSS, RssAnon and the tracemalloc peak of a
child process), and a
file over 4 GiB holding a single tensor over 2 GiB loads correctly (every chunk checked, and
slices across the 2 GiB and 4 GiB boundaries). Files are written chunk by chunk and deleted."""
import json
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

wl = pytest.importorskip("weightlift")
wlnp = pytest.importorskip("weightlift.numpy")

pytestmark = pytest.mark.large

GiB = 1 << 30
CHUNK = 251 * 65536  # a multiple of the 251-byte pattern period, ~16 MiB
BASE = (np.arange(CHUNK) % 251).astype(np.uint8)


def chunk(tensor_id, i, n=CHUNK):
    c = BASE[:n].copy()
    if n >= 16:
        c[:16] = np.frombuffer(struct.pack("<QQ", tensor_id, i), np.uint8)
    return c


def write_file(path, sizes):
    """A safetensors file of U8 tensors t0..tN-1 with the given byte sizes, chunk-patterned."""
    header, off = {}, 0
    for k, n in enumerate(sizes):
        header[f"t{k}"] = {"dtype": "U8", "shape": [n], "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for k, n in enumerate(sizes):
            for i in range(0, n, CHUNK):
                f.write(chunk(k, i // CHUNK, min(CHUNK, n - i)).tobytes())


def check_tensor(arr, tensor_id, n):
    assert arr.shape == (n,)
    for i in range(0, n, CHUNK):
        m = min(CHUNK, n - i)
        assert np.array_equal(arr[i:i + m], chunk(tensor_id, i // CHUNK, m)), (tensor_id, i)


def expected_byte(tensor_id, pos):
    return chunk(tensor_id, pos // CHUNK)[pos % CHUNK]


@pytest.fixture
def bigdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("large")
    yield d
    for f in d.iterdir():
        f.unlink()


def test_2gib_load_memory(bigdir):
    p = bigdir / "two.safetensors"
    n = 2 * GiB
    write_file(p, [n // 2, n // 2])
    script = textwrap.dedent(f"""
        import gc, tracemalloc, numpy as np, weightlift.numpy as wlnp
        tracemalloc.start()
        d = wlnp.load_file({str(p)!r})
        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        s = sum(int(v[::4096].sum(dtype=np.uint64)) for v in d.values())  # touch every page
        for v in d.values(): v.sum()
        st = dict(l.split(":", 1) for l in open("/proc/self/status"))
        print(int(st["VmHWM"].split()[0]) * 1024, int(st["RssAnon"].split()[0]) * 1024, traced)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    hwm, anon, traced = map(int, out.stdout.split())
    assert traced < int(2.5 * GiB), f"tracemalloc peak {traced / GiB:.2f} GiB loading 2 GiB"
    assert hwm < 3 * GiB, f"peak RSS {hwm / GiB:.2f} GiB loading a 2 GiB file"
    assert anon < int(2.5 * GiB), f"RssAnon {anon / GiB:.2f} GiB after loading a 2 GiB file"


def test_over_4gib_with_single_tensor_over_2gib(bigdir):
    p = bigdir / "four.safetensors"
    sizes = [2 * GiB + 3 * CHUNK + 12345, 2 * GiB - 1000]
    assert sum(sizes) > 4 * GiB
    write_file(p, sizes)
    d = wlnp.load_file(p)
    assert sorted(d) == ["t0", "t1"]
    for k, n in enumerate(sizes):
        check_tensor(d[f"t{k}"], k, n)
    del d
    with wl.safe_open(p, "np") as f:
        s = f.get_slice("t0")
        assert s.get_shape() == [sizes[0]]
        for lo in [2 * GiB - 5, sizes[0] - 7, (1 << 31) - 1]:
            got = s[lo:lo + 7] if lo + 7 <= sizes[0] else s[lo:]
            want = [expected_byte(0, q) for q in range(lo, min(lo + 7, sizes[0]))]
            assert list(got) == want, lo
        t1 = f.get_tensor("t1")  # lies past 4 GiB in the file
        assert t1[-1] == expected_byte(1, sizes[1] - 1)
        s1 = f.get_slice("t1")
        off = 4 * GiB - sizes[0]  # file data offset 4 GiB falls inside t1
        assert list(s1[off - 3:off + 3]) == [expected_byte(1, q) for q in range(off - 3, off + 3)]
