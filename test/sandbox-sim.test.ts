import { describe, expect, it } from "vitest";
import { aspectsOf, perceive } from "../src/sandbox/sim/perception.ts";
import { juniorJudgeItem } from "../src/sandbox/sim/junior.ts";
import { analyze, merge } from "../src/sandbox/sim/senior.ts";
import { loadTemplates } from "../src/judge/templates.ts";
import { SimulatedJudgeModel } from "../src/sandbox/sim/sim-model.ts";
import { EssayOracle } from "../src/sandbox/oracle.ts";
import { sandboxPrompts } from "../src/sandbox/world.ts";
import { writeEssay } from "../src/sandbox/essay-writer.ts";
import { Rng } from "../src/util/rng.ts";

const prompt = "Write a short essay arguing that cities should spend more money on public libraries.";
const good =
  "I believe that cities should spend more money on public libraries. They give every reader free access to books. Moreover, they offer quiet rooms where students can study. However, some people worry that the buildings are expensive to maintain. For these reasons, cities should spend more money on public libraries.";
const titleOnly = "The Case for Public Libraries";
const repeated =
  "I believe that cities should spend more money on public libraries. They give every reader free access to books. They give every reader free access to books. They give every reader free access to books. For these reasons, cities should spend more money on public libraries.";
const offTopic =
  "I believe that cities should spend more money on public libraries. Rockets cost money that schools need. Missions lead to new science and tools. Fish and birds are protected from waste. For these reasons, cities should spend more money on public libraries.";
const unfinished = "I believe that cities should spend more money on public libraries. They give every reader free access to books. Moreover, they offer quiet rooms where";
const filler =
  "Moreover, it is important to note that this is very important. Furthermore, in addition, this matters a lot for many reasons. Additionally, moreover, it is clear that this is a key point.";

describe("simulated junior: aspect recognition from rubric wording", () => {
  it("recognises the aspects an item names and nothing else", () => {
    expect(aspectsOf("Discourse: judge how well the writing flows.")).toEqual(["discourse"]);
    expect(aspectsOf("Deduct points for every repeated sentence.")).toEqual(["repetition"]);
    expect(aspectsOf("Does the essay stay on the prompt's topic?")).toContain("relevance");
    expect(aspectsOf("A response cut off mid-sentence scores 0.")).toEqual(["completeness"]);
    expect(aspectsOf("A title-only answer scores 0.")).toContain("structure");
    expect(aspectsOf("Overall quality.")).toEqual([]);
  });

  it("scores only what the item names: a vague discourse item is fooled by filler, a relevance item is not", () => {
    const discourse = { name: "discourse", text: "How well the writing flows. Score from 0 to 5.", min: 0, max: 5 };
    const relevance = { name: "relevance", text: "Does every sentence address the prompt's topic? Score from 0 to 5.", min: 0, max: 5 };
    expect(juniorJudgeItem(discourse, prompt, filler).score).toBeGreaterThan(juniorJudgeItem(discourse, prompt, good).score);
    expect(juniorJudgeItem(relevance, prompt, filler).score).toBeLessThan(juniorJudgeItem(relevance, prompt, good).score);
  });

  it("penalises each crafted flaw under the item that names it", () => {
    const item = (text: string) => ({ name: "x", text: text + " Score from 0 to 5.", min: 0, max: 5 });
    const j = (text: string, response: string) => juniorJudgeItem(item(text), prompt, response).score;
    expect(j("Penalize repeated sentences.", repeated)).toBeLessThan(j("Penalize repeated sentences.", good));
    expect(j("Penalize off-topic sentences.", offTopic)).toBeLessThan(j("Penalize off-topic sentences.", good));
    expect(j("Is the response complete, not cut off?", unfinished)).toBeLessThan(j("Is the response complete, not cut off?", good));
    expect(j("A title-only answer scores 0; judge the structure.", titleOnly)).toBe(0);
  });
});

describe("simulated senior: analysis of crafted responses", () => {
  const weak = "<rubric><item>Discourse: judge how well the writing flows and connects its ideas. Score from 0 to 5.</item></rubric>";
  it.each([
    ["title-only", titleOnly, ["structure", "development"]],
    ["repeated sentence", repeated, ["repetition"]],
    ["off-topic", offTopic, ["relevance"]],
    ["unfinished", unfinished, ["completeness"]],
    ["filler", filler, ["filler", "relevance"]],
  ])("names what the rubric misses for a %s response", (_label, response, expected) => {
    const a = analyze({ prompt, response: response as string, rubric: weak, juniorNormalized: 1 });
    for (const e of expected as string[]) expect(a.missing).toContain(e);
    expect(a.text).toMatch(/inflated/);
  });

  it("finds nothing missing in a good response", () => {
    const a = analyze({ prompt, response: good, rubric: weak, juniorNormalized: 0.8 });
    expect(a.missing).toEqual([]);
  });

  it("merges proposals into one item per aspect", () => {
    const merged = merge([["Penalize repeated sentences.", "Stay on the prompt's topic."], ["Deduct for every repeated sentence."]]);
    expect(merged.match(/<item>/g)?.length).toBe(2);
  });
});

