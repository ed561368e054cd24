/**
 * `mpo sim-server` answers every prompt the project sends, over real HTTP, through the real client, judges,
 * meta steps and parsers — and refuses (an error naming it) what it does not recognise.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createChatModel } from "../src/llm/index.ts";
import { RubricJudge } from "../src/judge/rubric-judge.ts";
import { PlanExecuteJudge } from "../src/judge/plan-execute.ts";
import { loadTemplates } from "../src/judge/templates.ts";
import { metaStep } from "../src/meta/meta-step.ts";
import { metaStepGuidelines } from "../src/meta/meta-guidelines.ts";
import { parseRubricText } from "../src/rubric/format.ts";
import { GuidelineStore, RubricStore } from "../src/rubric/store.ts";
import { startSimServer } from "../src/sandbox/sim-server.ts";
import { Recognizer } from "../src/sandbox/sim/recognize.ts";
import { SIMULATED_TEMPLATES } from "../src/sandbox/sim/sim-model.ts";
import { Rng } from "../src/util/rng.ts";
import type { Evaluation } from "../src/judge/types.ts";

let sim: Awaited<ReturnType<typeof startSimServer>>;
beforeAll(async () => {
  sim = await startSimServer({ port: 0 });
});
afterAll(async () => {
  await sim.app.close();
});
const model = () => createChatModel({ baseURL: sim.url, model: "mpo-sim-judge", server: "vllm", maxTries: 1 });

const prompt = "Write a short essay arguing that public libraries deserve more money.";
const good =
  "Public libraries deserve more money because they give every reader free books. For example, students borrow books for their homework and families read together in the evening. However, many libraries have cut their hours. In conclusion, more money for libraries helps the whole community learn.";
const repeated = "Libraries are good. Libraries are good. Libraries are good. Libraries are good.";
const rubric = parseRubricText(`<rubric>
<item>
### No repetition
Does each sentence add something new? Deduct 2 points for every repeated sentence. Score from 0 to 5.
</item>
<item>
### Relevance to the prompt
Does every sentence address the prompt's topic? Score from 0 to 5.
</item>
</rubric>`);

describe("sim-server: junior judge", () => {
  it.each(["per-item", "single-call"] as const)("%s: reads every item, scores the repetitive essay lower, no fallback flags", async (mode) => {
    const store = RubricStore.open(mkdtempSync(join(tmpdir(), "mpo-sim-")));
    const v0 = store.initialize(rubric);
    const judge = new RubricJudge({ model: model(), mode });
    const a = await judge.score({ taskDescription: "Write an essay.", prompt, response: good }, v0);
    const b = await judge.score({ taskDescription: "Write an essay.", prompt, response: repeated }, v0);
    for (const ev of [a, b]) {
      expect(ev.items.map((i) => i.name)).toEqual(rubric.items.map((i) => i.name));
      expect(ev.items.flatMap((i) => i.flags)).toEqual([]);
      expect(ev.items.every((i) => i.rationale.length > 10)).toBe(true);
    }
    expect(b.items[0].score).toBeLessThan(a.items[0].score);
  });

  it("plan → execute → grade: a correct boxed answer with work beats a wrong one", async () => {
    const judge = new PlanExecuteJudge({ model: model() });
    const gv = GuidelineStore.open(mkdtempSync(join(tmpdir(), "mpo-sim-"))).initialize({ groups: {} });
    const problem = { taskDescription: "Solve the problem.", prompt: "What is 12 times 12?", reference: "12 \\times 12 = \\boxed{144}" };
    const work = "We multiply twelve by twelve. Twelve times ten is 120 and twelve times two is 24, so adding the two partial products gives 120 + 24 = 144, which is the product we want. Checking: 144 divided by 12 is 12, as expected. The answer is \\boxed{144}.";
    const right = await judge.score({ ...problem, response: work }, gv);
    const wrong = await judge.score({ ...problem, response: work.replace(/\\boxed\{144\}/, "\\boxed{142}") }, gv);
    for (const ev of [right, wrong]) expect(ev.flags.filter((f) => f !== "no-guidelines")).toEqual([]);
    expect(right.total).toBeGreaterThanOrEqual(4);
    expect(wrong.total).toBeLessThanOrEqual(1);
  });
});

function evaluationOf(score: number): Evaluation {
  return {
    items: rubric.items.map((it) => ({ name: it.name, score, min: 0, max: 5, rationale: "Looks fine.", raw: String(score), flags: [] })),
    total: 2 * score,
    normalized: score / 5,
    rubricVersion: 0,
    mode: "per-item",
    flags: [],
    raw: [],
  };
}

describe("sim-server: senior judge", () => {
  it("prescreen, analyze → refine, merge: a meta step writes a new version naming the exploit", async () => {
    const runDir = mkdtempSync(join(tmpdir(), "mpo-sim-"));
    const store = RubricStore.open(runDir);
    store.initialize(parseRubricText("<rubric><item>### Discourse\nGood discourse. Score from 0 to 5.</item></rubric>"));
    const rollouts = Array.from({ length: 6 }, (_, i) => ({
      id: `r${i}`, taskDescription: "Write an essay.", prompt, response: i % 2 ? repeated : good, evaluation: evaluationOf(5),
    }));
    const res = await metaStep({ model: model(), store, step: 1, runDir, rng: new Rng(0), samples: 4, rollouts, prescreen: true });
    expect(res.error).toBeUndefined();
    expect(res.ok).toBe(true);
    const names = res.version!.rubric.items.map((i) => i.name.toLowerCase()).join(" | ");
    expect(names).toMatch(/repetition/);
    const log = JSON.parse(readFileSync(join(runDir, res.logPath), "utf8"));
    expect(log.prescreen.counts.unclear).toBe(0);
  });

  it("guideline analysis and rewrite: a new guideline version for the group", async () => {
    const runDir = mkdtempSync(join(tmpdir(), "mpo-sim-"));
    const store = GuidelineStore.open(runDir);
    store.initialize({ groups: {} });
    const rollouts = Array.from({ length: 4 }, (_, i) => ({
      id: `m${i}`, taskDescription: "Solve.", prompt: "What is 2+2?", reference: "\\boxed{4}", group: "arithmetic",
      response: i % 2 ? "\\boxed{5}" : "Two plus two: 2 + 2 = 4. \\boxed{4}", evaluation: { ...evaluationOf(5), items: [{ name: "grade", score: 5, min: 0, max: 5, rationale: "ok", raw: "5", flags: [] }], total: 5, normalized: 1 },
    }));
    const res = await metaStepGuidelines({ model: model(), store, step: 1, runDir, rng: new Rng(0), rollouts });
    expect(res.error).toBeUndefined();
    expect(res.ok).toBe(true);
    expect(res.version!.guidelines.groups.arithmetic).toMatch(/boxed/);
  });
});

describe("sim-server: recognition", () => {
  it("recognises every built-in prompt template it answers by its own file, and answers every judge/meta template", () => {
    const t = loadTemplates();
    const rec = new Recognizer(t);
    const judgeAndMeta = t.names().filter((n) => /^(rm|mrm)\//.test(n) && !/system\.md$/.test(n));
    // Conversation openers are read by later turns, never answered themselves: the junior's first message
    // (rm/response.md, rm/paper/response.md) and, in the paper profile's count-then-each conversations, the
    // refine/merge openers and the "write each" preamble (the count and item turns that follow are answered).
    const openers = new Set(["rm/response.md", "rm/paper/response.md", "mrm/paper/refine.md", "mrm/paper/merge.md", "mrm/paper/write-each.md"]);
    for (const n of judgeAndMeta) if (!openers.has(n)) expect(SIMULATED_TEMPLATES, n).toContain(n);
    const rendered = t.render("rm/item-rationale.md", { index: 2, count: 3, name: "Flow", min: 0, max: 5, text: "Links ideas." });
    expect(rec.match(rendered)).toEqual({ name: "rm/item-rationale.md", values: { index: "2", count: "3", name: "Flow", min: "0", max: "5", text: "Links ideas." } });
    const noRef = t.render("rm/response.md", { taskDescription: "T", prompt: "P", response: "R", reference: "" });
    expect(rec.match(noRef)?.values).toMatchObject({ taskDescription: "T", prompt: "P", response: "R" });
  });

  it("an unrecognised request gets a 400 error naming it, not plausible text", async () => {
    const res = await fetch(`${sim.url}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "x", messages: [{ role: "user", content: "Tell me a joke about judges." }] }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { message: string; code: string } };
    expect(body.error.code).toBe("unrecognised_request");
    expect(body.error.message).toMatch(/does not recognise.*Tell me a joke about judges/);
  });

  it("a template it recognises but does not simulate is named in the error", async () => {
    const t = loadTemplates().with({ "rm/brand-new-stage.md": "Grade the haiku below for seasonal imagery.\n\n{{haiku}}" });
    const s = await startSimServer({ port: 0 });
    try {
      const { SimulatedJudgeModel } = await import("../src/sandbox/sim/sim-model.ts");
      const m = new SimulatedJudgeModel("both", 0, undefined, t);
      expect(() => m.reply([{ role: "user", content: t.render("rm/brand-new-stage.md", { haiku: "old pond" }) }])).toThrow(/rm\/brand-new-stage\.md/);
    } finally {
      await s.app.close();
    }
  });
});
