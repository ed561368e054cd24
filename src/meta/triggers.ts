/**
 * The adaptive meta schedule: run the senior judge when the recent rollouts say the rubric needs it, not
 * blindly every k steps (the paper's schedule, which stays the default).
 *
 * Input is a series of window points — one per training step (trainer) or per bucket of samples (reward
 * service) since the last meta step — each summarizing the scored rollouts of that step. A meta step is due when
 *
 *   sinceLast ≥ maxInterval                                   (never go too long without an audit), or
 *   sinceLast ≥ minInterval  and  some trigger fires:
 *     • a reward-hacking signal on the window (the dashboard's detectors, ./signals.ts: length blow-up or
 *       collapse, rising repetition, falling EOS rate, RM up while an eval metric falls);
 *     • score saturation:  mean normalized score over the last `recent` points ≥ saturation
 *       (the policy has learned what the rubric can see — time to look for what it cannot);
 *     • spread collapse:   mean within-step std of normalized scores over the last `recent` points ≤ minSpread
 *       (every sample scores alike → group-relative advantages are ≈ 0, GRPO/RLOO learn nothing);
 *     • judge flags rising: share of flagged samples (unparsed replies, fallbacks) over the last `recent`
 *       points ≥ flagShare, or risen by ≥ flagRise over the first `recent` points since the last meta step.
 *
 * Pure functions: the scheduler feeds them and records the decision (reason + evidence) in the meta log and
 * the metrics line, so every triggered step can be audited and marked on the dashboard.
 */
import { z } from "zod";
import { detectSignals, repetitionStats, type SignalKind, type SignalOptions, type StepPoint } from "./signals.ts";

/** Summary of one step's (or one service bucket's) scored rollouts. */
export interface WindowPoint {
  step: number;
  /** Samples with a usable normalized score. */
  n: number;
  /** Mean normalized score in [0, 1]. */
  meanScore: number;
  /** Std of normalized scores within the step (0 for a single sample). */
  scoreStd: number;
  /** Mean response length (tokens where known, else words). */
  responseLength: number;
  /** Share of responses that ended on their own (undefined when unknown, e.g. in the reward service). */
  eosRate?: number;
  /** Mean share of repeated sentences per response. */
  repetition: number;
  /** Mean distinct-2 per response. */
  distinct2: number;
  /** Share of samples whose evaluation carries a judge flag. */
  flagged: number;
}

export interface PointSample {
  normalized: number | null;
  response: string;
  /** Tokens of the response, when the caller knows them. */
  length?: number;
  finished?: boolean;
  flags?: readonly string[];
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
const std = (xs: number[]) => {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / xs.length);
};
const words = (s: string) => (s.match(/\S+/g) ?? []).length;

/** Summarizes one step's samples (samples without a usable score still count for length/EOS/flags). */
export function windowPoint(step: number, samples: readonly PointSample[]): WindowPoint {
  const scores = samples.map((s) => s.normalized).filter((x): x is number => x !== null && Number.isFinite(x));
  const rep = samples.map((s) => repetitionStats(s.response));
  const known = samples.filter((s) => s.finished !== undefined);
  return {
    step,
    n: scores.length,
    meanScore: mean(scores),
    scoreStd: std(scores),
    responseLength: mean(samples.map((s) => s.length ?? words(s.response))),
    ...(known.length ? { eosRate: known.filter((s) => s.finished).length / known.length } : {}),
    repetition: mean(rep.map((r) => r.repeatedSentences)),
    distinct2: mean(rep.map((r) => r.distinct2)),
    flagged: samples.length ? samples.filter((s) => (s.flags?.length ?? 0) > 0).length / samples.length : 0,
  };
}

export interface AdaptiveOptions {
  /** Fewest steps between meta steps, whatever fires (a new rubric needs a few steps to show its effect). */
  minInterval: number;
  /** Most steps between meta steps: one runs then even if nothing fired. */
  maxInterval: number;
  /** Points (most recent) that the saturation, spread and flag triggers average over. */
  recent: number;
  saturation: number;
  minSpread: number;
  flagShare: number;
  flagRise: number;
  /** Options for the hacking detectors (their window is in points). */
  signals: Partial<SignalOptions>;
}

export const DEFAULT_ADAPTIVE: AdaptiveOptions = {
  minInterval: 3,
  maxInterval: 20,
  recent: 3,
  saturation: 0.85,
  minSpread: 0.05,
  flagShare: 0.2,
  flagRise: 0.15,
  signals: { window: 3 },
};

export type TriggerKind = SignalKind | "score-saturated" | "spread-collapsed" | "flags-rising";

export interface Trigger {
  kind: TriggerKind;
  message: string;
  evidence: Record<string, number>;
}

export interface MetaDecision {
  due: boolean;
  /** Why it is due ("trigger" / "max-interval" / "interval" for the fixed schedule), or why not. */
  reason: "trigger" | "max-interval" | "interval" | "min-interval" | "quiet";
  sinceLast: number;
  /** Every trigger that fired on the window (also when min-interval held the step back). */
  triggers: Trigger[];
}

const f3 = (x: number) => x.toFixed(3);

