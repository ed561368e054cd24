"""Cross-check against Hugging Face transformers itself (where it is installed, e.g. on a GPU machine).

    python3 bench/hf_check.py [DIR ...]            # default: every directory under test/fixtures/hf

For each model directory: loads it with transformers.AutoModelForCausalLM (float32, eager attention), runs
the tokens stored in <DIR>_ref.safetensors next to it when present (else random tokens), and prints the max
absolute difference of the log-softmax against (a) the stored reference from bench/torch_model.py and
(b) this repository's engine, when `npx tsx bench/hf_logits.ts DIR` can be run (node on PATH). Exit status 1
when a difference exceeds 1e-4. transformers is not installed on the CPU machine this project is developed
on, so the tests compare against bench/torch_model.py; this script closes the loop where transformers exists.
"""
import json
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_model import load_safetensors  # noqa: E402

try:
    from transformers import AutoModelForCausalLM
except ImportError:  # pragma: no cover - depends on the machine
    print("transformers is not installed here; nothing to check (pip install transformers)")
    sys.exit(0)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def engine_logsoftmax(model_dir, tokens):
    """The engine's log-softmax for tokens [B, T] via bench/hf_logits.ts, or None when node is unavailable."""
    try:
        out = subprocess.run(["npx", "tsx", os.path.join(ROOT, "bench", "hf_logits.ts"), model_dir, json.dumps(tokens.tolist())],
                             cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"  engine: not run ({e})")
        return None
    return torch.tensor(json.loads(out.stdout), dtype=torch.float64)


def check(model_dir):
    ref_path = model_dir.rstrip("/") + "_ref.safetensors"
    ref = load_safetensors(ref_path) if os.path.exists(ref_path) else None
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    if ref is not None:
        tokens = ref["tokens"].long()
    else:
        tokens = torch.randint(0, model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        hf = torch.log_softmax(model(tokens).logits.double(), -1)
    worst = 0.0
    print(model_dir)
    if ref is not None:
        d = (hf - ref["logsoftmax"].double()).abs().max().item()
        print(f"  transformers vs bench/torch_model.py: max |Δ log p| = {d:.3g}")
        worst = max(worst, d)
    eng = engine_logsoftmax(model_dir, tokens)
    if eng is not None:
        d = (hf - eng.view_as(hf)).abs().max().item()
        print(f"  transformers vs mpo engine:           max |Δ log p| = {d:.3g}")
        worst = max(worst, d)
    return worst


def main():
    dirs = sys.argv[1:] or sorted(os.path.join(ROOT, "test/fixtures/hf", d) for d in os.listdir(os.path.join(ROOT, "test/fixtures/hf"))
                                  if os.path.isdir(os.path.join(ROOT, "test/fixtures/hf", d)))
    worst = max(check(d) for d in dirs)
    print(f"worst: {worst:.3g}")
    sys.exit(0 if worst <= 1e-4 else 1)


if __name__ == "__main__":
    main()
