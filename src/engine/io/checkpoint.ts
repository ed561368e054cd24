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
import { floatTensors, readSafetensors, serializeSafetensors } from "./safetensors.ts";

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
}

export interface Checkpoint {
  config: LlamaConfig;
  tensors: TensorMap;
  /** Parsed tokenizer.json, or undefined when the checkpoint has none. */
  tokenizerJson: Record<string, unknown> | undefined;
  optimizer?: OptimizerState;
  trainerState?: Record<string, unknown>;
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
    writeFileAtomic(join(tmp, "config.json"), JSON.stringify(config, null, 2) + "\n");
    writeFileAtomic(join(tmp, "model.safetensors"), serializeSafetensors(tensors, { format: "pt" }));
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

/** Loads and validates a checkpoint directory. */
export function loadCheckpoint(dirIn: string): Checkpoint {
  // Read-only: a save interrupted between its renames left the previous checkpoint as a `.old-` sibling;
  // read that one (the next save moves it back) rather than renaming under a possibly running writer.
  const dir = interruptedOld(resolve(dirIn)) ?? resolve(dirIn);
  if (!existsSync(dir)) throw new CheckpointError(dir, "directory does not exist");
  if (!statSync(dir).isDirectory()) throw new CheckpointError(dir, "is not a directory");
  const config = validate(LlamaConfigSchema, readJsonFile(dir, "config.json"), join(dir, "config.json"));
  const modelPath = join(dir, "model.safetensors");
  if (!existsSync(modelPath)) throw new CheckpointError(dir, "model.safetensors is missing");
  const tensors = floatTensors(readSafetensors(modelPath), modelPath);
  const problems = checkTensorsAgainstConfig(config, tensors);
  if (problems.length) throw new CheckpointError(dir, `model.safetensors does not match config.json: ${problems.join("; ")}`);

  let tokenizerJson: Record<string, unknown> | undefined;
  if (existsSync(join(dir, "tokenizer.json"))) {
    const t = readJsonFile(dir, "tokenizer.json");
    if (t === null || typeof t !== "object" || Array.isArray(t)) throw new CheckpointError(dir, "tokenizer.json is not a JSON object");
    tokenizerJson = t as Record<string, unknown>;
  }
  const out: Checkpoint = { config, tensors, tokenizerJson };
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
