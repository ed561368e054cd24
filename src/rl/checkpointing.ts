/**
 * The trainer's run directory on disk: checkpoint files (saveModels), checksummed manifests, the
 * `latest.json` commit point, choosing where a resume starts, and rolling back what a crashed process wrote
 * after it.
 *
 * Commit protocol of one checkpoint:   checkpoints/step-N/{policy,critic}/…  →  step-N/manifest.json
 * (sha256 + size of every file)  →  checkpoints/latest.json {step, path}  →  prune old checkpoints.
 * A checkpoint is usable only if its manifest verifies, so a truncated or half-written one is never loaded:
 * `--resume` takes the newest verifiable checkpoint (latest.json first, then a scan of checkpoints/, which
 * also covers a missing or corrupt latest.json) and says which one it used and why it skipped others.
 *
 * Nothing here deletes a user's data: records newer than the resumed checkpoint (metrics lines, rollouts
 * files) and whatever `--overwrite` replaces are MOVED into moved-aside/<time>-<why>/. The one deletion
 * is pruning the trainer's own older checkpoints beyond `keepCheckpoints`.
 */
import { createHash } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import type { AdamW, TransformerLM } from "../engine/index.ts";
import { saveCheckpoint } from "../engine/io/checkpoint.ts";
import { writeGenerationSettings } from "../engine/generation-settings.ts";
import type { TrainConfig } from "./config.ts";
import { saveLoraModel } from "./lora-policy.ts";
import type { PolicyFormat } from "./policy-format.ts";
import type { PolicyTokenizer } from "./tokenizer.ts";
import { readJsonl, writeFileAtomic, writeJsonAtomic } from "../util/atomic.ts";
import { UserError } from "../util/errors.ts";
import { CHECKPOINT_DIR_RE, CHECKPOINTS_DIR, checkpointDir, LATEST_CHECKPOINT, METRICS_FILE, MOVED_ASIDE_DIR, movedAsideDir, ROLLOUTS_DIR, ROLLOUTS_FILE_RE, runPath } from "../util/run-layout.ts";
import { readJsonFileWith, StateFileError } from "../util/state-file.ts";

export const MANIFEST_FILE = "manifest.json";

/** checkpoints/latest.json */
export const latestPointerSchema = z.object({ step: z.number().int().nonnegative(), path: z.string().min(1) });

/** checkpoints/step-N/manifest.json: every file of the checkpoint with its size and sha256. */
export const manifestSchema = z.object({
  step: z.number().int().nonnegative(),
  createdAt: z.string(),
  files: z.record(z.string(), z.object({ bytes: z.number().int().nonnegative(), sha256: z.string().regex(/^[0-9a-f]{64}$/) })),
});
export type CheckpointManifest = z.output<typeof manifestSchema>;

function sha256File(path: string): string {
  const h = createHash("sha256");
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest("hex");
}

/** Files under dir (relative, POSIX separators), temp files and the manifest excluded. */
function filesUnder(dir: string, prefix = ""): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...filesUnder(join(dir, e.name), rel));
    else if (e.isFile() && rel !== MANIFEST_FILE && !e.name.endsWith(".tmp")) out.push(rel);
  }
  return out.sort();
}

/** Writes checkpoints/step-N/manifest.json over the files the checkpoint holds now. */
export function writeManifest(runDir: string, step: number): CheckpointManifest {
  const dir = runPath(runDir, checkpointDir(step));
  const files: CheckpointManifest["files"] = {};
  for (const rel of filesUnder(dir)) {
    const p = join(dir, rel);
    files[rel] = { bytes: statSync(p).size, sha256: sha256File(p) };
  }
  const m: CheckpointManifest = { step, createdAt: new Date().toISOString(), files };
  writeJsonAtomic(join(dir, MANIFEST_FILE), m);
  return m;
}

