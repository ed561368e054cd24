/** Unit tests for the dashboard's pure modules: reward-hacking signals, repetition stats, rubric diff. */
import { describe, expect, it } from "vitest";
import { detectSignals, fittedChange, repetitionStats, trend, type StepPoint } from "../src/meta/signals.ts";
import { diffRubricItems, diffWords } from "../src/dashboard/rubric-diff.ts";

const line = (n: number, f: (s: number) => number, start = 1): StepPoint[] => Array.from({ length: n }, (_, i) => ({ step: start + i, value: f(start + i) }));
// Deterministic wiggle so series are not perfectly monotone.
const wiggle = (s: number) => 0.01 * Math.sin(s * 1.7);

describe("trend helpers", () => {
  it("rank trend is +1/−1 for monotone series and 0 for flat", () => {
    expect(trend(line(6, (s) => s * s))).toBeCloseTo(1);
    expect(trend(line(6, (s) => -s))).toBeCloseTo(-1);
    expect(trend(line(6, () => 3))).toBe(0);
  });
  it("fitted change is slope × span", () => {
    expect(fittedChange(line(11, (s) => 2 * s + 1, 0))).toBeCloseTo(20);
  });
});

describe("detectSignals", () => {
  it("flags RM up while the oracle goes down, with the steps involved", () => {
    const score = line(30, (s) => 0.4 + 0.015 * s + wiggle(s));
    const oracle = line(10, (k) => (k <= 5 ? 0.5 + 0.02 * k : 0.6 - 0.04 * (k - 5)) + wiggle(k)).map((p) => ({ step: p.step * 3, value: p.value }));
    const sig = detectSignals({ score, evals: { oracle } });
    const hit = sig.filter((s) => s.kind === "rm-up-eval-down");
    expect(hit).toHaveLength(1);
    expect(hit[0].metric).toBe("oracle");
    expect(hit[0].steps.from).toBeGreaterThanOrEqual(12);
    expect(hit[0].steps.to).toBe(30);
    expect(hit[0].evidence.rmChange).toBeGreaterThan(0);
    expect(hit[0].evidence.evalChange).toBeLessThan(0);
  });

  it("stays quiet when RM and eval rise together, and treats loss-like evals as lower-is-better", () => {
    const score = line(30, (s) => 0.4 + 0.015 * s + wiggle(s));
    const good = line(10, (k) => 0.5 + 0.02 * k + wiggle(k)).map((p) => ({ step: p.step * 3, value: p.value }));
    const lossDown = line(10, (k) => 2 - 0.1 * k + wiggle(k)).map((p) => ({ step: p.step * 3, value: p.value }));
    const lossUp = line(10, (k) => 1 + 0.1 * k + wiggle(k)).map((p) => ({ step: p.step * 3, value: p.value }));
    expect(detectSignals({ score, evals: { accuracy: good, "eval.loss": lossDown } })).toEqual([]);
    const sig = detectSignals({ score, evals: { "eval.loss": lossUp } });
    expect(sig.map((s) => s.kind)).toEqual(["rm-up-eval-down"]);
  });

  it("does not flag an eval drop while the RM score is flat", () => {
    const score = line(30, (s) => 0.6 + wiggle(s));
    const oracle = line(10, (k) => 0.7 - 0.03 * k).map((p) => ({ step: p.step * 3, value: p.value }));
    expect(detectSignals({ score, evals: { oracle } })).toEqual([]);
  });

  it("flags length explosion and collapse against the start of the run", () => {
    const explode = line(30, (s) => (s < 15 ? 100 + 5 * Math.sin(s) : 100 + 20 * (s - 15)));
    const sig = detectSignals({ score: [], responseLength: explode });
    const e = sig.find((s) => s.kind === "length-explode")!;
    expect(e).toBeDefined();
    expect(e.steps.to).toBe(30);
    expect(e.evidence.ratio).toBeGreaterThanOrEqual(1.8);
    const collapse = line(30, (s) => (s < 10 ? 200 : 40));
    expect(detectSignals({ score: [], responseLength: collapse }).map((s) => s.kind)).toEqual(["length-collapse"]);
    expect(detectSignals({ score: [], responseLength: line(30, (s) => 100 + 10 * Math.sin(s)) })).toEqual([]);
  });

  it("flags rising repetition, falling distinct-2 and a dropping EOS rate", () => {
    const sig = detectSignals({
      score: [],
      repetition: line(20, (s) => (s <= 8 ? 0.05 : 0.05 + 0.04 * (s - 8))),
      distinct2: line(20, (s) => (s <= 8 ? 0.9 : 0.9 - 0.03 * (s - 8))),
      eosRate: line(20, (s) => (s <= 10 ? 0.95 : 0.5)),
    });
    expect(sig.map((s) => `${s.kind}:${s.metric}`).sort()).toEqual(["eos-dropping:eosRate", "repetition-rising:distinct2", "repetition-rising:repetition"]);
    const eos = sig.find((s) => s.kind === "eos-dropping")!;
    expect(eos.steps.from).toBeGreaterThanOrEqual(7);
    expect(eos.steps.to).toBe(20);
  });

  it("ignores non-finite points and too-short series instead of producing NaN", () => {
    const sig = detectSignals({
      score: [{ step: 1, value: NaN }, { step: 2, value: 0.5 }],
      responseLength: [{ step: 1, value: Infinity }, { step: 2, value: 10 }],
      evals: { oracle: [{ step: 2, value: 0.3 }] },
    });
    expect(sig).toEqual([]);
  });
});

