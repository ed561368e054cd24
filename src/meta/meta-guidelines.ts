/**
 * The meta step for grouped guidelines (math): per group key ("algebra/1"), the MRM analyzes several
 * graded cases of that group together and rewrites that group's guideline text; the new texts form the
 * next GuidelineSet version. Groups whose rewrite is unreadable keep their old text (logged). Failure
 * safety as in metaStep: any LLM failure, or no group rewritten, creates no version and returns ok:false.
 */
import { join } from "node:path";
import { mapLimit } from "../judge/concurrency.ts";
import { type ProtocolName, type ProtocolProfile, resolveProtocol } from "../judge/protocol.ts";
import { loadTemplates, type Templates } from "../judge/templates.ts";
import type { ChatMessage, ChatModel, ChatRequest, ChatResponse, UsageByStage } from "../llm/types.ts";
import { guidelineFor } from "../rubric/guidelines.ts";
import type { GuidelineStore } from "../rubric/store.ts";
import type { GuidelineSet, GuidelineVersion } from "../rubric/types.ts";
import { writeJsonAtomic } from "../util/atomic.ts";
import type { Rng } from "../util/rng.ts";
import { extractTagged, formatEvaluation, type MetaRollout, stripStops, truncateWords } from "./format.ts";
import { metaLogPath } from "./meta-step.ts";
import { MeteredModel } from "./metered.ts";

export interface MetaStepGuidelinesOptions {
  model: ChatModel;
  /** Graded cases; `group` selects the guideline (missing → "default"). */
  rollouts: readonly MetaRollout[];
  store: GuidelineStore;
  step: number;
  runDir: string;
  rng: Rng;
  /** Protocol profile (case sampling, case form, word caps, reply form); default "paper". */
  protocol?: ProtocolName | ProtocolProfile;
  /** The senior's system turn (the task's persona, rendered); default: the profile's generic one. */
  persona?: string;
  /** Cases analyzed together per group when the profile samples uniformly (hardened: 4); the paper profile takes 2 per score third. */
  casesPerGroup?: number;
  /** At most this many groups rewritten per step, chosen at random (default: every group with cases). */
  maxGroups?: number;
  analysisWordCap?: number;
  /** Word cap stated for the rewritten guideline and enforced by truncation (default: the profile's; paper 1,000). */
  guidelineWordCap?: number;
  templates?: Templates;
  concurrency?: number;
  temperature?: number;
  signal?: AbortSignal;
}

export interface MetaStepGuidelinesResult {
  ok: boolean;
  version?: GuidelineVersion;
  previous: GuidelineVersion;
  logPath: string;
  logFile: string;
  error?: string;
  usage: UsageByStage;
  summary: string;
  /** Group keys whose text was rewritten. */
  updatedGroups: string[];
}

interface GroupLog {
  group: string;
  caseIds: string[];
  before: string;
  analysis?: string;
  refinementRaw?: string;
  after?: string;
  error?: string;
}

/**
 * The reference's case sampling: sort a group's cases by score (stable), cut them into three nearly equal
 * parts (the first parts take the remainder) and draw `k` at random from each part (all of a part that
 * has fewer); fewer than 3 cases → all of them.
 */
export function sampleByThirds<T>(cases: readonly T[], score: (c: T) => number, k: number, rng: Rng): T[] {
  const sorted = cases.map((c, i) => ({ c, i })).sort((a, b) => score(a.c) - score(b.c) || a.i - b.i).map((x) => x.c);
  const n = sorted.length;
  if (n < 3) return sorted;
  const base = Math.floor(n / 3);
  const rem = n % 3;
  const out: T[] = [];
  let start = 0;
  for (let part = 0; part < 3; part++) {
    const size = base + (part < rem ? 1 : 0);
    const chunk = sorted.slice(start, start + size);
    start += size;
    out.push(...rng.sample(chunk, Math.min(k, chunk.length)));
  }
  return out;
}

