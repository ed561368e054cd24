import { mkdtempSync, readdirSync, readFileSync, existsSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import {
  deriveItemName,
  inferScoreRange,
  loadRubricFile,
  parseRubricJson,
  parseRubricText,
  RubricError,
  rubricMaxTotal,
  rubricMinTotal,
  rubricToText,
} from "../src/rubric/format.ts";
import { UserError } from "../src/util/errors.ts";
import type { Rubric } from "../src/rubric/types.ts";

const RUBRICS_DIR = resolve(__dirname, "../../shared/data/rubrics");

describe("parseRubricText", () => {
  it("parses the paper's form with whitespace and derives names and ranges", () => {
    const r = parseRubricText(`<rubric>
  <item>
    Your evaluation should focus on "discourse". Output your score as an integer from 0 (worst quality) to 5 (best quality).
  </item>
  <item>### Grammar and Style
Score from 1 to 10.</item>
</rubric>`);
    expect(r.items).toHaveLength(2);
    expect(r.items[0]).toEqual({
      name: "evaluation-focus-discourse-output",
      text: 'Your evaluation should focus on "discourse". Output your score as an integer from 0 (worst quality) to 5 (best quality).',
      min: 0,
      max: 5,
    });
    expect(r.items[1].name).toBe("grammar-and-style");
    expect(r.items[1].text).toBe("### Grammar and Style\nScore from 1 to 10.");
    expect([r.items[1].min, r.items[1].max]).toEqual([1, 10]);
  });

  it("keeps markdown inside items and reads score-level lists", () => {
    const r = parseRubricText(`<rubric><item>
### Evidence Quality
- (4): claims backed by **specific** sources, e.g. "cites a study"
- (2): vague support
- (0): no support at all
</item></rubric>`);
    expect(r.items[0].name).toBe("evidence-quality");
    expect(r.items[0].text).toContain("**specific**");
    expect([r.items[0].min, r.items[0].max]).toEqual([0, 4]);
  });

  it("tolerates missing </rubric>, missing final </item>, outside text and tag case", () => {
    const r = parseRubricText(`Sure! Here is the refined rubric.
<RUBRIC>
<Item>**Clarity**: is it clear? (0-3 points)</ITEM>
Some chatter between items.
<item>Accuracy: facts are right. Score 1-4.
<item>Depth: goes beyond the obvious`);
    expect(r.items.map((i) => i.name)).toEqual(["clarity", "accuracy", "depth"]);
    expect(r.items.map((i) => [i.min, i.max])).toEqual([
      [0, 3],
      [1, 4],
      [0, 5],
    ]);
    expect(r.items[1].text).toBe("Accuracy: facts are right. Score 1-4.");
    expect(r.items[2].text).toBe("Depth: goes beyond the obvious");
  });

  it("makes derived names unique", () => {
    const r = parseRubricText("<rubric><item>### Style\na</item><item>### Style\nb</item><item>### Style\nc</item></rubric>");
    expect(r.items.map((i) => i.name)).toEqual(["style", "style-2", "style-3"]);
  });

  it("keeps explicit names, renames duplicate explicit names and never lets derived names collide", () => {
    const r = parseRubricText('<rubric><item name="style">### Style\na</item><item name="style">b</item><item>### Style\nc</item><item name="">### Tone\nd</item></rubric>');
    expect(r.items.map((i) => i.name)).toEqual(["style", "style-2", "style-3", "tone"]);
  });

  it("uses the last <rubric> block that has items (an LLM may quote an example first)", () => {
    const r = parseRubricText("Example: <rubric><item>old</item></rubric>\nMine:\n<rubric><item>### New one\nx</item></rubric>");
    expect(r.items.map((i) => i.name)).toEqual(["new-one"]);
  });

  it("throws RubricError (a UserError) naming the source when there is no item", () => {
    expect(() => parseRubricText("<rubric>nothing here</rubric>", "prompts/r.txt")).toThrow(/no <item> found in prompts\/r\.txt/);
    expect(() => parseRubricText("plain text")).toThrow(RubricError);
    expect(() => parseRubricText("<rubric><item>  </item></rubric>")).toThrow(UserError);
  });

  it("rejects invalid attributes with the item named", () => {
    expect(() => parseRubricText('<rubric><item name="a" min="5" max="1">x</item></rubric>')).toThrow(/item 1 \(a\): min 5 must be below max 1/);
    expect(() => parseRubricText('<rubric><item name="a" weight="-1">x</item></rubric>')).toThrow(/weight/);
  });
});

describe("rubricToText round trip", () => {
  const cases: Rubric[] = [
    { items: [{ name: "discourse", text: "Score 0 to 5.", min: 0, max: 5 }] },
    {
      items: [
        { name: "a-b", text: 'Text with "quotes", <b>html</b> & ampersands\n\n- (3): top\n- (1): bottom', min: 0, max: 7, weight: 2 },
        { name: 'odd "name" <x>', text: "No range stated here at all.", min: 2, max: 9 },
        { name: "zero-weight", text: "### Heading That Differs\nbody", min: 0, max: 1, weight: 0 },
      ],
    },
  ];
  it.each(cases.map((c, i) => [i, c] as const))("case %i round-trips exactly", (_i, r) => {
    expect(parseRubricText(rubricToText(r))).toEqual(r);
  });
  it("round-trips the real rubrics", () => {
    if (!existsSync(RUBRICS_DIR)) return void console.log(`skip: ${RUBRICS_DIR} absent`);
    for (const task of readdirSync(RUBRICS_DIR))
      for (const f of readdirSync(join(RUBRICS_DIR, task))) {
        const text = readFileSync(join(RUBRICS_DIR, task, f), "utf8");
        if (!/<item\b/i.test(text)) continue;
        const r = parseRubricText(text, f);
        expect(parseRubricText(rubricToText(r))).toEqual(r);
      }
  });
});

describe("inferScoreRange", () => {
  const table: [string, number, number][] = [
    ["Give a score from 0 to 5.", 0, 5],
    ["Rate 1-10.", 1, 10],
    ["Rate it 1–10 overall.", 1, 10],
    ["A score of 0-5 where 5 is best.", 0, 5],
    ["Coherence (0-3 points)", 0, 3],
    ["Use a scale of 1 to 7.", 1, 7],
    ["Grammar: 0 to 10", 0, 10],
    ["Judge on a 1–4 scale.", 1, 4],
    ["Assign a score between 1 and 6.", 1, 6],
    ["integer from 0 (worst quality) to 5 (best quality)", 0, 5],
    ["Scores from '0' to '5'. Scores of '0' through '3' are for weak work.", 0, 5],
    ['Labels: ["0", "1", "2", "3"].', 0, 3],
    ["- 5: excellent\n- 4: good\n- 2: weak", 2, 5],
    ["- (4): strong\n- (2): ok\n- (0): none", 0, 4],
    ["Score 3: great\nScore 2: fine\nScore 1: poor", 1, 3],
    ["#### Criterion for Integer Score: **6**\nx\n#### Criterion for Integer Score: **1**\ny", 1, 6],
    ["**10**: perfect\n**1**: broken", 1, 10],
    ["Where 1 = poor, 3 = fair and 10 = excellent.", 1, 10],
    ["Give a score out of 10.", 0, 10],
    ["Rate out of 10, from 1 to 10.", 1, 10],
    ["5 - Excellent: flawless\n3 - Fair\n1 - Poor", 1, 5],
    // Penalty and bonus sizes are not the scale.
    ["Deduct 1-2 points for each factual error.", 0, 5],
    ["Score from 0 to 10. Deduct 2 to 3 points for plagiarism; add 1-2 points for originality.", 0, 10],
    ["Penalize by 1–3 points when the answer is a title only. Scores range 0 to 6.", 0, 6],
    ["Deduct 1 point for typos. Score from 0 to 10.", 0, 10],
    ["Lower the score by 2-3 points for a title-only answer.", 0, 5],
    // Prose numbers that are not score scales fall back to 0–5.
    ["If x = 3 then y = 4 holds; x=5 is wrong.", 0, 5],
    ["Between 1990 and 2005 essays got longer; score carefully.", 0, 5],
    ["Write from 3 to 5 paragraphs.", 0, 5],
    ["1. Read the text\n2. Decide\n3. Explain", 0, 5],
    ["The response cites 12 sources and 200 words.", 0, 5],
    ["Score 1000 to 2000 is nonsense.", 0, 5],
    ["no numbers here", 0, 5],
  ];
  it.each(table)("%j → %i–%i", (text, min, max) => {
    expect(inferScoreRange(text)).toEqual({ min, max });
  });

  it("gives sensible ranges on every item of every real rubric file; essay iter_0 is 0–5", () => {
    if (!existsSync(RUBRICS_DIR)) return void console.log(`skip: ${RUBRICS_DIR} absent`);
    let checked = 0;
    for (const task of readdirSync(RUBRICS_DIR))
      for (const f of readdirSync(join(RUBRICS_DIR, task))) {
        const text = readFileSync(join(RUBRICS_DIR, task, f), "utf8");
        if (!/<item\b/i.test(text)) {
          // The math "rubrics" are guideline text without items: that is a clear error, not a crash.
          expect(() => parseRubricText(text, f)).toThrow(RubricError);
          continue;
        }
        const r = parseRubricText(text, f);
        for (const it of r.items) {
          expect(it.min).toBeLessThan(it.max);
          expect(it.max).toBeLessThanOrEqual(100);
          expect(it.min).toBeGreaterThanOrEqual(0);
          checked++;
        }
        expect(new Set(r.items.map((i) => i.name)).size).toBe(r.items.length);
      }
    expect(checked).toBeGreaterThan(5);
    const iter0 = parseRubricText(readFileSync(join(RUBRICS_DIR, "essay_writing/evaluation_rubric_real_iter_0.txt"), "utf8"));
    expect(iter0.items.map((i) => [i.min, i.max])).toEqual([[0, 5]]);
    const expert = parseRubricText(readFileSync(join(RUBRICS_DIR, "essay_writing/evaluation_rubric_expert.txt"), "utf8"));
    expect(expert.items.map((i) => `${i.name} ${i.min}-${i.max}`)).toEqual([
      "ideas-and-content 1-6",
      "organization 1-6",
      "style 1-6",
      "voice 1-6",
      "language-conventions 1-4",
    ]);
  });
});

describe("deriveItemName", () => {
  it.each([
    ["### Ideas and Content\nbody", "ideas-and-content"],
    ["**Clarity of Thought** — body", "clarity-of-thought"],
    ["Relevance: does it answer?", "relevance"],
    ["### Logical Flow and Structure (flow): Assess the logical progression", "logical-flow-and-structure"],
    ["Evaluate the ethical reasoning based on its logic.", "evaluate-ethical-reasoning-based"],
    ["", "item"],
  ])("%j → %s", (text, name) => expect(deriveItemName(text)).toBe(name));
});

describe("parseRubricJson / loadRubricFile / totals", () => {
  it("accepts a valid rubric and rejects bad fields naming them", () => {
    const ok = parseRubricJson({ items: [{ name: "a", text: "t", min: 0, max: 5, weight: 2 }] }, "x.json");
    expect(ok.items[0].weight).toBe(2);
    expect(() => parseRubricJson({ items: [{ name: "a", text: "t", min: 0, max: "5" }] }, "x.json")).toThrow(/x\.json: field 'items\.0\.max'/);
    expect(() => parseRubricJson({ items: [{ name: "a", text: "t", min: 5, max: 1 }] }, "x.json")).toThrow(/items\.0\.max.*min must be below max/);
    expect(() => parseRubricJson({ items: [] }, "x.json")).toThrow(/field 'items'/);
    expect(() => parseRubricJson({ items: [{ name: "a", text: "t", min: 0, max: 1 }, { name: "a", text: "u", min: 0, max: 1 }] }, "x.json")).toThrow(
      /items\.1\.name.*duplicate/,
    );
    expect(() => parseRubricJson({ items: [{ name: "a", text: "<item>t</item>", min: 0, max: 1 }] }, "x.json")).toThrow(/items\.0\.text/);
    expect(() => parseRubricJson({ items: [{ name: "a", text: "t", min: 0, max: 1, extra: 1 }] }, "x.json")).toThrow(/items\.0/);
    expect(() => parseRubricJson(null, "x.json")).toThrow(RubricError);
  });

  it("loads .json, .txt and version files; missing file is a UserError", () => {
    const dir = mkdtempSync(join(tmpdir(), "mpo-rubric-"));
    const r: Rubric = { items: [{ name: "a", text: "Score 0 to 3", min: 0, max: 3 }] };
    writeFileSync(join(dir, "r.json"), JSON.stringify(r));
    writeFileSync(join(dir, "v.json"), JSON.stringify({ version: 0, rubric: r }));
    writeFileSync(join(dir, "r.txt"), rubricToText(r));
    writeFileSync(join(dir, "bad.json"), "{nope");
    expect(loadRubricFile(join(dir, "r.json"))).toEqual(r);
    expect(loadRubricFile(join(dir, "v.json"))).toEqual(r);
    expect(loadRubricFile(join(dir, "r.txt"))).toEqual(r);
    expect(() => loadRubricFile(join(dir, "bad.json"))).toThrow(/bad\.json: not valid JSON/);
    expect(() => loadRubricFile(join(dir, "missing.txt"))).toThrow(UserError);
    expect(() => loadRubricFile(join(dir, "missing.txt"))).toThrow(/not found/);
  });

  it("computes weighted totals", () => {
    const r: Rubric = {
      items: [
        { name: "a", text: "x", min: 0, max: 5 },
        { name: "b", text: "y", min: 1, max: 10, weight: 2 },
      ],
    };
    expect(rubricMinTotal(r)).toBe(2);
    expect(rubricMaxTotal(r)).toBe(25);
  });
});
