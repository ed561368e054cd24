/**
 * Hugging Face model directory (config.json, model.safetensors or sharded, tokenizer.json, optional
 * tokenizer_config.json / generation_config.json) → one GGUF file that llama.cpp, Ollama and LM Studio load.
 *
 * Conventions follow llama.cpp's own converter (convert_hf_to_gguf.py and gguf-py/gguf/constants.py,
 * ggml-org/llama.cpp at commit ef035f779276d5f5636a0fd8cbeff6a83d646d2b; src/llama-vocab.cpp at
 * 00ad355e009e83abf98f96a6ded7193b95763681 for the pre-tokenizer names):
 *  - architectures `llama`, `qwen2`, `qwen3` (model_type in config.json); tensor names token_embd, blk.N.attn_q…,
 *    output_norm, output (left out when the embeddings are tied and there is no lm_head);
 *  - `llama` only: q and k rows are permuted per head from Hugging Face's rotate-half RoPE layout (pairs
 *    (i, i + D/2)) to llama.cpp's interleaved one (pairs (2i, 2i + 1)); qwen2/qwen3 use llama.cpp's NEOX
 *    RoPE, which is the Hugging Face layout, so their weights are copied as they are;
 *  - RoPE scaling: "linear" → {arch}.rope.scaling.type/factor; "llama3" (Llama-3.1/3.2) → tensor rope_freqs.weight
 *    holding, per frequency, unscaled / scaled inverse frequency (the divisor llama.cpp applies);
 *  - 1-D tensors (norms, biases) stay F32 whatever --dtype says; Q8_0 falls back to F16 for a matrix whose
 *    rows are not a multiple of 32 (as the converter does);
 *  - tokenizer: model "gpt2" (byte-level BPE), the vocabulary padded to vocab_size with [PADi] (UNUSED), added
 *    special tokens typed CONTROL, other added tokens USER_DEFINED, merges as "a b", the pre-tokenizer named
 *    from its regex (gpt-2, qwen2, llama-bpe; anything else is refused, as llama.cpp's converter refuses it,
 *    because a wrong name silently changes tokenization), bos/eos/pad ids, add_bos_token, the chat template.
 * Value-head tensors (mpo_value_head) are not part of the language model and are left out.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { UserError } from "../../util/errors.ts";
import { floatTensors, readSafetensors } from "./safetensors.ts";
import { ropeInvFreq } from "../config.ts";
import { GGML_TYPE, encodeTensor, writeGguf, Q8_0_BLOCK, type GgufTensorSource, type GgufValue } from "./gguf.ts";

export type GgufDtype = "f32" | "f16" | "bf16" | "q8_0";
export const GGUF_DTYPES: GgufDtype[] = ["f32", "f16", "bf16", "q8_0"];
/** general.file_type (llama.h: LLAMA_FTYPE_ALL_F32, MOSTLY_F16, MOSTLY_Q8_0, MOSTLY_BF16). */
const FILE_TYPE: Record<GgufDtype, number> = { f32: 0, f16: 1, q8_0: 7, bf16: 32 };
const MATRIX_TYPE: Record<GgufDtype, number> = { f32: GGML_TYPE.F32, f16: GGML_TYPE.F16, q8_0: GGML_TYPE.Q8_0, bf16: GGML_TYPE.BF16 };
export const GGUF_ARCHS = ["llama", "qwen2", "qwen3"] as const;

/** tokenizer.ggml.token_type values (llama.h: LLAMA_TOKEN_TYPE_*). */
const TOKEN_TYPE = { NORMAL: 1, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5 };

