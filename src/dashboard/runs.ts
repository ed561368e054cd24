/**
 * Reading run directories (docs/run-dir.md) for the dashboard. Everything here is defensive: a run may be
 * half-written, being appended to, or corrupt, so every reader returns what it could read plus a list of
 * `problems` (file + what went wrong) instead of throwing. Rollout files can be large (10k+ records), so
 * they are indexed incrementally (byte offsets + the few fields the filters need) and pages are read back
 * by offset; a growing file is only parsed from where the last read stopped.
 */
import { promises as fsp, type Dirent } from "node:fs";
import { join } from "node:path";
import { rubricVersionFileSchema } from "../rubric/store.ts";
import type { RubricItem, RubricVersion } from "../rubric/types.ts";
import { formatZodIssues } from "../util/errors.ts";
import { isInside, runIdOf, safeFile } from "./paths.ts";
import { diffRubricItems, type RubricDiff } from "./rubric-diff.ts";
import { repetitionStats, type StepPoint } from "../meta/signals.ts";
import { scanLines } from "../util/lines.ts";
import { CHECKPOINTS_DIR, GUIDELINES_DIR, META_DIR, META_LOG_RE, METRICS_FILE, ROLLOUTS_DIR, ROLLOUTS_FILE_RE, RUBRICS_DIR, STATUS_FILE, VERSION_FILE_RE } from "../util/run-layout.ts";

export interface Problem {
  file: string;
  message: string;
}

function errText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e?.code ? `${e.code}${e.message ? ": " + e.message.replace(/^[A-Z]+: /, "") : ""}` : String((e as Error)?.message ?? e);
}

/** Reads a JSON file; missing → {missing}; unreadable or invalid → problem. */
async function readJsonFile(root: string, runDir: string, rel: string): Promise<{ value?: unknown; missing?: boolean; problem?: Problem }> {
  let path: string | null;
  try {
    path = safeFile(root, runDir, rel);
  } catch (err) {
    return { problem: { file: rel, message: (err as Error).message } };
  }
  if (!path) return { missing: true };
  let text: string;
  try {
    text = await fsp.readFile(path, "utf8");
  } catch (err) {
    return { problem: { file: rel, message: `cannot read (${errText(err)})` } };
  }
  try {
    return { value: JSON.parse(text) };
  } catch (err) {
    return { problem: { file: rel, message: text.trim() === "" ? "empty file (being written?)" : `invalid JSON (${(err as Error).message})` } };
  }
}

/** Problems kept per file; the rest are counted in one summary line (a file of bad lines must not flood the API). */
const MAX_PROBLEMS_PER_FILE = 20;

/** Collects a file's problems up to MAX_PROBLEMS_PER_FILE, then counts. */
class ProblemList {
  readonly list: Problem[] = [];
  private more = 0;
  constructor(private readonly file: string) {}
  add(message: string): void {
    if (this.list.length < MAX_PROBLEMS_PER_FILE) this.list.push({ file: this.file, message });
    else this.more++;
  }
  done(): Problem[] {
    if (this.more > 0) this.list.push({ file: this.file, message: `${this.more} more problems not listed` });
    this.more = 0;
    return this.list;
  }
}

/**
 * Reads a JSONL file line by line (streaming: no whole-file string, linear in its size whatever its line
 * lengths); bad lines become problems, a torn last line is noted, an oversized line is skipped and noted.
 */