/** Why checkpoint step-N cannot be used, or null when every file matches its manifest. */
export function verifyCheckpoint(runDir: string, step: number): string | null {
  const dir = runPath(runDir, checkpointDir(step));
  const mp = join(dir, MANIFEST_FILE);
  if (!existsSync(mp)) return `no ${MANIFEST_FILE}`;
  let m: CheckpointManifest;
  try {
    m = readJsonFileWith(mp, manifestSchema, "checkpoint manifest");
  } catch (err) {
    return (err as Error).message;
  }
  if (m.step !== step) return `${MANIFEST_FILE} says step ${m.step}`;
  if (Object.keys(m.files).length === 0) return `${MANIFEST_FILE} lists no files`;
  for (const [rel, f] of Object.entries(m.files)) {
    const p = join(dir, rel);
    if (!existsSync(p)) return `${rel} is missing`;
    const bytes = statSync(p).size;
    if (bytes !== f.bytes) return `${rel} has ${bytes} bytes, the manifest says ${f.bytes}`;
    if (sha256File(p) !== f.sha256) return `${rel} does not match its checksum`;
  }
  return null;
}

/** Step numbers of the checkpoint directories present, newest first. */
export function checkpointSteps(runDir: string): number[] {
  const dir = runPath(runDir, CHECKPOINTS_DIR);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((f) => CHECKPOINT_DIR_RE.exec(f))
    .filter((m): m is RegExpExecArray => !!m && statSync(join(dir, m[0])).isDirectory())
    .map((m) => Number(m[1]))
    .sort((a, b) => b - a);
}

export interface ResumePoint {
  step: number;
  /** Run-dir-relative checkpoint directory. */
  path: string;
  /** Checkpoints (or the pointer) that were skipped, with why — printed so the user knows what was used. */
  skipped: string[];
}

/**
 * Where a resume starts: the newest checkpoint whose manifest verifies. latest.json names the candidate
 * first; when it is missing, unreadable or its checkpoint fails verification, the checkpoints/ directory is
 * scanned for the newest one that passes. Null when there is none (the caller starts over, moving data aside).
 */
export function findResumePoint(runDir: string): ResumePoint | null {
  const skipped: string[] = [];
  const latestPath = runPath(runDir, LATEST_CHECKPOINT);
  let pointed: number | null = null;
  if (existsSync(latestPath)) {
    try {
      const l = readJsonFileWith(latestPath, latestPointerSchema, "checkpoint pointer");
      if (l.path !== checkpointDir(l.step)) skipped.push(`${LATEST_CHECKPOINT}: path '${l.path}' is not ${checkpointDir(l.step)}`);
      else pointed = l.step;
    } catch (err) {
      skipped.push((err as Error).message);
    }
  } else if (checkpointSteps(runDir).length) skipped.push(`${LATEST_CHECKPOINT} is missing`);
  // Only checkpoints up to the pointed one: a newer directory without a pointer was never committed.
  const candidates = checkpointSteps(runDir).filter((s) => pointed === null || s <= pointed);
  if (pointed !== null && !candidates.includes(pointed)) skipped.push(`${LATEST_CHECKPOINT} names ${checkpointDir(pointed)}, which does not exist`);
  for (const step of candidates) {
    const why = verifyCheckpoint(runDir, step);
    if (why === null) return { step, path: checkpointDir(step), skipped };
    skipped.push(`${checkpointDir(step)}: ${why}`);
  }
  return null;
}

/** Commits checkpoint step-N: manifest, then latest.json; then prunes all but the newest `keep`. */
export function commitCheckpoint(runDir: string, step: number, keep: number): void {
  writeManifest(runDir, step);
  writeJsonAtomic(runPath(runDir, LATEST_CHECKPOINT), { step, path: checkpointDir(step) });
  for (const s of checkpointSteps(runDir).slice(keep)) {
    if (s !== step) rmSync(runPath(runDir, checkpointDir(s)), { recursive: true, force: true });
  }
}

/** Moves run-dir-relative paths into one fresh moved-aside/<time>-<why>/ folder, keeping their relative paths. */
export function moveAside(runDir: string, rels: string[], why: string): string | null {
  const present = rels.filter((r) => existsSync(runPath(runDir, r)));
  if (present.length === 0) return null;
  const dest = movedAsideDir(why);
  for (const r of present) {
    const to = runPath(runDir, `${dest}/${r}`);
    mkdirSync(join(to, ".."), { recursive: true });
    renameSync(runPath(runDir, r), to);
  }
  return dest;
}

/**
 * Rolls the run's records back to `step`: metrics lines and rollouts files newer than it (written by a
 * process that died before its next checkpoint) move aside. Returns the moved-aside folder, if any.
 */
