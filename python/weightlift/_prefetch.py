# SPDX-License-Identifier: Apache-2.0
"""Read-ahead of a whole checkpoint for a safe_open handle that is asked for one whole tensor
after another (transformers' get_slice(name)[...] over every tensor, vLLM's get_tensor loop).

One tensor at a time, a cold file is read by page faults or by small reads (measured in
bench/RESULTS.md: 0.2-0.6 GB/s); the engine reading the whole checkpoint at once reaches the
disk's rate. So from the second whole-tensor request on, the handle runs one background
load of every tensor it has not handed out yet, in the handle's mode, and each request takes
its tensor from there as soon as it has landed. backend="mmap" (transformers' handles): views
of a private mapping populated by the engine's threads, hot or cold. Cold, that beat O_DIRECT
copies into fresh memory on the client path (2026-12-02, quiet machine, the 2.2 GiB Llama of
bench/clients.py, each shard loaded whole and kept: mapped 1.20 and 2.16 s, copied 2.38 and
2.43 s): the copy pays the kernel's zeroing of 2.2 GB of fresh anonymous memory, the mapping
takes the page-cache pages as they are read. backend=None: WLIFT_MMAP_AUTO (mapped when the
data is in the page cache, else O_DIRECT reads into owned memory).
Each tensor is handed out once (a second request loads it anew), so memory follows the
tensors kept; those never asked for are freed when the handle closes."""
from __future__ import annotations

import threading
from typing import Dict, Iterable, Optional

from . import _native


class Prefetch:
    def __init__(self, ck: "_native.Checkpoint", names: Iterable[str], device: str,
                 mmap: int = _native.MMAP_AUTO):
        self._cond = threading.Condition()
        self._ready: Dict[str, "_native.Tensor"] = {}
        self._done = False
        self._cancel = threading.Event()
        self.stats: Optional[dict] = None  # the background load's, once it has finished
        self._th = threading.Thread(target=self._run, args=(ck, list(names), device, mmap),
                                    name="weightlift-prefetch", daemon=True)
        self._th.start()

    def _run(self, ck, names, device, mmap) -> None:
        try:
            if names:
                # The result is dropped at once: each tensor lives as long as its Tensor.
                self.stats = ck.load(names=names, mmap=mmap, device=device,
                                     ready=self._put, cancel=self._cancel).stats()
        except BaseException:  # noqa: BLE001 - requests fall back to their own loads
            pass
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _put(self, t: "_native.Tensor") -> None:
        with self._cond:
            self._ready[t.name] = t
            self._cond.notify_all()

    def take(self, name: str) -> Optional["_native.Tensor"]:
        """name's tensor once it has landed, handed out once; None when the background load
        ended without it (failed, canceled, or already taken): load it directly then."""
        with self._cond:
            while name not in self._ready and not self._done:
                self._cond.wait()
            return self._ready.pop(name, None)

    def close(self) -> None:
        """Cancel what is still being read and free the tensors nobody took."""
        self._cancel.set()
        if self._th is not threading.current_thread():
            self._th.join()
        with self._cond:
            self._ready.clear()