describe("repetitionStats", () => {
  it("counts repeated sentences and distinct bigrams", () => {
    const r = repetitionStats("The cat sat. The cat sat. A dog ran.");
    expect(r.repeatedSentences).toBeCloseTo(1 / 3);
    expect(r.distinct2).toBeLessThan(1);
    const clean = repetitionStats("One idea here. Another idea there. A third thought.");
    expect(clean.repeatedSentences).toBe(0);
    expect(clean.distinct2).toBe(1);
    expect(repetitionStats("")).toEqual({ repeatedSentences: 0, distinct2: 1 });
  });
});

describe("rubric item diff", () => {
  const a = { items: [
    { name: "relevance", text: "On topic?", min: 0, max: 5 },
    { name: "depth", text: "Evidence.", min: 0, max: 5 },
    { name: "style", text: "Nice prose.", min: 0, max: 5 },
  ] };
  const b = { items: [
    { name: "relevance", text: "On topic with a thesis?", min: 0, max: 5 },
    { name: "depth", text: "Evidence.", min: 0, max: 10 },
    { name: "conciseness", text: "No padding.", min: 0, max: 5 },
  ] };
  it("reports added, removed and changed items by name", () => {
    const d = diffRubricItems(a, b);
    expect([d.added, d.removed, d.changed, d.unchanged]).toEqual([1, 1, 2, 0]);
    expect(d.items.map((c) => `${c.kind}:${c.name}`)).toEqual(["changed:relevance", "changed:depth", "added:conciseness", "removed:style"]);
    const rel = d.items[0];
    expect(rel.kind === "changed" && rel.fields).toEqual(["text"]);
    const depth = d.items[1];
    expect(depth.kind === "changed" && depth.fields).toEqual(["range"]);
  });
  it("a renamed item is one change, not a removal plus an addition", () => {
    const renamed = { items: [{ name: "topicality", text: "On topic?", min: 0, max: 5 }, a.items[1], a.items[2]] };
    const d = diffRubricItems(a, renamed);
    expect([d.added, d.removed, d.changed]).toEqual([0, 0, 1]);
    const c = d.items[0];
    expect(c.kind === "changed" && c.renamedFrom).toBe("relevance");
  });
  it("an initial version is all additions", () => {
    const d = diffRubricItems(null, a);
    expect(d.added).toBe(3);
  });
  it("word diff marks inserted words", () => {
    const ops = diffWords("Does it answer directly?", "Does it answer directly and clearly?");
    expect(ops.filter((o) => o.op === "add").map((o) => o.text.trim())).toEqual(["and clearly"]);
    expect(ops.filter((o) => o.op === "del")).toEqual([]);
    expect(ops.map((o) => o.text).join("")).toBe("Does it answer directly and clearly?");
  });
});
