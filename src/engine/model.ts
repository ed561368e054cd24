/**
 * TransformerLM: the decoder-only policy model (Llama/Qwen2-style: pre-RMSNorm, RoPE, causal GQA attention,
 * SwiGLU MLP, optional tied embeddings and scalar value head) with explicit forward/backward passes.
 *
 * Why explicit passes instead of a general autograd: the RL trainer needs exactly three things — per-token
 * log-probs (+ entropy, values) of given tokens, their gradient, and KV-cached sampling — and a fixed graph
 * lets every activation live in a preallocated arena that is reused step after step (flat memory, no GC
 * churn) and lets the heavy loops go to a native backend (kernels.ts).
 *
 * Contract (docs/engine.md, ENGINE.md): score() runs teacher-forced over [B, T] and keeps the activations;
 * backward(dLogprobs, dValues?, dEntropy?) ACCUMULATES parameter gradients from upstream gradients w.r.t. the
 * per-token outputs, so any loss written in plain TS over logprobs/values/entropy trains the model.
 */
import { Rng } from "../util/rng.ts";
import { UserError } from "../util/errors.ts";
import { type ModelConfig, type ModelDims, resolveConfig } from "./config.ts";
import * as ops from "./ops.ts";
export { sampleToken } from "./ops.ts";
import { type EngineChoice, type Kernels, selectKernels, tsKernels } from "./kernels.ts";

type F = Float32Array;

export interface ParamTensor {
  name: string;
  shape: number[];
  data: Float32Array;
  /** Gradient accumulator; empty for frozen matrices (their weight gradient is never computed). */
  grad: Float32Array;
  /** Not trained (LoRA freezes the base); frozen params are left out of trainableParams(). */
  frozen?: boolean;
}

/** Linear projections LoRA can adapt (PEFT target_modules names). */
export const LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];

export interface LoraOptions {
  r: number;
  alpha: number;
  /** Dropout on the adapter input (PEFT lora_dropout); active only while `loraTrain` is on. */
  dropout: number;
  targets: readonly LoraTarget[];
  /** Initializes A (kaiming-uniform like nn.Linear, as PEFT does); B starts at zero so the adapted model = base. */
  rng: Rng;
}

interface Adapter {
  A: ParamTensor;
  B: ParamTensor;
}

export interface NamedTensor {
  shape: number[];
  data: Float32Array;
}

export interface ModelOptions {
  /** Compute path; default: MPO_ENGINE env, else native when available. */
  engine?: EngineChoice;
  /** "float64" is for gradient checks only (runs the TS path; arrays are Float64Array behind the F32 type). */
  dtype?: "float32" | "float64";
  /** fromParams: keep the given f32 arrays instead of copying them (for weights no optimizer will touch). */
  shareTensors?: boolean;
  /**
   * Construct with the base frozen (what addLora() would do afterwards): every weight except the value head
   * is `frozen` and no matrix gets a gradient buffer at all — at Qwen2.5-0.5B the f32 gradient buffers
   * alone would be 2 GB, allocated and released again. Vectors (norms, biases) keep theirs (tiny).
   */
  frozenBase?: boolean;
  /**
   * Rows of the lm_head computed at once (default: as many as fit HEAD_CHUNK_FLOATS logits). The
   * [rows, vocab] logits are never materialized for all rows: score() runs the head and log-softmax chunk
   * by chunk keeping only log-probs/entropy, and backward() recomputes each chunk's logits (one extra head
   * matmul) when there was more than one chunk. One chunk = the logits are kept, no recomputation.
   */
  headChunkRows?: number;
  /**
   * Share the activation arena with another model of the same dims (the LoRA critic on the policy's frozen
   * base): models used one after another need one set of activations, not two. backward() refuses to run
   * when another model has scored into the shared arena since this model's score().
   */
  shareArenaWith?: TransformerLM;
  /**
   * Activation recomputation (gradient checkpointing per layer): score() keeps only each layer's input and
   * backward() re-runs a layer's forward just before differentiating it. Activations drop from ~L layers'
   * worth to one layer's (+ the L inputs) for one extra forward of the layers per backward.
   */
  recompute?: boolean;
}

/** Logits held at once by the chunked lm_head (floats): 16 Mi floats = 64 MiB, ~110 rows at vocab 151,936. */
export const HEAD_CHUNK_FLOATS = 1 << 24;

export interface ScoreOptions {
  needValues?: boolean;
  needEntropy?: boolean;
  /** false: skip the lm_head entirely (a critic needs only values); logprobs are then all 0. Default true. */
  needLogprobs?: boolean;
  /** Logits are divided by this before the softmax (like samplers do); default 1. */
  temperature?: number;
}

export interface ScoreOutput {
  /** log p(targets[i] | tokens[..i]) per position; 0 where targets[i] < 0 (ignored). [B*T] */
  logprobs: Float32Array;
  /** Entropy of the next-token distribution at positions with a target; 0 where targets[i] < 0. [B*T] */
  entropy?: Float32Array;
  values?: Float32Array;
}

export interface GenerateOptions {
  maxNewTokens: number;
  /** ≤ 0 → greedy. Default 1. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 = off). */
  topK?: number;
  /** Nucleus sampling mass (1 = off). */
  topP?: number;
  /** Tokens that end a sequence (included in the output). Default: config eos_token_id. */
  stopTokens?: number[];
  rng?: Rng;
}

export interface GenerateOutput {
  /** The new tokens per prompt (stop token included when hit). */
  tokens: number[][];
  /** Model log-probability (temperature 1, before top-k/top-p) of each new token — equals score(). */
  logprobs: number[][];
  /** True when a stop token ended the sequence (false: ran out of maxNewTokens). */
  finished: boolean[];
}

interface Layer {
  index: number;
  /** LoRA adapters by projection (empty without LoRA). */
  lora: Partial<Record<LoraTarget, Adapter>>;
  ln1: ParamTensor;
  ln1b: ParamTensor | null;
  wq: ParamTensor;
  wk: ParamTensor;
  wv: ParamTensor;
  wo: ParamTensor;
  /** q/k/v/o projection biases (qwen2: q, k, v; llama/qwen3 with attention_bias: all four). */
  bq: ParamTensor | null;
  bk: ParamTensor | null;
  bv: ParamTensor | null;
  bo: ParamTensor | null;
  /** qwen3: RMSNorm weights [D] applied to each head of q and k before RoPE. */
  qNorm: ParamTensor | null;
  kNorm: ParamTensor | null;
  ln2: ParamTensor;
  ln2b: ParamTensor | null;
  wg: ParamTensor | null;
  wu: ParamTensor;
  wd: ParamTensor;
}

/** Buffers reused across calls; grown (never shrunk) to the largest size requested. */
class Arena {
  private f = new Map<string, F>();
  private i = new Map<string, Int32Array>();
  /** The model whose score() activations the arena holds now (shared arenas, see shareArenaWith). */
  owner: object | null = null;
  constructor(private alloc: (n: number) => F) {}
  get(name: string, n: number): F {
    let b = this.f.get(name);
    if (!b || b.length < n) {
      b = this.alloc(n);
      this.f.set(name, b);
    }
    return b.subarray(0, n);
  }
  int(name: string, n: number): Int32Array {
    let b = this.i.get(name);
    if (!b || b.length < n) {
      b = new Int32Array(n);
      this.i.set(name, b);
    }
    return b.subarray(0, n);
  }
  bytes(): number {
    let s = 0;
    for (const b of this.f.values()) s += b.byteLength;
    for (const b of this.i.values()) s += b.byteLength;
    return s;
  }
}

