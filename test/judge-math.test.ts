import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MathMixedReward } from "../src/judge/math-reward.ts";
import { PlanExecuteJudge } from "../src/judge/plan-execute.ts";
import { boxedAnswerEvaluation, verdictEvaluation } from "../src/judge/verifier-reward.ts";
import { JudgeUnavailableError } from "../src/judge/types.ts";
import { createChatModel } from "../src/llm/openai-client.ts";
import { UsageMeter } from "../src/llm/usage.ts";
import type { GuidelineVersion } from "../src/rubric/types.ts";
import { Rng } from "../src/util/rng.ts";
import { startFakeOpenAI, type FakeOpenAI } from "./helpers/fake-openai-server.ts";
import { fakeJudge } from "./judge-fake-replies.ts";

const guidelines: GuidelineVersion = {
  version: 2,
  parent: 1,
  step: 10,
  author: { kind: "meta", step: 10 },
  createdAt: "2026-01-01T00:00:00Z",
  analyses: [],
  guidelines: { groups: { "algebra/1": "ALGEBRA-GUIDE: check factoring.", default: "DEFAULT-GUIDE" } },
};

const reasoning = "We expand the product, collect like terms and solve the resulting linear equation step by step, checking each algebraic manipulation carefully so that the final value satisfies the original equation as required here.";
const right = { taskDescription: "Solve.", prompt: "Solve x+1=3.", response: `${reasoning} So \\boxed{2}.`, reference: "x = 3 - 1, so \\boxed{2}", group: "algebra/1" };
const wrong = { ...right, response: `${reasoning} So \\boxed{5}.` };
const short = { ...right, response: "\\boxed{2}" };

let server: FakeOpenAI;
beforeAll(async () => {
  server = await startFakeOpenAI({ reply: fakeJudge({ planScore: () => "Grade: 4" }) });
});
afterAll(() => server.close());

describe("PlanExecuteJudge", () => {
  it("plans with the group's guidelines, executes, then gives a constrained 0–5", async () => {
    const meter = new UsageMeter();
    const judge = new PlanExecuteJudge({ protocol: "hardened", model: createChatModel({ baseURL: server.url, model: "rm", server: "sglang", maxTries: 1 }, { meter }) });
    const before = server.requests.length;
    const ev = await judge.score(right, guidelines);
    const reqs = server.requests.slice(before);
    expect(reqs).toHaveLength(3);
    expect(reqs[0].messages[1].content).toContain("ALGEBRA-GUIDE");
    expect(reqs[0].messages[1].content).toContain("\\boxed{2}");
    expect(reqs[1].messages.slice(0, 2)).toEqual(reqs[0].messages);
    expect(reqs[2].regex).toBe("[0-5]");
    expect(ev).toMatchObject({ total: 4, normalized: 0.8, rubricVersion: 2, mode: "plan-execute" });
    expect(ev.items[0].rationale).toContain("Step 1 holds");
    expect(ev.raw).toHaveLength(3);
    expect(meter.snapshot().rm!.calls).toBe(3);

    const other = await judge.score({ ...right, group: "geometry/0" }, guidelines);
    expect(server.requests.at(-3).messages[1].content).toContain("DEFAULT-GUIDE");
    expect(other.flags).not.toContain("no-guidelines");
  });
});

describe("MathMixedReward", () => {
  const judge = () => new PlanExecuteJudge({ protocol: "hardened", model: createChatModel({ baseURL: server.url, model: "rm", maxTries: 1 }) });

  it("answer-check path: 5 for a correct boxed answer, 0 for wrong, 0 for too-short; no LLM calls", async () => {
    const r = new MathMixedReward({ answerBox: "last", answerMatch: "lenient", judge: judge(), rng: new Rng(1), answerCheckProbability: 1 });
    const before = server.requests.length;
    const res = await r.scoreBatch([right, wrong, short], guidelines);
    expect(res.path).toBe("answer-check");
    expect(server.requests.length).toBe(before);
    const evs = res.outcomes.map((o) => (o.ok ? o.evaluation : null));
    expect(evs.map((e) => e!.total)).toEqual([5, 0, 0]);
    expect(evs[2]!.flags).toContain("too-short");
    expect(evs.every((e) => e!.mode === "mixed" && e!.flags.includes("path:answer-check"))).toBe(true);
  });

  it("plan-execute path: judge scores, too-short responses get 0 without a call", async () => {
    const r = new MathMixedReward({ answerBox: "last", answerMatch: "lenient", judge: judge(), rng: new Rng(1), answerCheckProbability: 0 });
    const before = server.requests.length;
    const res = await r.scoreBatch([wrong, short], guidelines);
    expect(res.path).toBe("plan-execute");
    expect(server.requests.length - before).toBe(3);
    expect(res.outcomes.map((o) => (o.ok ? o.evaluation.total : null))).toEqual([4, 0]);
    expect(res.outcomes[0].ok && res.outcomes[0].evaluation.flags).toContain("path:plan-execute");
  });

  it("the per-batch coin follows the seeded Rng with probability p", async () => {
    const paths = async (seed: number) => {
      const r = new MathMixedReward({ answerBox: "last", answerMatch: "lenient", judge: judge(), rng: new Rng(seed), answerCheckProbability: 0.5, minWords: 1000 });
      const out: string[] = [];
      for (let i = 0; i < 40; i++) out.push((await r.scoreBatch([short], guidelines)).path);
      return out;
    };
    const a = await paths(11);
    expect(await paths(11)).toEqual(a);
    const checks = a.filter((p) => p === "answer-check").length;
    expect(checks).toBeGreaterThan(8);
    expect(checks).toBeLessThan(32);
    const rng = new Rng(11);
    expect(a).toEqual(Array.from({ length: 40 }, () => (rng.random() < 0.5 ? "answer-check" : "plan-execute")));
  });

  it("a dead judge makes plan-execute samples unavailable, with the input index", async () => {
    const dead = await startFakeOpenAI();
    const url = dead.url;
    await dead.close();
    const r = new MathMixedReward({
      judge: new PlanExecuteJudge({ protocol: "hardened", model: createChatModel({ baseURL: url, model: "rm", maxTries: 1 }) }),
      rng: new Rng(1),
      answerCheckProbability: 0,
    });
    const res = await r.scoreBatch([short, right], guidelines);
    expect(res.outcomes[0].ok).toBe(true);
    expect(res.outcomes[1].ok).toBe(false);
    if (!res.outcomes[1].ok) {
      expect(res.outcomes[1].error).toBeInstanceOf(JudgeUnavailableError);
      expect(res.outcomes[1].error.inputIndex).toBe(1);
    }
  });
});

describe("verifier rewards", () => {
  it("boxed answers against a label or a reference", () => {
    expect(boxedAnswerEvaluation("so \\boxed{\\frac{1}{2}}", "0.5")).toMatchObject({ total: 1, normalized: 1, mode: "verifier" });
    expect(boxedAnswerEvaluation("so \\boxed{3}", "the answer is \\boxed{2}").total).toBe(0);
    expect(boxedAnswerEvaluation("no box", "2").flags).toEqual(["no-answer"]);
    expect(boxedAnswerEvaluation("\\boxed{2}", "2", { minWords: 30 }).flags).toEqual(["too-short"]);
  });

  it("verdict tags against a gold label", () => {
    expect(verdictEvaluation("Because ... <verdict>RIGHT</verdict>", "right").total).toBe(1);
    expect(verdictEvaluation("<verdict>WRONG</verdict>", "RIGHT").total).toBe(0);
    expect(verdictEvaluation("no tag", "RIGHT").flags).toEqual(["no-verdict"]);
  });
});
