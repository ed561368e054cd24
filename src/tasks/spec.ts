/**
 * A task described as data: where its records come from, which record fields feed which template
 * placeholders, the prompt template files, the reward recipe and the evaluations. `buildTask(spec)` turns
 * it into a TaskDefinition. The built-in tasks (essay, summarization, ethics, math) are specs like this,
 * and a user task from a YAML file (./config.ts) becomes one too — so nothing else in the code needs to
 * know which task it is running.
 */
import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import type { ChatMessage } from "../llm/types.ts";
import { UserError } from "../util/errors.ts";
import { loadTemplates, matchTemplate, renderTemplate, templatePattern, type TemplatePattern, type Templates } from "../judge/templates.ts";
import { readTable, requireText, optionalText, getField, type Row } from "../data/files.ts";
import { hfDatasetResolved, HfUnavailableError } from "../data/hf.ts";
import type { ResolvedDataSource, Split, TaskDefinition, TaskRecord, TaskRewardSpec } from "./types.ts";

/** Repository root (for built-in prompt files and the data shipped in data/). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/**
 * Where a split's rows come from: a local file (relative paths resolve against the data dir) or a Hub
 * dataset (read through the Hugging Face cache). `fallback` is a file shipped with the project, used when
 * the Hub dataset is neither cached nor reachable (so the default works offline).
 */
export type DataSource =
  | { path: string }
  | { hf: string; split: string; revision?: string; files?: string[]; fallback?: { path: string; note: string } };

export interface FieldMapping {
  /** Record id field; missing → `<task>-<split>-<row index>`. */
  id?: string;
  /** Template placeholder → field path (dotted). These fields are required unless listed in `optional`. */
  vars: Record<string, string>;
  /** Placeholders whose field may be missing or empty (templates should wrap them in {{#name}}…{{/name}}). */
  optional?: string[];
  reference?: string;
  label?: string;
  /** Field used as TaskRecord.group as is (math computes its groups instead). */
  group?: string;
  /** Extra fields copied to TaskRecord.meta. */
  meta?: string[];
  /**
   * Placeholders (names in `vars`) whose rows are dropped when the field is missing/null, instead of being
   * an error; the count is reported on stderr. For published datasets whose protocol filters incomplete
   * rows (Scruples anecdotes without an extracted action).
   */
  skipMissing?: string[];
}

export interface TemplateRef {
  /** Built-in template name under prompts/ (e.g. "tasks/essay/user.md") or a file path. */
  user: string;
  system?: string;
  /**
   * The task instruction (the preamble of the policy's prompt), rendered with the constants and offered
   * to the user template as {{instruction}}; the senior judge (and, when `judge.showInstruction`, the
   * junior) is shown it as the task description, as the reference does.
   */
  instruction?: string;
}

/** How the judges see this task under the paper profile (the reference's per-task framing). */
export interface JudgeSpec {
  /** Template of the judges' system turn: the task's persona (e.g. an English teacher for essays). */
  persona: string;
  /** Template rendering the bare prompt the judges see, from the record's template values. */
  prompt: string;
  /** Whether the junior judge sees the task instruction (essay: yes; summarization, ethics, math: no). */
  showInstruction: boolean;
}

export interface TaskSpec {
  name: string;
  description: string;
  data: Partial<Record<Split, DataSource>>;
  fields: FieldMapping;
  templates: TemplateRef;
  /** Constant template values (e.g. max_words). */
  constants?: Record<string, string | number>;
  reward: TaskRewardSpec;
  /** Judge persona and view (absent: the generic view, our task description and the whole policy prompt). */
  judge?: JudgeSpec;
  /** Task-level defaults of the MPO meta step (overridden by the run's config). */
  meta?: TaskDefinition["metaDefaults"];
  evaluations: TaskDefinition["evaluations"];
  accuracy?: TaskDefinition["accuracy"];
  /** Code hook for module tasks (math clustering); config tasks have none. */
  postprocess?: (records: TaskRecord[], split: Split, ctx: LoadContext) => Promise<TaskRecord[]>;
  /** Where the spec came from (config file path or "built-in"), for messages. */
  source?: string;
}

