/**
 * Rubric acceptance guard: a merged rubric replaces the current one only if scoring a fixed probe set with
 * both shows it does not make scoring worse. A meta step can lose a criterion that held an exploit back,
 * collapse the score spread, or reorder everything on a whim; each of those silently changes every later
 * reward. The guard measures, on the probe set P (recent rollouts stratified by score + known exploit cases E;
 * G = the non-exploit probes in the top half of scores under the current rubric, "good" cases):
 *
 *   exploit gap    gap(r) = mean_{e∈E} s_r(e) − mean_{g∈G} s_r(g)
 *                  reject if gap(new) − gap(cur) > maxExploitGain        (exploits gained on good answers)
 *   spread         σ(r) = std_{p∈P} s_r(p)
 *                  reject if σ(new) < minSpread and σ(new) < σ(cur)      (scores collapse: no signal for RL)
 *   rank order     ρ = Spearman(s_cur, s_new) over the probes the meta step did NOT analyze (and not in E)
 *                  reject if ρ < minRankCorrelation                      (a reordering no analysis asked for)
 *
 * s_r(p) is the normalized score in [0, 1]; probes the judge could not score under either rubric are left out.
 * The rollouts the meta step analyzed are exempt from the rank test: their analyses are what asked for the
 * change. Known exploit cases are rollouts that an ACCEPTED version demoted: probes that scored high under the
 * old rubric (≥ the probe median and ≥ 0.5) and dropped by ≥ exploitDrop under the new one. They are written
 * into the meta log of the step that found them, so the exploit set is always derived from the accepted
 * lineage (a rollback or a crash can never leave it out of step with the rubric versions).
 *
 * Cost per guarded meta step: the recent probes' scores under the current rubric are reused from the window
 * (they were scored with it), so the judge scores |recent| probes once (new rubric) and |E| exploit cases
 * twice — (|recent| + 2|E|) scorings, each one call per rubric item in per-item mode, one in single-call mode.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { join } from "node:path";
import type { RubricJudge } from "../judge/rubric-judge.ts";
import type { ScoreInput } from "../judge/types.ts";
import type { RubricStore } from "../rubric/store.ts";
import type { Rubric, RubricVersion } from "../rubric/types.ts";
import type { Rng } from "../util/rng.ts";
import { spearman as rankCorrelation } from "../util/stats.ts";
import type { MetaRollout } from "./format.ts";

export interface ProbeCase {
  id: string;
  input: ScoreInput;
  kind: "recent" | "exploit";
  /** Normalized score under the current rubric when already known (window rollouts). */
  before?: number | null;
}

/** Scores probe inputs under one rubric; null = unscorable (judge unavailable). Normalized to [0, 1]. */
export type ProbeScorer = (which: "current" | "candidate", inputs: ScoreInput[]) => Promise<Array<number | null>>;

export interface GuardOptions {
  /** Recent rollouts in the probe set (stratified by score). */
  probes: number;
  /** Known exploit cases carried (newest kept). */
  maxExploits: number;
  maxExploitGain: number;
  minSpread: number;
  minRankCorrelation: number;
  /** Drop of a high-scoring probe under an accepted version that marks it as an exploit case. */
  exploitDrop: number;
}

/** Config schema of the guard settings (train config `guard:`, serve config `guard:`); all optional. */
export const guardConfigSchema = z
  .object({
    probes: z.number().int().min(1),
    maxExploits: z.number().int().min(0),
    maxExploitGain: z.number().min(0).max(1),
    minSpread: z.number().min(0).max(1),
    minRankCorrelation: z.number().min(-1).max(1),
    exploitDrop: z.number().min(0).max(1),
  })
  .partial()
  .strict()
  .default({});

export const DEFAULT_GUARD: GuardOptions = {
  probes: 12,
  maxExploits: 8,
  maxExploitGain: 0.05,
  minSpread: 0.05,
  minRankCorrelation: 0.2,
  exploitDrop: 0.25,
};

export interface ProbeScore {
  id: string;
  kind: "recent" | "exploit";
  before: number | null;
  after: number | null;
}

export interface GuardDecision {
  accepted: boolean;
  /** Why it was rejected (empty when accepted). */
  reasons: string[];
  numbers: {
    probes: number;
    exploits: number;
    spreadBefore: number;
    spreadAfter: number;
    exploitGapBefore: number | null;
    exploitGapAfter: number | null;
    rankCorrelation: number | null;
    rankProbes: number;
  };
  probes: ProbeScore[];
  /** Scorings the guard asked the judge for (each = one evaluation of one response). */
  scorings: number;
  /** Exploit cases this (accepted) version revealed; empty when rejected. */
  newExploits: ProbeCase[];
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const std = (xs: number[]) => {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / xs.length);
};
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const k = s.length >> 1;
  return s.length % 2 ? s[k] : (s[k - 1] + s[k]) / 2;
};