/** ChatML, the format this project's policies are trained on (src/generate chatmlQuery), for tokenizers without a template. */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** Pre-tokenizer regexes as they appear in tokenizer.json → llama.cpp's pre-tokenizer name. */
const PRE_TOKENIZERS: Array<[string, string]> = [
  ["'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", "gpt-2"],
  ["(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "qwen2"],
  ["(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "llama-bpe"],
];

export class GgufExportError extends UserError {
  constructor(dir: string, problem: string) {
    super(`gguf export of ${dir}: ${problem}`);
    this.name = "GgufExportError";
  }
}

function readJson(dir: string, file: string, required: boolean): Record<string, any> | undefined {
  const p = join(dir, file);
  if (!existsSync(p)) {
    if (required) throw new GgufExportError(dir, `${file} is missing (expected a Hugging Face model directory)`);
    return undefined;
  }
  try {
    const v = JSON.parse(readFileSync(p, "utf8"));
    if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error("not a JSON object");
    return v;
  } catch (e) {
    throw new GgufExportError(dir, `${file}: ${(e as Error).message}`);
  }
}

/** All tensors of model.safetensors or of the shards listed in model.safetensors.index.json, as f32. */
function readWeights(dir: string): Map<string, { shape: number[]; data: Float32Array }> {
  const single = join(dir, "model.safetensors");
  if (existsSync(single)) return floatTensors(readSafetensors(single), single);
  const index = readJson(dir, "model.safetensors.index.json", false);
  if (!index && existsSync(join(dir, "adapter_config.json")))
    throw new GgufExportError(dir, "is a LoRA adapter (adapter_config.json, no model.safetensors); exporting it merged into its base model is not implemented yet — merge it first (e.g. PEFT merge_and_unload) and export the merged directory");
  if (!index) throw new GgufExportError(dir, "neither model.safetensors nor model.safetensors.index.json is present");
  const files = [...new Set(Object.values((index.weight_map ?? {}) as Record<string, string>))];
  if (!files.length) throw new GgufExportError(dir, "model.safetensors.index.json: field 'weight_map' lists no files");
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const f of files) for (const [k, v] of floatTensors(readSafetensors(join(dir, f)), join(dir, f))) out.set(k, v);
  return out;
}

/** HF parameter name → GGUF tensor name (undefined = not part of the exported LM). */
export function ggufTensorName(hf: string): string | undefined {
  const fixed: Record<string, string> = { "model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight" };
  if (fixed[hf]) return fixed[hf];
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hf);
  if (!m) return undefined;
  const sub: Record<string, string> = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
  };
  return sub[m[2]] ? `blk.${m[1]}.${sub[m[2]]}` : undefined;
}

/**
 * llama.cpp's `permute` for llama q/k: rows of each head go from [2, D/2] (rotate-half pairs i, i + D/2) to
 * [D/2, 2] (adjacent pairs). Row h·D + 2j + s of the result is row h·D + s·D/2 + j of the input.
 */
export function permuteRotaryRows(data: Float32Array, rows: number, cols: number, nHead: number): Float32Array {
  const D = rows / nHead;
  if (!Number.isInteger(D) || D % 2 !== 0) throw new RangeError(`permuteRotaryRows: ${rows} rows do not split into ${nHead} heads of even size`);
  const out = new Float32Array(data.length);
  for (let h = 0; h < nHead; h++)
    for (let j = 0; j < D / 2; j++)
      for (let s = 0; s < 2; s++) {
        const dst = (h * D + 2 * j + s) * cols;
        const src = (h * D + s * (D / 2) + j) * cols;
        out.set(data.subarray(src, src + cols), dst);
      }
  return out;
}

function preTokenizerName(dir: string, tok: Record<string, any>): string {
  const pre = tok.pre_tokenizer;
  const patterns: string[] = [];
  const visit = (p: any) => {
    if (!p || typeof p !== "object") return;
    if (p.type === "Sequence") for (const x of p.pretokenizers ?? []) visit(x);
    else if (p.type === "Split" && typeof p.pattern?.Regex === "string") patterns.push(p.pattern.Regex);
    else if (p.type === "ByteLevel" && p.use_regex !== false) patterns.push(PRE_TOKENIZERS[0][0]);
  };
  visit(pre);
  if (patterns.length === 1) {
    const hit = PRE_TOKENIZERS.find(([re]) => re === patterns[0]);
    if (hit) return hit[1];
  }
  throw new GgufExportError(dir, `tokenizer.json: field 'pre_tokenizer': no llama.cpp pre-tokenizer is known to match ${JSON.stringify(pre)} (supported: GPT-2 ByteLevel, Qwen2, Llama-3 regexes)`);
}

interface TokenizerMeta {
  entries: Array<[string, GgufValue]>;
}

