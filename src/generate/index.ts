/**
 * `mpo generate`: a task's prompts → one JSONL line per record `{id, prompt, query, model_response, …}`, the
 * shape of the paper's generation files, so `mpo eval elo|rouge|accuracy` can read the output directly.
 *
 * Two backends:
 *  - `llm`: any OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama, OpenAI); the task's chat messages
 *    are sent as they are and the server applies its own chat template;
 *  - `policy`: a checkpoint of the embedded engine (a `mpo train` run, one of its step checkpoints, a
 *    `mpo pretrain` output, or a bare checkpoint dir), sampled with the KV-cached sampler until EOS.
 *
 * Runs are resumable: records whose id is already in the output file are skipped and new lines are appended.
 * Lines are written in record order (a finished record waits for the ones before it), so a line-order join
 * with a gold file still works; a crash loses at most the records in flight.
 */
import { appendFileSync, closeSync, existsSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import type { ChatMessage, ChatModel } from "../llm/types.ts";
import type { LlmEndpointInput } from "../llm/config.ts";
import type { Split, TaskDefinition, TaskRecord } from "../tasks/types.ts";
import { appendJsonl, readJsonl } from "../util/atomic.ts";
import { UserError } from "../util/errors.ts";

/** One output line. `query` + `model_response` are the paper's generation-file fields. */
export interface GenerationRecord {
  id: string;
  /** The record's bare instruction (TaskRecord.prompt): the same for every backend, a stable join key. */
  prompt: string;
  /**
   * The full prompt text given to the model. Policy: exactly the text that was tokenized. LLM: the chat
   * messages written in ChatML (`<|im_start|>role\n…<|im_end|>\n`, ending with the open assistant turn) —
   * the form of the paper's files; the server itself applies its own template to the messages.
   */
  query: string;
  model_response: string;
  /** "stop" (ended by EOS / the server's stop), "length" (hit --max-new-tokens), or the server's reason. */
  finish_reason: string;
  /** The model that wrote the line ("llm MODEL @ URL" or "policy DIR"). */
  generator?: string;
  reference?: string;
  label?: string;
  /** The label again under the task's gold field name (tasks with an accuracy checker). */
  [goldField: string]: unknown;
}

export type GenerateBackend =
  | { kind: "llm"; endpoint: LlmEndpointInput; /** Injected model (tests, custom clients); skips the reachability probe. */ model?: ChatModel }
  | { kind: "policy"; dir: string; /** Text between the prompt and the response (default: the training run's, else "\n\n"). */ separator?: string; engine?: "ts" | "native" | "auto" };

export interface GenerateOptions {
  /** Task name (essay, summarization, ethics, math, a registered one) or the path of a task config file. */
  task: string;
  split: Split;
  backend: GenerateBackend;
  /** Output JSONL file (appended to; ids already in it are skipped). */
  out: string;
  /** Add to an --out file that holds lines from another model (refused otherwise). */
  append?: boolean;
  limit?: number;
  maxNewTokens?: number;
  temperature?: number;
  seed?: number;
  /** Requests in flight (llm) / records per generate call (policy is sequential per record). */
  concurrency?: number;
  /** Base directory for relative data paths, and local files replacing splits' data (`--data-file`). */
  dataDir?: string;
  dataFiles?: Partial<Record<Split, string>>;
  promptsDir?: string;
  /** Progress callback (the CLI draws a bar with it). */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface GenerateResult {
  out: string;
  /** Records of the split (after --limit). */
  total: number;
  /** Already in the output file before this run. */
  skipped: number;
  written: number;
  /** Records that failed (LLM errors after retries); not written, so a rerun tries them again. */
  failed: Array<{ id: string; error: string }>;
}

/** The ChatML rendering used for `query` on the LLM path (see GenerationRecord.query). */
export function chatmlQuery(messages: ChatMessage[]): string {
  return messages.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join("") + "<|im_start|>assistant\n";
}

function positiveInt(name: string, v: number | undefined, min = 1): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || v < min) throw new UserError(`--${name}: expected an integer ≥ ${min}, got ${v}`);
  return v;
}

/** Ids already written to `out` (torn last lines are ignored by readJsonl and simply redone). */
/**
 * An existing output file is resumed only by the model that wrote it: Elo and ROUGE treat one file as one
 * system, so lines from another model (or lines whose model is unknown) would silently blend two systems.
 * `--append` says the mix is intended.
 */
