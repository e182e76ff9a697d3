# SPDX-License-Identifier: Apache-2.0
"""Read-ahead for safe_open handles that are asked for one whole tensor after another
(transformers' get_slice(name)[...] over every tensor, vLLM's get_tensor loop), and of the
next shard of a sharded checkpoint.

One tensor at a time, a cold file is read by page faults or by small reads (measured in
bench/RESULTS.md: 0.2-0.6 GB/s); the engine reading the whole file at once reaches the disk's
rate. So a handle runs one background load of the tensors it has not handed out yet, in the
handle's mode, and each request takes its tensor from there as soon as it has landed (mapped
loads hand tensors out as their pages come in, in file order: the consumer of the first
tensors overlaps the reading of the rest). backend="mmap" (transformers' handles) starts it at
the first whole-tensor request, with that tensor first: views of a private mapping
populated by the engine's threads, hot or cold (cold, that beat O_DIRECT copies into fresh
memory on the client path: 2026-12-02, the 2.2 GiB Llama of bench/clients.py, each shard
loaded whole and kept: mapped 1.20 and 2.16 s, copied 2.38 and 2.43 s; the copy pays the
kernel's zeroing of fresh anonymous memory, the mapping takes the page-cache pages as they
are read). backend=None (WLIFT_MMAP_AUTO: mapped when the data is in the page cache, else
O_DIRECT reads into memory the tensors own) starts it at the second, so that a handle asked
for one tensor does not copy the rest of the file into memory.
Each tensor is handed out once (a second request loads it anew), so memory follows the
tensors kept; those never asked for are freed when the handle closes, which cancels what is
still being read.

The next shard: when a handle's read-ahead has read its file to the end, the shard that
follows it in the `*.safetensors.index.json` next to the file (the order of save_pretrained,
transformers and vLLM open them in) is read into the page cache by one process-wide thread
(a mapped load of the whole file, populated and dropped at once: it holds no memory of the
process, only page cache, one shard ahead), so that the next handle finds it cached (then its
own read-ahead maps it in milliseconds, and AUTO maps it). Closing the current handle does not
cancel that (vLLM closes shard k before opening k + 1); a newer request replaces a pending
one, and the read stops when the process exits."""
from __future__ import annotations

import os
import threading
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from . import _native


class Prefetch:
    """Background loads of `groups` (lists of tensor names, one load each, in order) from ck;
    then, if they all completed and `path` (ck's local file) is a shard of an index, the next
    shard is queued for the page-cache read-ahead."""

    def __init__(self, ck: "_native.Checkpoint", groups: Sequence[Iterable[str]], device: str,
                 mmap: int = _native.MMAP_AUTO, path: Optional[str] = None):
        self._cond = threading.Condition()
        self._ready: Dict[str, "_native.Tensor"] = {}
        self._done = False
        self._cancel = threading.Event()
        self.stats: Optional[dict] = None  # the last background load's, once it has finished
        self._th = threading.Thread(
            target=self._run, args=(ck, [list(g) for g in groups], device, mmap, path),
            name="weightlift-prefetch", daemon=True)
        self._th.start()

    def _run(self, ck, groups, device, mmap, path) -> None:
        try:
            for names in groups:
                if self._cancel.is_set():
                    return
                if names:
                    # The result is dropped at once: each tensor lives as long as its Tensor.
                    self.stats = ck.load(names=names, mmap=mmap, device=device,
                                         ready=self._put, cancel=self._cancel).stats()
            nxt = next_shard(path) if path and not self._cancel.is_set() else None
            if nxt is not None:
                warm_later(nxt)
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


# --- the next shard -----------------------------------------------------------------------

_INDEX_SUFFIX = ".safetensors.index.json"
# directory -> (the index files' identities, {shard's real path: the next shard's path})
_next_cache: Dict[str, Tuple[tuple, Dict[str, str]]] = {}
_cache_lock = threading.Lock()


def _identity(path: str) -> tuple:
    st = os.stat(path)
    return (path, st.st_ino, st.st_size, st.st_mtime_ns)


def next_shard(path: str) -> Optional[str]:
    """The shard after `path` in the *.safetensors.index.json next to it (its file order),
    or None: no index, path not in it, the last shard, or a remote URI. The index is read
    through the library (its shard list), once per process while it is unchanged."""
    if "://" in path:
        return None
    d = os.path.dirname(os.path.abspath(path))
    try:
        idx = sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith(_INDEX_SUFFIX))
        ident = tuple(_identity(i) for i in idx)
    except OSError:
        return None
    if not idx:
        return None
    with _cache_lock:
        hit = _next_cache.get(d)
    if hit is None or hit[0] != ident:
        order: Dict[str, str] = {}
        for i in idx:
            try:
                ck = _native.Checkpoint(i)
                try:
                    files = [os.path.join(d, f[0]) for f in ck.files()]
                finally:
                    ck.close()
            except Exception:  # noqa: BLE001 - a broken index: no read-ahead from it
                continue
            for a, b in zip(files, files[1:]):
                order.setdefault(os.path.realpath(a), b)
        hit = (ident, order)
        with _cache_lock:
            if len(_next_cache) > 64:
                _next_cache.clear()
            _next_cache[d] = hit
    return hit[1].get(os.path.realpath(path))


class _Warmer:
    """One daemon thread reading queued shards into the page cache, one at a time; a newer
    request replaces one not started yet. The thread exits after 5 s with nothing queued."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: Optional[str] = None
        self._busy = False
        self._th: Optional[threading.Thread] = None
        self.warmed: List[str] = []  # the last files read, in order (tests)

    def submit(self, path: str) -> None:
        with self._cond:
            self._pending = path
            if self._th is None:
                self._th = threading.Thread(target=self._run, name="weightlift-next-shard",
                                            daemon=True)
                self._th.start()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: self._pending is not None, timeout=5.0):
                    self._th = None
                    return
                path, self._pending, self._busy = self._pending, None, True
            try:
                ck = _native.Checkpoint(path)
                try:
                    ck.load(mmap=_native.MMAP_ON, device="cpu")  # dropped at once
                finally:
                    ck.close()
                self.warmed.append(path)
                del self.warmed[:-16]
            except Exception:  # noqa: BLE001 - an optimisation: the handle reads it anyway
                pass
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once nothing is queued or being read (tests)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and not self._busy,
                                       timeout=timeout)


_warmer = _Warmer()


def warm_later(path: str) -> None:
    """Queue path for the page-cache read-ahead (see the module's docstring)."""
    _warmer.submit(path)
