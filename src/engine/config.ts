/**
 * Model configuration for the embedded policy engine. The on-disk form is a Hugging Face config.json
 * (LlamaConfig, Qwen2Config or Qwen3Config, exactly as published) so HF transformers loads our checkpoints
 * and we load theirs; `resolveConfig` validates it and fills the defaults once, so the hot code reads plain
 * numbers and flags (`ModelDims`) instead of optional JSON keys. The three families differ only in:
 *   llama: optional `attention_bias` (q/k/v/o), `rope_scaling` (llama3 / linear), `head_dim`;
 *   qwen2: q/k/v biases always on, o_proj without bias;
 *   qwen3: per-head RMSNorm on q and k (`q_norm`, `k_norm`) before RoPE, `head_dim` ≠ hidden/heads.
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

/** The config.json `model_type` values the engine computes exactly as transformers does. */
export const SUPPORTED_MODEL_TYPES = ["llama", "qwen2", "qwen3"] as const;
export type ModelType = (typeof SUPPORTED_MODEL_TYPES)[number];

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
  modelType: ModelType;
  /** Biases on q_proj, k_proj, v_proj (qwen2 always; llama/qwen3 with attention_bias). */
  qkvBias: boolean;
  /** Bias on o_proj (llama/qwen3 with attention_bias; never qwen2). */
  oBias: boolean;
  /** Per-head RMSNorm on q and k before RoPE (qwen3). */
  qkNorm: boolean;
  /** RoPE inverse frequencies [D/2] after rope_scaling, as float32 values (transformers computes them in f32). */
  invFreq: number[];
}

/**
 * RoPE inverse frequencies as transformers' ROPE_INIT_FUNCTIONS compute them: default
 * inv_freq_i = 1 / θ^(2i/D); "linear" divides all by `factor`; "llama3" divides the low frequencies
 * (wavelength 2π/inv_freq > original_max_position_embeddings / low_freq_factor) by `factor`, keeps the high
 * ones (wavelength < original / high_freq_factor) and interpolates smoothly in between. Both keep
 * attention_scaling = 1. Any other rope_type is refused rather than computed approximately.
 */
export function ropeInvFreq(D: number, theta: number, scaling: unknown, source = "config.json"): number[] {
  const f = Math.fround;
  const base: number[] = [];
  for (let i = 0; i < D / 2; i++) base.push(f(1 / f(Math.pow(theta, f((2 * i) / D)))));
  if (scaling === undefined || scaling === null) return base;
  if (typeof scaling !== "object" || Array.isArray(scaling)) throw new ConfigError(source, "rope_scaling", "an object or null", JSON.stringify(scaling));
  const s = scaling as Record<string, unknown>;
  const type = s.rope_type ?? s.type ?? "default";
  const num = (key: string): number => {
    const v = s[key];
    if (typeof v !== "number" || !(v > 0)) throw new ConfigError(source, `rope_scaling.${key}`, "a positive number", JSON.stringify(v));
    return v;
  };
  if (type === "default") return base;
  if (type === "linear") {
    const factor = num("factor");
    return base.map((x) => f(x / factor));
  }
  if (type === "llama3") {
    const factor = num("factor");
    const low = num("low_freq_factor");
    const high = num("high_freq_factor");
    const old = num("original_max_position_embeddings");
    if (!(high > low)) throw new ConfigError(source, "rope_scaling.high_freq_factor", `a number > low_freq_factor (${low})`, String(high));
    const lowWavelen = old / low;
    const highWavelen = old / high;
    return base.map((x) => {
      const wavelen = (2 * Math.PI) / x;
      const scaled = wavelen > lowWavelen ? x / factor : x;
      if (wavelen < highWavelen || wavelen > lowWavelen) return f(scaled);
      // Medium band: interpolate between the scaled and unscaled frequency.
      const smooth = (old / wavelen - low) / (high - low);
      return f((1 - smooth) * (scaled / factor) + smooth * scaled);
    });
  }
  throw new ConfigError(source, "rope_scaling.rope_type", '"default", "linear" or "llama3" (others are not implemented)', JSON.stringify(type));
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
  const modelType = (c.model_type ?? "llama") as ModelType;
  if (!SUPPORTED_MODEL_TYPES.includes(modelType))
    throw new ConfigError(source, "model_type", `one of ${SUPPORTED_MODEL_TYPES.map((t) => JSON.stringify(t)).join(", ")} (the architectures this engine implements)`, JSON.stringify(c.model_type));
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
  // transformers ≥ 5 writes `rope_parameters: {rope_theta, rope_type, …}` instead of rope_theta + rope_scaling.
  const ropeParams = c.rope_parameters !== null && typeof c.rope_parameters === "object" ? (c.rope_parameters as Record<string, unknown>) : undefined;
  const theta = c.rope_theta !== undefined ? Number(c.rope_theta) : ropeParams?.rope_theta !== undefined ? Number(ropeParams.rope_theta) : 10000;
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
  if (c.attention_bias !== undefined && typeof c.attention_bias !== "boolean") throw new ConfigError(source, "attention_bias", "a boolean", JSON.stringify(c.attention_bias));
  if (c.mlp_bias === true) throw new ConfigError(source, "mlp_bias", "false (the engine has no MLP biases)", "true");
  if (c.use_sliding_window === true) throw new ConfigError(source, "use_sliding_window", "false (sliding-window attention is not implemented)", "true");
  const attnBias = c.attention_bias === true;
  const qkvBias = modelType === "qwen2" ? true : attnBias;
  const oBias = modelType === "qwen2" ? false : attnBias;
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
    modelType,
    qkvBias,
    oBias,
    qkNorm: modelType === "qwen3",
    invFreq: ropeInvFreq(D, theta, c.rope_scaling ?? ropeParams, source),
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
