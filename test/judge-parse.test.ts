import { describe, expect, it } from "vitest";
import { parseAllItems, parseItemScore } from "../src/judge/parse.ts";
import type { Rubric } from "../src/rubric/types.ts";

describe("parseItemScore", () => {
  const cases: Array<[string, number]> = [
    ["4", 4],
    [" 4\n", 4],
    ["Score: 4", 4],
    ["**4**", 4],
    ["4/5", 4],
    ["4 out of 5", 4],
    ["<score>4</score>", 4],
    ["Score: 4.0", 4],
    ["I would give this a 4.", 4],
    ['{"score": 4}', 4],
    ['```json\n{"score": 4}\n```', 4],
    ['Here is my grade:\n```json\n{"rationale": "has 3 errors", "score": 2}\n```\nThanks.', 2],
    ["Score: 3 (out of 5)", 3],
    ["The essay has 3 paragraphs and 2 typos, so I award it a 4", 4],
    ["It cites 2 sources and 1 quote. Final score: 3", 3],
    ["The response covers 3 of the 5 points. Overall 2", 2],
    ["Rating = 5", 5],
  ];
  for (const [text, want] of cases) {
    it(`reads ${JSON.stringify(text)} as ${want}`, () => {
      const r = parseItemScore(text, 0, 5);
      expect(r.score).toBe(want);
      expect(r.flags).toEqual([]);
      expect(r.parsed).toBe(true);
    });
  }

  it("clamps out-of-range scores and flags them", () => {
    expect(parseItemScore("7", 0, 5)).toEqual({ score: 5, flags: ["clamped"], parsed: true });
    expect(parseItemScore("Score: -2", 0, 5)).toEqual({ score: 0, flags: ["clamped"], parsed: true });
    expect(parseItemScore("0", 1, 10)).toEqual({ score: 1, flags: ["clamped"], parsed: true });
  });

  it("rounds non-integers with a flag", () => {
    expect(parseItemScore("Score: 3.6", 0, 5)).toEqual({ score: 4, flags: ["rounded"], parsed: true });
  });

  it("flags empty replies and uses the fallback", () => {
    expect(parseItemScore("", 1, 5)).toEqual({ score: 1, flags: ["empty-reply", "unparsed-fallback"], parsed: false });
    expect(parseItemScore(undefined, 0, 5, 2).score).toBe(2);
  });

  it("flags refusals even when they mention numbers", () => {
    const r = parseItemScore("I cannot evaluate this response; it has only 3 words.", 0, 5);
    expect(r.flags).toContain("refusal");
    expect(r.score).toBe(0);
  });

  it("falls back on garbage with a configurable fallback, never NaN", () => {
    for (const t of ["no idea", "banana", "The essay has 500 words", "NaN", "Infinity", "{not json"]) {
      const r = parseItemScore(t, 0, 5);
      expect(Number.isFinite(r.score)).toBe(true);
      expect(r.flags).toContain("unparsed-fallback");
      expect(r.score).toBe(0);
    }
    expect(parseItemScore("banana", 0, 10, 5).score).toBe(5);
    expect(parseItemScore("banana", 0, 10, 99).score).toBe(10);
  });

  it("takes the last in-range standalone number, skipping ranges and decimals", () => {
    expect(parseItemScore("Using the 1-10 scale, with 2.5 caveats, I settle on 7", 1, 10).score).toBe(7);
  });
});

describe("parseAllItems", () => {
  const rubric: Rubric = {
    items: [
      { name: "Relevance", text: "…", min: 0, max: 5 },
      { name: "Writing Style", text: "…", min: 0, max: 5 },
      { name: "depth", text: "…", min: 1, max: 10 },
    ],
  };

  it("reads the template's JSON shape inside fences and prose", () => {
    const text =
      'Sure!\n```json\n{"items": [{"name": "relevance", "rationale": "On topic.", "score": 4}, {"name": "writing style", "rationale": "Clear.", "score": 3}, {"name": "Depth", "rationale": "Shallow.", "score": 2}]}\n```\nDone.';
    const r = parseAllItems(text, rubric);
    expect(r.items.map((i) => [i.name, i.score, i.rationale])).toEqual([
      ["Relevance", 4, "On topic."],
      ["Writing Style", 3, "Clear."],
      ["depth", 2, "Shallow."],
    ]);
    expect(r.flags).toEqual([]);
  });

  it("reads a bare array and a name→score object", () => {
    expect(parseAllItems('[{"name":"Relevance","score":5},{"name":"WritingStyle","score":"4/5"},{"name":"depth","score":9}]', rubric).items.map((i) => i.score)).toEqual([5, 4, 9]);
    expect(parseAllItems('{"relevance": 1, "writing_style": {"score": 2, "rationale": "ok"}, "DEPTH": 3}', rubric).items.map((i) => i.score)).toEqual([1, 2, 3]);
  });

  it("matches numbered names", () => {
    const r = parseAllItems('[{"name":"1. Relevance","score":2},{"name":"Item 2: Writing style","score":3},{"name":"#3 depth","score":4}]', rubric);
    expect(r.items.map((i) => i.score)).toEqual([2, 3, 4]);
    expect(r.flags).toEqual([]);
  });

  it("flags missing items (fallback) and ignores extra ones (flag)", () => {
    const r = parseAllItems('{"items":[{"name":"Relevance","score":9,"rationale":"x"},{"name":"Humor","score":3}]}', rubric);
    expect(r.items[0]).toMatchObject({ score: 5, flags: ["clamped"] });
    expect(r.items[1]).toMatchObject({ score: 0, flags: ["missing-item", "unparsed-fallback"] });
    expect(r.items[2]).toMatchObject({ score: 1, flags: ["missing-item", "unparsed-fallback"] });
    expect(r.flags).toContain("extra-item");
  });

  it("falls back to a plain name: score list", () => {
    const r = parseAllItems("Here you go:\n- **Relevance**: 4 — stays on topic\n- Writing style: 3/5\n3. Depth = 6\n", rubric);
    expect(r.items.map((i) => i.score)).toEqual([4, 3, 6]);
    expect(r.items[0].rationale).toBe("stays on topic");
  });

  it("flags an unreadable reply, every item falling back", () => {
    const r = parseAllItems("I'm sorry, but I can't grade this.", rubric);
    expect(r.flags).toContain("refusal");
    expect(r.items.every((i) => i.flags.includes("missing-item"))).toBe(true);
    expect(parseAllItems("", rubric).flags).toContain("empty-reply");
    expect(parseAllItems("lorem ipsum", rubric).flags).toContain("unparsed-reply");
  });
});
