/**
 * ChatModel over a local GGUF file, run in-process by llama.cpp through node-llama-cpp (an optional peer
 * dependency: `npm install node-llama-cpp@3.21.1`). Selected by an endpoint whose baseURL is
 * `gguf:/path/model.gguf` (optionally `?ctx=4096&seqs=4&threads=2&gpu=auto|off`), so every place that takes a
 * judge URL (`--llm`, config files, `createChatModel`) takes a GGUF file too.
 *
 * Same contract as the HTTP client: the model's own chat template (tokenizer.chat_template in the GGUF,
 * rendered with @huggingface/jinja as transformers' apply_chat_template does), constrained outputs (JSON
 * schema → node-llama-cpp's JSON grammar; regex/choice → our GBNF translation), stop strings, max tokens,
 * temperature/top-p/seed, usage per stage in a UsageMeter, typed errors. Concurrency: one context with
 * `seqs` sequences; concurrent calls run on separate sequences and llama.cpp evaluates them in one batch.
 *
 * A JSON-constrained reply cut by max tokens is not valid JSON, so such a call is redone once with a schema
 * whose strings and arrays are bounded to fit the budget (worst case 6 tokens per string character):
 * a runaway (or random-weights) model still returns schema-valid JSON; a normal one never hits the bound.
 *
 * One llama.cpp runtime per (file, options) is shared by every ChatModel of the process (junior and senior
 * judge on one file load it once). Load problems are UserErrors that say what to do: file missing, not
 * GGUF / truncated (our own header check, before llama.cpp sees the file), no chat template, too large for
 * memory, architecture llama.cpp does not know, node-llama-cpp not installed.
 */
import { statSync } from "node:fs";
import { totalmem } from "node:os";
import { resolve } from "node:path";
import { UserError } from "../util/errors.ts";
import { GgufError, ggufGet, readGgufHeader } from "../engine/io/gguf.ts";
import { validate } from "../config/load.ts";
import { llmEndpointSchema, type LlmEndpointConfig, type LlmEndpointInput } from "./config.ts";
import { LlmError } from "./errors.ts";
import { choiceToGbnf, regexToGbnf } from "./gbnf.ts";
import { UsageMeter } from "./usage.ts";
import type { ChatModel, ChatRequest, ChatResponse, OutputConstraint } from "./types.ts";

export const GGUF_SCHEME = "gguf:";

export interface GgufOptions {
  path: string;
  /** Context length per sequence (default min(model's trained context, 4096)). */
  contextSize?: number;
  /** Parallel sequences = concurrent calls evaluated in one batch (default min(maxConcurrency, 4)). */
  sequences?: number;
  /** CPU threads (default: node-llama-cpp's, all math cores). On a loaded machine 1–2 is much faster. */
  threads?: number;
  /** "auto": CUDA/Metal/Vulkan when a build and a device are present, else CPU; "off": CPU only. */
  gpu?: "auto" | "off";
}

export function isGgufUrl(baseURL: unknown): baseURL is string {
  return typeof baseURL === "string" && baseURL.startsWith(GGUF_SCHEME);
}

/** `gguf:PATH[?ctx=N&seqs=N&threads=N&gpu=auto|off]` → options; bad values are UserErrors naming the key. */
export function parseGgufUrl(url: string): GgufOptions {
  if (!isGgufUrl(url)) throw new UserError(`expected gguf:/path/model.gguf, got ${JSON.stringify(url)}`);
  const rest = url.slice(GGUF_SCHEME.length);
  const q = rest.lastIndexOf("?");
  const path = q >= 0 ? rest.slice(0, q) : rest;
  if (!path) throw new UserError(`${url}: no file path after "gguf:"`);
  const o: GgufOptions = { path: resolve(path) };
  if (q >= 0) {
    for (const [k, v] of new URLSearchParams(rest.slice(q + 1))) {
      const int = (min: number) => {
        if (!/^\d+$/.test(v) || Number(v) < min) throw new UserError(`${url}: '${k}' must be an integer ≥ ${min}, got "${v}"`);
        return Number(v);
      };
      if (k === "ctx") o.contextSize = int(16);
      else if (k === "seqs") o.sequences = int(1);
      else if (k === "threads") o.threads = int(1);
      else if (k === "gpu") {
        if (v !== "auto" && v !== "off") throw new UserError(`${url}: 'gpu' must be auto or off, got "${v}"`);
        o.gpu = v;
      } else throw new UserError(`${url}: unknown option '${k}' (known: ctx, seqs, threads, gpu)`);
    }
  }
  return o;
}

