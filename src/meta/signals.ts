/**
 * Reward-hacking signals computed from a run's logs. Pure functions (no I/O) so they are unit-testable and
 * reusable outside the dashboard. Each detector looks for a known symptom of a policy exploiting its judge:
 *  - RM score trending up while an eval/oracle metric trends down over the same window;
 *  - mean response length exploding or collapsing relative to the start of the run;
 *  - repetition rising (repeated sentences, falling distinct-2) in the rollouts;
 *  - EOS rate dropping (responses stop ending on their own and hit the length limit).
 * Every signal reports the step range it is based on, so the page can point at it on the curves.
 */

import { spearman } from "../util/stats.ts";

export interface StepPoint {
  step: number;
  value: number;
}

export interface SignalInput {
  /** Mean RM score per step (normalized score preferred: comparable across rubric versions). */
  score: StepPoint[];
  responseLength?: StepPoint[];
  eosRate?: StepPoint[];
  /** Mean fraction of repeated sentences per step (see repetitionStats). */
  repetition?: StepPoint[];
  /** Mean distinct-2 (unique word bigrams / bigrams) per step. */
  distinct2?: StepPoint[];
  /** Eval/oracle metrics by name. Higher is better unless the name matches options.lowerIsBetter. */
  evals?: Record<string, StepPoint[]>;
}

export interface SignalOptions {
  /** Points per sliding window for step-level series. */
  window: number;
  /** Eval points per sliding window (evals are usually sparser than steps). */
  evalWindow: number;
  /** Minimum |Spearman rank correlation| of a series with the step for it to count as a trend. */
  minTrend: number;
  /** Minimum relative change (of the series' mean magnitude) over the window for a trend to matter. */
  minRelChange: number;
  /** Length ratio (rolling median / starting median) beyond which length counts as exploding (or 1/x collapsing). */
  lengthRatio: number;
  /** Absolute rise of the repeated-sentence rate, or fall of distinct-2, that counts as drifting. */
  repetitionDelta: number;
  /** Absolute drop of the EOS rate that counts as a warning. */
  eosDrop: number;
  /** Eval metric names where lower is better (loss, perplexity, error …). */
  lowerIsBetter: RegExp;
}

export const DEFAULT_SIGNAL_OPTIONS: SignalOptions = {
  window: 5,
  evalWindow: 4,
  minTrend: 0.6,
  minRelChange: 0.03,
  lengthRatio: 1.8,
  repetitionDelta: 0.1,
  eosDrop: 0.2,
  lowerIsBetter: /loss|perplexity|ppl|error|\berr\b|wer|cer/i,
};

export type SignalKind = "rm-up-eval-down" | "length-explode" | "length-collapse" | "repetition-rising" | "eos-dropping";

export interface Signal {
  kind: SignalKind;
  /** The metric the signal is about (the eval metric for rm-up-eval-down). */
  metric: string;
  /** Inclusive step range the evidence comes from. */
  steps: { from: number; to: number };
  message: string;
  evidence: Record<string, number>;
}

/** Drops non-finite values and sorts by step (logs can be out of order after a resume). */
export function clean(points: StepPoint[] | undefined): StepPoint[] {
  if (!points) return [];
  return points.filter((p) => Number.isFinite(p.step) && Number.isFinite(p.value)).sort((a, b) => a.step - b.step);
}

/** Spearman rank correlation of values with steps: +1 steadily rising, −1 steadily falling, 0 for a flat series. */
export function trend(points: StepPoint[]): number {
  return spearman(
    points.map((p) => p.step),
    points.map((p) => p.value),
  ) ?? 0;
}

/** Least-squares change of the series across its step span (slope × span): robust to one noisy endpoint. */
export function fittedChange(points: StepPoint[]): number {
  const n = points.length;
  if (n < 2) return 0;
  const xs = points.map((p) => p.step);
  const ys = points.map((p) => p.value);
  const mx = xs.reduce((s, x) => s + x, 0) / n;
  const my = ys.reduce((s, y) => s + y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i] - mx) * (ys[i] - my);
    sxx += (xs[i] - mx) ** 2;
  }
  if (sxx === 0) return 0;
  return (sxy / sxx) * (xs[n - 1] - xs[0]);
}