describe("simulated judge model over the real message format", () => {
  it("answers a rationale turn with a sentence and a score turn with an integer", async () => {
    const m = new SimulatedJudgeModel();
    const t = loadTemplates();
    const first = { role: "user" as const, content: t.render("rm/response.md", { taskDescription: "Essay", prompt, response: repeated, reference: "" }) };
    const item = { role: "user" as const, content: t.render("rm/item-rationale.md", { index: 1, count: 1, name: "rep", min: 0, max: 5, text: "Penalize repeated sentences." }) };
    const r1 = await m.chat({ messages: [first, item] });
    expect(r1.text).toMatch(/repeats/);
    const r2 = await m.chat({ messages: [first, item, { role: "assistant", content: r1.text }, { role: "user", content: t.render("rm/item-score.md", { name: "rep", min: 0, max: 5 }) }] });
    expect(r2.text).toMatch(/^\d+$/);
  });
});

describe("oracle", () => {
  it("ranks clean essays above every flawed kind, on average", () => {
    const o = new EssayOracle();
    const rng = new Rng(11);
    const sums: Record<string, number[]> = {};
    for (let k = 0; k < 4; k++)
      for (const p of sandboxPrompts("test")) {
        const e = writeEssay(rng, p);
        (sums[e.flaws.length ? e.flaws[0] : "clean"] ??= []).push(o.score(p.topic, e.text).score);
      }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const clean = mean(sums.clean);
    for (const [k, v] of Object.entries(sums)) if (k !== "clean") expect(mean(v), k).toBeLessThan(clean);
    expect(o.score("libraries", titleOnly).score).toBeLessThan(0.6);
  });
});

describe("mpo sim-server over real HTTP", () => {
  it("drives the real judge client, RubricJudge and a meta step whose new items the junior then reads", async () => {
    const { startSimServer } = await import("../src/sandbox/sim-server.ts");
    const { createChatModel } = await import("../src/llm/openai-client.ts");
    const { RubricJudge } = await import("../src/judge/rubric-judge.ts");
    const { metaStep } = await import("../src/meta/meta-step.ts");
    const { RubricStore } = await import("../src/rubric/store.ts");
    const { parseRubricText } = await import("../src/rubric/format.ts");
    const { mkdtempSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { app, url } = await startSimServer();
    try {
      const model = createChatModel({ baseURL: url, model: "sim", server: "generic" });
      const dir = mkdtempSync(join(tmpdir(), "mpo-sim-"));
      const store = RubricStore.open(dir);
      const v0 = store.initialize(parseRubricText("<rubric><item>Discourse: how well the writing flows. Score from 0 to 5.</item></rubric>"));
      const judge = new RubricJudge({ model });
      const responses = [filler, repeated, offTopic, titleOnly, good];
      const rollouts = [];
      for (const [i, response] of responses.entries()) {
        const evaluation = await judge.score({ taskDescription: "Essay writing", prompt, response }, v0);
        rollouts.push({ id: `r${i}`, taskDescription: "Essay writing", prompt, response, evaluation });
      }
      const fillerBefore = rollouts[0].evaluation.normalized;
      expect(fillerBefore).toBeGreaterThan(rollouts[4].evaluation.normalized); // the weak rubric's blind spot
      const r = await metaStep({ model, rollouts, store, step: 1, runDir: dir, rng: new Rng(0), samples: 5 });
      expect(r.ok).toBe(true);
      const v1 = store.latest()!;
      expect(v1.version).toBe(1);
      expect(v1.rubric.items.length).toBeGreaterThan(1);
      for (const item of v1.rubric.items) expect(item.max).toBeGreaterThan(item.min);
      const after = await judge.score({ taskDescription: "Essay writing", prompt, response: filler }, v1);
      const goodAfter = await judge.score({ taskDescription: "Essay writing", prompt, response: good }, v1);
      expect(goodAfter.normalized).toBeGreaterThan(after.normalized);
      expect(after.flags).toEqual([]);
    } finally {
      await app.close();
    }
  });
});
