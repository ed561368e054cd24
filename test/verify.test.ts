import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { allBoxed, extractVerdict, isTooShort, lastBoxed, mathAnswersEqual, normalizeMathAnswer, numericValue, wordCount } from "../src/verify/index.ts";
import { Rng } from "../src/util/rng.ts";

const MATH_TEST = resolve(__dirname, "../../shared/data/math/test.jsonl");
const mathRecords = (): { id: string; solution: string; answer: string }[] | null =>
  existsSync(MATH_TEST)
    ? readFileSync(MATH_TEST, "utf8")
        .split("\n")
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l))
    : null;

describe("lastBoxed", () => {
  it.each([
    ["so the answer is $\\boxed{5}$.", "5"],
    ["first \\boxed{1} then \\boxed{ 2 }", "2"],
    ["nested \\boxed{\\frac{1}{\\sqrt{2}}} done", "\\frac{1}{\\sqrt{2}}"],
    ["matrix \\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"],
    ["escaped braces \\boxed{\\{1,2\\}}", "\\{1,2\\}"],
    ["brace-less $\\boxed 5$", "5"],
    ["fbox \\fbox{42}", "42"],
    ["space before brace \\boxed {7}", "7"],
    ["last one unbalanced \\boxed{3} and \\boxed{4", "3"],
    ["no box here", null],
    ["\\boxedfoo{3} is not a box", null],
    ["", null],
  ])("%j → %j", (text, want) => expect(lastBoxed(text)).toBe(want));

  it("lists all boxes in order", () => expect(allBoxed("\\boxed{a} x \\fbox{b} \\boxed c")).toEqual(["a", "b", "c"]));

  it("equals the gold `answer` for every MATH test record", () => {
    const recs = mathRecords();
    if (!recs) return void console.log(`skip: ${MATH_TEST} absent`);
    const mismatches = recs.filter((r) => lastBoxed(r.solution) !== r.answer).map((r) => r.id);
    expect(mismatches).toEqual([]);
    expect(recs.length).toBe(5000);
  });
});

