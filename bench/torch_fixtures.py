"""Generates the PyTorch cross-check fixtures for the TypeScript engine (test/engine-torch.test.ts).

Regenerate (needs Debian's python3-torch; /usr/bin/python3, not the pyenv python):
    /usr/bin/python3 bench/torch_fixtures.py --out test/fixtures/engine

For each case: random f32 weights (fixed torch seed) → <case>_weights.safetensors (HF Llama names) and
<case>_io.safetensors holding tokens/targets [B, T] (I32, right padded), mask, the reference logits,
per-token logprobs of targets, per-token entropy, values (when the value head is on), the upstream
gradients dLogprobs/dValues/dEntropy fed to backward, the objective value, and "grad.<param>" = d objective /
d param. <case>.json holds the config and shapes. The reference is computed in float64 from the f32
weights, so differences in the test measure only the engine's own f32 rounding.

Objective per case: J = sum(dLogprobs * logprobs) + sum(dValues * values) + sum(dEntropy * entropy), with
dLogprobs = -mask / N (the SFT mean NLL), and fixed random dValues / dEntropy coefficients on masked tokens.
Also greedy generation: "gen_prompts" [B, P] → "gen_tokens" [B, G] (temperature 0, KV cache).
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_model import TorchLM, save_safetensors  # noqa: E402

CASES = {
    # Grouped-query attention, untied head, value head on: exercises every parameter kind.
    "tiny": dict(vocab_size=61, hidden_size=32, intermediate_size=88, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, tie_word_embeddings=False, mpo_value_head=True, T=9, B=2, lens=[9, 6],
                 rope_theta=10000.0, entropy=False),
    # Tied embeddings, plain multi-head attention, entropy gradient, non-default theta/eps.
    "tiny_tied": dict(vocab_size=53, hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=3,
                      num_key_value_heads=3, tie_word_embeddings=True, mpo_value_head=False, T=7, B=3, lens=[7, 5, 2],
                      rope_theta=500.0, rms_norm_eps=1e-6, entropy=True),
}


def make_case(name, spec, out_dir, seed):
    spec = dict(spec)
    T, B, lens, want_entropy = spec.pop("T"), spec.pop("B"), spec.pop("lens"), spec.pop("entropy")
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "max_position_embeddings": 64,
              "rms_norm_eps": 1e-5, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
              "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "torch_dtype": "float32", **spec}
    gen = torch.Generator().manual_seed(seed)
    model = TorchLM(config)
    model.init_random(gen, std=0.15)
    weights32 = {k: v.float().clone() for k, v in model.state_dict().items()}
    save_safetensors(os.path.join(out_dir, f"{name}_weights.safetensors"), weights32, {"format": "pt"})

    V = config["vocab_size"]
    tokens = torch.randint(3, V, (B, T), generator=gen)
    targets = torch.randint(3, V, (B, T), generator=gen)
    mask = torch.zeros(B, T)
    for b, n in enumerate(lens):
        mask[b, :n] = 1
        tokens[b, n:] = 0
        targets[b, n:] = 0
    N = mask.sum()
    d_logprobs = -mask / N
    d_values = (torch.randn(B, T, generator=gen) * mask / N) if config.get("mpo_value_head") else torch.zeros(B, T)
    d_entropy = (torch.randn(B, T, generator=gen) * mask / N) if want_entropy else torch.zeros(B, T)

    # Reference in float64 from exactly the f32 weights.
    model = model.double()
    with torch.no_grad():
        for k, p in model.state_dict().items():
            p.copy_(weights32[k].double())
    logits, values = model(tokens)
    logp_all = logits.log_softmax(-1)
    logprobs = logp_all.gather(-1, targets[..., None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    J = (d_logprobs.double() * logprobs).sum() + (d_entropy.double() * entropy).sum()
    if values is not None:
        J = J + (d_values.double() * values).sum()
    model.zero_grad()
    J.backward()

    io = {
        "tokens": tokens.to(torch.int32), "targets": targets.to(torch.int32), "mask": mask.float(),
        "logits": logits.detach().float(), "logprobs": logprobs.detach().float(), "entropy": entropy.detach().float(),
        "dLogprobs": d_logprobs.float(), "dValues": d_values.float(), "dEntropy": d_entropy.float(),
        "objective": J.detach().float().reshape(1),
        "loss": (-(logprobs * mask.double()).sum() / N).detach().float().reshape(1),
    }
    if values is not None:
        io["values"] = values.detach().float()
    for k, p in model.named_parameters():
        io["grad." + k] = p.grad.float()

    # Greedy generation with the KV cache (compared to a full recompute as a self-check).
    P, G = 4, 6
    prompts = torch.randint(3, V, (B, P), generator=gen)
    gen_tokens = model.generate(prompts, G, temperature=0)
    seq = prompts
    with torch.no_grad():
        for _ in range(G):
            nxt = model(seq)[0][:, -1].argmax(-1)
            seq = torch.cat([seq, nxt[:, None]], 1)
    assert torch.equal(seq[:, P:], gen_tokens), "KV-cache generation disagrees with full recompute"
    io["gen_prompts"] = prompts.to(torch.int32)
    io["gen_tokens"] = gen_tokens.to(torch.int32)
    save_safetensors(os.path.join(out_dir, f"{name}_io.safetensors"), io, {"torch": torch.__version__})
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump({"config": config, "B": B, "T": T, "lens": lens, "seed": seed,
                   "torch_version": torch.__version__}, f, indent=2)
        f.write("\n")
    print(f"{name}: objective {J.item():.6f}, loss {io['loss'].item():.6f}, {len(weights32)} weight tensors")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="test/fixtures/engine")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)
    for i, (name, spec) in enumerate(CASES.items()):
        make_case(name, spec, a.out, a.seed + i)


if __name__ == "__main__":
    main()
