# SPDX-License-Identifier: Apache-2.0
"""transformers through weightlift (install_as_safetensors before transformers is imported):
a small Llama written with save_pretrained (sharded, BF16) loads with from_pretrained to the
same bits as with the reference safetensors, and save_pretrained writes the same bytes.

Cost in `make test` on a fresh 2-core machine: installing transformers (with accelerate,
sentence-transformers and diffusers, tests/requirements.txt) took 108 s here; this file runs
in about 25 s (two fresh interpreters importing torch and transformers). The client
libraries' pins do not clash with the main test venv, so they share it (DESIGN.md: a venv of
their own only when they do). vLLM's CPU build pins torch and transformers: it runs from a
venv of its own (.venv-vllm, test_client_vllm.py)."""
import pytest

from clientutil import assert_same, run_both

pytest.importorskip("transformers")

SCRIPT = '''
import torch, transformers
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, vocab_size=512,
                  tie_word_embeddings=False)
m = LlamaForCausalLM(cfg).to(torch.bfloat16)
out = os.environ["OUT"]
m.save_pretrained(out, max_shard_size="200KB")
loaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
# tied weights too: the loader must alias them as the reference does
cfg.tie_word_embeddings = True
torch.manual_seed(1)
t = LlamaForCausalLM(cfg)
t.save_pretrained(out + "/tied")
lt = AutoModelForCausalLM.from_pretrained(out + "/tied")
import transformers.modeling_utils as mu
report(via=loaded_via(), via_safe_open=mu.safe_open.__module__, loaded=digests(loaded.state_dict()),
       orig=digests(m.state_dict()), tied=digests(lt.state_dict()),
       tied_alias=lt.lm_head.weight.data_ptr() == lt.model.embed_tokens.weight.data_ptr())
'''


def test_transformers_from_pretrained_and_save_pretrained(tmp_path):
    ref, wl = run_both(SCRIPT, tmp_path)
    assert wl["via_safe_open"] == "weightlift._core"
    assert ref["loaded"] == ref["orig"]
    saved = assert_same(ref, wl)
    assert len([k for k in saved if k.endswith(".safetensors")]) >= 3  # sharded
    assert wl["tied_alias"] is True