type NLC = typeof import("node-llama-cpp");
type Llama = Awaited<ReturnType<NLC["getLlama"]>>;
type LlamaModel = Awaited<ReturnType<Llama["loadModel"]>>;
type LlamaContext = Awaited<ReturnType<LlamaModel["createContext"]>>;
type Sequence = ReturnType<LlamaContext["getSequence"]>;
type Token = import("node-llama-cpp").Token;

/** Loads node-llama-cpp, or says how to install it. */
export async function loadNodeLlamaCpp(): Promise<NLC> {
  try {
    return await import("node-llama-cpp");
  } catch (e) {
    throw new UserError(
      `GGUF models need the optional package node-llama-cpp (llama.cpp prebuilt for CPU, CUDA, Vulkan, Metal): npm install node-llama-cpp@3.21.1 (${(e as Error).message.split("\n")[0]})`,
    );
  }
}

interface Runtime {
  nlc: NLC;
  llama: Llama;
  model: LlamaModel;
  context: LlamaContext;
  free: Sequence[];
  waiters: Array<(s: Sequence) => void>;
  render: (messages: ChatRequest["messages"]) => string;
  contextSize: number;
  arch: string;
  gpu: string | false;
}

const runtimes = new Map<string, Promise<Runtime>>();

async function loadRuntime(o: GgufOptions, sequences: number): Promise<Runtime> {
  // Our own header check first: a wrong or truncated file gets a sentence, not a native failure.
  let header;
  try {
    header = readGgufHeader(o.path);
  } catch (e) {
    if (e instanceof GgufError) throw new UserError(`GGUF judge model: ${e.message}`);
    throw e;
  }
  const arch = ggufGet(header.metadata, "general.architecture");
  if (typeof arch !== "string") throw new UserError(`GGUF judge model ${o.path}: metadata 'general.architecture' is missing`);
  const template = ggufGet(header.metadata, "tokenizer.chat_template");
  if (typeof template !== "string")
    throw new UserError(`GGUF judge model ${o.path}: it has no chat template (metadata 'tokenizer.chat_template'); use an instruct/chat model`);
  const trained = Number(ggufGet(header.metadata, `${arch}.context_length`) ?? 4096);
  const contextSize = o.contextSize ?? Math.min(trained, 4096);
  const nlc = await loadNodeLlamaCpp();
  const llama = await nlc.getLlama({ build: "never", gpu: o.gpu === "off" ? false : "auto", logLevel: nlc.LlamaLogLevel.error });
  const fileBytes = statSync(o.path).size;
  if (!llama.gpu && fileBytes > totalmem() * 0.9)
    throw new UserError(`GGUF judge model ${o.path}: ${(fileBytes / 2 ** 30).toFixed(1)} GiB does not fit in this machine's ${(totalmem() / 2 ** 30).toFixed(1)} GiB of memory (no GPU found); use a smaller or more quantized file`);
  let model: LlamaModel;
  try {
    model = await llama.loadModel({ modelPath: o.path });
  } catch (e) {
    const msg = (e as Error).message;
    if (/memory|VRAM|too large/i.test(msg)) throw new UserError(`GGUF judge model ${o.path} is too large for the available memory: ${msg}`);
    throw new UserError(`llama.cpp cannot load ${o.path} (architecture '${arch}'; llama.cpp ${llama.buildType} build — an architecture newer than this llama.cpp, or a damaged file): ${msg}`);
  }
  let context: LlamaContext;
  try {
    context = await model.createContext({ contextSize, sequences, ...(o.threads ? { threads: o.threads } : {}) });
  } catch (e) {
    await model.dispose();
    throw new UserError(`GGUF judge model ${o.path}: cannot create a context of ${contextSize} tokens × ${sequences} sequences (${(e as Error).message}); lower ?ctx= or ?seqs=`);
  }
  const { Template } = await import("@huggingface/jinja");
  let tpl: InstanceType<typeof Template>;
  try {
    tpl = new Template(template);
  } catch (e) {
    throw new UserError(`GGUF judge model ${o.path}: its chat template does not parse (${(e as Error).message})`);
  }
  const special = (id: Token | null) => (id === null ? "" : model.detokenize([id], true));
  const bos = special(model.tokens.bos), eos = special(model.tokens.eos);
  const render = (messages: ChatRequest["messages"]) => {
    try {
      return tpl.render({ messages, add_generation_prompt: true, bos_token: bos, eos_token: eos });
    } catch (e) {
      // e.g. the template's raise_exception("System role not supported")
      throw new UserError(`chat template of ${o.path} refused the messages: ${(e as Error).message}`);
    }
  };
  const free = Array.from({ length: sequences }, () => context.getSequence());
  return { nlc, llama, model, context, free, waiters: [], render, contextSize, arch, gpu: llama.gpu };
}