/** Spearman rank correlation (ties averaged); when a side is constant: 1 if both are, else 0. */
export function spearman(a: number[], b: number[]): number {
  const rho = rankCorrelation(a, b);
  if (rho !== null) return rho;
  const constant = (xs: number[]) => xs.every((x) => x === xs[0]);
  return constant(a) && constant(b) ? 1 : 0;
}

/**
 * The recent part of the probe set: `n` rollouts stratified by their current score (sorted, cut into n
 * strata, one seeded pick per stratum), so the set spans bad to good answers whatever the score distribution.
 */
export function selectProbes<T extends { id: string; normalized: number | null }>(window: readonly T[], n: number, rng: Rng): T[] {
  const scored = window.filter((r) => r.normalized !== null && Number.isFinite(r.normalized)).sort((a, b) => a.normalized! - b.normalized! || (a.id < b.id ? -1 : 1));
  if (scored.length <= n) return scored;
  const out: T[] = [];
  for (let k = 0; k < n; k++) {
    const lo = Math.floor((k * scored.length) / n);
    const hi = Math.floor(((k + 1) * scored.length) / n);
    out.push(scored[lo + rng.int(hi - lo)]);
  }
  return out;
}

/** Decides whether `candidate` may replace `current`; see the module comment for the three tests. */
export async function guardRubric(args: {
  probes: readonly ProbeCase[];
  score: ProbeScorer;
  /** Rollout ids the meta step analyzed (exempt from the rank test). */
  analyzedIds?: ReadonlySet<string>;
  options?: Partial<GuardOptions>;
}): Promise<GuardDecision> {
  const o = { ...DEFAULT_GUARD, ...args.options };
  const probes = [...args.probes];
  const needBefore = probes.filter((p) => p.before === undefined || p.before === null);
  const beforeScores = needBefore.length ? await args.score("current", needBefore.map((p) => p.input)) : [];
  const afterScores = await args.score("candidate", probes.map((p) => p.input));
  const before = new Map<string, number | null>();
  probes.forEach((p) => before.set(p.id, p.before ?? null));
  needBefore.forEach((p, i) => before.set(p.id, beforeScores[i] ?? null));
  const scored: ProbeScore[] = probes.map((p, i) => ({ id: p.id, kind: p.kind, before: before.get(p.id) ?? null, after: afterScores[i] ?? null }));
  const both = scored.filter((s): s is ProbeScore & { before: number; after: number } => s.before !== null && s.after !== null);

  const reasons: string[] = [];
  const spreadBefore = std(both.map((s) => s.before));
  const spreadAfter = std(both.map((s) => s.after));
  // (1e-9: a spread that was already ~0 under the current rubric is not "collapsed" by the candidate)
  if (both.length >= 2 && spreadAfter < o.minSpread && spreadAfter < spreadBefore - 1e-9) {
    reasons.push(`score spread collapses: σ ${spreadBefore.toFixed(3)} → ${spreadAfter.toFixed(3)} (< ${o.minSpread}) on ${both.length} probes`);
  }

  const exploits = both.filter((s) => s.kind === "exploit");
  const others = both.filter((s) => s.kind !== "exploit");
  let gapBefore: number | null = null;
  let gapAfter: number | null = null;
  if (exploits.length > 0 && others.length > 0) {
    const cut = median(others.map((s) => s.before));
    const good = others.filter((s) => s.before >= cut);
    gapBefore = mean(exploits.map((s) => s.before)) - mean(good.map((s) => s.before));
    gapAfter = mean(exploits.map((s) => s.after)) - mean(good.map((s) => s.after));
    if (gapAfter - gapBefore > o.maxExploitGain) {
      reasons.push(
        `known exploit cases gain on good answers: gap ${gapBefore.toFixed(3)} → ${gapAfter.toFixed(3)} (+${(gapAfter - gapBefore).toFixed(3)} > ${o.maxExploitGain}) over ${exploits.length} exploit and ${good.length} good probes`,
      );
    }
  }

  const rankSet = others.filter((s) => !args.analyzedIds?.has(s.id));
  let rho: number | null = null;
  if (rankSet.length >= 5) {
    rho = spearman(
      rankSet.map((s) => s.before),
      rankSet.map((s) => s.after),
    );
    if (rho < o.minRankCorrelation) {
      reasons.push(`rank order of ${rankSet.length} probes no analysis covered changes too much: Spearman ρ ${rho.toFixed(3)} < ${o.minRankCorrelation}`);
    }
  }

  const accepted = reasons.length === 0;
  const newExploits: ProbeCase[] = [];
  if (accepted && others.length > 0) {
    const cut = Math.max(0.5, median(others.map((s) => s.before)));
    const byId = new Map(probes.map((p) => [p.id, p]));
    for (const s of others) {
      if (s.before >= cut && s.before - s.after >= o.exploitDrop) newExploits.push({ id: s.id, input: byId.get(s.id)!.input, kind: "exploit" });
    }
  }
  return {
    accepted,
    reasons,
    numbers: {
      probes: both.length,
      exploits: exploits.length,
      spreadBefore,
      spreadAfter,
      exploitGapBefore: gapBefore,
      exploitGapAfter: gapAfter,
      rankCorrelation: rho,
      rankProbes: rankSet.length,
    },
    probes: scored,
    scorings: needBefore.length + probes.length,
    newExploits,
  };
}

