"""MPO rewards for veRL: a custom reward function that asks a running `mpo serve` for scores.

veRL calls ``compute_score(data_source, solution_str, ground_truth, extra_info, **reward_kwargs)`` once per
response (``naive`` / ``rate_limited`` reward managers) and, on veRL ≤ 0.6 only, ``compute_score_batch(data_sources,
solution_strs, ground_truths, extra_infos, **reward_kwargs)`` once per batch (legacy ``batch`` manager; the
reward loop of 0.7.0 and later has no ``batch`` manager). ``solution_str`` is the decoded
response only, so the question must travel in the parquet's ``extra_info`` (``extra_info["question"]``,
see README.md).

Both POST to ``{url}/v1/score`` with ``{"items": [{"prompt", "response", "reference"?, "metadata"?}]}`` and
return ``{"score": normalized score in [0, 1], "rubric_version": int, "raw_score": rubric total,
"mpo_unreadable": 0.0}``. A judge outage (HTTP 503) or a lost connection is retried with backoff; if the
service still cannot score, the function raises instead of inventing a reward. veRL has no "no reward"
value (a None score breaks its reward tensor), so a sample the judge could not read (service policy
``unreadable.onUnreadable: sentinel``) raises too — unless ``unreadable_score`` / MPO_UNREADABLE_SCORE
names the number to use, which is then flagged ``mpo_unreadable: 1.0`` in veRL's reward metrics.

Settings: reward_kwargs ``mpo_url``, ``mpo_token``, ``timeout``, ``retries`` or the environment variables
MPO_URL (default http://127.0.0.1:5000), MPO_TOKEN, MPO_TIMEOUT (seconds, default 300), MPO_RETRIES (default 5).
Needs only ``requests``.
"""

import os
import threading
import time

import requests

_local = threading.local()
RETRY_STATUS = {502, 503, 504}  # judge outage / proxy in front of the service: worth another try
MAX_ITEMS_PER_REQUEST = 256  # well under the service's limits.batchSize (default 4096)


def _session():
    # One keep-alive session per thread: veRL may call us from a thread pool.
    s = getattr(_local, "session", None)
    if s is None:
        s = _local.session = requests.Session()
    return s


def _settings(kw):
    return {
        "url": (kw.get("mpo_url") or os.environ.get("MPO_URL") or "http://127.0.0.1:5000").rstrip("/"),
        "token": kw.get("mpo_token") or os.environ.get("MPO_TOKEN"),
        "timeout": float(kw.get("timeout") or os.environ.get("MPO_TIMEOUT") or 300),
        "retries": int(kw.get("retries") or os.environ.get("MPO_RETRIES") or 5),
        "unreadable_score": kw.get("unreadable_score", os.environ.get("MPO_UNREADABLE_SCORE")),
    }


def _item(solution_str, ground_truth, extra_info, data_source):
    info = extra_info if isinstance(extra_info, dict) else {}
    prompt = info.get("question") or info.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(
            "mpo_reward: extra_info['question'] is missing; put the question text into the parquet's extra_info "
            "(see examples/verl/README.md)"
        )
    item = {"prompt": prompt, "response": solution_str if isinstance(solution_str, str) else str(solution_str)}
    if ground_truth is not None and ground_truth != "":
        item["reference"] = ground_truth  # any JSON value (a number, a list of answers…): the judge reads it as text
    if data_source is not None:
        item["metadata"] = {"data_source": str(data_source)}
    return item


def _post_score(items, cfg):
    """POST /v1/score; retries 502/503/504 and connection errors with exponential backoff (1, 2, 4, … s)."""
    headers = {"Authorization": "Bearer " + cfg["token"]} if cfg["token"] else {}
    last = None
    for attempt in range(cfg["retries"]):
        if attempt:
            time.sleep(min(2 ** (attempt - 1), 30))
        try:
            r = _session().post(cfg["url"] + "/v1/score", json={"items": items}, headers=headers, timeout=cfg["timeout"])
        except (requests.ConnectionError, requests.Timeout) as e:
            last = "connection: %s" % e
            continue
        if r.status_code in RETRY_STATUS:
            last = "HTTP %d: %s" % (r.status_code, r.text[:300])
            continue
        if r.status_code != 200:  # 400 (bad field), 401 (token), 413 (too large): retrying will not help
            raise RuntimeError("mpo serve answered HTTP %d: %s" % (r.status_code, r.text[:500]))
        results = r.json()["results"]
        if len(results) != len(items):
            raise RuntimeError("mpo serve returned %d results for %d items" % (len(results), len(items)))
        return results
    raise RuntimeError("mpo serve could not score after %d tries (last: %s)" % (cfg["retries"], last))


def _as_reward(result, cfg):
    if result.get("unreadable") or result.get("normalized") is None:
        if cfg["unreadable_score"] is None:
            raise RuntimeError(
                "mpo serve: the judge's reply for this sample stayed unreadable (flags: %s); set MPO_UNREADABLE_SCORE "
                "to use a fixed score instead, or run the service with unreadable.onUnreadable: retry" % result.get("flags")
            )
        s = float(cfg["unreadable_score"])
        return {"score": s, "rubric_version": int(result["rubricVersion"]), "raw_score": s, "mpo_unreadable": 1.0}
    return {"score": float(result["normalized"]), "rubric_version": int(result["rubricVersion"]), "raw_score": float(result["score"]), "mpo_unreadable": 0.0}


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """Naive reward manager entry point: one response → {"score": float, ...}."""
    cfg = _settings(kwargs)
    [result] = _post_score([_item(solution_str, ground_truth, extra_info, data_source)], cfg)
    return _as_reward(result, cfg)


def compute_score_batch(data_sources, solution_strs, ground_truths, extra_infos, **kwargs):
    """Batch reward manager entry point: lists in → one {"score": …} dict per response, in order."""
    cfg = _settings(kwargs)
    n = len(solution_strs)
    infos = list(extra_infos) if extra_infos is not None else [None] * n
    items = [_item(solution_strs[i], ground_truths[i], infos[i], data_sources[i]) for i in range(n)]
    out = []
    for start in range(0, n, MAX_ITEMS_PER_REQUEST):
        out.extend(_as_reward(r, cfg) for r in _post_score(items[start : start + MAX_ITEMS_PER_REQUEST], cfg))
    return out


if __name__ == "__main__":  # smoke test against a running service: python mpo_reward.py "Question?" "Answer."
    import json
    import sys

    args = sys.argv[1:]
    q = args[0] if len(args) > 0 else "Write a haiku about rain."
    a = args[1] if len(args) > 1 else "Rain taps the window."
    print(json.dumps(compute_score("mpo/smoke", a, None, {"question": q})))
