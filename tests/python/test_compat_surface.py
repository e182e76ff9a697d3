# SPDX-License-Identifier: Apache-2.0
"""The public and client-used surface of safetensors 0.8.0, against the reference installed in
the venv: every name of each reference module exists in weightlift's module of the same name;
TensorSpec, serialize, serialize_file and deserialize give the reference's results and bytes
and raise its exception types and texts on bad arguments; safe_open's argument errors
(missing file, '', bytes path, bad framework, bad device) are the reference's; torch's shared
storage helpers agree with the reference's; serialize_file releases the GIL."""
import importlib
import inspect
import json
import os
import struct
import threading
import types

import numpy as np
import pytest

wl = pytest.importorskip("weightlift")
ref = pytest.importorskip("safetensors")
torch = pytest.importorskip("torch")

import safetensors.numpy as refnp  # noqa: E402
import safetensors.torch as reft  # noqa: E402
import weightlift.numpy as wlnp  # noqa: E402
import weightlift.torch as wlt  # noqa: E402

# (tensorflow, paddle, mlx: test_compat_frameworks.py, each in a process of its own)
MODULES = ["", ".torch", ".numpy", ".flax"]


def _public(mod):
    """The names a client can take from a reference module: everything but the modules and
    typing helpers it imported itself (`os`, `np`, `Dict`, `defaultdict`, ...)."""
    out = set()
    for n in dir(mod):
        if n.startswith("__"):
            continue
        v = getattr(mod, n)
        if isinstance(v, types.ModuleType) and n not in ("numpy",):
            continue
        if getattr(v, "__module__", None) in ("typing", "collections") or n in ("Array",):
            continue
        out.add(n)
    return out


@pytest.mark.parametrize("sub", MODULES, ids=lambda s: s or "top")
def test_every_reference_name_exists(sub):
    try:
        r = importlib.import_module("safetensors" + sub)
    except ImportError as e:
        pytest.skip(f"the reference module safetensors{sub} does not import here: {e}")
    w = importlib.import_module("weightlift" + sub)
    names = _public(r) - {"_safetensors_rust"}
    missing = sorted(n for n in names if not hasattr(w, n))
    assert not missing, f"weightlift{sub} lacks {missing}"
    for n in names:
        rv, wv = getattr(r, n), getattr(w, n)
        if inspect.isfunction(rv) and inspect.isfunction(wv):
            rp = [p for p in inspect.signature(rv).parameters.values()]
            wp = [p for p in inspect.signature(wv).parameters.values()]
            # Every reference parameter is accepted, under the same name.
            assert [p.name for p in rp] == [p.name for p in wp][:len(rp)], (sub, n)


def outcome(fn):
    try:
        r = fn()
    except BaseException as e:  # noqa: BLE001 - the class and text are what is compared
        return ("err", type(e).__name__, str(e))
    return ("ok", r)


ARR = np.arange(6, dtype=np.float32)
ARR_BF = np.arange(4, dtype=np.uint16)


def spec(m, dtype="float32", shape=(6,), arr=ARR, n=None):
    return m.TensorSpec(dtype=dtype, shape=shape, data_ptr=arr.ctypes.data,
                        data_len=arr.nbytes if n is None else n)


