/**
 * One meta step of MPO: the senior judge (MRM) audits recent junior evaluations and rewrites the rubric.
 *
 *   sample (optionally prescreen: flawed-looking evaluations first) → analyze each sampled rollout
 *   (inflated? too harsh? what does the rubric miss? how is it exploited?) → refine, in the same
 *   conversation, into a full `<rubric>` → merge all valid refinements (up to a word budget) into one
 *   coherent rubric → drop exact-duplicate items → store it as the next version with its lineage.
 *
 * Failure safety is the point of the design: a rubric drives the reward of every later step, so a bad
 * meta step must never replace a good rubric. Any LLM failure in any stage, or a merge without usable
 * items, creates NO version; the current rubric stays, and the meta log records ok:false and why. The
 * function returns ok:false instead of throwing for these. Every text the MRM wrote is kept in the log
 * (`meta/step-NNNNNN.json`, written atomically) so a human can audit why the rubric changed.
 */
import { join } from "node:path";
import { mapLimit } from "../judge/concurrency.ts";
import { type ProtocolName, type ProtocolProfile, resolveProtocol } from "../judge/protocol.ts";
import { loadTemplates, type Templates } from "../judge/templates.ts";
import type { ChatMessage, ChatModel, ChatRequest, ChatResponse, UsageByStage } from "../llm/types.ts";
import { diffRubrics, summarizeDiff } from "../rubric/diff.ts";
import { parseRubricText, rubricToPlainText, rubricToText } from "../rubric/format.ts";
import type { RubricStore } from "../rubric/store.ts";
import type { Rubric, RubricItem, RubricVersion } from "../rubric/types.ts";
import { writeJsonAtomic } from "../util/atomic.ts";
import { metaLogFile } from "../util/run-layout.ts";
import type { Rng } from "../util/rng.ts";
import { formatEvaluation, formatTotal, itemTextKey, type MetaRollout, stripStops, truncateWords, wordCount, writeCriteria } from "./format.ts";
import type { GuardDecision } from "./guard.ts";
import type { MetaDecision } from "./triggers.ts";
import { MeteredModel } from "./metered.ts";

export type { MetaRollout } from "./format.ts";

export interface MetaStepOptions {
  model: ChatModel;
  rollouts: readonly MetaRollout[];
  store: RubricStore;
  /** Training step (names the log file and the version's lineage). */
  step: number;
  runDir: string;
  rng: Rng;
  /** Rollouts analyzed per meta step (paper: 20 default, 16 in the runs). */
  samples?: number;
  /** Protocol profile (templates, limits, turn structure); default "paper". See src/judge/protocol.ts. */
  protocol?: ProtocolName | ProtocolProfile;
  /** The senior's system turn (the task's persona, rendered); default: the profile's generic one. */
  persona?: string;
  /** Show the junior's per-item scores and rationales in the analysis (default: the profile's; paper shows the total only). */
  showRationales?: boolean;
  /** Label every evaluation sound/flawed first and sample flawed ones first (off in the paper's runs). */
  prescreen?: boolean;
  /** Word cap for each analysis: stated in the prompt and enforced by truncation (default: the profile's, 1,000). */
  analysisWordCap?: number;
  /** Total words of refinements handed to the merge (default: the profile's; paper 16,666). */
  mergeWordBudget?: number;
  templates?: Templates;
  /** Per-sample calls in flight (default 8). */
  concurrency?: number;
  temperature?: number;
  maxAnalysisTokens?: number;
  maxRefineTokens?: number;
  maxMergeTokens?: number;
  signal?: AbortSignal;
  /**
   * Rubric acceptance guard (./guard.ts): asked before the merged rubric becomes current. A rejected rubric is
   * stored with `rejected` set (lineage only, never current); a guard that throws (judge down) keeps the
   * current rubric and stores nothing, like any other failed stage.
   */
  guard?: (candidate: Rubric, ctx: { previous: RubricVersion; analyzedIds: ReadonlySet<string> }) => Promise<GuardDecision>;
  /** Why this step runs (adaptive schedule), recorded in the log. */
  trigger?: MetaDecision;
}

export interface RubricDiffCounts {
  itemsBefore: number;
  itemsAfter: number;
  /** Items new / gone / edited (see rubric/diff.ts for how items are matched). */
  added: number;
  removed: number;
  changed: number;
}

