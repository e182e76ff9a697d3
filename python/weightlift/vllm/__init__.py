# SPDX-License-Identifier: Apache-2.0
"""vLLM model loader: ``vllm serve MODEL --load-format weightlift`` (docs/vllm.md).

Registered with vLLM's ``register_model_loader`` by :func:`register`, which vLLM calls in
every process (the API server, the engine core, each worker) through the package's
``vllm.general_plugins`` entry point, so ``pip install weightlift`` is all it takes.

``WeightliftModelLoader`` is vLLM's ``DefaultModelLoader`` with another weights iterator:
the model directory and its ``*.safetensors`` files are found by the default loader's own
``_prepare_weights`` (Hugging Face download, index.json de-duplication), asked for the
``safetensors`` format (it rejects names it does not know, ours included), and the tensors are
read with the weightlift engine.

Reading only a rank's bytes: vLLM narrows tensor-parallel shards inside each parameter's
``weight_loader``, from whole tensors, along the parameter's own shard dims (``output_dim``
for column-parallel layers, vocabulary-parallel embeddings and the LM head, ``input_dim`` for
row-parallel ones). The iterator therefore hands the model a *deferred* tensor per checkpoint
tensor: a ``torch.Tensor`` subclass with the tensor's shape and dtype that holds no data.
``narrow`` (and basic slicing) of it is deferred too; the first operation that needs values
(``param.data.copy_(loaded_weight)`` in every weight loader) reads exactly the region selected
so far through the engine's partial reads: a leading-dimension range as rows
(``wlift_load_opts.rows``), a block along a later dimension as a shard
(``rank``/``world``/``shard``: the strided ranges, or their covering range where the pieces
are small, ``WEIGHTLIFT_SHARD_PIECE_MIN``), and anything else whole. A layer that narrows
thus gets its rank's block, read alone; a layer that does anything else with the tensor
(transposes it, reshapes it, quantizes it) gets the whole tensor, read once when first used;
a tensor the model never uses (a non-local expert, ``rotary_emb.inv_freq``) is never read.

Bytes read are counted per rank and logged when the weights are loaded; with
``WEIGHTLIFT_VLLM_STATS_DIR`` set, each rank also writes them to
``<dir>/<format>-rank<R>.json``, and the ``weightlift_count`` format (vLLM's default
safetensors loader, counting the bytes of the tensors it hands to the model; each of its
``get_tensor`` calls reads a whole tensor) is registered for comparison.
"""
from typing import Any, Dict, Optional

__all__ = ["FORMAT", "COUNT_FORMAT", "STATS_ENV", "register", "rank_stats"]

FORMAT = "weightlift"
COUNT_FORMAT = "weightlift_count"
STATS_ENV = "WEIGHTLIFT_VLLM_STATS_DIR"

_LAST: Dict[str, Dict[str, Any]] = {}
_registered = False


def rank_stats(load_format: str = FORMAT) -> Optional[Dict[str, Any]]:
    """This process's counters of its last load in load_format (bytes_read, bytes_checkpoint,
    tensors, reads_whole, reads_narrowed, bytes_narrowed, rank, format), or None."""
    return _LAST.get(load_format)


def register() -> None:
    """Register ``--load-format weightlift`` with vLLM (the ``vllm.general_plugins`` entry
    point; vLLM calls it in each of its processes). Idempotent. Imports vLLM's loader module
    only here, so that discovering the entry point costs nothing."""
    global _registered
    if _registered:
        return
    import os

    from vllm.model_executor.model_loader import register_model_loader

    from .loader import WeightliftModelLoader, _CountingDefaultLoader

    register_model_loader(FORMAT)(WeightliftModelLoader)
    if os.environ.get(STATS_ENV):
        register_model_loader(COUNT_FORMAT)(_CountingDefaultLoader)
    _registered = True
