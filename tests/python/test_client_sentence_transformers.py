# SPDX-License-Identifier: Apache-2.0
"""sentence-transformers through weightlift: a SentenceTransformer over a small local BERT
saves (transformers' save_pretrained and safetensors' save_model) the reference's bytes, and
loading it back (from_pretrained, safetensors' load_model/load_file) gives the same weights
and the same embeddings, bit for bit.
Cost in `make test`: the install is shared with the other clients (test_client_transformers.py
has the total); this file runs in about 30 s on a fresh 2-core machine."""
import pytest

from clientutil import assert_same, run_both

pytest.importorskip("sentence_transformers")

SCRIPT = '''
import torch
from transformers import BertConfig, BertModel, BertTokenizer
out = os.environ["OUT"]
words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "weights", "load", "fast", "the",
         "disk", "is", "slow", "##s"]
os.makedirs(out + "/bert", exist_ok=True)
with open(out + "/vocab.txt", "w") as f:
    f.write("\\n".join(words) + "\\n")
BertTokenizer(out + "/vocab.txt").save_pretrained(out + "/bert")
torch.manual_seed(0)
BertModel(BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64)).save_pretrained(out + "/bert")
from sentence_transformers import SentenceTransformer, models
word = models.Transformer(out + "/bert")
st = SentenceTransformer(modules=[word, models.Pooling(word.get_word_embedding_dimension())],
                         device="cpu")
st.save(out + "/st")
back = SentenceTransformer(out + "/st", device="cpu")
emb = back.encode(["the disk is slow", "weights load fast"], convert_to_tensor=True)
report(via=loaded_via(), orig=digests(st.state_dict()), loaded=digests(back.state_dict()),
       emb=digests({"e": emb}))
'''


def test_sentence_transformers_save_and_load(tmp_path):
    ref, wl = run_both(SCRIPT, tmp_path)
    assert ref["loaded"] == ref["orig"]
    assert_same(ref, wl)
