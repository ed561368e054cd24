/**
 * Conformance of the paper profile (docs/paper-protocol.md): one sample of each task goes through every
 * judge stage against a fake OpenAI-compatible server that records the exact requests; the test checks
 * turn structure, what each turn contains (and does not), limits, temperatures, stop strings and
 * constraints, and that the doc table states the same limits. Plus the pieces the issue names: the ethics
 * −10 rule, first-box answers with the reference's normalisation, the 2-per-third case sampling, every
 * paper rubric file, and no guidance of ours in the paper prompts.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HARDENED, PAPER } from "../src/judge/protocol.ts";
import { loadTemplates } from "../src/judge/templates.ts";
import { checkFormatRule } from "../src/judge/format-rule.ts";
import { sampleByThirds } from "../src/meta/meta-guidelines.ts";
import { readConfigFile, validate } from "../src/config/load.ts";
import { trainConfigSchema } from "../src/rl/config.ts";
import { createReward } from "../src/rl/reward-factory.ts";
import type { RewardFunction, RewardResult, RewardSample } from "../src/rl/reward-types.ts";
import { loadRubricFile } from "../src/rubric/format.ts";
import { loadGuidelineFile } from "../src/rubric/guidelines.ts";
import { getTask } from "../src/tasks/registry.ts";
import type { TaskDefinition } from "../src/tasks/types.ts";
import { Rng } from "../src/util/rng.ts";
import { firstBoxed, lastBoxed, mathAnswersEqual, referenceAnswersEqual, referenceNormalize } from "../src/verify/index.ts";
import { startFakeOpenAI, type FakeOpenAI, type FakeRequestInfo } from "./helpers/fake-openai-server.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const DOC = readFileSync(join(ROOT, "docs", "paper-protocol.md"), "utf8");
const RUBRICS = join(ROOT, "..", "shared", "data", "rubrics");

const last = (req: FakeRequestInfo) => req.messages.at(-1)?.content ?? "";

/** Replies of a judge that follows the paper prompts (recognized by their own phrases). */
function paperJudge(req: FakeRequestInfo): string {
  const u = last(req);
  if (u.includes("Give your feedback on this item")) return "The text answers the instruction clearly.<EOE>";
  if (u.includes("Give this item's score now")) return "4";
  if (u.includes("how many distinct scoring criteria are needed")) return "2";
  if (/Write scoring criterion #(\d+)/.test(u)) return `### Focus ${/#(\d+)/.exec(u)![1]}\n- 5: stays on the prompt, e.g. every paragraph serves it.\n- 0: ignores it.<EOE>`;
  if (u.includes("how many distinct, non-overlapping scoring criteria")) return "2";
  if (/Write merged criterion #(\d+)/.test(u)) return `### Merged ${/#(\d+)/.exec(u)![1]}\n- 5: excellent, e.g. a clear thesis.\n- 0: missing.<EOE>`;
  if (u.includes("Write your evaluation plan")) return "1. Check the factoring.\n2. Check the final value.<EOE>";
  if (u.includes("Write your evaluation and end it")) return "Step 1 holds; step 2 holds.<EOE>";
  if (u.includes("Reply with the integer only")) return "4";
  if (u.includes("write the next version of the guidelines")) return "Check every algebraic step and the final boxed value.<EOE>";
  if (u.includes("Write a meta-level analysis")) return "Grades were generous to unsupported answers.<EOE>";
  if (u.includes("Keep the analysis within")) return "The score is inflated: the essay drifts off topic.<EOE>";
  return "?";
}

/** The limits cell the doc must state for a recorded request. */
function limits(body: any): string {
  const parts = [`\`max_tokens=${body.max_tokens}\``, `\`temperature=${body.temperature}\``];
  if (body.stop) parts.push(`\`stop=${body.stop.join("\\|")}\``);
  if (body.regex) parts.push(`\`regex=${body.regex}\``);
  return parts.join(", ");
}

function docRow(stage: string): string {
  const row = DOC.split("\n").find((l) => l.startsWith(`| ${stage} |`));
  if (!row) throw new Error(`docs/paper-protocol.md has no row for "${stage}"`);
  return row;
}

let server: FakeOpenAI;
let dir: string;
beforeAll(async () => {
  server = await startFakeOpenAI({ reply: paperJudge });
  dir = mkdtempSync(join(tmpdir(), "mpo-paper-"));
});
afterAll(() => server.close());

function jsonl(name: string, rows: object[]): string {
  const p = join(dir, name);
  writeFileSync(p, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  return p;
}

function reward(task: TaskDefinition, kind: "judge" | "math-mixed", runName: string, extra: object = {}): RewardFunction {
  const rm = { baseURL: server.url, model: "judge", server: "sglang" as const, maxTries: 1 };
  const cfg =
    kind === "judge"
      ? ({ kind, rm, mode: "per-item", protocol: "paper", metaSamples: 2, prescreen: false, concurrency: 1, ...extra } as const)
      : ({ kind, rm, answerCheckProbability: 0, minReasoningWords: 30, protocol: "paper", concurrency: 1, ...extra } as const);
  return createReward(cfg as never, { runDir: join(dir, runName), task, seed: 1 });
}

const essayText =
  "Lighthouses stand where land gives way to sea. Their keepers once climbed the stairs every evening to light the lamp, and ships steered by that light through storms. Today most lights run by themselves, yet the towers still guide sailors home and remind the rest of us how much care a coast once required.";

describe("paper profile: the junior and senior judge of a rubric task (essay)", () => {
  let reqs: any[];
  let results: RewardResult[];
  let samples: RewardSample[];
  beforeAll(async () => {
    const task = await getTask("essay", { data: { train: jsonl("essay.jsonl", [{ id: "e1", prompt: "Describe a lighthouse at night." }, { id: "e2", prompt: "Write a story about a lost key." }]) } });
    const recs = await task.load("train");
    const r = reward(task, "judge", "essay");
    samples = recs.map((record) => ({ record, response: essayText, finished: true }));
    const before = server.requests.length;
    results = await r.score(samples, { step: 0 });
    await r.metaStep!(samples.map((s, i) => ({ ...s, result: results[i] })), { step: 10 });
    reqs = server.requests.slice(before);
  });

  it("scores one rubric item as rationale turn then integer turn, in one conversation, unclamped raw sum", () => {
    // iter-0 essay rubric: one item → two requests per response.
    const [rat, sc] = reqs.slice(0, 2);
    expect(rat.messages.map((m: any) => m.role)).toEqual(["system", "user", "user"]);
    expect(rat.messages[0].content).toBe("You are acting as an English teacher.");
    const intro = rat.messages[1].content;
    expect(intro).toContain("Acting as an English writer, write an essay or a story");
    expect(intro).toContain("## Prompt\nDescribe a lighthouse at night.\n");
    expect(intro).toContain(essayText);
    expect(rat.messages[2].content).toMatch(/^Rubric item #1\nYour evaluation should focus on the "discourse" aspect/);
    expect(rat).toMatchObject({ max_tokens: 300, temperature: 0.02, stop: ["<EOE>"] });
    expect(sc.messages.slice(0, 3)).toEqual(rat.messages);
    expect(sc.messages[3]).toEqual({ role: "assistant", content: "The text answers the instruction clearly." });
    expect(sc.messages[4].role).toBe("user");
    expect(sc).toMatchObject({ max_tokens: 16, temperature: 0.02, regex: "[0-9]+" });
    expect(docRow("junior per-item rationale")).toContain(limits(rat));
    expect(docRow("junior score")).toContain(limits(sc));
    expect(results[0]).toMatchObject({ score: 4, normalized: 0.8 });
  });

  it("analysis sees task instruction, bare prompt, response, the rubric file's form and the junior's total only", () => {
    const an = reqs.find((q) => last(q).includes("Keep the analysis within"));
    expect(an.messages.map((m: any) => m.role)).toEqual(["system", "user"]);
    expect(an.messages[0].content).toBe("You are acting as an English teacher.");
    const u = an.messages[1].content;
    expect(u).toContain("## Task description\nActing as an English writer");
    expect(u).toMatch(/## Prompt given to the student\n(Describe a lighthouse at night\.|Write a story about a lost key\.)\n/);
    expect(u).toContain('<rubric>\n<item>\nYour evaluation should focus on the "discourse" aspect');
    expect(u).not.toContain('name="');
    expect(u).toContain("## Score the junior instructor assigned\n4\n");
    expect(u).not.toContain("answers the instruction clearly"); // no rationales by default
    expect(u).toContain("1000 words");
    expect(an).toMatchObject({ max_tokens: 2000, temperature: 0.02, stop: ["<EOE>", "</EOE>"] });
    expect(docRow("analysis")).toContain(limits(an));
  });

  it("refinement and merge: a count turn, then one criterion per turn, merged and stored", () => {
    const count = reqs.find((q) => last(q).includes("how many distinct scoring criteria"));
    const roles = count.messages.map((m: any) => m.role);
    expect(roles).toEqual(["system", "user", "assistant", "user", "user"]);
    expect(count.messages[3].content).toContain("separate items for awarding points and for deducting points");
    expect(count.messages[3].content).not.toMatch(/0 to 5|Score from/);
    expect(count).toMatchObject({ max_tokens: 8, temperature: 0.02, regex: "[0-9]+" });
    const items = reqs.filter((q) => /Write scoring criterion #\d/.test(last(q)));
    expect(items).toHaveLength(4); // 2 samples × 2 criteria
    const second = items.find((q) => last(q).includes("#2"))!;
    // … count (user), "2" (assistant), "write them one at a time" (user), #1 (user), criterion 1 (assistant), #2 (user).
    expect(second.messages.map((m: any) => m.role).slice(-6)).toEqual(["user", "assistant", "user", "user", "assistant", "user"]);
    expect(second.messages.at(-2).content).toMatch(/^### Focus 1\n/);
    expect(last(second)).toContain("fewer than 300 words");
    expect(second).toMatchObject({ max_tokens: 500, temperature: 0.02, stop: ["<EOE>", "</EOE>"] });
    expect(docRow("refinement")).toContain(limits(count));
    expect(docRow("refinement criterion")).toContain(limits(second));

    const mcount = reqs.find((q) => last(q).includes("non-overlapping scoring criteria"));
    expect(mcount.messages.map((m: any) => m.role)).toEqual(["system", "user", "user"]);
    expect(mcount.messages[1].content).toContain("Scoring criteria set #1:\n<rubric>\n<item>\n### Focus 1");
    expect(mcount.messages[1].content).toContain("\n===\nScoring criteria set #2:");
    const mitems = reqs.filter((q) => /Write merged criterion #\d/.test(last(q)));
    expect(mitems).toHaveLength(2);
    expect(docRow("merge count")).toContain(limits(mcount));
    expect(docRow("merge criterion")).toContain(limits(mitems[1]));
    const v1 = JSON.parse(readFileSync(join(dir, "essay", "rubrics", "v0001.json"), "utf8"));
    expect(v1.rubric.items.map((i: any) => i.text.split("\n")[0])).toEqual(["### Merged 1", "### Merged 2"]);
  });
});

describe("paper profile: what the summarization and ethics judges see", () => {
  it("summarization: government-official persona, bill and summary only (no instruction, no gold)", async () => {
    const task = await getTask("summarization", { data: { train: jsonl("bills.jsonl", [{ text: "SEC. 1. Grants for rural broadband.", summary: "GOLD: authorizes broadband grants.", title: "Broadband" }]) } });
    const [record] = await task.load("train");
    const before = server.requests.length;
    await reward(task, "judge", "sum").score([{ record, response: "The bill funds broadband grants.", finished: true }], { step: 0 });
    const [rat] = server.requests.slice(before);
    expect(rat.messages[0].content).toBe("You are acting as an experienced government official.");
    expect(rat.messages[1].content).toContain("## Prompt\nSEC. 1. Grants for rural broadband.\n");
    expect(rat.messages[1].content).not.toContain("GOLD");
    expect(rat.messages[1].content).not.toContain("Task instruction");
    // --judge-sees-reference keeps today's behaviour.
    const b2 = server.requests.length;
    await reward(task, "judge", "sum2", { judgeSeesReference: true }).score([{ record, response: "x y z", finished: true }], { step: 0 });
    expect(server.requests[b2].messages[1].content).toContain("GOLD: authorizes broadband grants.");
  });

  it("ethics: −10 without a verdict or with under 30 words of reasoning, no judge call; else the philosopher judges", async () => {
    const task = await getTask("ethics", { data: { train: jsonl("anec.jsonl", [{ id: "a", title: "AITA?", text: "I kept the umbrella.", action: { description: "keeping the umbrella" }, binarized_label: "WRONG" }]) } });
    const [record] = await task.load("train");
    const long = Array.from({ length: 31 }, (_, i) => `w${i}`).join(" ");
    const before = server.requests.length;
    const res = await reward(task, "judge", "eth").score(
      [
        { record, response: `${long} so it was wrong.`, finished: true },
        { record, response: "Too short. <verdict>WRONG</verdict>", finished: true },
        { record, response: `${long} <verdict>WRONG</verdict>`, finished: true },
      ],
      { step: 0 },
    );
    expect(res.map((r) => r.score)).toEqual([-10, -10, 4]);
    expect(res[0].flags).toContain("missing-verdict");
    expect(res[1].flags).toContain("too-short");
    const reqs = server.requests.slice(before);
    expect(reqs).toHaveLength(2); // only the third response was judged
    expect(reqs[0].messages[0].content).toBe("You are a thoughtful moral philosopher.");
    expect(reqs[0].messages[1].content).toContain('Title: AITA?\nI kept the umbrella.\n\nAction to evaluate: "keeping the umbrella"');
    expect(checkFormatRule("<verdict>right</verdict> " + long, { tag: "verdict", values: ["RIGHT", "WRONG"], minWords: 30, score: -10 }, 0)).not.toBeNull();
  });
});

describe("paper profile: math", () => {
  const reasoning = "We expand the product, collect like terms and solve the resulting linear equation step by step, checking each algebraic manipulation carefully so that the final value satisfies the original equation as required here.";

  it("plan and execute at 2,000 tokens with <EOE>, score [0-5]; guideline step sees 6 cases (2 per third) with plans", async () => {
    const rows = Array.from({ length: 12 }, (_, i) => ({ id: `m${i}`, problem: `Solve x+${i}=${i + 2}.`, solution: `x = 2, so \\boxed{2}. Check: \\boxed{2}`, answer: "2", domain: "algebra", level: "Level 1", type: "Algebra" }));
    const file = jsonl("math.jsonl", rows);
    const task = await getTask("math", { data: { train: file, test: file }, cacheDir: join(dir, "cache"), clusters: 1 });
    const recs = await task.load("train");
    const r = reward(task, "math-mixed", "math");
    const before = server.requests.length;
    const samples = recs.map((record, i) => ({ record, response: `${reasoning} So \\boxed{${i % 3 === 0 ? 2 : 5}}.`, finished: true }));
    const results = await r.score(samples, { step: 0 });
    const reqs = server.requests.slice(before);
    const plan = reqs[0];
    expect(plan.messages[0].content).toBe("You are an accomplished mathematician.");
    expect(plan.messages[1].content).toContain("## Problem\nSolve x+0=2.\n");
    expect(plan.messages[1].content).toContain("## Guidelines\nEvaluate the correctness of the [Student Response].");
    expect(plan).toMatchObject({ max_tokens: 2000, temperature: 0.02, stop: ["<EOE>"] });
    const exec = reqs[1];
    expect(exec).toMatchObject({ max_tokens: 2000, stop: ["<EOE>"] });
    expect(reqs[2]).toMatchObject({ max_tokens: 8, regex: "[0-5]" });
    expect(docRow("math plan")).toContain(limits(plan));
    expect(docRow("math execute")).toContain(limits(exec));
    expect(docRow("math score")).toContain(limits(reqs[2]));

    // Spread the scores so the thirds differ, then run the guideline meta step.
    const rolled = samples.map((s, i) => ({ ...s, result: { ...results[i], evaluation: { ...results[i].evaluation!, total: i % 6 } } }));
    const b2 = server.requests.length;
    const meta = await r.metaStep!(rolled, { step: 20 });
    expect(meta.ok).toBe(true);
    const an = server.requests.slice(b2).find((q) => last(q).includes("Write a meta-level analysis"));
    expect(an.messages[1].content.match(/^### Case \d+$/gm)).toHaveLength(6);
    expect(an.messages[1].content).toContain("Evaluation plan:\n1. Check the factoring.");
    expect(an).toMatchObject({ max_tokens: 2500, stop: ["<EOE>", "</EOE>"] });
    expect(docRow("guideline analysis (math)")).toContain(limits(an));
    const g = JSON.parse(readFileSync(join(dir, "math", "guidelines", "v0001.json"), "utf8"));
    expect(g.guidelines.groups["algebra/0"]).toBe("Check every algebraic step and the final boxed value.");
  });

  it("answer check reads the first box and matches with the reference's normalisation; last box and lenient are options", () => {
    const text = "First \\boxed{\\frac12}, then corrected to \\boxed{3}.";
    expect(firstBoxed(text)).toBe("\\frac12");
    expect(lastBoxed(text)).toBe("3");
    expect(referenceAnswersEqual("\\frac12", "\\frac{1}{2}")).toBe(true);
    expect(referenceAnswersEqual("0.5", "\\frac{1}{2}")).toBe(true);
    expect(referenceAnswersEqual("0.50", "\\frac{1}{2}")).toBe(false); // only the lenient matcher equates these
    expect(mathAnswersEqual("0.50", "\\frac{1}{2}")).toBe(true);
    expect(referenceAnswersEqual("x = 5", "5")).toBe(true);
    // The reference strips spaces before normalising, so its "\\text{ " unit rule never fires in the answer check.
    expect(referenceNormalize("10\\text{ cm}")).toBe("10");
    expect(referenceAnswersEqual("10\\text{ cm}", "10")).toBe(false);
    expect(referenceAnswersEqual("\\dfrac{3}{4}", "3/4")).toBe(true);
    expect(referenceAnswersEqual("\\left(1,2\\right)", "(1, 2)")).toBe(true);
  });

  it("2 per score third, seeded: 6 of 12 cases, two from each third; fewer than 3 cases → all", () => {
    const cases = Array.from({ length: 12 }, (_, i) => ({ id: i, score: 11 - i }));
    const a = sampleByThirds(cases, (c) => c.score, 2, new Rng(3));
    const b = sampleByThirds(cases, (c) => c.score, 2, new Rng(3));
    expect(a).toEqual(b);
    expect(a).toHaveLength(6);
    const third = (c: { score: number }) => Math.floor(c.score / 4);
    expect([0, 1, 2].map((t) => a.filter((c) => third(c) === t).length)).toEqual([2, 2, 2]);
    expect(sampleByThirds(cases.slice(0, 2), (c) => c.score, 2, new Rng(1))).toHaveLength(2);
    // 4 cases: parts of 2, 1, 1 → 4 drawn.
    expect(sampleByThirds(cases.slice(0, 4), (c) => c.score, 2, new Rng(1))).toHaveLength(4);
  });
});

describe("the paper's files and prompts", () => {
  it.skipIf(!existsSync(RUBRICS))("every paper rubric file in ../shared/data/rubrics loads as a rubric; math files as every group's guideline", () => {
    for (const task of readdirSync(RUBRICS)) {
      for (const f of readdirSync(join(RUBRICS, task))) {
        const p = join(RUBRICS, task, f);
        const r = loadRubricFile(p);
        expect(r.items.length, p).toBeGreaterThan(0);
        for (const it of r.items) expect(it.text.trim().length, p).toBeGreaterThan(0);
        if (task === "math_reasoning") {
          const g = loadGuidelineFile(p);
          expect(Object.keys(g.groups)).toEqual(["default"]);
          expect(g.groups.default).not.toMatch(/\[(Start|End) of/);
        }
      }
    }
    expect(loadRubricFile(join(RUBRICS, "essay_writing", "evaluation_rubric_expert.txt")).items).toHaveLength(5);
    expect(loadGuidelineFile(join(RUBRICS, "math_reasoning", "evaluation_rubric_real_iter_0.txt")).groups.default).toBe("Evaluate the correctness of the [Student Response].");
  });

  it("the shipped iter-0 rubrics are the paper's files byte for byte", () => {
    for (const t of ["essay_writing", "summarization", "ethical_reasoning", "math_reasoning"]) {
      const ours = join(ROOT, "prompts", "rubrics", "paper", t, "evaluation_rubric_real_iter_0.txt");
      const shared = join(RUBRICS, t, "evaluation_rubric_real_iter_0.txt");
      expect(existsSync(ours)).toBe(true);
      if (existsSync(shared)) expect(readFileSync(ours, "utf8")).toBe(readFileSync(shared, "utf8"));
    }
    expect(readFileSync(join(ROOT, "prompts", "rubrics", "paper", "NOTICE.md"), "utf8")).toMatch(/19972d3b[\s\S]*Apache License 2\.0/);
  });

  it("no paper-profile prompt carries guidance the reference does not give", () => {
    const t = loadTemplates();
    const names = [...Object.values(PAPER.templates), "tasks/essay/user.md", "tasks/essay/instruction.md", "tasks/summarization/instruction.md", "tasks/ethics/instruction.md", "tasks/math/instruction.md"]
      .concat(["essay", "summarization", "ethics", "math"].map((k) => `tasks/${k}/judge-persona.md`))
      .filter((n, i, a) => n && a.indexOf(n) === i && !Object.values(HARDENED.templates).includes(n)) as string[];
    expect(names.length).toBeGreaterThan(20);
    const ours = [/length or confident tone/i, /cannot be gamed/i, /keyword stuffing/i, /stay on (?:the )?topic/i, /beginning, development/i, /impartial, exacting/i, /Score from 0 to 5/i, /padding/i, /exploit/i];
    for (const n of names) for (const re of ours) expect(t.raw(n), `${n} matches ${re}`).not.toMatch(re);
  });

  it("the paper PPO recipe validates as a training config with the reference's settings", () => {
    // The policy comes from --policy (a Qwen2.5-1.5B-Instruct directory in the paper).
    const raw = { ...(readConfigFile(join(ROOT, "examples", "paper", "essay-ppo.yaml")) as object), policy: "some/policy-dir" };
    const cfg = validate(trainConfigSchema, raw, "essay-ppo.yaml");
    expect(cfg).toMatchObject({ algo: "ppo", batchSize: 64, maxNewTokens: 1000, temperature: 0.7, klCoef: 0.02, lr: 3e-6, ppoEpochs: 4, miniBatches: 1, missingEosPenalty: 1, mpoInterval: 10 });
    expect(cfg.reward).toMatchObject({ kind: "judge", protocol: "paper" });
  });
});
