# SPDX-License-Identifier: Apache-2.0
"""The deferred tensors of the vLLM loader (weightlift.vllm.loader) in the main test venv,
without vLLM: the two vLLM names the module imports are stubbed. Narrowing stays deferred and
reads only the block (rows, or a shard along a later dim, counted from the engine's stats);
anything else reads the whole tensor; values equal the checkpoint's. The end-to-end test with
vLLM itself is test_client_vllm.py. About 2 s."""
import sys
import types

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def loader():
    saved = {k: sys.modules.get(k) for k in (
        "vllm", "vllm.logger", "vllm.model_executor", "vllm.model_executor.model_loader",
        "vllm.model_executor.model_loader.default_loader")}
    if saved["vllm"] is None:
        import logging

        stub = {k: types.ModuleType(k) for k in saved}
        stub["vllm.logger"].init_logger = logging.getLogger

        class DefaultModelLoader:
            def __init__(self, load_config):
                self.load_config = load_config
        stub["vllm.model_executor.model_loader.default_loader"].DefaultModelLoader = \
            DefaultModelLoader
        sys.modules.update(stub)
    sys.modules.pop("weightlift.vllm.loader", None)
    import weightlift.vllm.loader as mod
    yield mod
    sys.modules.pop("weightlift.vllm.loader", None)
    for k, v in saved.items():
        if v is None:
            sys.modules.pop(k, None)


@pytest.fixture
def ckpt(tmp_path):
    import weightlift.torch as wt
    from weightlift import _core

    a = torch.arange(64 * 48, dtype=torch.float32).reshape(64, 48)
    b = torch.arange(10, dtype=torch.bfloat16)
    c = torch.arange(2 * 6 * 8, dtype=torch.int32).reshape(2, 6, 8)
    path = str(tmp_path / "x.safetensors")
    wt.save_file({"a": a, "b": b, "c": c}, path)
    ck = _core.open_checkpoint(path)
    yield ck, path, {"a": a, "b": b, "c": c}
    ck.close()


def _deferred(mod, ck, path, stats, name):
    info = ck.info(name)
    return mod.DeferredTensor(mod._Source(ck, path, name, info[1], tuple(info[2]), stats))


def test_metadata_without_reading(loader, ckpt):
    ck, path, ref = ckpt
    st = loader._Stats()
    d = _deferred(loader, ck, path, st, "a")
    assert isinstance(d, torch.Tensor) and isinstance(d, loader.DeferredTensor)
    assert d.shape == (64, 48) and d.dtype == torch.float32 and d.ndim == 2
    assert d.numel() == 64 * 48 and d.size(1) == 48 and len(d) == 64 and d.nbytes == 64 * 48 * 4
    n = d.narrow(0, 32, 32)
    assert isinstance(n, loader.DeferredTensor) and n.shape == (32, 48)
    e = d.detach()
    e.shard_id = "q"  # vLLM's WeightsMapper tags the tensors it hands on
    assert isinstance(e, loader.DeferredTensor) and e.shard_id == "q"
    assert isinstance(d[8:16], loader.DeferredTensor) and d[8:16].shape == (8, 48)
    assert st.as_dict()["bytes_read"] == 0


def test_rank_blocks_read_alone(loader, ckpt):
    ck, path, ref = ckpt
    a = ref["a"]
    st = loader._Stats()
    d = _deferred(loader, ck, path, st, "a")
    # Column-parallel: rank 1 of 2 along output_dim (rows), as a weight loader copies it.
    p = torch.empty(32, 48)
    p.copy_(d.narrow(0, 32, 32))
    assert torch.equal(p, a[32:])
    assert st.as_dict()["bytes_read"] == 32 * 48 * 4
    # Row-parallel: rank 2 of 4 along input_dim (a shard read of strided pieces; each piece
    # is 48 B, so the covering range unless the piece threshold is lowered).
    q = torch.empty(64, 12)
    q.copy_(torch.narrow(d, 1, 24, 12))
    assert torch.equal(q, a[:, 24:36])
    # A block of a block (a fused tensor's part, then the rank's half): rows.
    r = torch.empty(8, 48)
    r.copy_(d.narrow(0, 16, 16).narrow(0, 8, 8))
    assert torch.equal(r, a[24:32])
    s = st.as_dict()
    assert s["reads_narrowed"] == 3 and s["reads_whole"] == 0
    assert s["bytes_narrowed"] == (32 * 48 + 64 * 12 + 8 * 48) * 4


def test_strided_block_exact_with_piece_threshold(loader, ckpt, monkeypatch):
    ck, path, ref = ckpt
    from weightlift import _core

    monkeypatch.setenv("WEIGHTLIFT_SHARD_PIECE_MIN", "1")
    ck2 = _core.open_checkpoint(path)  # knobs are read when a context is made
    try:
        st = loader._Stats()
        d = _deferred(loader, ck2, path, st, "a")
        q = torch.empty(64, 24)
        q.copy_(d.narrow(1, 0, 24))
        assert torch.equal(q, ref["a"][:, :24])
        assert st.as_dict()["bytes_read"] in (64 * 24 * 4, 63 * 48 * 4 + 24 * 4)
    finally:
        ck2.close()


def test_other_ops_read_whole(loader, ckpt):
    ck, path, ref = ckpt
    st = loader._Stats()
    assert torch.equal(_deferred(loader, ck, path, st, "a").t(), ref["a"].t())
    assert torch.equal(_deferred(loader, ck, path, st, "b") + 1, ref["b"] + 1)
    c = _deferred(loader, ck, path, st, "c")
    assert torch.equal(c.narrow(2, 2, 4).narrow(1, 1, 3).contiguous(), ref["c"][:, 1:4, 2:6])
    assert "tensor(" in repr(_deferred(loader, ck, path, st, "b"))
    s = st.as_dict()
    assert s["reads_whole"] == 3 and s["reads_narrowed"] == 1
    w = torch.nn.Parameter(torch.empty(64, 48), requires_grad=False)
    w.data.copy_(_deferred(loader, ck, path, st, "a"))
    assert torch.equal(w, ref["a"])


def test_bad_narrow_is_torchs_error(loader, ckpt):
    ck, path, _ = ckpt
    d = _deferred(loader, ck, path, loader._Stats(), "a")
    with pytest.raises((RuntimeError, IndexError)):
        d.narrow(0, 60, 8)


def test_read_error_names_tensor_and_file(loader, ckpt):
    ck, path, _ = ckpt
    d = _deferred(loader, ck, path, loader._Stats(), "a")
    ck.close()
    with pytest.raises(Exception) as e:
        torch.empty(64, 48).copy_(d)
    assert "'a'" in str(e.value) and path in str(e.value)