export async function readJsonlFile(root: string, runDir: string, rel: string): Promise<{ records: Record<string, unknown>[]; problems: Problem[]; missing: boolean; mtimeMs?: number }> {
  let path: string | null;
  try {
    path = safeFile(root, runDir, rel);
  } catch (err) {
    return { records: [], problems: [{ file: rel, message: (err as Error).message }], missing: false };
  }
  if (!path) return { records: [], problems: [], missing: true };
  const problems = new ProblemList(rel);
  const records: Record<string, unknown>[] = [];
  let mtimeMs: number | undefined;
  try {
    mtimeMs = (await fsp.stat(path)).mtimeMs;
    await scanLines(
      path,
      (buf, lineNo, _offset, complete) => {
        const line = buf.toString("utf8");
        if (line.trim() === "") return;
        try {
          const v = JSON.parse(line);
          if (v && typeof v === "object" && !Array.isArray(v)) records.push(v);
          else problems.add(`line ${lineNo}: not a JSON object`);
        } catch {
          problems.add(complete ? `line ${lineNo}: invalid JSON, skipped` : `line ${lineNo}: incomplete last line (being written, or torn by a crash)`);
        }
      },
      { includeTail: true, maxLineBytes: MAX_LINE_BYTES, onOversized: (lineNo, _o, bytes) => problems.add(`line ${lineNo}: ${bytes} bytes, longer than ${MAX_LINE_BYTES}; skipped`) },
    );
  } catch (err) {
    return { records: [], problems: [{ file: rel, message: `cannot read (${errText(err)})` }], missing: false };
  }
  return { records, problems: problems.done(), missing: false, mtimeMs };
}

/** Lines longer than this (a corrupt file, a runaway record) are skipped rather than buffered. */
const MAX_LINE_BYTES = 16 * 1024 * 1024;

const maxOf = (xs: readonly number[]): number | null => {
  let m: number | null = null;
  for (const x of xs) if (m === null || x > m) m = x;
  return m;
};

const SKIP_DIRS = new Set([CHECKPOINTS_DIR, ROLLOUTS_DIR, RUBRICS_DIR, GUIDELINES_DIR, META_DIR, "node_modules"]);
const RUN_MARKERS = [STATUS_FILE, METRICS_FILE];

/** Directories under root that look like runs (contain status.json or metrics.jsonl), nested up to maxDepth. */
export async function discoverRuns(root: string, maxDepth = 5): Promise<string[]> {
  const found: string[] = [];
  const visited = new Set<string>();
  async function walk(dir: string, depth: number): Promise<void> {
    let real: string;
    try {
      real = await fsp.realpath(dir);
    } catch {
      return;
    }
    if (!isInside(root, real) || visited.has(real)) return;
    visited.add(real);
    let entries: Dirent[];
    try {
      entries = await fsp.readdir(real, { withFileTypes: true });
    } catch {
      return;
    }
    if (entries.some((e) => RUN_MARKERS.includes(e.name))) found.push(runIdOf(root, real));
    if (depth >= maxDepth) return;
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      if (e.name.startsWith(".") || SKIP_DIRS.has(e.name)) continue;
      if (e.isDirectory() || e.isSymbolicLink()) await walk(join(real, e.name), depth + 1);
    }
  }
  await walk(root, 0);
  return found;
}

export type RunState = "running" | "finished" | "crashed" | "stopped" | "unknown";

export interface RunSummary {
  id: string;
  task: string | null;
  algorithm: string | null;
  arm: string | null;
  state: RunState;
  /** A "running" run whose writer looks dead (its pid is gone on this machine, or no file changed for staleMs). */
  stale: boolean;
  staleReason: string | null;
  message: string | null;
  step: number | null;
  totalSteps: number | null;
  /** Number of metrics records. */
  steps: number;
  lastStep: number | null;
  rubricVersions: number;
  lastUpdate: string | null;
  problems: Problem[];
}

function str(v: unknown): string | null {
  return typeof v === "string" && v !== "" ? v : null;
}
function num(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM"; // exists, owned by someone else
  }
}

async function mtimeOf(p: string): Promise<number | null> {
  try {
    return (await fsp.stat(p)).mtimeMs;
  } catch {
    return null;
  }
}

export async function listVersionFiles(runDir: string, sub: string, re: RegExp): Promise<Array<{ name: string; n: number }>> {
  try {
    const names = await fsp.readdir(join(runDir, sub));
    return names
      .map((name) => ({ name, m: re.exec(name) }))
      .filter((x) => x.m)
      .map((x) => ({ name: x.name, n: Number(x.m![1]) }))
      .sort((a, b) => a.n - b.n);
  } catch {
    return [];
  }
}

