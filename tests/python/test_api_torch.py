# SPDX-License-Identifier: Apache-2.0
"""weightlift.torch (and the top-level weightlift.load_file/save_file) against
safetensors.torch (0.8.0): every torch dtype round trips, files cross-read both ways and
save/save_file bytes equal the reference's, shared tensors in save_file raise like the
reference, save_model/load_model with tied weights, and load_state_dict(assign=True)."""
import pytest

wl = pytest.importorskip("weightlift")
torch = pytest.importorskip("torch")
wlt = pytest.importorskip("weightlift.torch")
reft = pytest.importorskip("safetensors.torch")
ref = pytest.importorskip("safetensors")

DTYPES = [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
          torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64]
DTYPES += [getattr(torch, n) for n in ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
                                       "float8_e5m2fnuz", "uint16", "uint32", "uint64"]
           if hasattr(torch, n)]


def rand(dtype, shape, gen):
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool()
    if dtype in (torch.uint16, torch.uint32, torch.uint64) if hasattr(torch, "uint16") else ():
        return torch.randint(0, 2**15, shape, generator=gen).to(dtype)
    if not dtype.is_floating_point and not dtype.is_complex:
        info = torch.iinfo(dtype)
        return torch.randint(max(info.min, -2**62), min(info.max, 2**62), shape,
                             generator=gen, dtype=torch.int64).to(dtype)
    if dtype.is_complex:
        return torch.randn(shape, generator=gen, dtype=torch.complex64).to(dtype)
    return torch.randn(shape, generator=gen).to(dtype)


def raw(t):
    return t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b""


def assert_same(a, b):
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert tuple(a[k].shape) == tuple(b[k].shape), k
        assert a[k].device.type == "cpu"
        if a[k].numel():
            assert raw(a[k].reshape(-1)) == raw(b[k].reshape(-1)), k


def sample(seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(), (0,), (1,), (7,), (3, 5), (2, 3, 4)]
    return {f"t{i}": rand(dt, shapes[i % len(shapes)], g) for i, dt in enumerate(DTYPES)}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_roundtrip_each_dtype(tmp_path, dtype):
    g = torch.Generator().manual_seed(1)
    t = {"x": rand(dtype, (4, 3), g), "s": rand(dtype, (), g), "e": rand(dtype, (0, 2), g)}
    p = tmp_path / "a.safetensors"
    wlt.save_file(t, p)
    assert_same(wlt.load_file(p), t)
    assert_same(wlt.load(wlt.save(t)), t)
    assert_same(reft.load_file(p), t)


def test_toplevel_is_torch(tmp_path):
    t = sample(2)
    p = tmp_path / "top.safetensors"
    wl.save_file(t, p)
    assert p.read_bytes() == reft.save(t)
    assert_same(wl.load_file(p), t)


def test_reference_file_read_by_us(tmp_path):
    t = sample(3)
    p = tmp_path / "ref.safetensors"
    reft.save_file(t, p, metadata={"format": "pt"})
    assert_same(wlt.load_file(p), t)
    assert_same(wlt.load(p.read_bytes()), t)
    with wl.safe_open(p, "pt") as f:
        assert f.metadata() == {"format": "pt"}


@pytest.mark.parametrize("metadata", [None, {}, {"format": "pt"}])
def test_bytes_identical_to_reference(tmp_path, metadata):
    t = sample(4)
    assert wlt.save(t, metadata=metadata) == reft.save(t, metadata=metadata)
    a, b = tmp_path / "a", tmp_path / "b"
    wlt.save_file(t, a, metadata=metadata)
    reft.save_file(t, b, metadata=metadata)
    assert a.read_bytes() == b.read_bytes()


def test_load_file_device_cpu(tmp_path):
    p = tmp_path / "d.safetensors"
    reft.save_file({"a": torch.arange(4.0)}, p)
    # The reference rejects torch.device("cpu") ("device device(type='cpu') is invalid"), and
    # so does weightlift (issue 9: the reference's device parser is the contract).
    with pytest.raises(ref.SafetensorError) as want:
        reft.load_file(p, device=torch.device("cpu"))
    with pytest.raises(wl.SafetensorError) as got:
        wlt.load_file(p, device=torch.device("cpu"))
    assert str(got.value) == str(want.value)
    for dev in ["cpu"]:
        try:
            want = reft.load_file(p, device=dev)
        except Exception as e:
            with pytest.raises(type(e)):
                wlt.load_file(p, device=dev)
        else:
            assert_same(wlt.load_file(p, device=dev), want)