# name -> f(module) ; compared: result, or exception type and text.
SURFACE = {
    "serialize": lambda m: m.serialize({"a": spec(m), "b": spec(m, "bfloat16", (2, 2), ARR_BF)},
                                       metadata={"k": "v"}),
    "serialize_empty": lambda m: m.serialize({}),
    "serialize_meta_only": lambda m: m.serialize({}, metadata={"a": "b"}),
    "serialize_f4": lambda m: m.serialize({"f": spec(m, "float4_e2m1fn_x2", (2, 3), ARR, 6)}),
    "serialize_dict_value": lambda m: m.serialize(
        {"a": {"dtype": "float32", "shape": [1], "data_ptr": 0, "data_len": 0}}),
    "serialize_list": lambda m: m.serialize([1]),
    "serialize_int_key": lambda m: m.serialize({1: spec(m)}),
    "serialize_meta_list": lambda m: m.serialize({}, metadata=[1]),
    "serialize_meta_int": lambda m: m.serialize({}, metadata={"a": 1}),
    "serialize_meta_key": lambda m: m.serialize({}, metadata={1: "a"}),
    "serialize_file_bytes_path": lambda m: m.serialize_file({}, b"/tmp/x.safetensors"),
    "serialize_file_int_path": lambda m: m.serialize_file({}, 3),
    "spec_unknown": lambda m: m.TensorSpec(dtype="nonsense", shape=[1], data_ptr=0, data_len=0),
    "spec_code": lambda m: m.TensorSpec(dtype="F32", shape=[1], data_ptr=0, data_len=0),
    "spec_positional": lambda m: m.TensorSpec("float32", [1], 0, 0),
    "spec_repr": lambda m: repr(m.TensorSpec(dtype="float4_e2m1fn_x2", shape=(2, 3), data_ptr=5,
                                             data_len=6)),
    "spec_attrs": lambda m: (lambda t: (t.dtype, t.shape, t.data_ptr, t.data_len))(
        m.TensorSpec(dtype="bfloat16", shape=torch.Size([2]), data_ptr=7, data_len=4)),
    "spec_neg_shape": lambda m: m.TensorSpec(dtype="float32", shape=[-1], data_ptr=0, data_len=0),
    "spec_neg_ptr": lambda m: m.TensorSpec(dtype="float32", shape=[1], data_ptr=-1, data_len=0),
    "spec_float_shape": lambda m: m.TensorSpec(dtype="float32", shape=[1.0], data_ptr=0,
                                               data_len=0),
    "spec_eq": lambda m: spec(m) == spec(m),
    "deserialize": lambda m: sorted((k, v["dtype"], v["shape"], bytes(v["data"]))
                                    for k, v in m.deserialize(reft.save(
                                        {"x": torch.arange(6.0).reshape(2, 3),
                                         "y": torch.zeros(0, 2, dtype=torch.int8)}))),
    "deserialize_data_type": lambda m: type(m.deserialize(refnp.save({"a": ARR}))[0][1]["data"]),
    "deserialize_str": lambda m: m.deserialize("abc"),
    "deserialize_bytearray": lambda m: m.deserialize(bytearray(refnp.save({"a": ARR}))),
}
# Same exception type, a more precise text (it names the tensor and the byte counts).
TYPE_ONLY = {"spec_positional", "spec_setattr"}


@pytest.mark.parametrize("case", sorted(SURFACE))
def test_surface_like_reference(case):
    want, got = outcome(lambda: SURFACE[case](ref)), outcome(lambda: SURFACE[case](wl))
    if case in TYPE_ONLY:
        assert got[:2] == want[:2], (case, got, want)
    else:
        assert got == want, case


def test_tensorspec_is_frozen():
    s = spec(wl)
    with pytest.raises(AttributeError, match="is not writable"):
        s.dtype = "F16"


def test_bad_serialize_errors_are_safetensor_errors(tmp_path):
    with pytest.raises(ref.SafetensorError, match="^Error while serializing: "):
        ref.serialize({"a": spec(ref, n=4)})
    with pytest.raises(wl.SafetensorError, match="^Error while serializing: .*4 bytes"):
        wl.serialize({"a": spec(wl, n=4)})
    with pytest.raises(ref.SafetensorError, match="^Error while deserializing: "):
        ref.deserialize(b"\0" * 3)
    with pytest.raises(wl.SafetensorError, match="^Error while deserializing: "):
        wl.deserialize(b"\0" * 3)


def test_serialize_file_equals_reference(tmp_path):
    specs = lambda m: {"a": spec(m), "b": spec(m, "uint16", (4,), ARR_BF)}  # noqa: E731
    ref.serialize_file(specs(ref), tmp_path / "r.safetensors", metadata={"x": "y"})
    wl.serialize_file(specs(wl), tmp_path / "w.safetensors", metadata={"x": "y"})
    assert (tmp_path / "r.safetensors").read_bytes() == (tmp_path / "w.safetensors").read_bytes()
    assert wl.serialize(specs(wl), {"x": "y"}) == (tmp_path / "r.safetensors").read_bytes()


def test_serialize_file_releases_the_gil(tmp_path):
    """The main thread keeps running Python while another thread is inside serialize_file."""
    big = np.ones(48 << 20, dtype=np.uint8)
    specs = {"big": wl.TensorSpec(dtype="uint8", shape=big.shape, data_ptr=big.ctypes.data,
                                  data_len=big.nbytes)}
    done = threading.Event()
    t = threading.Thread(target=lambda: (wl.serialize_file(specs, tmp_path / "g.safetensors"),
                                         done.set()))
    ticks = 0
    t.start()
    while not done.is_set():
        ticks += 1
    t.join()
    assert ticks > 1000, ticks
    assert os.path.getsize(tmp_path / "g.safetensors") > big.nbytes


