"""GRPO with TRL against MPO rewards from a running `mpo serve` (the rubric evolves while you train).

    pip install "trl>=0.19" datasets requests
    MPO_URL=http://127.0.0.1:5000 python grpo_mpo.py --prompts prompts.jsonl --model Qwen/Qwen2.5-0.5B-Instruct

`mpo_reward` is a TRL reward function: TRL calls it once per generation batch with keyword arguments
``prompts``, ``completions`` (plus ``completion_ids``, every dataset column, and in recent versions
``trainer_state`` / ``log_metric``) and expects one float per completion. It sends the whole batch to
``POST {MPO_URL}/v1/score`` in one request. Both dataset formats work: standard (strings) and
conversational (lists of ``{"role", "content"}`` messages: the prompt is the last user message, the
response is the completion's assistant content). A judge outage (HTTP 503) is retried with backoff; if the
service still cannot score, the function raises instead of inventing rewards.

TRL and datasets are imported inside main(), so the reward function can be imported with only `requests`.
"""

import argparse
import os
import time

import requests

_session = requests.Session()
RETRY_STATUS = {502, 503, 504}


def _text(x, role):
    """A standard-format string, or the content of the last message of `role` in a conversational list."""
    if isinstance(x, str):
        return x
    if isinstance(x, list):
        for m in reversed(x):
            if isinstance(m, dict) and m.get("role") == role:
                return m.get("content") or ""
        if x and isinstance(x[-1], dict):
            return x[-1].get("content") or ""
    raise TypeError("mpo_reward: expected a string or a list of messages, got %r" % type(x).__name__)


def score_items(items, url=None, token=None, timeout=None, retries=None):
    """POST /v1/score with retries on 502/503/504 and connection errors; returns the service's results."""
    url = (url or os.environ.get("MPO_URL") or "http://127.0.0.1:5000").rstrip("/")
    token = token or os.environ.get("MPO_TOKEN")
    timeout = float(timeout or os.environ.get("MPO_TIMEOUT") or 300)
    retries = int(retries or os.environ.get("MPO_RETRIES") or 5)
    headers = {"Authorization": "Bearer " + token} if token else {}
    last = None
    for attempt in range(retries):
        if attempt:
            time.sleep(min(2 ** (attempt - 1), 30))
        try:
            r = _session.post(url + "/v1/score", json={"items": items}, headers=headers, timeout=timeout)
        except (requests.ConnectionError, requests.Timeout) as e:
            last = "connection: %s" % e
            continue
        if r.status_code in RETRY_STATUS:
            last = "HTTP %d: %s" % (r.status_code, r.text[:300])
            continue
        if r.status_code != 200:
            raise RuntimeError("mpo serve answered HTTP %d: %s" % (r.status_code, r.text[:500]))
        body = r.json()
        if len(body["results"]) != len(items):
            raise RuntimeError("mpo serve returned %d results for %d items" % (len(body["results"]), len(items)))
        return body
    raise RuntimeError("mpo serve could not score after %d tries (last: %s)" % (retries, last))


def mpo_reward(prompts, completions, **kwargs):
    """TRL reward function: one normalized MPO score in [0, 1] per completion."""
    items = [{"prompt": _text(p, "user"), "response": _text(c, "assistant")} for p, c in zip(prompts, completions)]
    if not items:
        return []
    body = score_items(items)
    log_metric = kwargs.get("log_metric")  # present in recent TRL versions only
    if callable(log_metric):
        log_metric("mpo/rubric_version", float(body["rubricVersion"]))
    return [float(r["normalized"]) for r in body["results"]]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", required=True, help='JSONL with a "prompt" field (a string, or a list of messages)')
    ap.add_argument("--model", default="Qwen/Qwen2.5-0.5B-Instruct", help="policy model (placeholder: any small instruct model)")
    ap.add_argument("--output-dir", default="grpo-mpo")
    args = ap.parse_args()

    from datasets import load_dataset
    from trl import GRPOConfig, GRPOTrainer

    dataset = load_dataset("json", data_files=args.prompts, split="train")
    config = GRPOConfig(
        output_dir=args.output_dir,
        learning_rate=3e-6,  # the paper's policy learning rate
        beta=0.0,  # the GRPO variant of the reference code trains without a KL term
        num_generations=8,  # completions per prompt
        per_device_train_batch_size=8,  # must be divisible into groups of num_generations
        max_completion_length=700,
        temperature=0.9,
        epsilon=0.2,  # clip range
        logging_steps=1,
        save_steps=100,
    )
    trainer = GRPOTrainer(model=args.model, reward_funcs=mpo_reward, args=config, train_dataset=dataset)
    trainer.train()


if __name__ == "__main__":
    main()
