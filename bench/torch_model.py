"""PyTorch peer of the mpo TypeScript engine (docs: /work/brief ENGINE.md contract).

The same decoder-only Llama-style model in plain PyTorch (no transformers): RMSNorm, RoPE in the Hugging
Face rotate_half convention, causal grouped-query attention, SwiGLU MLP, optional tied lm_head and scalar
value head; the Hugging Face families differ as in transformers' modeling files: qwen2 has q/k/v biases,
llama/qwen3 `attention_bias` adds q/k/v/o biases, qwen3 normalizes each q/k head with RMSNorm before RoPE,
`head_dim` may differ from hidden/heads, and `rope_scaling` (llama3 / linear) rescales the inverse
frequencies. Written from the published architecture descriptions, independently of the TypeScript code. Parameter names match HF Llama / our checkpoints, so weights move between the two through
safetensors. Used to generate cross-check fixtures (bench/torch_fixtures.py) and as the speed baseline
(bench/torch_bench.py). The safetensors reader/writer is written by hand (struct + json) because Debian
ships no python3-safetensors.
"""
import json
import math
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------- safetensors

_DT = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2), "F64": (torch.float64, 8),
       "I32": (torch.int32, 4), "I64": (torch.int64, 8)}
_DT_NAME = {v[0]: k for k, v in _DT.items()}


def save_safetensors(path, tensors, metadata=None):
    """Writes the reference layout: sorted names, contiguous data, header space-padded to 8 bytes."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        b = t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": _DT_NAME[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} beyond file")
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        dt, size = _DT[info["dtype"]]
        b, e = info["data_offsets"]
        count = math.prod(info["shape"])
        if e - b != count * size or e > len(data):
            raise ValueError(f"{path}: tensor {name} has bad offsets")
        t = torch.frombuffer(bytearray(data[b:e]), dtype=dt) if count else torch.empty(0, dtype=dt)
        out[name] = t.reshape(info["shape"]).clone()
    return out

# ---------------------------------------------------------------------------------------------- model


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_inv_freq(head_dim, theta, scaling=None):
    """inv_freq as transformers' ROPE_INIT_FUNCTIONS (float32), with llama3 / linear rope_scaling."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if not scaling:
        return inv_freq
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return inv_freq
    if kind == "linear":
        return inv_freq / scaling["factor"]
    if kind == "llama3":
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv_freq
        out = torch.where(wavelen > old / low, inv_freq / factor, inv_freq)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * out / factor + smooth * out
        medium = ~(wavelen < old / high) & ~(wavelen > old / low)
        return torch.where(medium, smoothed, out)
    raise ValueError(f"rope_type {kind} not implemented")


def rope_cos_sin(positions, head_dim, theta, dtype=torch.float32, inv_freq=None):
    if inv_freq is None:
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    freqs = positions.to(torch.float64)[:, None] * inv_freq.to(torch.float64)[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, self.nh = c["hidden_size"], c["num_attention_heads"]
        self.nkv = c.get("num_key_value_heads") or self.nh
        self.hd = c.get("head_dim") or d // self.nh
        kind = c.get("model_type", "llama")
        qkv_bias = True if kind == "qwen2" else bool(c.get("attention_bias", False))
        o_bias = False if kind == "qwen2" else bool(c.get("attention_bias", False))
        self.q_proj = nn.Linear(d, self.nh * self.hd, bias=qkv_bias)
        self.k_proj = nn.Linear(d, self.nkv * self.hd, bias=qkv_bias)
        self.v_proj = nn.Linear(d, self.nkv * self.hd, bias=qkv_bias)
        self.o_proj = nn.Linear(self.nh * self.hd, d, bias=o_bias)
        if kind == "qwen3":
            self.q_norm = RMSNorm(self.hd, c.get("rms_norm_eps", 1e-6))
            self.k_norm = RMSNorm(self.hd, c.get("rms_norm_eps", 1e-6))

    def forward(self, x, cos, sin, cache=None):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.nh, self.hd)
        k = self.k_proj(x).view(B, T, self.nkv, self.hd)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        q = q.transpose(1, 2)
        k = k.transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            if "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        S = k.shape[2]
        rep = self.nh // self.nkv
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.hd)
        # Causal mask over absolute positions: query t (at S-T+t) sees keys <= its position.
        mask = torch.ones(T, S, dtype=torch.bool).tril(diagonal=S - T)
        att = att.masked_fill(~mask, float("-inf"))
        y = att.softmax(-1) @ v
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.nh * self.hd))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, ff = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(d, ff, bias=False)
        self.up_proj = nn.Linear(d, ff, bias=False)
        self.down_proj = nn.Linear(ff, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        eps = c.get("rms_norm_eps", 1e-5)
        self.input_layernorm = RMSNorm(c["hidden_size"], eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], eps)
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, cache=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class Inner(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList([Block(c) for _ in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(c["hidden_size"], c.get("rms_norm_eps", 1e-5))


class TorchLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = Inner(c)
        self.tied = bool(c.get("tie_word_embeddings", False))
        if not self.tied:
            self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        if c.get("mpo_value_head"):
            self.value_head = nn.Linear(c["hidden_size"], 1, bias=True)
        self.head_dim = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
        self.theta = c.get("rope_theta", 10000.0)
        self.inv_freq = rope_inv_freq(self.head_dim, self.theta, c.get("rope_scaling"))

    def forward(self, tokens, caches=None, start=0):
        """tokens [B, T] → (logits [B, T, V], values [B, T] or None). caches: list per layer for KV caching."""
        B, T = tokens.shape
        cos, sin = rope_cos_sin(torch.arange(start, start + T), self.head_dim, self.theta, inv_freq=self.inv_freq)
        x = self.model.embed_tokens(tokens)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, cos, sin, None if caches is None else caches[i])
        h = self.model.norm(x)
        w = self.model.embed_tokens.weight if self.tied else self.lm_head.weight
        logits = h @ w.t()
        values = self.value_head(h).squeeze(-1) if hasattr(self, "value_head") else None
        return logits, values

    def init_random(self, gen, std=0.02):
        """Deterministic init (normal(0, std) matrices, norms at 1 plus a small perturbation so norm grads matter)."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("norm.weight"):
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
                else:
                    p.copy_(std * torch.randn(p.shape, generator=gen))

    @torch.no_grad()
    def generate(self, prompts, max_new_tokens, temperature=1.0, top_k=0, gen=None):
        """Batched sampling with a KV cache; prompts [B, P] (same length). Returns new tokens [B, N]."""
        caches = [dict() for _ in self.model.layers]
        logits, _ = self.forward(prompts, caches, 0)
        pos = prompts.shape[1]
        out = []
        last = logits[:, -1]
        for _ in range(max_new_tokens):
            if temperature == 0:
                nxt = last.argmax(-1)
            else:
                l = last / temperature
                if top_k:
                    kth = l.topk(top_k, dim=-1).values[:, -1:]
                    l = l.masked_fill(l < kth, float("-inf"))
                nxt = torch.multinomial(l.softmax(-1), 1, generator=gen).squeeze(-1)
            out.append(nxt)
            logits, _ = self.forward(nxt[:, None], caches, pos)
            pos += 1
            last = logits[:, -1]
        return torch.stack(out, dim=1)


def state_dict_tensors(model):
    return {k: v for k, v in model.state_dict().items()}


def load_into(model, tensors):
    missing = set(model.state_dict()) - set(tensors)
    if missing:
        raise ValueError(f"missing tensors: {sorted(missing)}")
    dtype = next(model.parameters()).dtype
    model.load_state_dict({k: tensors[k].to(dtype) for k in model.state_dict()}, strict=True)
