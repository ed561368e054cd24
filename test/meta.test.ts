import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Evaluation } from "../src/judge/types.ts";
import { createChatModel } from "../src/llm/openai-client.ts";
import { metaStepGuidelines } from "../src/meta/meta-guidelines.ts";
import { dedupeItems, joinRefinements, metaStep, type MetaRollout } from "../src/meta/meta-step.ts";
import { parseRubricText, rubricToText } from "../src/rubric/format.ts";
import { GuidelineStore, RubricStore } from "../src/rubric/store.ts";
import { Rng } from "../src/util/rng.ts";
import { startFakeOpenAI, type FakeOpenAI } from "./helpers/fake-openai-server.ts";
import { fakeJudge } from "./judge-fake-replies.ts";

const initial = parseRubricText(`<rubric>
<item>
### Relevance
Stays on the prompt. Score from 0 to 5.
</item>
<item>
### Style
Clear prose. Score from 0 to 5.
</item>
</rubric>`);

function evaluation(score: number): Evaluation {
  return {
    items: initial.items.map((it) => ({ name: it.name, score, min: 0, max: 5, rationale: "Looks fine.", raw: String(score), flags: [] })),
    total: 2 * score,
    normalized: score / 5,
    rubricVersion: 0,
    mode: "per-item",
    flags: [],
    raw: [],
  };
}

function rollouts(n: number): MetaRollout[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `r${i}`,
    taskDescription: "Write a persuasive essay.",
    prompt: `Prompt ${i}`,
    response: i % 3 === 0 ? "short lazy text" : `A long essay number ${i} with many words about the topic at hand.`,
    evaluation: evaluation(5),
  }));
}

const servers: FakeOpenAI[] = [];
afterEach(async () => {
  while (servers.length) await servers.pop()!.close();
});

async function setup(reply = fakeJudge()) {
  const srv = await startFakeOpenAI({ reply });
  servers.push(srv);
  const runDir = mkdtempSync(join(tmpdir(), "mpo-meta-"));
  const store = RubricStore.open(runDir);
  store.initialize(initial);
  const model = createChatModel({ baseURL: srv.url, model: "mrm", server: "vllm", maxTries: 2, backoffBaseMs: 1 });
  return { srv, runDir, store, model };
}

