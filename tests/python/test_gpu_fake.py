# SPDX-License-Identifier: Apache-2.0
"""Device loads from Python against the fake CUDA driver (fake/; docs/gpu.md), in a
subprocess (the driver library is read when the library's default context is made): the
native tensors are CUDA DLPack tensors on the asked device, and a bad index is a
RuntimeError naming the device; a Python device allocator (device_allocator=) owns the
load's memory: one alloc, the tensors in it, one free when the last tensor goes, its
exception passed through. torch cannot use a fake driver, so torch/JAX interop is
checked on a real GPU only (bench/gpu.sh)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE = os.path.join(ROOT, os.environ.get("WEIGHTLIFT_BUILD", "build"), "fake",
                    "libwlift_fakecuda.so")

SCRIPT = r"""
import sys, numpy as np
import weightlift
from weightlift import _core
from safetensors.numpy import save_file
p = sys.argv[1]
save_file({"a": np.arange(1000, dtype=np.float32), "b": np.ones((7, 3), np.int8),
           "c": np.zeros(0, np.float16)}, p)
ck = _core.open_checkpoint(p)
res = ck.load(device="cuda:1")
n = 0
for t in res.tensors():
    assert t.__dlpack_device__() == (2, 1), t.__dlpack_device__()
    assert t.device == 1
    n += 1
assert n == 3, n
try:
    ck.load(device="cuda:5")
except RuntimeError as e:
    assert 'device "cuda:5": no such device' in str(e), str(e)
else:
    raise AssertionError("cuda:5 loaded")
print("ok")
"""


@pytest.mark.skipif(not os.path.exists(FAKE), reason="fake CUDA driver not built")
def test_device_tensors_on_the_fake(tmp_path):
    env = dict(os.environ, WEIGHTLIFT_CUDA_LIBRARY=FAKE)
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "m.safetensors")],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr


ALLOC_SCRIPT = r"""
import ctypes, gc, sys, numpy as np
import weightlift
from weightlift import _core
from safetensors.numpy import save_file
p, fake = sys.argv[1], sys.argv[2]
save_file({"a": np.arange(1000, dtype=np.float32), "b": np.ones((7, 3), np.int8)}, p)
ck = _core.open_checkpoint(p)
ck.load(device="cuda:0")  # the library loads (and initialises) the fake first
cu = ctypes.CDLL(fake)  # the same library: dlopen gives the loaded one


class FakeAlloc:
    # Device memory from the fake's cuMemAlloc, as PyTorch's caching allocator would give it.
    def __init__(self, fail=False):
        self.calls, self.freed, self.fail = [], [], fail

    def _ctx(self, device, fn):
        ctx = ctypes.c_void_p()
        assert cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), device) == 0
        assert cu.cuCtxPushCurrent_v2(ctx) == 0
        try:
            return fn()
        finally:
            cu.cuCtxPopCurrent_v2(ctypes.byref(ctypes.c_void_p()))
            cu.cuDevicePrimaryCtxRelease_v2(device)

    def alloc(self, device, nbytes):
        self.calls.append((device, nbytes))
        if self.fail:
            raise MemoryError("the test's allocator is out of memory")
        ptr = ctypes.c_ulonglong()
        assert self._ctx(device, lambda: cu.cuMemAlloc_v2(ctypes.byref(ptr),
                                                          ctypes.c_size_t(nbytes))) == 0
        self.ptr = ptr.value
        return ptr.value

    def free(self, device, ptr, nbytes):
        self.freed.append((device, ptr, nbytes))
        assert self._ctx(device, lambda: cu.cuMemFree_v2(ctypes.c_ulonglong(ptr))) == 0


a = FakeAlloc()
res = ck.load(device="cuda:1", device_allocator=a)
assert len(a.calls) == 1 and a.calls[0][0] == 1 and a.calls[0][1] >= 4000 + 21, a.calls
ts = list(res.tensors())
assert [t.device for t in ts] == [1, 1]
assert ts[0].address == a.ptr, (ts[0].address, a.ptr)
assert a.ptr <= ts[1].address < a.ptr + a.calls[0][1]
del res
assert not a.freed  # the tensors keep the memory
del ts
gc.collect()
assert a.freed == [(1, a.ptr, a.calls[0][1])], a.freed
# The allocator's exception comes through; nothing is freed that was not given.
b = FakeAlloc(fail=True)
try:
    ck.load(device="cuda:0", device_allocator=b)