/** The triggers that fire on `points` (the window since the last meta step, oldest first). */
export function triggersFor(points: readonly WindowPoint[], o: AdaptiveOptions = DEFAULT_ADAPTIVE, evals?: Record<string, StepPoint[]>): Trigger[] {
  const out: Trigger[] = [];
  const scored = points.filter((p) => p.n > 0);
  const series = (get: (p: WindowPoint) => number | undefined, from = points): StepPoint[] =>
    from.flatMap((p) => {
      const v = get(p);
      return v === undefined || !Number.isFinite(v) ? [] : [{ step: p.step, value: v }];
    });
  const signals = detectSignals(
    {
      score: series((p) => p.meanScore, scored),
      responseLength: series((p) => p.responseLength),
      eosRate: series((p) => p.eosRate),
      repetition: series((p) => p.repetition),
      distinct2: series((p) => p.distinct2),
      ...(evals ? { evals } : {}),
    },
    o.signals,
  );
  // One trigger per kind and metric: the detectors may report several step ranges for one drift.
  const seen = new Set<string>();
  for (const s of signals) {
    const key = `${s.kind}:${s.metric}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ kind: s.kind, message: s.message, evidence: { ...s.evidence, from: s.steps.from, to: s.steps.to } });
  }

  const last = scored.slice(-o.recent);
  if (last.length >= o.recent) {
    const m = mean(last.map((p) => p.meanScore));
    if (m >= o.saturation) {
      out.push({
        kind: "score-saturated",
        message: `mean normalized score ${f3(m)} ≥ ${o.saturation} over the last ${last.length} steps: the rubric has little left to reward`,
        evidence: { meanScore: m, threshold: o.saturation, points: last.length },
      });
    }
    const s = mean(last.map((p) => p.scoreStd));
    if (s <= o.minSpread) {
      out.push({
        kind: "spread-collapsed",
        message: `score spread ${f3(s)} ≤ ${o.minSpread} over the last ${last.length} steps: samples score alike, advantages vanish`,
        evidence: { scoreStd: s, threshold: o.minSpread, points: last.length },
      });
    }
  }
  const lastAll = points.slice(-o.recent);
  if (lastAll.length >= o.recent) {
    const share = mean(lastAll.map((p) => p.flagged));
    const first = mean(points.slice(0, o.recent).map((p) => p.flagged));
    const rise = points.length >= 2 * o.recent ? share - first : 0;
    if (share >= o.flagShare || rise >= o.flagRise) {
      out.push({
        kind: "flags-rising",
        message: `${(share * 100).toFixed(0)}% of recent samples carry judge flags${rise >= o.flagRise ? ` (up ${(rise * 100).toFixed(0)} points since the last meta step)` : ""}`,
        evidence: { share, rise, threshold: o.flagShare, riseThreshold: o.flagRise },
      });
    }
  }
  return out;
}

/** Adaptive schedule: is a meta step due after the newest point? `points` = window since the last meta step. */
export function decideAdaptive(points: readonly WindowPoint[], sinceLast: number, o: AdaptiveOptions = DEFAULT_ADAPTIVE, evals?: Record<string, StepPoint[]>): MetaDecision {
  const triggers = triggersFor(points, o, evals);
  if (sinceLast >= o.maxInterval) return { due: true, reason: "max-interval", sinceLast, triggers };
  if (triggers.length === 0) return { due: false, reason: "quiet", sinceLast, triggers };
  if (sinceLast < o.minInterval) return { due: false, reason: "min-interval", sinceLast, triggers };
  return { due: true, reason: "trigger", sinceLast, triggers };
}

/** The paper's schedule in the same shape: due every `interval` steps. */
export function decideFixed(sinceLast: number, interval: number): MetaDecision {
  const due = interval > 0 && sinceLast >= interval;
  return { due, reason: due ? "interval" : "quiet", sinceLast, triggers: [] };
}

/** Validates user-supplied adaptive options (CLI/config), naming the field at fault. */
export function adaptiveOptions(partial: Partial<AdaptiveOptions> = {}): AdaptiveOptions {
  const o = { ...DEFAULT_ADAPTIVE, ...partial, signals: { ...DEFAULT_ADAPTIVE.signals, ...(partial.signals ?? {}) } };
  const int = (k: "minInterval" | "maxInterval" | "recent", min: number) => {
    if (!Number.isInteger(o[k]) || o[k] < min) throw new Error(`adaptive schedule: '${k}' must be an integer ≥ ${min}, got ${o[k]}`);
  };
  int("minInterval", 1);
  int("maxInterval", 1);
  int("recent", 1);
  if (o.maxInterval < o.minInterval) throw new Error(`adaptive schedule: 'maxInterval' (${o.maxInterval}) must be ≥ 'minInterval' (${o.minInterval})`);
  for (const k of ["saturation", "minSpread", "flagShare", "flagRise"] as const) {
    if (!(Number.isFinite(o[k]) && o[k] >= 0 && o[k] <= 1)) throw new Error(`adaptive schedule: '${k}' must be in [0, 1], got ${o[k]}`);
  }
  return o;
}

/** Config/CLI schema of the adaptive thresholds (train config `adaptive:`, serve config `adaptive:`); all optional. */
export const adaptiveConfigSchema = z
  .object({
    minInterval: z.number().int().min(1),
    maxInterval: z.number().int().min(1),
    recent: z.number().int().min(1),
    saturation: z.number().min(0).max(1),
    minSpread: z.number().min(0).max(1),
    flagShare: z.number().min(0).max(1),
    flagRise: z.number().min(0).max(1),
  })
  .partial()
  .strict()
  .default({});