function refuseMixedModels(out: string, identity: string, append: boolean): void {
  if (append || !existsSync(out)) return;
  const { records } = readJsonl<{ generator?: unknown }>(out);
  if (records.length === 0) return;
  const others = new Map<string, number>();
  for (const r of records) {
    const g = typeof r?.generator === "string" ? r.generator : "(not recorded)";
    if (g !== identity) others.set(g, (others.get(g) ?? 0) + 1);
  }
  if (others.size === 0) return;
  const list = [...others].map(([g, n]) => `${n} line(s) from ${g}`).join(", ");
  throw new UserError(`--out ${out} already holds ${list}; this run generates with ${identity}. Use another --out, or --append to add to the same file anyway`);
}

export function doneIds(out: string): Set<string> {
  if (!existsSync(out)) return new Set();
  const { records } = readJsonl<{ id?: unknown }>(out);
  return new Set(records.map((r) => (typeof r?.id === "string" ? r.id : undefined)).filter((x): x is string => x !== undefined));
}

/**
 * After a crash the file may end in a torn line; new lines must not be glued onto it. The fragment is left
 * as its own (skipped) line and its record is generated again.
 */
function endWithNewline(out: string): void {
  if (!existsSync(out)) return;
  const size = statSync(out).size;
  if (size === 0) return;
  const fd = openSync(out, "r");
  const last = Buffer.alloc(1);
  try {
    readSync(fd, last, 0, 1, size - 1);
  } finally {
    closeSync(fd);
  }
  if (last[0] !== 0x0a) appendFileSync(out, "\n");
}

interface Generator {
  /** Generates one record's response. */
  generate(record: TaskRecord, messages: ChatMessage[]): Promise<{ query: string; model_response: string; finish_reason: string }>;
  readonly parallel: number;
  /** Which model writes the lines (recorded in each line as `generator`; one file holds one model). */
  readonly identity: string;
}

async function llmGenerator(backend: Extract<GenerateBackend, { kind: "llm" }>, o: GenerateOptions): Promise<Generator> {
  const concurrency = o.concurrency ?? 8;
  let model = backend.model;
  if (!model) {
    const { createChatModel } = await import("../llm/openai-client.ts");
    const { probeEndpoint } = await import("../llm/probe.ts");
    const probe = await probeEndpoint(backend.endpoint);
    if (!probe.ok) throw new UserError(`--llm: ${probe.message}`);
    model = createChatModel({ ...backend.endpoint, maxConcurrency: Math.max(concurrency, backend.endpoint.maxConcurrency ?? 1) });
  }
  const m = model;
  return {
    parallel: concurrency,
    identity: `llm ${backend.endpoint.model} @ ${backend.endpoint.baseURL}`,
    async generate(_record, messages) {
      const r = await m.chat({
        messages,
        temperature: o.temperature ?? 0.7,
        maxTokens: o.maxNewTokens ?? 1000,
        seed: o.seed,
        stage: "other",
        signal: o.signal,
      });
      return { query: chatmlQuery(messages), model_response: r.text, finish_reason: r.finishReason ?? "stop" };
    },
  };
}

/**
 * Finds the checkpoint dir (config.json) for --policy: the dir itself, DIR/policy (a step dir), DIR/model
 * (a pretrain output), or a training run's newest checkpoint (checkpoints/latest.json).
 */
export function resolvePolicyDir(dir: string): string {
  const d = resolve(dir);
  if (!existsSync(d)) throw new UserError(`--policy: ${d} does not exist`);
  const candidates: string[] = [];
  // A run dir also holds a config.json (the run's settings), so its newest checkpoint is looked at first.
  const latest = join(d, "checkpoints", "latest.json");
  if (existsSync(latest)) {
    try {
      const { path } = JSON.parse(readFileSync(latest, "utf8")) as { path?: unknown };
      if (typeof path === "string") candidates.push(join(d, path, "policy"));
    } catch (err) {
      throw new UserError(`--policy: ${latest} is unreadable (${(err as Error).message})`);
    }
  }
  candidates.push(d, join(d, "policy"), join(d, "model"));
  const hit = candidates.find((c) => existsSync(join(c, "config.json")));
  if (!hit) throw new UserError(`--policy: ${d} is not a checkpoint (no config.json in it, in policy/ or model/, and no checkpoints/latest.json)`);
  return hit;
}