export interface TaskOptions {
  /** Base directory for relative data paths (default $MPO_DATA_DIR, else the current directory). */
  dataDir?: string;
  /**
   * Replace a split's source: a local file (JSONL/JSON/CSV/Parquet; `--data-file`), or a source recorded
   * by an earlier run (`task.dataSource(split)`), which loads exactly the same rows again.
   */
  data?: Partial<Record<Split, string | ResolvedDataSource>>;
  /** Override field mappings (placeholder → field path), e.g. { action: "action_description" }. */
  fields?: Record<string, string>;
  /** Directory overriding prompt templates (same relative names as prompts/). */
  promptsDir?: string;
  /** Cache for derived data (math clusters; default $MPO_DATA_CACHE, else ~/.cache/mpo). */
  cacheDir?: string;
  /** Hugging Face hub cache (default $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub). */
  hubCacheDir?: string;
  /** Hub URL override (default $HF_ENDPOINT, else https://huggingface.co). */
  hubUrl?: string;
  /** Never try the network for Hub datasets (default $HF_HUB_OFFLINE=1). */
  offline?: boolean;
  /** Math: clusters per domain (default 3) and the clustering seed (default 0). */
  clusters?: number;
  clusterSeed?: number;
}

export interface LoadContext {
  spec: TaskSpec;
  options: TaskOptions;
  dataDir: string;
  /** Loads another split's records without postprocessing (math fits clusters on train). */
  loadRaw(split: Split): Promise<TaskRecord[]>;
  /** The file a split was read from, when local (for cache fingerprints). */
  sourceFile(split: Split): string | null;
}

export function defaultDataDir(): string {
  return process.env.MPO_DATA_DIR || process.cwd();
}

/** Reads a template by built-in name or path; relative paths resolve against `baseDir` first. */
export function resolveTemplateText(ref: string, templates: Templates, baseDir?: string): { text: string; source: string } {
  const candidates = [isAbsolute(ref) ? ref : null, baseDir ? join(baseDir, ref) : null].filter((x): x is string => !!x);
  for (const c of candidates) if (existsSync(c)) return { text: readFileText(c), source: c };
  if (templates.has(ref)) return { text: templates.raw(ref), source: templates.sources.get(ref) ?? ref };
  throw new UserError(`prompt template not found: ${ref}${baseDir ? ` (looked in ${baseDir} and the built-in prompts/)` : ""}`);
}

function readFileText(p: string): string {
  return readFileSync(p, "utf8");
}

function render(text: string, values: Record<string, string | number>, source: string): string {
  return renderTemplate(text, values, source).replace(/\n{3,}/g, "\n\n").trim();
}

