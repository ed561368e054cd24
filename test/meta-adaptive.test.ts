import { describe, expect, it } from "vitest";
import { DEFAULT_GUARD, exploitSet, guardRubric, type ProbeCase, selectProbes, spearman } from "../src/meta/guard.ts";
import { adaptiveOptions, DEFAULT_ADAPTIVE, decideAdaptive, decideFixed, triggersFor, type WindowPoint, windowPoint } from "../src/meta/triggers.ts";
import { Rng } from "../src/util/rng.ts";

/** A healthy step: middling scores with spread, stable length, ends on its own, no flags. */
function flat(step: number, over: Partial<WindowPoint> = {}): WindowPoint {
  return { step, n: 8, meanScore: 0.5 + 0.01 * Math.sin(step), scoreStd: 0.2, responseLength: 100 + (step % 3), eosRate: 0.95, repetition: 0.02, distinct2: 0.9, flagged: 0, ...over };
}
const history = (n: number, f: (s: number) => Partial<WindowPoint> = () => ({})) => Array.from({ length: n }, (_, i) => flat(i + 1, f(i + 1)));
const kinds = (ps: WindowPoint[]) => triggersFor(ps).map((t) => t.kind).sort();

describe("adaptive meta schedule: triggers", () => {
  it("a flat, healthy history fires nothing (any length)", () => {
    for (const n of [1, 3, 6, 12, 30]) expect(kinds(history(n))).toEqual([]);
    expect(decideAdaptive(history(12), 12).due).toBe(false);
  });

  it("length blow-up fires length-explode", () => {
    expect(kinds(history(8, (s) => ({ responseLength: s <= 3 ? 100 : 260 })))).toContain("length-explode");
  });

  it("length collapse (title-only answers) fires length-collapse", () => {
    expect(kinds(history(8, (s) => ({ responseLength: s <= 3 ? 100 : 8 })))).toContain("length-collapse");
  });

  it("rising repetition and falling distinct-2 fire repetition-rising", () => {
    const k = triggersFor(history(8, (s) => (s <= 3 ? {} : { repetition: 0.4, distinct2: 0.5 })));
    expect(k.filter((t) => t.kind === "repetition-rising").map((t) => t.evidence.current).length).toBe(2);
  });

  it("falling EOS rate fires eos-dropping", () => {
    expect(kinds(history(8, (s) => ({ eosRate: s <= 3 ? 0.95 : 0.4 })))).toContain("eos-dropping");
  });

  it("score saturation and spread collapse fire on the last `recent` points only", () => {
    expect(kinds(history(6, (s) => (s >= 4 ? { meanScore: 0.93 } : {})))).toEqual(["score-saturated"]);
    expect(kinds(history(6, (s) => (s >= 5 ? { meanScore: 0.93 } : {})))).toEqual([]);
    expect(kinds(history(6, (s) => (s >= 4 ? { scoreStd: 0.01 } : {})))).toEqual(["spread-collapsed"]);
  });

  it("judge flags fire on a high share or a rise since the last meta step", () => {
    expect(kinds(history(3, () => ({ flagged: 0.3 })))).toEqual(["flags-rising"]);
    const rise = triggersFor(history(6, (s) => ({ flagged: s <= 3 ? 0 : 0.16 })));
    expect(rise.map((t) => t.kind)).toEqual(["flags-rising"]);
    expect(rise[0].evidence.rise).toBeCloseTo(0.16);
  });

  it("evidence and a message come with each trigger", () => {
    const [t] = triggersFor(history(6, (s) => (s >= 4 ? { meanScore: 0.95 } : {})));
    expect(t.message).toMatch(/0\.950/);
    expect(t.evidence.meanScore).toBeCloseTo(0.95);
  });
});