/** Exploit cases from the guard sections of meta logs (oldest first), deduplicated by id, newest `max` kept. */
export function exploitSet(logs: ReadonlyArray<{ guard?: { newExploits?: ProbeCase[] } } | null>, max: number): ProbeCase[] {
  const byId = new Map<string, ProbeCase>();
  for (const l of logs) for (const e of l?.guard?.newExploits ?? []) byId.set(e.id, { ...e, kind: "exploit", before: undefined });
  return [...byId.values()].slice(-max);
}

/** Flags that mean an evaluation's number was not read from the judge (a fallback): not a probe score. */
const FALLBACK_FLAG = /fallback|unparsed|empty|refusal|missing/;

/** Exploit cases recorded by the meta logs of the store's accepted versions (unreadable logs are skipped). */
export function loadExploits(runDir: string, store: RubricStore, max: number): ProbeCase[] {
  const logs = store
    .list()
    .filter((v) => !v.rejected && v.analyses.length > 0)
    .map((v) => {
      try {
        return JSON.parse(readFileSync(join(runDir, v.analyses[0]), "utf8")) as { guard?: { newExploits?: ProbeCase[] } };
      } catch {
        return null;
      }
    });
  return exploitSet(logs, max);
}

/**
 * The guard as metaStep's `guard` option, scoring with the run's own junior judge: probes = `probes` window
 * rollouts stratified by score (their window scores reused as "before" when made with the current version)
 * + the exploit cases of the accepted lineage.
 */
export function judgeGuard(args: {
  judge: RubricJudge;
  window: readonly MetaRollout[];
  runDir: string;
  store: RubricStore;
  rng: Rng;
  options?: Partial<GuardOptions>;
  concurrency?: number;
  signal?: AbortSignal;
  /**
   * What the junior judge was shown for a window rollout (the window holds the senior's view; under the paper
   * profile the junior sees a task persona and the bare prompt). Default: the rollout's own fields.
   */
  juniorInput?: (r: MetaRollout) => ScoreInput;
}): (candidate: Rubric, ctx: { previous: RubricVersion; analyzedIds: ReadonlySet<string> }) => Promise<GuardDecision> {
  const o = { ...DEFAULT_GUARD, ...args.options };
  return async (candidate, ctx) => {
    const byScore = args.window.map((r) => ({ id: r.id, normalized: r.evaluation?.normalized ?? null, r }));
    const recent: ProbeCase[] = selectProbes(byScore, o.probes, args.rng).map(({ r }) => ({
      id: r.id,
      kind: "recent",
      input: args.juniorInput
        ? args.juniorInput(r)
        : { taskDescription: r.taskDescription, prompt: r.prompt, response: r.response, ...(r.reference !== undefined ? { reference: r.reference } : {}), ...(r.group !== undefined ? { group: r.group } : {}) },
      before: r.evaluation.rubricVersion === ctx.previous.version && !r.evaluation.flags.some((f) => FALLBACK_FLAG.test(f)) ? r.evaluation.normalized : null,
    }));
    const seen = new Set(recent.map((p) => p.id));
    const exploits = loadExploits(args.runDir, args.store, o.maxExploits).filter((e) => !seen.has(e.id));
    const versions = { current: ctx.previous, candidate: { ...ctx.previous, version: ctx.previous.version + 1, parent: ctx.previous.version, rubric: candidate } };
    const score: ProbeScorer = async (which, inputs) => {
      const outcomes = await args.judge.scoreBatchSettled(inputs, versions[which], { concurrency: args.concurrency, signal: args.signal });
      if (outcomes.some((x) => !x.ok)) {
        const bad = outcomes.find((x) => !x.ok) as { ok: false; error: Error };
        throw bad.error; // judge down: the meta step keeps the current rubric
      }
      return outcomes.map((x) => {
        const e = (x as { ok: true; evaluation: { normalized: number; flags: string[]; items: Array<{ flags: string[] }> } }).evaluation;
        const fallback = e.flags.some((f) => FALLBACK_FLAG.test(f)) || e.items.some((it) => it.flags.some((f) => FALLBACK_FLAG.test(f)));
        return fallback || !Number.isFinite(e.normalized) ? null : e.normalized;
      });
    };
    return guardRubric({ probes: [...recent, ...exploits], score, analyzedIds: ctx.analyzedIds, options: o });
  };
}