/** The prompt separator of the `mpo train` run a checkpoint belongs to (RUN/config.json), if any. */
function runSeparator(ckptDir: string): string | undefined {
  let d = ckptDir;
  for (let up = 0; up < 4; up++) {
    const cfg = join(d, "config.json");
    if (up > 0 && existsSync(cfg)) {
      try {
        const sep = (JSON.parse(readFileSync(cfg, "utf8")) as { promptSeparator?: unknown }).promptSeparator;
        if (typeof sep === "string") return sep;
      } catch {
        /* not a run config */
      }
    }
    d = dirname(d);
  }
  return undefined;
}

async function policyGenerator(backend: Extract<GenerateBackend, { kind: "policy" }>, o: GenerateOptions): Promise<Generator> {
  const { loadCheckpoint } = await import("../engine/io/checkpoint.ts");
  const { TransformerLM } = await import("../engine/index.ts");
  const { tokenizerFromJson } = await import("../rl/tokenizer.ts");
  const { Rng } = await import("../util/rng.ts");
  const { resolveModelSource } = await import("../engine/io/hub.ts");
  const dir = resolvePolicyDir(await resolveModelSource(backend.dir, "--policy"));
  const ck = loadCheckpoint(dir);
  const eosCfg = ck.config.eos_token_id;
  const eos = typeof eosCfg === "number" ? eosCfg : Array.isArray(eosCfg) ? eosCfg[0] : undefined;
  const tok = tokenizerFromJson(ck.tokenizerJson, join(dir, "tokenizer.json"), eos);
  if (tok.vocabSize > ck.config.vocab_size) throw new UserError(`checkpoint ${dir}: tokenizer has ${tok.vocabSize} tokens but config.json vocab_size is ${ck.config.vocab_size}`);
  const model = TransformerLM.fromParams(ck.config, ck.tensors, { engine: backend.engine });
  const maxPos = ck.config.max_position_embeddings;
  const { loadGenerationSettings } = await import("../engine/generation-settings.ts");
  const settings = loadGenerationSettings(dir);
  const declared = settings.prompt?.kind === "separator" ? settings.prompt.separator : undefined;
  const fromRun = declared ?? runSeparator(dir);
  // A policy trained by `mpo train` saw all message contents joined by "\n" plus the run's separator (its
  // checkpoint declares it in mpo-generation.json); any other checkpoint gets the plain-text form: the last
  // user message followed by a blank line.
  const separator = backend.separator ?? fromRun ?? "\n\n";
  // A Hugging Face chat policy: its own chat template builds the prompt and every end-of-turn id stops it
  // (unless --separator asks for the plain-text form).
  const { policyFormat } = await import("../rl/policy-format.ts");
  const fmt = policyFormat(ck, tok, separator, join(dir, "tokenizer_config.json"));
  const chat = fmt.kind === "chat-template" && backend.separator === undefined;
  // Stop ids: the chat template's end-of-turn ids, else what the checkpoint declares (mpo-generation.json), else eos.
  const stopIds = chat ? fmt.stopIds : (settings.eosTokenIds ?? [tok.eosId]);
  const render = (messages: ChatMessage[]) =>
    chat
      ? fmt.prompt(messages)
      : fromRun !== undefined
      ? messages.map((m) => m.content).join("\n") + separator
      : ([...messages].reverse().find((m) => m.role === "user")?.content ?? messages.map((m) => m.content).join("\n")) + separator;
  const seed = o.seed ?? 0;
  return {
    parallel: 1,
    identity: `policy ${dir}`,
    async generate(record, messages) {
      const query = render(messages);
      let ids = tok.encode(query);
      if (tok.bosId !== null && !chat) ids = [tok.bosId, ...ids];
      const maxNew = Math.min(o.maxNewTokens ?? settings.maxNewTokens ?? 1000, maxPos - 1);
      // Keep the end of the prompt: the model never saw positions beyond max_position_embeddings.
      if (ids.length + maxNew > maxPos) ids = ids.slice(ids.length + maxNew - maxPos);
      if (ids.length === 0) ids = [tok.eosId];
      // One RNG per record (seed + id): the same record gets the same sample however the run is resumed.
      const out = model.generate([ids], { maxNewTokens: maxNew, temperature: o.temperature ?? settings.temperature ?? 0.7, stopTokens: stopIds, rng: new Rng(`generate-${seed}-${record.id}`) });
      const text = tok.decode(out.tokens[0].filter((t) => !stopIds.includes(t)));
      // Yield to the event loop between records so signals and progress output get through.
      await new Promise((r) => setImmediate(r));
      return { query, model_response: text, finish_reason: out.finished[0] ? "stop" : "length" };
    },
  };
}