/** One case as the paper profile shows it: problem, response, reference solution, the junior's feedback (plan and execution, or the answer check's note), score. */
function paperCase(c: MetaRollout, i: number): string {
  const e = c.evaluation;
  const feedback = e.plan !== undefined ? `Evaluation plan:\n${e.plan}\n\nExecution of the plan:\n${e.items[0]?.rationale ?? ""}` : e.items.map((it) => it.rationale).join("\n");
  return [
    `### Case ${i + 1}`,
    `#### Problem\n${c.prompt}`,
    `#### Student's response\n${c.response}`,
    `#### Reference solution\n${c.reference ?? "(none)"}`,
    `#### Junior instructor's feedback\n${feedback}`,
    `#### Score assigned\n${e.total}`,
  ].join("\n\n");
}

/** Guideline text as stored and shown: a `[Start of …] … [End of …]` wrapper (the paper's files) is removed. */
export function unwrapGuideline(text: string): string {
  const m = /^\s*\[Start of [^\]\n]*\]\s*\n?([\s\S]*?)\n?\s*\[End of [^\]\n]*\]\s*$/i.exec(text);
  return (m ? m[1] : text).trim();
}

export async function metaStepGuidelines(opts: MetaStepGuidelinesOptions): Promise<MetaStepGuidelinesResult> {
  const profile = resolveProtocol(opts.protocol);
  const pm = profile.math;
  const casesPerGroup = opts.casesPerGroup ?? (pm.caseSampling.kind === "uniform" ? pm.caseSampling.perGroup : 4);
  const analysisWordCap = opts.analysisWordCap ?? pm.analysisWordCap;
  const guidelineWordCap = opts.guidelineWordCap ?? pm.guidelineWordCap;
  const templates = opts.templates ?? loadTemplates();
  const concurrency = opts.concurrency ?? 8;
  const temperature = opts.temperature ?? profile.senior.temperature;
  const stops = profile.senior.stop;
  const stop = stops.length ? { stop: [...stops] } : {};
  const model = new MeteredModel(opts.model);
  const previous = opts.store.latest();
  if (!previous) throw new Error(`metaStepGuidelines: the guideline store ${opts.store.dir} is empty (initialize it first)`);
  const logPath = metaLogPath(opts.step, "-guidelines");
  const logFile = join(opts.runDir, logPath);
  const log = {
    kind: "guidelines" as const,
    step: opts.step,
    ok: false,
    state: "running" as "running" | "done" | "failed",
    error: undefined as string | undefined,
    startedAt: new Date().toISOString(),
    finishedAt: undefined as string | undefined,
    model: opts.model.id,
    fromVersion: previous.version,
    toVersion: null as number | null,
    rolloutCount: opts.rollouts.length,
    groups: [] as GroupLog[],
    errors: [] as string[],
    usage: {} as UsageByStage,
    summary: undefined as string | undefined,
  };
  const failFast = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, failFast.signal]) : failFast.signal;
  let failure: string | undefined;
  const call = async (label: string, req: ChatRequest): Promise<ChatResponse> => {
    if (signal.aborted) throw new Error(`${label} skipped after an earlier failure`);
    try {
      return await model.chat({ temperature, ...req, signal });
    } catch (err) {
      failFast.abort();
      failure ??= `${label} failed: ${(err as Error)?.message ?? String(err)}`;
      throw err;
    }
  };
  const finish = (ok: boolean, error?: string, version?: GuidelineVersion, updated: string[] = []): MetaStepGuidelinesResult => {
    log.ok = ok;
    log.state = ok ? "done" : "failed";
    log.error = error;
    log.finishedAt = new Date().toISOString();
    log.usage = model.meter.snapshot();
    log.toVersion = version?.version ?? null;
    log.summary = ok
      ? `guidelines v${previous.version} → v${version!.version}: rewrote ${updated.length} group(s) (${updated.join(", ")})`
      : `guidelines v${previous.version} kept: ${error}`;
    writeJsonAtomic(logFile, log);
    return { ok, version, previous, logPath, logFile, error, usage: log.usage, summary: log.summary, updatedGroups: updated };
  };

  if (opts.rollouts.length === 0) return finish(false, "no rollouts to analyze");
  const byGroup = new Map<string, MetaRollout[]>();
  for (const r of opts.rollouts) {
    const g = r.group ?? "default";
    if (!byGroup.has(g)) byGroup.set(g, []);
    byGroup.get(g)!.push(r);
  }
  let keys = [...byGroup.keys()].sort();
  if (opts.maxGroups !== undefined) keys = opts.rng.sample(keys, opts.maxGroups).sort();
  const system: ChatMessage = { role: "system", content: opts.persona?.trim() || templates.render(profile.templates.mrmSystem, {}) };

  log.groups = keys.map((group) => {
    const all = byGroup.get(group)!;
    const cases = pm.caseSampling.kind === "thirds" && opts.casesPerGroup === undefined ? sampleByThirds(all, (c) => c.evaluation.total, pm.caseSampling.perThird, opts.rng) : opts.rng.sample(all, casesPerGroup);
    return { group, caseIds: cases.map((c) => c.id), before: guidelineFor(previous.guidelines, group) ?? "" };
  });
  try {
    await mapLimit(log.groups, concurrency, async (gl) => {
      const cases = gl.caseIds.map((id) => byGroup.get(gl.group)!.find((r) => r.id === id)!);
      const casesText =
        profile.senior.evaluationShown === "total"
          ? cases.map(paperCase).join("\n\n")
          : cases
              .map(
                (c, i) =>
                  `### Case ${i + 1}\nProblem:\n${c.prompt}\n\nReference solution:\n${c.reference ?? "(none)"}\n\nStudent solution:\n${c.response}\n\nJunior grade:\n${formatEvaluation(c.evaluation, 150)}`,
              )
              .join("\n\n");
      const messages: ChatMessage[] = [
        system,
        {
          role: "user",
          content: templates.render(profile.templates.guidelinesAnalyze, {
            group: gl.group,
            guidelines: unwrapGuideline(gl.before) || "(none yet)",
            cases: casesText,
            wordCap: analysisWordCap,
          }),
        },
      ];
      const an = await call(`analysis of group ${gl.group}`, { stage: "mrm-analyze", maxTokens: pm.analysisMaxTokens, ...stop, messages: messages.slice() });
      gl.analysis = truncateWords(stripStops(an.text, stops), analysisWordCap).text;
      messages.push({ role: "assistant", content: gl.analysis });
      messages.push({ role: "user", content: templates.render(profile.templates.guidelinesRefine, { group: gl.group, wordCap: guidelineWordCap }) });
      const ref = await call(`rewrite of group ${gl.group}`, { stage: "mrm-refine", maxTokens: pm.refineMaxTokens, ...stop, messages });
      gl.refinementRaw = ref.text;
      const text = pm.guidelineReply === "tagged" ? extractTagged(ref.text, "guidelines") : unwrapGuideline(stripStops(ref.text, stops));
      if (!text) gl.error = pm.guidelineReply === "tagged" ? "no <guidelines> block in the rewrite" : "empty rewrite";
      else gl.after = truncateWords(text, guidelineWordCap).text;
    });
  } catch (err) {
    if (failure === undefined) throw err; // not an LLM failure: a bug, keep its stack
    const msg = failure;
    log.errors.push(msg);
    return finish(false, msg);
  }
  for (const gl of log.groups) if (gl.error) log.errors.push(`group ${gl.group}: ${gl.error}`);
  const updated = log.groups.filter((g) => g.after !== undefined);
  if (updated.length === 0) return finish(false, "no group's rewrite was readable");
  const next: GuidelineSet = { groups: { ...previous.guidelines.groups } };
  for (const g of updated) next.groups[g.group] = g.after!;
  log.usage = model.meter.snapshot();
  writeJsonAtomic(logFile, log);
  let version: GuidelineVersion;
  try {
    version = opts.store.add({ guidelines: next, parent: previous.version, step: opts.step, author: { kind: "meta", step: opts.step }, analyses: [logPath] });
  } catch (err) {
    return finish(false, `new guidelines rejected by the store: ${(err as Error).message}`);
  }
  return finish(true, undefined, version, updated.map((g) => g.group));
}
