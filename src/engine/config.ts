/**
 * Model configuration for the embedded policy engine. The on-disk form is a Hugging Face LlamaConfig
 * (config.json) so HF transformers can load our checkpoints; `resolveConfig` validates it and fills the
 * defaults once, so the hot code reads plain numbers (`ModelDims`) instead of optional JSON keys.
 * Our own extensions use the `mpo_` prefix (value head, LayerNorm / plain-MLP variants).
 */
import { ConfigError } from "../util/errors.ts";

/** config.json as written/read (HF Llama keys + mpo_ extensions). */
export interface ModelConfig {
  model_type?: string;
  architectures?: string[];
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads?: number;
  max_position_embeddings: number;
  rms_norm_eps?: number;
  rope_theta?: number;
  tie_word_embeddings?: boolean;
  /** "silu" (SwiGLU, default), "gelu" (exact erf GELU) or "gelu_pytorch_tanh". */
  hidden_act?: string;
  attention_bias?: boolean;
  mlp_bias?: boolean;
  bos_token_id?: number;
  eos_token_id?: number | number[];
  pad_token_id?: number | null;
  torch_dtype?: string;
  head_dim?: number;
  /** Scalar value head (PPO critic) on the final normed hidden state. */
  mpo_value_head?: boolean;
  /** "rmsnorm" (default) or "layernorm" (weight + bias, `.bias` tensors next to each norm weight). */
  mpo_norm?: "rmsnorm" | "layernorm";
  /** "gated" (default: down(act(gate(x)) * up(x))) or "plain" (down(act(up(x))), no gate_proj). */
  mpo_mlp?: "gated" | "plain";
  [extra: string]: unknown;
}

export type Activation = "silu" | "gelu" | "gelu_tanh";

/** Resolved, validated dimensions used by the engine. */
export interface ModelDims {
  V: number;
  d: number;
  ff: number;
  L: number;
  H: number;
  Hkv: number;
  D: number;
  maxT: number;
  eps: number;
  theta: number;
  tied: boolean;
  act: Activation;
  valueHead: boolean;
  norm: "rmsnorm" | "layernorm";
  gated: boolean;
}

function posInt(cfg: Record<string, unknown>, key: string, source: string): number {
  const v = cfg[key];
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
    throw new ConfigError(source, key, "a positive integer", JSON.stringify(v));
  }
  return v;
}

/** Validate a config.json object and resolve defaults. `source` names the file in errors. */
export function resolveConfig(config: ModelConfig, source = "config.json"): ModelDims {
  if (config === null || typeof config !== "object") throw new ConfigError(source, "", "an object", String(config));
  const c = config as Record<string, unknown>;
  const V = posInt(c, "vocab_size", source);
  const d = posInt(c, "hidden_size", source);
  const ff = posInt(c, "intermediate_size", source);
  const L = posInt(c, "num_hidden_layers", source);
  const H = posInt(c, "num_attention_heads", source);
  const Hkv = c.num_key_value_heads === undefined ? H : posInt(c, "num_key_value_heads", source);
  const maxT = posInt(c, "max_position_embeddings", source);
  if (H % Hkv !== 0) throw new ConfigError(source, "num_key_value_heads", `a divisor of num_attention_heads (${H})`, String(Hkv));
  const D = c.head_dim === undefined || c.head_dim === null ? d / H : posInt(c, "head_dim", source);
  if (!Number.isInteger(D)) throw new ConfigError(source, "num_attention_heads", `a divisor of hidden_size (${d})`, String(H));
  if (D % 2 !== 0) throw new ConfigError(source, "head_dim", "an even head dimension (RoPE rotates pairs)", String(D));
  const eps = c.rms_norm_eps === undefined ? 1e-5 : Number(c.rms_norm_eps);
  if (!(eps > 0)) throw new ConfigError(source, "rms_norm_eps", "a positive number", String(c.rms_norm_eps));
  const theta = c.rope_theta === undefined ? 10000 : Number(c.rope_theta);
  if (!(theta > 0)) throw new ConfigError(source, "rope_theta", "a positive number", String(c.rope_theta));
  const actName = c.hidden_act === undefined ? "silu" : c.hidden_act;
  const act: Activation | undefined =
    actName === "silu" || actName === "swish"
      ? "silu"
      : actName === "gelu"
        ? "gelu"
        : actName === "gelu_pytorch_tanh" || actName === "gelu_new"
          ? "gelu_tanh"
          : undefined;
  if (!act) throw new ConfigError(source, "hidden_act", '"silu", "gelu" or "gelu_pytorch_tanh"', JSON.stringify(actName));
  if (c.attention_bias === true) throw new ConfigError(source, "attention_bias", "false (the engine has no attention biases)", "true");
  if (c.mlp_bias === true) throw new ConfigError(source, "mlp_bias", "false (the engine has no MLP biases)", "true");
  const norm = c.mpo_norm === undefined ? "rmsnorm" : c.mpo_norm;
  if (norm !== "rmsnorm" && norm !== "layernorm") throw new ConfigError(source, "mpo_norm", '"rmsnorm" or "layernorm"', JSON.stringify(norm));
  const mlp = c.mpo_mlp === undefined ? "gated" : c.mpo_mlp;
  if (mlp !== "gated" && mlp !== "plain") throw new ConfigError(source, "mpo_mlp", '"gated" or "plain"', JSON.stringify(mlp));
  return {
    V, d, ff, L, H, Hkv, D, maxT, eps, theta,
    tied: c.tie_word_embeddings === true,
    act,
    valueHead: c.mpo_value_head === true,
    norm,
    gated: mlp === "gated",
  };
}

/** A complete config.json for the given sizes, with HF Llama keys filled in. */
export function llamaConfig(p: {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads?: number;
  maxPositions: number;
  tieEmbeddings?: boolean;
  valueHead?: boolean;
  ropeTheta?: number;
  rmsNormEps?: number;
  bosTokenId?: number;
  eosTokenId?: number;
  padTokenId?: number;
  hiddenAct?: string;
  norm?: "rmsnorm" | "layernorm";
  mlp?: "gated" | "plain";
}): ModelConfig {
  const cfg: ModelConfig = {
    model_type: "llama",
    architectures: ["LlamaForCausalLM"],
    vocab_size: p.vocabSize,
    hidden_size: p.hiddenSize,
    intermediate_size: p.intermediateSize,
    num_hidden_layers: p.numLayers,
    num_attention_heads: p.numHeads,
    num_key_value_heads: p.numKvHeads ?? p.numHeads,
    max_position_embeddings: p.maxPositions,
    rms_norm_eps: p.rmsNormEps ?? 1e-5,
    rope_theta: p.ropeTheta ?? 10000,
    tie_word_embeddings: p.tieEmbeddings ?? false,
    hidden_act: p.hiddenAct ?? "silu",
    attention_bias: false,
    mlp_bias: false,
    bos_token_id: p.bosTokenId ?? 1,
    eos_token_id: p.eosTokenId ?? 2,
    torch_dtype: "float32",
    mpo_value_head: p.valueHead ?? false,
  };
  if (p.padTokenId !== undefined) cfg.pad_token_id = p.padTokenId;
  if (p.norm && p.norm !== "rmsnorm") cfg.mpo_norm = p.norm;
  if (p.mlp && p.mlp !== "gated") cfg.mpo_mlp = p.mlp;
  resolveConfig(cfg);
  return cfg;
}
