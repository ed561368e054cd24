"""Loads an mpo checkpoint directory (config.json + model.safetensors written by the TypeScript engine) into
the PyTorch peer model and prints per-token log-probs of a token sequence as JSON, so a checkpoint can be
checked against the engine from the other side:

    /usr/bin/python3 bench/torch_check_checkpoint.py --model DIR --tokens 5,17,42,8
    → {"logprobs": [lp(tok1|tok0), lp(tok2|tok0..1), ...]}
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_model import TorchLM, load_into, load_safetensors  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    a = ap.parse_args()
    with open(os.path.join(a.model, "config.json")) as f:
        cfg = json.load(f)
    model = TorchLM(cfg).double()
    load_into(model, {k: v.double() for k, v in load_safetensors(os.path.join(a.model, "model.safetensors")).items()})
    toks = torch.tensor([[int(x) for x in a.tokens.split(",")]])
    with torch.no_grad():
        logits, _ = model(toks[:, :-1])
        lp = logits.log_softmax(-1).gather(-1, toks[:, 1:, None]).squeeze(-1)[0]
    print(json.dumps({"logprobs": lp.tolist()}))


if __name__ == "__main__":
    main()
