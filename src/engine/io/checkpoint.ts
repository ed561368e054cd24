/**
 * Model checkpoints as Hugging Face-style directories: config.json (LlamaConfig keys), model.safetensors,
 * tokenizer.json, generation_config.json, and for exact resume optimizer.safetensors (AdamW moments as
 * "exp_avg.<param>" / "exp_avg_sq.<param>", step in the metadata) + trainer_state.json.
 *
 * Whole-directory atomicity: everything is written and fsynced into a sibling `<dir>.tmp-XXXX`, then
 * renamed to `<dir>`; an existing checkpoint is first renamed aside to `<dir>.old-XXXX` and removed after
 * the swap. A kill -9 at any point therefore leaves either the old or the new complete checkpoint under
 * the final name, or (in the instant between the two renames) none plus a complete `.old-` sibling, which
 * the next save/load moves back. Loading validates the config (zod, field named) and every tensor against
 * it (missing tensor / shape mismatch named).
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { UserError } from "../../util/errors.ts";
import { validate } from "../../config/load.ts";
import { writeFileAtomic } from "../../util/atomic.ts";
import { LlamaConfigSchema, expectedParamShapes, type LlamaConfig } from "./config.ts";
import { resolveConfig } from "../config.ts";
import { floatTensors, readSafetensors, serializeSafetensors, type FloatStorageDtype } from "./safetensors.ts";

export interface NamedTensor {
  shape: number[];
  data: Float32Array;
}
export type TensorMap = Map<string, NamedTensor>;
type TensorInput = Map<string, { shape: readonly number[]; data: Float32Array }> | Record<string, { shape: readonly number[]; data: Float32Array }>;

export interface OptimizerState {
  step: number;
  /** Keys "exp_avg.<param name>" and "exp_avg_sq.<param name>". */
  tensors: TensorMap;
}

export interface CheckpointInput {
  config: unknown;
  tensors: TensorInput;
  /** tokenizer.json content: a JSON string or a plain object. */
  tokenizerJson?: string | object;
  optimizer?: { step: number; tensors: TensorInput };
  trainerState?: object;
  generationConfig?: object;
  /** tokenizer_config.json (special tokens, chat_template) of a Hugging Face policy, copied as is. */
  tokenizerConfig?: object;
  /**
   * dtype of the float weights in model.safetensors (default F32, our storage dtype). F16/BF16 write a
   * published model's half dtype (exports, a bf16 base kept losslessly); config.json's torch_dtype follows.
   */
  weightsDtype?: FloatStorageDtype;
}

export interface Checkpoint {
  config: LlamaConfig;
  tensors: TensorMap;
  /** Parsed tokenizer.json, or undefined when the checkpoint has none. */
  tokenizerJson: Record<string, unknown> | undefined;
  optimizer?: OptimizerState;
  trainerState?: Record<string, unknown>;
  /** generation_config.json (eos_token_id may list several end tokens), when present. */
  generationConfig?: Record<string, unknown>;
  /** tokenizer_config.json (added/special tokens, chat_template), when present. */
  tokenizerConfig?: Record<string, unknown>;
  /** The on-disk dtype of the float weights when they all share one (F32, F16 or BF16); undefined when mixed. */
  weightsDtype?: FloatStorageDtype;
}

export const TORCH_DTYPE: Record<FloatStorageDtype, string> = { F32: "float32", F16: "float16", BF16: "bfloat16" };

/**
 * The dtype a model directory's config declares for its weights: `torch_dtype` (or `dtype`, its name from
 * transformers 4.56 on) as "bfloat16" | "float16" | "float32"; undefined when absent or another type.
 */
export function configWeightsDtype(config: Record<string, unknown>): FloatStorageDtype | undefined {
  const name = config.dtype ?? config.torch_dtype;
  if (typeof name !== "string") return undefined;
  const n = name.replace(/^torch\./, "");
  return n === "bfloat16" ? "BF16" : n === "float16" || n === "half" ? "F16" : n === "float32" || n === "float" ? "F32" : undefined;
}

export class CheckpointError extends UserError {
  constructor(
    readonly dir: string,
    problem: string,
  ) {
    super(`checkpoint ${dir}: ${problem}`);
    this.name = "CheckpointError";
  }
}

function toMap(t: TensorInput): Map<string, { shape: readonly number[]; data: Float32Array }> {
  return t instanceof Map ? t : new Map(Object.entries(t));
}

