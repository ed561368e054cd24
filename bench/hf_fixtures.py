"""Tiny random Hugging Face checkpoints in each published layout, with PyTorch reference outputs.

Regenerate (Debian's python3-torch; /usr/bin/python3):
    /usr/bin/python3 bench/hf_fixtures.py --out test/fixtures/hf

Each case is a model directory laid out exactly as the published repo it imitates — the same config.json
key set (values shrunk to a tiny model), the same generation_config.json keys, the same tensor names, dtype
and file layout (single model.safetensors or a sharded model.safetensors.index.json):
  qwen2_5  ← Qwen/Qwen2.5-0.5B-Instruct   qwen2, q/k/v biases, GQA, tied head, rope_theta 1e6, BF16
  llama3_2 ← meta-llama/Llama-3.2-1B-Instruct  llama, rope_scaling llama3 (all three frequency bands),
             head_dim, several eos ids; untied head, sharded in two F16 files
  smollm2  ← HuggingFaceTB/SmolLM2-135M-Instruct  llama, tied head, rope_theta 1e5, F32
  qwen3    ← Qwen/Qwen3-0.6B   qwen3, per-head q_norm/k_norm, head_dim 12 ≠ hidden/heads 8, tied, BF16
Next to each directory, <case>_ref.safetensors holds tokens [B, T], the reference log-softmax [B, T, V]
(float64 math on the stored weights converted to f32, then rounded to f32), greedy prompts and the greedy
continuation (KV cache, temperature 0). bench/torch_model.py is the independent implementation.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_model import TorchLM, save_safetensors  # noqa: E402

V = 96

CASES = {
    "qwen2_5": dict(
        dtype=torch.bfloat16, shards=1,
        config={
            "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 90, "eos_token_id": 91,
            "hidden_act": "silu", "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 64,
            "max_position_embeddings": 128, "max_window_layers": 21, "model_type": "qwen2", "num_attention_heads": 4,
            "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
            "sliding_window": 128, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
            "transformers_version": "4.43.1", "use_cache": True, "use_sliding_window": False, "vocab_size": V,
        },
        generation={"bos_token_id": 90, "pad_token_id": 90, "do_sample": True, "eos_token_id": [91, 90],
                    "repetition_penalty": 1.1, "temperature": 0.7, "top_p": 0.8, "top_k": 20,
                    "transformers_version": "4.37.0"},
    ),
    "llama3_2": dict(
        dtype=torch.float16, shards=2,
        config={
            "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
            "bos_token_id": 88, "eos_token_id": [89, 90, 91], "head_dim": 16, "hidden_act": "silu",
            "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 48, "max_position_embeddings": 512,
            "mlp_bias": False, "model_type": "llama", "num_attention_heads": 2, "num_hidden_layers": 2,
            "num_key_value_heads": 1, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
            "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                             "original_max_position_embeddings": 64, "rope_type": "llama3"},
            "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
            "transformers_version": "4.45.0.dev0", "use_cache": True, "vocab_size": V,
        },
        generation={"bos_token_id": 88, "do_sample": True, "eos_token_id": [89, 90, 91], "temperature": 0.6,
                    "top_p": 0.9, "transformers_version": "4.45.0.dev0"},
    ),
    "smollm2": dict(
        dtype=torch.float32, shards=1,
        config={
            "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
            "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 24,
            "initializer_range": 0.041666666666666664, "intermediate_size": 40, "is_llama_config": True,
            "max_position_embeddings": 128, "mlp_bias": False, "model_type": "llama", "num_attention_heads": 3,
            "num_hidden_layers": 2, "num_key_value_heads": 1, "pad_token_id": 2, "pretraining_tp": 1,
            "rms_norm_eps": 1e-05, "rope_interleaved": False, "rope_scaling": None, "rope_theta": 100000,
            "tie_word_embeddings": True, "torch_dtype": "bfloat16", "transformers_version": "4.42.3",
            "use_cache": True, "vocab_size": V,
        },
        generation={"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2, "transformers_version": "4.42.3"},
    ),
    "qwen3": dict(
        dtype=torch.bfloat16, shards=1,
        config={
            "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
            "bos_token_id": 90, "eos_token_id": 91, "head_dim": 12, "hidden_act": "silu", "hidden_size": 32,
            "initializer_range": 0.02, "intermediate_size": 48, "max_position_embeddings": 128,
            "max_window_layers": 28, "model_type": "qwen3", "num_attention_heads": 4, "num_hidden_layers": 2,
            "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000,
            "sliding_window": None, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
            "transformers_version": "4.51.0", "use_cache": True, "use_sliding_window": False, "vocab_size": V,
        },
        generation={"bos_token_id": 90, "do_sample": True, "eos_token_id": [91, 90], "pad_token_id": 90,
                    "temperature": 0.6, "top_k": 20, "top_p": 0.95, "transformers_version": "4.51.0"},
    ),
}


def write_weights(out, tensors, shards):
    names = sorted(tensors)
    if shards == 1:
        save_safetensors(os.path.join(out, "model.safetensors"), tensors, {"format": "pt"})
        return
    per = (len(names) + shards - 1) // shards
    weight_map, total = {}, 0
    for s in range(shards):
        part = {n: tensors[n] for n in names[s * per:(s + 1) * per]}
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_safetensors(os.path.join(out, fname), part, {"format": "pt"})
        for n, t in part.items():
            weight_map[n] = fname
            total += t.numel() * t.element_size()
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def make_case(name, spec, root, seed):
    out = os.path.join(root, name)
    os.makedirs(out, exist_ok=True)
    cfg = spec["config"]
    gen = torch.Generator().manual_seed(seed)
    model = TorchLM(cfg)
    model.init_random(gen, std=0.15)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    # Stored as published (bf16/f16/f32); the reference runs on exactly those values.
    stored = {k: v.to(spec["dtype"]).contiguous() for k, v in model.state_dict().items()}
    write_weights(out, stored, spec["shards"])
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump(spec["generation"], f, indent=2)

    ref = TorchLM(cfg).double()
    ref.load_state_dict({k: v.float().double() for k, v in stored.items()}, strict=True)
    ref.inv_freq = model.inv_freq  # float32 inv_freq as transformers computes it
    B, T = 2, 7
    tokens = torch.randint(0, V, (B, T), generator=gen)
    with torch.no_grad():
        logits, _ = ref(tokens)
        logsm = torch.log_softmax(logits, -1)
        prompts = torch.randint(0, V, (B, 4), generator=gen)
        greedy = ref.generate(prompts, 6, temperature=0)
    save_safetensors(os.path.join(root, f"{name}_ref.safetensors"), {
        "tokens": tokens.to(torch.int32), "logsoftmax": logsm.float(),
        "gen_prompts": prompts.to(torch.int32), "gen_tokens": greedy.to(torch.int32),
    })
    print(f"{name}: {sum(t.numel() for t in stored.values())} params, {spec['dtype']}, {spec['shards']} file(s)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="test/fixtures/hf")
    ap.add_argument("--seed", type=int, default=13)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for i, (name, spec) in enumerate(CASES.items()):
        make_case(name, spec, a.out, a.seed + i)


if __name__ == "__main__":
    main()
