#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A small synthetic mixture-of-experts checkpoint (stdlib only) for the expert-parallel
tests: LAYERS layers of EXPERTS routed experts (w1, w2, w3 each), a router, attention and a
shared expert per layer ("shared_experts.0.", which is not a routed expert), embeddings.
Writes OUT/moe.safetensors and OUT/moe.json: {name: nbytes} in file order.

usage: moe_fixture.py OUT [EXPERTS] [LAYERS]
"""
import json
import os
import struct
import sys

out = sys.argv[1]
E = int(sys.argv[2]) if len(sys.argv) > 2 else 8
L = int(sys.argv[3]) if len(sys.argv) > 3 else 2
H, I = 16, 24
tensors = [("model.embed_tokens.weight", [64, H])]
for l in range(L):
    p = f"model.layers.{l}."
    tensors += [(p + "self_attn.q_proj.weight", [H, H]), (p + "mlp.gate.weight", [E, H])]
    for e in range(E):
        for w, shape in (("w1", [I, H]), ("w2", [H, I]), ("w3", [I, H])):
            tensors.append((p + f"mlp.experts.{e}.{w}.weight", shape))
    tensors.append((p + "mlp.shared_experts.0.w1.weight", [I, H]))
tensors.append(("lm_head.weight", [64, H]))
hdr, off, sizes = {}, 0, {}
for name, shape in tensors:
    n = 4 * shape[0] * shape[1]
    hdr[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + n]}
    sizes[name] = n
    off += n
h = json.dumps(hdr, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "moe.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    f.write(bytes((i * 7) & 255 for i in range(off)))
with open(os.path.join(out, "moe.json"), "w") as f:
    json.dump(sizes, f)
