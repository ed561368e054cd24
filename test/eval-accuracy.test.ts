import { describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { accuracyFor, formatAccuracy } from "../src/eval/accuracy.ts";

const SHARED = resolve(__dirname, "..", "..", "shared", "data");
const MATH_TEST = join(SHARED, "math", "test.jsonl");
const HAVE = existsSync(MATH_TEST);
if (!HAVE) console.warn(`eval-accuracy.test: ${MATH_TEST} not found — real-MATH tests are skipped`);

describe.skipIf(!HAVE)("boxed-answer accuracy on real MATH records", () => {
  // describe.skipIf still runs this callback to collect tests: read only when the file exists.
  const rows = HAVE ? readFileSync(MATH_TEST, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as { id: string; solution: string; answer: string }) : [];

  it("the gold solution as the prediction scores 100% against the gold answer", () => {
    const r = accuracyFor("boxed", rows.map((x) => ({ id: x.id, prediction: x.solution, gold: x.answer })));
    expect(r.n).toBe(5000);
    expect(r.unparsable).toBe(0);
    expect(r.correct).toBe(5000);
    expect(r.accuracy).toBe(1);
  });

  it("gold given as a full solution works too; wrong boxes count wrong, missing boxes unparsable", () => {
    const sample = rows.slice(0, 300);
    const items = sample.map((x, i) => {
      const prediction =
        i % 3 === 0 ? x.solution // correct
        : i % 3 === 1 ? `Working... so the answer is $\\boxed{${x.answer}+1}$.` // wrong: the answer plus one
        : "I think the answer is 42 but I will not box it."; // unparsable
      return { id: x.id, prediction, gold: x.solution };
    });
    const r = accuracyFor("boxed", items);
    expect(r.correct).toBe(100);
    expect(r.unparsable).toBe(100);
    expect(r.wrong).toBe(100);
    expect(r.accuracy).toBeCloseTo(1 / 3, 12);
    expect(r.accuracyParsed).toBeCloseTo(0.5, 12);
    expect(r.items[1].correct).toBe(false);
    expect(formatAccuracy(r)).toMatch(/100\/300 correct, 100 wrong, 100 unparsable/);
  });

  it("equivalent forms of an answer are accepted", () => {
    const x = rows.find((r) => r.answer === "\\frac{1}{2}");
    if (!x) return;
    const r = accuracyFor("boxed", [{ id: x.id, prediction: "so $\\boxed{1/2}$", gold: x.answer }]);
    expect(r.correct).toBe(1);
  });
});

describe("verdict accuracy on ethics-like records", () => {
  it("reads the last verdict tag and compares with the community label", () => {
    const items = [
      { id: "1", prediction: "The author was considerate.\n<verdict>RIGHT</verdict>", gold: "RIGHT" },
      { id: "2", prediction: "Format: <verdict>RIGHT|WRONG</verdict>. Reasoning... <verdict>WRONG</verdict>", gold: "WRONG" },
      { id: "3", prediction: "<verdict>WRONG</verdict>", gold: "RIGHT" },
      { id: "4", prediction: "It depends.", gold: "WRONG" },
      { id: "5", prediction: "<verdict>RIGHT</verdict>", gold: "maybe" },
    ];
    const r = accuracyFor("verdict", items);
    expect(r.n).toBe(4);
    expect(r.correct).toBe(2);
    expect(r.wrong).toBe(1);
    expect(r.unparsable).toBe(1);
    expect(r.goldUnusable).toBe(1);
    expect(r.excluded).toEqual(["5"]);
    expect(r.perLabel).toEqual({ RIGHT: { n: 2, correct: 1 }, WRONG: { n: 2, correct: 1 } });
    expect(r.accuracy).toBe(0.5);
  });
});