describe("metaStep", () => {
  it("a merge that reproduces the current rubric writes no version; the log records the step as unchanged", async () => {
    const same = `<rubric>\n${rubricToText(initial)}\n</rubric>`.replace(/<rubric>\n<rubric>/, "<rubric>").replace(/<\/rubric>\n<\/rubric>/, "</rubric>");
    const { runDir, store, model } = await setup(() => same);
    const res = await metaStep({ protocol: "hardened", model, rollouts: rollouts(6), store, step: 3, runDir, rng: new Rng(1), samples: 2 });
    expect(res.error).toBeUndefined();
    expect(res).toMatchObject({ ok: true, unchanged: true });
    expect(res.version!.version).toBe(0);
    expect(store.list().map((v) => v.version)).toEqual([0]);
    expect(res.summary).toMatch(/rubric v0 unchanged/);
    const log = JSON.parse(readFileSync(res.logFile, "utf8"));
    expect(log).toMatchObject({ step: 3, ok: true, state: "unchanged", toVersion: 0 });
  });

  it("produces a valid new version with lineage and a log holding the analyses", async () => {
    const { srv, runDir, store, model } = await setup();
    const res = await metaStep({ protocol: "hardened", model, rollouts: rollouts(12), store, step: 10, runDir, rng: new Rng(1), samples: 5, concurrency: 3 });
    expect(res.error).toBeUndefined();
    expect(res.ok).toBe(true);
    expect(res.previous.version).toBe(0);
    const v = res.version!;
    expect(v.version).toBe(1);
    expect(v.parent).toBe(0);
    expect(v.step).toBe(10);
    expect(v.author).toEqual({ kind: "meta", step: 10 });
    expect(v.analyses).toEqual(["meta/step-000010.json"]);
    expect(res.logPath).toBe("meta/step-000010.json");
    // merge output had 4 items, one an exact duplicate of "Focus": 3 remain.
    expect(v.rubric.items.map((i) => i.name)).toHaveLength(3);
    expect(v.rubric.items.find((i) => /Length honesty/.test(i.text))).toMatchObject({ min: 0, max: 3 });
    expect(store.latest()!.version).toBe(1);
    expect(res.summary).toBe("rubric v0 → v1: 3 items (+3, −2, ~0 changed)");
    expect(res.diff).toEqual({ itemsBefore: 2, itemsAfter: 3, added: 3, removed: 2, changed: 0 });

    const log = JSON.parse(readFileSync(join(runDir, v.analyses[0]), "utf8"));
    expect(log.ok).toBe(true);
    expect(log.toVersion).toBe(1);
    expect(log.sampledIds).toHaveLength(5);
    expect(new Set(log.sampledIds).size).toBe(5);
    expect(log.samples.every((s: any) => s.analysis.includes("inflated") && s.refinement.items.length === 2)).toBe(true);
    expect(log.merge.includedRefinements).toBe(5);
    expect(log.merge.duplicatesRemoved).toBe(1);
    expect(log.merge.output).toContain("Length honesty");

    // stages accounted separately: 5 analyses, 5 refinements, 1 merge, no prescreen.
    expect(res.usage["mrm-analyze"]!.calls).toBe(5);
    expect(res.usage["mrm-refine"]!.calls).toBe(5);
    expect(res.usage["mrm-merge"]!.calls).toBe(1);
    expect(res.usage["mrm-prescreen"]).toBeUndefined();
    expect(srv.requests).toHaveLength(11);
    // refinement continues the analysis conversation.
    const refineReq = srv.requests.find((r) => r.messages.at(-1).content.includes("write an improved rubric"));
    expect(refineReq.messages).toHaveLength(4);
    expect(refineReq.messages[2].role).toBe("assistant");
  });

  it("same seed, same sample; prescreen puts flawed evaluations first", async () => {
    const a = await setup();
    const r1 = await metaStep({ protocol: "hardened", model: a.model, rollouts: rollouts(12), store: a.store, step: 1, runDir: a.runDir, rng: new Rng(7), samples: 4 });
    const b = await setup();
    const r2 = await metaStep({ protocol: "hardened", model: b.model, rollouts: rollouts(12), store: b.store, step: 1, runDir: b.runDir, rng: new Rng(7), samples: 4 });
    const ids = (r: typeof r1) => JSON.parse(readFileSync(r.logFile, "utf8")).sampledIds;
    expect(ids(r1)).toEqual(ids(r2));

    const c = await setup();
    const r3 = await metaStep({ protocol: "hardened", model: c.model, rollouts: rollouts(12), store: c.store, step: 2, runDir: c.runDir, rng: new Rng(7), samples: 4, prescreen: true });
    expect(r3.ok).toBe(true);
    const log = JSON.parse(readFileSync(r3.logFile, "utf8"));
    expect(log.prescreen.counts).toEqual({ sound: 8, flawed: 4, unclear: 0 });
    // the 4 "short lazy" rollouts (r0, r3, r6, r9) are the flawed ones and are sampled first
    expect([...log.sampledIds].sort()).toEqual(["r0", "r3", "r6", "r9"]);
    expect(r3.usage["mrm-prescreen"]!.calls).toBe(12);
    expect(c.srv.requests.filter((r) => r.structured_outputs?.choice).length).toBe(12);
  });

  it("a failing stage (HTTP 500) keeps the old rubric and logs ok:false", async () => {
    const base = fakeJudge();
    const { runDir, store, model } = await setup((req) =>
      req.messages.at(-1)!.content.includes("write an improved rubric") ? { status: 500 } : base(req),
    );
    const res = await metaStep({ protocol: "hardened", model, rollouts: rollouts(6), store, step: 20, runDir, rng: new Rng(3), samples: 3 });
    expect(res.ok).toBe(false);
    expect(res.version).toBeUndefined();
    expect(res.error).toMatch(/refinement of r\d+ failed/);
    expect(res.summary).toMatch(/^rubric v0 kept: /);
    expect(store.latest()!.version).toBe(0);
    const log = JSON.parse(readFileSync(join(runDir, "meta/step-000020.json"), "utf8"));
    expect(log.ok).toBe(false);
    expect(log.state).toBe("failed");
    expect(log.toVersion).toBeNull();
    expect(log.error).toBe(res.error);
    expect(res.usage["mrm-refine"]!.failures).toBeGreaterThan(0);
  });

  it("a garbage merge with zero items keeps the old rubric", async () => {
    const { runDir, store, model } = await setup(fakeJudge({ merge: () => "I merged everything nicely, trust me." }));
    const res = await metaStep({ protocol: "hardened", model, rollouts: rollouts(4), store, step: 30, runDir, rng: new Rng(3), samples: 2 });
    expect(res.ok).toBe(false);
    expect(res.error).toMatch(/merge produced no usable items/);
    expect(store.list()).toHaveLength(1);
    const log = JSON.parse(readFileSync(res.logFile, "utf8"));
    expect(log.merge.output).toContain("trust me");
    expect(log.samples).toHaveLength(2);
  });

  it("drops unparsable refinements but merges the rest; all unparsable → ok:false", async () => {
    const mixed = await setup(fakeJudge({ refine: (i) => (i === 0 ? "no rubric here" : undefined as never) }));
    // undefined → default REFINED_RUBRIC via ?? in fakeJudge
    const res = await metaStep({ protocol: "hardened", model: mixed.model, rollouts: rollouts(6), store: mixed.store, step: 5, runDir: mixed.runDir, rng: new Rng(3), samples: 3, concurrency: 1 });
    expect(res.ok).toBe(true);
    const log = JSON.parse(readFileSync(res.logFile, "utf8"));
    expect(log.samples.filter((s: any) => s.refinementError)).toHaveLength(1);
    expect(log.merge.includedRefinements).toBe(2);
    expect(log.errors[0]).toMatch(/dropped refinement/);

    const bad = await setup(fakeJudge({ refine: () => "nothing useful" }));
    const res2 = await metaStep({ protocol: "hardened", model: bad.model, rollouts: rollouts(3), store: bad.store, step: 5, runDir: bad.runDir, rng: new Rng(3), samples: 3 });
    expect(res2.ok).toBe(false);
    expect(res2.error).toMatch(/no refinement/);
    expect(bad.srv.requests.some((r) => r.messages.at(-1).content.includes("Merge them"))).toBe(false);
  });

  it("an unreachable MRM server → ok:false, no throw", async () => {
    const { runDir, store, srv } = await setup();
    const url = srv.url;
    await srv.close();
    servers.length = 0;
    const model = createChatModel({ baseURL: url, model: "mrm", maxTries: 1 });
    const res = await metaStep({ protocol: "hardened", model, rollouts: rollouts(3), store, step: 1, runDir, rng: new Rng(0), samples: 2 });
    expect(res.ok).toBe(false);
    expect(existsSync(res.logFile)).toBe(true);
    expect(store.latest()!.version).toBe(0);
  });

  it("helpers: word-budgeted join and exact-duplicate removal", () => {
    const j = joinRefinements(["a b c", "d e f g", "h"], 7);
    expect(j.included).toBe(2);
    expect(j.words).toBe(7);
    expect(joinRefinements(["a b c d e f g h i"], 2).included).toBe(1);
    const d = dedupeItems([
      { name: "a", text: "Same  Text", min: 0, max: 5 },
      { name: "b", text: "same text", min: 0, max: 5 },
      { name: "c", text: "other", min: 0, max: 5 },
    ]);
    expect(d.items.map((i) => i.name)).toEqual(["a", "c"]);
    expect(d.removed).toBe(1);
  });
});