interface ScoreState {
  B: number;
  T: number;
  N: number;
  /** Rows with a target (lm_head rows), and their indices into [0, N). */
  Na: number;
  rows: Int32Array;
  tokens: Int32Array;
  /** Targets of the Na head rows. */
  targets: Int32Array;
  /** LoRA dropout of this forward (seed of its masks; 0 = off), replayed by backward. */
  dropSeed: number;
  /** Entropy of the Na head rows (when computed). */
  entropy: F | null;
  invTemp: number;
}

/**
 * Deterministic keep/drop bit for element i of a dropout mask (seed, salt, the run's mask seed): forward and
 * backward agree without storing it. runSeed 0 leaves the hash as it was before run seeds were mixed in.
 */
function keepBit(seed: number, salt: number, i: number, keep: number, runSeed: number): boolean {
  let h = Math.imul(seed, 0x9e3779b1) ^ Math.imul(salt + 1, 0x85ebca77) ^ Math.imul(i, 0xc2b2ae3d) ^ Math.imul(runSeed, 0x27d4eb2f);
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  h ^= h >>> 16;
  return (h >>> 0) / 4294967296 < keep;
}

export class TransformerLM {
  readonly config: ModelConfig;
  readonly dims: ModelDims;
  readonly params: ParamTensor[];
  kernels: Kernels;
  private readonly alloc: (n: number) => F;
  private readonly byName = new Map<string, ParamTensor>();
  private readonly embed: ParamTensor;
  private readonly lmHead: ParamTensor;
  private readonly normF: ParamTensor;
  private readonly normFb: ParamTensor | null;
  private readonly valueW: ParamTensor | null;
  private readonly valueB: ParamTensor | null;
  private readonly layers: Layer[] = [];
  private rope: { cos: F; sin: F; len: number };
  private arena: Arena;
  private readonly headChunkRows: number;
  /** Activation recomputation on (ModelOptions.recompute). */
  readonly recompute: boolean;
  private last: ScoreState | null = null;
  private readonly actCode: number;
  /** LoRA settings once addLora() ran. */
  lora: { r: number; alpha: number; scale: number; dropout: number; targets: LoraTarget[] } | null = null;
  /** Adapters on (false: the frozen base alone, e.g. the KL reference). */
  loraEnabled = true;
  /** Adapter dropout on (training forward/backward); sampling and rollout scoring keep it off. */
  loraTrain = false;
  /** Fixed dropout seed for every training forward (gradient checks); null: a new mask per forward. */
  loraDropSeed: number | null = null;
  private dropSeed = 0;
  /** Training forwards with dropout so far: the next mask's seed. Part of the training state (the trainer saves it for an exact resume). */
  loraDropCount = 0;
  /** Mixed into every dropout mask so runs with different --seed draw different masks (the trainer sets it from the run's seed). */
  loraMaskSeed = 0;
  private decoding = false;

