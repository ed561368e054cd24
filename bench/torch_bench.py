"""PyTorch speed baseline for bench/engine.ts (spawned by it; prints one JSON line).

    /usr/bin/python3 bench/torch_bench.py --config '{"vocab_size":2048,...}' --batch 8 --seq 64 \
        --gen-batch 8 --gen-prompt 8 --gen-new 56 --threads 1,2 --seconds 3

Measures, per thread count (torch.set_num_threads), the same work our engine does:
  train: forward + masked mean NLL + backward + grad-norm clip (1.0) + AdamW step + zero_grad, tokens/s = B*T/step time;
  generate: batched sampling (temperature 1) with a KV cache from random prompts, tokens/s = new tokens / time.
Each measurement runs one warm-up, then repeats until `--seconds` have passed (a warm-up longer than that counts as the measurement).

`--lora R,ALPHA[,DROPOUT]` trains LoRA adapters instead (as PEFT does it: every attention and MLP projection wrapped,
y = W x + b + (alpha/R) B A dropout(x), A kaiming-uniform, B = 0, everything else frozen — no weight gradients), and
generation runs with the adapters on. The JSON line carries the process's peak RSS (ru_maxrss) in MiB.
"""
import math
import resource
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_model import TorchLM  # noqa: E402


def timed(fn, seconds):
    """One warm-up, then repeat until `seconds` passed (at least once); a warm-up longer than `seconds` is the
    measurement. Returns (repetitions, wall seconds, process CPU seconds over all threads)."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    w = time.perf_counter() - w0
    if w >= seconds:
        return 1, w, time.process_time() - c0
    n, t0, c1 = 0, time.perf_counter(), time.process_time()
    while True:
        fn()
        n += 1
        el = time.perf_counter() - t0
        if el >= seconds:
            return n, el, time.process_time() - c1


class LoraLinear(torch.nn.Module):
    """PEFT's LoRA Linear (forward only what matters for cost): base frozen, adapters A [r, in], B [out, r]."""

    def __init__(self, base, r, alpha, dropout):
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.lora_A = torch.nn.Parameter(torch.empty(r, base.in_features))
        torch.nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_B = torch.nn.Parameter(torch.zeros(base.out_features, r))
        self.scale = alpha / r
        self.drop = torch.nn.Dropout(dropout)

    def forward(self, x):
        return self.base(x) + (self.drop(x) @ self.lora_A.t() @ self.lora_B.t()) * self.scale


def add_lora(model, r, alpha, dropout):
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in model.model.layers:
        for mod, names in ((layer.self_attn, ("q_proj", "k_proj", "v_proj", "o_proj")), (layer.mlp, ("gate_proj", "up_proj", "down_proj"))):
            for n in names:
                setattr(mod, n, LoraLinear(getattr(mod, n), r, alpha, dropout))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, help="HF LlamaConfig as JSON text")
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--seq", type=int, required=True)
    ap.add_argument("--gen-batch", type=int, required=True)
    ap.add_argument("--gen-prompt", type=int, required=True)
    ap.add_argument("--gen-new", type=int, required=True)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--lora", default="", help="R,ALPHA[,DROPOUT]: train LoRA adapters instead of all weights")
    a = ap.parse_args()
    cfg = json.loads(a.config)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = TorchLM(cfg)
    model.init_random(gen, std=0.02)
    n_params = sum(p.numel() for p in model.parameters())
    if a.lora:
        r, alpha, *rest = [float(x) for x in a.lora.split(",")]
        add_lora(model, int(r), alpha, rest[0] if rest else 0.05)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.01)
    V, B, T = cfg["vocab_size"], a.batch, a.seq
    tokens = torch.randint(0, V, (B, T + 1), generator=gen)

    def train_step():
        model.train()
        logits, _ = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, V), tokens[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=False)

    prompts = torch.randint(0, V, (a.gen_batch, a.gen_prompt), generator=gen)

    def gen_step():
        model.eval()
        model.generate(prompts, a.gen_new, temperature=1.0, gen=gen)

    results = []
    for th in [int(x) for x in a.threads.split(",") if x]:
        torch.set_num_threads(th)
        r = {"threads": th}
        if not a.skip_train:
            n, el, cpu = timed(train_step, a.seconds)
            r["train_tokens_per_s"] = B * T * n / el
            r["train_tokens_per_cpu_s"] = B * T * n / cpu
            r["train_step_ms"] = 1000 * el / n
        n, el, cpu = timed(gen_step, a.seconds)
        r["gen_tokens_per_s"] = a.gen_batch * a.gen_new * n / el
        r["gen_tokens_per_cpu_s"] = a.gen_batch * a.gen_new * n / cpu
        results.append(r)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for r in results:
        r["peak_rss_mib"] = peak
    print(json.dumps({"torch": torch.__version__, "params": n_params, "results": results}))


if __name__ == "__main__":
    main()
