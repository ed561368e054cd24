"""GRPO with TRL against MPO rewards from a running `mpo serve` (the rubric evolves while you train).

    pip install "trl>=0.19" datasets requests
    MPO_URL=http://127.0.0.1:5000 python grpo_mpo.py --prompts prompts.jsonl --model Qwen/Qwen2.5-0.5B-Instruct

`mpo_reward` is a TRL reward function: TRL calls it once per generation batch with keyword arguments
``prompts``, ``completions`` (plus ``completion_ids``, every dataset column, and in recent versions
``trainer_state`` / ``log_metric``) and expects one float — or None — per completion. It sends the whole
batch to ``POST {MPO_URL}/v1/score`` in one request. Both dataset formats work: standard (strings) and
conversational (lists of ``{"role", "content"}`` messages). Conversational turns are rendered as text for
the judge: content blocks become their text (images as "[image]": the judge reads text only), tool calls
and tool results are written out, and a system turn is kept. A sample the judge could not read (service
policy ``unreadable.onUnreadable: sentinel``) is returned as None: TRL (trl/trainer/grpo_trainer.py
@f2cd577, ``_calculate_rewards``) turns None into NaN, and a completion whose rewards are all NaN is
unscorable — excluded from the reward statistics, advantage 0. A judge outage (HTTP 503) is retried with
backoff; if the service still cannot score, the function raises instead of inventing rewards.

TRL and datasets are imported inside main(), so the reward function can be imported with only `requests`.
"""

import argparse
import json
import os
import time

import requests

_session = requests.Session()
RETRY_STATUS = {502, 503, 504}


def _content_text(content):
    """A message's content as text: a string, None (tool-call-only turns), or a list of content blocks."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict):
                kind = block.get("type")
                if kind == "text":
                    parts.append(block.get("text") or "")
                elif kind in ("image", "image_url", "image_pil"):
                    parts.append("[image]")  # the PIL image itself is never sent: the judge reads text
                else:
                    parts.append("[%s]" % (kind or "content"))
        return "\n".join(p for p in parts if p)
    return str(content)


def _tool_calls_text(calls):
    out = []
    for call in calls or []:
        fn = call.get("function", call) if isinstance(call, dict) else {}
        args = fn.get("arguments", {})
        if not isinstance(args, str):
            args = json.dumps(args, ensure_ascii=False, default=str)
        out.append("[tool call] %s(%s)" % (fn.get("name", "?"), args))
    return "\n".join(out)


def _message_text(m):
    text = _content_text(m.get("content"))
    calls = _tool_calls_text(m.get("tool_calls"))
    if m.get("role") == "tool":
        return "[tool result%s] %s" % (" " + m["name"] if m.get("name") else "", text)
    return "\n".join(p for p in (text, calls) if p)


def _prompt_text(x):
    """The prompt as the judge reads it: a string, or the conversation (system turn kept)."""
    if isinstance(x, str):
        return x
    if isinstance(x, list) and all(isinstance(m, dict) for m in x):
        if len(x) == 1:
            return _message_text(x[0])
        return "\n\n".join("[%s]\n%s" % (m.get("role", "?"), _message_text(m)) for m in x)
    raise TypeError("mpo_reward: expected a string or a list of messages, got %r" % type(x).__name__)


def _completion_text(x):
    """The completion: a string, or every generated turn (assistant text, tool calls, tool results)."""
    if isinstance(x, str):
        return x
    if isinstance(x, list) and all(isinstance(m, dict) for m in x):
        if len(x) == 1:
            return _message_text(x[0])
        return "\n\n".join(_message_text(m) for m in x)
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
    """TRL reward function: one normalized MPO score in [0, 1] per completion, None when unscorable."""
    items = [{"prompt": _prompt_text(p), "response": _completion_text(c)} for p, c in zip(prompts, completions)]
    if not items:
        return []
    body = score_items(items)
    log_metric = kwargs.get("log_metric")  # present in recent TRL versions only
    if callable(log_metric):
        log_metric("mpo/rubric_version", float(body["rubricVersion"]))
    # An unreadable judge reply has no score: None (TRL: NaN → unscorable row, advantage 0), never a number.
    return [None if r.get("unreadable") or r.get("normalized") is None else float(r["normalized"]) for r in body["results"]]


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