describe("adaptive meta schedule: decisions", () => {
  const hot = history(6, (s) => (s >= 4 ? { meanScore: 0.95 } : {}));
  it("respects the minimum interval even when a trigger fires", () => {
    const d = decideAdaptive(hot, 2, { ...DEFAULT_ADAPTIVE, minInterval: 3 });
    expect(d).toMatchObject({ due: false, reason: "min-interval" });
    expect(d.triggers.map((t) => t.kind)).toEqual(["score-saturated"]);
    expect(decideAdaptive(hot, 3, { ...DEFAULT_ADAPTIVE, minInterval: 3 })).toMatchObject({ due: true, reason: "trigger" });
  });
  it("runs at the maximum interval when nothing fired", () => {
    expect(decideAdaptive(history(20), 19, { ...DEFAULT_ADAPTIVE, maxInterval: 20 })).toMatchObject({ due: false, reason: "quiet" });
    expect(decideAdaptive(history(20), 20, { ...DEFAULT_ADAPTIVE, maxInterval: 20 })).toMatchObject({ due: true, reason: "max-interval" });
  });
  it("the fixed schedule in the same shape", () => {
    expect(decideFixed(9, 10).due).toBe(false);
    expect(decideFixed(10, 10)).toMatchObject({ due: true, reason: "interval" });
    expect(decideFixed(100, 0).due).toBe(false);
  });
  it("options are validated with the field named", () => {
    expect(() => adaptiveOptions({ minInterval: 0 })).toThrow(/minInterval/);
    expect(() => adaptiveOptions({ minInterval: 5, maxInterval: 4 })).toThrow(/maxInterval/);
    expect(() => adaptiveOptions({ saturation: 1.5 })).toThrow(/saturation/);
    expect(adaptiveOptions({ maxInterval: 30 }).maxInterval).toBe(30);
  });
  it("windowPoint summarizes samples (unscored ones still count for length/flags)", () => {
    const p = windowPoint(4, [
      { normalized: 0.2, response: "a b c. a b c.", finished: true, flags: [] },
      { normalized: 0.6, response: "one two", finished: false, flags: ["unparsed-fallback"] },
      { normalized: null, response: "x y z w", finished: true },
    ]);
    expect(p).toMatchObject({ step: 4, n: 2, eosRate: 2 / 3, flagged: 1 / 3 });
    expect(p.meanScore).toBeCloseTo(0.4);
    expect(p.scoreStd).toBeCloseTo(0.2);
    expect(p.responseLength).toBeCloseTo(4);
    expect(p.repetition).toBeGreaterThan(0);
    expect(windowPoint(1, [{ normalized: 1, response: "x" }]).eosRate).toBeUndefined();
  });
});

/** A scripted judge: scores by looking up a table per rubric (which = current/candidate). */
function scripted(tables: { current: Record<string, number>; candidate: Record<string, number> }) {
  const calls = { current: 0, candidate: 0 };
  const score = async (which: "current" | "candidate", inputs: { response: string }[]) => {
    calls[which] += inputs.length;
    return inputs.map((i) => tables[which][i.response] ?? null);
  };
  return { score, calls };
}
const probe = (id: string, kind: "recent" | "exploit" = "recent", before?: number): ProbeCase => ({ id, kind, before, input: { taskDescription: "t", prompt: "p", response: id } });