export async function summarizeRun(root: string, runDir: string, staleMs = 10 * 60_000): Promise<RunSummary> {
  const id = runIdOf(root, runDir);
  const problems: Problem[] = [];
  const status = await readJsonFile(root, runDir, STATUS_FILE);
  if (status.problem) problems.push(status.problem);
  const config = await readJsonFile(root, runDir, "config.json");
  if (config.problem) problems.push(config.problem);
  const metrics = await readJsonlFile(root, runDir, METRICS_FILE);
  for (const p of metrics.problems) problems.push(p);
  const s = (status.value && typeof status.value === "object" ? status.value : {}) as Record<string, unknown>;
  const c = (config.value && typeof config.value === "object" ? config.value : {}) as Record<string, unknown>;
  const cTask = c.task as unknown;
  const task = str(s.task) ?? str(cTask) ?? str((cTask as Record<string, unknown> | undefined)?.name) ?? null;
  const algorithm = str(s.algorithm) ?? str(c.algorithm) ?? str((c.rl as Record<string, unknown> | undefined)?.algorithm) ?? null;
  const arm = str(s.arm) ?? str(c.arm) ?? null;
  const rawState = str(s.state);
  const state: RunState = rawState && ["running", "finished", "crashed", "stopped"].includes(rawState) ? (rawState as RunState) : "unknown";
  if (status.value && !rawState) problems.push({ file: STATUS_FILE, message: "no valid 'state' field" });
  const steps = metrics.records.map((r) => num(r.step)).filter((x): x is number => x !== null);
  const times = [
    Date.parse(str(s.updatedAt) ?? ""),
    metrics.mtimeMs ?? NaN,
    (await mtimeOf(join(runDir, STATUS_FILE))) ?? NaN,
    (await mtimeOf(join(runDir, ROLLOUTS_DIR))) ?? NaN,
  ].filter((t) => Number.isFinite(t));
  const last = maxOf(times);
  const rubrics = await listVersionFiles(runDir, RUBRICS_DIR, VERSION_FILE_RE);
  // kill -9 leaves state "running" behind; a pid that no longer exists here (or long silence) gives it away.
  let staleReason: string | null = null;
  if (state === "running") {
    const pid = num(s.pid);
    if (pid !== null && pid > 0 && Number.isInteger(pid) && !pidAlive(pid)) staleReason = `process ${pid} is not running on this machine`;
    else if (last !== null && Date.now() - last > staleMs) staleReason = `no file changes for ${Math.round((Date.now() - last) / 60_000)} min`;
  }
  return {
    id,
    task,
    algorithm,
    arm,
    state,
    stale: staleReason !== null,
    staleReason,
    message: str(s.message),
    step: num(s.step),
    totalSteps: num(s.totalSteps),
    steps: metrics.records.length,
    lastStep: maxOf(steps),
    rubricVersions: rubrics.length,
    lastUpdate: last !== null ? new Date(last).toISOString() : null,
    problems,
  };
}

/** The list entry of a run whose summary could not be built at all (the error becomes its problem). */
export function unreadableRun(id: string, err: unknown): RunSummary {
  return {
    id,
    task: null,
    algorithm: null,
    arm: null,
    state: "unknown",
    stale: false,
    staleReason: null,
    message: null,
    step: null,
    totalSteps: null,
    steps: 0,
    lastStep: null,
    rubricVersions: 0,
    lastUpdate: null,
    problems: [{ file: ".", message: `cannot summarize this run: ${errText(err)}` }],
  };
}

export interface MetricsResult {
  rows: Record<string, unknown>[];
  eval: Record<string, unknown>[];
  /** Steps at which a meta step ran (from metrics.meta and meta/step-N.json files). */
  metaSteps: Array<{
    step: number;
    toVersion: number | null;
    ok: boolean | null;
    added: number | null;
    removed: number | null;
    /** Adaptive schedule: what fired ("max-interval" or the trigger kinds); absent on the fixed schedule. */
    trigger?: string;
    /** The version the rubric guard refused, if it refused one. */
    rejectedVersion?: number;
  }>;
  problems: Problem[];
}