function runtimeFor(o: GgufOptions, sequences: number): Promise<Runtime> {
  const key = JSON.stringify([o.path, o.contextSize, sequences, o.threads, o.gpu]);
  let p = runtimes.get(key);
  if (!p) {
    p = loadRuntime(o, sequences);
    runtimes.set(key, p);
    p.catch(() => runtimes.delete(key)); // a failed load is retried by the next call
  }
  return p;
}

/** Disposes every loaded GGUF runtime (tests, CLI exit). */
export async function disposeGgufRuntimes(): Promise<void> {
  const all = [...runtimes.values()];
  runtimes.clear();
  for (const p of all) {
    try {
      const rt = await p;
      await rt.context.dispose();
      await rt.model.dispose();
    } catch {
      /* never loaded */
    }
  }
}

// --- JSON budget bound -------------------------------------------------------------------------------------

/**
 * Worst-case length in tokens of JSON matching `s` under node-llama-cpp's JSON grammar, counting one token
 * per character (a token is never shorter) and 6 per string character (a \uXXXX escape); the grammar's
 * whitespace is at most a newline plus 4 spaces per nesting level, and the reply ends with 4 newlines.
 */
function worstTokens(s: any, depth = 0): number {
  const ws = 1 + 4 * (depth + 1);
  if (!s || typeof s !== "object") return 64;
  if (Array.isArray(s.enum)) return Math.max(...s.enum.map((v: unknown) => JSON.stringify(v).length), 1);
  if ("const" in s) return JSON.stringify(s.const).length;
  const alts = s.anyOf ?? s.oneOf;
  if (Array.isArray(alts)) return Math.max(...alts.map((a: unknown) => worstTokens(a, depth)));
  switch (Array.isArray(s.type) ? s.type[0] : s.type) {
    case "string":
      return 2 + 6 * (s.maxLength ?? 1e6);
    case "integer":
    case "number":
      return 36; // -, 16 digits, exponent of 16 digits
    case "boolean":
      return 5;
    case "null":
      return 4;
    case "array":
      return 2 + 2 * ws + (s.maxItems ?? 1e6) * (worstTokens(s.items, depth + 1) + 1 + ws);
    case "object":
    default: {
      const props = Object.entries((s.properties ?? {}) as Record<string, unknown>);
      return 2 + ws + props.reduce((a, [k, v]) => a + k.length + 5 + ws + worstTokens(v, depth + 1), 0);
    }
  }
}

/** The schema with every unbounded string/array bounded (strings to `L` chars, arrays to `M` items). */
function boundSchema(s: any, L: number, M: number): any {
  if (!s || typeof s !== "object" || Array.isArray(s)) return s;
  const out: any = { ...s };
  if (s.type === "string" && !Array.isArray(s.enum)) out.maxLength = Math.min(s.maxLength ?? L, L);
  if (s.type === "array") {
    out.maxItems = Math.min(s.maxItems ?? M, M);
    if (out.minItems !== undefined && out.minItems > out.maxItems) out.maxItems = out.minItems;
    out.items = boundSchema(s.items, L, M);
  }
  if (s.properties) out.properties = Object.fromEntries(Object.entries(s.properties).map(([k, v]) => [k, boundSchema(v, L, M)]));
  for (const key of ["anyOf", "oneOf"]) if (Array.isArray(s[key])) out[key] = s[key].map((x: unknown) => boundSchema(x, L, M));
  return out;
}

