import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RubricJudge, scoreRegex, singleCallSchema } from "../src/judge/rubric-judge.ts";
import { loadTemplates, renderTemplate } from "../src/judge/templates.ts";
import { JudgeUnavailableError, type ScoreInput } from "../src/judge/types.ts";
import { createChatModel } from "../src/llm/openai-client.ts";
import { UsageMeter } from "../src/llm/usage.ts";
import { ScriptedChatModel } from "../src/llm/scripted.ts";
import type { RubricVersion } from "../src/rubric/types.ts";
import { startFakeOpenAI, type FakeOpenAI } from "./helpers/fake-openai-server.ts";
import { fakeJudge } from "./judge-fake-replies.ts";
import { mkdtempSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const version: RubricVersion = {
  version: 3,
  parent: 2,
  step: 20,
  author: { kind: "meta", step: 20 },
  createdAt: "2026-01-01T00:00:00Z",
  analyses: [],
  rubric: {
    items: [
      { name: "relevance", text: "Stays on the prompt. Score from 0 to 5.", min: 0, max: 5 },
      { name: "style", text: "Clear prose. Score from 0 to 5.", min: 0, max: 5, weight: 2 },
      { name: "depth", text: "Insight. Score from 1 to 10.", min: 1, max: 10 },
    ],
  },
};

const longResponse = "Cities should invest in bike lanes because they reduce traffic, improve health and cut emissions over time.";
const input: ScoreInput = { taskDescription: "Write a persuasive essay.", prompt: "Should cities build bike lanes?", response: longResponse };

let server: FakeOpenAI;
beforeAll(async () => {
  server = await startFakeOpenAI({ reply: fakeJudge({ score: (name) => ({ relevance: 4, style: "Score: 3", depth: "**7**" })[name] ?? 0 }) });
});
afterAll(() => server.close());

function model(meter: UsageMeter, extra: Record<string, unknown> = {}) {
  return createChatModel({ baseURL: server.url, model: "judge", server: "vllm", maxTries: 2, backoffBaseMs: 1, ...extra }, { meter });
}

describe("RubricJudge per-item over HTTP", () => {
  it("scores every item in one growing conversation with a shared prefix", async () => {
    const meter = new UsageMeter();
    const judge = new RubricJudge({ protocol: "hardened", model: model(meter), mode: "per-item" });
    const before = server.requests.length;
    const ev = await judge.score(input, version);
    const reqs = server.requests.slice(before);

    expect(ev.mode).toBe("per-item");
    expect(ev.rubricVersion).toBe(3);
    expect(ev.items.map((i) => [i.name, i.score])).toEqual([["relevance", 4], ["style", 3], ["depth", 7]]);
    expect(ev.items.every((i) => i.rationale.startsWith("The response handles"))).toBe(true);
    expect(ev.flags).toEqual([]);
    // weighted: 4 + 2*3 + 7 = 17; bounds 0+0+1=1 .. 5+10+10=25
    expect(ev.total).toBe(17);
    expect(ev.normalized).toBeCloseTo((17 - 1) / 24, 10);
    expect(ev.raw).toHaveLength(6);

    // 2 calls per item; each request's messages extend the previous request's messages.
    expect(reqs).toHaveLength(6);
    for (let i = 1; i < reqs.length; i++) {
      const prev = reqs[i - 1].messages;
      expect(reqs[i].messages.slice(0, prev.length)).toEqual(prev);
      expect(reqs[i].messages.length).toBe(prev.length + 2);
    }
    expect(reqs[0].messages[0].role).toBe("system");
    expect(reqs[0].messages[1].content).toContain(longResponse);
    expect(reqs.every((r: any) => r.temperature === 0)).toBe(true);
    expect(reqs[0].max_tokens).toBe(300);
    // score turns carry the regex constraint in vLLM's current form; rationale turns none.
    expect(reqs[1].structured_outputs).toEqual({ regex: "[0-5]" });
    expect(reqs[5].structured_outputs).toEqual({ regex: "[0-9]+" });
    expect(reqs[0].structured_outputs).toBeUndefined();
    expect(reqs.some((r: any) => "guided_regex" in r)).toBe(false);

    const rm = meter.snapshot().rm!;
    expect(rm.calls).toBe(6);
    expect(rm.failures).toBe(0);
    expect(rm.promptTokens).toBeGreaterThan(0);
    expect(rm.completionTokens).toBeGreaterThan(0);
  });

  it("flags unreadable scores with the fallback instead of failing", async () => {
    const srv = await startFakeOpenAI({ reply: fakeJudge({ score: (n) => (n === "style" ? "I cannot evaluate this." : n === "depth" ? "42" : "banana") }) });
    try {
      const judge = new RubricJudge({ protocol: "hardened",
        model: createChatModel({ baseURL: srv.url, model: "j", maxTries: 1 }),
        fallback: 2,
        useConstraints: false,
      });
      const ev = await judge.score(input, version);
      expect(ev.items.map((i) => i.score)).toEqual([2, 2, 10]);
      expect(ev.items[0].flags).toEqual(["unparsed-fallback"]);
      expect(ev.items[1].flags).toEqual(["refusal", "unparsed-fallback"]);
      expect(ev.items[2].flags).toEqual(["clamped"]);
      expect(ev.flags).toEqual(expect.arrayContaining(["unparsed-fallback", "refusal", "clamped"]));
      expect(Number.isFinite(ev.normalized)).toBe(true);
      expect(srv.requests.some((r: any) => "structured_outputs" in r || "response_format" in r)).toBe(false);
    } finally {
      await srv.close();
    }
  });
});

describe("RubricJudge single-call over HTTP", () => {
  it("scores all items with one JSON-constrained request", async () => {
    const meter = new UsageMeter();
    const judge = new RubricJudge({ protocol: "hardened", model: model(meter), mode: "single-call" });
    const before = server.requests.length;
    const evs = await judge.scoreBatch([input, { ...input, response: "Short lazy answer." }], version, { concurrency: 2 });
    const reqs = server.requests.slice(before);
    expect(reqs).toHaveLength(2);
    expect(reqs[0].structured_outputs).toEqual({ json: singleCallSchema(version.rubric) });
    expect(reqs[0].messages[1].content).toContain("### 3. depth (integer score from 1 to 10)");
    for (const ev of evs) {
      expect(ev.mode).toBe("single-call");
      expect(ev.items.map((i) => [i.name, i.score])).toEqual([["relevance", 4], ["style", 3], ["depth", 7]]);
      expect(ev.items[0].rationale).toBe("About relevance.");
      expect(ev.total).toBe(17);
      expect(ev.raw).toHaveLength(1);
    }
    expect(meter.snapshot().rm!.calls).toBe(2);
  });
});

describe("judge unavailability", () => {
  it("a server that is down signals unavailability, never a score", async () => {
    const dead = await startFakeOpenAI();
    const url = dead.url;
    await dead.close();
    const meter = new UsageMeter();
    const judge = new RubricJudge({ protocol: "hardened", model: createChatModel({ baseURL: url, model: "j", maxTries: 2, backoffBaseMs: 1 }, { meter }) });
    await expect(judge.score(input, version)).rejects.toBeInstanceOf(JudgeUnavailableError);
    const outcomes = await judge.scoreBatchSettled([input, input], version);
    expect(outcomes.map((o) => o.ok)).toEqual([false, false]);
    expect(outcomes[1].ok === false && outcomes[1].error.inputIndex).toBe(1);
    await expect(judge.scoreBatch([input], version)).rejects.toThrow(/judge model .* failed/);
    expect(meter.snapshot().rm!.failures).toBeGreaterThan(0);
  });

  it("5xx for one response only makes that one unavailable", async () => {
    const base = fakeJudge();
    const srv = await startFakeOpenAI({ reply: (req) => (JSON.stringify(req.messages).includes("POISON") ? { status: 500 } : base(req)) });
    try {
      const judge = new RubricJudge({ protocol: "hardened", model: createChatModel({ baseURL: srv.url, model: "j", maxTries: 2, backoffBaseMs: 1 }) });
      const out = await judge.scoreBatchSettled([input, { ...input, response: "POISON" }, input], version);
      expect(out.map((o) => o.ok)).toEqual([true, false, true]);
    } finally {
      await srv.close();
    }
  });
});

describe("templates", () => {
  it("renders sections and placeholders in one pass, never expanding values", () => {
    expect(renderTemplate("a {{x}}{{#y}} [{{y}}]{{/y}}", { x: "{{y}}", y: "" })).toBe("a {{y}}");
    expect(renderTemplate("a {{x}}{{#y}} [{{y}}]{{/y}}", { x: 1, y: "z" })).toBe("a 1 [z]");
  });

  it("names a missing placeholder", () => {
    expect(() => loadTemplates().render("rm/item-score.md", { name: "x", min: 0 })).toThrow(/\{\{max\}\}/);
  });

  it("a user directory overrides a template by relative name", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mpo-tpl-"));
    mkdirSync(join(dir, "rm"));
    writeFileSync(join(dir, "rm", "system.md"), "CUSTOM JUDGE");
    const t = loadTemplates(dir);
    expect(t.render("rm/system.md", {})).toBe("CUSTOM JUDGE");
    expect(t.raw("rm/item-score.md")).toBe(loadTemplates().raw("rm/item-score.md"));
    const m = new ScriptedChatModel((req) => (req.messages.at(-1)!.content.includes("integer score") ? "2" : "Fine."));
    await new RubricJudge({ protocol: "hardened", model: m, templates: t }).score(input, version);
    expect(m.requests[0].messages[0].content).toBe("CUSTOM JUDGE");
    expect(() => loadTemplates(join(dir, "nope"))).toThrow(/not found/);
  });

  it("constrains one-digit ranges exactly", () => {
    expect(scoreRegex(0, 5)).toBe("[0-5]");
    expect(scoreRegex(1, 10)).toBe("[0-9]+");
    expect(scoreRegex(-2, 2)).toBe("-?[0-9]+");
  });
});