export function buildTask(spec: TaskSpec, options: TaskOptions = {}, baseDir?: string): TaskDefinition {
  const templates = loadTemplates(options.promptsDir);
  const user = resolveTemplateText(spec.templates.user, templates, baseDir);
  const system = spec.templates.system ? resolveTemplateText(spec.templates.system, templates, baseDir) : null;
  const instructionTpl = spec.templates.instruction ? resolveTemplateText(spec.templates.instruction, templates, baseDir) : null;
  const instruction = instructionTpl ? render(instructionTpl.text, { ...(spec.constants ?? {}) }, instructionTpl.source) : undefined;
  const judgeTpl = spec.judge
    ? { persona: resolveTemplateText(spec.judge.persona, templates, baseDir), prompt: resolveTemplateText(spec.judge.prompt, templates, baseDir) }
    : null;
  const vars = { ...spec.fields.vars, ...(options.fields ?? {}) };
  const optional = new Set(spec.fields.optional ?? []);
  const dataDir = options.dataDir ?? defaultDataDir();

  /** The split's source after options: a local file override, a recorded source, or the spec's own. */
  const sourceOf = (split: Split): DataSource | undefined => {
    const o = options.data?.[split];
    if (typeof o === "string") return { path: resolve(o) };
    return o ?? spec.data[split];
  };
  const sourceFileIn = (split: Split, dir: string): string | null => {
    const src = sourceOf(split);
    if (src && "path" in src) return isAbsolute(src.path) ? src.path : join(baseDir && !spec.source?.startsWith("built-in") ? baseDir : dir, src.path);
    return null;
  };
  const sourceFile = (split: Split) => sourceFileIn(split, dataDir);
  const flag = (split: Split) => `--data-file ${split}=PATH`;
  /** What each split was actually read from (recorded in a run's config so --resume reads the same rows). */
  const resolved = new Map<Split, ResolvedDataSource>();

  const readRows = async (split: Split, limit: number | undefined, dir: string): Promise<{ rows: Row[]; file: string }> => {
    const file = sourceFileIn(split, dir);
    if (file) {
      if (!existsSync(file)) throw new UserError(`task '${spec.name}': ${split} data not found at ${file}` + (options.data?.[split] ? "" : ` — pass a local file with ${flag(split)}`));
      resolved.set(split, { path: file });
      return { rows: await readTable(file, { limit }), file };
    }
    const src = sourceOf(split);
    if (!src) throw new UserError(`task '${spec.name}' has no '${split}' split (it has: ${Object.keys(spec.data).join(", ") || "none"}); pass a file for it with ${flag(split)}`);
    if ("hf" in src) {
      try {
        const got = await hfDatasetResolved(src.hf, src.split, {
          cacheDir: options.hubCacheDir,
          hubUrl: options.hubUrl,
          offline: options.offline,
          revision: src.revision,
          files: src.files,
          localFlag: flag(split),
          limit,
        });
        resolved.set(split, got.source);
        return { rows: got.rows, file: `hf:${src.hf}@${got.source.revision.slice(0, 12)}/${src.split}` };
      } catch (err) {
        if (!(err instanceof HfUnavailableError) || !("fallback" in src) || !src.fallback) throw err;
        const fb = isAbsolute(src.fallback.path) ? src.fallback.path : join(REPO_ROOT, src.fallback.path);
        process.stderr.write(`mpo: task '${spec.name}' ${split} data: ${src.hf} is not cached and ${err.cause}; using ${src.fallback.note} (${fb}). ${flag(split)} uses your own file.\n`);
        resolved.set(split, { path: fb });
        return { rows: await readTable(fb, { limit }), file: fb };
      }
    }
    throw new UserError(`task '${spec.name}': invalid data source for '${split}'`);
  };

  const toRecord = (row: Row, i: number, split: Split, file: string): TaskRecord => {
    const where = { file, row: i + 1 };
    const values: Record<string, string | number> = { ...(spec.constants ?? {}), ...(instruction !== undefined ? { instruction } : {}) };
    for (const [name, field] of Object.entries(vars)) {
      if (optional.has(name)) values[name] = optionalText(row, field) ?? "";
      else values[name] = requireText(row, field, where);
    }
    const id = spec.fields.id ? optionalText(row, spec.fields.id) : undefined;
    const record: TaskRecord = {
      id: id ?? `${spec.name}-${split}-${i}`,
      prompt: render(user.text, values, user.source),
    };
    if (spec.fields.reference) record.reference = requireText(row, spec.fields.reference, where);
    if (spec.fields.label) {
      const l = getField(row, spec.fields.label);
      if (l !== undefined && l !== null) record.label = String(l);
    }
    if (spec.fields.group) record.group = optionalText(row, spec.fields.group);
    const meta: Record<string, unknown> = { vars: Object.fromEntries(Object.keys(vars).map((k) => [k, values[k]])) };
    for (const m of spec.fields.meta ?? []) meta[m] = getField(row, m);
    record.meta = meta;
    return record;
  };

  // Whole splits are memoized per data dir: math reads train to fit/fingerprint its clusters on every load.
  const memo = new Map<string, Promise<TaskRecord[]>>();
  const loadRaw = async (split: Split, limit?: number, dir = dataDir): Promise<TaskRecord[]> => {
    const read = async () => {
      const { rows, file } = await readRows(split, limit, dir);
      const skip = (spec.fields.skipMissing ?? []).map((name) => vars[name] ?? name);
      const kept = skip.length ? rows.filter((r) => skip.every((f) => getField(r, f) !== undefined && getField(r, f) !== null)) : rows;
      if (kept.length < rows.length) process.stderr.write(`mpo: task '${spec.name}' ${split}: skipped ${rows.length - kept.length} of ${rows.length} rows missing ${skip.join(" / ")}\n`);
      return kept.map((r, i) => toRecord(r, i, split, file));
    };
    if (limit !== undefined) return read();
    const key = `${split}\u0000${dir}`;
    let p = memo.get(key);
    if (!p) {
      p = read();
      memo.set(key, p);
      p.catch(() => memo.delete(key));
    }
    return (await p).map((r) => ({ ...r }));
  };

  const ctx: LoadContext = { spec, options, dataDir, loadRaw: (s) => loadRaw(s), sourceFile };

  // The user template with the constants and instruction filled in, as a pattern: what a prompt's variables were.
  const fixed: Record<string, string | number> = { ...(spec.constants ?? {}), ...(instruction !== undefined ? { instruction } : {}) };
  let userPattern: TemplatePattern | undefined;
  const recordFromPrompt = (prompt: string): TaskRecord | undefined => {
    userPattern ??= templatePattern(user.text.replace(/\{\{\s*([A-Za-z_]\w*)\s*\}\}/g, (m, k: string) => (k in fixed ? String(fixed[k]) : m)), { whitespace: "required" });
    const got = matchTemplate(userPattern, prompt);
    const names = Object.keys(vars);
    let values: Record<string, string> | undefined;
    if (got) {
      values = Object.fromEntries(names.map((k) => [k, got[k] ?? ""]));
      // Exact: the record renders back to this very prompt (else the lenient whitespace of the pattern guessed);
      // only the ends may differ (a chat-template split trims the user turn).
      if (render(user.text, { ...fixed, ...values }, user.source).trim() !== prompt.trim()) values = undefined;
    }
    if (!values && names.length === 1) values = { [names[0]]: prompt };
    return values ? { id: "", prompt, meta: { vars: values } } : undefined;
  };

  return {
    name: spec.name,
    description: spec.description,
    recordFromPrompt,
    async load(split, opts) {
      const dir = opts?.dataDir ?? dataDir;
      const local: LoadContext = { ...ctx, dataDir: dir, loadRaw: (s) => loadRaw(s, undefined, dir), sourceFile: (s) => sourceFileIn(s, dir) };
      // Postprocessing (e.g. clustering) needs the whole split, so the limit applies afterwards.
      const records = spec.postprocess ? await spec.postprocess(await loadRaw(split, undefined, dir), split, local) : await loadRaw(split, opts?.limit, dir);
      return opts?.limit !== undefined ? records.slice(0, opts.limit) : records;
    },
    buildMessages(record: TaskRecord): ChatMessage[] {
      const messages: ChatMessage[] = [];
      if (system) messages.push({ role: "system", content: render(system.text, { ...(spec.constants ?? {}) }, system.source) });
      messages.push({ role: "user", content: record.prompt });
      return messages;
    },
    dataSource: (split) => resolved.get(split),
    reward: spec.reward,
    ...(instruction !== undefined ? { instruction } : {}),
    ...(spec.meta ? { metaDefaults: spec.meta } : {}),
    ...(judgeTpl
      ? {
          judgeView(record: TaskRecord) {
            const vars = (record.meta?.vars ?? {}) as Record<string, string | number>;
            const values = { ...(spec.constants ?? {}), ...vars, instruction: instruction ?? "" };
            return {
              persona: render(judgeTpl.persona.text, values, judgeTpl.persona.source),
              instruction: instruction ?? "",
              prompt: render(judgeTpl.prompt.text, values, judgeTpl.prompt.source),
              juniorSeesInstruction: spec.judge!.showInstruction,
            };
          },
        }
      : {}),
    evaluations: spec.evaluations,
    ...(spec.accuracy ? { accuracy: spec.accuracy } : {}),
    templates: { user: user.source, ...(system ? { system: system.source } : {}) },
  };
}