export async function readMetrics(root: string, runDir: string): Promise<MetricsResult> {
  const metrics = await readJsonlFile(root, runDir, METRICS_FILE);
  const ev = await readJsonlFile(root, runDir, "eval.jsonl");
  const rows = metrics.records.filter((r) => num(r.step) !== null).sort((a, b) => (a.step as number) - (b.step as number));
  const metaByStep = new Map<number, MetricsResult["metaSteps"][number]>();
  for (const r of rows) {
    const m = r.meta as Record<string, unknown> | undefined;
    if (m && typeof m === "object") {
      const toVersion = num(m.toVersion);
      // The trainer reports a meta step with the next step's metrics; `meta.step` names the step it ran after
      // (the one its log file is named for), so the marker and the log line up.
      const at = num(m.step) ?? (r.step as number);
      metaByStep.set(at, {
        step: at,
        toVersion,
        ok: typeof m.ok === "boolean" ? m.ok : null,
        added: Array.isArray(m.added) ? m.added.length : num(m.added),
        removed: Array.isArray(m.removed) ? m.removed.length : num(m.removed),
        ...triggerLabel(m.trigger),
        ...(num(m.rejectedVersion) !== null ? { rejectedVersion: num(m.rejectedVersion)! } : {}),
      });
    }
  }
  for (const f of await listMeta(root, runDir)) {
    if (!metaByStep.has(f.step)) metaByStep.set(f.step, { step: f.step, toVersion: null, ok: null, added: null, removed: null });
  }
  return {
    rows,
    eval: ev.records.filter((r) => num(r.step) !== null).sort((a, b) => (a.step as number) - (b.step as number)),
    metaSteps: [...metaByStep.values()].sort((a, b) => a.step - b.step),
    problems: [...metrics.problems, ...ev.problems],
  };
}

export interface RubricEntry {
  version: number;
  parent: number | null;
  step: number | null;
  author: RubricVersion["author"] | null;
  createdAt: string | null;
  analyses: string[];
  items: RubricItem[];
  hasText: boolean;
  /** Diff against the parent (or, for an initial version, against nothing: every item "added"). */
  diff: RubricDiff | null;
  /** Meta log steps that produced this version (author.step, or meta logs naming it as their result). */
  metaSteps: number[];
}

export async function readRubrics(root: string, runDir: string): Promise<{ versions: RubricEntry[]; problems: Problem[] }> {
  const problems: Problem[] = [];
  const files = await listVersionFiles(runDir, RUBRICS_DIR, VERSION_FILE_RE);
  const texts = new Set((await listVersionFiles(runDir, "rubrics", /^v(\d+)\.txt$/)).map((f) => f.n));
  const metaFiles = (await listMeta(root, runDir)).filter((m) => m.key === String(m.step)).map((m) => ({ n: m.step, name: m.file.slice("meta/".length) }));
  // Which meta step produced which version, from the meta logs themselves (they name their resulting version).
  const metaResult = new Map<number, number[]>();
  for (const f of metaFiles) {
    const r = await readJsonFile(root, runDir, `meta/${f.name}`);
    const v = r.value as Record<string, unknown> | undefined;
    const to = num(v?.resultVersion) ?? num(v?.toVersion) ?? num(v?.version) ?? num((v?.result as Record<string, unknown> | undefined)?.version);
    if (to !== null) metaResult.set(to, [...(metaResult.get(to) ?? []), f.n]);
  }
  const versions: RubricEntry[] = [];
  for (const f of files) {
    const rel = `rubrics/${f.name}`;
    const r = await readJsonFile(root, runDir, rel);
    if (r.problem) {
      problems.push(r.problem);
      continue;
    }
    // The store's own schema (src/rubric/store.ts): a file the trainer could not load is a problem here too.
    const parsed = rubricVersionFileSchema.safeParse(r.value);
    if (!parsed.success) {
      problems.push({ file: rel, message: formatZodIssues("not a rubric version", parsed.error.issues) });
      continue;
    }
    const v = parsed.data;
    const author = v.author as RubricVersion["author"];
    const metaSteps = new Set<number>(metaResult.get(v.version) ?? []);
    if (author.kind === "meta" && metaFiles.some((m) => m.n === author.step)) metaSteps.add(author.step);
    versions.push({
      version: v.version,
      parent: v.parent,
      step: v.step,
      author,
      createdAt: v.createdAt,
      analyses: v.analyses,
      items: v.rubric.items.map((x): RubricItem => ({ name: x.name, text: x.text, min: x.min, max: x.max, ...(x.weight !== undefined ? { weight: x.weight } : {}) })),
      hasText: texts.has(f.n),
      diff: null,
      metaSteps: [...metaSteps].sort((a, b) => a - b),
    });
  }
  const byVersion = new Map(versions.map((v) => [v.version, v]));
  for (const v of versions) {
    if (v.parent === null) v.diff = diffRubricItems(null, { items: v.items });
    else {
      const p = byVersion.get(v.parent);
      if (p) v.diff = diffRubricItems({ items: p.items }, { items: v.items });
      else problems.push({ file: `rubrics/v${String(v.version).padStart(4, "0")}.json`, message: `parent version ${v.parent} could not be read; no diff` });
    }
  }
  return { versions, problems };
}