/** A bounded version of `schema` whose worst case fits in `maxTokens`, or undefined if none does. */
export function schemaWithinBudget(schema: Record<string, unknown>, maxTokens: number): Record<string, unknown> | undefined {
  for (const M of [8, 4, 2, 1])
    for (let L = 256; L >= 0; L = L > 8 ? Math.floor(L / 2) : L - 1) {
      const b = boundSchema(schema, L, M);
      if (worstTokens(b) + 4 <= maxTokens) return b;
    }
  return undefined;
}

// --- the ChatModel -----------------------------------------------------------------------------------------

export class GgufChatModel implements ChatModel {
  readonly id: string;
  readonly meter: UsageMeter;
  readonly cfg: LlmEndpointConfig;
  readonly gguf: GgufOptions;
  private readonly sequences: number;
  private grammarCache = new Map<string, Promise<import("node-llama-cpp").LlamaGrammar>>();

  constructor(cfg: LlmEndpointInput | LlmEndpointConfig, opts: { meter?: UsageMeter } = {}) {
    this.cfg = validate(llmEndpointSchema, cfg, "llm endpoint");
    this.gguf = parseGgufUrl(this.cfg.baseURL);
    this.sequences = this.gguf.sequences ?? Math.min(this.cfg.maxConcurrency, 4);
    this.meter = opts.meter ?? new UsageMeter();
    this.id = `gguf:${this.gguf.path}`;
  }

  /** Loads the model now (otherwise the first call does); returns what is running. */
  async load(): Promise<{ arch: string; gpu: string | false; contextSize: number; sequences: number }> {
    const rt = await runtimeFor(this.gguf, this.sequences);
    return { arch: rt.arch, gpu: rt.gpu, contextSize: rt.contextSize, sequences: this.sequences };
  }

  private async acquire(rt: Runtime): Promise<Sequence> {
    const s = rt.free.pop();
    if (s) return s;
    return new Promise((res) => rt.waiters.push(res));
  }

  private release(rt: Runtime, s: Sequence): void {
    const w = rt.waiters.shift();
    if (w) w(s);
    else rt.free.push(s);
  }

  private grammarFor(rt: Runtime, c: OutputConstraint): Promise<import("node-llama-cpp").LlamaGrammar> | undefined {
    const key = JSON.stringify(c);
    let g = this.grammarCache.get(key);
    if (!g) {
      if (c.kind === "json") g = rt.llama.createGrammarForJsonSchema(c.schema as any) as Promise<any>;
      else {
        const text = c.kind === "choice" ? choiceToGbnf(c.options) : regexToGbnf(c.pattern);
        if (text === undefined) return undefined; // regex outside the GBNF subset: unconstrained, parsed free-form (as the HTTP path)
        g = rt.llama.createGrammar({ grammar: text });
      }
      this.grammarCache.set(key, g);
      g.catch(() => this.grammarCache.delete(key));
    }
    return g;
  }

