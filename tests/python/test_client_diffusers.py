# SPDX-License-Identifier: Apache-2.0
"""diffusers through weightlift: a small UNet2DModel and AutoencoderKL written with
save_pretrained (safetensors.torch.save_file) are the reference's bytes, and from_pretrained
(safetensors.torch.load_file / safe_open) loads the same bits.
Cost in `make test`: the install is shared with the other clients (test_client_transformers.py
has the total); this file runs in about 25 s on a fresh 2-core machine."""
import pytest

from clientutil import assert_same, run_both

pytest.importorskip("diffusers")

SCRIPT = '''
import torch
from diffusers import AutoencoderKL, UNet2DModel
torch.manual_seed(0)
unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
                   block_out_channels=(8, 16), norm_num_groups=4,
                   down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                   up_block_types=("AttnUpBlock2D", "UpBlock2D"))
vae = AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=2)
out = os.environ["OUT"]
unet.save_pretrained(out + "/unet")
vae.save_pretrained(out + "/vae", max_shard_size="20KB")
lu = UNet2DModel.from_pretrained(out + "/unet")
lv = AutoencoderKL.from_pretrained(out + "/vae")
report(via=loaded_via(), unet=digests(unet.state_dict()), vae=digests(vae.state_dict()),
       lunet=digests(lu.state_dict()), lvae=digests(lv.state_dict()))
'''


def test_diffusers_save_and_from_pretrained(tmp_path):
    ref, wl = run_both(SCRIPT, tmp_path)
    assert ref["lunet"] == ref["unet"] and ref["lvae"] == ref["vae"]
    assert_same(ref, wl)
