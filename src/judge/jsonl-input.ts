/**
 * Reading the JSONL files `mpo score` and `mpo meta-step` take. Every problem names the file, the line
 * number and the field, because these files are usually produced by other tools (a policy's sampler, an
 * RL framework's rollout dump) and a bad line deep in a large file must be easy to find.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import type { MetaRollout } from "../meta/format.ts";
import { UserError } from "../util/errors.ts";
import type { Evaluation, ScoreInput } from "./types.ts";

export interface JsonlRecord {
  line: number;
  value: Record<string, unknown>;
}

/** Parses every non-blank line as a JSON object; a clear UserError for a missing file or a bad line. */
export function readJsonlObjects(path: string): JsonlRecord[] {
  if (!existsSync(path)) throw new UserError(`input file not found: ${path}`);
  if (statSync(path).isDirectory()) throw new UserError(`input file is a directory: ${path}`);
  const out: JsonlRecord[] = [];
  readFileSync(path, "utf8")
    .split("\n")
    .forEach((text, i) => {
      if (text.trim() === "") return;
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (err) {
        throw new UserError(`${path}: line ${i + 1}: not valid JSON (${(err as Error).message})`);
      }
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        throw new UserError(`${path}: line ${i + 1}: expected a JSON object, got ${Array.isArray(value) ? "an array" : JSON.stringify(value)}`);
      }
      out.push({ line: i + 1, value: value as Record<string, unknown> });
    });
  if (out.length === 0) throw new UserError(`${path}: no records (the file is empty)`);
  return out;
}

function field(path: string, r: JsonlRecord, name: string, kind: "string" | "optional-string"): string | undefined {
  const v = r.value[name];
  if (v === undefined || v === null) {
    if (kind === "optional-string") return undefined;
    throw new UserError(`${path}: line ${r.line}: field '${name}' is missing (expected a string)`);
  }
  if (typeof v !== "string") throw new UserError(`${path}: line ${r.line}: field '${name}': expected a string, got ${typeof v}`);
  return v;
}

function taskDescriptionOf(path: string, r: JsonlRecord, fallback: string | undefined): string {
  const td = field(path, r, "taskDescription", "optional-string") ?? fallback;
  if (td === undefined) {
    throw new UserError(`${path}: line ${r.line}: field 'taskDescription' is missing and no --task-description was given`);
  }
  return td;
}

/** `{prompt, response, reference?, taskDescription?, group?}` records → ScoreInputs. */
export function toScoreInputs(path: string, records: JsonlRecord[], defaultTaskDescription?: string): ScoreInput[] {
  return records.map((r) => {
    const input: ScoreInput = {
      taskDescription: taskDescriptionOf(path, r, defaultTaskDescription),
      prompt: field(path, r, "prompt", "string")!,
      response: field(path, r, "response", "string")!,
    };
    const reference = field(path, r, "reference", "optional-string");
    if (reference !== undefined) input.reference = reference;
    const group = field(path, r, "group", "optional-string");
    if (group !== undefined) input.group = group;
    return input;
  });
}

function checkEvaluation(path: string, r: JsonlRecord): Evaluation {
  const e = r.value.evaluation;
  const where = `${path}: line ${r.line}: field 'evaluation'`;
  if (typeof e !== "object" || Array.isArray(e)) throw new UserError(`${where}: expected an object`);
  const ev = e as Record<string, unknown>;
  if (!Array.isArray(ev.items)) throw new UserError(`${where}.items: expected an array`);
  ev.items.forEach((it, k) => {
    const item = it as Record<string, unknown>;
    if (!item || typeof item !== "object") throw new UserError(`${where}.items.${k}: expected an object`);
    if (typeof item.name !== "string") throw new UserError(`${where}.items.${k}.name: expected a string`);
    for (const f of ["score", "min", "max"]) {
      if (typeof item[f] !== "number" || !Number.isFinite(item[f])) throw new UserError(`${where}.items.${k}.${f}: expected a number`);
    }
    if (item.rationale !== undefined && typeof item.rationale !== "string") throw new UserError(`${where}.items.${k}.rationale: expected a string`);
  });
  for (const f of ["total", "normalized"]) {
    if (typeof ev[f] !== "number" || !Number.isFinite(ev[f])) throw new UserError(`${where}.${f}: expected a number`);
  }
  return {
    items: (ev.items as Record<string, unknown>[]).map((it) => ({
      name: it.name as string,
      score: it.score as number,
      min: it.min as number,
      max: it.max as number,
      rationale: (it.rationale as string | undefined) ?? "",
      raw: typeof it.raw === "string" ? it.raw : "",
      flags: Array.isArray(it.flags) ? (it.flags as unknown[]).map(String) : [],
    })),
    total: ev.total as number,
    normalized: ev.normalized as number,
    rubricVersion: typeof ev.rubricVersion === "number" ? ev.rubricVersion : 0,
    mode: (typeof ev.mode === "string" ? ev.mode : "per-item") as Evaluation["mode"],
    flags: Array.isArray(ev.flags) ? (ev.flags as unknown[]).map(String) : [],
    raw: Array.isArray(ev.raw) ? (ev.raw as unknown[]).map(String) : [],
  };
}

/**
 * Scored rollouts (as written by `mpo score` or the trainer's rollouts/step-N.jsonl) → MetaRollouts.
 * Records whose evaluation is null/absent (the judge was unavailable) are skipped and their line numbers
 * returned; a present but malformed evaluation is an error naming the field.
 */
export function toMetaRollouts(path: string, records: JsonlRecord[], defaultTaskDescription?: string): { rollouts: MetaRollout[]; skippedLines: number[] } {
  const rollouts: MetaRollout[] = [];
  const skippedLines: number[] = [];
  for (const r of records) {
    if (r.value.evaluation === null || r.value.evaluation === undefined) {
      skippedLines.push(r.line);
      continue;
    }
    const [input] = toScoreInputs(path, [r], defaultTaskDescription);
    const idRaw = r.value.id;
    const id = typeof idRaw === "string" || typeof idRaw === "number" ? String(idRaw) : `line-${r.line}`;
    rollouts.push({ id, ...input, evaluation: checkEvaluation(path, r) });
  }
  return { rollouts, skippedLines };
}