  private constructor(config: ModelConfig, tensors: Map<string, NamedTensor> | null, rng: Rng | null, opts: ModelOptions) {
    this.config = config;
    const dm = resolveConfig(config);
    this.dims = dm;
    const f64 = opts.dtype === "float64";
    this.alloc = f64 ? (n) => new Float64Array(n) as unknown as F : (n) => new Float32Array(n);
    this.kernels = f64 ? tsKernels : selectKernels(opts.engine);
    if (opts.shareArenaWith) {
      if (f64) throw new Error("shareArenaWith: float32 models only");
      this.arena = opts.shareArenaWith.arena;
    } else this.arena = new Arena(this.alloc);
    this.headChunkRows = opts.headChunkRows ?? 0;
    this.recompute = !!opts.recompute;
    if (!(Number.isInteger(this.headChunkRows) && this.headChunkRows >= 0)) throw new RangeError(`headChunkRows: expected an integer ≥ 0, got ${opts.headChunkRows}`);
    this.actCode = ops.ACT_CODE[dm.act];
    const { V, d, ff, H, Hkv, D } = dm;
    this.params = [];
    const ln = dm.norm === "layernorm";
    const add = (name: string, shape: number[], init: "normal" | "ones" | "zeros"): ParamTensor => {
      const size = shape.reduce((a, b) => a * b, 1);
      const given = tensors?.get(name);
      // shareTensors: use the caller's f32 arrays as they are (a frozen base shared by policy, critic, reference).
      const share = opts.shareTensors && !f64 && given?.data instanceof Float32Array && given.data.length === size && given.shape.every((s, i) => s === shape[i]);
      const data = share ? given!.data : this.alloc(size);
      if (tensors && !share) {
        const t = tensors.get(name);
        if (!t) throw new UserError(`model tensors: missing tensor '${name}' (expected shape [${shape.join(", ")}])`);
        if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
          throw new UserError(`model tensors: '${name}' has shape [${t.shape.join(", ")}], config expects [${shape.join(", ")}]`);
        }
        if (t.data.length !== size) throw new UserError(`model tensors: '${name}' has ${t.data.length} values, shape needs ${size}`);
        data.set(t.data);
      } else if (init === "ones") data.fill(1);
      else if (init === "normal" && rng) for (let i = 0; i < size; i++) data[i] = rng.normal() * 0.02;
      // A frozen base needs no matrix gradients (vectors keep theirs: the norm/bias kernels accumulate into them).
      const frozen = !!opts.frozenBase && !name.startsWith("value_head.");
      const p: ParamTensor = { name, shape, data, grad: this.alloc(frozen && shape.length === 2 ? 0 : size) };
      if (frozen) p.frozen = true;
      this.params.push(p);
      this.byName.set(name, p);
      return p;
    };
    this.embed = add("model.embed_tokens.weight", [V, d], "normal");
    for (let l = 0; l < dm.L; l++) {
      const pre = `model.layers.${l}.`;
      const ln1 = add(pre + "input_layernorm.weight", [d], "ones");
      const ln1b = ln ? add(pre + "input_layernorm.bias", [d], "zeros") : null;
      const wq = add(pre + "self_attn.q_proj.weight", [H * D, d], "normal");
      const wk = add(pre + "self_attn.k_proj.weight", [Hkv * D, d], "normal");
      const wv = add(pre + "self_attn.v_proj.weight", [Hkv * D, d], "normal");
      const bq = dm.qkvBias ? add(pre + "self_attn.q_proj.bias", [H * D], "zeros") : null;
      const bk = dm.qkvBias ? add(pre + "self_attn.k_proj.bias", [Hkv * D], "zeros") : null;
      const bv = dm.qkvBias ? add(pre + "self_attn.v_proj.bias", [Hkv * D], "zeros") : null;
      const wo = add(pre + "self_attn.o_proj.weight", [d, H * D], "normal");
      const bo = dm.oBias ? add(pre + "self_attn.o_proj.bias", [d], "zeros") : null;
      const qNorm = dm.qkNorm ? add(pre + "self_attn.q_norm.weight", [D], "ones") : null;
      const kNorm = dm.qkNorm ? add(pre + "self_attn.k_norm.weight", [D], "ones") : null;
      const ln2 = add(pre + "post_attention_layernorm.weight", [d], "ones");
      const ln2b = ln ? add(pre + "post_attention_layernorm.bias", [d], "zeros") : null;
      const wg = dm.gated ? add(pre + "mlp.gate_proj.weight", [ff, d], "normal") : null;
      const wu = add(pre + "mlp.up_proj.weight", [ff, d], "normal");
      const wd = add(pre + "mlp.down_proj.weight", [d, ff], "normal");
      this.layers.push({ index: l, lora: {}, ln1, ln1b, wq, wk, wv, wo, bq, bk, bv, bo, qNorm, kNorm, ln2, ln2b, wg, wu, wd });
    }
    this.normF = add("model.norm.weight", [d], "ones");
    this.normFb = ln ? add("model.norm.bias", [d], "zeros") : null;
    this.lmHead = dm.tied ? this.embed : add("lm_head.weight", [V, d], "normal");
    this.valueW = dm.valueHead ? add("value_head.weight", [1, d], "normal") : null;
    this.valueB = dm.valueHead ? add("value_head.bias", [1], "zeros") : null;
    if (tensors) {
      const known = new Set(this.byName.keys());
      const extra = [...tensors.keys()].filter((k) => !known.has(k) && !(dm.tied && k === "lm_head.weight"));
      if (extra.length) throw new UserError(`model tensors: unexpected tensor(s) for this config: ${extra.slice(0, 5).join(", ")}`);
    }
    this.rope = { ...ops.ropeTables(dm.maxT, D, dm.invFreq, this.alloc), len: dm.maxT };
  }

  /** A freshly initialized model (weights ~ N(0, 0.02), norms 1, biases 0). */
  static create(config: ModelConfig, rng: Rng, opts: ModelOptions = {}): TransformerLM {
    return new TransformerLM(config, null, rng, opts);
  }

  /** A model from named tensors (HF Llama names, see ENGINE.md); missing tensor / shape mismatch → UserError. */
  static fromParams(
    config: ModelConfig,
    tensors: Map<string, NamedTensor> | Record<string, NamedTensor>,
    opts: ModelOptions = {},
  ): TransformerLM {
    const m = tensors instanceof Map ? tensors : new Map(Object.entries(tensors));
    return new TransformerLM(config, m, null, opts);
  }

  /** Parameters by HF name (data shared with the model, not copied); tied models have no lm_head.weight. */
  namedTensors(): Map<string, NamedTensor> {
    const m = new Map<string, NamedTensor>();
    for (const p of this.params) if (!p.name.includes(".lora_")) m.set(p.name, { shape: p.shape.slice(), data: p.data });
    return m;
  }

  /** Parameters the optimizer updates: all of them, or with LoRA the adapters (+ value head). */
  trainableParams(): ParamTensor[] {
    return this.params.filter((p) => !p.frozen);
  }

  /**
   * Adds LoRA adapters (Hu et al. 2021, as PEFT implements them) to the target projections of every layer:
   * y = x·Wᵀ + (α/r)·(dropout(x)·Aᵀ)·Bᵀ with A [r, in], B [out, r]. The base weights are frozen: their
   * gradients are never computed and their grad buffers are released, so only the adapters (and a value
   * head) train. Adapter tensors are named like PEFT's without its prefix: `<projection>.lora_A.weight`.
   */
  addLora(o: LoraOptions): void {
    if (this.lora) throw new Error("addLora: the model already has adapters");
    const { d, ff, H, Hkv, D } = this.dims;
    if (!(Number.isInteger(o.r) && o.r > 0)) throw new UserError(`--lora-r: expected a positive integer, got ${o.r}`);
    if (!(o.alpha > 0)) throw new UserError(`--lora-alpha: expected a positive number, got ${o.alpha}`);
    if (!(o.dropout >= 0 && o.dropout < 1)) throw new UserError(`--lora-dropout: expected a number in [0, 1), got ${o.dropout}`);
    for (const t of o.targets)
      if (!(LORA_TARGETS as readonly string[]).includes(t)) throw new UserError(`--lora-targets: unknown projection "${t}" (known: ${LORA_TARGETS.join(", ")})`);
    for (const p of this.params) {
      if (p.name.startsWith("value_head.")) continue;
      p.frozen = true;
      if (p.shape.length === 2) p.grad = this.alloc(0);
    }
    const shapes: Record<LoraTarget, [number, number]> = {
      q_proj: [H * D, d], k_proj: [Hkv * D, d], v_proj: [Hkv * D, d], o_proj: [d, H * D],
      gate_proj: [ff, d], up_proj: [ff, d], down_proj: [d, ff],
    };
    const targets = [...new Set(o.targets)].filter((t) => t !== "gate_proj" || this.dims.gated);
    for (const ly of this.layers) {
      for (const t of targets) {
        const [out, inp] = shapes[t];
        const base = `model.layers.${ly.index}.${t.endsWith("_proj") && ["gate_proj", "up_proj", "down_proj"].includes(t) ? "mlp" : "self_attn"}.${t}`;
        const A: ParamTensor = { name: `${base}.lora_A.weight`, shape: [o.r, inp], data: this.alloc(o.r * inp), grad: this.alloc(o.r * inp) };
        const B: ParamTensor = { name: `${base}.lora_B.weight`, shape: [out, o.r], data: this.alloc(out * o.r), grad: this.alloc(out * o.r) };
        // kaiming_uniform_(a=√5) on [r, in]: U(−1/√in, 1/√in).
        const bound = 1 / Math.sqrt(inp);
        for (let i = 0; i < A.data.length; i++) A.data[i] = (2 * o.rng.random() - 1) * bound;
        for (const p of [A, B]) {
          this.params.push(p);
          this.byName.set(p.name, p);
        }
        ly.lora[t] = { A, B };
      }
    }
    this.lora = { r: o.r, alpha: o.alpha, scale: o.alpha / o.r, dropout: o.dropout, targets };
  }

  /** Adapter tensors by name (data shared with the model). */
  loraTensors(): Map<string, NamedTensor> {
    const m = new Map<string, NamedTensor>();
    for (const p of this.params) if (p.name.includes(".lora_")) m.set(p.name, { shape: p.shape.slice(), data: p.data });
    return m;
  }

  /** Base weights with the adapters folded in (W + (α/r)·B·A), as new arrays; the model is unchanged. */
  mergedTensors(): Map<string, NamedTensor> {
    const m = new Map<string, NamedTensor>();
    for (const [name, t] of this.namedTensors()) m.set(name, { shape: t.shape, data: Float32Array.from(t.data) });
    if (!this.lora) return m;
    const s = this.lora.scale;
    for (const ly of this.layers) {
      for (const [t, ad] of Object.entries(ly.lora) as [LoraTarget, Adapter][]) {
        const name = ad.A.name.replace(".lora_A.weight", ".weight");
        const w = m.get(name)!.data;
        const [r, inp] = ad.A.shape;
        const out = ad.B.shape[0];
        for (let o = 0; o < out; o++)
          for (let k = 0; k < r; k++) {
            const b = s * ad.B.data[o * r + k];
            if (b === 0) continue;
            const ao = k * inp;
            const wo = o * inp;
            for (let i = 0; i < inp; i++) w[wo + i] += b * ad.A.data[ao + i];
          }
        void t;
      }
    }
    return m;
  }

  param(name: string): ParamTensor | undefined {
    return this.byName.get(name);
  }

  numParams(): number {
    return this.params.reduce((s, p) => s + p.data.length, 0);
  }

  zeroGrad(): void {
    for (const p of this.params) p.grad.fill(0);
  }

  /** Bytes held by reusable activation buffers (for memory diagnostics). */
  arenaBytes(): number {
    return this.arena.bytes();
  }

  private ensureRope(len: number): void {
    if (len <= this.rope.len) return;
    const n = Math.max(len, 2 * this.rope.len);
    this.rope = { ...ops.ropeTables(n, this.dims.D, this.dims.invFreq, this.alloc), len: n };
  }

  private normFwd(out: F, x: F, w: ParamTensor, b: ParamTensor | null, mean: F, rstd: F, N: number): void {
    const { d, eps } = this.dims;
    if (b) ops.layernormForward(out, mean, rstd, x, w.data, b.data, N, d, eps);
    else this.kernels.rmsnormForward(out, rstd, x, w.data, N, d, eps);
  }

  private normBwd(dx: F, dout: F, x: F, w: ParamTensor, b: ParamTensor | null, mean: F, rstd: F, N: number): void {
    const d = this.dims.d;
    if (b) ops.layernormBackward(dx, w.grad, b.grad, dout, x, w.data, mean, rstd, N, d);
    else this.kernels.rmsnormBackward(dx, w.grad, dout, x, w.data, rstd, N, d);
  }

  /** Head rows per chunk: headChunkRows, else as many as fit HEAD_CHUNK_FLOATS logits (≥ 1). */
  private headRowsPerChunk(Na: number): number {
    const C = this.headChunkRows || Math.max(1, Math.floor(HEAD_CHUNK_FLOATS / this.dims.V));
    return Math.max(1, Math.min(C, Na));
  }

  /**
   * Head rows [c0, c0+c): logits = h_f·W_headᵀ / temperature, turned into log-probs in place; log p(target)
   * into lp[c0 + i] and the entropy into ent[c0 + i] (lpOffset 0: lp/ent are chunk-sized scratch).
   */
  private headLogSoftmax(logits: F, hfa: F, tgt: Int32Array, lp: F, ent: F | null, c0: number, c: number, invTemp: number, lpOffset = c0): void {
    const { d, V } = this.dims;
    this.kernels.matmulXWt(logits, hfa.subarray(c0 * d, (c0 + c) * d), this.lmHead.data, c, d, V, false);
    if (invTemp !== 1) for (let i = 0; i < c * V; i++) logits[i] *= invTemp;
    this.kernels.logSoftmaxGather(logits, tgt.subarray(c0, c0 + c), lp.subarray(lpOffset, lpOffset + c), ent ? ent.subarray(lpOffset, lpOffset + c) : null, c, V);
  }

  // ---------------------------------------------------------------------------------------------------
  // Linear projections with an optional LoRA adapter:  y (+)= x·Wᵀ + (α/r)·(drop(x)·Aᵀ)·Bᵀ

  /** drop(x) for the adapter of (layer, target): x itself when dropout is off, else a masked, rescaled copy. */
  private loraInput(x: F, n: number, seed: number, salt: number): F {
    const p = this.lora?.dropout ?? 0;
    if (!seed || p === 0) return x;
    const xd = this.arena.get("lora.xd", n);
    const keep = 1 - p;
    for (let i = 0; i < n; i++) xd[i] = keepBit(seed, salt, i, keep, this.loraMaskSeed) ? x[i] / keep : 0;
    return xd;
  }

  private linear(y: F, x: F, w: ParamTensor, ly: Layer, t: LoraTarget, R: number, I: number, O: number, acc: boolean): void {
    this.kernels.matmulXWt(y, x, w.data, R, I, O, acc);
    const ad = this.loraEnabled && this.lora ? ly.lora[t] : undefined;
    if (!ad || !this.lora) return;
    const { r, scale } = this.lora;
    const A = this.arena;
    const xa = A.get(this.decoding ? "g.lora.xa" : `lora.xa.${ly.index}.${t}`, R * r);
    const seed = this.decoding ? 0 : this.dropSeed;
    this.kernels.matmulXWt(xa, this.loraInput(x, R * I, seed, ly.index * 8 + LORA_TARGETS.indexOf(t)), ad.A.data, R, I, r, false);
    const xs = A.get("lora.xs", R * r);
    for (let i = 0; i < R * r; i++) xs[i] = xa[i] * scale;
    this.kernels.matmulXWt(y, xs, ad.B.data, R, r, O, true);
  }

  /** Backward of linear(): dx (+)= dy·W (+ the adapter path); W's gradient unless frozen; A, B gradients. */
  private linearBack(dx: F, dy: F, x: F, w: ParamTensor, ly: Layer, t: LoraTarget, R: number, I: number, O: number, acc: boolean): void {
    const K = this.kernels;
    K.matmulDyW(dx, dy, w.data, R, O, I, acc);
    if (!w.frozen) K.matmulDyTX(w.grad, dy, x, R, O, I);
    const ad = this.loraEnabled && this.lora ? ly.lora[t] : undefined;
    if (!ad || !this.lora) return;
    const { r, scale } = this.lora;
    const A = this.arena;
    const xa = A.get(`lora.xa.${ly.index}.${t}`, R * r);
    const xs = A.get("lora.xs", R * r);
    for (let i = 0; i < R * r; i++) xs[i] = xa[i] * scale;
    K.matmulDyTX(ad.B.grad, dy, xs, R, O, r); // dB += dyᵀ·(s·xa)
    const dxa = A.get("lora.dxa", R * r);
    K.matmulDyW(dxa, dy, ad.B.data, R, O, r, false);
    for (let i = 0; i < R * r; i++) dxa[i] *= scale; // dxa = s·dy·B
    const seed = this.last?.dropSeed ?? 0;
    const salt = ly.index * 8 + LORA_TARGETS.indexOf(t);
    K.matmulDyTX(ad.A.grad, dxa, this.loraInput(x, R * I, seed, salt), R, r, I); // dA += dxaᵀ·drop(x)
    if (!seed || this.lora.dropout === 0) {
      K.matmulDyW(dx, dxa, ad.A.data, R, r, I, true);
      return;
    }
    const keep = 1 - this.lora.dropout;
    const tmp = A.get("lora.dxd", R * I);
    K.matmulDyW(tmp, dxa, ad.A.data, R, r, I, false);
    for (let i = 0; i < R * I; i++) if (keepBit(seed, salt, i, keep, this.loraMaskSeed)) dx[i] += tmp[i] / keep;
  }

  // ---------------------------------------------------------------------------------------------------
  // Transformer block pieces, shared by score() (training forward), inferStep() (KV-cached decode) and
  // backward(). One block over R rows, x the residual stream:
  //   h = norm₁(x);  q = h·W_qᵀ + b_q,  k = h·W_kᵀ + b_k,  v = h·W_vᵀ + b_v     (biases: qwen2 / attention_bias)
  //   q, k ← RMSNorm over each head (qwen3 q_norm / k_norm);  q, k ← RoPE(q, k) at each row's position
  //   x ← x + attention(q, k, v)·W_oᵀ + b_o
  //   x ← x + W_down·(act(norm₂(x)·W_gateᵀ) ⊙ norm₂(x)·W_upᵀ)

  /**
   * q, k, v of R rows from the normed input h. With q/k norm, qr/kr receive the pre-norm projections and
   * qRstd/kRstd the per-head 1/rms that backward needs; q/k are then the normed, rotated values.
   */
  private qkvForward(
    ly: Layer, h: F, q: F, k: F, v: F, qr: F | null, kr: F | null, qRstd: F | null, kRstd: F | null, pos: Int32Array, R: number,
  ): void {
    const { d, H, Hkv, D, eps } = this.dims;
    const K = this.kernels;
    const qOut = ly.qNorm && qr ? qr : q;
    const kOut = ly.kNorm && kr ? kr : k;
    this.linear(qOut, h, ly.wq, ly, "q_proj", R, d, H * D, false);
    this.linear(kOut, h, ly.wk, ly, "k_proj", R, d, Hkv * D, false);
    this.linear(v, h, ly.wv, ly, "v_proj", R, d, Hkv * D, false);
    if (ly.bq && ly.bk && ly.bv) {
      ops.addBias(qOut, ly.bq.data, R, H * D);
      ops.addBias(kOut, ly.bk.data, R, Hkv * D);
      ops.addBias(v, ly.bv.data, R, Hkv * D);
    }
    if (ly.qNorm && ly.kNorm && qr && kr && qRstd && kRstd) {
      // Each head's D-vector is one RMSNorm row: q̂ = q / rms(q) · w_qnorm.
      K.rmsnormForward(q, qRstd, qr, ly.qNorm.data, R * H, D, eps);
      K.rmsnormForward(k, kRstd, kr, ly.kNorm.data, R * Hkv, D, eps);
    }
    K.ropeApply(q, pos, R, H, D, this.rope.cos, this.rope.sin, 1);
    K.ropeApply(k, pos, R, Hkv, D, this.rope.cos, this.rope.sin, 1);
  }

  /**
   * Backward of qkvForward: from dq, dk (w.r.t. the rotated q, k; overwritten as scratch) and dv, accumulate
   * the projection/bias/norm gradients and write dh = dq·W_q + dk·W_k + dv·W_v.
   */
  private qkvBackward(
    ly: Layer, dh: F, dq: F, dk: F, dv: F, h: F, qr: F | null, kr: F | null, qRstd: F | null, kRstd: F | null,
    pos: Int32Array, R: number,
  ): void {
    const { d, H, Hkv, D } = this.dims;
    const K = this.kernels;
    const A = this.arena;
    K.ropeApply(dq, pos, R, H, D, this.rope.cos, this.rope.sin, -1);
    K.ropeApply(dk, pos, R, Hkv, D, this.rope.cos, this.rope.sin, -1);
    let dqr = dq;
    let dkr = dk;
    if (ly.qNorm && ly.kNorm && qr && kr && qRstd && kRstd) {
      dqr = A.get("dqr", R * H * D);
      dkr = A.get("dkr", R * Hkv * D);
      dqr.fill(0);
      dkr.fill(0);
      K.rmsnormBackward(dqr, ly.qNorm.grad, dq, qr, ly.qNorm.data, qRstd, R * H, D);
      K.rmsnormBackward(dkr, ly.kNorm.grad, dk, kr, ly.kNorm.data, kRstd, R * Hkv, D);
    }
    if (ly.bq && ly.bk && ly.bv) {
      ops.biasGrad(ly.bq.grad, dqr, R, H * D);
      ops.biasGrad(ly.bk.grad, dkr, R, Hkv * D);
      ops.biasGrad(ly.bv.grad, dv, R, Hkv * D);
    }
    this.linearBack(dh, dqr, h, ly.wq, ly, "q_proj", R, d, H * D, false);
    this.linearBack(dh, dkr, h, ly.wk, ly, "k_proj", R, d, Hkv * D, true);
    this.linearBack(dh, dv, h, ly.wv, ly, "v_proj", R, d, Hkv * D, true);
  }

  /** Attention output into the residual: x += att·W_oᵀ + b_o. */
  private attnOutForward(ly: Layer, x: F, att: F, R: number): void {
    const { d, H, D } = this.dims;
    this.linear(x, att, ly.wo, ly, "o_proj", R, H * D, d, true);
    if (ly.bo) ops.addBias(x, ly.bo.data, R, d);
  }

  /** Backward of attnOutForward: datt = dx·W_o; W_o and b_o gradients accumulate. */
  private attnOutBackward(ly: Layer, datt: F, dx: F, att: F, R: number): void {
    const { d, H, D } = this.dims;
    this.linearBack(datt, dx, att, ly.wo, ly, "o_proj", R, H * D, d, false);
    if (ly.bo) ops.biasGrad(ly.bo.grad, dx, R, d);
  }

  /** MLP into the residual: x += W_down·(act(h·W_gateᵀ) ⊙ h·W_upᵀ), or x += W_down·act(h·W_upᵀ) (plain). */
  private mlpForward(ly: Layer, x: F, h: F, g: F, u: F, m: F, R: number): void {
    const { d, ff } = this.dims;
    const K = this.kernels;
    if (ly.wg) {
      this.linear(g, h, ly.wg, ly, "gate_proj", R, d, ff, false);
      this.linear(u, h, ly.wu, ly, "up_proj", R, d, ff, false);
      K.gluForward(m, g, u, R * ff, this.actCode);
    } else {
      this.linear(g, h, ly.wu, ly, "up_proj", R, d, ff, false);
      K.gluForward(m, g, null, R * ff, this.actCode);
    }
    this.linear(x, m, ly.wd, ly, "down_proj", R, ff, d, true);
  }

  /** Backward of mlpForward from dx (the residual gradient): writes dh, accumulates the MLP weight gradients. */
  private mlpBackward(ly: Layer, dh: F, dx: F, h: F, g: F, u: F | null, m: F, R: number): void {
    const { d, ff } = this.dims;
    const K = this.kernels;
    const A = this.arena;
    const dm = A.get("dm", R * ff);
    this.linearBack(dm, dx, m, ly.wd, ly, "down_proj", R, ff, d, false);
    const dg = A.get("dg", R * ff);
    if (ly.wg && u) {
      const du = A.get("du", R * ff);
      K.gluBackward(dg, du, dm, g, u, R * ff, this.actCode);
      this.linearBack(dh, dg, h, ly.wg, ly, "gate_proj", R, d, ff, false);
      this.linearBack(dh, du, h, ly.wu, ly, "up_proj", R, d, ff, true);
    } else {
      K.gluBackward(dg, null, dm, g, null, R * ff, this.actCode);
      this.linearBack(dh, dg, h, ly.wu, ly, "up_proj", R, d, ff, false);
    }
  }

  /** Arena name of layer l's activation `base`: one per layer, or one shared set under recompute. */
  private act(base: string, l: number): string {
    return this.recompute ? `${base}.rc` : `${base}.${l}`;
  }

  /** One block of the training forward over N = B·T rows: x (layer input) → xn, activations kept under act(). */
  private layerForward(l: number, x: F, xn: F, pos: Int32Array, B: number, T: number): void {
    const { d, ff, H, Hkv, D, qkNorm: qk } = this.dims;
    const A = this.arena;
    const K = this.kernels;
    const N = B * T;
    const ly = this.layers[l];
    const a = (base: string, n: number) => A.get(this.act(base, l), n);
    // h₁ = norm₁(x);  q, k, v = proj(h₁) (+ bias, q/k norm, RoPE)
    const h1 = a("h1", N * d);
    this.normFwd(h1, x, ly.ln1, ly.ln1b, a("mean1", N), a("rstd1", N), N);
    const q = a("q", N * H * D);
    const k = a("k", N * Hkv * D);
    const v = a("v", N * Hkv * D);
    this.qkvForward(
      ly, h1, q, k, v,
      qk ? a("qr", N * H * D) : null, qk ? a("kr", N * Hkv * D) : null,
      qk ? a("qrstd", N * H) : null, qk ? a("krstd", N * Hkv) : null, pos, N,
    );
    // att = softmax(q·kᵀ/√D + causal mask)·v per head (keeps only the row log-sum-exp)
    const att = a("att", N * H * D);
    K.attentionForward(att, a("lse", B * H * T), q, k, v, B, T, H, Hkv, D, A.get("attScratch", T));
    // x₂ = x + att·W_oᵀ + b_o
    const x2 = a("x2", N * d);
    x2.set(x);
    this.attnOutForward(ly, x2, att, N);
    // h₂ = norm₂(x₂);  x' = x₂ + W_down·(act(h₂·W_gateᵀ) ⊙ h₂·W_upᵀ)
    const h2 = a("h2", N * d);
    this.normFwd(h2, x2, ly.ln2, ly.ln2b, a("mean2", N), a("rstd2", N), N);
    xn.set(x2);
    const u = ly.wg ? a("u", N * ff) : A.get("uUnused", 0);
    this.mlpForward(ly, xn, h2, a("g", N * ff), u, a("m", N * ff), N);
  }

  /**
   * Teacher-forced forward over tokens [B, T] (row-major, right padded). targets[i] is the token whose
   * log-prob is returned at position i (usually tokens[i+1]); targets[i] < 0 marks ignored positions
   * (logprob 0, no gradient). Activations are kept for one following backward().
   * The returned arrays are views into reusable buffers: copy them if you need them after the next score().
   */
  score(tokens: Int32Array, targets: Int32Array, B: number, T: number, opts: ScoreOptions = {}): ScoreOutput {
    const dm = this.dims;
    const { V, d, ff, H, Hkv, D, L } = dm;
    const N = B * T;
    if (!(Number.isInteger(B) && Number.isInteger(T) && B > 0 && T > 0)) throw new RangeError(`score: bad B=${B}, T=${T}`);
    if (tokens.length !== N || targets.length !== N) {
      throw new RangeError(`score: tokens/targets must have B*T=${N} entries, got ${tokens.length}/${targets.length}`);
    }
    for (let i = 0; i < N; i++) {
      if (!(tokens[i] >= 0 && tokens[i] < V)) throw new RangeError(`score: token ${tokens[i]} at index ${i} outside vocab [0, ${V})`);
      if (targets[i] >= V) throw new RangeError(`score: target ${targets[i]} at index ${i} outside vocab [0, ${V})`);
    }
    const temperature = opts.temperature ?? 1;
    if (!(temperature > 0)) throw new RangeError(`score: temperature must be > 0, got ${temperature}`);
    this.ensureRope(T);
    const A = this.arena;
    const K = this.kernels;
    this.decoding = false;
    // A fresh dropout mask per training forward (seeded counter, replayed by backward).
    this.dropSeed = this.lora && this.loraEnabled && this.loraTrain && this.lora.dropout > 0 ? (this.loraDropSeed ?? ++this.loraDropCount) : 0;
    const tok = A.int("tokens", N);
    tok.set(tokens);
    const tgt = A.int("targets", N);
    tgt.set(targets);
    const pos = A.int("pos", N);
    for (let i = 0; i < N; i++) pos[i] = i % T;

    // x = E[tokens]; every layer's inputs and intermediates are kept (by layer name) for backward(), or with
    // recompute only each layer's input (res{l}) and backward() re-runs the layer before differentiating it.
    let x = A.get("res0", N * d);
    ops.embeddingForward(x, this.embed.data, tok, N, d);
    for (let l = 0; l < L; l++) {
      const xn = A.get(`res${l + 1}`, N * d);
      this.layerForward(l, x, xn, pos, B, T);
      x = xn;
    }
    // h_f = norm_f(x);  logits = h_f·W_headᵀ;  log p(target) = log_softmax(logits / temperature)[target]
    const hf = A.get("hf", N * d);
    const meanf = A.get("meanf", N);
    const rstdf = A.get("rstdf", N);
    this.normFwd(hf, x, this.normF, this.normFb, meanf, rstdf, N);
    // lm_head + softmax only on rows that have a target: prompt and padding rows (target −1) cost nothing.
    const rows = A.int("headRows", N);
    let Na = 0;
    if (opts.needLogprobs ?? true) for (let n = 0; n < N; n++) if (tgt[n] >= 0) rows[Na++] = n;
    const full = Na === N;
    const hfa = full ? hf : A.get("hfa", Na * d);
    const tgtA = full ? tgt : A.int("tgtA", Na);
    if (!full) {
      for (let i = 0; i < Na; i++) {
        const n = rows[i];
        hfa.set(hf.subarray(n * d, n * d + d), i * d);
        tgtA[i] = tgt[n];
      }
    }
    const invTemp = 1 / temperature;
    const lp = A.get("lp", N);
    const ent = opts.needEntropy ? A.get("ent", N) : null;
    const lpA = full ? lp : A.get("lpA", Na);
    const entA = ent ? (full ? ent : A.get("entA", Na)) : null;
    // Chunks of C head rows: logits [C, V] → log-softmax in place → log p(target), entropy; then the next chunk.
    const C = this.headRowsPerChunk(Na);
    for (let c0 = 0; c0 < Na; c0 += C) {
      const c = Math.min(C, Na - c0);
      const logits = A.get("logits", C * V).subarray(0, c * V);
      this.headLogSoftmax(logits, hfa, tgtA, lpA, entA, c0, c, invTemp);
    }
    if (!full) {
      lp.fill(0);
      if (ent) ent.fill(0);
      for (let i = 0; i < Na; i++) {
        lp[rows[i]] = lpA[i];
        if (ent && entA) ent[rows[i]] = entA[i];
      }
    }
    const out: ScoreOutput = { logprobs: lp };
    if (ent) out.entropy = ent;
    if (opts.needValues) {
      if (!this.valueW || !this.valueB) throw new UserError("score: needValues but the model has no value head (config mpo_value_head: true)");
      const vals = A.get("values", N);
      const w = this.valueW.data;
      const b0 = this.valueB.data[0];
      for (let n = 0; n < N; n++) {
        let s = b0;
        const o = n * d;
        for (let i = 0; i < d; i++) s += hf[o + i] * w[i];
        vals[n] = s;
      }
      out.values = vals;
    }
    this.last = { B, T, N, Na, rows, tokens: tok, targets: tgtA, entropy: entA, invTemp, dropSeed: this.dropSeed };
    A.owner = this;
    return out;
  }

  /**
   * Accumulate parameter gradients of L given ∂L/∂logprobs [B*T] (and optionally ∂L/∂values, ∂L/∂entropy)
   * for the last score() call. Call zeroGrad() yourself between optimizer steps.
   */
  backward(dLogprobs: Float32Array | null, dValues?: Float32Array | null, dEntropy?: Float32Array | null): void {
    const st = this.last;
    if (!st) throw new Error("backward: call score() first");
    const dm = this.dims;
    const { V, d, ff, H, Hkv, D, L } = dm;
    const { B, T, N } = st;
    for (const [nm, a] of [["dLogprobs", dLogprobs], ["dValues", dValues], ["dEntropy", dEntropy]] as const) {
      if (a && a.length !== N) throw new RangeError(`backward: ${nm} must have B*T=${N} entries, got ${a.length}`);
    }
    if (dValues && !this.valueW) throw new UserError("backward: dValues given but the model has no value head");
    const A = this.arena;
    if (A.owner !== this) throw new Error("backward: another model sharing this model's arena has scored since its score(); call score() again");
    const K = this.kernels;
    const { Na, rows } = st;
    const full = Na === N;
    let dlpA = dLogprobs;
    let dentA = dEntropy ?? null;
    if (!full) {
      if (dLogprobs) {
        dlpA = A.get("dlpA", Na);
        for (let i = 0; i < Na; i++) dlpA[i] = dLogprobs[rows[i]];
      }
      if (dEntropy) {
        dentA = A.get("dentA", Na);
        for (let i = 0; i < Na; i++) dentA[i] = dEntropy[rows[i]];
      }
    }
    const hf = A.get("hf", N * d);
    const dhf = A.get("dh", N * d);
    const hfa = full ? hf : A.get("hfa", Na * d);
    const dhfa = full ? dhf : A.get("dhfa", Na * d);
    // Per chunk of head rows (score()'s chunks): the log-probs (kept when there was one chunk, else recomputed),
    // dlogits from ∂L/∂logp and ∂L/∂H, then dh_f = dlogits·W_head and W_head's gradient unless frozen.
    const C = this.headRowsPerChunk(Na);
    const recompute = Na > C;
    const anyUpstream = !!(dlpA || dentA);
    if (!anyUpstream) dhfa.fill(0);
    for (let c0 = 0; anyUpstream && c0 < Na; c0 += C) {
      const c = Math.min(C, Na - c0);
      const logp = A.get("logits", C * V).subarray(0, c * V);
      let ent = st.entropy ? st.entropy.subarray(c0, c0 + c) : null;
      if (recompute) {
        if (dentA && !ent) ent = A.get("entChunk", C).subarray(0, c);
        this.headLogSoftmax(logp, hfa, st.targets, A.get("lpChunk", C).subarray(0, c), ent, c0, c, st.invTemp, 0);
      } else if (dentA && !ent) {
        // Entropy was not requested in score(); recompute it from the kept log-probs.
        ent = A.get("entA", Na);
        for (let n = 0; n < Na; n++) {
          let h = 0;
          for (let j = 0; j < V; j++) h -= Math.exp(logp[n * V + j]) * logp[n * V + j];
          ent[n] = h;
        }
      }
      const dlogits = A.get("dlogits", C * V).subarray(0, c * V);
      K.logSoftmaxGatherBackward(
        dlogits, logp, st.targets.subarray(c0, c0 + c), dlpA ? dlpA.subarray(c0, c0 + c) : null,
        dentA ? dentA.subarray(c0, c0 + c) : null, ent, c, V,
      );
      if (st.invTemp !== 1) for (let i = 0; i < c * V; i++) dlogits[i] *= st.invTemp;
      const hc = hfa.subarray(c0 * d, (c0 + c) * d);
      K.matmulDyW(dhfa.subarray(c0 * d, (c0 + c) * d), dlogits, this.lmHead.data, c, V, d, false);
      if (!this.lmHead.frozen) K.matmulDyTX(this.lmHead.grad, dlogits, hc, c, V, d);
    }
    if (!full) {
      dhf.fill(0);
      for (let i = 0; i < Na; i++) dhf.set(dhfa.subarray(i * d, i * d + d), rows[i] * d);
    }
    if (dValues && this.valueW && this.valueB) {
      const w = this.valueW.data;
      const gw = this.valueW.grad;
      let gb = 0;
      for (let n = 0; n < N; n++) {
        const c = dValues[n];
        if (c === 0) continue;
        gb += c;
        const o = n * d;
        for (let i = 0; i < d; i++) {
          dhf[o + i] += c * w[i];
          gw[i] += c * hf[o + i];
        }
      }
      this.valueB.grad[0] += gb;
    }
    const dx = A.get("dres", N * d);
    dx.fill(0);
    this.normBwd(dx, dhf, A.get(`res${L}`, N * d), this.normF, this.normFb, A.get("meanf", N), A.get("rstdf", N), N);
    const qk = dm.qkNorm;
    const pos = A.int("pos", N);
    for (let l = L - 1; l >= 0; l--) {
      const ly = this.layers[l];
      // Recompute: re-run this layer's forward from its kept input (same dropout masks) into the shared buffers.
      if (this.recompute) {
        this.decoding = false;
        this.dropSeed = st.dropSeed;
        this.layerForward(l, A.get(`res${l}`, N * d), A.get("res.rc", N * d), pos, B, T);
      }
      // MLP: res[l+1] = x₂ + W_down·(act(g) ⊙ u) with g, u from h₂ = norm₂(x₂); dx flows on through the residual.
      const dh2 = A.get("dh", N * d);
      const u = ly.wg ? A.get(this.act("u", l), N * ff) : null;
      this.mlpBackward(ly, dh2, dx, A.get(this.act("h2", l), N * d), A.get(this.act("g", l), N * ff), u, A.get(this.act("m", l), N * ff), N);
      this.normBwd(dx, dh2, A.get(this.act("x2", l), N * d), ly.ln2, ly.ln2b, A.get(this.act("mean2", l), N), A.get(this.act("rstd2", l), N), N);
      // Attention: x₂ = res[l] + att·W_oᵀ + b_o, att = softmax(q·kᵀ/√D)·v
      const att = A.get(this.act("att", l), N * H * D);
      const datt = A.get("datt", N * H * D);
      this.attnOutBackward(ly, datt, dx, att, N);
      const q = A.get(this.act("q", l), N * H * D);
      const k = A.get(this.act("k", l), N * Hkv * D);
      const v = A.get(this.act("v", l), N * Hkv * D);
      const dq = A.get("dq", N * H * D);
      const dk = A.get("dk", N * Hkv * D);
      const dv = A.get("dv", N * Hkv * D);
      dq.fill(0);
      dk.fill(0);
      dv.fill(0);
      K.attentionBackward(dq, dk, dv, datt, att, A.get(this.act("lse", l), B * H * T), q, k, v, B, T, H, Hkv, D, A.get("attScratch", T));
      // q, k, v = proj(h₁) (+ bias, q/k norm, RoPE), h₁ = norm₁(res[l])
      const dh1 = A.get("dh", N * d);
      this.qkvBackward(
        ly, dh1, dq, dk, dv, A.get(this.act("h1", l), N * d),
        qk ? A.get(this.act("qr", l), N * H * D) : null, qk ? A.get(this.act("kr", l), N * Hkv * D) : null,
        qk ? A.get(this.act("qrstd", l), N * H) : null, qk ? A.get(this.act("krstd", l), N * Hkv) : null, pos, N,
      );
      this.normBwd(dx, dh1, A.get(`res${l}`, N * d), ly.ln1, ly.ln1b, A.get(this.act("mean1", l), N), A.get(this.act("rstd1", l), N), N);
    }
    if (!this.embed.frozen) ops.embeddingBackward(this.embed.grad, dx, st.tokens, N, d);
  }

  /**
   * Batched sampling with a KV cache. Each prompt needs ≥ 1 token. Prompts are prefilled together (one
   * forward over all prompt tokens), then one batched decode step per new token over the unfinished rows.
   */
  generate(prompts: number[][], opts: GenerateOptions): GenerateOutput {
    const dm = this.dims;
    const { V, d, ff, H, Hkv, D, L } = dm;
    const Bn = prompts.length;
    const maxNew = opts.maxNewTokens;
    if (!(Number.isInteger(maxNew) && maxNew >= 0)) throw new RangeError(`generate: maxNewTokens must be an integer ≥ 0, got ${maxNew}`);
    const temperature = opts.temperature ?? 1;
    const topK = opts.topK ?? 0;
    const topP = opts.topP ?? 1;
    if (!(topP > 0 && topP <= 1)) throw new RangeError(`generate: topP must be in (0, 1], got ${topP}`);
    if (!(Number.isInteger(topK) && topK >= 0)) throw new RangeError(`generate: topK must be an integer ≥ 0, got ${topK}`);
    const eos = this.config.eos_token_id;
    const stop = new Set<number>(opts.stopTokens ?? (eos === undefined ? [] : Array.isArray(eos) ? eos : [eos]));
    const rng = opts.rng ?? new Rng(0);
    const out: GenerateOutput = { tokens: prompts.map(() => []), logprobs: prompts.map(() => []), finished: prompts.map(() => false) };
    if (Bn === 0 || maxNew === 0) return out;
    let totalPrompt = 0;
    let maxPrompt = 0;
    for (const [b, p] of prompts.entries()) {
      if (p.length === 0) throw new RangeError(`generate: prompt ${b} is empty (start it with a BOS token)`);
      for (const t of p) if (!(Number.isInteger(t) && t >= 0 && t < V)) throw new RangeError(`generate: prompt ${b} has token ${t} outside vocab [0, ${V})`);
      totalPrompt += p.length;
      maxPrompt = Math.max(maxPrompt, p.length);
    }
    const Tc = maxPrompt + maxNew;
    this.ensureRope(Tc);
    const A = this.arena;
    const K = this.kernels;
    const kvSize = Bn * Hkv * Tc * D;
    const kc: F[] = [];
    const vc: F[] = [];
    for (let l = 0; l < L; l++) {
      kc.push(A.get(`kc.${l}`, kvSize));
      vc.push(A.get(`vc.${l}`, kvSize));
    }
    const R0 = Math.max(totalPrompt, Bn);
    const tok = A.int("g.tok", R0);
    const pos = A.int("g.pos", R0);
    const slot = A.int("g.slot", R0);
    const lastRow = A.int("g.last", Bn);
    // Prefill rows: all prompt tokens of all prompts.
    let r = 0;
    for (let b = 0; b < Bn; b++) {
      const p = prompts[b];
      for (let t = 0; t < p.length; t++, r++) {
        tok[r] = p[t];
        pos[r] = t;
        slot[r] = b;
      }
      lastRow[b] = r - 1;
    }
    const curLen = prompts.map((p) => p.length);
    const active: number[] = [];
    for (let b = 0; b < Bn; b++) active.push(b);
    let R = totalPrompt;
    let nLogit = Bn;
    const scratch = A.get("g.sampleScratch", 2 * V);
    const uniforms = A.get("g.uniforms", Bn);
    const sampled = A.int("g.sampled", Bn);
    const sampledLp = A.get("g.sampledLp", Bn);
    for (let step = 0; ; step++) {
      const logits = this.inferStep(R, tok, pos, slot, lastRow, nLogit, kc, vc, Tc);
      // One uniform per row from the seeded stream, then sample all rows at once.
      for (let i = 0; i < active.length; i++) uniforms[i] = rng.random();
      K.sampleRows(logits, active.length, V, temperature, topK, topP, uniforms, sampled, sampledLp, scratch);
      const still: number[] = [];
      for (let i = 0; i < active.length; i++) {
        const b = active[i];
        const token = sampled[i];
        const logprob = sampledLp[i];
        out.tokens[b].push(token);
        out.logprobs[b].push(logprob);
        curLen[b]++;
        if (stop.has(token)) out.finished[b] = true;
        else if (out.tokens[b].length < maxNew) still.push(b);
      }
      if (still.length === 0) break;
      // Next decode step: one row per unfinished sequence.
      for (let i = 0; i < still.length; i++) {
        const b = still[i];
        tok[i] = out.tokens[b][out.tokens[b].length - 1];
        pos[i] = curLen[b] - 1;
        slot[i] = b;
        lastRow[i] = i;
      }
      active.length = 0;
      active.push(...still);
      R = still.length;
      nLogit = still.length;
    }
    void d; void ff; void H;
    return out;
  }

  /** Inference forward over R rows (row r: token at position pos[r] of sequence slot[r]) using the KV cache. */
  private inferStep(
    R: number, tok: Int32Array, pos: Int32Array, slot: Int32Array, logitRows: Int32Array, nLogit: number,
    kc: F[], vc: F[], Tc: number,
  ): F {
    const { V, d, ff, H, Hkv, D, L } = this.dims;
    const A = this.arena;
    const K = this.kernels;
    this.decoding = true;
    const x = A.get("g.x", R * d);
    const h = A.get("g.h", R * d);
    const mean = A.get("g.mean", R);
    const rstd = A.get("g.rstd", R);
    const q = A.get("g.q", R * H * D);
    const k = A.get("g.k", R * Hkv * D);
    const v = A.get("g.v", R * Hkv * D);
    const att = A.get("g.att", R * H * D);
    const qk = this.dims.qkNorm;
    const qr = qk ? A.get("g.qr", R * H * D) : null;
    const kr = qk ? A.get("g.kr", R * Hkv * D) : null;
    const qRstd = qk ? A.get("g.qrstd", R * H) : null;
    const kRstd = qk ? A.get("g.krstd", R * Hkv) : null;
    const g = A.get("g.g", R * ff);
    const u = A.get("g.u", R * ff);
    const m = A.get("g.m", R * ff);
    const sc = A.get("g.scores", Tc);
    ops.embeddingForward(x, this.embed.data, tok, R, d);
    for (let l = 0; l < L; l++) {
      const ly = this.layers[l];
      // Same block as score(), one row per (sequence, new position); k and v go into the cache first.
      this.normFwd(h, x, ly.ln1, ly.ln1b, mean, rstd, R);
      this.qkvForward(ly, h, q, k, v, qr, kr, qRstd, kRstd, pos, R);
      const KC = kc[l];
      const VC = vc[l];
      for (let r = 0; r < R; r++) {
        for (let kh = 0; kh < Hkv; kh++) {
          const co = ((slot[r] * Hkv + kh) * Tc + pos[r]) * D;
          KC.set(k.subarray((r * Hkv + kh) * D, (r * Hkv + kh + 1) * D), co);
          VC.set(v.subarray((r * Hkv + kh) * D, (r * Hkv + kh + 1) * D), co);
        }
      }
      K.attentionDecode(att, q, KC, VC, pos, slot, R, H, Hkv, D, Tc, sc);
      this.attnOutForward(ly, x, att, R);
      this.normFwd(h, x, ly.ln2, ly.ln2b, mean, rstd, R);
      this.mlpForward(ly, x, h, g, u, m, R);
    }
    // Final norm + lm_head only on the rows we sample from.
    const xs = A.get("g.xs", nLogit * d);
    for (let i = 0; i < nLogit; i++) xs.set(x.subarray(logitRows[i] * d, logitRows[i] * d + d), i * d);
    const hs = A.get("g.hs", nLogit * d);
    this.normFwd(hs, xs, this.normF, this.normFb, A.get("g.meanf", nLogit), A.get("g.rstdf", nLogit), nLogit);
    const logits = A.get("g.logits", nLogit * V);
    K.matmulXWt(logits, hs, this.lmHead.data, nLogit, d, V, false);
    return logits;
  }
}