/** Loads the task (clear errors for unknown tasks), generates the missing records, appends them in order. */
export async function generate(o: GenerateOptions): Promise<GenerateResult> {
  const limit = positiveInt("limit", o.limit);
  positiveInt("max-new-tokens", o.maxNewTokens);
  positiveInt("concurrency", o.concurrency);
  if (o.temperature !== undefined && !(o.temperature >= 0 && o.temperature <= 2)) throw new UserError(`--temperature: expected a number in [0, 2], got ${o.temperature}`);
  if (o.seed !== undefined && !Number.isInteger(o.seed)) throw new UserError(`--seed: expected an integer, got ${o.seed}`);
  const { getTask } = await import("../tasks/registry.ts");
  const task: TaskDefinition = await getTask(o.task, {
    dataDir: o.dataDir,
    promptsDir: o.promptsDir,
    ...(o.dataFiles ? { data: o.dataFiles } : {}),
  });
  const records = await task.load(o.split, { dataDir: o.dataDir, limit });
  const seen = new Set<string>();
  for (const r of records) {
    if (seen.has(r.id)) throw new UserError(`task ${task.name} (${o.split}): duplicate record id '${r.id}'; ids must be unique to resume generation`);
    seen.add(r.id);
  }
  const done = doneIds(o.out);
  const todo = records.filter((r) => !done.has(r.id));
  const result: GenerateResult = { out: o.out, total: records.length, skipped: records.length - todo.length, written: 0, failed: [] };
  o.onProgress?.(result.skipped, result.total);
  if (todo.length === 0) return result;

  const gen = o.backend.kind === "llm" ? await llmGenerator(o.backend, o) : await policyGenerator(o.backend, o);
  refuseMixedModels(o.out, gen.identity, o.append === true);
  endWithNewline(o.out);

  // Results land in `slots`; `flush` writes the finished prefix in record order.
  const slots: Array<GenerationRecord | null | undefined> = new Array(todo.length).fill(undefined);
  let flushed = 0;
  const flush = () => {
    const batch: GenerationRecord[] = [];
    while (flushed < todo.length && slots[flushed] !== undefined) {
      const s = slots[flushed++];
      if (s) batch.push(s);
    }
    if (batch.length) {
      appendJsonl(o.out, batch, { durable: false });
      result.written += batch.length;
    }
  };

  let next = 0;
  let consecutiveFailures = 0;
  let fatal: Error | null = null;
  const stopAfter = Math.max(3, gen.parallel);
  const worker = async () => {
    while (!fatal && !o.signal?.aborted) {
      const i = next++;
      if (i >= todo.length) return;
      const rec = todo[i];
      try {
        const g = await gen.generate(rec, task.buildMessages(rec));
        slots[i] = {
          id: rec.id,
          prompt: rec.prompt,
          query: g.query,
          model_response: g.model_response,
          finish_reason: g.finish_reason,
          generator: gen.identity,
          ...(rec.reference !== undefined ? { reference: rec.reference } : {}),
          ...(rec.label !== undefined ? { label: rec.label } : {}),
          // Also under the task's gold field name (e.g. `answer`, `binarized_label`), so `mpo eval accuracy
          // --task T --pred FILE` finds the gold label without --gold-field.
          ...(rec.label !== undefined && task.accuracy ? { [task.accuracy.goldField]: rec.label } : {}),
        };
        consecutiveFailures = 0;
      } catch (err) {
        if (o.signal?.aborted) return; // stopped by the user: not a failure; the record is redone on resume
        if (err instanceof UserError && o.backend.kind === "policy") throw err;
        slots[i] = null;
        const msg = (err as Error).message;
        result.failed.push({ id: rec.id, error: msg });
        if (++consecutiveFailures >= stopAfter) fatal = new UserError(`stopped after ${consecutiveFailures} failures in a row (last: ${msg}); ${result.written} new lines are in ${o.out} — rerun to resume`);
      }
      flush();
      o.onProgress?.(result.skipped + result.written + result.failed.length, result.total);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(gen.parallel, todo.length) }, worker));
  } finally {
    flush();
  }
  if (fatal) throw fatal;
  return result;
}

/** Default output name: `<model>.<split>.generations.jsonl` (`mpo eval elo` names the system `<model>`). */
export function defaultOutPath(backend: GenerateBackend, split: Split): string {
  const label = backend.kind === "llm" ? String(backend.endpoint.model) : basename(resolve(backend.dir));
  return `${label.replace(/[^A-Za-z0-9._-]+/g, "_")}.${split}.generations.jsonl`;
}
