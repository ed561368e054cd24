import { describe, expect, it } from "vitest";
import { diffLines, diffRubrics, formatDiff, summarizeDiff, textSimilarity } from "../src/rubric/diff.ts";
import type { Rubric, RubricVersion } from "../src/rubric/types.ts";

const version = (v: number, rubric: Rubric): RubricVersion => ({
  version: v,
  parent: v ? v - 1 : null,
  step: v * 10,
  author: v ? { kind: "meta", step: v * 10 } : { kind: "initial" },
  createdAt: "2025-01-01T00:00:00Z",
  analyses: [],
  rubric,
});

const A: Rubric = {
  items: [
    { name: "clarity", text: "Is the essay clear?\nScore 0 to 5.", min: 0, max: 5 },
    { name: "grammar", text: "Few grammar errors.", min: 0, max: 5 },
    { name: "length", text: "Is it long enough?", min: 0, max: 5 },
    { name: "evidence-quality", text: "Claims are supported by concrete, specific evidence and examples from sources.", min: 0, max: 5 },
  ],
};
const B: Rubric = {
  items: [
    { name: "clarity", text: "Is the essay clear?\nPenalize title-only answers.\nScore 0 to 5.", min: 0, max: 5 },
    { name: "grammar", text: "Few grammar errors.", min: 0, max: 5 },
    { name: "support", text: "Claims are supported by concrete, specific evidence and examples.", min: 0, max: 5 },
    { name: "structure", text: "Has an introduction, body and conclusion.", min: 0, max: 4 },
    { name: "originality", text: "Fresh ideas.", min: 1, max: 10, weight: 2 },
  ],
};

describe("diffRubrics", () => {
  it("finds added, removed, changed (incl. renamed) and same items", () => {
    const d = diffRubrics(A, B);
    expect(d.map((x) => [x.kind, x.name, x.renamedFrom ?? ""])).toEqual([
      ["changed", "clarity", ""],
      ["same", "grammar", ""],
      ["changed", "support", "evidence-quality"],
      ["added", "structure", ""],
      ["added", "originality", ""],
      ["removed", "length", ""],
    ]);
    expect(d[0].before?.text).toBe(A.items[0].text);
    expect(d[0].after?.text).toBe(B.items[0].text);
  });

  it("treats range and weight edits as changes and identical rubrics as all-same", () => {
    const r2: Rubric = { items: [{ ...A.items[0], max: 10 }, { ...A.items[1], weight: 3 }, A.items[2], A.items[3]] };
    expect(diffRubrics(A, r2).map((x) => x.kind)).toEqual(["changed", "changed", "same", "same"]);
    expect(diffRubrics(A, A).every((x) => x.kind === "same")).toBe(true);
    expect(diffRubrics({ items: [{ ...A.items[1], weight: 1 }] }, { items: [A.items[1]] })[0].kind).toBe("same");
  });

  it("does not pair unrelated items as renames", () => {
    const d = diffRubrics({ items: [{ name: "x", text: "apples and pears", min: 0, max: 5 }] }, { items: [{ name: "y", text: "rockets in orbit", min: 0, max: 5 }] });
    expect(d.map((x) => x.kind)).toEqual(["added", "removed"]);
    expect(textSimilarity("a b c", "a b c")).toBe(1);
    expect(textSimilarity("a b", "c d")).toBe(0);
  });
});

describe("summarizeDiff / formatDiff", () => {
  it("summarizes counts", () => {
    expect(summarizeDiff(version(3, A), version(4, B))).toBe("rubric v3 → v4: 5 items (+2, −1, ~2 changed)");
    expect(summarizeDiff(version(0, A), version(1, A))).toBe("rubric v0 → v1: 4 items (+0, −0, ~0 changed)");
  });

  it("formats item by item with line-level edits", () => {
    const text = formatDiff(diffRubrics(A, B));
    expect(text).toContain("~ changed clarity (0–5)\n      Is the essay clear?\n    + Penalize title-only answers.\n      Score 0 to 5.");
    expect(text).toContain("= grammar (0–5) unchanged");
    expect(text).toContain("~ changed support (renamed from evidence-quality)");
    expect(text).toContain("+ added originality (1–10 ×2)\n    + Fresh ideas.");
    expect(text).toContain("- removed length (0–5)\n    - Is it long enough?");
    const ranged = formatDiff(diffRubrics({ items: [A.items[1]] }, { items: [{ ...A.items[1], max: 3 }] }));
    expect(ranged).toBe("~ changed grammar (range 0–5 → 0–3)\n    (text unchanged)");
    expect(formatDiff([])).toBe("(no items)");
  });

  it("diffLines is a minimal line edit script", () => {
    expect(diffLines("a\nb\nc", "a\nx\nc")).toEqual(["  a", "- b", "+ x", "  c"]);
    expect(diffLines("", "a")).toEqual(["- ", "+ a"]);
    expect(diffLines("a\nb", "a\nb")).toEqual(["  a", "  b"]);
  });
});
