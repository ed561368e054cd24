/**
 * The model config as stored in a checkpoint's config.json: Hugging Face LlamaConfig / Qwen2Config /
 * Qwen3Config keys (so HF transformers loads our checkpoints and we load published ones) plus our optional
 * `mpo_value_head`. The zod schema names the offending field on bad input; `expectedParamShapes` is the
 * single source of truth for which tensors a config implies (HF parameter names, nn.Linear [out, in] shapes).
 */
import { z } from "zod";
import { resolveConfig, SUPPORTED_MODEL_TYPES } from "../config.ts";

const posInt = z.number().int().positive();

export const LlamaConfigSchema = z
  .object({
    model_type: z
      .string()
      .default("llama")
      .refine((t) => (SUPPORTED_MODEL_TYPES as readonly string[]).includes(t), {
        message: `unsupported model_type; supported: ${SUPPORTED_MODEL_TYPES.join(", ")}`,
      }),
    architectures: z.array(z.string()).default(["LlamaForCausalLM"]),
    vocab_size: posInt,
    hidden_size: posInt,
    intermediate_size: posInt,
    num_hidden_layers: posInt,
    num_attention_heads: posInt,
    num_key_value_heads: posInt.optional(),
    max_position_embeddings: posInt,
    rms_norm_eps: z.number().positive().default(1e-5),
    rope_theta: z.number().positive().default(10000),
    tie_word_embeddings: z.boolean().default(false),
    hidden_act: z.enum(["silu", "swish", "gelu", "gelu_pytorch_tanh", "gelu_new"]).default("silu"),
    attention_bias: z.boolean().default(false),
    mlp_bias: z.literal(false).default(false),
    bos_token_id: z.number().int().nonnegative().optional(),
    eos_token_id: z.union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative())]).optional(),
    pad_token_id: z.number().int().nonnegative().nullable().optional(),
    torch_dtype: z.string().default("float32"),
    head_dim: posInt.optional(),
    mpo_value_head: z.boolean().optional(),
    /** Engine variants (see src/engine/config.ts): LayerNorm adds `.bias` next to each norm weight; "plain" MLP has no gate_proj. */
    mpo_norm: z.enum(["rmsnorm", "layernorm"]).optional(),
    mpo_mlp: z.enum(["gated", "plain"]).optional(),
  })
  .passthrough()
  .superRefine((c, ctx) => {
    if (c.use_sliding_window === true)
      ctx.addIssue({ code: "custom", path: ["use_sliding_window"], message: "sliding-window attention is not implemented (use_sliding_window must be false)" });
    const kv = c.num_key_value_heads ?? c.num_attention_heads;
    if (c.head_dim !== undefined) {
      if (c.head_dim % 2 !== 0) ctx.addIssue({ code: "custom", path: ["head_dim"], message: `head_dim ${c.head_dim} must be even (RoPE rotates pairs)` });
    } else if (c.hidden_size % c.num_attention_heads !== 0)
      ctx.addIssue({ code: "custom", path: ["hidden_size"], message: `hidden_size ${c.hidden_size} must be divisible by num_attention_heads ${c.num_attention_heads}` });
    else if ((c.hidden_size / c.num_attention_heads) % 2 !== 0)
      ctx.addIssue({ code: "custom", path: ["hidden_size"], message: `head dim ${c.hidden_size / c.num_attention_heads} must be even (RoPE rotates pairs)` });
    if (c.num_attention_heads % kv !== 0)
      ctx.addIssue({ code: "custom", path: ["num_key_value_heads"], message: `num_key_value_heads ${kv} must divide num_attention_heads ${c.num_attention_heads}` });
    for (const key of ["bos_token_id", "pad_token_id"] as const) {
      const v = c[key];
      if (typeof v === "number" && v >= c.vocab_size)
        ctx.addIssue({ code: "custom", path: [key], message: `${key} ${v} is outside the vocabulary (vocab_size ${c.vocab_size})` });
    }
    const eos = c.eos_token_id;
    for (const v of Array.isArray(eos) ? eos : eos == null ? [] : [eos])
      if (v >= c.vocab_size)
        ctx.addIssue({ code: "custom", path: ["eos_token_id"], message: `eos_token_id ${v} is outside the vocabulary (vocab_size ${c.vocab_size})` });
  });

export type LlamaConfig = z.output<typeof LlamaConfigSchema>;

/** Parameter name → shape implied by a config (the exact set a checkpoint must contain). */
export function expectedParamShapes(c: LlamaConfig): Map<string, number[]> {
  const d = c.hidden_size;
  const dims = resolveConfig(c as never);
  const D = dims.D;
  const ln = c.mpo_norm === "layernorm";
  const kv = c.num_key_value_heads ?? c.num_attention_heads;
  const ff = c.intermediate_size;
  const m = new Map<string, number[]>();
  m.set("model.embed_tokens.weight", [c.vocab_size, d]);
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const p = `model.layers.${i}.`;
    m.set(p + "input_layernorm.weight", [d]);
    if (ln) m.set(p + "input_layernorm.bias", [d]);
    m.set(p + "self_attn.q_proj.weight", [c.num_attention_heads * D, d]);
    m.set(p + "self_attn.k_proj.weight", [kv * D, d]);
    m.set(p + "self_attn.v_proj.weight", [kv * D, d]);
    if (dims.qkvBias) {
      m.set(p + "self_attn.q_proj.bias", [c.num_attention_heads * D]);
      m.set(p + "self_attn.k_proj.bias", [kv * D]);
      m.set(p + "self_attn.v_proj.bias", [kv * D]);
    }
    m.set(p + "self_attn.o_proj.weight", [d, c.num_attention_heads * D]);
    if (dims.oBias) m.set(p + "self_attn.o_proj.bias", [d]);
    if (dims.qkNorm) {
      m.set(p + "self_attn.q_norm.weight", [D]);
      m.set(p + "self_attn.k_norm.weight", [D]);
    }
    m.set(p + "post_attention_layernorm.weight", [d]);
    if (ln) m.set(p + "post_attention_layernorm.bias", [d]);
    if (c.mpo_mlp !== "plain") m.set(p + "mlp.gate_proj.weight", [ff, d]);
    m.set(p + "mlp.up_proj.weight", [ff, d]);
    m.set(p + "mlp.down_proj.weight", [d, ff]);
  }
  m.set("model.norm.weight", [d]);
  if (ln) m.set("model.norm.bias", [d]);
  if (!c.tie_word_embeddings) m.set("lm_head.weight", [c.vocab_size, d]);
  if (c.mpo_value_head) {
    m.set("value_head.weight", [1, d]);
    m.set("value_head.bias", [1]);
  }
  return m;
}