@pytest.fixture
def small(tmp_path):
    p = tmp_path / "s.safetensors"
    refnp.save_file({"a": ARR}, str(p))
    return str(p)


def _open_cases(path):
    return {
        "missing": lambda m: m.safe_open("notafile", framework="pt"),
        "missing_abs": lambda m: m.safe_open(os.path.join(os.path.dirname(path), "nope", "x"),
                                             framework="np"),
        "empty_path": lambda m: m.safe_open("", framework="pt"),
        "bytes_path": lambda m: m.safe_open(path.encode(), framework="pt"),
        "int_path": lambda m: m.safe_open(3, framework="pt"),
        "bad_framework": lambda m: m.safe_open(path, framework="tensorflowx"),
        "framework_case": lambda m: m.safe_open(path, framework="PT"),
        "framework_none": lambda m: m.safe_open(path, framework=None),
        "torch_device": lambda m: m.safe_open(path, framework="pt", device=torch.device("cpu")),
        "device_neg": lambda m: m.safe_open(path, framework="pt", device=-1),
        "device_float": lambda m: m.safe_open(path, framework="pt", device=1.0),
        "device_meta": lambda m: m.safe_open(path, framework="pt", device="meta"),
        "device_mps1": lambda m: m.safe_open(path, framework="pt", device="mps:1"),
        "device_cuda_x": lambda m: m.safe_open(path, framework="pt", device="cuda:x"),
        "backend_bad": lambda m: m.safe_open(path, framework="pt", backend="nope"),
        "load_file_missing": lambda m: m.torch.load_file("nope.safetensors"),
        "np_load_file_missing": lambda m: m.numpy.load_file("nope.safetensors"),
        "load_file_bytes": lambda m: m.torch.load_file(path.encode()),
        # Accelerators other than CUDA: loaded on the CPU, then torch's .to() (and its error
        # where torch lacks the device), as the reference does.
        "load_xpu": lambda m: m.torch.load_file(path, device="xpu:0"),
        "load_mps": lambda m: m.torch.load_file(path, device="mps"),
        "load_npu": lambda m: m.torch.load_file(path, device="npu"),
        "load_hpu1": lambda m: m.torch.load_file(path, device="hpu:1"),
        "missing_tensor": lambda m: m.safe_open(path, framework="np").get_tensor("zz"),
        "missing_slice": lambda m: m.safe_open(path, framework="np").get_slice("zz"),
        "keys_tf": lambda m: m.safe_open(path, framework="tf").keys(),
        "keys_paddle": lambda m: m.safe_open(path, framework="paddle").keys(),
        "keys_mlx": lambda m: m.safe_open(path, framework="mlx").keys(),
        "keys_jax": lambda m: m.safe_open(path, framework="jax").keys(),
    }


def test_open_errors_like_reference(small):
    for name, fn in _open_cases(small).items():
        want, got = outcome(lambda: fn(ref)), outcome(lambda: fn(wl))
        if want[0] == "ok":
            assert got[0] == "ok", (name, got)
            if isinstance(want[1], list):
                assert got == want, name
            continue
        assert got == want, name


def test_missing_file_errno(small):
    with pytest.raises(FileNotFoundError) as e:
        wl.safe_open("notafile", framework="pt")
    assert e.value.errno == 2 and str(e.value) == "No such file or directory: notafile"


def test_dev_null_is_an_oserror_naming_the_device():
    with pytest.raises(OSError) as want:
        ref.safe_open("/dev/null", framework="pt")
    with pytest.raises(OSError) as got:
        wl.safe_open("/dev/null", framework="pt")
    assert type(got.value) is type(want.value) and got.value.errno == 19
    assert "/dev/null" in str(got.value)


