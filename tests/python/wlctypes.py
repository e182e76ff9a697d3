# SPDX-License-Identifier: Apache-2.0
"""ctypes binding to build/libweightlift.so for the conformance tests: open a checkpoint from
a path or from bytes and return its tensors (name, dtype, shape, bytes) and metadata, or the
error (code, rule, message). Independent of the Python package so that the format layer can
be tested on its own."""
import ctypes
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Diag(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("has_offset", ctypes.c_int),
                ("offset", ctypes.c_uint64), ("file", ctypes.c_char * 1024),
                ("tensor", ctypes.c_char * 512), ("rule", ctypes.c_char * 64),
                ("message", ctypes.c_char * 1024)]


class TensorInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("dtype", ctypes.c_int), ("ndim", ctypes.c_uint32),
                ("shape", ctypes.POINTER(ctypes.c_uint64)), ("nbytes", ctypes.c_uint64),
                ("file", ctypes.c_uint32), ("data_begin", ctypes.c_uint64),
                ("data_end", ctypes.c_uint64), ("file_offset", ctypes.c_uint64)]


class FileInfo(ctypes.Structure):
    _fields_ = [("uri", ctypes.c_char_p), ("size", ctypes.c_uint64),
                ("header_len", ctypes.c_uint64), ("data_offset", ctypes.c_uint64),
                ("ntensors", ctypes.c_uint64)]


class SaveTensor(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("dtype", ctypes.c_int), ("ndim", ctypes.c_uint32),
                ("shape", ctypes.POINTER(ctypes.c_uint64)), ("data", ctypes.c_void_p),
                ("nbytes", ctypes.c_uint64)]


def libpath():
    return os.environ.get("WLIFT_LIB", os.path.join(
        ROOT, os.environ.get("WEIGHTLIFT_BUILD", "build"), "libweightlift.so"))


_lib = None


def lib():
    global _lib
    if _lib is None:
        L = ctypes.CDLL(libpath())
        vp = ctypes.c_void_p
        L.wlift_open.argtypes = [vp, ctypes.c_char_p, ctypes.POINTER(vp), ctypes.POINTER(Diag)]
        L.wlift_open_memory.argtypes = [vp, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                        ctypes.POINTER(vp), ctypes.POINTER(Diag)]
        L.wlift_ckpt_close.argtypes = [vp]
        L.wlift_ckpt_count.argtypes = [vp]
        L.wlift_ckpt_count.restype = ctypes.c_size_t
        L.wlift_ckpt_info.argtypes = [vp, ctypes.c_size_t, ctypes.POINTER(TensorInfo)]
        L.wlift_ckpt_nfiles.argtypes = [vp]
        L.wlift_ckpt_nfiles.restype = ctypes.c_size_t
        L.wlift_ckpt_file.argtypes = [vp, ctypes.c_size_t, ctypes.POINTER(FileInfo)]
        L.wlift_ckpt_find.argtypes = [vp, ctypes.c_char_p]
        L.wlift_ckpt_find.restype = ctypes.c_int64
        L.wlift_ckpt_metadata_count.argtypes = [vp, ctypes.c_size_t]
        L.wlift_ckpt_metadata.argtypes = [vp, ctypes.c_size_t, ctypes.c_size_t,
                                          ctypes.POINTER(ctypes.c_char_p),
                                          ctypes.POINTER(ctypes.c_char_p)]
        L.wlift_dtype_name.argtypes = [ctypes.c_int]
        L.wlift_dtype_name.restype = ctypes.c_char_p
        L.wlift_dtype_from_name.argtypes = [ctypes.c_char_p]
        L.wlift_errname.restype = ctypes.c_char_p
        L.wlift_save_memory.argtypes = [ctypes.POINTER(SaveTensor), ctypes.c_size_t,
                                        ctypes.POINTER(ctypes.c_char_p), ctypes.c_size_t,
                                        ctypes.POINTER(vp), ctypes.POINTER(ctypes.c_size_t),
                                        ctypes.POINTER(Diag)]
        L.wlift_save.argtypes = [ctypes.c_char_p, ctypes.POINTER(SaveTensor), ctypes.c_size_t,
                                 ctypes.POINTER(ctypes.c_char_p), ctypes.c_size_t,
                                 ctypes.POINTER(Diag)]
        libc = ctypes.CDLL(None)
        libc.free.argtypes = [vp]
        L._free = libc.free
        _lib = L
    return _lib


class WlError(Exception):
    def __init__(self, code, d):
        self.code = code
        self.name = lib().wlift_errname(code).decode()
        self.rule = d.rule.decode()
        self.tensor = d.tensor.decode(errors="replace")
        self.message = d.message.decode(errors="replace")
        self.offset = d.offset if d.has_offset else None
        super().__init__("%s [%s] %s" % (self.name, self.rule, self.message))