  async chat(req: ChatRequest): Promise<ChatResponse> {
    const stage = req.stage ?? "other";
    const started = Date.now();
    let promptTokens = 0, completionTokens = 0;
    try {
      const rt = await runtimeFor(this.gguf, this.sequences);
      const d = this.cfg.defaultParams ?? {};
      const askedMax = req.maxTokens ?? d.maxTokens ?? 1024;
      const prompt = rt.render(req.messages);
      let tokens = rt.model.tokenize(prompt, true);
      const bos = rt.model.tokens.bos;
      if (rt.model.tokens.shouldPrependBosToken && bos !== null && tokens[0] !== bos) tokens = [bos, ...tokens];
      promptTokens = tokens.length;
      // As llama.cpp's server does: the reply may use what the context has left (finish "length" there).
      if (tokens.length + 1 > rt.contextSize)
        throw new LlmError({ kind: "http", status: 400, tries: 0, endpoint: this.id, message: `${this.id}: prompt of ${tokens.length} tokens exceeds the context of ${rt.contextSize} (raise ?ctx=)` });
      const maxTokens = Math.min(askedMax, rt.contextSize - tokens.length);
      const deadline = started + Math.min(req.budgetMs ?? this.cfg.budgetMs ?? Infinity, this.cfg.timeoutMs);
      const sample = { temperature: req.temperature ?? d.temperature ?? 1, topP: req.topP ?? d.topP, seed: req.seed ?? d.seed };

      let constraint = req.constraint && this.cfg.constrained ? req.constraint : undefined;
      let r = await this.generate(rt, tokens, maxTokens, sample, constraint, req.stop ?? [], deadline, req.signal);
      completionTokens += r.tokens;
      if (constraint?.kind === "json" && r.finishReason === "length") {
        // Cut mid-JSON: redo once with strings/arrays bounded so that the worst case fits the budget.
        const bounded = schemaWithinBudget(constraint.schema, maxTokens);
        if (bounded) {
          constraint = { ...constraint, schema: bounded };
          r = await this.generate(rt, tokens, maxTokens, sample, constraint, req.stop ?? [], deadline, req.signal);
          completionTokens += r.tokens;
        }
      }
      const seconds = (Date.now() - started) / 1000;
      this.meter.record(stage, { promptTokens, completionTokens, cached: false, seconds, failed: false });
      return { text: r.text, promptTokens, completionTokens, finishReason: r.finishReason, tries: 0 };
    } catch (e) {
      this.meter.record(stage, { promptTokens, completionTokens, cached: false, seconds: (Date.now() - started) / 1000, failed: true });
      throw e;
    }
  }

  private async generate(
    rt: Runtime,
    prompt: Token[],
    maxTokens: number,
    sample: { temperature: number; topP?: number; seed?: number },
    constraint: OutputConstraint | undefined,
    stop: string[],
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<{ text: string; tokens: number; finishReason: string }> {
    const grammar = constraint ? await this.grammarFor(rt, constraint) : undefined;
    const grammarState = grammar ? new rt.nlc.LlamaGrammarEvaluationState({ model: rt.model, grammar }) : undefined;
    // node-llama-cpp's JSON grammar ends in newlines and says where to stop (stopGenerationTriggers).
    const triggers = [...stop.filter((s) => s.length > 0)];
    for (const t of grammar?.stopGenerationTriggers ?? []) {
      const s = typeof t === "string" ? t : Array.isArray(t) ? t.map((x) => (typeof x === "string" ? x : rt.model.detokenize([x as Token], true))).join("") : String(t);
      if (s) triggers.push(s);
    }
    const seq = await this.acquire(rt);
    const out: Token[] = [];
    let text = "";
    let finishReason = "stop";
    try {
      const it = seq.evaluate(prompt, {
        temperature: sample.temperature,
        ...(sample.topP !== undefined ? { topP: sample.topP } : {}),
        ...(sample.seed !== undefined ? { seed: sample.seed } : {}),
        ...(grammarState ? { grammarEvaluationState: grammarState } : {}),
      });
      for await (const t of it) {
        if (signal?.aborted) throw new LlmError({ kind: "aborted", tries: 0, endpoint: this.id, message: `${this.id}: call aborted`, cause: signal.reason });
        if (Date.now() > deadline) throw new LlmError({ kind: "timeout", tries: 0, endpoint: this.id, message: `${this.id}: no complete reply within the time limit (${out.length} tokens generated)` });
        out.push(t);
        text = rt.model.detokenize(out);
        let cut = -1;
        for (const s of triggers) {
          const i = text.indexOf(s);
          if (i >= 0 && (cut < 0 || i < cut)) cut = i;
        }
        if (cut >= 0) {
          text = text.slice(0, cut);
          break;
        }
        if (out.length >= maxTokens) {
          finishReason = "length";
          break;
        }
      }
    } finally {
      await seq.clearHistory();
      this.release(rt, seq);
    }
    if (grammar?.trimWhitespaceSuffix) text = text.trimEnd();
    return { text, tokens: out.length, finishReason };
  }
}