describe("metaStepGuidelines", () => {
  it("rewrites the guidelines of each group seen, as a new version", async () => {
    const srv = await startFakeOpenAI({ reply: fakeJudge() });
    servers.push(srv);
    const runDir = mkdtempSync(join(tmpdir(), "mpo-metag-"));
    const store = GuidelineStore.open(runDir);
    store.initialize({ groups: { default: "Check the answer.", "algebra/1": "Check factoring.", "geometry/2": "Check diagrams." } });
    const cases = rollouts(6).map((r, i) => ({ ...r, group: i < 3 ? "algebra/1" : "number_theory/0", reference: "\\boxed{2}" }));
    const model = createChatModel({ baseURL: srv.url, model: "mrm", maxTries: 1 });
    const res = await metaStepGuidelines({ protocol: "hardened", model, rollouts: cases, store, step: 40, runDir, rng: new Rng(2), casesPerGroup: 2 });
    expect(res.ok).toBe(true);
    expect(res.updatedGroups).toEqual(["algebra/1", "number_theory/0"]);
    const g = res.version!.guidelines.groups;
    expect(g["algebra/1"]).toMatch(/^For algebra\/1: verify every step/);
    expect(g["number_theory/0"]).toMatch(/^For number_theory\/0/);
    expect(g["geometry/2"]).toBe("Check diagrams.");
    expect(res.version!.parent).toBe(0);
    expect(res.version!.analyses).toEqual(["meta/step-000040-guidelines.json"]);
    const log = JSON.parse(readFileSync(res.logFile, "utf8"));
    expect(log.groups[0].caseIds).toHaveLength(2);
    expect(log.groups[1].before).toBe("Check the answer."); // new group started from the default text
    expect(res.usage["mrm-analyze"]!.calls).toBe(2);
    const analyzeReq = srv.requests.find((r) => r.messages.at(-1).content.includes("grade several solutions"));
    expect((analyzeReq.messages.at(-1).content.match(/### Case/g) ?? []).length).toBe(2);
  });

  it("unreadable rewrites for every group → ok:false, old set kept", async () => {
    const base = fakeJudge();
    const srv = await startFakeOpenAI({ reply: (req) => (req.messages.at(-1)!.content.includes("Rewrite the grading") ? "sure" : base(req)) });
    servers.push(srv);
    const runDir = mkdtempSync(join(tmpdir(), "mpo-metag-"));
    const store = GuidelineStore.open(runDir);
    store.initialize({ groups: { default: "Check the answer." } });
    const res = await metaStepGuidelines({ protocol: "hardened", model: createChatModel({ baseURL: srv.url, model: "m", maxTries: 1 }), rollouts: rollouts(2), store, step: 1, runDir, rng: new Rng(2) });
    expect(res.ok).toBe(false);
    expect(store.list()).toHaveLength(1);
  });
});