def test_shared_tensors_raise_like_reference(tmp_path):
    a = torch.zeros(10)
    t = {"a": a, "b": a}
    with pytest.raises(Exception) as want:
        reft.save_file(t, tmp_path / "r")
    with pytest.raises(type(want.value)) as got:
        wlt.save_file(t, tmp_path / "w")
    assert "share memory" in str(got.value)
    # Same text up to the reference's trailing "More information at <huggingface docs URL>".
    norm = lambda e: " ".join(str(e).split()).split(" More information at")[0]  # noqa: E731
    assert norm(got.value) == norm(want.value)


def test_view_slices_share_storage_raise_like_reference(tmp_path):
    a = torch.zeros(10)
    t = {"a": a[:5], "b": a[5:]}
    try:
        want = reft.save(t)
    except Exception as e:
        with pytest.raises(type(e)):
            wlt.save(t)
    else:
        assert wlt.save(t) == want


def test_non_contiguous_like_reference():
    x = torch.arange(12.0).reshape(3, 4).t()
    try:
        want = reft.save({"x": x})
    except Exception as e:
        with pytest.raises(type(e)):
            wlt.save({"x": x})
    else:
        assert wlt.save({"x": x}) == want


class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(11, 4)
        self.lin = torch.nn.Linear(4, 11)
        self.lin.weight = self.emb.weight
        self.other = torch.nn.Linear(4, 3)


def test_save_model_load_model_tied(tmp_path):
    torch.manual_seed(0)
    m = Tied()
    pw, pr = tmp_path / "w.safetensors", tmp_path / "r.safetensors"
    wlt.save_model(m, pw)
    reft.save_model(m, pr)
    assert pw.read_bytes() == pr.read_bytes()
    m2 = Tied()
    got = wlt.load_model(m2, pw)
    m3 = Tied()
    want = reft.load_model(m3, pr)
    assert tuple(map(sorted, got)) == tuple(map(sorted, want))
    for k, v in m.state_dict().items():
        assert torch.equal(m2.state_dict()[k], v), k
    assert m2.lin.weight.data_ptr() == m2.emb.weight.data_ptr()


def test_load_model_missing_unexpected(tmp_path):
    torch.manual_seed(0)
    p = tmp_path / "part.safetensors"
    reft.save_file({"other.weight": torch.zeros(3, 4), "extra": torch.zeros(1)}, p)
    for strict in (False, True):
        try:
            want = reft.load_model(Tied(), p, strict=strict)
        except Exception as e:
            with pytest.raises(type(e)):
                wlt.load_model(Tied(), p, strict=strict)
        else:
            got = wlt.load_model(Tied(), p, strict=strict)
            assert tuple(map(sorted, got)) == tuple(map(sorted, want))
            assert sorted(got[1]) == ["extra"]


def test_load_state_dict_assign(tmp_path):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    p = tmp_path / "seq.safetensors"
    reft.save_file(m.state_dict(), p)
    with torch.device("meta"):
        m2 = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    sd = wlt.load_file(p)
    m2.load_state_dict(sd, assign=True)
    x = torch.randn(5, 8)
    assert torch.equal(m(x), m2(x))
    m3 = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    m3.load_state_dict(wlt.load_file(p))
    assert torch.equal(m(x), m3(x))


def test_loaded_tensor_usable_in_ops(tmp_path):
    p = tmp_path / "ops.safetensors"
    reft.save_file({"a": torch.arange(6.0).reshape(2, 3)}, p)
    a = wlt.load_file(p)["a"]
    assert torch.equal(a @ a.t(), torch.tensor([[5.0, 14.0], [14.0, 50.0]]))
    a.add_(1)  # loaded CPU tensors are writable like the reference's
    assert a[0, 0].item() == 1.0