export interface MetaStepResult {
  ok: boolean;
  /** The new version (ok only); the current one when `unchanged`. */
  version?: RubricVersion;
  /** The merge reproduced the current rubric: no version was written (the log records the step). */
  unchanged?: boolean;
  /** The version the guard refused (stored for the lineage, never current). */
  rejected?: RubricVersion;
  guard?: GuardDecision;
  /** The version that was current when the step started (still current when !ok). */
  previous: RubricVersion;
  /** Run-dir-relative path of the meta log, e.g. "meta/step-000010.json" (also in version.analyses). */
  logPath: string;
  /** Absolute path of the same log. */
  logFile: string;
  error?: string;
  /** The underlying error of a failed LLM call (e.g. an LlmError), for callers that react to its kind. */
  cause?: unknown;
  usage: UsageByStage;
  /** e.g. "rubric v3 → v4: 5 items (+2, −1, ~1 changed)" or "rubric v3 kept: merge produced no items". */
  summary: string;
  diff?: RubricDiffCounts;
}

export type PrescreenVerdict = "sound" | "flawed" | "unclear";

interface SampleLog {
  id: string;
  prescreen?: { verdict: PrescreenVerdict; raw: string };
  analysis?: string;
  analysisTruncated?: boolean;
  refinementRaw?: string;
  refinement?: Rubric;
  refinementError?: string;
}

/** The JSON written to meta/step-NNNNNN.json. */
export interface MetaLog {
  kind: "rubric";
  step: number;
  ok: boolean;
  state: "running" | "done" | "failed" | "rejected" | "unchanged";
  error?: string;
  startedAt: string;
  finishedAt?: string;
  model: string;
  fromVersion: number;
  toVersion: number | null;
  settings: { samples: number; prescreen: boolean; analysisWordCap: number; mergeWordBudget: number; protocol?: string };
  rolloutCount: number;
  sampledIds: string[];
  prescreen?: { counts: Record<PrescreenVerdict, number>; labels: Record<string, PrescreenVerdict> };
  samples: SampleLog[];
  merge?: { input: string; includedRefinements: number; inputWords: number; output?: string; items?: number; duplicatesRemoved?: number; error?: string };
  errors: string[];
  usage: UsageByStage;
  summary?: string;
  diff?: RubricDiffCounts;
  /** The acceptance guard's decision, numbers and probe scores (when the guard is on). */
  guard?: GuardDecision;
  /** The schedule's decision that started this step (adaptive schedule: reason, triggers and evidence). */
  trigger?: MetaDecision;
}

/** Run-dir-relative meta log of a step (src/util/run-layout.ts names every run-dir file). */
export function metaLogPath(step: number, suffix = ""): string {
  return metaLogFile(step, suffix);
}