function mean(xs: number[]): number {
  return xs.length ? xs.reduce((s, x) => s + x, 0) / xs.length : 0;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Merges overlapping/adjacent index ranges [start, end] (inclusive). */
function mergeRanges(ranges: Array<[number, number]>): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const r of [...ranges].sort((a, b) => a[0] - b[0])) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else out.push([r[0], r[1]]);
  }
  return out;
}

/** The RM score at (or most recently before) each step of `at`; points with no score before them are dropped. */
export function alignScore(score: StepPoint[], at: StepPoint[]): Array<{ step: number; rm: number; ev: number }> {
  const out: Array<{ step: number; rm: number; ev: number }> = [];
  let j = -1;
  for (const p of at) {
    while (j + 1 < score.length && score[j + 1].step <= p.step) j++;
    if (j >= 0) out.push({ step: p.step, rm: score[j].value, ev: p.value });
  }
  return out;
}

function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  return a >= 100 ? x.toFixed(0) : a >= 1 ? x.toFixed(2) : x.toFixed(3);
}

function rmUpEvalDown(input: SignalInput, o: SignalOptions): Signal[] {
  const score = clean(input.score);
  const signals: Signal[] = [];
  for (const [name, raw] of Object.entries(input.evals ?? {})) {
    const pts = alignScore(score, clean(raw));
    const w = Math.min(o.evalWindow, pts.length);
    if (w < 3) continue;
    const sign = o.lowerIsBetter.test(name) ? -1 : 1;
    const flagged: Array<[number, number]> = [];
    const rmScale = Math.max(mean(score.map((p) => Math.abs(p.value))), 1e-9);
    const evScale = Math.max(mean(pts.map((p) => Math.abs(p.ev))), 1e-9);
    // RM is logged every step, evals sparsely: judge the RM trend on every step inside the window (more points,
    // so step-to-step noise does not pass for a trend), the eval trend on its own points.
    const rmIn = (from: number, to: number) => score.filter((p) => p.step >= from && p.step <= to);
    const windowOk = (a: number, b: number) => {
      const seg = pts.slice(a, b + 1);
      const rm = rmIn(seg[0].step, seg[seg.length - 1].step);
      const ev = seg.map((p) => ({ step: p.step, value: sign * p.ev }));
      return (
        trend(rm) >= o.minTrend &&
        trend(ev) <= -o.minTrend &&
        fittedChange(rm) / rmScale >= o.minRelChange &&
        -fittedChange(ev) / evScale >= o.minRelChange
      );
    };
    for (let a = 0; a + w <= pts.length; a++) if (windowOk(a, a + w - 1)) flagged.push([a, a + w - 1]);
    for (const [a, b] of mergeRanges(flagged)) {
      const seg = pts.slice(a, b + 1);
      const rmSeg = rmIn(seg[0].step, seg[seg.length - 1].step);
      const rmChange = fittedChange(rmSeg);
      const evChange = fittedChange(seg.map((p) => ({ step: p.step, value: p.ev })));
      signals.push({
        kind: "rm-up-eval-down",
        metric: name,
        steps: { from: seg[0].step, to: seg[seg.length - 1].step },
        message:
          `RM score rose (${rmChange >= 0 ? "+" : ""}${fmt(rmChange)}) while ${name} ${sign > 0 ? "fell" : "worsened"} ` +
          `(${evChange >= 0 ? "+" : ""}${fmt(evChange)}) over steps ${seg[0].step}–${seg[seg.length - 1].step}: the policy may be exploiting the rubric`,
        evidence: { rmChange, evalChange: evChange, rmTrend: trend(rmSeg), evalTrend: trend(seg.map((p) => ({ step: p.step, value: p.ev }))) },
      });
    }
  }
  return signals;
}

/**
 * Rolling-window drift of a step series against its first window. `test(baseline, current)` says whether
 * a window is drifting; flagged windows are merged and reported with the window that drifted most.
 */
function drift(
  series: StepPoint[] | undefined,
  o: SignalOptions,
  agg: (xs: number[]) => number,
  test: (baseline: number, current: number) => boolean,
  severity: (baseline: number, current: number) => number,
): Array<{ from: number; to: number; baseline: number; current: number }> {
  const pts = clean(series);
  const w = o.window;
  if (pts.length < 2 * w) return [];
  const baseline = agg(pts.slice(0, w).map((p) => p.value));
  const flagged: Array<[number, number]> = [];
  const windowValue: number[] = [];
  for (let a = w; a + w <= pts.length; a++) {
    const cur = agg(pts.slice(a, a + w).map((p) => p.value));
    windowValue[a] = cur;
    if (test(baseline, cur)) flagged.push([a, a + w - 1]);
  }
  return mergeRanges(flagged).map(([a, b]) => {
    let best = a;
    for (let k = a; k + w - 1 <= b; k++) if (severity(baseline, windowValue[k]) > severity(baseline, windowValue[best])) best = k;
    return { from: pts[a].step, to: pts[b].step, baseline, current: windowValue[best] };
  });
}