def test_safe_open_handle(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    p = tmp_path / "h.safetensors"
    data = refnp.save({"a": ARR, "b": np.zeros((2, 3), np.uint8)})
    p.write_bytes(data)
    with open(p, "r") as f, wl._safe_open_handle(f, framework="np", device="cpu") as g:
        assert {k: g.get_tensor(k).tolist() for k in g.keys()} == \
            {"a": ARR.tolist(), "b": [[0] * 3] * 2}
    fs = fsspec.filesystem("memory")
    with fs.open("/h.safetensors", "wb") as f:
        f.write(data)
    with fs.open("/h.safetensors", "rb") as f, wl._safe_open_handle(f, framework="np") as g:
        assert g.get_tensor("a").tolist() == ARR.tolist()


def test_storage_helpers_like_reference():
    """The private helpers transformers, accelerate and the reference's tests call."""
    m = torch.randn(10)
    n = torch.empty([], dtype=m.dtype)
    n.set_(source=m.untyped_storage()[: 4 * m.element_size()])
    A = torch.zeros((4,))
    B = torch.zeros((16,))
    cases = [
        {"m": m, "n": n}, {"A": A, "B": A[:1]}, {"B": A[:2], "C": A[2:]},
        {"B": A[:2], "C": A[1:]}, {"B": A[:2], "C": A[2:], "D": A[:1]},
        {"C": torch.zeros(2, 2, device="meta")}, {"x": B[::4], "y": B[1:2]},
    ]
    for sd in cases:
        assert wlt._find_shared_tensors(sd) == reft._find_shared_tensors(sd), sd.keys()
        for v in sd.values():
            assert wlt.storage_ptr(v) == reft.storage_ptr(v)
            assert wlt.storage_size(v) == reft.storage_size(v)
            assert wlt._is_complete(v) == reft._is_complete(v)
            if v.device.type != "meta":
                assert wlt._end_ptr(v) == reft._end_ptr(v)
    full = torch.zeros((3, 3))
    for sd in ({"A": full, "B": full[:1]}, {"A": full, "B": full[:1], "C": full}):
        assert wlt._remove_duplicate_names(sd) == reft._remove_duplicate_names(sd)
        assert wlt._remove_duplicate_names(sd, preferred_names=["C"]) == \
            reft._remove_duplicate_names(sd, preferred_names=["C"])
    with pytest.raises(RuntimeError):
        wlt._remove_duplicate_names({"B": full[:1]})
    assert wlt._TYPES == reft._TYPES and wlt._SIZE == reft._SIZE
    assert wlnp._TYPES == refnp._TYPES


def test_save_model_overlapping_storage_like_reference(tmp_path):
    """Tied and overlapping parameters: the same file (bytes after the header, metadata) as the
    reference's save_model, and load_model restores the model."""
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(4, 4)
            self.b = self.a
            self.c = torch.nn.Parameter(torch.ones(8))
            self.d = torch.nn.Parameter(self.c.data[:4])  # overlaps c's storage

    torch.manual_seed(0)
    model = Tied()
    reft.save_model(model, tmp_path / "r.safetensors")
    wlt.save_model(model, tmp_path / "w.safetensors")
    r, w = ((tmp_path / n).read_bytes() for n in ("r.safetensors", "w.safetensors"))
    # The reference writes the metadata in hash order: compare the header as JSON.
    hr, hw = (json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]]) for b in (r, w))
    assert hr == hw and len(r) == len(w) and r[-64:] == w[-64:]
    with wl.safe_open(tmp_path / "w.safetensors", "pt") as f:
        assert f.metadata() == {"b.bias": "a.bias", "b.weight": "a.weight", "d": "c"}
    fresh = Tied()
    assert wlt.load_model(fresh, tmp_path / "w.safetensors") == \
        reft.load_model(Tied(), tmp_path / "r.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


def test_flatten_and_views_like_reference():
    t = {"x": torch.arange(6, dtype=torch.int16).reshape(2, 3), "y": torch.tensor(1.5)}
    keep_w, keep_r = [], []
    w, r = wlt._flatten_as_ptr(t, keep_w), reft._flatten_as_ptr(t, keep_r)
    assert {k: (v.dtype, v.shape, v.data_len) for k, v in w.items()} == \
        {k: (v.dtype, v.shape, v.data_len) for k, v in r.items()}
    arr, owner = wlt._to_ndarray(t["x"])
    rarr, _ = reft._to_ndarray(t["x"])
    assert arr.tobytes() == rarr.tobytes() and owner is t["x"]
    flat = ref.deserialize(reft.save(t))
    for a, b in ((wlt._view2torch(flat), reft._view2torch(flat)),):
        assert {k: v.tolist() for k, v in a.items()} == {k: v.tolist() for k, v in b.items()}
    a = np.arange(6, dtype=">i4").reshape(2, 3)[:, ::2]
    assert wlnp._is_little_endian(a) == refnp._is_little_endian(a)
    # Non-contiguous arrays: the reference serialises the wrong bytes; weightlift packs them.
    assert wlnp.load(wlnp.save({"a": a}))["a"].tolist() == a.tolist()
    flat = ref.deserialize(refnp.save({"a": ARR}))
    assert wlnp._view2np(flat)["a"].tolist() == refnp._view2np(flat)["a"].tolist()
    assert wlnp._getdtype("F32") is refnp._getdtype("F32")
    assert wlt._getdtype("BF16") is reft._getdtype("BF16")