describe("normalizeMathAnswer / mathAnswersEqual", () => {
  const equivalent: [string, string][] = [
    ["\\frac{1}{2}", "\\dfrac12"],
    ["\\dfrac12", "1/2"],
    ["1/2", "0.5"],
    ["\\frac{1}{2}", "0.5"],
    ["0.5", ".5"],
    ["\\sqrt3", "\\sqrt{3}"],
    ["2\\sqrt 5", "2\\sqrt{5}"],
    ["\\frac{\\sqrt3}2", "\\frac{\\sqrt{3}}{2}"],
    ["\\frac1b", "\\frac{1}{b}"],
    ["10^\\circ", "10"],
    ["10^{\\circ}", "10"],
    ["50\\%", "50"],
    ["x = 3", "3"],
    ["k=15", "15"],
    ["\\left(1,2\\right)", "(1,2)"],
    ["(1, 2)", "(1,2)"],
    ["5 \\text{ cm}", "5"],
    ["5\\mbox{ cm}^2", "5"],
    ["12 square units", "12"],
    ["45 degrees", "45"],
    ["\\$4", "4"],
    ["$4$", "4"],
    ["1,000", "1000"],
    ["1{,}000", "1000"],
    ["85,\\!184", "85184"],
    ["5.0", "5"],
    ["2.50", "2.5"],
    ["\\text{(C)}", "C"],
    ["\\text{odd}", "odd"],
    ["-\\frac{3}{4}", "\\frac{-3}{4}"],
    ["-3/4", "-0.75"],
    ["x^{2}+1", "x^2 + 1"],
    ["12\\text{ and }13", "12, 13"],
    ["\\boxed{7}", "7"],
    ["\\frac{6}{4}", "1.5"],
    ["12345678901234567890", "12345678901234567890.0"],
    ["2\\frac{1}{2}", "\\frac{5}{2}"],
    ["-15\\frac{3}{5}", "-15.6"],
    ["6\\frac{1}{6}\\text{ feet}", "\\frac{37}{6}"],
    ["−3", "-3"],
    ["2π", "2\\pi"],
    ["√3", "\\sqrt{3}"],
  ];
  it.each(equivalent)("%j ≡ %j", (a, b) => {
    expect(mathAnswersEqual(a, b)).toBe(true);
    expect(mathAnswersEqual(b, a)).toBe(true);
  });

  const different: [string, string][] = [
    ["2x", "2"],
    ["3m", "3"],
    ["\\frac{1}{2}", "\\frac{2}{1}"],
    ["(1,2)", "(2,1)"],
    ["\\sqrt{3}", "3"],
    ["-3", "3"],
    ["0.33", "\\frac13"],
    ["x^2", "x^3"],
    ["10^\\circ", "100"],
    ["70,110", "70"],
    ["1,2", "12"],
    ["\\frac{1}{3}", "\\frac{1}{3}\\pi"],
    ["12345678901234567890", "12345678901234567891"],
    ["2\\frac{3}{2}", "3.5"],
    ["x\\frac{1}{2}", "\\frac{1}{2}"],
    ["", ""],
    ["5", ""],
  ];
  it.each(different)("%j ≢ %j", (a, b) => expect(mathAnswersEqual(a, b)).toBe(false));

  it("handles null/undefined as no answer", () => {
    expect(mathAnswersEqual(null, "1")).toBe(false);
    expect(mathAnswersEqual("1", undefined)).toBe(false);
  });

  it("reads exact rational values", () => {
    expect(numericValue("-\\frac{3}{4}")).toEqual({ p: -3n, q: 4n });
    expect(numericValue("2.5")).toEqual({ p: 25n, q: 10n });
    expect(numericValue("\\frac{1}{0}")).toBeNull();
    expect(numericValue("x")).toBeNull();
  });

  it("on the MATH test set: every answer equals itself, normalization is idempotent", () => {
    const recs = mathRecords();
    if (!recs) return void console.log(`skip: ${MATH_TEST} absent`);
    for (const r of recs) {
      expect(mathAnswersEqual(r.answer, r.answer), r.id).toBe(true);
      const n = normalizeMathAnswer(r.answer);
      expect(normalizeMathAnswer(n), r.id).toBe(n);
      // A response boxing the gold answer is graded right.
      expect(mathAnswersEqual(lastBoxed(`We get $\\boxed{${r.answer}}$.`), r.answer), r.id).toBe(true);
    }
  });

  it("on the MATH test set: different gold answers never match unless numerically equal", () => {
    const recs = mathRecords();
    if (!recs) return void console.log(`skip: ${MATH_TEST} absent`);
    const answers = [...new Set(recs.map((r) => r.answer))];
    const rng = new Rng(2024);
    let pairs = 0;
    let falseMatches = 0;
    let numericMatches = 0;
    while (pairs < 2000) {
      const a = answers[rng.int(answers.length)];
      const b = answers[rng.int(answers.length)];
      const na = normalizeMathAnswer(a);
      const nb = normalizeMathAnswer(b);
      if (na === nb) continue;
      pairs++;
      if (!mathAnswersEqual(a, b)) continue;
      const x = numericValue(na);
      const y = numericValue(nb);
      if (x && y && x.p * y.q === y.p * x.q) numericMatches++;
      else falseMatches++;
    }
    expect(falseMatches).toBe(0);
    // Distinct gold answers are rarely the same number written differently.
    expect(numericMatches).toBeLessThan(20);
  });
});

describe("extractVerdict", () => {
  it.each([
    ["The author is fine. <verdict>RIGHT</verdict>", "RIGHT"],
    ["<verdict> wrong </verdict>", "WRONG"],
    ["<VERDICT>\n  Right\n</VERDICT>", "RIGHT"],
    ["<verdict>**WRONG**</verdict>", "WRONG"],
    ["Format: <verdict>RIGHT</verdict> or <verdict>WRONG</verdict>. My answer: <verdict>WRONG</verdict>", "WRONG"],
    ["<verdict>RIGHT</verdict> ... on reflection <verdict>WRONG", "WRONG"],
    ["<verdict>maybe</verdict>", null],
    ["<verdict>RIGHT</verdict> then <verdict>unsure</verdict>", null],
    ["RIGHT", null],
    ["<verdict></verdict>", null],
    ["", null],
  ])("%j → %j", (text, want) => expect(extractVerdict(text)).toBe(want));
});

describe("reasoning length", () => {
  it("counts words with letters or digits only", () => {
    expect(wordCount("")).toBe(0);
    expect(wordCount("  one two\nthree  ")).toBe(3);
    expect(wordCount("x = 3 , so $ \\boxed{3}")).toBe(4);
  });
  it("flags rationales under the minimum", () => {
    const words = (n: number) => Array.from({ length: n }, (_, i) => `w${i}`).join(" ");
    expect(isTooShort(words(29))).toBe(true);
    expect(isTooShort(words(30))).toBe(false);
    expect(isTooShort(words(5), 5)).toBe(false);
    expect(isTooShort("\\boxed{5}")).toBe(true);
  });
});