function tokenizerMetadata(dir: string, config: Record<string, any>, chatTemplate: string | undefined): TokenizerMeta {
  const tok = readJson(dir, "tokenizer.json", true)!;
  const tcfg = readJson(dir, "tokenizer_config.json", false) ?? {};
  const gen = readJson(dir, "generation_config.json", false) ?? {};
  if (tok.model?.type !== "BPE") throw new GgufExportError(dir, `tokenizer.json: field 'model.type': only byte-level BPE is exported, got ${JSON.stringify(tok.model?.type)}`);
  if (tok.normalizer) throw new GgufExportError(dir, `tokenizer.json: field 'normalizer': normalizers are not exported, got ${JSON.stringify(tok.normalizer?.type)}`);
  const pre = preTokenizerName(dir, tok);
  const idToToken: string[] = [];
  for (const [t, id] of Object.entries((tok.model.vocab ?? {}) as Record<string, number>)) idToToken[id] = t;
  const types: number[] = [];
  const added = new Map<number, { content: string; special: boolean }>();
  for (const a of (tok.added_tokens ?? []) as any[]) {
    idToToken[a.id] = a.content;
    added.set(a.id, { content: a.content, special: a.special !== false });
  }
  const vocabSize = Math.max(Number(config.vocab_size) || 0, idToToken.length);
  for (let i = 0; i < vocabSize; i++) {
    if (idToToken[i] === undefined) {
      idToToken[i] = `[PAD${i}]`;
      types[i] = TOKEN_TYPE.UNUSED;
    } else {
      const a = added.get(i);
      types[i] = a ? (a.special ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.USER_DEFINED) : TOKEN_TYPE.NORMAL;
    }
  }
  const merges: string[] = ((tok.model.merges ?? []) as unknown[]).map((m, i) => {
    if (typeof m === "string") return m;
    if (Array.isArray(m) && m.length === 2) return `${m[0]} ${m[1]}`;
    throw new GgufExportError(dir, `tokenizer.json: field 'model.merges[${i}]': expected "a b" or [a, b]`);
  });
  const idOf = (v: unknown): number | undefined => {
    if (Array.isArray(v)) v = v[0];
    if (typeof v === "number" && Number.isInteger(v) && v >= 0 && v < vocabSize) return v;
    if (typeof v === "string") return idToToken.indexOf(v) >= 0 ? idToToken.indexOf(v) : undefined;
    if (v && typeof v === "object" && typeof (v as any).content === "string") return idOf((v as any).content);
    return undefined;
  };
  const bos = idOf(config.bos_token_id) ?? idOf(tcfg.bos_token);
  const eos = idOf(gen.eos_token_id) ?? idOf(config.eos_token_id) ?? idOf(tcfg.eos_token);
  const pad = idOf(config.pad_token_id) ?? idOf(gen.pad_token_id) ?? idOf(tcfg.pad_token);
  // Whether the tokenizer itself prepends BOS: tokenizer_config says so, or a TemplateProcessing post-processor starts with a special token.
  const single = tok.post_processor?.type === "TemplateProcessing" ? tok.post_processor.single : undefined;
  const addBos = typeof tcfg.add_bos_token === "boolean" ? tcfg.add_bos_token : Array.isArray(single) && single.length > 0 && "SpecialToken" in single[0];
  let template = chatTemplate ?? (typeof tcfg.chat_template === "string" ? tcfg.chat_template : undefined);
  if (template === undefined && existsSync(join(dir, "chat_template.jinja"))) template = readFileSync(join(dir, "chat_template.jinja"), "utf8");
  if (template === undefined && idToToken.includes("<|im_start|>") && idToToken.includes("<|im_end|>")) template = CHATML_TEMPLATE;
  const entries: Array<[string, GgufValue]> = [
    ["tokenizer.ggml.model", { type: "string", value: "gpt2" }],
    ["tokenizer.ggml.pre", { type: "string", value: pre }],
    ["tokenizer.ggml.tokens", { type: "array", itemType: "string", values: idToToken }],
    ["tokenizer.ggml.token_type", { type: "array", itemType: "i32", values: types }],
    ["tokenizer.ggml.merges", { type: "array", itemType: "string", values: merges }],
  ];
  if (bos !== undefined) entries.push(["tokenizer.ggml.bos_token_id", { type: "u32", value: bos }]);
  if (eos !== undefined) entries.push(["tokenizer.ggml.eos_token_id", { type: "u32", value: eos }]);
  if (pad !== undefined) entries.push(["tokenizer.ggml.padding_token_id", { type: "u32", value: pad }]);
  entries.push(["tokenizer.ggml.add_bos_token", { type: "bool", value: addBos }]);
  if (template !== undefined) entries.push(["tokenizer.chat_template", { type: "string", value: template }]);
  return { entries };
}