/** Checks tensors against the config; returns problems (missing, wrong shape), empty when fine. Extra tensors are allowed. */
export function checkTensorsAgainstConfig(config: LlamaConfig, tensors: Map<string, { shape: readonly number[]; data: ArrayLike<number> }>): string[] {
  const problems: string[] = [];
  for (const [name, shape] of expectedParamShapes(config)) {
    const t = tensors.get(name);
    if (!t) problems.push(`missing tensor '${name}' (expected shape [${shape}])`);
    else if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i]))
      problems.push(`tensor '${name}' has shape [${t.shape}] but the config implies [${shape}]`);
  }
  return problems;
}

function fsyncPath(path: string): void {
  // Directory fsync makes the renames durable; some filesystems refuse it, which is harmless here.
  try {
    const fd = openSync(path, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* best effort */
  }
}

/** The newest complete checkpoint set aside by a save that died between its two renames, if any. */
function interruptedOld(dir: string): string | undefined {
  const parent = dirname(dir);
  const base = basename(dir);
  if (!existsSync(parent) || existsSync(dir)) return undefined;
  return readdirSync(parent)
    .filter((f) => f.startsWith(base + ".old-"))
    .map((f) => join(parent, f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
}

/** If a previous save died between "rename old aside" and "rename new in", put the old one back. */
function recoverInterruptedSave(dir: string): void {
  const old = interruptedOld(dir);
  if (old) renameSync(old, dir);
}

/** Removes leftovers of interrupted saves (temp dirs and superseded old dirs). */
function cleanLeftovers(dir: string): void {
  const parent = dirname(dir);
  const base = basename(dir);
  for (const f of readdirSync(parent)) {
    if (f.startsWith(base + ".tmp-") || f.startsWith(base + ".old-")) rmSync(join(parent, f), { recursive: true, force: true });
  }
}

/** Writes a complete checkpoint directory atomically (see module comment). */
export function saveCheckpoint(dirIn: string, ck: CheckpointInput): void {
  const dir = resolve(dirIn);
  const config = validate(LlamaConfigSchema, ck.config, `${dir}/config.json`);
  const tensors = toMap(ck.tensors);
  const problems = checkTensorsAgainstConfig(config, tensors);
  if (problems.length) throw new CheckpointError(dir, `refusing to save: ${problems.join("; ")}`);
  for (const [name, t] of tensors)
    for (let i = 0; i < t.data.length; i++)
      if (!Number.isFinite(t.data[i])) throw new CheckpointError(dir, `refusing to save: tensor '${name}' has a non-finite value at index ${i}`);

  mkdirSync(dirname(dir), { recursive: true });
  recoverInterruptedSave(dir);
  // Overwriting replaces the whole directory: never do that to a directory that is not a checkpoint.
  if (existsSync(dir) && (!statSync(dir).isDirectory() || (readdirSync(dir).length > 0 && !existsSync(join(dir, "config.json")))))
    throw new CheckpointError(dir, "exists and is not a checkpoint directory (no config.json); refusing to replace it");
  cleanLeftovers(dir);
  const tmp = mkdtempSync(`${dir}.tmp-`);
  try {
    const dtype = ck.weightsDtype ?? "F32";
    // torch_dtype must say what the file holds (transformers loads in it); `dtype` is its newer name.
    const written = ck.weightsDtype ? { ...config, torch_dtype: TORCH_DTYPE[dtype], ...("dtype" in config ? { dtype: TORCH_DTYPE[dtype] } : {}) } : config;
    writeFileAtomic(join(tmp, "config.json"), JSON.stringify(written, null, 2) + "\n");
    let weights: Uint8Array;
    try {
      weights = serializeSafetensors(tensors, { format: "pt" }, dtype);
    } catch (e) {
      throw new CheckpointError(dir, `refusing to save as ${dtype}: ${(e as Error).message}`);
    }
    writeFileAtomic(join(tmp, "model.safetensors"), weights);
    if (ck.tokenizerJson !== undefined) {
      const text = typeof ck.tokenizerJson === "string" ? ck.tokenizerJson : JSON.stringify(ck.tokenizerJson);
      try {
        JSON.parse(text);
      } catch (e) {
        throw new CheckpointError(dir, `refusing to save: tokenizerJson is not valid JSON (${(e as Error).message})`);
      }
      writeFileAtomic(join(tmp, "tokenizer.json"), text);
    }
    const gen = ck.generationConfig ?? {
      bos_token_id: config.bos_token_id ?? undefined,
      eos_token_id: config.eos_token_id ?? undefined,
      pad_token_id: config.pad_token_id ?? undefined,
    };
    writeFileAtomic(join(tmp, "generation_config.json"), JSON.stringify(gen, null, 2) + "\n");
    if (ck.tokenizerConfig !== undefined) writeFileAtomic(join(tmp, "tokenizer_config.json"), JSON.stringify(ck.tokenizerConfig, null, 2) + "\n");
    if (ck.optimizer) {
      const opt = toMap(ck.optimizer.tensors);
      const optProblems = checkOptimizerTensors(tensors, opt);
      if (optProblems.length) throw new CheckpointError(dir, `refusing to save optimizer state: ${optProblems.join("; ")}`);
      writeFileAtomic(join(tmp, "optimizer.safetensors"), serializeSafetensors(opt, { step: String(ck.optimizer.step), format: "mpo-adamw" }));
    }
    if (ck.trainerState !== undefined) writeFileAtomic(join(tmp, "trainer_state.json"), JSON.stringify(ck.trainerState, null, 2) + "\n");
    fsyncPath(tmp);
    if (existsSync(dir)) {
      const old = `${dir}.old-${process.pid}-${Date.now()}`;
      renameSync(dir, old);
      renameSync(tmp, dir);
      fsyncPath(dirname(dir));
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(tmp, dir);
      fsyncPath(dirname(dir));
    }
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

function checkOptimizerTensors(params: Map<string, { shape: readonly number[] }>, opt: Map<string, { shape: readonly number[] }>): string[] {
  const problems: string[] = [];
  for (const [name, p] of params) {
    for (const prefix of ["exp_avg.", "exp_avg_sq."]) {
      const t = opt.get(prefix + name);
      if (!t) problems.push(`missing optimizer tensor '${prefix + name}'`);
      else if (t.shape.length !== p.shape.length || t.shape.some((s, i) => s !== p.shape[i]))
        problems.push(`optimizer tensor '${prefix + name}' has shape [${t.shape}] but parameter '${name}' is [${p.shape}]`);
    }
  }
  return problems;
}

function readJsonFile(dir: string, file: string): unknown {
  const path = join(dir, file);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new CheckpointError(dir, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "file missing" : (e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(dir, `${file} is not valid JSON (${(e as Error).message})`);
  }
}

/** Buffers that transformers registers but that are not parameters (old Llama checkpoints store them). */
const NON_PARAMETER = /\.rotary_emb\.inv_freq$/;

/**
 * The weights of a checkpoint directory as f32 tensors: `model.safetensors`, or the shards listed in
 * `model.safetensors.index.json` (weight_map: tensor → shard file). BF16/F16/F64 are converted on read.
 * A shard that is missing, or that lacks a tensor the index places in it, is an error naming both.
 */
function readWeights(dir: string): { tensors: TensorMap; files: string; dtypes: Set<string> } {
  const single = join(dir, "model.safetensors");
  const index = join(dir, "model.safetensors.index.json");
  const tensors: TensorMap = new Map();
  const dtypes = new Set<string>();
  const put = (file: string) => {
    const f = readSafetensors(file);
    for (const [name, t] of floatTensors(f, file)) {
      if (NON_PARAMETER.test(name)) continue;
      tensors.set(name, t);
      dtypes.add(f.sourceDtypes.get(name) ?? "F32");
    }
  };
  if (existsSync(single)) {
    put(single);
    return { tensors, files: "model.safetensors", dtypes };
  }
  if (!existsSync(index)) {
    const other = ["pytorch_model.bin", "model.bin", "pytorch_model.bin.index.json"].find((f) => existsSync(join(dir, f)));
    throw new CheckpointError(dir, other
      ? `has ${other} but no model.safetensors: only safetensors weights are read (convert them, e.g. save_pretrained(..., safe_serialization=True))`
      : "model.safetensors is missing (and there is no model.safetensors.index.json for sharded weights)");
  }
  const idx = readJsonFile(dir, "model.safetensors.index.json") as { weight_map?: unknown };
  const map = idx?.weight_map;
  if (map === null || typeof map !== "object" || Array.isArray(map))
    throw new CheckpointError(dir, "model.safetensors.index.json: field 'weight_map' must be an object {tensor name: shard file}");
  const byShard = new Map<string, string[]>();
  for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
    if (typeof file !== "string" || file.includes("/") || file.includes("\\") || file.startsWith("."))
      throw new CheckpointError(dir, `model.safetensors.index.json: weight_map['${name}'] must be a shard file name in the directory, got ${JSON.stringify(file)}`);
    byShard.set(file, [...(byShard.get(file) ?? []), name]);
  }
  for (const [file, names] of byShard) {
    const path = join(dir, file);
    if (!existsSync(path)) throw new CheckpointError(dir, `shard ${file} listed in model.safetensors.index.json is missing (${names.length} tensors, e.g. '${names[0]}')`);
    put(path);
    for (const n of names) if (!tensors.has(n)) throw new CheckpointError(dir, `shard ${file} lacks tensor '${n}' that model.safetensors.index.json places in it`);
  }
  return { tensors, files: `model.safetensors.index.json (${byShard.size} shards)`, dtypes };
}

/** Loads and validates a checkpoint directory. */
export function loadCheckpoint(dirIn: string): Checkpoint {
  // Read-only: a save interrupted between its renames left the previous checkpoint as a `.old-` sibling;
  // read that one (the next save moves it back) rather than renaming under a possibly running writer.
  const dir = interruptedOld(resolve(dirIn)) ?? resolve(dirIn);
  if (!existsSync(dir)) throw new CheckpointError(dir, "directory does not exist");
  if (!statSync(dir).isDirectory()) throw new CheckpointError(dir, "is not a directory");
  const rawConfig = readJsonFile(dir, "config.json");
  const config = validate(LlamaConfigSchema, rawConfig, join(dir, "config.json"));
  resolveConfig(config as never, join(dir, "config.json")); // rope_scaling, head_dim…: named errors here, not at model build
  const { tensors, files, dtypes } = readWeights(dir);
  const problems = checkTensorsAgainstConfig(config, tensors);
  if (problems.length)
    throw new CheckpointError(dir, `${files} does not match config.json: ${problems.slice(0, 4).join("; ")}${problems.length > 4 ? `; and ${problems.length - 4} more` : ""}`);

  let tokenizerJson: Record<string, unknown> | undefined;
  if (existsSync(join(dir, "tokenizer.json"))) {
    const t = readJsonFile(dir, "tokenizer.json");
    if (t === null || typeof t !== "object" || Array.isArray(t)) throw new CheckpointError(dir, "tokenizer.json is not a JSON object");
    tokenizerJson = t as Record<string, unknown>;
  }
  const out: Checkpoint = { config, tensors, tokenizerJson };
  const only = dtypes.size === 1 ? [...dtypes][0] : undefined;
  if (only === "F32" || only === "F16" || only === "BF16") out.weightsDtype = only;
  // A config that declares no dtype (the schema then says float32) takes the files' own.
  const declared = rawConfig as Record<string, unknown>;
  if (out.weightsDtype && declared.torch_dtype === undefined && declared.dtype === undefined)
    config.torch_dtype = TORCH_DTYPE[out.weightsDtype];
  for (const [file, key] of [["generation_config.json", "generationConfig"], ["tokenizer_config.json", "tokenizerConfig"]] as const) {
    if (!existsSync(join(dir, file))) continue;
    const j = readJsonFile(dir, file);
    if (j === null || typeof j !== "object" || Array.isArray(j)) throw new CheckpointError(dir, `${file} is not a JSON object`);
    out[key] = j as Record<string, unknown>;
  }
  // transformers >= 4.43 may save the template as its own file; it wins only where tokenizer_config.json has none.
  if (existsSync(join(dir, "chat_template.jinja")) && typeof out.tokenizerConfig?.chat_template !== "string")
    out.tokenizerConfig = { ...(out.tokenizerConfig ?? {}), chat_template: readFileSync(join(dir, "chat_template.jinja"), "utf8") };
  const optPath = join(dir, "optimizer.safetensors");
  if (existsSync(optPath)) {
    const f = readSafetensors(optPath);
    const step = Number(f.metadata.step);
    if (!Number.isSafeInteger(step) || step < 0) throw new CheckpointError(dir, `optimizer.safetensors: metadata 'step' is ${JSON.stringify(f.metadata.step)}, expected a non-negative integer`);
    const opt = floatTensors(f, optPath);
    const optProblems = checkOptimizerTensors(tensors, opt);
    if (optProblems.length) throw new CheckpointError(dir, `optimizer.safetensors: ${optProblems.join("; ")}`);
    out.optimizer = { step, tensors: opt };
  }
  if (existsSync(join(dir, "trainer_state.json"))) {
    const s = readJsonFile(dir, "trainer_state.json");
    if (s === null || typeof s !== "object" || Array.isArray(s)) throw new CheckpointError(dir, "trainer_state.json is not a JSON object");
    out.trainerState = s as Record<string, unknown>;
  }
  return out;
}