/** Meta logs: meta/step-NNNNNN.json (rubric) and meta/step-NNNNNN-<kind>.json (e.g. -guidelines). */
const META_RE = META_LOG_RE;

export async function listMeta(root: string, runDir: string): Promise<Array<{ step: number; key: string; file: string }>> {
  try {
    const names = await fsp.readdir(join(runDir, META_DIR));
    return names
      .map((name) => ({ name, m: META_RE.exec(name) }))
      .filter((x) => x.m)
      .map((x) => ({ step: Number(x.m![1]), key: `${Number(x.m![1])}${x.m![2] ?? ""}`, file: `meta/${x.name}` }))
      .sort((a, b) => a.step - b.step || a.key.localeCompare(b.key));
  } catch {
    return [];
  }
}

/** One meta log by key: "10" for meta/step-000010.json, "10-guidelines" for meta/step-000010-guidelines.json. */
export async function readMeta(root: string, runDir: string, key: string): Promise<{ log: unknown; problems: Problem[]; missing: boolean; file?: string }> {
  const f = (await listMeta(root, runDir)).find((x) => x.key === key);
  if (!f) return { log: null, problems: [], missing: true };
  const r = await readJsonFile(root, runDir, f.file);
  return { log: r.value ?? null, problems: r.problem ? [r.problem] : [], missing: false, file: f.file };
}

// ---------------------------------------------------------------- rollouts (indexed, paged)

interface RolloutSummary {
  offset: number;
  length: number;
  line: number;
  step: number;
  score: number | null;
  version: number | null;
  flags: string[];
  repeated: number;
  distinct2: number;
}

interface FileIndex {
  ino: number;
  size: number;
  parsedBytes: number;
  lines: number;
  entries: RolloutSummary[];
  bad: Problem[];
}

function collectFlags(r: Record<string, unknown>): string[] {
  const out = new Set<string>();
  const add = (xs: unknown) => Array.isArray(xs) && xs.forEach((x) => typeof x === "string" && out.add(x));
  add(r.flags);
  const ev = r.evaluation as Record<string, unknown> | null | undefined;
  if (ev && typeof ev === "object") {
    add(ev.flags);
    if (Array.isArray(ev.items)) for (const it of ev.items) add((it as Record<string, unknown>)?.flags);
  }
  return [...out];
}

/** Incremental per-file index; keyed by real path. A file that shrank or was replaced is re-indexed. */
export class RolloutIndex {
  private files = new Map<string, FileIndex>();