export interface GgufExportOptions {
  dtype?: GgufDtype;
  /** general.name (default: the directory's name). */
  name?: string;
  /** A Jinja chat template replacing the directory's own (tokenizer_config.json chat_template). */
  chatTemplate?: string;
}

export interface GgufExportResult {
  path: string;
  arch: string;
  bytes: number;
  tensors: number;
  /** Tensors written in another type than asked (Q8_0 with rows not a multiple of 32 → F16). */
  fallbacks: string[];
}

/** Writes `dir` (a Hugging Face llama / qwen2 / qwen3 model directory) as a GGUF file at `out`. */
export function exportGguf(dirIn: string, out: string, opts: GgufExportOptions = {}): GgufExportResult {
  const dir = resolve(dirIn);
  const dtype = opts.dtype ?? "f16";
  if (!GGUF_DTYPES.includes(dtype)) throw new GgufExportError(dir, `--dtype ${dtype}: expected one of ${GGUF_DTYPES.join(", ")}`);
  const config = readJson(dir, "config.json", true)!;
  const arch = String(config.model_type ?? "");
  if (!(GGUF_ARCHS as readonly string[]).includes(arch)) throw new GgufExportError(dir, `config.json: field 'model_type': ${JSON.stringify(config.model_type)} is not exported (supported: ${GGUF_ARCHS.join(", ")})`);
  for (const [key, ok] of [["mpo_norm", "rmsnorm"], ["mpo_mlp", "gated"]] as const)
    if (config[key] !== undefined && config[key] !== ok) throw new GgufExportError(dir, `config.json: field '${key}': ${JSON.stringify(config[key])} has no llama.cpp equivalent (only ${ok})`);
  if (config.hidden_act !== undefined && !["silu", "swish"].includes(config.hidden_act))
    throw new GgufExportError(dir, `config.json: field 'hidden_act': ${JSON.stringify(config.hidden_act)} has no llama.cpp ${arch} equivalent (silu only)`);
  const num = (k: string, dflt?: number): number => {
    const v = config[k] ?? dflt;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) throw new GgufExportError(dir, `config.json: field '${k}': expected a positive number, got ${JSON.stringify(config[k])}`);
    return v;
  };
  const d = num("hidden_size"), L = num("num_hidden_layers"), H = num("num_attention_heads");
  const Hkv = num("num_key_value_heads", H);
  const headDim = config.head_dim !== undefined ? num("head_dim") : d / H;

  // RoPE scaling as llama.cpp's converter writes it: "linear" as metadata; "llama3" as a rope_freqs tensor of
  // per-frequency divisors (unscaled / scaled inverse frequency, from the engine's own ropeInvFreq).
  const scaling = config.rope_scaling as Record<string, unknown> | null | undefined;
  const scalingType = scaling ? String(scaling.rope_type ?? scaling.type ?? "default") : "default";
  if (!["default", "linear", "llama3"].includes(scalingType))
    throw new GgufExportError(dir, `config.json: field 'rope_scaling.rope_type': ${JSON.stringify(scalingType)} is not exported (default, linear, llama3)`);
  let ropeFreqs: Float32Array | undefined;
  if (scalingType === "llama3") {
    const theta = num("rope_theta", 10000);
    let base: number[], scaled: number[];
    try {
      base = ropeInvFreq(headDim, theta, null);
      scaled = ropeInvFreq(headDim, theta, scaling, join(dir, "config.json"));
    } catch (e) {
      throw new GgufExportError(dir, (e as Error).message);
    }
    ropeFreqs = Float32Array.from(base, (b, i) => b / scaled[i]);
  }

  const weights = readWeights(dir);
  const meta: Array<[string, GgufValue]> = [
    ["general.architecture", { type: "string", value: arch }],
    ["general.name", { type: "string", value: opts.name ?? (dir.split(/[\\/]/).pop() || "model") }],
    [`${arch}.context_length`, { type: "u32", value: num("max_position_embeddings") }],
    [`${arch}.embedding_length`, { type: "u32", value: d }],
    [`${arch}.block_count`, { type: "u32", value: L }],
    [`${arch}.feed_forward_length`, { type: "u32", value: num("intermediate_size") }],
    [`${arch}.attention.head_count`, { type: "u32", value: H }],
    [`${arch}.attention.head_count_kv`, { type: "u32", value: Hkv }],
    [`${arch}.rope.freq_base`, { type: "f32", value: num("rope_theta", 10000) }],
    [`${arch}.attention.layer_norm_rms_epsilon`, { type: "f32", value: num("rms_norm_eps", 1e-6) }],
    [`${arch}.rope.dimension_count`, { type: "u32", value: headDim }],
    [`${arch}.vocab_size`, { type: "u32", value: num("vocab_size") }],
  ];
  if (scalingType === "linear") {
    const factor = Number(scaling!.factor);
    if (!(factor > 0)) throw new GgufExportError(dir, `config.json: field 'rope_scaling.factor': expected a positive number, got ${JSON.stringify(scaling!.factor)}`);
    meta.push([`${arch}.rope.scaling.type`, { type: "string", value: "linear" }]);
    meta.push([`${arch}.rope.scaling.factor`, { type: "f32", value: factor }]);
  }
  if (config.head_dim !== undefined) {
    meta.push([`${arch}.attention.key_length`, { type: "u32", value: headDim }]);
    meta.push([`${arch}.attention.value_length`, { type: "u32", value: headDim }]);
  }
  meta.push(["general.file_type", { type: "u32", value: FILE_TYPE[dtype] }]);
  meta.push(["general.quantization_version", { type: "u32", value: 2 }]);
  meta.push(...tokenizerMetadata(dir, config, opts.chatTemplate).entries);

  // Tensors in llama.cpp's usual order: embeddings, blocks, final norm, output.
  const order = (n: string) => (n.startsWith("token_embd") ? -1 : n.startsWith("blk.") ? Number(n.split(".")[1]) : n === "output_norm.weight" ? 1e9 : 1e9 + 1);
  const entries: Array<[string, string, { shape: number[]; data: Float32Array }]> = [];
  for (const [hf, t] of weights) {
    const g = ggufTensorName(hf);
    if (g) entries.push([g, hf, t]);
    else if (!/value_head|^v_head|score\.weight/.test(hf)) throw new GgufExportError(dir, `tensor '${hf}' has no GGUF name for ${arch} (unexpected parameter)`);
  }
  if (!entries.some(([g]) => g === "token_embd.weight")) throw new GgufExportError(dir, "tensor 'model.embed_tokens.weight' is missing");
  entries.sort((a, b) => order(a[0]) - order(b[0]) || a[0].localeCompare(b[0]));
  const fallbacks: string[] = [];
  const sources: GgufTensorSource[] = entries.map(([g, hf, t]) => {
    let type: number = t.shape.length <= 1 ? GGML_TYPE.F32 : MATRIX_TYPE[dtype];
    if (type === GGML_TYPE.Q8_0 && t.shape[t.shape.length - 1] % Q8_0_BLOCK !== 0) {
      type = GGML_TYPE.F16;
      fallbacks.push(`${g}: rows of ${t.shape[t.shape.length - 1]} are not a multiple of ${Q8_0_BLOCK}, written as F16`);
    }
    return {
      name: g,
      shape: t.shape,
      type,
      encode: () => {
        let data = t.data;
        if (arch === "llama" && /self_attn\.(q|k)_proj\.(weight|bias)$/.test(hf)) {
          const heads = hf.includes("q_proj") ? H : Hkv;
          data = permuteRotaryRows(data, t.shape[0], t.shape.length > 1 ? t.shape[1] : 1, heads);
        }
        return encodeTensor(data, type, t.shape);
      },
    };
  });
  if (ropeFreqs) {
    const rf = ropeFreqs;
    sources.unshift({ name: "rope_freqs.weight", shape: [rf.length], type: GGML_TYPE.F32, encode: () => encodeTensor(rf, GGML_TYPE.F32, [rf.length]) });
  }
  const { bytes } = writeGguf(resolve(out), meta, sources);
  return { path: resolve(out), arch, bytes, tensors: sources.length, fallbacks };
}
