# SPDX-License-Identifier: Apache-2.0
"""The vLLM side of tests/python/test_client_vllm.py, run by .venv-vllm's Python (vLLM's CPU
build and weightlift, tools/vllm-venv.sh).

  vllm_client.py gen DIR                    a small Llama-shaped model, written with
                                            transformers' save_pretrained (F32, two shards)
  vllm_client.py run DIR TP OUT.json FORMAT...
                                            greedy tokens of vLLM with each --load-format
                                            FORMAT in turn at tensor-parallel size TP, and
                                            what each rank read (WEIGHTLIFT_VLLM_STATS_DIR)

vLLM starts its engine (and at TP > 1 its workers) in processes of its own, so everything runs
under the __main__ guard."""
import glob
import json
import os
import sys

# Token ids of the prompts (the model has no tokenizer: skip_tokenizer_init).
PROMPTS = [[1, 17, 300, 42, 5], [7, 7, 7, 250, 511, 3, 9], [100]]
MAX_TOKENS = 12


def gen(out: str) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    # head_dim 64 (a size vLLM's CPU attention supports); 2 KV heads split over TP=2;
    # intermediate 384 and vocabulary 512 divide by 2.
    cfg = LlamaConfig(hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, head_dim=64,
                      vocab_size=512, max_position_embeddings=256, tie_word_embeddings=False,
                      bos_token_id=1, eos_token_id=2)
    m = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for p in m.parameters():  # larger weights than the default init: distinct logits
            p.normal_(0.0, 0.2) if p.dim() > 1 else p.uniform_(0.5, 1.5)
    m.save_pretrained(out, max_shard_size="1MB")


def run(model: str, tp: int, out: str, formats) -> None:
    import gc

    from vllm import LLM, SamplingParams
    from vllm.distributed.parallel_state import cleanup_dist_env_and_memory
    from vllm.inputs import TokensPrompt

    stats_dir = os.environ["WEIGHTLIFT_VLLM_STATS_DIR"]
    result = {}
    for fmt in formats:
        # One engine after the other in this process (each process of ours spends about a
        # minute importing vLLM on the shared machine). TP=1: the worker in this process
        # ("uni"); TP=2: two worker processes per engine. The engine core runs here too
        # (VLLM_ENABLE_V1_MULTIPROCESSING=0, set by the test).
        llm = LLM(model=model, load_format=fmt, tensor_parallel_size=tp, dtype="float32",
                  enforce_eager=True, skip_tokenizer_init=True, max_model_len=128,
                  max_num_seqs=4, seed=0,
                  distributed_executor_backend="uni" if tp == 1 else "mp")
        params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True,
                                detokenize=False)
        res = llm.generate([TokensPrompt(prompt_token_ids=p) for p in PROMPTS], params)
        tokens = [list(r.outputs[0].token_ids) for r in res]
        llm.llm_engine.engine_core.shutdown()
        del llm
        gc.collect()
        cleanup_dist_env_and_memory()
        ranks = {}
        for p in sorted(glob.glob(os.path.join(stats_dir, f"{fmt}-rank*.json"))):
            with open(p) as f:
                s = json.load(f)
            ranks[str(s["rank"])] = s
        result[fmt] = {"tokens": tokens, "ranks": ranks}
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(sys.argv[2])
    elif sys.argv[1] == "run":
        run(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:])
    else:
        sys.exit(f"usage: {sys.argv[0]} gen DIR | run DIR TP OUT.json FORMAT...")