  async index(path: string, rel: string, stepHint: number): Promise<FileIndex> {
    const st = await fsp.stat(path);
    if (!st.isFile()) throw Object.assign(new Error("not a regular file"), { code: st.isDirectory() ? "EISDIR" : "ENOTFILE" });
    let idx = this.files.get(path);
    if (!idx || idx.ino !== st.ino || st.size < idx.size) {
      idx = { ino: st.ino, size: 0, parsedBytes: 0, lines: 0, entries: [], bad: [] };
      this.files.set(path, idx);
    }
    if (st.size === idx.size && idx.parsedBytes <= st.size) return idx;
    // Only whole lines count; a partial last line (a writer mid-append) is parsed once its newline arrives.
    const scan = await scanLines(
      path,
      (lineBuf, lineNo, offset) => {
        idx!.lines = lineNo;
        if (lineBuf.length > 0 && lineBuf.toString("utf8").trim() !== "") this.addLine(idx!, lineBuf, offset, rel, stepHint);
      },
      {
        start: idx.parsedBytes,
        firstLine: idx.lines + 1,
        maxLineBytes: MAX_LINE_BYTES,
        onOversized: (lineNo, _o, bytes) => {
          idx!.lines = lineNo;
          if (idx!.bad.length < MAX_PROBLEMS_PER_FILE) idx!.bad.push({ file: rel, message: `line ${lineNo}: ${bytes} bytes, longer than ${MAX_LINE_BYTES}; skipped` });
        },
      },
    );
    idx.lines = scan.lines;
    idx.parsedBytes = scan.parsedBytes;
    idx.size = st.size;
    return idx;
  }

  private addLine(idx: FileIndex, lineBuf: Buffer, offset: number, rel: string, stepHint: number): void {
    let r: Record<string, unknown>;
    try {
      r = JSON.parse(lineBuf.toString("utf8"));
      if (!r || typeof r !== "object" || Array.isArray(r)) throw new Error("not an object");
    } catch {
      if (idx.bad.length < MAX_PROBLEMS_PER_FILE) idx.bad.push({ file: rel, message: `line ${idx.lines}: invalid JSON, skipped` });
      return;
    }
    const response = typeof r.response === "string" ? r.response : "";
    const rep = repetitionStats(response);
    const ev = r.evaluation as Record<string, unknown> | null;
    idx.entries.push({
      offset,
      length: lineBuf.length,
      line: idx.lines,
      step: num(r.step) ?? stepHint,
      score: num(r.score) ?? num(ev?.total),
      version: num(r.rubricVersion) ?? num(ev?.rubricVersion),
      flags: collectFlags(r),
      repeated: rep.repeatedSentences,
      distinct2: rep.distinct2,
    });
  }

  /** Reads back full records for index entries (one positioned read each). */
  async read(path: string, entries: RolloutSummary[]): Promise<Record<string, unknown>[]> {
    if (entries.length === 0) return [];
    const fh = await fsp.open(path, "r");
    try {
      const out: Record<string, unknown>[] = [];
      for (const e of entries) {
        const buf = Buffer.alloc(e.length);
        await fh.read(buf, 0, e.length, e.offset);
        out.push(JSON.parse(buf.toString("utf8")));
      }
      return out;
    } finally {
      await fh.close();
    }
  }
}

export interface RolloutQuery {
  step?: number;
  minScore?: number;
  maxScore?: number;
  version?: number;
  flag?: string;
  offset: number;
  limit: number;
}

export interface RolloutPage {
  total: number;
  offset: number;
  limit: number;
  rollouts: Array<Record<string, unknown> & { _file: string; _line: number }>;
  facets: { steps: number[]; versions: number[]; flags: string[]; scoreMin: number | null; scoreMax: number | null; count: number };
  problems: Problem[];
}

async function rolloutFiles(runDir: string) {
  return listVersionFiles(runDir, ROLLOUTS_DIR, ROLLOUTS_FILE_RE);
}