def _read(ck, sources):
    """Tensors as {name: (dtype, shape, bytes)} (bytes read from the file/buffer at
    file_offset) and per-file metadata (None or list of (key, value))."""
    L = lib()
    out = {}
    for i in range(L.wlift_ckpt_count(ck)):
        t = TensorInfo()
        assert L.wlift_ckpt_info(ck, i, ctypes.byref(t)) == 0
        shape = [t.shape[k] for k in range(t.ndim)]
        assert t.data_end - t.data_begin == t.nbytes
        data = sources[t.file][t.file_offset:t.file_offset + t.nbytes]
        assert len(data) == t.nbytes
        name = t.name.decode()
        assert L.wlift_ckpt_find(ck, t.name) == i
        out[name] = (L.wlift_dtype_name(t.dtype).decode(), shape, bytes(data))
    metas = []
    for f in range(L.wlift_ckpt_nfiles(ck)):
        n = L.wlift_ckpt_metadata_count(ck, f)
        if n < 0:
            metas.append(None)
            continue
        m = []
        for i in range(n):
            k, v = ctypes.c_char_p(), ctypes.c_char_p()
            assert L.wlift_ckpt_metadata(ck, f, i, ctypes.byref(k), ctypes.byref(v)) == 0
            m.append((k.value.decode(), v.value.decode()))
        metas.append(m)
    return out, metas


def open_bytes(buf, name="mem"):
    L = lib()
    ck = ctypes.c_void_p()
    d = Diag()
    cbuf = ctypes.create_string_buffer(bytes(buf), len(buf))
    ret = L.wlift_open_memory(None, cbuf, len(buf), name.encode(), ctypes.byref(ck),
                              ctypes.byref(d))
    if ret != 0:
        raise WlError(ret, d)
    try:
        return _read(ck, [bytes(buf)])
    finally:
        L.wlift_ckpt_close(ck)


def open_path(path):
    L = lib()
    ck = ctypes.c_void_p()
    d = Diag()
    ret = L.wlift_open(None, os.fsencode(path), ctypes.byref(ck), ctypes.byref(d))
    if ret != 0:
        raise WlError(ret, d)
    try:
        srcs = []
        for f in range(L.wlift_ckpt_nfiles(ck)):
            fi = FileInfo()
            assert L.wlift_ckpt_file(ck, f, ctypes.byref(fi)) == 0
            with open(fi.uri.decode(), "rb") as fh:
                srcs.append(fh.read())
        return _read(ck, srcs)
    finally:
        L.wlift_ckpt_close(ck)


def _save_args(tensors, metadata):
    L = lib()
    arr = (SaveTensor * max(1, len(tensors)))()
    keep = []
    for i, (name, dt, shape, data) in enumerate(tensors):
        shp = (ctypes.c_uint64 * max(1, len(shape)))(*shape)
        buf = ctypes.create_string_buffer(bytes(data), max(1, len(data)))
        keep += [shp, buf]
        dtv = L.wlift_dtype_from_name(dt.encode())
        arr[i] = SaveTensor(name.encode() if isinstance(name, str) else name, dtv, len(shape),
                            shp, ctypes.cast(buf, ctypes.c_void_p), len(data))
    meta = metadata or []
    marr = (ctypes.c_char_p * max(1, 2 * len(meta)))()
    for i, (k, v) in enumerate(meta):
        marr[2 * i] = k.encode()
        marr[2 * i + 1] = v.encode()
    return arr, keep, (marr if metadata is not None else None), len(meta)


def save(path, tensors, metadata=None):
    """wlift_save: same arguments as save_memory plus the path."""
    arr, keep, marr, nmeta = _save_args(tensors, metadata)
    d = Diag()
    ret = lib().wlift_save(os.fsencode(path), arr, len(tensors), marr, nmeta, ctypes.byref(d))
    if ret != 0:
        raise WlError(ret, d)


def save_memory(tensors, metadata=None):
    """tensors: list of (name, dtype_name, shape, bytes); metadata: list of (k, v) or None."""
    L = lib()
    arr, keep, marr, nmeta = _save_args(tensors, metadata)
    out = ctypes.c_void_p()
    ln = ctypes.c_size_t()
    d = Diag()
    ret = L.wlift_save_memory(arr, len(tensors), marr, nmeta,
                              ctypes.byref(out), ctypes.byref(ln), ctypes.byref(d))
    if ret != 0:
        raise WlError(ret, d)
    try:
        return ctypes.string_at(out, ln.value)
    finally:
        L._free(out)
