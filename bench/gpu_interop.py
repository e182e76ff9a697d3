# SPDX-License-Identifier: Apache-2.0
"""torch and JAX interop on a real GPU (bench/gpu.sh runs it; docs/gpu.md): what the fake
driver cannot show, since neither framework can use it.

    python3 bench/gpu_interop.py CHECKPOINT [cuda:N]

Checks, each against a CPU load of the same file (safetensors.torch.load_file, else
weightlift's own CPU load), one line each, exit 0 when all passed (3: torch sees no CUDA
device, 1: a check failed):
  - weightlift.torch.load_file(..., device=): CUDA tensors on that device index, equal bytes;
    their device memory goes back when the last tensor is dropped (cuMemGetInfo)
  - device_allocator="torch": the memory comes from PyTorch's caching allocator
    (memory_allocated grows by the load, and shrinks back when the tensors go)
  - dtype=torch.float32 from a BF16 file (random bits: NaNs, infinities, subnormals): equal
    to torch's own .float() bit for bit (the device kernels, JIT-compiled by this driver)
  - weightlift.stream(..., device=, max_device_bytes=): the tensors as they land, equal
  - JAX (when it sees a GPU): jax.dlpack.from_dlpack of the native tensors, on the GPU,
    equal bytes
"""
import gc
import os
import sys

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX: no 75 % grab

import torch  # noqa: E402

FAILS = []


def check(name, ok, detail=""):
    print("interop %s: %s%s" % (name, "ok" if ok else "FAIL", (" (%s)" % detail) if detail else ""))
    if not ok:
        FAILS.append(name)


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(
        a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))


def main():
    path = sys.argv[1]
    device = sys.argv[2] if len(sys.argv) > 2 else "cuda:0"
    index = int(device.split(":")[1]) if ":" in device else 0
    if not torch.cuda.is_available():
        print("interop: torch sees no CUDA device")
        return 3
    import weightlift
    import weightlift.torch as wt

    try:
        from safetensors.torch import load_file as st_load

        ref = st_load(path)
        how = "safetensors"
    except ImportError:
        ref = wt.load_file(path)
        how = "weightlift cpu"
    print("interop: %s, torch %s, %s (%d tensors, reference: %s)"
          % (torch.cuda.get_device_name(index), torch.__version__, path, len(ref), how))

    torch.cuda.synchronize(index)
    free0 = torch.cuda.mem_get_info(index)[0]
    sd = wt.load_file(path, device=device)
    on = all(t.is_cuda and t.device.index == index for t in sd.values())
    eq = sd.keys() == ref.keys() and all(same(sd[k].cpu(), ref[k]) for k in ref)
    check("load_file device=%s" % device, on and eq,
          "on the device: %s, bytes equal: %s" % (on, eq))
    used = free0 - torch.cuda.mem_get_info(index)[0]
    del sd
    gc.collect()
    torch.cuda.synchronize(index)
    back = torch.cuda.mem_get_info(index)[0]
    check("device memory given back", back >= free0 - (64 << 20),
          "%.0f MiB while held, %.0f MiB still used after the tensors went"
          % (used / 2**20, (free0 - back) / 2**20))

    a0 = torch.cuda.memory_allocated(index)
    sd = wt.load_file(path, device=device, device_allocator="torch")
    a1 = torch.cuda.memory_allocated(index)
    eq = all(same(sd[k].cpu(), ref[k]) for k in ref)
    del sd
    gc.collect()
    a2 = torch.cuda.memory_allocated(index)
    nbytes = sum(t.numel() * t.element_size() for t in ref.values())
    check('device_allocator="torch"', eq and a1 - a0 >= nbytes and a2 <= a0,
          "bytes equal: %s, torch allocated +%d for %d bytes, %d after" % (eq, a1 - a0, nbytes, a2 - a0))

    # Device conversion: BF16 random bits to F32, against torch's own conversion.
    bf = os.path.join(os.path.dirname(os.path.abspath(path)), "gpu-interop-bf16.safetensors")
    g = torch.Generator().manual_seed(7)
    src = {"w%d" % i: torch.randint(0, 1 << 16, (n,), generator=g, dtype=torch.int32)
           .to(torch.int16).view(torch.bfloat16) for i, n in enumerate((1, 7, 4099, 65537, 1 << 20))}
    wt.save_file(src, bf)
    sd = wt.load_file(bf, device=device, dtype=torch.float32)
    bad = [k for k in src if sd[k].dtype != torch.float32 or not same(sd[k].cpu(), src[k].float())]
    check("dtype BF16 -> F32 on the device", not bad, "mismatched: %s" % (bad or "none"))
    del sd

    got = {}
    for name, t in weightlift.stream(path, device=device, max_device_bytes=256 << 20):
        got[name] = t.cpu()
    eq = got.keys() == ref.keys() and all(same(got[k], ref[k]) for k in ref)
    check("stream max_device_bytes=256M", eq)

    try:
        import jax
        import numpy as np

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
    except Exception as e:  # noqa: BLE001 - no JAX, or no GPU backend for it
        print("interop jax: not checked (%s)" % e)
        gpus = []
    if gpus:
        from weightlift import _core

        res = _core.open_checkpoint(path).load(device=device)
        ok, n = True, 0
        for t in res.tensors():
            if t.dtype not in ("F32", "F16", "I32", "I64", "U8", "I8"):
                continue
            a = jax.dlpack.from_dlpack(t)
            ok &= list(a.devices())[0].platform == "gpu"
            ok &= np.array_equal(np.asarray(a).view(np.uint8).ravel(),
                                 ref[t.name].contiguous().view(torch.uint8).numpy().ravel())
            n += 1
        check("jax.dlpack.from_dlpack", ok and n > 0, "%d tensors, jax %s" % (n, jax.__version__))
    print("interop: %d failure(s)" % len(FAILS))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