except MemoryError as e:
    assert "out of memory" in str(e)
else:
    raise AssertionError("a failing allocator loaded")
assert len(b.calls) == 1 and not b.freed
# The Python layer: an allocator object through load_dict; "torch" resolves to
# weightlift.torch.TorchAllocator; not for CPU loads; a bad value is refused.
c = FakeAlloc()
d = _core.load_dict(p, lambda t: t.device, device="cuda:0", allocator=c)
assert d == {"a": 0, "b": 0} and len(c.calls) == 1, (d, c.calls)
gc.collect()
assert len(c.freed) == 1
try:
    from weightlift.torch import TorchAllocator
except ImportError:  # torch not installed: the name alone is checked
    pass
else:
    assert isinstance(_core.device_allocator("torch", "cuda:0"), TorchAllocator)
for bad, exc in (("cuda", ValueError), (object(), TypeError)):
    try:
        _core.device_allocator(bad, "cuda:0")
    except exc:
        pass
    else:
        raise AssertionError(repr(bad))
try:
    _core.device_allocator(c, "cpu")
except ValueError:
    pass
else:
    raise AssertionError("cpu with an allocator")
try:
    ck.load(device="cuda:0", device_allocator=object())
except TypeError:
    pass
else:
    raise AssertionError("an object without alloc/free")
print("ok")
"""


@pytest.mark.skipif(not os.path.exists(FAKE), reason="fake CUDA driver not built")
def test_device_allocator_on_the_fake(tmp_path):
    env = dict(os.environ, WEIGHTLIFT_CUDA_LIBRARY=FAKE)
    r = subprocess.run([sys.executable, "-c", ALLOC_SCRIPT, str(tmp_path / "m.safetensors"),
                        FAKE], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr


STREAM_SCRIPT = r"""
import sys, numpy as np
import weightlift
from weightlift import _core
from safetensors.numpy import save_file
p = sys.argv[1]
tensors = {"t%02d" % i: np.full(1000 + 37 * i, i, np.uint8) for i in range(12)}
save_file(tensors, p)
_core._FRAMEWORKS["raw"] = (lambda t: t, None)  # the native tensors (no torch CUDA here)
budget = 4096
ck = _core.open_checkpoint(p)
groups = _core.budget_groups(ck, budget)
ck.close()
assert sum(groups, []) == sorted(tensors), groups
assert len(groups) > 1 and all(sum((ck_n + 255) // 256 * 256 for ck_n in
       (1000 + 37 * int(n[1:]) for n in g)) <= budget for g in groups), groups
got = [(n, t.device) for n, t in weightlift.stream(p, device="cuda:1", framework="raw",
                                                   max_device_bytes=budget)]
# Within a group tensors come as they land (any order); the groups one after another.
names = [n for n, _ in got]
assert sorted(names) == sorted(tensors) and {d for _, d in got} == {1}, got
at = 0
for g in groups:
    assert sorted(names[at:at + len(g)]) == sorted(g), (names, groups)
    at += len(g)
for bad, exc in ((100, RuntimeError), (0, ValueError)):
    try:
        list(weightlift.stream(p, device="cuda:0", framework="raw", max_device_bytes=bad))
    except exc as e:
        assert bad == 0 or "more than max_device_bytes = 100" in str(e), str(e)
    else:
        raise AssertionError(bad)
try:
    list(weightlift.stream(p, framework="raw", max_device_bytes=budget))
except ValueError:
    pass
else:
    raise AssertionError("a budget on the CPU")
print("ok")
"""


@pytest.mark.skipif(not os.path.exists(FAKE), reason="fake CUDA driver not built")
def test_stream_in_budget_groups_on_the_fake(tmp_path):
    env = dict(os.environ, WEIGHTLIFT_CUDA_LIBRARY=FAKE)
    r = subprocess.run([sys.executable, "-c", STREAM_SCRIPT, str(tmp_path / "m.safetensors")],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