export async function queryRollouts(root: string, runDir: string, index: RolloutIndex, q: RolloutQuery): Promise<RolloutPage> {
  const problems: Problem[] = [];
  const files = await rolloutFiles(runDir);
  const steps = new Set<number>();
  const versions = new Set<number>();
  const flags = new Set<string>();
  let scoreMin: number | null = null;
  let scoreMax: number | null = null;
  let count = 0;
  let total = 0;
  const page: Array<{ path: string; rel: string; entries: RolloutSummary[] }> = [];
  const want = (e: RolloutSummary) =>
    (q.step === undefined || e.step === q.step) &&
    (q.minScore === undefined || (e.score !== null && e.score >= q.minScore)) &&
    (q.maxScore === undefined || (e.score !== null && e.score <= q.maxScore)) &&
    (q.version === undefined || e.version === q.version) &&
    (q.flag === undefined || e.flags.includes(q.flag));
  for (const f of files) {
    const rel = `rollouts/${f.name}`;
    let idx: FileIndex;
    try {
      const path = safeFile(root, runDir, rel);
      if (!path) continue;
      idx = await index.index(path, rel, f.n);
      for (const b of idx.bad) problems.push(b);
      for (const e of idx.entries) {
        count++;
        steps.add(e.step);
        if (e.version !== null) versions.add(e.version);
        e.flags.forEach((x) => flags.add(x));
        if (e.score !== null) {
          scoreMin = scoreMin === null ? e.score : Math.min(scoreMin, e.score);
          scoreMax = scoreMax === null ? e.score : Math.max(scoreMax, e.score);
        }
      }
      // Steps outside the filter are still counted for facets above but skipped cheaply here.
      const matching = idx.entries.filter(want);
      // This file's matches occupy global positions [total, total + matching.length); take the overlap with the page.
      const from = Math.max(0, q.offset - total);
      const end = Math.min(matching.length, q.offset + q.limit - total);
      if (end > from) page.push({ path, rel, entries: matching.slice(from, end) });
      total += matching.length;
    } catch (err) {
      problems.push({ file: rel, message: `cannot read (${errText(err)})` });
    }
  }
  const rollouts: RolloutPage["rollouts"] = [];
  for (const p of page) {
    try {
      const recs = await index.read(p.path, p.entries);
      recs.forEach((r, i) => rollouts.push({ ...r, _file: p.rel, _line: p.entries[i].line }));
    } catch (err) {
      problems.push({ file: p.rel, message: `cannot read page (${errText(err)})` });
    }
  }
  return {
    total,
    offset: q.offset,
    limit: q.limit,
    rollouts,
    facets: { steps: [...steps].sort((a, b) => a - b), versions: [...versions].sort((a, b) => a - b), flags: [...flags].sort(), scoreMin, scoreMax, count },
    problems,
  };
}

/** Per-step means of rollout repetition statistics, for the signals. */
export async function rolloutStepStats(root: string, runDir: string, index: RolloutIndex): Promise<{ repetition: StepPoint[]; distinct2: StepPoint[]; problems: Problem[] }> {
  const problems: Problem[] = [];
  const agg = new Map<number, { n: number; rep: number; d2: number }>();
  for (const f of await rolloutFiles(runDir)) {
    const rel = `rollouts/${f.name}`;
    try {
      const path = safeFile(root, runDir, rel);
      if (!path) continue;
      const idx = await index.index(path, rel, f.n);
      for (const e of idx.entries) {
        const a = agg.get(e.step) ?? { n: 0, rep: 0, d2: 0 };
        a.n++;
        a.rep += e.repeated;
        a.d2 += e.distinct2;
        agg.set(e.step, a);
      }
    } catch (err) {
      problems.push({ file: rel, message: `cannot read (${errText(err)})` });
    }
  }
  const steps = [...agg.keys()].sort((a, b) => a - b);
  return {
    repetition: steps.map((s) => ({ step: s, value: agg.get(s)!.rep / agg.get(s)!.n })),
    distinct2: steps.map((s) => ({ step: s, value: agg.get(s)!.d2 / agg.get(s)!.n })),
    problems,
  };
}

/** "max-interval", or the kinds of the triggers that fired (metrics.meta.trigger of the adaptive schedule). */
function triggerLabel(t: unknown): { trigger?: string } {
  if (!t || typeof t !== "object") return {};
  const { reason, triggers } = t as { reason?: unknown; triggers?: unknown };
  const kinds = Array.isArray(triggers) ? triggers.map((x) => (x && typeof x === "object" ? String((x as { kind?: unknown }).kind) : "")).filter(Boolean) : [];
  if (reason === "trigger" && kinds.length) return { trigger: [...new Set(kinds)].join(", ") };
  return typeof reason === "string" ? { trigger: reason } : {};
}