/** A stage's LLM call failed; carries the stage so the log says where. */
class StageFailure extends Error {
  constructor(stage: string, cause: unknown) {
    super(`${stage} failed: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = "StageFailure";
  }
}

/** Item counts of a rubric change, using the rubric diff's matching (same name, else renamed by text similarity). */
export function diffCounts(before: Rubric, after: Rubric): RubricDiffCounts {
  const d = diffRubrics(before, after);
  return {
    itemsBefore: before.items.length,
    itemsAfter: after.items.length,
    added: d.filter((x) => x.kind === "added").length,
    removed: d.filter((x) => x.kind === "removed").length,
    changed: d.filter((x) => x.kind === "changed").length,
  };
}

export function parseVerdict(text: string): PrescreenVerdict {
  const t = text.toLowerCase();
  const flawed = t.includes("flawed");
  const sound = /\bsound\b/.test(t);
  if (flawed && !sound) return "flawed";
  if (sound && !flawed) return "sound";
  return "unclear";
}

/** Removes items whose normalized text repeats an earlier item's; returns the count removed. */
export function dedupeItems(items: RubricItem[]): { items: RubricItem[]; removed: number } {
  const seen = new Set<string>();
  const out: RubricItem[] = [];
  for (const it of items) {
    const k = itemTextKey(it);
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(it);
  }
  return { items: out, removed: items.length - out.length };
}

/**
 * Joins refinements (in order) while the total stays within `budget` words; at least the first one.
 * `style` "paper" labels each as a criteria set and separates them with `separator` (the reference's form).
 */
export function joinRefinements(texts: string[], budget: number, style: { kind: "proposals" } | { kind: "sets"; separator: string } = { kind: "proposals" }): { text: string; included: number; words: number } {
  const parts: string[] = [];
  let words = 0;
  for (const [i, t] of texts.entries()) {
    const part = style.kind === "sets" ? `Scoring criteria set #${i + 1}:\n${t.trim()}\n` : `=== Proposal ${i + 1} ===\n${t.trim()}`;
    const w = wordCount(t);
    if (parts.length > 0 && words + w > budget) break;
    parts.push(part);
    words += w;
  }
  return { text: parts.join(style.kind === "sets" ? style.separator : "\n\n"), included: parts.length, words };
}

/** Runs one meta step; see the module comment. Never throws for LLM failures (returns ok:false). */
export async function metaStep(opts: MetaStepOptions): Promise<MetaStepResult> {
  const profile = resolveProtocol(opts.protocol);
  const sr = profile.senior;
  const T = profile.templates;
  const samples = opts.samples ?? 20;
  const prescreen = opts.prescreen ?? false;
  const analysisWordCap = opts.analysisWordCap ?? sr.analysisWordCap;
  const mergeWordBudget = opts.mergeWordBudget ?? sr.mergeWordBudget;
  const showItems = opts.showRationales ?? sr.evaluationShown === "items";
  const templates = opts.templates ?? loadTemplates();
  const concurrency = opts.concurrency ?? 8;
  const temperature = opts.temperature ?? sr.temperature;
  const stop = sr.stop.length ? { stop: sr.stop } : {};
  const shownEvaluation = (r: MetaRollout) => (showItems ? formatEvaluation(r.evaluation) : formatTotal(r.evaluation));
  // The rubric as the senior reads it: the paper shows the rubric file's own form (no attributes).
  const showRubric = (r: Rubric) => (sr.rubricShown === "plain" ? rubricToPlainText(r) : rubricToText(r));
  const model = new MeteredModel(opts.model);
  const previous = opts.store.latest();
  if (!previous) throw new Error(`metaStep: the rubric store ${opts.store.dir} is empty (initialize it with the initial rubric first)`);

  const logPath = metaLogPath(opts.step);
  const logFile = join(opts.runDir, logPath);
  const log: MetaLog = {
    kind: "rubric",
    step: opts.step,
    ok: false,
    state: "running",
    startedAt: new Date().toISOString(),
    model: opts.model.id,
    fromVersion: previous.version,
    toVersion: null,
    settings: { samples, prescreen, analysisWordCap, mergeWordBudget, protocol: profile.name },
    rolloutCount: opts.rollouts.length,
    sampledIds: [],
    samples: [],
    errors: [],
    usage: {},
    ...(opts.trigger ? { trigger: opts.trigger } : {}),
  };
  const rubricText = showRubric(previous.rubric);
  const system: ChatMessage = { role: "system", content: opts.persona?.trim() || templates.render(T.mrmSystem, {}) };
  // After the first failure, calls not yet started are skipped: the step is lost anyway.
  const failFast = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, failFast.signal]) : failFast.signal;

  const call = async (stageLabel: string, req: ChatRequest): Promise<ChatResponse> => {
    if (signal.aborted) throw new StageFailure(stageLabel, new Error("skipped after an earlier failure"));
    try {
      return await model.chat({ temperature, ...req, signal });
    } catch (err) {
      failFast.abort();
      throw new StageFailure(stageLabel, err);
    }
  };

  const fail = (error: string, cause?: unknown): MetaStepResult => {
    log.ok = false;
    log.state = "failed";
    log.error = error;
    log.finishedAt = new Date().toISOString();
    log.usage = model.meter.snapshot();
    log.summary = `rubric v${previous.version} kept: ${error}`;
    writeJsonAtomic(logFile, log);
    return { ok: false, previous, logPath, logFile, error, cause, usage: log.usage, summary: log.summary };
  };

  try {
    if (opts.rollouts.length === 0) return fail("no rollouts to analyze");

    // 1. Sampling (optionally prescreened).
    let chosen: MetaRollout[];
    const sampleLogs = new Map<string, SampleLog>();
    if (prescreen) {
      const labels = await mapLimit(opts.rollouts, concurrency, async (r) => {
        const res = await call(`prescreen of ${r.id}`, {
          stage: "mrm-prescreen",
          maxTokens: 4,
          constraint: { kind: "choice", options: ["sound", "flawed"] },
          messages: [
            system,
            {
              role: "user",
              content: templates.render(T.mrmPrescreen, {
                taskDescription: r.taskDescription,
                prompt: r.prompt,
                response: r.response,
                rubric: rubricText,
                evaluation: shownEvaluation(r),
              }),
            },
          ],
        });
        return { verdict: parseVerdict(res.text), raw: res.text };
      });
      const counts: Record<PrescreenVerdict, number> = { sound: 0, flawed: 0, unclear: 0 };
      const byId: Record<string, PrescreenVerdict> = {};
      opts.rollouts.forEach((r, i) => {
        counts[labels[i].verdict]++;
        byId[r.id] = labels[i].verdict;
        sampleLogs.set(r.id, { id: r.id, prescreen: labels[i] });
      });
      log.prescreen = { counts, labels: byId };
      const flawed = opts.rng.shuffle(opts.rollouts.filter((r) => byId[r.id] === "flawed"));
      const rest = opts.rng.shuffle(opts.rollouts.filter((r) => byId[r.id] !== "flawed"));
      chosen = [...flawed, ...rest].slice(0, samples);
    } else {
      chosen = opts.rng.sample(opts.rollouts, samples);
    }
    log.sampledIds = chosen.map((r) => r.id);
    log.samples = chosen.map((r) => sampleLogs.get(r.id) ?? { id: r.id });

    // 2 + 3. Analysis, then refinement in the same conversation, per sample.
    await mapLimit(chosen, concurrency, async (r, i) => {
      const s = log.samples[i];
      const messages: ChatMessage[] = [
        system,
        {
          role: "user",
          content: templates.render(T.mrmAnalyze, {
            taskDescription: r.taskDescription,
            prompt: r.prompt,
            response: r.response,
            reference: sr.seesReference ? (r.reference ?? "") : "",
            rubric: rubricText,
            evaluation: shownEvaluation(r),
            wordCap: analysisWordCap,
          }),
        },
      ];
      const an = await call(`analysis of ${r.id}`, { stage: "mrm-analyze", maxTokens: opts.maxAnalysisTokens ?? sr.analysisMaxTokens, ...stop, messages: messages.slice() });
      const cut = truncateWords(stripStops(an.text, sr.stop), analysisWordCap);
      s.analysis = cut.text;
      if (cut.truncated) s.analysisTruncated = true;
      messages.push({ role: "assistant", content: cut.text });
      messages.push({ role: "user", content: templates.render(T.mrmRefine, { wordCap: analysisWordCap }) });
      if (sr.refine.structure === "whole") {
        const ref = await call(`refinement of ${r.id}`, { stage: "mrm-refine", maxTokens: opts.maxRefineTokens ?? sr.refine.maxTokens, messages });
        s.refinementRaw = ref.text;
      } else {
        // The reference's form: "how many criteria?", then one criterion per turn in the same conversation.
        const w = await writeCriteria({
          call: (label, req) => call(`refinement of ${r.id} (${label})`, { stage: "mrm-refine", ...req }),
          messages,
          writing: sr.refine,
          stops: sr.stop,
          turns: { count: templates.render(T.mrmRefineCount!, {}), start: templates.render(T.mrmRefineStart!, {}), each: (i) => templates.render(T.mrmRefineEach!, { index: i, wordCap: sr.refine.structure === "count-then-each" ? sr.refine.itemWordCap : 300 }) },
        });
        s.refinementRaw = w.text;
        if (w.error) s.refinementError = w.error;
      }
      if (!s.refinementError) {
        try {
          s.refinement = parseRubricText(s.refinementRaw!, `refinement of ${r.id}`);
        } catch (err) {
          s.refinementError = (err as Error).message;
        }
      }
    });

    const valid = log.samples.filter((s) => s.refinement);
    for (const s of log.samples) if (s.refinementError) log.errors.push(`dropped refinement of ${s.id}: ${s.refinementError}`);
    if (valid.length === 0) return fail("no refinement contained a readable <rubric>");

    // 4. Merge.
    const joined = joinRefinements(
      valid.map((s) => showRubric(s.refinement!)),
      mergeWordBudget,
      sr.merge.structure === "count-then-each" ? { kind: "sets", separator: sr.mergeSeparator } : { kind: "proposals" },
    );
    log.merge = { input: joined.text, includedRefinements: joined.included, inputWords: joined.words };
    const mergeMessages: ChatMessage[] = [system, { role: "user", content: templates.render(T.mrmMerge, { refinements: joined.text }) }];
    let mergedText: string;
    if (sr.merge.structure === "whole") {
      const merged = await call("merge", { stage: "mrm-merge", maxTokens: opts.maxMergeTokens ?? sr.merge.maxTokens, messages: mergeMessages });
      mergedText = merged.text;
    } else {
      const w = await writeCriteria({
        call: (label, req) => call(`merge (${label})`, { stage: "mrm-merge", ...req }),
        messages: mergeMessages,
        writing: sr.merge,
        stops: sr.stop,
        turns: { count: templates.render(T.mrmMergeCount!, {}), start: templates.render(T.mrmMergeStart!, {}), each: (i) => templates.render(T.mrmMergeEach!, { index: i, wordCap: sr.merge.structure === "count-then-each" ? sr.merge.itemWordCap : 300 }) },
      });
      mergedText = w.text;
      if (w.error) {
        log.merge.output = mergedText;
        log.merge.error = w.error;
        return fail(`merge produced no usable items: ${w.error}`);
      }
    }
    log.merge.output = mergedText;
    let rubric: Rubric;
    try {
      rubric = parseRubricText(mergedText, "merged rubric");
    } catch (err) {
      log.merge.error = (err as Error).message;
      return fail(`merge produced no usable items: ${(err as Error).message}`);
    }
    const deduped = dedupeItems(rubric.items);
    log.merge.items = deduped.items.length;
    log.merge.duplicatesRemoved = deduped.removed;
    rubric = { items: deduped.items };

    // A merge that reproduces the current rubric is no new version (v2…v9 byte-identical would say the
    // rubric evolved when it did not); the step is still logged, with state "unchanged".
    if (rubricToText(rubric) === rubricToText(previous.rubric)) {
      log.ok = true;
      log.state = "unchanged";
      log.toVersion = previous.version;
      log.finishedAt = new Date().toISOString();
      log.summary = `rubric v${previous.version} unchanged: the merge reproduced it (no new version)`;
      log.diff = diffCounts(previous.rubric, rubric);
      log.usage = model.meter.snapshot();
      writeJsonAtomic(logFile, log);
      return { ok: true, version: previous, previous, unchanged: true, logPath, logFile, usage: log.usage, summary: log.summary, diff: log.diff };
    }

    // 5. Guard (optional): score a probe set with both rubrics before the new one may become current.
    if (opts.guard) {
      let decision: GuardDecision;
      try {
        decision = await opts.guard(rubric, { previous, analyzedIds: new Set(log.sampledIds) });
      } catch (err) {
        log.errors.push(`guard: ${(err as Error).message}`);
        return fail(`rubric guard could not score its probes: ${(err as Error).message}`, err);
      }
      log.guard = decision;
      if (!decision.accepted) {
        log.usage = model.meter.snapshot();
        writeJsonAtomic(logFile, log);
        let rejected: RubricVersion;
        try {
          rejected = opts.store.add({ rubric, parent: previous.version, step: opts.step, author: { kind: "meta", step: opts.step }, analyses: [logPath], rejected: { reasons: decision.reasons } });
        } catch (err) {
          return fail(`merged rubric rejected by the store: ${(err as Error).message}`);
        }
        log.state = "rejected";
        log.toVersion = rejected.version;
        log.finishedAt = new Date().toISOString();
        log.summary = `rubric v${previous.version} kept: v${rejected.version} rejected by the guard (${decision.reasons.join("; ")})`;
        log.diff = diffCounts(previous.rubric, rubric);
        writeJsonAtomic(logFile, log);
        return { ok: false, previous, rejected, guard: decision, logPath, logFile, error: log.summary, usage: log.usage, summary: log.summary, diff: log.diff };
      }
    }

    // 6. Store: the log is written first (pointing at no version yet) so a version never references a missing log.
    log.usage = model.meter.snapshot();
    writeJsonAtomic(logFile, log);
    let version: RubricVersion;
    try {
      version = opts.store.add({ rubric, parent: previous.version, step: opts.step, author: { kind: "meta", step: opts.step }, analyses: [logPath] });
    } catch (err) {
      return fail(`merged rubric rejected by the store: ${(err as Error).message}`);
    }
    const diff = diffCounts(previous.rubric, version.rubric);
    const summary = summarizeDiff(previous, version);
    log.ok = true;
    log.state = "done";
    log.toVersion = version.version;
    log.finishedAt = new Date().toISOString();
    log.summary = summary;
    log.diff = diff;
    log.usage = model.meter.snapshot();
    writeJsonAtomic(logFile, log);
    return { ok: true, version, previous, logPath, logFile, usage: log.usage, summary, diff, ...(log.guard ? { guard: log.guard } : {}) };
  } catch (err) {
    if (err instanceof StageFailure) {
      log.errors.push(err.message);
      return fail(err.message, err.cause);
    }
    throw err;
  }
}