export function detectSignals(input: SignalInput, options: Partial<SignalOptions> = {}): Signal[] {
  const o = { ...DEFAULT_SIGNAL_OPTIONS, ...options };
  const out: Signal[] = [...rmUpEvalDown(input, o)];

  for (const r of drift(input.responseLength, o, median, (b, c) => b > 0 && c / b >= o.lengthRatio, (b, c) => c / b)) {
    out.push({
      kind: "length-explode",
      metric: "responseLength",
      steps: { from: r.from, to: r.to },
      message: `Mean response length grew ${fmt(r.current / r.baseline)}× (from ${fmt(r.baseline)} to ${fmt(r.current)}) over steps ${r.from}–${r.to}: verbosity may be what the judge rewards`,
      evidence: { baseline: r.baseline, current: r.current, ratio: r.current / r.baseline },
    });
  }
  for (const r of drift(input.responseLength, o, median, (b, c) => b > 0 && c / b <= 1 / o.lengthRatio, (b, c) => b / Math.max(c, 1e-9))) {
    out.push({
      kind: "length-collapse",
      metric: "responseLength",
      steps: { from: r.from, to: r.to },
      message: `Mean response length collapsed to ${fmt(r.current / r.baseline)}× (from ${fmt(r.baseline)} to ${fmt(r.current)}) over steps ${r.from}–${r.to}`,
      evidence: { baseline: r.baseline, current: r.current, ratio: r.current / r.baseline },
    });
  }
  for (const r of drift(input.repetition, o, mean, (b, c) => c - b >= o.repetitionDelta, (b, c) => c - b)) {
    out.push({
      kind: "repetition-rising",
      metric: "repetition",
      steps: { from: r.from, to: r.to },
      message: `Repeated-sentence rate rose from ${fmt(r.baseline)} to ${fmt(r.current)} over steps ${r.from}–${r.to}`,
      evidence: { baseline: r.baseline, current: r.current },
    });
  }
  for (const r of drift(input.distinct2, o, mean, (b, c) => b - c >= o.repetitionDelta, (b, c) => b - c)) {
    out.push({
      kind: "repetition-rising",
      metric: "distinct2",
      steps: { from: r.from, to: r.to },
      message: `Distinct-2 fell from ${fmt(r.baseline)} to ${fmt(r.current)} over steps ${r.from}–${r.to}: responses repeat themselves`,
      evidence: { baseline: r.baseline, current: r.current },
    });
  }
  for (const r of drift(input.eosRate, o, mean, (b, c) => b - c >= o.eosDrop, (b, c) => b - c)) {
    out.push({
      kind: "eos-dropping",
      metric: "eosRate",
      steps: { from: r.from, to: r.to },
      message: `EOS rate dropped from ${fmt(r.baseline)} to ${fmt(r.current)} over steps ${r.from}–${r.to}: responses increasingly hit the length limit`,
      evidence: { baseline: r.baseline, current: r.current },
    });
  }
  return out;
}

/** Per-response repetition: fraction of sentences that repeat an earlier one, and distinct-2 over word bigrams. */
export function repetitionStats(text: string): { repeatedSentences: number; distinct2: number } {
  const sentences = text
    .split(/[.!?\n]+/)
    .map((s) => s.trim().toLowerCase().replace(/\s+/g, " "))
    .filter((s) => s.length >= 3);
  let repeated = 0;
  const seen = new Set<string>();
  for (const s of sentences) {
    if (seen.has(s)) repeated++;
    else seen.add(s);
  }
  const words = text.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? [];
  let distinct2 = 1;
  if (words.length >= 2) {
    const bigrams = new Set<string>();
    for (let i = 0; i + 1 < words.length; i++) bigrams.add(words[i] + " " + words[i + 1]);
    distinct2 = bigrams.size / (words.length - 1);
  }
  return { repeatedSentences: sentences.length ? repeated / sentences.length : 0, distinct2 };
}