export function rollBackRecords(runDir: string, step: number): string | null {
  const moved: string[] = [];
  const mpath = runPath(runDir, METRICS_FILE);
  let keepText: string | null = null;
  if (existsSync(mpath)) {
    const { records } = readJsonl<{ step: number }>(mpath);
    const keep = records.filter((r) => typeof r.step === "number" && r.step <= step);
    const text = keep.map((r) => JSON.stringify(r) + "\n").join("");
    if (text !== readFileSync(mpath, "utf8")) {
      keepText = text;
      moved.push(METRICS_FILE);
    }
  }
  const rdir = runPath(runDir, ROLLOUTS_DIR);
  if (existsSync(rdir)) {
    for (const f of readdirSync(rdir)) {
      const m = ROLLOUTS_FILE_RE.exec(f);
      if (m && Number(m[1]) > step) moved.push(`${ROLLOUTS_DIR}/${f}`);
    }
  }
  const dest = moveAside(runDir, moved, `rolled-back-after-step-${step}`);
  // The full old metrics file is kept aside; the run continues with the lines up to the checkpoint.
  if (keepText !== null) writeFileAtomic(mpath, keepText);
  return dest;
}

/**
 * A new run needs an empty directory: refuses one that holds anything, unless `overwrite`, which moves
 * every entry into moved-aside/<time>-overwrite/ (earlier moved-aside folders stay where they are).
 */
export function prepareNewRunDir(runDir: string, overwrite: boolean): string | null {
  if (!existsSync(runDir)) return null;
  if (!statSync(runDir).isDirectory()) throw new UserError(`run directory ${runDir} is a file`);
  const entries = readdirSync(runDir).filter((e) => e !== MOVED_ASIDE_DIR);
  if (entries.length === 0) return null;
  if (!overwrite)
    throw new UserError(
      `run directory ${runDir} is not empty (${entries.slice(0, 5).join(", ")}${entries.length > 5 ? ", …" : ""}) and holds no run to resume; ` +
        `use another --run, or --overwrite to move its files into ${MOVED_ASIDE_DIR}/ and start over (nothing is deleted)`,
    );
  return moveAside(runDir, entries, "overwrite");
}

export { StateFileError };

/** The models a checkpoint holds, and what their files carry besides tensors. */
export interface CheckpointModels {
  policy: TransformerLM;
  policyOpt: AdamW;
  critic: TransformerLM | null;
  criticOpt: AdamW | null;
  tokenizer: PolicyTokenizer;
  format: PolicyFormat;
  /** trainer_state.json, written next to the policy. */
  state: object;
}

/**
 * Writes checkpoints/step-N/{policy,critic} (not yet committed: see commitCheckpoint). LoRA: only the
 * adapters (PEFT format), value head and optimizer; the base is RUN/reference/. Full weights: HF model dirs
 * with optimizer and trainer state, plus the generation settings the policy was trained with, so
 * generate/sample/train --policy use them.
 */
export function saveModels(dir: string, m: CheckpointModels, cfg: TrainConfig): void {
  if (m.policy.lora) {
    saveLoraModel(join(dir, "policy"), m.policy, m.policyOpt, cfg.policy ?? "reference", m.state);
    if (m.critic && m.criticOpt) saveLoraModel(join(dir, "critic"), m.critic, m.criticOpt, cfg.policy ?? "reference");
    return;
  }
  const pol = m.policyOpt.stateDict();
  saveCheckpoint(join(dir, "policy"), {
    config: m.policy.config,
    tensors: m.policy.namedTensors(),
    tokenizerJson: m.tokenizer.toJSON(),
    ...m.format.files,
    optimizer: { step: pol.step, tensors: pol.tensors },
    trainerState: m.state,
  });
  writeGenerationSettings(join(dir, "policy"), {
    ...(m.format.kind === "chat-template" ? { chatTemplate: true } : { separator: cfg.promptSeparator }),
    maxPromptTokens: cfg.maxPromptTokens,
    maxNewTokens: cfg.maxNewTokens,
    eosTokenIds: m.format.stopIds,
    temperature: cfg.temperature,
  });
  if (m.critic && m.criticOpt) {
    const c = m.criticOpt.stateDict();
    saveCheckpoint(join(dir, "critic"), { config: m.critic.config, tensors: m.critic.namedTensors(), optimizer: { step: c.step, tensors: c.tensors } });
  }
}