describe("rubric acceptance guard", () => {
  const ids = ["r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8"];
  const cur = Object.fromEntries(ids.map((id, i) => [id, 0.1 + 0.1 * i]));

  it("accepts a version that keeps order and spread, and reuses the window's scores for recent probes", async () => {
    const cand = Object.fromEntries(ids.map((id, i) => [id, 0.15 + 0.1 * i]));
    const j = scripted({ current: cur, candidate: cand });
    const d = await guardRubric({ probes: ids.map((id) => probe(id, "recent", cur[id])), score: j.score });
    expect(d.accepted).toBe(true);
    expect(d.reasons).toEqual([]);
    expect(j.calls).toEqual({ current: 0, candidate: 8 });
    expect(d.scorings).toBe(8);
    expect(d.numbers.rankCorrelation).toBeCloseTo(1);
  });

  it("rejects a version that raises a known exploit relative to good answers", async () => {
    const tables = {
      current: { ...cur, hack: 0.3 },
      candidate: { ...cur, hack: 0.9 },
    };
    const j = scripted(tables);
    const d = await guardRubric({ probes: [...ids.map((id) => probe(id, "recent", cur[id])), probe("hack", "exploit")], score: j.score });
    expect(d.accepted).toBe(false);
    expect(d.reasons.join()).toMatch(/exploit/);
    expect(j.calls.current).toBe(1); // the exploit case is scored under both rubrics
    expect(d.numbers.exploitGapAfter! - d.numbers.exploitGapBefore!).toBeCloseTo(0.6);
  });

  it("rejects a version that collapses the spread", async () => {
    const cand = Object.fromEntries(ids.map((id) => [id, 0.8]));
    const d = await guardRubric({ probes: ids.map((id) => probe(id, "recent", cur[id])), score: scripted({ current: cur, candidate: cand }).score });
    expect(d.accepted).toBe(false);
    expect(d.reasons.join()).toMatch(/spread collapses/);
  });

  it("rejects an unasked-for reordering, but not one the analyses covered", async () => {
    const cand = Object.fromEntries(ids.map((id, i) => [id, 0.8 - 0.1 * i]));
    const probes = ids.map((id) => probe(id, "recent", cur[id]));
    const d = await guardRubric({ probes, score: scripted({ current: cur, candidate: cand }).score });
    expect(d.accepted).toBe(false);
    expect(d.reasons.join()).toMatch(/Spearman/);
    const covered = await guardRubric({ probes, score: scripted({ current: cur, candidate: cand }).score, analyzedIds: new Set(ids.slice(0, 5)) });
    expect(covered.numbers.rankProbes).toBe(3);
    expect(covered.accepted).toBe(true);
  });

  it("an accepted version that demotes a high-scoring probe records it as an exploit case", async () => {
    const cand = { ...cur, r8: 0.2 };
    const d = await guardRubric({ probes: ids.map((id) => probe(id, "recent", cur[id])), score: scripted({ current: cur, candidate: cand }).score, analyzedIds: new Set(["r8"]) });
    expect(d.accepted).toBe(true);
    expect(d.newExploits.map((e) => e.id)).toEqual(["r8"]);
    const set = exploitSet([{ guard: { newExploits: d.newExploits } }, null, { guard: { newExploits: [probe("r2", "exploit")] } }], DEFAULT_GUARD.maxExploits);
    expect(set.map((e) => e.id)).toEqual(["r8", "r2"]);
    expect(exploitSet([{ guard: { newExploits: [probe("a"), probe("b"), probe("c")] } }], 2).map((e) => e.id)).toEqual(["b", "c"]);
  });

  it("unscorable probes are left out, never scored as 0", async () => {
    const cand: Record<string, number> = { ...cur };
    delete cand.r1;
    const d = await guardRubric({ probes: ids.map((id) => probe(id, "recent", cur[id])), score: scripted({ current: cur, candidate: cand }).score });
    expect(d.numbers.probes).toBe(7);
    expect(d.probes.find((p) => p.id === "r1")!.after).toBeNull();
  });

  it("probe selection is stratified by score and seeded", () => {
    const window = Array.from({ length: 40 }, (_, i) => ({ id: `w${i}`, normalized: i / 39 }));
    const a = selectProbes(window, 4, new Rng(7));
    expect(a.map((p) => Math.floor(p.normalized! * 4 - 1e-9))).toEqual([0, 1, 2, 3]);
    expect(selectProbes(window, 4, new Rng(7))).toEqual(a);
    expect(selectProbes([...window, { id: "x", normalized: null }], 50, new Rng(1))).toHaveLength(40);
    expect(spearman([1, 2, 3], [3, 2, 1])).toBeCloseTo(-1);
  });
});
