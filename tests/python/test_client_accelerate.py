# SPDX-License-Identifier: Apache-2.0
"""accelerate through weightlift: Accelerator.save_model (sharded safetensors, written through
safetensors.torch.save_file) writes the reference's bytes, and load_checkpoint_in_model /
load_checkpoint_and_dispatch (safe_open, safetensors.torch.load_file) load the same bits.
Cost in `make test`: the install is shared with the other clients (test_client_transformers.py
has the total); this file runs in about 20 s on a fresh 2-core machine."""
import pytest

from clientutil import assert_same, run_both

pytest.importorskip("accelerate")

SCRIPT = '''
import torch
from accelerate import Accelerator, init_empty_weights, load_checkpoint_and_dispatch
from accelerate.utils import load_checkpoint_in_model
def make():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(),
                               torch.nn.Linear(256, 64), torch.nn.LayerNorm(64)).to(torch.bfloat16)
m = make()
out = os.environ["OUT"]
Accelerator(cpu=True).save_model(m, out, max_shard_size="40KB")
into = make()
for p in into.parameters():
    p.data.zero_()
load_checkpoint_in_model(into, out)
with init_empty_weights():
    empty = make()
disp = load_checkpoint_and_dispatch(empty, out, device_map={"": "cpu"})
report(via=loaded_via(), orig=digests(m.state_dict()), loaded=digests(into.state_dict()),
       dispatched=digests(disp.state_dict()))
'''


def test_accelerate_save_model_and_load_checkpoint(tmp_path):
    ref, wl = run_both(SCRIPT, tmp_path)
    assert ref["loaded"] == ref["orig"] == ref["dispatched"]
    saved = assert_same(ref, wl)
    assert len([k for k in saved if k.endswith(".safetensors")]) >= 2
